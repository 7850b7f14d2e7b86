//! `read(path)`: what `save` wrote reads back as the same values; reads stay inside the run
//! folder, the script's folder and `--allow-read` paths; bad files are diagnostics with spans.

mod common;

use std::path::Path;

use common::{Output, scratch, write};

/// `beb run SCRIPT --seed 1 --out out` in `dir`, extra arguments after.
fn run(dir: &Path, script: &str, extra: &[&str]) -> Output {
    write(&dir.join("script.beb"), script);
    let mut args = vec!["run", "script.beb", "--seed", "1", "--out", "out"];
    args.extend_from_slice(extra);
    common::beb_in(dir, &args).run()
}

fn ok(dir: &Path, script: &str, extra: &[&str]) -> String {
    let out = run(dir, script, extra);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    out.stdout
}

/// A run that fails with exit status 2 and a diagnostic; its stderr.
fn refused(dir: &Path, script: &str, extra: &[&str]) -> String {
    let out = run(dir, script, extra);
    assert_eq!(out.code, Some(2), "{}\n{}", out.stdout, out.stderr);
    out.stderr
}

#[test]
fn saved_values_read_back_equal() {
    let dir = scratch("read-round-trip");
    let stdout = ok(
        &dir,
        r#"let curve = sweep n in 0..=3 {
  kl: estimate(9.2 * exp(-1.6 * n), 0.02, 40),
  bound: 9.3 * exp(-1.55 * n),
  note: if n == 1 { none } else { "n={n}, \"quoted\"" },
  ok: n < 2,
}
save curve to "curve.csv"
print read("curve.csv") == curve
let doc = {name: "run", xs: [1, 2.5, -3e-300, -log(0)], nested: {flag: false, gone: none},
           fit: estimate(1.25, 0.125, 20), rows: [{a: 1}, {a: 2}]}
save doc to "doc.json"
save doc to "doc.yaml"
print read("doc.json") == doc, read("doc.yaml") == doc
save [1, 2, 3.5] to "list.csv"
print read("list.csv") == [1, 2, 3.5]
save estimate(0.5, 0.01, 100) to "e.json"
print read("e.json") == estimate(0.5, 0.01, 100)
save curve to "curve.json"
print read("curve.json")[1].kl == curve.kl[1], len(read("curve.json"))
"#,
        &[],
    );
    assert_eq!(stdout, "true\ntrue true\ntrue\ntrue\ntrue 4\n");
}

#[test]
fn csv_cells_become_numbers_none_and_strings() {
    let dir = scratch("read-csv");
    write(
        &dir.join("data.csv"),
        "item,score,label\n1,0.5,yes\n2,,\"a, b\"\n3,1e-3,none\n",
    );
    let stdout = ok(
        &dir,
        "let t = read(\"data.csv\")\nprint t.score\nprint t.label\nprint t.item[0] + 1\n",
        &[],
    );
    assert_eq!(stdout, "[0.5, none, 0.001]\n[\"yes\", \"a, b\", none]\n2\n");
}

#[test]
fn the_run_folder_is_read_before_the_script_folder() {
    let dir = scratch("read-order");
    write(&dir.join("x.json"), "{\"from\": \"script folder\"}\n");
    let script = "print read(\"x.json\").from\nsave {from: \"run folder\"} to \"x.json\"\nprint read(\"x.json\").from\n";
    assert_eq!(ok(&dir, script, &[]), "script folder\nrun folder\n");
}

#[test]
fn reads_outside_are_refused_unless_allowed() {
    let dir = scratch("read-confine");
    let outside = scratch("read-outside");
    let secret = outside.join("secret.csv");
    write(&secret, "password\nhunter2\n");
    let shown = secret.display().to_string();

    // An absolute path outside.
    let script = format!("print read({shown:?})\n");
    let err = refused(&dir, &script, &[]);
    assert!(err.contains("refusing to read"), "{err}");
    assert!(err.contains("--allow-read"), "{err}");
    assert!(
        err.contains("╭─[script.beb:1:12]"),
        "the span is the argument: {err}"
    );
    assert!(!err.contains("hunter2"), "never the file's content: {err}");

    // `..` out of the script's folder.
    let name = outside
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let escape = format!("../{}/secret.csv", name.unwrap_or_default());
    let err = refused(&dir, &format!("print read({escape:?})\n"), &[]);
    assert!(err.contains("`..` leads outside"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");

    // A symbolic link inside that points outside.
    #[cfg(unix)]
    {
        let _ = std::os::unix::fs::symlink(&secret, dir.join("link.csv"));
        let err = refused(&dir, "print read(\"link.csv\")\n", &[]);
        assert!(err.contains("symbolic link"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let _ = std::os::unix::fs::symlink(&outside, dir.join("folder"));
        let err = refused(&dir, "print read(\"folder/secret.csv\")\n", &[]);
        assert!(err.contains("symbolic link"), "{err}");
    }

    // --allow-read admits the file, or its folder.
    let folder = outside.display().to_string();
    for allowed in [shown.as_str(), folder.as_str()] {
        let stdout = ok(&dir, &script, &["--allow-read", allowed]);
        assert!(stdout.contains("hunter2"), "{stdout}");
        let stdout = ok(
            &dir,
            &format!("print read({escape:?})\n"),
            &["--allow-read", allowed],
        );
        assert!(stdout.contains("hunter2"), "{stdout}");
    }
    // A missing file outside is refused, not reported missing (nothing is told about it).
    let err = refused(
        &dir,
        &format!(
            "print read({:?})\n",
            outside.join("none.csv").display().to_string()
        ),
        &[],
    );
    assert!(err.contains("refusing to read"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&outside);
}

#[test]
fn a_study_allows_reads_with_allow_read() {
    let dir = scratch("read-study");
    let outside = scratch("read-study-data");
    write(&outside.join("alpha.json"), "{\"alpha\": 0.25}\n");
    let target = outside.join("alpha.json").display().to_string();
    write(
        &dir.join("s.beb"),
        &format!("print read({target:?}).alpha\n"),
    );
    write(
        &dir.join("study.yaml"),
        &format!(
            "script: s.beb\nout: out\nallow_read: [{:?}]\n",
            outside.display().to_string()
        ),
    );
    let out = common::beb_in(&dir, &["study", "run", "study.yaml"]).run();
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    write(&dir.join("study.yaml"), "script: s.beb\nout: out2\n");
    let out = common::beb_in(&dir, &["study", "run", "study.yaml"]).run();
    assert_ne!(out.code, Some(0), "without allow_read: {}", out.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&outside);
}

#[test]
fn bad_files_are_diagnostics_at_the_argument() {
    let dir = scratch("read-errors");
    write(&dir.join("bad.csv"), "a,b\n1,2\n3\n");
    write(&dir.join("bad.json"), "{\"a\": [1,\n  2,]}\n");
    write(&dir.join("bad.yaml"), "a: [1, 2\nb: 3\n");
    write(&dir.join("notes.txt"), "hello\n");
    for (name, expected) in [
        ("missing.csv", "there is no file \"missing.csv\""),
        ("notes.txt", "cannot read a `.txt` file"),
        (
            "bad.csv",
            "\"bad.csv\" is not valid CSV: line 3: a row has 1 fields where the header has 2",
        ),
        ("bad.json", "\"bad.json\" is not valid JSON: line 2, column"),
        ("bad.yaml", "\"bad.yaml\" is not valid YAML: line "),
    ] {
        let err = refused(&dir, &format!("let x = 1\nprint read({name:?})\n"), &[]);
        assert!(err.contains(expected), "{name}: {err}");
        assert!(err.contains("╭─[script.beb:2:12]"), "{name}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_repl_reads_where_allow_read_says() {
    let dir = scratch("read-repl");
    let outside = scratch("read-repl-data");
    write(&outside.join("x.json"), "{\"a\": 7}\n");
    let input = format!(
        "read({:?}).a\n",
        outside.join("x.json").display().to_string()
    );
    let refused = common::beb(&["repl", "--seed", "1"])
        .current_dir(&dir)
        .stdin(&input)
        .run();
    assert_eq!(refused.code, Some(2), "{}", refused.stdout);
    assert!(
        refused.stderr.contains("refusing to read"),
        "{}",
        refused.stderr
    );
    let folder = outside.display().to_string();
    let allowed = common::beb(&["repl", "--seed", "1", "--allow-read", &folder])
        .current_dir(&dir)
        .stdin(&input)
        .run();
    assert_eq!(allowed.code, Some(0), "{}", allowed.stderr);
    assert_eq!(allowed.stdout, "7\n");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&outside);
}

/// Every file a script names is confined like `read`: data, labels and model files outside
/// the script's folder, the run folder and the shared folder are refused before they are
/// opened, and the refusal never shows their content.
#[test]
fn every_file_a_script_names_is_confined() {
    let dir = scratch("read-builtins");
    let outside = scratch("read-builtins-outside");
    let secret = outside.join("secret.txt");
    write(&secret, "text,label\nhunter2,1\n");
    let shown = secret.display().to_string();
    for call in [
        format!("lines({shown:?})"),
        format!("persona({shown:?})"),
        format!("jsonl({shown:?})"),
        format!("labels({shown:?})"),
        format!("load({shown:?})"),
        "lines(\"/proc/self/environ\")".to_string(),
    ] {
        let err = refused(&dir, &format!("let x = {call}\nprint x\n"), &[]);
        assert!(err.contains("refusing to read"), "{call}: {err}");
        assert!(err.contains("╭─[script.beb:1:"), "{call}: {err}");
        assert!(!err.contains("hunter2"), "{call}: {err}");
    }
    let allowed = ok(
        &dir,
        &format!("print lines({shown:?})\n"),
        &["--allow-read", &outside.display().to_string()],
    );
    assert!(allowed.contains("hunter2"), "{allowed}");
    write(&dir.join("mine.txt"), "first\nsecond\n");
    assert_eq!(
        ok(&dir, "print lines(\"mine.txt\")\n", &[]),
        "[\"first\", \"second\"]\n"
    );
    if let Some(readme) = common::shared("README.md") {
        let lines = std::fs::read_to_string(readme)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count();
        let stdout = ok(&dir, "print len(lines(\"$BEB_SHARED/README.md\"))\n", &[]);
        assert_eq!(stdout.trim(), lines.to_string());
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&outside);
}

/// `manifest.yaml` and `results.yaml` in the run folder are the run record's: a script that
/// saved over them would lose its own provenance.
#[test]
fn the_run_records_files_are_reserved() {
    let dir = scratch("read-reserved");
    for name in ["manifest.yaml", "results.yaml", "./results.yaml"] {
        let err = refused(&dir, &format!("let x = 1\nsave [1, 2] to {name:?}\n"), &[]);
        assert!(err.contains("the run record writes"), "{name}: {err}");
        let manifest =
            std::fs::read_to_string(dir.join("out").join("manifest.yaml")).unwrap_or_default();
        assert!(manifest.contains("status: failed"), "{name}: {manifest}");
    }
    ok(&dir, "save [1] to \"sub/manifest.yaml\"\n", &[]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A study file's `out:` stays inside the study's folder unless `--allow-write` names it;
/// `--out` on the command line goes anywhere.
#[test]
fn a_study_file_writes_only_inside_its_folder() {
    let dir = scratch("study-out");
    let outside = scratch("study-out-elsewhere");
    write(&dir.join("s.beb"), "print 1\n");
    let escape = format!(
        "../{}",
        outside
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    write(&outside.join("report.csv"), "keep me\n");
    write(
        &dir.join("study.yaml"),
        &format!("script: s.beb\nout: {escape}\n"),
    );
    for command in ["run", "report"] {
        let out = common::beb_in(&dir, &["study", command, "study.yaml"]).run();
        assert_eq!(out.code, Some(2), "{command}: {}", out.stderr);
        assert!(
            out.stderr.contains("leads outside the study file's folder"),
            "{command}: {}",
            out.stderr
        );
    }
    assert_eq!(common::read(&outside.join("report.csv")), "keep me\n");
    let allow = outside.display().to_string();
    for command in ["run", "report"] {
        let out = common::beb_in(
            &dir,
            &["study", command, "study.yaml", "--allow-write", &allow],
        )
        .run();
        assert_eq!(out.code, Some(0), "{command}: {}", out.stderr);
    }
    assert_ne!(common::read(&outside.join("report.csv")), "keep me\n");
    write(&dir.join("study.yaml"), "script: s.beb\nout: results\n");
    let out = common::beb_in(&dir, &["study", "run", "study.yaml"]).run();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(dir.join("results").is_dir());
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&outside);
}
