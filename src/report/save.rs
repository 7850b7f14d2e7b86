//! `save value to "file.ext"`: CSV, JSON or YAML by extension, written atomically inside the
//! run folder (temp file + rename, so an interrupted run never leaves a truncated file).
//!
//! What is saved arrives as plain data: a [`Grid`] for CSV, a JSON document for JSON and YAML
//! (the interpreter's values become these in `eval::export`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value as Json, json};

use crate::error::{BebError, BebResult, ErrorKind};
use crate::report::table::{Cell, Grid, cell};
use crate::stats::Estimate;

/// The kinds of file `save` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Csv,
    Json,
    Yaml,
}

impl FileKind {
    /// The kind of file `name` is, by its extension; other extensions are refused.
    pub fn of(name: &str) -> BebResult<FileKind> {
        let extension = Path::new(name)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match extension.as_str() {
            "csv" => Ok(FileKind::Csv),
            "json" => Ok(FileKind::Json),
            "yaml" | "yml" => Ok(FileKind::Yaml),
            other => Err(BebError::value(format!("cannot save to a `.{other}` file"))
                .with_help("use .csv, .json or .yaml")),
        }
    }
}

/// A JSON document as the text of a `.json` file (pretty, with a final newline).
pub fn json_file(doc: &Json) -> BebResult<String> {
    serde_json::to_string_pretty(doc)
        .map(|s| s + "\n")
        .map_err(|e| BebError::new(ErrorKind::Io, e.to_string()))
}

/// A JSON document as the text of a `.yaml` file.
pub fn yaml_file(doc: &Json) -> BebResult<String> {
    crate::yaml::to_string(doc).map_err(|e| BebError::new(ErrorKind::Io, e))
}

/// Write `bytes` to `name` inside the run folder `dir` (or a folder in `allowed`); returns the
/// path written as the run record shows it (relative to `dir` when inside it).
pub fn write_confined(
    name: &str,
    dir: &Path,
    allowed: &[PathBuf],
    bytes: &[u8],
) -> BebResult<String> {
    let (path, shown) = crate::report::confine::confined_path(name, dir, allowed)?;
    write_atomic(&path, bytes)?;
    Ok(shown)
}

/// Write via a temporary file in the same folder and rename over the target: readers (and a
/// run killed half-way) see the old file or the new one, never part of one. The temporary file
/// is hidden (`.NAME.tmp-PID-K`) and removed when the write fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> BebResult<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let io = |e: std::io::Error| {
        BebError::new(
            ErrorKind::Io,
            format!("cannot write {}: {e}", path.display()),
        )
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io)?;
    }
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let temp = path.with_file_name(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let result = fs::File::create(&temp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|_| fs::rename(&temp, path));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(io)
}

/// A number as saved in JSON: whole numbers as integers (`3`, not `3.0`), others with full
/// precision, infinities and NaN as their names.
pub fn json_number(x: f64) -> Json {
    const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0; // 2^53
    if x.is_finite() && x.fract() == 0.0 && x.abs() < EXACT_INTEGERS {
        json!(x as i64)
    } else if x.is_finite() {
        json!(x)
    } else {
        json!(crate::format::number(x))
    }
}

/// An estimate as saved in JSON: `{mean, stderr, n, ci95}` (the 95% interval).
pub fn json_estimate(e: &Estimate) -> Json {
    let (lo, hi) = e.interval(0.95);
    json!({"mean": json_number(e.mean), "stderr": json_number(e.stderr), "n": e.n,
           "ci95": [json_number(lo), json_number(hi)]})
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Full-precision cells: an estimate column becomes `mean,stderr,n,lo,hi` (95% interval).
fn csv_cells(v: &Cell, estimate_column: bool) -> Vec<String> {
    match v {
        Cell::Estimate(e) => {
            let (lo, hi) = e.interval(0.95);
            vec![
                crate::format::number(e.mean),
                crate::format::number(e.stderr),
                e.n.to_string(),
                crate::format::number(lo),
                crate::format::number(hi),
            ]
        }
        // An exact number in an estimate column: no error, n = 0, the point interval.
        Cell::Num(x) if estimate_column => {
            let x = crate::format::number(*x);
            vec![x.clone(), "0".into(), "0".into(), x.clone(), x]
        }
        Cell::Num(x) => vec![crate::format::number(*x)],
        Cell::Text(s) => vec![csv_field(s)],
        other if estimate_column => {
            let mut cells = vec![csv_field(&cell(other))];
            cells.extend(std::iter::repeat_n(String::new(), 4));
            cells
        }
        other => vec![csv_field(&cell(other))],
    }
}

/// A table as CSV with a header row.
pub fn to_csv(table: &Grid) -> String {
    let mut header = Vec::new();
    let mut estimate_columns = Vec::with_capacity(table.columns.len());
    for (i, c) in table.columns.iter().enumerate() {
        let is_estimate = table
            .rows
            .iter()
            .any(|r| matches!(r.get(i), Some(Cell::Estimate(_))));
        estimate_columns.push(is_estimate);
        if is_estimate {
            header.extend([
                csv_field(c),
                csv_field(&format!("{c}_stderr")),
                csv_field(&format!("{c}_n")),
                csv_field(&format!("{c}_lo95")),
                csv_field(&format!("{c}_hi95")),
            ]);
        } else {
            header.push(csv_field(c));
        }
    }
    let mut out = header.join(",") + "\n";
    for row in &table.rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&estimate_columns)
            .flat_map(|(v, &e)| csv_cells(v, e))
            .collect();
        out += &(cells.join(",") + "\n");
    }
    out
}
