//! The interactive REPL in a real pseudo-terminal, as a user drives it: Ctrl-C stops a running
//! evaluation and keeps the session, lines typed ahead or pasted all run, an incomplete input
//! continues on a `...> ` prompt, Tab completes named arguments and `:load` paths.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rexpect::session::{PtySession, spawn_command};

/// `beb repl --seed 1` on a pseudo-terminal in `dir`, once its first prompt is shown.
fn session(dir: &Path) -> PtySession {
    let mut command = Command::new(env!("CARGO_BIN_EXE_beb"));
    command
        .args(["repl", "--seed", "1"])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("TERM", "xterm")
        .env("BEB_HISTORY", dir.join("history"))
        .env_remove("CLICOLOR_FORCE")
        .env_remove("FORCE_COLOR");
    let mut s = spawn_command(command, Some(20_000)).expect("start beb on a pty");
    s.exp_string("beb> ").expect("the first prompt");
    s
}

fn scratch() -> std::path::PathBuf {
    common::scratch("repl-pty")
}

#[test]
fn ctrl_c_stops_a_loop_and_the_session_keeps_its_variables() {
    let mut s = session(&scratch());
    s.send_line("let x = 41").unwrap();
    s.exp_string("beb> ").unwrap();
    s.send_line("let acc = 0").unwrap();
    s.exp_string("beb> ").unwrap();
    s.send_line("for i in 0..2000000000 { acc += 1 }").unwrap();
    std::thread::sleep(Duration::from_millis(700));
    s.send_control('c').unwrap();
    s.exp_string("interrupted").expect("Ctrl-C stops the loop");
    s.exp_string("beb> ").unwrap();
    s.send_line("x + 1").unwrap();
    s.exp_string("42").expect("the session kept x");
    s.send_line("acc > 0").unwrap();
    s.exp_string("true").expect("the loop ran until Ctrl-C");
    s.send_line(":quit").unwrap();
    s.exp_eof().unwrap();
}

#[test]
fn ctrl_c_stops_a_monte_carlo_estimate() {
    let mut s = session(&scratch());
    s.send_line("let a = sentences { \"a\": 0.5, \"b\": 0.5 }")
        .unwrap();
    s.exp_string("beb> ").unwrap();
    s.send_line("let b = sentences { \"a\": 0.9, \"b\": 0.1 }")
        .unwrap();
    s.exp_string("beb> ").unwrap();
    s.send_line("kl(a, b, sentences: 40, samples: 400000)")
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    s.send_control('c').unwrap();
    let before = s
        .exp_string("interrupted")
        .expect("Ctrl-C stops the estimate");
    assert!(!before.contains("n=400000"), "it ran to the end: {before}");
    s.exp_string("beb> ").unwrap();
    s.send_line("kl(a, b)").unwrap();
    s.exp_string("0.5108").expect("the models are still there");
}

#[test]
fn lines_typed_ahead_all_run() {
    let mut s = session(&scratch());
    s.send("100 + 1\n200 + 2\n300 + 3\n").unwrap();
    s.flush().unwrap();
    s.exp_string("101").unwrap();
    s.exp_string("202")
        .expect("the second line typed ahead runs");
    s.exp_string("303")
        .expect("the third line typed ahead runs");
}

#[test]
fn a_bracketed_paste_of_several_lines_runs_each_line() {
    let mut s = session(&scratch());
    s.send("\x1b[200~let y = 7\n500 + 5\ny * 100\n\x1b[201~\r")
        .unwrap();
    s.flush().unwrap();
    s.exp_string("505")
        .expect("the middle line of the paste prints its value");
    s.exp_string("700").unwrap();
}

#[test]
fn an_incomplete_input_continues_on_a_continuation_prompt() {
    let mut s = session(&scratch());
    s.send_line("fn add(u,").unwrap();
    s.exp_string("...> ").expect("a continuation prompt");
    s.send_line("  v) { u + v }").unwrap();
    s.exp_string("beb> ").unwrap();
    s.send_line("add(30, 12)").unwrap();
    s.exp_string("42").unwrap();
}

#[test]
fn tab_completes_named_arguments_and_load_paths() {
    let dir = scratch();
    common::write(&dir.join("experiment_one.beb"), "let loaded = 99\n");
    let mut s = session(&dir);
    s.send("kl(p, q, sam\t").unwrap();
    s.flush().unwrap();
    s.exp_string("samples: ")
        .expect("the named argument is completed");
    s.send_control('c').unwrap();
    s.exp_string("beb> ").unwrap();
    s.send(":load experiment_o\t").unwrap();
    s.flush().unwrap();
    s.exp_string("experiment_one.beb")
        .expect("the path is completed");
    s.send("\r").unwrap();
    s.flush().unwrap();
    s.exp_string("beb> ").unwrap();
    s.send_line("loaded - 1").unwrap();
    s.exp_string("98").unwrap();
}

#[test]
fn help_on_a_module_member_before_import_says_to_import() {
    let mut s = session(&scratch());
    s.send_line(":help bounds.lemma5_kl_bound").unwrap();
    s.exp_string("import bounds")
        .expect("a hint to import the module");
    s.send_line("import bounds").unwrap();
    s.exp_string("beb> ").unwrap();
    s.send_line(":help bounds.lemma5_kl_bound").unwrap();
    s.exp_string("lemma5_kl_bound(")
        .expect("its signature once imported");
}
