//! `save value to "file.ext"`: CSV, JSON or YAML by extension, written atomically inside the
//! run folder (temp file + rename, so an interrupted run never leaves a truncated file).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value as Json, json};

use crate::error::{BebError, BebResult, ErrorKind};
use crate::eval::value::Value;
use crate::report::table::cell;

/// Save `value` to `name` inside the run folder `dir` (or a folder in `allowed`); returns the
/// path written as the run record shows it (relative to `dir` when inside it).
pub fn save(value: &Value, name: &str, dir: &Path, allowed: &[PathBuf]) -> BebResult<String> {
    let extension = Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let contents = match extension.as_str() {
        "csv" => to_csv(value)?,
        "json" => serde_json::to_string_pretty(&to_json(value)?)
            .map(|s| s + "\n")
            .map_err(|e| BebError::new(ErrorKind::Io, e.to_string()))?,
        "yaml" | "yml" => {
            crate::yaml::to_string(&to_json(value)?).map_err(|e| BebError::new(ErrorKind::Io, e))?
        }
        other => {
            return Err(BebError::value(format!("cannot save to a `.{other}` file"))
                .with_help("use .csv, .json or .yaml"));
        }
    };
    let (path, shown) = crate::report::confine::confined_path(name, dir, allowed)?;
    write_atomic(&path, contents.as_bytes())?;
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

/// Whole numbers are written as integers (`3`, not `3.0`); others with full precision.
fn number(x: f64) -> Json {
    const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0; // 2^53
    if x.is_finite() && x.fract() == 0.0 && x.abs() < EXACT_INTEGERS {
        json!(x as i64)
    } else if x.is_finite() {
        json!(x)
    } else {
        json!(crate::format::number(x))
    }
}

/// The value as JSON; full precision, estimates as {mean, stderr, n}.
pub fn to_json(value: &Value) -> BebResult<Json> {
    Ok(match value {
        Value::None => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Num(x) => number(*x),
        Value::Str(s) => json!(&**s),
        Value::List(items) => Json::Array(items.iter().map(to_json).collect::<BebResult<_>>()?),
        Value::Range(r) if r.len() > crate::eval::natives::MAX_MATERIALIZED => {
            return Err(BebError::value(format!(
                "{value} has too many elements to save"
            )));
        }
        Value::Range(r) => Json::Array(r.iter().map(|i| json!(i)).collect()),
        Value::Record(r) => {
            let mut map = Map::new();
            for (n, v) in &r.fields {
                map.insert(n.to_string(), to_json(v)?);
            }
            Json::Object(map)
        }
        Value::Table(t) => {
            let mut rows = Vec::with_capacity(t.rows.len());
            for row in &t.rows {
                let mut map = Map::new();
                for (c, v) in t.columns.iter().zip(row) {
                    map.insert(c.to_string(), to_json(v)?);
                }
                rows.push(Json::Object(map));
            }
            Json::Array(rows)
        }
        Value::Estimate(e) => {
            let (lo, hi) = e.interval(0.95);
            json!({"mean": number(e.mean), "stderr": number(e.stderr), "n": e.n,
                   "ci95": [number(lo), number(hi)]})
        }
        Value::Text(t) => Json::Array(t.units.iter().map(|u| json!(u.to_string())).collect()),
        Value::Model(m) => json!(m.name()),
        Value::Func(_) | Value::Native(_) => {
            return Err(BebError::type_error("a function cannot be saved"));
        }
    })
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Full-precision cells: an estimate column becomes `mean,stderr,n,lo,hi` (95% interval).
fn csv_cells(v: &Value, estimate_column: bool) -> Vec<String> {
    match v {
        Value::Estimate(e) => {
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
        Value::Num(x) if estimate_column => {
            let x = crate::format::number(*x);
            vec![x.clone(), "0".into(), "0".into(), x.clone(), x]
        }
        Value::Num(x) => vec![crate::format::number(*x)],
        Value::Str(s) => vec![csv_field(s)],
        other if estimate_column => {
            let mut cells = vec![csv_field(&cell(other))];
            cells.extend(std::iter::repeat_n(String::new(), 4));
            cells
        }
        other => vec![csv_field(&cell(other))],
    }
}

/// Tables (and lists of records or numbers) as CSV with a header row.
pub fn to_csv(value: &Value) -> BebResult<String> {
    let table = match value {
        Value::Table(t) => t.as_ref().clone(),
        Value::List(_) | Value::Range(_) => {
            let items = crate::eval::ops::elements(value)?;
            let mut t = crate::eval::value::Table::default();
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::Record(r) => {
                        if i == 0 {
                            t.columns = r.fields.iter().map(|(n, _)| n.clone()).collect();
                        }
                        t.rows
                            .push(r.fields.iter().map(|(_, v)| v.clone()).collect());
                    }
                    other => {
                        if i == 0 {
                            t.columns = vec!["value".into()];
                        }
                        t.rows.push(vec![other.clone()]);
                    }
                }
            }
            t
        }
        other => {
            return Err(BebError::type_error(format!(
                "a {} cannot be saved as CSV",
                other.type_name()
            ))
            .with_help("save tables or lists as CSV; anything as .json or .yaml"));
        }
    };
    let mut header = Vec::new();
    let mut estimate_columns = Vec::with_capacity(table.columns.len());
    for (i, c) in table.columns.iter().enumerate() {
        let is_estimate = table
            .rows
            .iter()
            .any(|r| matches!(r.get(i), Some(Value::Estimate(_))));
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
    Ok(out)
}
