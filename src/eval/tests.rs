//! Interpreter behaviour, through small scripts.

use std::rc::Rc;

use std::sync::atomic::Ordering;

use crate::builtin;
use crate::error::{BebError, BebResult, ErrorKind, line_col};
use crate::eval::natives::{Builtin, Call, Seed};
use crate::eval::value::Value;
use crate::eval::value::access::integer;
use crate::eval::value::format_spec::format_with_spec;
use crate::eval::{Interp, Settings};
use crate::seed::Stream;
use crate::syntax::ast::{CallSite, Span};

/// Parse and run `src`: (what it printed, its result, the interpreter afterwards).
fn run_with(src: &str, setup: impl FnOnce(&mut Settings)) -> (String, BebResult<Value>, Interp) {
    let out = crate::eval::CapturedOutput::default();
    let mut settings = Settings {
        root_seed: 1,
        ..Settings::default()
    };
    setup(&mut settings);
    let mut interp = Interp::with_settings(settings, Box::new(out.clone()));
    let file = interp.add_source("test.beb", src);
    let result = interp
        .parse(file)
        .map_err(BebError::from_syntax)
        .and_then(|program| interp.run(&program));
    (out.text(), result, interp)
}

fn printed(src: &str) -> String {
    let (out, result, _) = run_with(src, |_| {});
    if let Err(e) = result {
        panic!("{src}: {e}");
    }
    out
}

fn error(src: &str) -> BebError {
    match run_with(src, |_| {}).1 {
        Ok(v) => panic!("{src}: expected an error, got {v}"),
        Err(e) => e,
    }
}

/// The source text an error's span covers.
fn underlined(src: &str, e: &BebError) -> String {
    let span = e.span.unwrap_or_else(|| panic!("no span on {e}"));
    src[span.start as usize..span.end as usize].to_string()
}

#[test]
fn closures_see_later_assignments_to_captured_variables() {
    assert_eq!(
        printed("let k = 1\nlet f = |x| x + k\nk = 10\nprint f(1)"),
        "11\n"
    );
}

#[test]
fn defaults_may_use_earlier_parameters_and_run_per_call() {
    assert_eq!(
        printed("fn f(a, b = a * 2) { b }\nprint f(3), f(3, b: 1), f(4)"),
        "6 1 8\n"
    );
}

#[test]
fn functions_are_hoisted_within_their_block() {
    let src = "print even(10)\nfn even(n) { if n == 0 { true } else { odd(n - 1) } }\n\
               fn odd(n) { if n == 0 { false } else { even(n - 1) } }";
    assert_eq!(printed(src), "true\n");
}

#[test]
fn return_leaves_nested_loops_and_blocks() {
    let src = "fn find(xs, target) {\n  for i in 0..len(xs) {\n    for j in [0] {\n      \
               if xs[i] == target { return i }\n    }\n  }\n  -1\n}\nprint find([5, 6, 7], 7), find([], 1)";
    assert_eq!(printed(src), "2 -1\n");
    assert_eq!(printed("fn f() { return }\nprint f()"), "none\n");
}

#[test]
fn assignment_reaches_the_scope_that_defines_the_name() {
    let src = "let total = 0\nfor i in 1..=3 { let sq = i * i\n total += sq }\nprint total";
    assert_eq!(printed(src), "14\n");
    // The loop variable and the block's `let` do not leak.
    let e = error("for i in 0..2 { let inner = i }\nprint i");
    assert_eq!(e.kind, ErrorKind::Name);
    let e = error("x += 1");
    assert!(e.message.contains("`x` is not defined"), "{}", e.message);
}

#[test]
fn blocks_are_expressions_with_their_own_scope() {
    assert_eq!(
        printed("let x = 1\nlet y = { let x = 5\n x * 2 }\nprint x, y"),
        "1 10\n"
    );
    assert_eq!(printed("print { let q = 1 }"), "none\n");
}

#[test]
fn short_circuit_skips_the_right_side() {
    // The right sides would fail if evaluated.
    assert_eq!(
        printed("print false and 1 / 0 == 1, true or undefined_call()"),
        "false true\n"
    );
}

#[test]
fn sweeps_bind_variables_and_earlier_columns() {
    let src = "let t = sweep a in [1, 2], b in 0..2 { let p = a * b\n prod: p, twice: prod * 2 }\n\
               print t.a, t.b, t.prod, t.twice";
    assert_eq!(
        printed(src),
        "[1, 1, 2, 2] [0, 1, 0, 1] [0, 1, 0, 2] [0, 2, 0, 4]\n"
    );
    let e = error("print sweep n in 0..2 { n: 1 }");
    assert!(
        e.message.contains("column `n` appears twice"),
        "{}",
        e.message
    );
    let e = error("print sweep n in 5 { m: 1 }");
    assert_eq!(e.kind, ErrorKind::Type);
}

#[test]
fn iteration_covers_lists_ranges_tables_and_texts() {
    let src = "for r in table([{a: 1}, {a: 2}]) { print r.a }\nfor s in text([\"A.\", \"B.\"]) { print s }";
    assert_eq!(printed(src), "1\n2\nA.\nB.\n");
    let e = error("for x in 3 { }");
    assert!(
        e.message.contains("cannot iterate over a number"),
        "{}",
        e.message
    );
}

#[test]
fn ranges_too_long_to_hold_say_so() {
    for src in [
        "print sum(0..1e15)",
        "print sweep n in 0..1e15 { x: 1 }",
        "print -(0..1e15)",
        "print log(0..1e15)",
    ] {
        let e = error(src);
        assert!(
            e.message.contains("has too many elements"),
            "{src}: {}",
            e.message
        );
        assert!(e.span.is_some(), "{src}: no span");
    }
    // Ranges that are never listed may be as long as they like; `for` walks them lazily.
    assert_eq!(
        printed("fn f() { for i in 0..1e15 { if i == 3 { return i } } }\nprint f()"),
        "3\n"
    );
    assert_eq!(
        printed("let r = 0..1e15\nprint len(r), r[-1], r[10..12]"),
        "1000000000000000 999999999999999 10..12\n"
    );
}

#[test]
fn indexing_and_slicing_check_their_bounds() {
    assert_eq!(
        printed("let xs = [1, 2, 3]\nprint xs[-3], xs[..0], xs[3..], xs[0..=2]"),
        "1 [] [] [1, 2, 3]\n"
    );
    for (src, message) in [
        (
            "print [1, 2][2]",
            "index 2 is out of range for a list of length 2",
        ),
        ("print [1, 2][-3]", "index -3 is out of range"),
        ("print [1, 2][..3]", "slice 0..3 is out of range"),
        ("print [1, 2][2..1]", "slice 2..1 is out of range"),
        ("print [1, 2][0.5]", "expected a whole number, found 0.5"),
        ("print 5[0]", "cannot index a number"),
        ("print [1][\"a\"]", "cannot index a list by name"),
    ] {
        let e = error(src);
        assert!(e.message.contains(message), "{src}: {}", e.message);
        assert!(e.span.is_some(), "{src}: no span");
    }
    assert_eq!(
        printed("let r = {a: 1}\nprint r[\"a\"], (0..10)[2..4], \"héllo\"[1]"),
        "1 2..4 é\n"
    );
}

#[test]
fn fields_of_records_tables_and_estimates() {
    assert_eq!(
        printed("let e = estimate(1, 0.5, 4)\nprint e.mean, e.stderr, e.n"),
        "1 0.5 4\n"
    );
    let e = error("let r = {count: 1}\nprint r.cuont");
    assert_eq!(e.help.as_deref(), Some("did you mean `count`?"));
    let e = error("print (1).x");
    assert_eq!(e.help.as_deref(), Some("it has no fields"));
}

#[test]
fn a_failed_comparison_labels_both_sides_and_the_operator() {
    let src = "let kl = 2\nassert kl <= 1";
    let e = error(src);
    assert_eq!(e.kind, ErrorKind::Assertion);
    assert_eq!(e.exit_code(), 1);
    assert_eq!(underlined(src, &e), "<=");
    assert_eq!(e.label.as_deref(), Some("2 <= 1 is false"));
    let notes: Vec<&str> = e.notes.iter().map(|(_, text)| text.as_str()).collect();
    assert_eq!(notes, ["left: 2", "right: 1"]);
    let e = error("assert [1, 5, 2] < 3, \"small\"");
    assert_eq!(e.message, "assertion failed: small");
    assert_eq!(e.label.as_deref(), Some("false at element 1: 5 < 3"));
    let e = error("assert 1");
    assert_eq!(e.kind, ErrorKind::Type);
}

#[test]
fn verdicts_are_recorded_for_the_run_record() {
    let (_, result, interp) = run_with("assert 1 < 2\nassert 2 < 1", |_| {});
    assert!(result.is_err());
    let verdicts: Vec<(&str, bool)> = interp
        .context()
        .verdicts
        .iter()
        .map(|v| (v.source.as_str(), v.passed))
        .collect();
    assert_eq!(verdicts, [("1 < 2", true), ("2 < 1", false)]);
    assert_eq!(interp.context().verdicts[1].location, "test.beb:2:1");
}

#[test]
fn statistical_assertions_need_an_estimate_comparison() {
    assert_eq!(
        printed("assert estimate(0.5, 0.1, 50) >= 0.4 at 95%\nprint 1"),
        "1\n"
    );
    let e = error("assert estimate(0.5, 0.01, 50) >= 0.6 at 95%");
    assert_eq!(e.kind, ErrorKind::Assertion);
    assert!(
        e.label.as_deref().is_some_and(|l| l.contains("refuted")),
        "{:?}",
        e.label
    );
    let e = error("assert true at 95%");
    assert!(e.message.contains("needs a comparison"), "{}", e.message);
}

#[test]
fn the_step_budget_stops_endless_loops() {
    let (_, result, _) = run_with("fn f(n) { for i in 0..100 { } f(n) }\nf(0)", |i| {
        i.fuel = Some(500)
    });
    let e = result.expect_err("the budget runs out");
    assert_eq!(e.kind, ErrorKind::Interrupted);
    assert_eq!(e.message, "step budget exhausted");
}

#[test]
fn an_interrupt_stops_the_run() {
    let (_, result, _) = run_with("for i in 0..10 { }", |i| {
        i.interrupt.store(true, Ordering::SeqCst)
    });
    assert_eq!(
        result.map_err(|e| e.kind).err(),
        Some(ErrorKind::Interrupted)
    );
}

#[test]
fn runaway_recursion_is_an_error() {
    // The interpreter recurses on the Rust stack, so give it room as the binary does.
    let handle = std::thread::Builder::new().stack_size(256 << 20).spawn(|| {
        let src = "fn down(n) { down(n + 1) }\ndown(0)";
        let e = error(src);
        (e.message.clone(), underlined(src, &e))
    });
    let (message, span) = handle
        .map(|h| h.join())
        .ok()
        .and_then(|r| r.ok())
        .expect("the thread finishes");
    assert!(message.contains("calls nested deeper than"), "{message}");
    assert_eq!(span, "down(n + 1)");
}

#[test]
fn return_outside_a_function_is_an_error() {
    let e = error("return 1");
    assert!(
        e.message.contains("`return` outside a function"),
        "{}",
        e.message
    );
}

#[test]
fn user_function_argument_errors_quote_the_signature() {
    for (src, message) in [
        ("fn f(a) { a }\nf(1, 2)", "f(a) takes 1 argument, 2 given"),
        (
            "fn f(a, b = 1) { a }\nf(b: 2)",
            "f(a, b = ...) is missing the argument `a`",
        ),
        ("fn f(a) { a }\nf(1, a: 2)", "`a` is given twice"),
        ("fn f(a) { a }\nf(c: 2)", "f(a) has no parameter `c`"),
        (
            "let g = |x| x\ng()",
            "lambda(x) is missing the argument `x`",
        ),
    ] {
        let e = error(src);
        assert_eq!(e.kind, ErrorKind::Argument, "{src}");
        assert!(e.message.contains(message), "{src}: {}", e.message);
    }
    let e = error("fn f(a) { a }\nf(1, 2)");
    assert_eq!(e.help.as_deref(), Some("signature: f(a)"));
    let e = error("print 3(1)");
    assert!(
        e.message.contains("a number is not a function"),
        "{}",
        e.message
    );
}

#[test]
fn unknown_names_suggest_a_close_one() {
    let e = error("let threshold = 1\nprint treshold");
    assert_eq!(e.message, "unknown name `treshold`");
    assert_eq!(e.help.as_deref(), Some("did you mean `threshold`?"));
}

#[test]
fn format_specs() {
    let n = Value::Num(1.23456);
    assert_eq!(format_with_spec(&n, ".2").ok().as_deref(), Some("1.23"));
    assert_eq!(format_with_spec(&n, ".1e").ok().as_deref(), Some("1.2e0"));
    assert_eq!(format_with_spec(&n, ".0").ok().as_deref(), Some("1"));
    let list = Value::list(vec![Value::Num(0.5), Value::Num(2.0)]);
    assert_eq!(
        format_with_spec(&list, ".1").ok().as_deref(),
        Some("[0.5, 2.0]")
    );
    for bad in ["3", ".x", ".3f", "", ".101"] {
        assert!(format_with_spec(&n, bad).is_err(), "{bad:?}");
    }
    assert!(format_with_spec(&n, ".100").is_ok());
    assert!(format_with_spec(&Value::str("s"), ".2").is_err());
}

#[test]
fn interpolation_formats_values_like_print() {
    assert_eq!(
        printed("let xs = [1, \"a\"]\nprint \"{xs} {none} {1e-7} {{a: 1}.a}\""),
        "[1, \"a\"] none 1e-7 1\n"
    );
}

#[test]
fn line_and_column_count_characters() {
    assert_eq!(line_col("ab\ncd", 0), (1, 1));
    assert_eq!(line_col("ab\ncd", 4), (2, 2));
    assert_eq!(line_col("é\nx", 3), (2, 1));
    assert_eq!(line_col("éa", 2), (1, 2));
    assert_eq!(line_col("ab", 99), (1, 3));
}

#[test]
fn whole_numbers_for_indices() {
    assert_eq!(integer(&Value::Num(-3.0)).ok(), Some(-3));
    assert!(integer(&Value::Num(0.5)).is_err());
    assert!(integer(&Value::Num(f64::INFINITY)).is_err());
    assert!(integer(&Value::Num(1e16)).is_err());
    assert!(integer(&Value::str("1")).is_err());
}

#[test]
fn check_reports_names_before_running() {
    let mut interp = Interp::new(1, Box::new(std::io::sink()));
    let src = "print later\nlet later = 1\nfn f(x) { x + y }\nlet g = |v| v + w\nfor i in 0..2 { print i }\nprint i";
    let file = interp.add_source("check.beb", src);
    let program = interp.parse(file).unwrap_or_else(|e| panic!("{e:?}"));
    let names: Vec<String> = interp
        .check(&program)
        .iter()
        .map(|e| e.message.clone())
        .collect();
    assert_eq!(
        names,
        [
            "unknown name `later`",
            "unknown name `y`",
            "unknown name `w`",
            "unknown name `i`"
        ]
    );
    let file = interp.add_source(
        "ok.beb",
        "fn f(a, b = a) { return a + b }\nprint f(1)\nimport bounds.*",
    );
    let program = interp.parse(file).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(interp.check(&program).is_empty());
    let file = interp.add_source("ret.beb", "let f = |x| { return x }\nreturn 1");
    let program = interp.parse(file).unwrap_or_else(|e| panic!("{e:?}"));
    let errors = interp.check(&program);
    assert_eq!(errors.len(), 1, "only the top-level return: {errors:?}");
    assert!(errors[0].message.contains("`return` outside a function"));
}

#[test]
fn imports_bind_modules() {
    assert_eq!(printed("import bounds as b\nprint type(b)"), "record\n");
    let e = error("import no_such_module");
    assert_eq!(e.message, "there is no module `no_such_module`");
    assert!(
        e.help.as_deref().is_some_and(|h| h.contains("bounds")),
        "{:?}",
        e.help
    );
}

#[test]
fn save_writes_inside_the_run_folder() {
    let dir = std::env::temp_dir().join(format!("beb-interp-save-{}", std::process::id()));
    let target = dir.clone();
    let (_, result, interp) = run_with(
        "save [1, 2] to \"sub/xs.json\"\nsave 1 to \"../escape.json\"",
        |i| i.out_dir = target,
    );
    let e = result.expect_err("the second save escapes");
    assert!(
        e.message.contains("outside the run folder"),
        "{}",
        e.message
    );
    let written = std::fs::read_to_string(dir.join("sub").join("xs.json")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(written.split_whitespace().collect::<String>(), "[1,2]");
    assert_eq!(interp.context().saved.len(), 1);
    let e = error("save 1 to 2");
    assert!(
        e.message.contains("needs a file name string"),
        "{}",
        e.message
    );
}

builtin! {
    /// Draws nothing; its seed stream is what the test looks at.
    Draw = draw(seed: Option<Seed> = none) -> "none"
}
impl Draw {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        Ok(Value::None)
    }
}

#[test]
fn streams_are_named_by_module_and_call_unless_seeded() {
    let builtin = Rc::new(Builtin::new("test", &Draw::NATIVE));
    let mut interp = Interp::new(42, Box::new(std::io::sink()));
    let file = interp.add_source("s.beb", "draw()\ndraw()");
    let at = |start: usize| Span::new(file, start, start + 6);
    let call = |ordinal: Option<u32>, span: Span| Call {
        span,
        builtin: builtin.clone(),
        site: ordinal.map(|ordinal| CallSite {
            callee: Rc::from("draw"),
            ordinal,
        }),
    };
    let name = |s: Stream| (s.root(), s.name().to_string());
    let first = name(interp.seed_stream(&call(Some(0), at(0)), None));
    let again = name(interp.seed_stream(&call(Some(0), at(0)), None));
    let other = name(interp.seed_stream(&call(Some(1), at(7)), None));
    assert_eq!(first, (42, "main:draw[0]#0".to_string()));
    assert_eq!(again, (42, "main:draw[0]#1".to_string()));
    assert_eq!(other, (42, "main:draw[1]#0".to_string()));
    // A module's calls are named after the module, never after its file's path.
    let module = interp.add_module_source("/some/where/setup.beb", "draw()", "setup");
    let in_module = name(interp.seed_stream(&call(Some(0), Span::new(module, 0, 6)), None));
    assert_eq!(in_module, (42, "setup:draw[0]#0".to_string()));
    // A function value called by a builtin has no call site of its own.
    let indirect = name(interp.seed_stream(&call(None, at(0)), None));
    assert_eq!(indirect, (42, "main:draw[indirect]#0".to_string()));
    // An explicit seed never moves: a number is a root seed, a string a stream name.
    assert_eq!(
        name(interp.seed_stream(&call(Some(3), at(0)), Some(&Seed::Root(7)))),
        (7, "draw".to_string())
    );
    assert_eq!(
        name(interp.seed_stream(
            &call(Some(3), at(0)),
            Some(&Seed::Named(Rc::from("prompts")))
        )),
        (42, "prompts".to_string())
    );
}

/// Named functions and closures stored in their own scope are reference cycles; dropping the
/// interpreter frees those scopes (a long-lived process running many scripts, a study or a
/// fuzzer, would otherwise keep every run's globals).
#[test]
fn dropping_the_interpreter_frees_scopes_closures_captured() {
    let src = "fn f(n) { if n == 0 { 0 } else { f(n - 1) } }\n\
               fn outer() { fn inner() { 1 }\n inner }\n\
               let g = outer()\n\
               let kept = [|x| x + 1, g]\n\
               for i in 0..50 { let h = || i }\n\
               f(3)";
    let (_, result, interp) = run_with(src, |_| {});
    assert!(result.is_ok(), "{result:?}");
    let globals = Rc::downgrade(interp.globals());
    let inner = match interp.globals().get("g") {
        Some(Value::Func(closure)) => Rc::downgrade(&closure.env),
        other => panic!("g is {other:?}"),
    };
    assert!(inner.upgrade().is_some());
    drop(interp);
    assert!(
        globals.upgrade().is_none(),
        "the globals outlived the interpreter"
    );
    assert!(
        inner.upgrade().is_none(),
        "outer's scope outlived the interpreter"
    );
}
