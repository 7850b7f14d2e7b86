//! Results that outlive a run: run records, plots, atomic writes, confinement to the run
//! folder, the cache, studies (resume, shards, report, invalid files) and `beb diff`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Output, read, scratch, write};

fn beb(dir: &Path, args: &[&str]) -> Output {
    common::beb_in(dir, args).run()
}

fn yaml(path: &Path) -> serde_json::Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ----- run records -----

#[test]
fn a_run_writes_its_record_values_and_plots() {
    let dir = scratch("record");
    write(
        &dir.join("script.beb"),
        "let alpha = param(\"alpha\", 0.5)\n\
         let curve = sweep n in 0..5 { kl: estimate(exp(-n), 0.01, 50), bound: 2 * exp(-n) }\n\
         save curve to \"curve.csv\"\n\
         save {alpha: alpha, fit: estimate(1.5, 0.1, 20)} to \"fit.json\"\n\
         plot curve.kl, curve.bound to \"kl.svg\" with {title: \"A title\", x: \"length\", y: \"KL (nats)\", log_y: true}\n\
         plot curve.kl to \"kl.png\"\n\
         assert curve.kl <= curve.bound at 95%\n",
    );
    let out = beb(
        &dir,
        &[
            "run",
            "script.beb",
            "--seed",
            "7",
            "--set",
            "alpha=0.25",
            "--out",
            "run",
            "--threads",
            "3",
        ],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let run = dir.join("run");
    let manifest = yaml(&run.join("manifest.yaml"));
    assert_eq!(manifest["root_seed"], 7);
    assert_eq!(manifest["status"], "completed");
    assert_eq!(manifest["sets"]["alpha"], "0.25");
    assert_eq!(manifest["script"], "script.beb");
    assert_eq!(manifest["script_sha256"].as_str().map(str::len), Some(64));
    assert_eq!(manifest["beb_version"], env!("CARGO_PKG_VERSION"));
    for key in ["started", "finished", "machine", "cache", "inputs", "files"] {
        assert!(!manifest[key].is_null(), "manifest lacks {key}: {manifest}");
    }
    assert_eq!(manifest["compute"]["threads"], 3);
    assert!(
        manifest["compute"]["f32_kernel"]
            .as_str()
            .is_some_and(|k| k.starts_with("batch-invariant")),
        "{manifest}"
    );
    assert!(
        manifest["started"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert_eq!(manifest["cache"]["hits"], 0);
    let results = yaml(&run.join("results.yaml"));
    assert_eq!(results["saved"]["fit.json"]["alpha"], 0.25);
    assert_eq!(results["saved"]["fit.json"]["fit"]["n"], 20);
    assert_eq!(results["plots"], serde_json::json!(["kl.svg", "kl.png"]));
    let verdict = &results["assertions"][0];
    assert_eq!(verdict["passed"], true);
    assert!(
        verdict["detail"]
            .as_str()
            .is_some_and(|d| d.contains("Holm–Bonferroni")),
        "{verdict}"
    );
    let svg = read(&run.join("kl.svg"));
    for label in ["A title", "length", "KL (nats)", "bound"] {
        assert!(svg.contains(label), "the SVG lacks {label}");
    }
    let png = std::fs::read(run.join("kl.png")).unwrap_or_default();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let csv = read(&run.join("curve.csv"));
    assert!(
        csv.starts_with("n,kl,kl_stderr,kl_n,kl_lo95,kl_hi95,bound\n"),
        "{csv}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn runs_without_out_get_a_fresh_timestamped_folder() {
    let dir = scratch("fresh");
    write(&dir.join("hello.beb"), "print 1\n");
    let first = beb(&dir, &["run", "hello.beb", "--seed", "3"]);
    let second = beb(&dir, &["run", "hello.beb", "--seed", "3"]);
    assert_eq!((first.code, second.code), (Some(0), Some(0)));
    let mut folders: Vec<String> = std::fs::read_dir(dir.join("runs"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    folders.sort();
    assert_eq!(folders.len(), 2, "{folders:?}");
    assert!(
        folders[0].starts_with("hello-") && folders[0].contains("-seed3"),
        "{folders:?}"
    );
    assert!(first.stderr.contains("beb: run record in "));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failed_assertion_is_recorded_with_estimate_interval_n_and_stream() {
    let dir = scratch("verdict");
    write(
        &dir.join("claim.beb"),
        "let xs = [0.1, 0.3, 0.2, 0.25, 0.15, 0.2, 0.22, 0.18]\n\
         assert sample_mean(xs) >= 0.5 at 95%\n",
    );
    let out = beb(&dir, &["run", "claim.beb", "--seed", "1", "--out", "run"]);
    assert_eq!(out.code, Some(1));
    let results = yaml(&dir.join("run").join("results.yaml"));
    let detail = results["assertions"][0]["detail"].as_str().unwrap_or("");
    for part in [
        "estimate 0.2",
        "(n=8)",
        "95% interval [",
        "claim >= 0.5",
        "seed stream",
        "refuted",
    ] {
        assert!(detail.contains(part), "{part}: {detail}");
    }
    let manifest = yaml(&dir.join("run").join("manifest.yaml"));
    assert_eq!(manifest["status"], "assertion failed");
    let _ = std::fs::remove_dir_all(&dir);
}

// ----- atomic writes and interruption -----

/// A script that rewrites a large CSV and a JSON file without end.
const REWRITER: &str = "let big = sweep i in 0..20000 { a: i, b: i * 2, c: \"row {i}\" }\n\
                        let k = 0\n\
                        for step in 0..100000000 {\n  k += 1\n  save big to \"big.csv\"\n  save {k: k, rows: len(big)} to \"k.json\"\n}\n";

fn wait_for(path: &Path, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Every visible file of the run folder is complete.
fn check_complete_files(run: &Path) {
    let csv = read(&run.join("big.csv"));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 20001, "big.csv was cut short");
    assert_eq!(lines[0], "i,a,b,c");
    assert_eq!(lines[20000], "19999,19999,39998,row 19999");
    assert!(csv.ends_with('\n'));
    let json: serde_json::Value = serde_json::from_str(&read(&run.join("k.json")))
        .unwrap_or_else(|e| panic!("k.json is not whole: {e}"));
    assert_eq!(json["rows"], 20000);
    if run.join("manifest.yaml").exists() {
        yaml(&run.join("manifest.yaml"));
    }
}

#[test]
fn a_killed_run_leaves_no_partial_file() {
    let dir = scratch("killed");
    write(&dir.join("rewrite.beb"), REWRITER);
    for (attempt, delay) in [150u64, 400, 900].into_iter().enumerate() {
        let run = dir.join(format!("run{attempt}"));
        let child = common::beb(&["run", "rewrite.beb", "--seed", "1", "--out"])
            .arg(&run)
            .current_dir(&dir)
            .spawn();
        assert!(wait_for(&run.join("k.json"), Duration::from_secs(60)));
        std::thread::sleep(Duration::from_millis(delay));
        child.kill(); // SIGKILL: no chance to clean up
        check_complete_files(&run);
        // The manifest written at the start says the run never finished.
        let manifest = yaml(&run.join("manifest.yaml"));
        assert_eq!(manifest["status"], "running");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_the_run_and_the_record_says_so() {
    let dir = scratch("interrupt");
    write(&dir.join("rewrite.beb"), REWRITER);
    let run = dir.join("run");
    let child = common::beb(&["run", "rewrite.beb", "--seed", "1", "--out"])
        .arg(&run)
        .current_dir(&dir)
        .spawn();
    assert!(wait_for(&run.join("k.json"), Duration::from_secs(60)));
    std::thread::sleep(Duration::from_millis(200));
    assert!(child.interrupt());
    let out = child.wait();
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    let stderr = &out.stderr;
    assert!(stderr.contains("interrupted"), "{stderr}");
    let manifest = yaml(&run.join("manifest.yaml"));
    assert_eq!(manifest["status"], "interrupted");
    assert!(
        manifest["note"]
            .as_str()
            .is_some_and(|n| n.contains("Ctrl-C"))
    );
    let results = yaml(&run.join("results.yaml"));
    assert_eq!(results["status"], "interrupted");
    assert!(
        results["saved"]["k.json"]["k"]
            .as_f64()
            .is_some_and(|k| k >= 1.0)
    );
    check_complete_files(&run);
    let _ = std::fs::remove_dir_all(&dir);
}

// ----- confinement -----

#[test]
fn scripts_cannot_write_outside_their_run_folder() {
    let dir = scratch("confine");
    let outside = dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap_or_else(|e| panic!("{e}"));
    let absolute = outside.join("abs.json");
    let cases = [
        "save 1 to \"../escape.json\"".to_string(),
        "save 1 to \"sub/../../escape.json\"".to_string(),
        format!("save 1 to {:?}", absolute.display().to_string()),
        "plot [1, 2] to \"../escape.svg\"".to_string(),
        "save 1 to \"link/escape.json\"".to_string(),
    ];
    for (i, script) in cases.iter().enumerate() {
        let run = dir.join(format!("run{i}"));
        std::fs::create_dir_all(&run).unwrap_or_else(|e| panic!("{e}"));
        #[cfg(unix)]
        let _ = std::os::unix::fs::symlink(&outside, run.join("link"));
        write(&dir.join("escape.beb"), &format!("{script}\n"));
        let out = beb(&dir, &["run", "escape.beb", "--out", &format!("run{i}")]);
        let stderr = &out.stderr;
        assert_eq!(out.code, Some(2), "{script}: {stderr}");
        assert!(stderr.contains("refusing to write"), "{script}: {stderr}");
        assert!(stderr.contains("--allow-write"), "{script}: {stderr}");
    }
    let leaked: Vec<_> = std::fs::read_dir(&outside)
        .map(|e| e.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(leaked.is_empty(), "files written outside: {leaked:?}");
    assert!(!dir.join("escape.json").exists() && !dir.join("escape.svg").exists());
    // The user may allow a folder explicitly.
    write(
        &dir.join("allowed.beb"),
        &format!("save 1 to {:?}\n", absolute.display().to_string()),
    );
    let out = beb(
        &dir,
        &[
            "run",
            "allowed.beb",
            "--out",
            "run-ok",
            "--allow-write",
            "outside",
        ],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(absolute.is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn beb_has_no_builtin_that_runs_programs_or_opens_connections() {
    let files = common::files_under(&common::root().join("src"), "rs");
    assert!(!files.is_empty());
    // The one way out is the served-model client, behind `--allow-net` (tests/server.rs).
    let client = common::root().join("src/lm/server/http.rs");
    // `beb bench` starts reference programs (transformers, llama.cpp) and child processes of
    // beb itself; no script reaches it (tests/layers.rs keeps eval below bench).
    let bench = common::root().join("src/bench");
    for file in files.into_iter().filter(|f| !f.starts_with(&bench)) {
        let code = read(&file);
        assert!(
            file == client || !code.contains("ureq::"),
            "{} uses the HTTP client: only src/lm/server/http.rs may",
            file.display()
        );
        for forbidden in [
            "process::Command",
            "std::net",
            "TcpStream",
            "UdpSocket",
            "TcpListener",
        ] {
            assert!(
                !code.contains(forbidden),
                "{} uses {forbidden}: scripts must not be able to run programs or reach the network",
                file.display()
            );
        }
    }
}

// ----- the cache -----

#[test]
fn cache_hits_give_byte_identical_results() {
    use beb::cache::{Cache, CacheKey};
    use rand::{Rng, SeedableRng};
    let dir = scratch("cache");
    let key = || {
        CacheKey::new("sample")
            .weights("0123abcd")
            .tokens("prompt", &[1, 2, 3])
            .float("temperature", 0.7)
            .stream(1, "test.beb:3:9#0")
            .index(4)
    };
    // A computation whose answer is expensive (here: random, so a recomputation would differ).
    let expensive = || -> Result<Vec<f64>, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(nanos);
        Ok((0..1000).map(|_| rng.random::<f64>() * 1e-300).collect())
    };
    let first = Cache::at(&dir);
    let computed = first.get_or_compute(&key(), expensive);
    assert_eq!(first.stats().misses, 1);
    // A later run (a fresh process, here a fresh cache on the same folder) reuses the answer.
    let second = Cache::at(&dir);
    let mut called = false;
    let reused: Result<Vec<f64>, String> = second.get_or_compute(&key(), || {
        called = true;
        expensive()
    });
    assert!(!called, "a hit must not recompute");
    assert_eq!(second.stats().hits, 1);
    let bits = |v: &Result<Vec<f64>, String>| -> Vec<u64> {
        v.as_ref()
            .map(|xs| xs.iter().map(|x| x.to_bits()).collect())
            .unwrap_or_default()
    };
    assert_eq!(bits(&computed), bits(&reused));
    assert_eq!(bits(&computed).len(), 1000);
    // Another sample index is another answer; a disabled cache always computes.
    assert!(second.get::<Vec<f64>>(&key().index(5)).is_none());
    let off = Cache::disabled();
    let mut calls = 0;
    for _ in 0..2 {
        let _ = off.get_or_compute(&key(), || {
            calls += 1;
            expensive()
        });
    }
    assert_eq!(calls, 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_entry_swapped_with_another_is_a_miss_not_a_wrong_answer() {
    use beb::cache::{Cache, CacheKey};
    let dir = scratch("cache-swap");
    let (a, b) = (
        CacheKey::new("score").index(1),
        CacheKey::new("score").index(2),
    );
    let cache = Cache::at(&dir);
    cache.put(&a, &vec![0.027f64, 0.028]);
    cache.put(&b, &vec![0.0f64, 1.3]);
    let path = |k: &CacheKey| dir.join(&k.hex()[..2]).join(format!("{}.bin", k.hex()));
    let (pa, pb) = (path(&a), path(&b));
    let (ba, bb) = (
        std::fs::read(&pa).expect("entry a"),
        std::fs::read(&pb).expect("entry b"),
    );
    // Both entries are intact files; only their places are exchanged.
    std::fs::write(&pa, &bb).expect("swap");
    std::fs::write(&pb, &ba).expect("swap");
    let fresh = Cache::at(&dir);
    assert_eq!(fresh.get::<Vec<f64>>(&a), None);
    assert_eq!(fresh.get::<Vec<f64>>(&b), None);
    assert_eq!(fresh.stats().misses, 2);
    // Put back where they belong, they answer again.
    std::fs::write(&pa, &ba).expect("restore");
    assert_eq!(fresh.get::<Vec<f64>>(&a), Some(vec![0.027, 0.028]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_manifest_reports_the_cache() {
    let dir = scratch("cache-manifest");
    write(&dir.join("s.beb"), "print 1\n");
    let out = beb(&dir, &["run", "s.beb", "--seed", "1", "--out", "a"]);
    assert_eq!(out.code, Some(0));
    let m = yaml(&dir.join("a").join("manifest.yaml"));
    assert_eq!(m["cache"]["enabled"], true);
    assert!(
        m["cache"]["dir"]
            .as_str()
            .is_some_and(|d| d.ends_with(".cache"))
    );
    let out = beb(
        &dir,
        &["run", "s.beb", "--seed", "1", "--out", "b", "--no-cache"],
    );
    assert_eq!(out.code, Some(0));
    let m = yaml(&dir.join("b").join("manifest.yaml"));
    assert_eq!(m["cache"]["enabled"], false);
    assert_eq!(m["cache"]["misses"], 0);
    let _ = std::fs::remove_dir_all(&dir);
}

// ----- studies -----

const STUDY_SCRIPT: &str = "let alpha = param(\"alpha\", 0.5)\n\
                            let label = param(\"label\", \"none\")\n\
                            let xs = sample_mean([alpha, alpha * 2, alpha * 3])\n\
                            print \"alpha = {alpha}\"\n\
                            save {alpha: alpha, twice: 2 * alpha, mean: xs, label: label} to \"values.json\"\n";

fn study_dir(name: &str) -> PathBuf {
    let dir = scratch(name);
    write(&dir.join("study").join("sweep.beb"), STUDY_SCRIPT);
    write(
        &dir.join("study").join("sweep.yaml"),
        "name: sweep\nscript: sweep.beb\ngrid:\n  alpha: [0.1, 0.2, 0.3]\nsets:\n  label: fixed\nseeds: [1, 2]\nout: out\n",
    );
    dir
}

/// Combination folders (relative to `out`) that hold a completion marker.
fn completed(out: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let script_dir = out.join("sweep");
    for entry in std::fs::read_dir(&script_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.path().join("complete.yaml").is_file() {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found.sort();
    found
}

#[test]
fn a_study_runs_every_combination_and_resumes() {
    let dir = study_dir("study-resume");
    let out = beb(&dir, &["study", "run", "study/sweep.yaml"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let done = completed(&dir.join("study").join("out"));
    assert_eq!(done.len(), 6, "{done:?}");
    assert!(done.contains(&"alpha=0.2_seed=2".to_string()), "{done:?}");
    let folder = dir
        .join("study")
        .join("out")
        .join("sweep")
        .join("alpha=0.2_seed=2");
    let manifest = yaml(&folder.join("manifest.yaml"));
    assert_eq!(manifest["root_seed"], 2);
    assert_eq!(manifest["sets"]["alpha"], "0.2");
    assert_eq!(manifest["sets"]["label"], "\"fixed\"");
    assert_eq!(read(&folder.join("stdout.txt")), "alpha = 0.2\n");
    let results = yaml(&folder.join("results.yaml"));
    assert_eq!(results["saved"]["values.json"]["label"], "fixed");
    let before = read(&folder.join("manifest.yaml"));
    // Rerun: everything is complete, nothing runs again.
    let again = beb(&dir, &["study", "run", "study/sweep.yaml"]);
    assert_eq!(again.code, Some(0));
    let stderr = &again.stderr;
    assert!(stderr.contains("0 run, 6 already complete"), "{stderr}");
    assert_eq!(read(&folder.join("manifest.yaml")), before);
    // An interrupted combination (no marker) runs again, and only it.
    let _ = std::fs::remove_file(folder.join("complete.yaml"));
    let resumed = beb(&dir, &["study", "run", "study/sweep.yaml"]);
    let stderr = &resumed.stderr;
    assert!(stderr.contains("1 run, 5 already complete"), "{stderr}");
    assert!(stderr.contains("alpha=0.2 seed=2: completed"), "{stderr}");
    // A changed script makes every marker stale.
    write(
        &dir.join("study").join("sweep.beb"),
        &format!("{STUDY_SCRIPT}print \"changed\"\n"),
    );
    let changed = beb(&dir, &["study", "run", "study/sweep.yaml"]);
    assert!(changed.stderr.contains("6 run, 0 already complete"));
    // The report gathers one row per combination and a summary across seeds.
    let report = beb(&dir, &["study", "report", "study/sweep.yaml"]);
    assert_eq!(report.code, Some(0), "{}", report.stderr);
    let csv = read(&dir.join("study").join("out").join("report.csv"));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 7, "{csv}");
    assert!(
        lines[0].starts_with("alpha,seed,status,asserts,values.alpha,values.twice,values.mean"),
        "{csv}"
    );
    assert!(
        lines[1].starts_with("0.1,1,completed,0/0,0.1,0.2,"),
        "{csv}"
    );
    let summary = read(&dir.join("study").join("out").join("summary.csv"));
    assert_eq!(summary.lines().count(), 4, "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shards_cover_every_combination_exactly_once() {
    let dir = study_dir("study-shards");
    let shards = 4;
    let mut all: Vec<String> = Vec::new();
    for i in 0..shards {
        let out_dir = format!("shard{i}");
        let out = beb(
            &dir,
            &[
                "study",
                "run",
                "study/sweep.yaml",
                "--shard",
                &format!("{i}/{shards}"),
                "--out",
                &out_dir,
            ],
        );
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        let mine = completed(&dir.join(&out_dir));
        // Shard i runs the combinations whose index k has k mod 4 = i.
        let expected = if i < 6 % shards { 2 } else { 1 };
        assert_eq!(mine.len(), expected, "shard {i}: {mine:?}");
        all.extend(mine);
    }
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(all.len(), 6, "every combination once: {all:?}");
    assert_eq!(unique.len(), 6, "no combination twice: {all:?}");
    // The report merges the shards' folders.
    let report = beb(
        &dir,
        &[
            "study",
            "report",
            "study/sweep.yaml",
            "--out",
            "shard0",
            "--from",
            "shard1",
            "--from",
            "shard2",
            "--from",
            "shard3",
        ],
    );
    assert_eq!(report.code, Some(0), "{}", report.stderr);
    let csv = read(&dir.join("shard0").join("report.csv"));
    assert_eq!(
        csv.lines().filter(|l| l.contains(",completed,")).count(),
        6,
        "{csv}"
    );
    assert!(!report.stderr.contains("no results yet"));
    // Without the other shards, the report says what is missing.
    let partial = beb(
        &dir,
        &["study", "report", "study/sweep.yaml", "--out", "shard1"],
    );
    assert!(
        partial
            .stderr
            .contains("4 of 6 combinations have no results yet")
    );
    let bad = beb(
        &dir,
        &["study", "run", "study/sweep.yaml", "--shard", "4/4"],
    );
    assert_eq!(bad.code, Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn invalid_study_files_are_reported_with_line_and_column() {
    let dir = scratch("study-errors");
    write(&dir.join("ok.beb"), "print 1\n");
    let cases = [
        (
            "script: ok.beb\ngrid:\n  alpha: [1, 2]\n  beta: []\n",
            "bad.yaml:4:3",
            "has no values",
        ),
        (
            "script: ok.beb\ngird:\n  alpha: [1]\n",
            "bad.yaml:2:1",
            "unknown field `gird`",
        ),
        (
            "script: ok.beb\nseeds: [1, two]\n",
            "bad.yaml:2:12",
            "invalid type",
        ),
        (
            "script: ok.beb\ngrid:\n  alpha: 0.1\n",
            "bad.yaml:3:3",
            "must be a list",
        ),
        ("script: missing.beb\n", "bad.yaml:1:9", "not found"),
        ("script: ok.beb\ngrid: {alpha: [1, 2]\n", "bad.yaml:3:1", ""),
    ];
    for (yaml_text, location, message) in cases {
        write(&dir.join("bad.yaml"), yaml_text);
        for command in ["run", "report"] {
            let out = beb(&dir, &["study", command, "bad.yaml"]);
            let stderr = &out.stderr;
            assert_eq!(out.code, Some(2), "{yaml_text}: {stderr}");
            assert!(
                stderr.contains(location),
                "{yaml_text}: expected {location}: {stderr}"
            );
            assert!(stderr.contains(message), "{yaml_text}: {stderr}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

const PLOT_SCRIPT: &str = "let alpha = param(\"alpha\", 0.5)\n\
                           let m = sentences { \"a.\": 0.5 @ 1, \"b.\": 0.5 @ -1 }\n\
                           let b = expect(m, samples: 8)\n\
                           save {b: b.mean, scaled: alpha * (2 + b.mean)} to \"values.json\"\n";

const PLOT_STUDY: &str = "name: plotted\nscript: sweep.beb\ngrid:\n  alpha: [0.1, 0.2, 0.4]\n  \
                          label: [x, y]\nseeds: 3\nout: out\nplot:\n  - x: alpha\n    \
                          y: values.scaled\n    to: figures/scaled.svg\n    log_x: true\n";

/// The 95% half-width of a summary.csv row's column `name`, in standard errors, and its n.
fn half_width_in_stderrs(csv: &str, row_start: &str, name: &str) -> (f64, f64) {
    let header: Vec<&str> = csv.lines().next().unwrap_or_default().split(',').collect();
    let row: Vec<&str> = csv
        .lines()
        .find(|l| l.starts_with(row_start))
        .unwrap_or_else(|| panic!("no row {row_start}: {csv}"))
        .split(',')
        .collect();
    let field = |suffix: &str| -> f64 {
        let i = header
            .iter()
            .position(|h| *h == format!("{name}{suffix}"))
            .unwrap_or_else(|| panic!("no column {name}{suffix}: {csv}"));
        row[i].parse().unwrap_or(f64::NAN)
    };
    ((field("_hi95") - field("")) / field("_stderr"), field("_n"))
}

#[test]
fn a_study_summary_uses_student_t_and_shows_n_per_cell() {
    let dir = scratch("study-student");
    write(&dir.join("study").join("sweep.beb"), PLOT_SCRIPT);
    write(&dir.join("study").join("plot.yaml"), PLOT_STUDY);
    let out = beb(&dir, &["study", "run", "study/plot.yaml"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    // One seed of one cell has no results: that cell's n is 2, the others' 3.
    let _ = std::fs::remove_dir_all(
        dir.join("study")
            .join("out")
            .join("sweep")
            .join("alpha=0.2_label=x_seed=3"),
    );
    let report = beb(&dir, &["study", "report", "study/plot.yaml"]);
    assert_eq!(report.code, Some(0), "{}", report.stderr);
    assert!(
        report.stdout.contains("95% Student t interval"),
        "{}",
        report.stdout
    );
    let row = |start: &str| {
        report
            .stdout
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with(start))
            .unwrap_or_else(|| panic!("no row {start}: {}", report.stdout))
            .to_string()
    };
    assert!(row("0.1  x").ends_with("n=3"), "{}", report.stdout);
    assert!(row("0.2  x").ends_with("n=2"), "{}", report.stdout);
    let summary = read(&dir.join("study").join("out").join("summary.csv"));
    // Three seeds: t with 2 degrees of freedom (4.303), not the normal 1.96.
    let (k, n) = half_width_in_stderrs(&summary, "0.1,x,", "values.scaled");
    assert_eq!(n, 3.0, "{summary}");
    assert!((k - 4.302_652_729_911_275).abs() < 1e-6, "{k}: {summary}");
    // The cell that lost a seed: two values, t with 1 degree of freedom.
    let (k, n) = half_width_in_stderrs(&summary, "0.2,x,", "values.scaled");
    assert_eq!(n, 2.0, "{summary}");
    assert!((k - 12.706_204_736_174_707).abs() < 1e-6, "{k}: {summary}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_study_draws_its_plots_the_same_way_every_time() {
    let dir = scratch("study-plot");
    write(&dir.join("study").join("sweep.beb"), PLOT_SCRIPT);
    write(&dir.join("study").join("plot.yaml"), PLOT_STUDY);
    let first = beb(&dir, &["study", "run", "study/plot.yaml"]);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let figure = dir
        .join("study")
        .join("out")
        .join("figures")
        .join("scaled.svg");
    assert!(
        first.stderr.contains("wrote study/out/figures/scaled.svg"),
        "{}",
        first.stderr
    );
    let svg = read(&figure);
    for expected in [
        "plotted: values.scaled (mean over 3 seeds, 95% t interval)",
        "label = x",
        "label = y",
        ">\nalpha\n<",
    ] {
        assert!(svg.contains(expected), "{expected:?} not in {svg}");
    }
    // Another run of the same study elsewhere, and the report, draw the same bytes.
    let again = beb(&dir, &["study", "run", "study/plot.yaml", "--out", "again"]);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert_eq!(
        read(&dir.join("again").join("figures").join("scaled.svg")),
        svg
    );
    let _ = std::fs::remove_file(&figure);
    let report = beb(&dir, &["study", "report", "study/plot.yaml"]);
    assert_eq!(report.code, Some(0), "{}", report.stderr);
    assert_eq!(read(&figure), svg);
    // A sharded run leaves the figure to the report.
    let shard = beb(
        &dir,
        &[
            "study",
            "run",
            "study/plot.yaml",
            "--shard",
            "0/2",
            "--out",
            "s",
        ],
    );
    assert!(
        shard.stderr.contains("drawn by `beb study report`"),
        "{}",
        shard.stderr
    );
    assert!(!dir.join("s").join("figures").exists());
    // A column no run saved: a diagnostic at the plot's `y:`, exit status 2.
    write(
        &dir.join("study").join("plot.yaml"),
        &PLOT_STUDY.replace("y: values.scaled", "y: values.scaledd"),
    );
    let bad = beb(&dir, &["study", "report", "study/plot.yaml"]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(bad.stderr.contains("plot.yaml:10:8"), "{}", bad.stderr);
    assert!(
        bad.stderr
            .contains("`values.scaledd` is not a result column"),
        "{}",
        bad.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ----- diff -----

#[test]
fn diff_finds_a_known_difference() {
    let dir = scratch("diff");
    write(
        &dir.join("values.beb"),
        "let shift = param(\"shift\", 0)\n\
         save {noisy: estimate(1 + shift, 0.01, 100), exact: 2 + shift, same: 5, label: \"x\"} to \"values.json\"\n\
         save sweep n in 0..3 { y: estimate(n + shift, 0.01, 50) } to \"curve.csv\"\n\
         if shift > 0.5 { save [1, 2] to \"extra.json\" }\n",
    );
    for (out, shift) in [("a", "0"), ("b", "1"), ("c", "0.001")] {
        let o = beb(
            &dir,
            &[
                "run",
                "values.beb",
                "--seed",
                "1",
                "--out",
                out,
                "--set",
                &format!("shift={shift}"),
            ],
        );
        assert_eq!(o.code, Some(0), "{}", o.stderr);
    }
    let same = beb(&dir, &["diff", "a", "a"]);
    assert_eq!(same.code, Some(0), "{}", same.stdout);
    assert!(same.stdout.contains("same verdicts"));
    let out = beb(&dir, &["diff", "a", "b"]);
    let stdout = &out.stdout;
    assert_eq!(out.code, Some(1), "{stdout}");
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row {name}: {stdout}"))
            .to_string()
    };
    let significant = |r: String| r.ends_with("significant") && !r.ends_with("not significant");
    assert!(significant(row("values.json.noisy ")), "{stdout}");
    assert!(
        row("values.json.noisy ").contains("[0.972, 1.03]"),
        "{stdout}"
    );
    assert!(row("values.json.exact ").contains("differs"), "{stdout}");
    assert!(row("extra.json[0] ").ends_with("only in B"), "{stdout}");
    assert!(significant(row("curve.csv[2].y ")), "{stdout}");
    assert!(
        !stdout.contains("values.json.same "),
        "equal values are not listed: {stdout}"
    );
    assert!(stdout.contains("settings that differ: sets:"), "{stdout}");
    // A shift well inside the noise is not significant (but exact numbers still differ).
    let noise = beb(&dir, &["diff", "a", "c"]);
    let stdout = &noise.stdout;
    assert!(stdout.contains("not significant"), "{stdout}");
    let all = beb(&dir, &["diff", "a", "c", "--all"]);
    assert!(all.stdout.contains("values.json.same "));
    let missing = beb(&dir, &["diff", "a", "nowhere"]);
    assert_eq!(missing.code, Some(2));
    assert!(missing.stderr.contains("not a run folder"));
    let _ = std::fs::remove_dir_all(&dir);
}

// ----- progress -----

#[test]
fn progress_bars_stay_off_when_stderr_is_not_a_terminal() {
    let dir = scratch("progress");
    write(
        &dir.join("slow.beb"),
        "let t = sweep i in 0..400 { s: sum(map(0..2000, |k| k * i)) }\nprint len(t)\n",
    );
    let out = beb(&dir, &["run", "slow.beb", "--seed", "1", "--out", "run"]);
    assert_eq!(out.code, Some(0));
    let stderr = &out.stderr;
    assert_eq!(out.stdout, "400\n");
    assert!(
        !stderr.contains('\r') && !stderr.contains('█') && !stderr.contains("ETA"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_example_study_runs_and_reports() {
    let root = common::root();
    let dir = scratch("example-study");
    let study = root.join("examples").join("study").join("alpha_sweep.yaml");
    let study = study.to_string_lossy().into_owned();
    // Two of its 24 combinations (shard 0 of 12), into a scratch folder.
    let out = beb(
        &dir,
        &["study", "run", &study, "--shard", "0/12", "--out", "out"],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("24 combinations, shard 0/12: 2 of them")
    );
    let report = beb(&dir, &["study", "report", &study, "--out", "out"]);
    assert_eq!(report.code, Some(0), "{}", report.stderr);
    let csv = read(&dir.join("out").join("report.csv"));
    assert!(
        csv.starts_with("alpha,horizon,seed,status,asserts,fit.lemma5_beta"),
        "{csv}"
    );
    assert_eq!(
        csv.lines()
            .filter(|l| l.contains(",completed,1/1,"))
            .count(),
        2,
        "{csv}"
    );
    assert!(
        dir.join("out")
            .join("alpha_sweep")
            .join("alpha=0.01_horizon=6_seed=1")
            .join("kl.png")
            .is_file()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ----- local modules -----

#[test]
fn scripts_import_modules_beside_them_and_record_them() {
    let dir = scratch("modules");
    write(
        &dir.join("study/setup.beb"),
        "let shared = 21\nfn twice(x) { 2 * x }\n",
    );
    write(
        &dir.join("study/main.beb"),
        "import setup.*\nimport setup as s\nprint twice(shared), s.shared\n",
    );
    // Run from another folder: the module is found beside the script, not in the cwd.
    let out = beb(
        &dir,
        &["run", "study/main.beb", "--seed", "1", "--out", "r"],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "42 21\n");
    let manifest = read(&dir.join("r/manifest.yaml"));
    assert!(manifest.contains("setup.beb"), "{manifest}");

    write(&dir.join("a.beb"), "import b\nlet x = 1\n");
    write(&dir.join("b.beb"), "import a\nlet y = 2\n");
    let out = beb(&dir, &["run", "a.beb", "--seed", "1", "--out", "c"]);
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("circular import"), "{}", out.stderr);

    write(&dir.join("m.beb"), "import nowhere\n");
    let out = beb(&dir, &["run", "m.beb", "--seed", "1", "--out", "d"]);
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains("there is no module `nowhere`"),
        "{}",
        out.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}
