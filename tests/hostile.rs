//! Hostile input from the hardening reproducers: each ends in a diagnostic and exit status 2,
//! never a panic (exit 3), an abort (134) or a hang, and nothing huge is written.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Run `script` with `beb run` (or `beb check`) in a fresh folder; (exit code, stderr, folder).
fn beb(command: &str, label: &str, script: &str) -> (Option<i32>, String, PathBuf) {
    let dir = common::scratch(label);
    common::write(&dir.join("s.beb"), script);
    let args: &[&str] = if command == "run" {
        &["run", "s.beb", "--seed", "1"]
    } else {
        &[command, "s.beb"]
    };
    let out = common::beb(args).current_dir(&dir).run();
    (out.code, out.stderr, dir)
}

/// `script` fails with a diagnostic containing `says` under both `check` and `run`, or only
/// `run` when `check_passes`.
fn refused(label: &str, script: &str, says: &str, check_passes: bool) {
    let (code, stderr, _) = beb("check", label, script);
    if check_passes {
        assert_eq!(code, Some(0), "{label}: check: {stderr}");
    } else {
        assert_eq!(code, Some(2), "{label}: check: {stderr}");
        assert!(stderr.contains(says), "{label}: check: {stderr}");
    }
    let started = Instant::now();
    let (code, stderr, _) = beb("run", label, script);
    assert_eq!(code, Some(2), "{label}: run: {stderr}");
    assert!(stderr.contains(says), "{label}: run: {stderr}");
    assert!(!stderr.contains("panicked"), "{label}: {stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{label}: took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_diagnostic_far_along_a_long_line_renders_clipped() {
    let script = format!("{}zz\n", " ".repeat(65_536));
    refused("long-line", &script, "unknown name `zz`", false);
    let (_, stderr, _) = beb("check", "long-line", &script);
    // The real position is named; the excerpt is cut to a window around it.
    assert!(stderr.contains("line 1, column 65537"), "{stderr}");
    assert!(
        stderr.lines().all(|l| l.chars().count() < 1_000),
        "{stderr}"
    );
    // A span after a long line still points at its own text.
    let script = format!("let a = \"{}\"\nprint b\n", "x".repeat(100_000));
    let (code, stderr, _) = beb("check", "long-line-2", &script);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("print b") && stderr.contains("unknown name `b`"),
        "{stderr}"
    );
}

#[test]
fn expressions_too_deep_for_the_stack_are_refused_when_parsed() {
    let says = "nests";
    refused(
        "minus-chain",
        &format!("print {}1\n", "-".repeat(757_031)),
        says,
        false,
    );
    refused(
        "not-chain",
        &format!("print {}true\n", "not ".repeat(300_000)),
        says,
        false,
    );
    refused(
        "pow-chain",
        &format!("print {}2\n", "2^".repeat(300_000)),
        says,
        false,
    );
    refused(
        "plus-chain",
        &format!("print 1{}\n", "+1".repeat(275_781)),
        says,
        false,
    );
    refused(
        "lambdas",
        &format!("let f = {}1\n", "|x| ".repeat(40_000)),
        says,
        false,
    );
    // Just under the limit still runs.
    let (code, stderr, _) = beb(
        "run",
        "plus-9990",
        &format!("print 1{}\n", "+1".repeat(9_990)),
    );
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_value_nested_too_deep_to_read_back_is_not_saved() {
    let script = "let x = []\nfor i in 0..30000 { x = [x] }\nsave x to \"x.json\"\n";
    refused("deep-save", script, "deeper than 128 levels", true);
    let (_, _, dir) = beb("run", "deep-save", script);
    let biggest = common::files_under(&dir, "json")
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .max()
        .unwrap_or(0);
    assert_eq!(biggest, 0, "a deep value was written");
    // 128 levels are fine.
    let (code, stderr, _) = beb(
        "run",
        "deep-save-ok",
        "let x = []\nfor i in 0..127 { x = [x] }\nsave x to \"x.json\"\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn plot_ranges_that_cannot_be_drawn_are_refused() {
    refused(
        "plot-wide",
        "plot [1e308, -1e308] to \"x.svg\"\n",
        "wider than a number can hold",
        true,
    );
    refused(
        "plot-decades",
        "plot [1, 1e300] to \"x.svg\" with {log_y: true}\n",
        "decades",
        true,
    );
    refused(
        "plot-narrow",
        "plot [1, 1 + 1e-14] to \"x.svg\"\n",
        "too narrow",
        true,
    );
    let (code, stderr, _) = beb(
        "run",
        "plot-150-decades",
        "plot [1, 1e150] to \"x.svg\" with {log_y: true}\nplot [1e307, -1e307] to \"y.svg\"\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_fit_without_residuals_is_an_error_not_a_nan() {
    refused(
        "fit-two-points",
        "print fit_kl_decay([0, 0, 0], points: 2).beta.stderr\n",
        "standard errors are unknown",
        true,
    );
}

#[test]
fn sizes_past_the_memory_budget_are_refused_before_allocating() {
    let world = "let m = sentences { \"a.\": 0.5 @ 1, \"b.\": 0.5 @ -1 }\n";
    for (label, line) in [
        ("count", "print len(sample(m, sentences: 2, count: 10^15))"),
        ("expect", "print expect(m, samples: 10^8)"),
        ("kl", "print kl(m, m, sentences: 2, samples: 10^9)"),
        (
            "var",
            "print logratio_var(m, m, sentences: 2, samples: 10^9)",
        ),
        ("turns", "print conversation(m, m, turns: 2^32 + 1)"),
        ("sentences", "print len(sample(m, sentences: 10^12))"),
        (
            "concat",
            "let x = [1]\nfor i in 0..100 { x = concat(x, x) }",
        ),
        ("string", "let x = \"ab\"\nfor i in 0..100 { x = x + x }"),
    ] {
        let dir = common::scratch(&format!("budget-{label}"));
        common::write(&dir.join("s.beb"), &format!("{world}{line}\n"));
        let out = common::beb(&[
            "run",
            "s.beb",
            "--seed",
            "1",
            "--no-cache",
            "--max-memory",
            "1G",
        ])
        .current_dir(&dir)
        .run();
        assert_eq!(out.code, Some(2), "{label}: {}", out.stderr);
        assert!(
            out.stderr.contains("would need about") && out.stderr.contains("memory budget"),
            "{label}: {}",
            out.stderr
        );
    }
    // Within the budget the same calls run.
    let dir = common::scratch("budget-fits");
    common::write(
        &dir.join("s.beb"),
        &format!("{world}print kl(m, m, sentences: 2, samples: 10^4)\n"),
    );
    let out = common::beb(&[
        "run",
        "s.beb",
        "--seed",
        "1",
        "--no-cache",
        "--max-memory",
        "1G",
    ])
    .current_dir(&dir)
    .run();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}
