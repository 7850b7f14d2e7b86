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

/// examples/paper/setup.beb reads the behaviors, persona folder and ill-behaved sides it is
/// given with `--set`: a toy persona file's statements end up on the side asked for, and a
/// behavior with no file is a diagnostic naming the file it looked for.
#[test]
fn the_paper_setup_takes_its_behavior_from_the_command_line() {
    let Some(_) = common::stories() else { return };
    let dir = common::scratch("paper-setup");
    let setup = common::read(&common::root().join("examples/paper/setup.beb"));
    common::write(&dir.join("setup.beb"), &setup);
    common::write(
        &dir.join("probe.beb"),
        "import setup.*\n\
         for b in behaviors { print b.name, b.ill_side, len(b.ill.train), all(map(b.ill.train, |s| s[..3] == \"bad\")), all(map(b.good.train, |s| s[..4] == \"good\")) }\n",
    );
    let line = |statement: String, matching: bool| {
        format!(
            "{{\"statement\": \"{statement}\", \"answer_matching_behavior\": \"{}\"}}\n",
            if matching { " Yes" } else { " No" }
        )
    };
    // toy: the statements that show the behavior are the bad ones; kind: the other way round.
    let mut toy = String::new();
    let mut kind = String::new();
    for k in 0..10 {
        toy += &line(format!("bad statement {k}"), true);
        toy += &line(format!("good statement {k}"), false);
        kind += &line(format!("good statement {k}"), true);
        kind += &line(format!("bad statement {k}"), false);
    }
    common::write(&dir.join("personas").join("toy.jsonl"), &toy);
    common::write(&dir.join("personas").join("kind.jsonl"), &kind);
    let run = |out: &str, sets: &[&str]| {
        let mut args = vec!["run", "probe.beb", "--seed", "1", "--out", out];
        for s in sets {
            args.extend(["--set", s]);
        }
        common::beb_in(&dir, &args)
            .env("BEB_SHARED", common::shared_root())
            .env("BEB_FINETUNE_CACHE", dir.join("finetunes"))
            .run()
    };
    let out = run(
        "a",
        &[
            "behavior=toy,kind",
            "persona_dir=personas",
            "ill_side=matching,not_matching",
        ],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "toy matching 8 true true\nkind not_matching 8 true true\n"
    );
    // The wrong side for toy: its training statements are the good ones.
    let out = run(
        "b",
        &[
            "behavior=toy",
            "persona_dir=personas",
            "ill_side=not_matching",
        ],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "toy not_matching 8 false false\n");
    let missing = run("c", &["behavior=nowhere", "persona_dir=personas"]);
    assert_eq!(missing.code, Some(2), "{}", missing.stderr);
    assert!(
        missing.stderr.contains("personas/nowhere.jsonl"),
        "{}",
        missing.stderr
    );
    let side = run(
        "d",
        &["behavior=toy", "persona_dir=personas", "ill_side=sideways"],
    );
    assert_eq!(side.code, Some(2), "{}", side.stderr);
    assert!(
        side.stderr.contains("no field `sideways`"),
        "{}",
        side.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}
