//! Runtime values. Containers are reference-counted so passing a curve around is cheap;
//! values are immutable once built (a sweep builds a new table, it never edits one).

pub mod access;
pub mod format_spec;
pub mod ops;

use std::fmt;
use std::rc::Rc;

use crate::eval::env::Env;
use crate::eval::natives::Builtin;
use crate::format;
use crate::lm::{ModelRef, Unit};
use crate::stats::Estimate;
use crate::syntax::ast::{FnDef, Name};

#[derive(Clone)]
pub enum Value {
    None,
    Bool(bool),
    /// An exact number (Monte Carlo results are `Estimate`s, never plain numbers).
    Num(f64),
    Str(Rc<str>),
    List(Rc<Vec<Value>>),
    Record(Rc<Record>),
    Range(RangeValue),
    Func(Rc<Closure>),
    Native(Rc<Builtin>),
    Table(Rc<Table>),
    Estimate(Estimate),
    Model(ModelRef),
    Text(Rc<Text>),
    /// A domain object made by a builtin (e.g. a behavior scorer).
    Object(Rc<dyn HostObject>),
}

/// A domain object a script holds and hands to builtins but cannot take apart. It prints,
/// and its fields read, as the record `fields` describes; builtins recover the Rust object
/// with `as_any`.
pub trait HostObject {
    /// The type as error messages and `type_of` name it.
    fn type_name(&self) -> &'static str;
    /// What the object shows of itself, in order.
    fn fields(&self) -> Vec<(&'static str, Value)>;
    fn as_any(&self) -> &dyn std::any::Any;
}

impl Value {
    /// The object, when this value is a host object of type `T`.
    pub fn object<T: 'static>(&self) -> Option<&T> {
        match self {
            Value::Object(o) => o.as_any().downcast_ref::<T>(),
            _ => None,
        }
    }

    /// A host object's fields as a record (how it prints and converts to JSON).
    pub fn object_record(object: &dyn HostObject) -> Record {
        Record {
            fields: object
                .fields()
                .into_iter()
                .map(|(n, v)| (Rc::from(n), v))
                .collect(),
        }
    }
}

/// Named fields in declaration order (records print in the order they were written).
#[derive(Clone, Debug, Default)]
pub struct Record {
    pub fields: Vec<(Name, Value)>,
}

impl Record {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v)
    }
}

/// An integer range `start..end` or `start..=end`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RangeValue {
    pub start: i64,
    pub end: i64,
    pub inclusive: bool,
}

impl RangeValue {
    /// One past the last element.
    pub fn stop(&self) -> i64 {
        if self.inclusive {
            self.end.saturating_add(1)
        } else {
            self.end
        }
    }

    pub fn len(&self) -> usize {
        (self.stop() - self.start).max(0) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = i64> {
        self.start..self.stop()
    }
}

/// A user function together with the scope it was defined in.
pub struct Closure {
    pub def: Rc<FnDef>,
    pub env: Rc<Env>,
}

/// Named columns, one row per sweep step.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub columns: Vec<Name>,
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| &**c == name)
    }

    pub fn column(&self, index: usize) -> Vec<Value> {
        self.rows
            .iter()
            .map(|r| r.get(index).cloned().unwrap_or(Value::None))
            .collect()
    }

    pub fn row_record(&self, row: usize) -> Option<Record> {
        let values = self.rows.get(row)?;
        Some(Record {
            fields: self
                .columns
                .iter()
                .cloned()
                .zip(values.iter().cloned())
                .collect(),
        })
    }
}

/// A text: a sequence of units (sentences or token runs); prompt length counts units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Text {
    pub units: Vec<Unit>,
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.type_name(), self.repr())
    }
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "none",
            Value::Bool(_) => "bool",
            Value::Num(_) => "number",
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Record(_) => "record",
            Value::Range(_) => "range",
            Value::Func(_) | Value::Native(_) => "function",
            Value::Table(_) => "table",
            Value::Estimate(_) => "estimate",
            Value::Model(_) => "model",
            Value::Text(_) => "text",
            Value::Object(o) => o.type_name(),
        }
    }

    pub fn str(s: &str) -> Value {
        Value::Str(Rc::from(s))
    }

    pub fn list(items: Vec<Value>) -> Value {
        Value::List(Rc::new(items))
    }

    pub fn record(fields: Vec<(&str, Value)>) -> Value {
        Value::Record(Rc::new(Record {
            fields: fields.into_iter().map(|(n, v)| (Rc::from(n), v)).collect(),
        }))
    }

    pub fn text(units: Vec<Unit>) -> Value {
        Value::Text(Rc::new(Text { units }))
    }

    /// Structural equality (functions and models compare by identity).
    pub fn equals(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::None, Value::None) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Num(a), Value::Num(b)) => a == b,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::List(a), Value::List(b)) => {
                a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| x.equals(y))
            }
            (Value::Record(a), Value::Record(b)) => {
                a.fields.len() == b.fields.len()
                    && a.fields
                        .iter()
                        .zip(&b.fields)
                        .all(|((n1, v1), (n2, v2))| n1 == n2 && v1.equals(v2))
            }
            // Ranges are equal when they hold the same numbers: `0..3 == 0..=2`.
            (Value::Range(a), Value::Range(b)) => {
                (a.start == b.start && a.stop() == b.stop()) || (a.is_empty() && b.is_empty())
            }
            (Value::Table(a), Value::Table(b)) => {
                a.columns == b.columns
                    && a.rows.len() == b.rows.len()
                    && a.rows
                        .iter()
                        .zip(&b.rows)
                        .all(|(r1, r2)| r1.iter().zip(r2).all(|(x, y)| x.equals(y)))
            }
            (Value::Estimate(a), Value::Estimate(b)) => a == b,
            (Value::Text(a), Value::Text(b)) => a == b,
            (Value::Func(a), Value::Func(b)) => Rc::ptr_eq(a, b),
            (Value::Native(a), Value::Native(b)) => Rc::ptr_eq(a, b),
            (Value::Model(a), Value::Model(b)) => Rc::ptr_eq(a, b),
            (Value::Object(a), Value::Object(b)) => Rc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// How the value prints inside a container (strings quoted).
    pub fn repr(&self) -> String {
        match self {
            Value::Str(s) => format!("{s:?}"),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::None => f.write_str("none"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Num(x) => f.write_str(&format::number(*x)),
            Value::Str(s) => f.write_str(s),
            Value::List(items) => {
                let parts: Vec<String> = items.iter().map(Value::repr).collect();
                write!(f, "[{}]", parts.join(", "))
            }
            Value::Record(r) => {
                let parts: Vec<String> = r
                    .fields
                    .iter()
                    .map(|(n, v)| format!("{n}: {}", v.repr()))
                    .collect();
                write!(f, "{{{}}}", parts.join(", "))
            }
            Value::Range(r) => {
                write!(
                    f,
                    "{}{}{}",
                    r.start,
                    if r.inclusive { "..=" } else { ".." },
                    r.end
                )
            }
            Value::Func(c) => match &c.def.name {
                Some(name) => write!(f, "<fn {name}>"),
                None => f.write_str("<lambda>"),
            },
            Value::Native(b) => write!(f, "<builtin {}>", b.signature),
            Value::Table(t) => f.write_str(&crate::eval::export::render_table(t)),
            Value::Estimate(e) => write!(f, "{e}"),
            Value::Model(m) => match m.describe() {
                Some(identity) => write!(f, "<model {}: {identity}>", m.name()),
                None => write!(f, "<model {}>", m.name()),
            },
            Value::Text(t) => f.write_str(&crate::lm::display_units(&t.units)),
            Value::Object(o) => write!(f, "{}", Value::Record(Rc::new(Value::object_record(&**o)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: i64, end: i64, inclusive: bool) -> Value {
        Value::Range(RangeValue {
            start,
            end,
            inclusive,
        })
    }

    #[test]
    fn equality_is_structural() {
        let a = Value::record(vec![
            ("x", Value::Num(1.0)),
            ("y", Value::list(vec![Value::str("s")])),
        ]);
        let b = Value::record(vec![
            ("x", Value::Num(1.0)),
            ("y", Value::list(vec![Value::str("s")])),
        ]);
        let reordered = Value::record(vec![
            ("y", Value::list(vec![Value::str("s")])),
            ("x", Value::Num(1.0)),
        ]);
        assert!(a.equals(&b));
        assert!(!a.equals(&reordered), "records compare in field order");
        assert!(!Value::Num(1.0).equals(&Value::str("1")));
        assert!(
            !Value::list(vec![]).equals(&range(0, 0, false)),
            "different types are never equal"
        );
        assert!(Value::None.equals(&Value::None));
        assert!(!Value::Num(0.0).equals(&Value::Bool(false)));
    }

    #[test]
    fn ranges_are_equal_when_they_hold_the_same_numbers() {
        assert!(range(0, 3, false).equals(&range(0, 2, true)));
        assert!(!range(0, 3, false).equals(&range(0, 3, true)));
        assert!(
            range(5, 2, false).equals(&range(0, 0, false)),
            "empty ranges are all equal"
        );
        assert!(!range(1, 3, false).equals(&range(0, 3, false)));
    }

    #[test]
    fn ranges_count_their_numbers() {
        let RangeValue { .. } = RangeValue {
            start: 0,
            end: 0,
            inclusive: false,
        };
        let r = RangeValue {
            start: 2,
            end: 5,
            inclusive: true,
        };
        assert_eq!((r.len(), r.stop(), r.is_empty()), (4, 6, false));
        assert_eq!(r.iter().collect::<Vec<_>>(), [2, 3, 4, 5]);
        let backwards = RangeValue {
            start: 5,
            end: 2,
            inclusive: false,
        };
        assert_eq!((backwards.len(), backwards.is_empty()), (0, true));
        let extreme = RangeValue {
            start: 0,
            end: i64::MAX,
            inclusive: true,
        };
        assert_eq!(
            extreme.stop(),
            i64::MAX,
            "the inclusive end saturates instead of overflowing"
        );
    }

    #[test]
    fn display_quotes_strings_only_inside_containers() {
        let s = Value::str("a \"b\"");
        assert_eq!(s.to_string(), "a \"b\"");
        assert_eq!(s.repr(), "\"a \\\"b\\\"\"");
        let nested = Value::list(vec![
            s,
            Value::None,
            Value::Bool(true),
            Value::record(vec![("k", Value::str("v"))]),
        ]);
        assert_eq!(
            nested.to_string(),
            "[\"a \\\"b\\\"\", none, true, {k: \"v\"}]"
        );
        assert_eq!(range(0, 3, true).to_string(), "0..=3");
        assert_eq!(Value::Num(1e-7).to_string(), "1e-7");
        assert_eq!(Value::record(vec![]).to_string(), "{}");
    }

    #[test]
    fn type_names() {
        let names: Vec<&str> = [
            Value::None,
            Value::Bool(true),
            Value::Num(1.0),
            Value::str(""),
            Value::list(vec![]),
            Value::record(vec![]),
            range(0, 1, false),
            Value::Table(Rc::new(Table::default())),
            Value::Estimate(Estimate::new(0.0, 0.0, 0)),
            Value::text(vec![]),
        ]
        .iter()
        .map(Value::type_name)
        .collect();
        assert_eq!(
            names,
            [
                "none", "bool", "number", "string", "list", "record", "range", "table", "estimate",
                "text"
            ]
        );
    }

    #[test]
    fn tables_give_columns_and_rows() {
        let t = Table {
            columns: vec![Rc::from("a"), Rc::from("b")],
            rows: vec![
                vec![Value::Num(1.0), Value::str("x")],
                vec![Value::Num(2.0), Value::str("y")],
            ],
        };
        assert_eq!(t.column_index("b"), Some(1));
        assert_eq!(t.column_index("c"), None);
        assert_eq!(Value::list(t.column(0)).to_string(), "[1, 2]");
        assert_eq!(
            t.row_record(1)
                .map(|r| Value::Record(Rc::new(r)).to_string())
                .as_deref(),
            Some("{a: 2, b: \"y\"}")
        );
        assert!(t.row_record(2).is_none());
        let same = Value::Table(Rc::new(t.clone()));
        assert!(same.equals(&Value::Table(Rc::new(t))));
    }
}
