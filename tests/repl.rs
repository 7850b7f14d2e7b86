//! The REPL fed through a pipe: `beb repl` evaluates piped stdin line by line, continuing an
//! incomplete input on the next line, and exits with the worst status it met.

mod common;

use std::path::PathBuf;

use common::Output;

/// `beb repl --seed 1` fed `input` through a pipe.
fn repl(input: &str) -> Output {
    common::beb(&["repl", "--seed", "1"]).stdin(input).run()
}

fn lines(s: &Output) -> Vec<&str> {
    s.stdout.lines().collect()
}

/// A file in a fresh scratch folder.
fn temp_file(name: &str, contents: &str) -> PathBuf {
    let path = common::scratch("repl-test").join(name);
    common::write(&path, contents);
    path
}

#[test]
fn an_expression_prints_its_value() {
    let s = repl("1 + 2\n");
    assert_eq!(lines(&s), ["3"]);
    assert_eq!(s.code, Some(0), "stderr: {}", s.stderr);
}

#[test]
fn statements_print_nothing_and_print_prints() {
    let s = repl("let x = 5\nprint x, \"items\"\nx * 2\n\n\n\"text\"\n");
    assert_eq!(lines(&s), ["5 items", "10", "text"]);
    assert_eq!(s.code, Some(0));
}

#[test]
fn a_function_spread_over_lines_is_one_input() {
    let s = repl("fn area(w,\n        h = 2) {\n  w * h\n}\narea(3)\narea(3, h: 4)\n");
    assert_eq!(lines(&s), ["6", "12"]);
    assert_eq!(s.code, Some(0), "stderr: {}", s.stderr);
}

#[test]
fn an_open_bracket_continues_on_the_next_line() {
    let s = repl("let xs = [1,\n  2,\n  3]\nlen(xs)\nsum([\n10, 20\n])\n\"a {\n1 + 1} b\"\n");
    assert_eq!(lines(&s), ["3", "30", "a 2 b"]);
    assert_eq!(s.code, Some(0), "stderr: {}", s.stderr);
}

#[test]
fn variables_and_functions_persist_across_inputs() {
    let s = repl("let a = 2\nfn inc(v) { v + 1 }\nlet b = inc(a)\nb += 10\nb\ninc(b)\n");
    assert_eq!(lines(&s), ["13", "14"]);
}

#[test]
fn an_error_does_not_end_the_session() {
    let s = repl("let x = 1\nx + undefined_name\nprint \"still here\"\nx + 1\n");
    assert_eq!(lines(&s), ["still here", "2"]);
    assert!(
        s.stderr.contains("unknown name `undefined_name`"),
        "stderr: {}",
        s.stderr
    );
    assert!(
        s.stderr.contains("<repl:2>"),
        "the diagnostic names the input: {}",
        s.stderr
    );
    assert_eq!(s.code, Some(2));
}

#[test]
fn a_syntax_error_is_reported_and_the_next_line_runs() {
    let s = repl("1 + )\n40 + 2\n");
    assert_eq!(lines(&s), ["42"]);
    assert!(s.stderr.contains("syntax error"), "stderr: {}", s.stderr);
    assert_eq!(s.code, Some(2));
}

#[test]
fn a_failed_assertion_sets_exit_status_one() {
    let s = repl("assert 1 == 2\nprint \"after\"\n");
    assert_eq!(lines(&s), ["after"]);
    assert!(
        s.stderr.contains("assertion failed"),
        "stderr: {}",
        s.stderr
    );
    assert_eq!(s.code, Some(1));
    // Any other error outranks a failed assertion.
    let s = repl("assert false\n1 / 0\n");
    assert_eq!(s.code, Some(2));
}

#[test]
fn input_left_incomplete_at_the_end_is_an_error() {
    let s = repl("print 1\nlet x = (1 +\n");
    assert_eq!(lines(&s), ["1"]);
    assert!(s.stderr.contains("syntax error"), "stderr: {}", s.stderr);
    assert_eq!(s.code, Some(2));
}

#[test]
fn help_shows_a_builtin_signature_and_doc() {
    let len = common::builtin("len");
    let s = repl(":help len\n");
    assert_eq!(lines(&s), [len.signature.as_str(), len.doc.as_str()]);
    assert_eq!(s.code, Some(0));
}

#[test]
fn help_shows_a_user_function_with_its_doc_comment() {
    let s = repl("## Double it.\nfn twice(x, k = 2) { x * k }\n:help twice\n:help nothing_here\n");
    assert_eq!(
        lines(&s),
        [
            "twice(x, k = ...)",
            "Double it.",
            "no help for `nothing_here`"
        ]
    );
}

#[test]
fn help_alone_lists_commands_and_builtins() {
    let s = repl(":help\n");
    assert!(s.stdout.contains(":vars"), "{}", s.stdout);
    assert!(s.stdout.contains(":load FILE"), "{}", s.stdout);
    let prelude = s
        .stdout
        .lines()
        .find(|l| l.starts_with("prelude:"))
        .unwrap_or("");
    for name in ["len", "map", "sqrt", "zip"] {
        assert!(
            prelude.split_whitespace().any(|w| w == name),
            "{name} missing from {prelude:?}"
        );
    }
}

#[test]
fn vars_lists_the_variables() {
    let s = repl(":vars\nlet alpha = 0.5\nlet name = \"minus\"\n:vars\n");
    assert_eq!(lines(&s), ["(no variables)", "alpha = 0.5", "name = minus"]);
}

#[test]
fn load_runs_a_file_into_the_session() {
    let path = temp_file(
        "load_ok.beb",
        "print \"loading\"\nlet loaded = 41\nfn bump(v) { v + 1 }\n",
    );
    let s = repl(&format!(":load {}\nbump(loaded)\n", path.display()));
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
    assert_eq!(lines(&s), ["loading", "42"]);
    assert_eq!(s.code, Some(0), "stderr: {}", s.stderr);
}

#[test]
fn load_of_a_missing_file_is_an_error_and_the_session_goes_on() {
    let s = repl(":load /no/such/dir/script.beb\n1 + 1\n");
    assert_eq!(lines(&s), ["2"]);
    assert!(
        s.stderr.contains("cannot read /no/such/dir/script.beb"),
        "stderr: {}",
        s.stderr
    );
    assert_eq!(s.code, Some(2));
}

#[test]
fn quit_stops_reading() {
    let s = repl("1\n:quit\n2\n");
    assert_eq!(lines(&s), ["1"]);
    assert_eq!(s.code, Some(0));
}

#[test]
fn an_unknown_command_is_reported() {
    let s = repl(":frobnicate\n3\n");
    assert_eq!(lines(&s), ["3"]);
    assert!(
        s.stderr.contains("unknown command :frobnicate"),
        "stderr: {}",
        s.stderr
    );
    assert_eq!(s.code, Some(2));
}

#[test]
fn a_line_of_invalid_utf8_is_reported_and_the_session_goes_on() {
    let mut input = b"let x = 2\n".to_vec();
    input.extend_from_slice(b"print \xff\xfe\n");
    input.extend_from_slice(b"print x * 3\n");
    let out = common::beb(&["repl", "--seed", "1"]).stdin(input).run();
    assert_eq!(out.stdout.trim(), "6", "{}", out.stderr);
    assert!(
        out.stderr
            .contains("input line 2 is not UTF-8 text (invalid byte at byte 7)"),
        "{}",
        out.stderr
    );
    assert_eq!(out.code, Some(2), "a skipped line makes the session fail");
}
