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
//! - Summary and plots: over several seeds, each cell of the grid gets the mean of each value
//!   with a Student t interval and n; a study's `plot:` entries draw that summary (`plot.rs`).

mod plot;
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
    let (study, study_text) = match load(path) {
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
    let out = match study.output(options.out.as_deref(), &options.allow_write) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("beb: {e}");
            return 2;
        }
    };
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
    // The figures need every combination: a shard leaves them to `beb study report`.
    if !study.plots.is_empty() {
        if shard.is_some() {
            hub.println(
                "beb: the study's plots are drawn by `beb study report` once every shard is done",
            );
        } else {
            let gathered = gather(&study, std::slice::from_ref(&out));
            let summary = across_seeds(&gathered.table, gathered.fixed, gathered.keys);
            worst = worst.max(draw_plots(path, &study_text, &study, &summary, &out));
        }
    }
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

/// A study's results gathered from its run folders: the report table, one row per combination.
struct Gathered {
    table: Grid,
    /// How many columns come before the values: script (with several), parameters, seed,
    /// status and assertions.
    fixed: usize,
    /// How many of those identify a cell of the grid: script (with several) and parameters.
    keys: usize,
    /// Combinations found in none of the folders.
    missing: usize,
    total: usize,
}

/// Read every combination's run folder (the first of `dirs` that has it) into the report table.
fn gather(study: &Study, dirs: &[PathBuf]) -> Gathered {
    let combos = study.combinations();
    let mut rows = Vec::with_capacity(combos.len());
    let mut missing = 0;
    for combo in &combos {
        let text = std::fs::read_to_string(&combo.script).unwrap_or_default();
        let fingerprint = combo.fingerprint(&text, &study.sets);
        let Some((folder, fresh)) = find_folder(dirs, combo, &fingerprint) else {
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
    let keys = columns.len();
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
    Gathered {
        table: Grid {
            columns,
            rows: table_rows,
        },
        fixed,
        keys,
        missing,
        total: combos.len(),
    }
}

/// `beb study report STUDY.yaml [--from DIR]...`.
pub fn report(path: &Path, out: Option<PathBuf>, from: &[PathBuf], allow_write: &[PathBuf]) -> i32 {
    let (study, text) = match load(path) {
        Ok(s) => s,
        Err(text) => {
            eprint!("{text}");
            return 2;
        }
    };
    let out = match study.output(out.as_deref(), allow_write) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("beb: {e}");
            return 2;
        }
    };
    let mut dirs = vec![out.clone()];
    dirs.extend(from.iter().cloned());
    let gathered = gather(&study, &dirs);
    let table = &gathered.table;
    crate::outln!("{}", render_report(table));
    let mut code = 0;
    match write_atomic(&out.join("report.csv"), to_csv(table).as_bytes()) {
        Ok(()) => eprintln!("beb: wrote {}", out.join("report.csv").display()),
        Err(e) => {
            eprintln!("beb: {}", e.message);
            code = 2;
        }
    }
    let summary = across_seeds(table, gathered.fixed, gathered.keys);
    if study.seeds.len() > 1 {
        crate::outln!(
            "\nmean over seeds ± standard error across seeds, [95% Student t interval, n − 1 \
             degrees of freedom], n = seeds with a value:"
        );
        crate::outln!("{}", summary.render());
        match write_atomic(&out.join("summary.csv"), to_csv(&summary.grid()).as_bytes()) {
            Ok(()) => eprintln!("beb: wrote {}", out.join("summary.csv").display()),
            Err(e) => {
                eprintln!("beb: {}", e.message);
                code = 2;
            }
        }
    }
    code = code.max(draw_plots(path, &text, &study, &summary, &out));
    if gathered.missing > 0 {
        eprintln!(
            "beb: {} of {} combinations have no results yet (run `beb study run`, or \
             pass the other shards' folders with --from)",
            gathered.missing, gathered.total
        );
    }
    code
}

/// The report summarised over seeds: for each cell of the grid (script and parameters), how
/// many seeds it has, and for each value column the mean over the seeds that have a number
/// there, with its Student t interval (none when no seed has one).
struct SeedSummary {
    key_columns: Vec<String>,
    value_columns: Vec<String>,
    cells: Vec<SummaryCell>,
}

struct SummaryCell {
    keys: Vec<Cell>,
    seeds: usize,
    values: Vec<Option<Estimate>>,
}

/// Group the report's rows by script and parameters: each value column becomes the mean over
/// the seeds that have a number there (n of them, which can be fewer than the cell's seeds:
/// a seed without a value is left out and shows in n, not averaged as anything).
fn across_seeds(table: &Grid, fixed: usize, keys: usize) -> SeedSummary {
    let mut groups: Vec<(Vec<Cell>, Vec<&Vec<Cell>>)> = Vec::new();
    for row in &table.rows {
        let key = row[..keys].to_vec();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(row),
            None => groups.push((key, vec![row])),
        }
    }
    let cells = groups
        .into_iter()
        .map(|(keys, members)| SummaryCell {
            keys,
            seeds: members.len(),
            values: (fixed..table.columns.len())
                .map(|c| {
                    let xs: Vec<f64> = members
                        .iter()
                        .filter_map(|r| match r.get(c) {
                            Some(Cell::Num(x)) => Some(*x),
                            Some(Cell::Estimate(e)) => Some(e.mean),
                            _ => None,
                        })
                        .collect();
                    (!xs.is_empty()).then(|| Estimate::student(&xs))
                })
                .collect(),
        })
        .collect();
    SeedSummary {
        key_columns: table.columns[..keys].to_vec(),
        value_columns: table.columns[fixed..].to_vec(),
        cells,
    }
}

impl SeedSummary {
    /// As saved in `summary.csv`: per value column its mean, standard error, n and 95%
    /// interval, each blank (`none`) where there is none (no interval from one seed).
    fn grid(&self) -> Grid {
        let mut columns = self.key_columns.clone();
        columns.push("seeds".into());
        for c in &self.value_columns {
            columns.extend([
                c.clone(),
                format!("{c}_stderr"),
                format!("{c}_n"),
                format!("{c}_lo95"),
                format!("{c}_hi95"),
            ]);
        }
        let rows = self
            .cells
            .iter()
            .map(|cell| {
                let mut row = cell.keys.clone();
                row.push(Cell::Num(cell.seeds as f64));
                for value in &cell.values {
                    match value {
                        None => {
                            row.extend([Cell::Empty, Cell::Empty, Cell::Num(0.0)]);
                            row.extend([Cell::Empty, Cell::Empty]);
                        }
                        Some(e) => {
                            let interval = interval_of(e);
                            row.push(Cell::Num(e.mean));
                            row.push(if e.n > 1 {
                                Cell::Num(e.stderr)
                            } else {
                                Cell::Empty
                            });
                            row.push(Cell::Num(e.n as f64));
                            match interval {
                                Some((lo, hi)) => row.extend([Cell::Num(lo), Cell::Num(hi)]),
                                None => row.extend([Cell::Empty, Cell::Empty]),
                            }
                        }
                    }
                }
                row
            })
            .collect();
        Grid { columns, rows }
    }

    /// As printed: `mean ± stderr [lo, hi] n=k` per value, the `±` signs of a column lined up;
    /// seeds that all agree show `mean ± 0 n=k`, one seed its value and `n=1`, none a blank.
    fn render(&self) -> String {
        let mut headers: Vec<String> = self.key_columns.clone();
        headers.push("seeds".into());
        headers.extend(self.value_columns.iter().cloned());
        let mut columns: Vec<Vec<String>> = (0..self.key_columns.len())
            .map(|k| {
                self.cells
                    .iter()
                    .map(|c| match &c.keys[k] {
                        Cell::Text(s) => s.clone(),
                        other => crate::report::table::cell(other),
                    })
                    .collect()
            })
            .collect();
        columns.push(self.cells.iter().map(|c| c.seeds.to_string()).collect());
        for v in 0..self.value_columns.len() {
            let parts: Vec<(String, String)> = self
                .cells
                .iter()
                .map(|c| match &c.values[v] {
                    None => (String::new(), String::new()),
                    Some(e) => match interval_of(e) {
                        None => (crate::format::significant(e.mean, 6), format!("n={}", e.n)),
                        // Every seed gave the same number: no spread, and no interval to show.
                        Some(_) if e.stderr == 0.0 => (
                            crate::format::significant(e.mean, 6),
                            format!("± 0 n={}", e.n),
                        ),
                        Some((lo, hi)) => {
                            let text = crate::format::estimate(e.mean, e.stderr);
                            let (mean, err) = text.split_once(" ± ").unwrap_or((&text, ""));
                            (
                                mean.to_string(),
                                format!(
                                    "± {err} [{}, {}] n={}",
                                    crate::format::significant(lo, 4),
                                    crate::format::significant(hi, 4),
                                    e.n
                                ),
                            )
                        }
                    },
                })
                .collect();
            let left = parts.iter().map(|(m, _)| m.chars().count()).max();
            let right = parts.iter().map(|(_, r)| r.chars().count()).max();
            let (left, right) = (left.unwrap_or(0), right.unwrap_or(0));
            columns.push(
                parts
                    .into_iter()
                    .map(|(m, r)| {
                        if m.is_empty() {
                            String::new()
                        } else {
                            format!("{m:>left$} {r:<right$}").trim_end().to_string()
                        }
                    })
                    .collect(),
            );
        }
        let cells: Vec<Vec<String>> = (0..self.cells.len())
            .map(|r| columns.iter().map(|c| c[r].clone()).collect())
            .collect();
        let right: Vec<bool> = (0..headers.len())
            .map(|i| {
                i == self.key_columns.len() || self.cells.iter().all(|c| is_number(&c.keys.get(i)))
            })
            .collect();
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        crate::report::table::layout(&headers, &cells, &right)
    }
}

fn is_number(cell: &Option<&Cell>) -> bool {
    matches!(cell, Some(Cell::Num(_)))
}

/// The 95% Student t interval of a summary value, or none for one seed (no spread to go on:
/// showing a point interval would claim a certainty one seed does not give).
fn interval_of(e: &Estimate) -> Option<(f64, f64)> {
    if e.n < 2 {
        return None;
    }
    let (lo, hi) = e.interval(0.95);
    (!lo.is_nan() && !hi.is_nan()).then_some((lo, hi))
}

/// Draw the study's `plot:` figures from the summary into `out`; 0, or 2 when one cannot be
/// drawn (a column no run saved is reported at its place in the study file).
fn draw_plots(path: &Path, text: &str, study: &Study, summary: &SeedSummary, out: &Path) -> i32 {
    let mut code = 0;
    for spec in &study.plots {
        match plot::figure(study, summary, spec) {
            Ok(figure) => {
                let format = spec
                    .to
                    .extension()
                    .and_then(|e| e.to_str())
                    .and_then(crate::report::plot::Format::from_extension)
                    .unwrap_or(crate::report::plot::Format::Svg);
                let target = out.join(&spec.to);
                let written = crate::report::plot::render(&figure, format)
                    .map_err(|e| format!("cannot draw {}: {e}", target.display()))
                    .and_then(|r| {
                        write_atomic(&target, &r.bytes)
                            .map(|()| r.dropped)
                            .map_err(|e| e.message)
                    });
                match written {
                    Ok(dropped) => {
                        eprintln!("beb: wrote {}", target.display());
                        if dropped > 0 {
                            eprintln!(
                                "beb: warning: {}: {dropped} point(s) not drawn (infinite, or \
                                 not positive on a log axis)",
                                target.display()
                            );
                        }
                    }
                    Err(message) => {
                        eprintln!("beb: {message}");
                        code = 2;
                    }
                }
            }
            Err(e) => {
                eprint!("{}", render_spec_error(path, text, &e));
                code = 2;
            }
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report table with the columns alpha, label, seed, status, asserts, y: `values` per
    /// (alpha, label) cell, one per seed, `None` for a seed without a value.
    fn table(cells: &[(f64, &str, [Option<f64>; 3])]) -> Grid {
        let mut rows = Vec::new();
        for (alpha, label, values) in cells {
            for (seed, v) in values.iter().enumerate() {
                rows.push(vec![
                    Cell::Num(*alpha),
                    Cell::Text((*label).into()),
                    Cell::Num(seed as f64 + 1.0),
                    Cell::Text(if v.is_some() { "completed" } else { "missing" }.into()),
                    Cell::Text("0/0".into()),
                    v.map_or(Cell::Empty, Cell::Num),
                ]);
            }
        }
        Grid {
            columns: ["alpha", "label", "seed", "status", "asserts", "y"]
                .map(String::from)
                .to_vec(),
            rows,
        }
    }

    /// t quantiles at 0.975 with 2 and 1 degrees of freedom.
    const T2: f64 = 4.302_652_729_911_275;
    const T1: f64 = 12.706_204_736_174_707;

    #[test]
    fn summaries_use_student_t_and_count_the_seeds_with_a_value() {
        let t = table(&[
            (0.1, "a", [Some(1.0), Some(2.0), Some(3.0)]),
            (0.2, "a", [Some(4.0), Some(6.0), None]),
            (0.3, "a", [Some(5.0), None, None]),
            (0.4, "a", [None, None, None]),
            (0.5, "a", [Some(7.0), Some(7.0), Some(7.0)]),
        ]);
        let s = across_seeds(&t, 5, 2);
        assert_eq!(s.cells.len(), 5);
        assert!(s.cells.iter().all(|c| c.seeds == 3));
        assert_eq!(
            s.cells[4].values[0].map(|e| (e.mean, e.stderr, e.n)),
            Some((7.0, 0.0, 3))
        );
        let value = |i: usize| s.cells[i].values[0];
        // Three seeds: mean 2, standard error 1/sqrt(3), half-width t(2) · se, not 1.96 · se.
        let three = value(0).unwrap_or_else(|| panic!("three seeds have a value"));
        assert_eq!(three.n, 3);
        let (lo, hi) = interval_of(&three).unwrap_or_else(|| panic!("an interval"));
        assert!((hi - 2.0 - T2 / 3f64.sqrt()).abs() < 1e-9, "{hi}");
        assert!((2.0 - lo - T2 / 3f64.sqrt()).abs() < 1e-9, "{lo}");
        // A seed without a value is left out, and n says so: t(1) for the two that have one.
        let two = value(1).unwrap_or_else(|| panic!("two seeds have a value"));
        assert_eq!((two.n, two.mean, two.stderr), (2, 5.0, 1.0));
        let (_, hi) = interval_of(&two).unwrap_or_else(|| panic!("an interval"));
        assert!((hi - 5.0 - T1).abs() < 1e-9, "{hi}");
        // One seed: its value, no interval; none: nothing.
        let one = value(2).unwrap_or_else(|| panic!("one seed has a value"));
        assert_eq!((one.n, one.mean), (1, 5.0));
        assert_eq!(interval_of(&one), None);
        assert!(value(3).is_none());

        let printed = s.render();
        let lines: Vec<&str> = printed.lines().collect();
        assert_eq!(lines.len(), 7, "{printed}");
        assert!(
            lines[2].ends_with("± 0.58 [-0.4841, 4.484] n=3"),
            "{printed}"
        );
        assert!(lines[3].ends_with("± 1.0 [-7.706, 17.71] n=2"), "{printed}");
        assert!(lines[4].ends_with("5 n=1"), "{printed}");
        assert!(!lines[4].contains('±'), "{printed}");
        assert!(lines[5].ends_with(" 3"), "no value, no n: {printed}");
        assert!(lines[6].ends_with(" 7 ± 0 n=3"), "{printed}");

        let csv = to_csv(&s.grid());
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows[0], "alpha,label,seeds,y,y_stderr,y_n,y_lo95,y_hi95");
        assert!(rows[2].starts_with("0.2,a,3,5,1,2,"), "{csv}");
        assert_eq!(rows[3], "0.3,a,3,5,none,1,none,none");
        assert_eq!(rows[4], "0.4,a,3,none,none,0,none,none");
    }

    #[test]
    fn plots_draw_one_series_per_other_parameter_with_t_error_bars() {
        let dir = std::env::temp_dir().join(format!("beb-study-plot-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("a.beb"), "print 1\n");
        let text = "script: a.beb\ngrid:\n  alpha: [0.1, 0.2]\n  label: [a, b]\nseeds: 3\n\
                    plot:\n  - x: alpha\n    y: y\n    to: y.svg\n  - x: alpha\n    y: z\n    to: z.svg\n";
        let study = Study::parse(text, &dir.join("s.yaml")).unwrap_or_else(|e| panic!("{e:?}"));
        let t = table(&[
            (0.1, "a", [Some(1.0), Some(2.0), Some(3.0)]),
            (0.1, "b", [Some(7.0), None, None]),
            (0.2, "a", [Some(4.0), Some(6.0), None]),
            (0.2, "b", [Some(8.0), Some(8.0), Some(8.0)]),
        ]);
        let s = across_seeds(&t, 5, 2);
        let figure = plot::figure(&study, &s, &study.plots[0]).unwrap_or_else(|e| panic!("{e:?}"));
        let labels: Vec<&str> = figure.series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["label = a", "label = b"]);
        let a = &figure.series[0].points;
        assert_eq!((a[0].x, a[0].y, a[1].x, a[1].y), (0.1, 2.0, 0.2, 5.0));
        let err = |p: &crate::report::plot::Point| p.err.unwrap_or(f64::NAN);
        assert!((err(&a[0]) - T2 / 3f64.sqrt()).abs() < 1e-9);
        assert!((err(&a[1]) - T1).abs() < 1e-9);
        let b = &figure.series[1].points;
        assert_eq!((b[0].y, b[0].err), (7.0, None), "one seed: no error bar");
        assert_eq!((b[1].y, b[1].err), (8.0, Some(0.0)));
        // A column no run saved is reported at the plot's `y:` (line 11, column 8).
        let e = plot::figure(&study, &s, &study.plots[1])
            .err()
            .unwrap_or_else(|| panic!("no column z"));
        assert_eq!((e.line, e.column), (11, 8), "{e:?}");
        assert!(e.message.contains("is not a result column"), "{e:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
