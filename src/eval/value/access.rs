//! Indexing, slicing and fields of values.

use std::rc::Rc;

use crate::error::{BebError, BebResult, ErrorKind};
use crate::eval::suggest;
use crate::eval::value::{RangeValue, Table, Value};

/// A whole number that fits an index.
pub fn integer(v: &Value) -> BebResult<i64> {
    match v {
        Value::Num(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => Ok(*x as i64),
        Value::Num(x) => Err(BebError::value(format!(
            "expected a whole number, found {}",
            crate::format::number(*x)
        ))),
        other => Err(BebError::type_error(format!(
            "expected a whole number, found a {}",
            other.type_name()
        ))),
    }
}

pub(crate) fn length(v: &Value) -> Option<usize> {
    Some(match v {
        Value::List(items) => items.len(),
        Value::Str(s) => s.chars().count(),
        Value::Text(t) => t.units.len(),
        Value::Table(t) => t.rows.len(),
        Value::Range(r) => r.len(),
        _ => return None,
    })
}

pub(crate) fn slice(v: &Value, lo: usize, hi: usize) -> Value {
    match v {
        Value::List(items) => Value::list(items[lo..hi].to_vec()),
        Value::Str(s) => Value::Str(Rc::from(
            s.chars().skip(lo).take(hi - lo).collect::<String>(),
        )),
        Value::Text(t) => Value::text(t.units[lo..hi].to_vec()),
        Value::Table(t) => Value::Table(Rc::new(Table {
            columns: t.columns.clone(),
            rows: t.rows[lo..hi].to_vec(),
        })),
        Value::Range(r) => Value::Range(RangeValue {
            start: r.start + lo as i64,
            end: r.start + hi as i64,
            inclusive: false,
        }),
        other => other.clone(),
    }
}

pub(crate) fn index_value(target: &Value, key: &Value) -> BebResult<Value> {
    if let Value::Str(name) = key {
        return match target {
            Value::Record(_) | Value::Table(_) => field(target, name),
            other => Err(BebError::type_error(format!(
                "cannot index a {} by name",
                other.type_name()
            ))),
        };
    }
    let len = length(target)
        .ok_or_else(|| BebError::type_error(format!("cannot index a {}", target.type_name())))?;
    let i = integer(key)?;
    let position = if i < 0 { len as i64 + i } else { i };
    if position < 0 || position as usize >= len {
        return Err(BebError::new(
            ErrorKind::Index,
            format!(
                "index {i} is out of range for a {} of length {len}",
                target.type_name()
            ),
        ));
    }
    let p = position as usize;
    Ok(match target {
        Value::List(items) => items[p].clone(),
        Value::Str(s) => Value::Str(Rc::from(
            s.chars().nth(p).map(String::from).unwrap_or_default(),
        )),
        Value::Text(t) => Value::text(vec![t.units[p].clone()]),
        Value::Table(t) => t
            .row_record(p)
            .map(|r| Value::Record(Rc::new(r)))
            .unwrap_or(Value::None),
        Value::Range(r) => Value::Num((r.start + p as i64) as f64),
        _ => Value::None,
    })
}

/// `value.name`: record fields, table columns, estimate parts, model names.
pub fn field(v: &Value, name: &str) -> BebResult<Value> {
    let missing = |known: Vec<&str>| {
        let mut err = BebError::new(
            ErrorKind::Name,
            format!("a {} has no field `{name}`", v.type_name()),
        );
        err.help = Some(match suggest::closest(name, known.iter().copied()) {
            Some(best) => format!("did you mean `{best}`?"),
            None if known.is_empty() => "it has no fields".to_string(),
            None => format!("fields: {}", known.join(", ")),
        });
        err
    };
    match v {
        Value::Record(r) => r
            .get(name)
            .cloned()
            .ok_or_else(|| missing(r.fields.iter().map(|(n, _)| &**n).collect())),
        Value::Table(t) => match t.column_index(name) {
            Some(i) => Ok(Value::list(t.column(i))),
            None => Err(missing(t.columns.iter().map(|c| &**c).collect())),
        },
        Value::Estimate(e) => match name {
            "mean" => Ok(Value::Num(e.mean)),
            "stderr" => Ok(Value::Num(e.stderr)),
            "n" => Ok(Value::Num(e.n as f64)),
            "ci" => {
                let (lo, hi) = e.interval(0.95);
                Ok(Value::list(vec![Value::Num(lo), Value::Num(hi)]))
            }
            _ => Err(missing(vec!["mean", "stderr", "n", "ci"])),
        },
        Value::Object(o) => {
            let record = Value::object_record(&**o);
            record
                .get(name)
                .cloned()
                .ok_or_else(|| missing(record.fields.iter().map(|(n, _)| &**n).collect()))
        }
        Value::Model(m) => match name {
            "name" => Ok(Value::str(m.name())),
            _ => Err(missing(vec!["name"])),
        },
        _ => Err(missing(vec![])),
    }
}
