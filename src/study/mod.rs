//! Studies: a YAML file names scripts, a grid of `--set` parameters and seeds; `beb study run`
//! runs every combination into its own run folder, and `beb study report` gathers them into
//! one table.
//!
//! - Resume: a finished combination leaves `complete.yaml` (with a fingerprint of its script,
//!   parameters and seed) in its folder; a rerun skips it. An interrupted or failed one has no
//!   marker and runs again.
//! - Shards: `--shard i/N` runs only the combinations whose index k has k mod N = i, so N
//!   cluster jobs (a Slurm job array) split a study with no other coordination. `report --from`
//!   merges the folders of shards that wrote to different places.

pub mod spec;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value as Json, json};

use crate::diff::{Leaf, leaves};
use crate::error::{BebError, ErrorKind};
use crate::record::{Status, read_run};
use crate::report::progress::ProgressHub;
use crate::report::save::{to_csv, write_atomic};
use crate::report::table::{Cell, Grid, render_report};
use crate::runner::{CacheChoice, RunOptions, interrupt_flag, render, render_with};
use crate::stats::Estimate;
use crate::syntax::Span;
use spec::{Combination, SpecError, Study, in_shard, parse_shard};

/// The marker a finished combination leaves in its folder.
pub const MARKER: &str = "complete.yaml";

/// Read and check a study file; problems are rendered with the file's line and column.
pub fn load(path: &Path) -> Result<(Study, String), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("beb: cannot read {}: {e}\n", path.display()))?;
    Study::parse(&text, path)
        .map(|s| (s, text.clone()))
        .map_err(|e| render_spec_error(path, &text, &e))
}

fn render_spec_error(path: &Path, text: &str, e: &SpecError) -> String {
    let start = e.offset.min(text.len());
    let end = (start + e.len).min(text.len());
    let error = BebError::new(
        ErrorKind::Syntax,
        format!(
            "invalid study file {}:{}:{}: {}",
            path.display(),
            e.line,
            e.column,
            e.message
        ),
    )
    .at(Span::new(0, start, end))
    .with_label(e.message.clone())
    .with_help("see docs/results.md#studies for the study file format")
    .with_source(&path.display().to_string(), Arc::from(text));
    render(&error)
}

/// The marker's contents, if the folder holds a finished run with this fingerprint.
fn completed(folder: &Path, fingerprint: &str) -> Option<Json> {
    let text = std::fs::read_to_string(folder.join(MARKER)).ok()?;
    let marker = crate::yaml::to_json(&text).ok()?;
    (marker.get("fingerprint").and_then(Json::as_str) == Some(fingerprint)).then_some(marker)
}

/// `beb study run STUDY.yaml [--shard i/N]`. `options` are the runner's: `out` is the study's
/// output folder (default: the study file's `out`), which holds a run folder per combination;
/// `allow_write` and `cache` apply to every combination; the seeds and `--set` values come from
/// the study file, so `seed` is not used and `sets` must be empty.
pub fn run(path: &Path, shard: Option<&str>, options: &RunOptions) -> i32 {
    let (study, _) = match load(path) {
        Ok(s) => s,
        Err(text) => {
            eprint!("{text}");
            return 2;
        }
    };
    let shard = match shard.map(parse_shard).transpose() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("beb: {e}");
            return 2;
        }
    };
    if !options.sets.is_empty() {
        eprintln!(
            "beb: a study takes its values from the study file: put fixed values under `sets:` \
             (so that finished combinations are recognised when the study resumes)"
        );
        return 2;
    }
    let out = options.out.clone().unwrap_or_else(|| study.out.clone());
    let cache = match &options.cache {
        CacheChoice::Default => CacheChoice::At(out.join(".cache")),
        other => other.clone(),
    };
    let all = study.combinations();
    let mine: Vec<&Combination> = all
        .iter()
        .filter(|c| shard.is_none_or(|s| in_shard(c.index, s)))
        .collect();
    let hub = ProgressHub::detect();
    let shard_note = match shard {
        Some((i, n)) => format!(", shard {i}/{n}: {} of them", mine.len()),
        None => String::new(),
    };
    hub.println(&format!(
        "beb: study {}: {} combinations{shard_note}; results in {}",
        study.name,
        all.len(),
        out.display()
    ));
    let interrupt = interrupt_flag();
    let bar = hub.bar(mine.len() as u64, "study");
    let mut worst = 0;
    let (mut ran, mut skipped, mut failed) = (0, 0, 0);
    let mut scripts: Vec<(PathBuf, String)> = Vec::new();
    for (k, combo) in mine.iter().enumerate() {
        let text = match scripts.iter().find(|(p, _)| *p == combo.script) {
            Some((_, t)) => t.clone(),
            None => match std::fs::read_to_string(&combo.script) {
                Ok(t) => {
                    scripts.push((combo.script.clone(), t.clone()));
                    t
                }
                Err(e) => {
                    eprintln!("beb: cannot read {}: {e}", combo.script.display());
                    return 2;
                }
            },
        };
        let folder = out.join(&combo.folder);
        let fingerprint = combo.fingerprint(&text, &study.sets);
        let counter = format!("[{}/{}]", k + 1, mine.len());
        bar.set_message(&combo.describe());
        if completed(&folder, &fingerprint).is_some() {
            skipped += 1;
            hub.println(&format!("{counter} {}: already complete", combo.describe()));
            bar.inc(1);
            continue;
        }
        let _ = std::fs::remove_file(folder.join(MARKER));
        let sets = combo.sets(&study.sets);
        let combo_options = RunOptions {
            seed: Some(combo.seed),
            sets,
            out: Some(folder.clone()),
            allow_write: options.allow_write.clone(),
            allow_net: options
                .allow_net
                .iter()
                .chain(&study.allow_net)
                .cloned()
                .collect(),
            allow_read: options
                .allow_read
                .iter()
                .chain(&study.allow_read)
                .cloned()
                .collect(),
            cache: cache.clone(),
        };
        let started = Instant::now();
        let captured = crate::eval::CapturedOutput::default();
        let mut diagnostics = String::new();
        let outcome = crate::runner::execute(
            &combo.script,
            &combo_options,
            Box::new(captured.clone()),
            interrupt.clone(),
            hub.clone(),
            &mut |e: BebError| diagnostics += &render_with(&e, false),
        );
        let printed = captured.bytes();
        let _ = write_atomic(&folder.join("stdout.txt"), &printed);
        if !diagnostics.is_empty() {
            let _ = write_atomic(&folder.join("stderr.txt"), diagnostics.as_bytes());
        }
        ran += 1;
        let seconds = started.elapsed().as_secs_f64();
        let line = match &outcome.status {
            Status::Completed => format!("completed in {seconds:.1} s"),
            Status::AssertionFailed(m) => {
                format!("{m} (see {})", folder.join("stderr.txt").display())
            }
            Status::Failed(m) => {
                format!("failed: {m} (see {})", folder.join("stderr.txt").display())
            }
            Status::Interrupted => "interrupted".to_string(),
            Status::Running => String::new(),
        };
        hub.println(&format!("{counter} {}: {line}", combo.describe()));
        if matches!(
            outcome.status,
            Status::Completed | Status::AssertionFailed(_)
        ) {
            let marker = json!({
                "fingerprint": fingerprint,
                "status": outcome.status.label(),
                "exit": outcome.code,
                "script": combo.script.display().to_string(),
                "params": combo.params.iter().map(|(n, v)| (n.clone(), json!(v.literal()))).collect::<serde_json::Map<_, _>>(),
                "seed": combo.seed,
                "index": combo.index,
            });
            if let Ok(text) = crate::yaml::to_string(&marker) {
                let _ = write_atomic(&folder.join(MARKER), text.as_bytes());
            }
        } else {
            failed += 1;
        }
        worst = worst.max(outcome.code);
        bar.inc(1);
        if outcome.status == Status::Interrupted {
            bar.finish();
            eprintln!(
                "beb: study interrupted after {ran} run(s); rerun the same command to resume \
                 (finished combinations are skipped)"
            );
            return 2;
        }
    }
    bar.finish();
    hub.println(&format!(
        "beb: study {}: {ran} run, {skipped} already complete, {failed} failed{}",
        study.name,
        if shard.is_some() {
            " (this shard)".to_string()
        } else {
            String::new()
        }
    ));
    worst
}

/// One combination's row of the report.
struct Row<'a> {
    combo: &'a Combination,
    status: String,
    asserts: String,
    values: Vec<(String, Leaf)>,
}

/// The run folder of a combination: the first of `dirs` that holds a finished one (preferring
/// an up-to-date marker), else the first that holds any results.
fn find_folder(
    dirs: &[PathBuf],
    combo: &Combination,
    fingerprint: &str,
) -> Option<(PathBuf, bool)> {
    for d in dirs {
        let f = d.join(&combo.folder);
        if completed(&f, fingerprint).is_some() {
            return Some((f, true));
        }
    }
    dirs.iter()
        .map(|d| d.join(&combo.folder))
        .find(|f| f.join("results.yaml").is_file())
        .map(|f| (f, false))
}

/// The scalar values of a run's results: `fit.beta` for the field `beta` of `fit.json`.
fn scalar_values(results: &Json) -> Vec<(String, Leaf)> {
    let mut out: Vec<(String, Leaf)> = Vec::new();
    if let Some(Json::Object(saved)) = results.get("saved") {
        for (file, value) in saved {
            let stem = Path::new(file)
                .with_extension("")
                .to_string_lossy()
                .into_owned();
            let mut found = Vec::new();
            leaves(&stem, value, false, &mut found);
            for (name, leaf) in found {
                if !out.iter().any(|(n, _)| *n == name) {
                    out.push((name, leaf));
                }
            }
        }
    }
    out
}

/// `beb study report STUDY.yaml [--from DIR]...`.
pub fn report(path: &Path, out: Option<PathBuf>, from: &[PathBuf]) -> i32 {
    let (study, _) = match load(path) {
        Ok(s) => s,
        Err(text) => {
            eprint!("{text}");
            return 2;
        }
    };
    let out = out.unwrap_or_else(|| study.out.clone());
    let mut dirs = vec![out.clone()];
    dirs.extend(from.iter().cloned());
    let combos = study.combinations();
    let mut rows = Vec::with_capacity(combos.len());
    let mut missing = 0;
    for combo in &combos {
        let text = std::fs::read_to_string(&combo.script).unwrap_or_default();
        let fingerprint = combo.fingerprint(&text, &study.sets);
        let Some((folder, fresh)) = find_folder(&dirs, combo, &fingerprint) else {
            missing += 1;
            rows.push(Row {
                combo,
                status: "missing".into(),
                asserts: String::new(),
                values: Vec::new(),
            });
            continue;
        };
        match read_run(&folder) {
            Ok(files) => {
                let verdicts = files
                    .results
                    .get("assertions")
                    .and_then(Json::as_array)
                    .cloned()
                    .unwrap_or_default();
                let passed = verdicts
                    .iter()
                    .filter(|v| v.get("passed").and_then(Json::as_bool) == Some(true))
                    .count();
                let status = files
                    .manifest
                    .get("status")
                    .and_then(Json::as_str)
                    .unwrap_or("?")
                    .to_string();
                rows.push(Row {
                    combo,
                    status: if fresh {
                        status
                    } else {
                        format!("{status} (stale)")
                    },
                    asserts: format!("{passed}/{}", verdicts.len()),
                    values: scalar_values(&files.results),
                });
            }
            Err(e) => {
                eprintln!("beb: {e}");
                missing += 1;
                rows.push(Row {
                    combo,
                    status: "unreadable".into(),
                    asserts: String::new(),
                    values: Vec::new(),
                });
            }
        }
    }
    // Value columns: those the study names, else every scalar in first-seen order.
    let value_columns: Vec<String> = match &study.report {
        Some(names) => names.clone(),
        None => {
            let mut names: Vec<String> = Vec::new();
            for row in &rows {
                for (n, _) in &row.values {
                    if !names.contains(n) {
                        names.push(n.clone());
                    }
                }
            }
            names
        }
    };
    let several_scripts = study.scripts.len() > 1;
    let mut columns: Vec<String> = Vec::new();
    if several_scripts {
        columns.push("script".into());
    }
    columns.extend(study.grid.iter().map(|(n, _)| n.clone()));
    columns.extend(["seed".into(), "status".into(), "asserts".into()]);
    let fixed = columns.len();
    columns.extend(value_columns.iter().cloned());
    let param_value = |c: &Combination, i: usize| -> Cell {
        match &c.params[i].1 {
            spec::ParamValue::Num(x) => Cell::Num(*x),
            other => Cell::Text(other.to_string()),
        }
    };
    let table_rows: Vec<Vec<Cell>> = rows
        .iter()
        .map(|r| {
            let mut cells = Vec::with_capacity(columns.len());
            if several_scripts {
                cells.push(Cell::Text(r.combo.script_name()));
            }
            cells.extend((0..study.grid.len()).map(|i| param_value(r.combo, i)));
            cells.push(Cell::Num(r.combo.seed as f64));
            cells.push(Cell::Text(r.status.clone()));
            cells.push(Cell::Text(r.asserts.clone()));
            for name in &value_columns {
                cells.push(
                    r.values
                        .iter()
                        .find(|(n, _)| n == name)
                        .map_or(Cell::Empty, |(_, l)| l.to_cell()),
                );
            }
            cells
        })
        .collect();
    let table = Grid {
        columns,
        rows: table_rows,
    };
    println!("{}", render_report(&table));
    let mut code = 0;
    match write_atomic(&out.join("report.csv"), to_csv(&table).as_bytes()) {
        Ok(()) => eprintln!("beb: wrote {}", out.join("report.csv").display()),
        Err(e) => {
            eprintln!("beb: {}", e.message);
            code = 2;
        }
    }
    if study.seeds.len() > 1 {
        let summary = across_seeds(&table, fixed, several_scripts, study.grid.len());
        println!("\nmean over seeds (± standard error across seeds):");
        println!("{}", render_report(&summary));
        match write_atomic(&out.join("summary.csv"), to_csv(&summary).as_bytes()) {
            Ok(()) => eprintln!("beb: wrote {}", out.join("summary.csv").display()),
            Err(e) => {
                eprintln!("beb: {}", e.message);
                code = 2;
            }
        }
    }
    if missing > 0 {
        eprintln!(
            "beb: {missing} of {} combinations have no results yet (run `beb study run`, or \
             pass the other shards' folders with --from)",
            combos.len()
        );
    }
    code
}

/// Group the report's rows by script and parameters: each numeric column becomes the mean
/// over seeds with its standard error across seeds (n = number of seeds with a value).
fn across_seeds(table: &Grid, fixed: usize, several_scripts: bool, params: usize) -> Grid {
    let keys = usize::from(several_scripts) + params;
    let mut columns: Vec<String> = table.columns[..keys].to_vec();
    columns.push("seeds".into());
    columns.extend(table.columns[fixed..].iter().cloned());
    let mut groups: Vec<(Vec<Cell>, Vec<&Vec<Cell>>)> = Vec::new();
    for row in &table.rows {
        let key = row[..keys].to_vec();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(row),
            None => groups.push((key, vec![row])),
        }
    }
    let rows = groups
        .into_iter()
        .map(|(key, members)| {
            let mut cells = key;
            cells.push(Cell::Num(members.len() as f64));
            for c in fixed..table.columns.len() {
                let xs: Vec<f64> = members
                    .iter()
                    .filter_map(|r| match &r[c] {
                        Cell::Num(x) => Some(*x),
                        Cell::Estimate(e) => Some(e.mean),
                        _ => None,
                    })
                    .collect();
                cells.push(match xs.len() {
                    0 => Cell::Empty,
                    1 => Cell::Num(xs[0]),
                    _ if xs.iter().all(|x| *x == xs[0]) => Cell::Num(xs[0]),
                    _ => Cell::Estimate(Estimate::from_samples(&xs)),
                });
            }
            cells
        })
        .collect();
    Grid { columns, rows }
}
