//! Golden tests: every `tests/golden/X.beb` runs as `beb run --seed 1 X.beb` from inside
//! `tests/golden/` (so diagnostics name the file by a relative path), and its stdout, stderr
//! and exit status must match `X.stdout` and `X.stderr` byte for byte. The first line of
//! `X.stderr` is `exit: N`, the exit status; the process's stderr follows.
//!
//! A case may instead give its whole command line in `X.args` (one argument per line), for
//! `--set`, `beb check`, or a script that does not exist.
//!
//! Runs write their run record into a scratch folder (`BEB_RUNS_DIR`); the line naming it,
//! which holds the time of the run, reads `beb: run record in <run folder>` in the expectations.
//!
//! After an intended change of output, regenerate the expectations with
//! `BEB_BLESS=1 cargo test --test golden` and review the diff.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    common::root().join("tests").join("golden")
}

/// Every case name: the stems of `*.beb` and `*.args` files.
fn cases(dir: &Path) -> BTreeSet<String> {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    entries
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let ext = path.extension()?.to_str()?;
            if ext == "beb" || ext == "args" {
                Some(path.file_stem()?.to_str()?.to_string())
            } else {
                None
            }
        })
        .collect()
}

fn arguments(dir: &Path, case: &str) -> Vec<String> {
    match fs::read_to_string(dir.join(format!("{case}.args"))) {
        Ok(text) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
        Err(_) => vec![
            "run".into(),
            "--seed".into(),
            "1".into(),
            format!("{case}.beb"),
        ],
    }
}

/// The run folder's name holds the time of the run: keep only that a record was written.
fn normalize(stderr: &str) -> String {
    stderr
        .lines()
        .map(|line| match line.strip_prefix("beb: run record in ") {
            Some(rest) => {
                let note = rest.find(" (").map_or("", |i| &rest[i..]);
                format!("beb: run record in <run folder>{note}\n")
            }
            None => format!("{line}\n"),
        })
        .collect()
}

/// (stdout, `exit: N` + stderr) of one case, its run folders going into `runs`.
fn run_case(dir: &Path, case: &str, runs: &Path) -> (String, String) {
    let output = common::beb(&arguments(dir, case))
        .current_dir(dir)
        .runs_dir(runs)
        .run();
    let code = output
        .code
        .map_or_else(|| "signal".to_string(), |c| c.to_string());
    let stderr = format!("exit: {code}\n{}", normalize(&output.stderr));
    (output.stdout, stderr)
}

/// The first differing line, for a readable failure message.
fn first_difference(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    for i in 0..e.len().max(a.len()) {
        let (x, y) = (e.get(i), a.get(i));
        if x != y {
            return format!(
                "line {}:\n  expected: {}\n  actual:   {}",
                i + 1,
                x.map_or("<end>".to_string(), |s| format!("{s:?}")),
                y.map_or("<end>".to_string(), |s| format!("{s:?}"))
            );
        }
    }
    "trailing newline differs".to_string()
}

#[test]
fn golden_outputs_match() {
    let dir = golden_dir();
    let bless = std::env::var_os("BEB_BLESS").is_some_and(|v| v == "1");
    let names = cases(&dir);
    assert!(
        names.len() >= 20,
        "expected the golden cases in {}, found {}",
        dir.display(),
        names.len()
    );
    // Where the cases' run folders go (removed after the test).
    let runs = common::scratch("golden-runs");
    let mut failures = Vec::new();
    for case in &names {
        let (stdout, stderr) = run_case(&dir, case, &runs);
        for (ext, actual) in [("stdout", &stdout), ("stderr", &stderr)] {
            let path = dir.join(format!("{case}.{ext}"));
            if bless {
                fs::write(&path, actual)
                    .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
                continue;
            }
            match fs::read_to_string(&path) {
                Ok(expected) if expected == *actual => {}
                Ok(expected) => failures.push(format!(
                    "{case}.{ext} differs, {}\n--- actual {ext} ---\n{actual}",
                    first_difference(&expected, actual)
                )),
                Err(e) => failures.push(format!(
                    "{case}.{ext}: cannot read ({e}); run with BEB_BLESS=1 to create it"
                )),
            }
        }
    }
    let _ = fs::remove_dir_all(&runs);
    assert!(
        failures.is_empty(),
        "{} golden mismatch(es) (BEB_BLESS=1 regenerates after an intended change):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Every expectation file belongs to a case, so a renamed script cannot leave a stale one behind.
#[test]
fn no_orphan_expectations() {
    let dir = golden_dir();
    let names = cases(&dir);
    let entries =
        fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext == "stdout" || ext == "stderr" {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            assert!(
                names.contains(stem),
                "{} has no matching .beb or .args case",
                path.display()
            );
        }
    }
}
