//! Every `examples/**/*.beb` runs to completion: `beb run --seed 1 --out <temp folder>` from
//! the repository root, exit status 0 (except `examples/paper/`, which `.ci/run` runs).

mod common;

use std::time::Instant;

#[test]
fn every_example_runs_and_exits_zero() {
    let root = common::root();
    // examples/paper/ takes minutes and needs the shared model and data: .ci/run runs it
    // through examples/paper/run.sh instead.
    let mut found = common::files_under(&root.join("examples"), "beb");
    found.retain(|p| !p.starts_with(root.join("examples").join("paper")));
    assert!(
        !found.is_empty(),
        "no examples/**/*.beb found: the examples are part of the test suite"
    );
    let scratch = common::scratch("examples-test");
    let mut failures = Vec::new();
    for (i, script) in found.iter().enumerate() {
        let relative = script.strip_prefix(root).unwrap_or(script);
        let out = scratch.join(format!("{i}"));
        let started = Instant::now();
        let output = common::beb(&["run", "--seed", "1", "--out"])
            .arg(&out)
            .arg(relative)
            .current_dir(root)
            .run();
        eprintln!(
            "{}: {:?} in {:.1?}",
            relative.display(),
            output.code,
            started.elapsed()
        );
        if output.code != Some(0) {
            failures.push(format!(
                "{} exited with {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
                relative.display(),
                output.code,
                output.stdout,
                output.stderr
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
