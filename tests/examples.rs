//! Every `examples/**/*.beb` runs to completion: `beb run --seed 1 --out <temp folder>` from
//! the repository root, exit status 0 (except `examples/paper/`, which `.ci/run` runs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn scripts(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            // examples/paper/ takes minutes and needs the shared model and data: .ci/run runs
            // it through examples/paper/run.sh instead.
            if path.file_name().is_some_and(|n| n == "paper") {
                continue;
            }
            scripts(&path, out);
        } else if path.extension().is_some_and(|e| e == "beb") {
            out.push(path);
        }
    }
}

#[test]
fn every_example_runs_and_exits_zero() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    scripts(&root.join("examples"), &mut found);
    found.sort();
    assert!(
        !found.is_empty(),
        "no examples/**/*.beb found: the examples are part of the test suite"
    );
    let scratch = std::env::temp_dir().join(format!("beb-examples-test-{}", std::process::id()));
    let mut failures = Vec::new();
    for (i, script) in found.iter().enumerate() {
        let relative = script.strip_prefix(root).unwrap_or(script);
        let out = scratch.join(format!("{i}"));
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_beb"))
            .args(["run", "--seed", "1", "--out"])
            .arg(&out)
            .arg(relative)
            .current_dir(root)
            .env("NO_COLOR", "1")
            .output()
            .unwrap_or_else(|e| panic!("cannot start beb: {e}"));
        eprintln!(
            "{}: {:?} in {:.1?}",
            relative.display(),
            output.status.code(),
            started.elapsed()
        );
        if !output.status.success() {
            failures.push(format!(
                "{} exited with {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
                relative.display(),
                output.status.code(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        } else if !out.join("manifest.yaml").is_file() {
            failures.push(format!(
                "{}: no run record written to {}",
                relative.display(),
                out.display()
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(
        failures.is_empty(),
        "{} of {} examples failed:\n\n{}",
        failures.len(),
        found.len(),
        failures.join("\n\n")
    );
}
