//! `save value to "file.ext"`: CSV, JSON or YAML by extension, written atomically inside the
//! run folder (temp file + rename, so an interrupted run never leaves a truncated file).

use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value as Json, json};

use crate::error::{BebError, BebResult, ErrorKind};
use crate::eval::value::Value;
use crate::report::table::cell;

/// Save `value` to `name` inside `dir`; returns the path written, relative to `dir`.
pub fn save(value: &Value, name: &str, dir: &Path) -> BebResult<String> {
    let relative = confined(name)?;
    let extension = relative
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
    let path = dir.join(&relative);
    write_atomic(&path, contents.as_bytes())?;
    Ok(relative.to_string_lossy().into_owned())
}

/// A relative path that stays inside the run folder (no absolute paths, no `..`).
fn confined(name: &str) -> BebResult<PathBuf> {
    let path = Path::new(name);
    let escapes = path
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if escapes || name.is_empty() {
        return Err(BebError::new(
            ErrorKind::Io,
            format!("refusing to write {name:?} outside the run folder"),
        )
        .with_help(
            "scripts write only inside their run folder: give a relative path without `..`",
        ));
    }
    Ok(path.to_path_buf())
}

/// Write via a temporary file in the same folder and rename over the target.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> BebResult<()> {
    let io = |e: std::io::Error| {
        BebError::new(
            ErrorKind::Io,
            format!("cannot write {}: {e}", path.display()),
        )
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io)?;
    }
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let temp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let mut file = fs::File::create(&temp).map_err(io)?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .map_err(io)?;
    fs::rename(&temp, path).map_err(io)
}

fn number(x: f64) -> Json {
    if x.is_finite() {
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
        Value::Estimate(e) => json!({"mean": number(e.mean), "stderr": number(e.stderr), "n": e.n}),
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

/// A full-precision cell: estimates become `mean,stderr,n` columns.
fn csv_cells(v: &Value) -> Vec<String> {
    match v {
        Value::Num(x) => vec![crate::format::number(*x)],
        Value::Estimate(e) => vec![
            crate::format::number(e.mean),
            crate::format::number(e.stderr),
            e.n.to_string(),
        ],
        Value::Str(s) => vec![csv_field(s)],
        other => vec![csv_field(&cell(other))],
    }
}

/// Tables (and lists of records or numbers) as CSV with a header row.
fn to_csv(value: &Value) -> BebResult<String> {
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
    for (i, c) in table.columns.iter().enumerate() {
        let is_estimate = table
            .rows
            .iter()
            .any(|r| matches!(r.get(i), Some(Value::Estimate(_))));
        if is_estimate {
            header.extend([format!("{c}"), format!("{c}_stderr"), format!("{c}_n")]);
        } else {
            header.push(csv_field(c));
        }
    }
    let mut out = header.join(",") + "\n";
    for row in &table.rows {
        let cells: Vec<String> = row.iter().flat_map(csv_cells).collect();
        out += &(cells.join(",") + "\n");
    }
    Ok(out)
}
