//! Interpreter values as the plain data `report` works with: JSON documents for saved files
//! and the run record, grids of cells for printed tables and CSV. (`report` sits below the
//! interpreter and never sees a `Value`; this is where values cross over.)

use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json, json};

use crate::error::{BebError, BebResult};
use crate::eval::value::{Table, Value};
use crate::report::save::{self, FileKind, json_estimate, json_number};
use crate::report::table::{self, Cell, Grid};

/// Save `value` to `name` inside the run folder `dir` (or a folder in `allowed`); returns the
/// path written as the run record shows it (relative to `dir` when inside it).
pub fn save(value: &Value, name: &str, dir: &Path, allowed: &[PathBuf]) -> BebResult<String> {
    let contents = match FileKind::of(name)? {
        FileKind::Csv => to_csv(value)?,
        FileKind::Json => save::json_file(&to_json(value)?)?,
        FileKind::Yaml => save::yaml_file(&to_json(value)?)?,
    };
    save::write_confined(name, dir, allowed, contents.as_bytes())
}

/// The deepest nesting of lists and records a saved value may have: the depth JSON readers
/// accept (serde_json's, Python's default is deeper), and far past any table of results.
pub const MAX_SAVED_DEPTH: usize = 128;

/// The value as JSON; full precision, estimates as {mean, stderr, n, ci95}.
pub fn to_json(value: &Value) -> BebResult<Json> {
    nested_json(value, 0)
}

fn nested_json(value: &Value, depth: usize) -> BebResult<Json> {
    if depth > MAX_SAVED_DEPTH {
        return Err(BebError::value(format!(
            "this value nests lists or records deeper than {MAX_SAVED_DEPTH} levels, which no JSON reader accepts back"
        )));
    }
    let to_json = |v: &Value| nested_json(v, depth + 1);
    Ok(match value {
        Value::None => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Num(x) => json_number(*x),
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
        Value::Estimate(e) => json_estimate(e),
        Value::Text(t) => Json::Array(t.units.iter().map(|u| json!(u.to_string())).collect()),
        Value::Model(m) => json!(m.name()),
        Value::Object(o) => nested_json(
            &Value::Record(std::rc::Rc::new(Value::object_record(&**o))),
            depth,
        )?,
        Value::Func(_) | Value::Native(_) => {
            return Err(BebError::type_error("a function cannot be saved"));
        }
    })
}

/// A file read back (`read`) as values, the inverse of `save`: JSON objects become records
/// (an object with exactly `mean`, `stderr`, `n` and `ci95` an estimate), arrays lists, null
/// `none`, the strings `inf`, `-inf` and `nan` numbers (as `save` writes them); a CSV file a
/// table, or a list when its one column is `value` (a saved list).
pub fn from_document(doc: crate::report::read::Document) -> Value {
    use crate::report::read::Document;
    match doc {
        Document::Tree(tree) => from_json(&tree),
        Document::Table { columns, rows } => {
            if columns.len() == 1 && columns[0] == "value" {
                return Value::list(rows.iter().flat_map(|r| r.iter().map(from_json)).collect());
            }
            Value::Table(std::rc::Rc::new(Table {
                columns: columns
                    .iter()
                    .map(|c| std::rc::Rc::from(c.as_str()))
                    .collect(),
                rows: rows
                    .iter()
                    .map(|r| r.iter().map(from_json).collect())
                    .collect(),
            }))
        }
    }
}

fn from_json(doc: &Json) -> Value {
    match doc {
        Json::Null => Value::None,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(x) => Value::Num(x.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => match s.as_str() {
            "inf" => Value::Num(f64::INFINITY),
            "-inf" => Value::Num(f64::NEG_INFINITY),
            "nan" => Value::Num(f64::NAN),
            _ => Value::str(s),
        },
        Json::Array(items) => Value::list(items.iter().map(from_json).collect()),
        Json::Object(map) => {
            let keys: Vec<&str> = map.keys().map(String::as_str).collect();
            let estimate = (
                map.get("mean").and_then(Json::as_f64),
                map.get("stderr").and_then(Json::as_f64),
                map.get("n").and_then(Json::as_u64),
            );
            match (keys.as_slice(), estimate) {
                (["mean", "stderr", "n", "ci95"], (Some(mean), Some(stderr), Some(n))) => {
                    Value::Estimate(crate::stats::Estimate::new(mean, stderr, n as usize))
                }
                _ => Value::record(
                    map.iter()
                        .map(|(k, v)| (k.as_str(), from_json(v)))
                        .collect(),
                ),
            }
        }
    }
}

/// Tables (and lists of records or numbers) as CSV with a header row.
pub fn to_csv(value: &Value) -> BebResult<String> {
    let grid = match value {
        Value::Table(t) => to_grid(t),
        Value::List(_) | Value::Range(_) => {
            let items = crate::eval::ops::elements(value)?;
            let mut grid = Grid::default();
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::Record(r) => {
                        if i == 0 {
                            grid.columns = r.fields.iter().map(|(n, _)| n.to_string()).collect();
                        }
                        grid.rows
                            .push(r.fields.iter().map(|(_, v)| to_cell(v)).collect());
                    }
                    other => {
                        if i == 0 {
                            grid.columns = vec!["value".into()];
                        }
                        grid.rows.push(vec![to_cell(other)]);
                    }
                }
            }
            grid
        }
        other => {
            return Err(BebError::type_error(format!(
                "a {} cannot be saved as CSV",
                other.type_name()
            ))
            .with_help("save tables or lists as CSV; anything as .json or .yaml"));
        }
    };
    Ok(save::to_csv(&grid))
}

/// The value as a table cell.
pub fn to_cell(value: &Value) -> Cell {
    match value {
        Value::Num(x) => Cell::Num(*x),
        Value::Estimate(e) => Cell::Estimate(*e),
        Value::Str(s) => Cell::Text(s.to_string()),
        Value::None => Cell::Empty,
        other => Cell::Other(other.repr()),
    }
}

/// The table as a grid of cells.
pub fn to_grid(table: &Table) -> Grid {
    Grid {
        columns: table.columns.iter().map(|c| c.to_string()).collect(),
        rows: table
            .rows
            .iter()
            .map(|row| row.iter().map(to_cell).collect())
            .collect(),
    }
}

/// One value as shown in a printed table.
pub fn cell(value: &Value) -> String {
    table::cell(&to_cell(value))
}

/// The table as printed: a header, a rule, aligned columns.
pub fn render_table(table: &Table) -> String {
    table::render(&to_grid(table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Estimate;
    use std::rc::Rc;

    #[test]
    fn values_become_the_cells_tables_show() {
        let t = Table {
            columns: vec![Rc::from("name"), Rc::from("x"), Rc::from("ok")],
            rows: vec![
                vec![
                    Value::str("a,b"),
                    Value::Estimate(Estimate::new(1.5, 0.25, 4)),
                    Value::Bool(true),
                ],
                vec![Value::None, Value::Num(2.0), Value::list(vec![])],
            ],
        };
        let text = render_table(&t);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[2], "\"a,b\"  1.50 ± 0.25  true");
        assert_eq!(lines[3], "none      2         []");
        let csv = to_csv(&Value::Table(Rc::new(t))).unwrap_or_default();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "name,x,x_stderr,x_n,x_lo95,x_hi95,ok");
        assert!(
            lines[1].starts_with("\"a,b\",1.5,0.25,4,1.0"),
            "{}",
            lines[1]
        );
        assert!(lines[1].ends_with(",true"), "{}", lines[1]);
        assert_eq!(lines[2], "none,2,0,0,2,2,[]");
    }
}
