//! The prelude: maths, lists and formatting, available in every script without an import.

use std::rc::Rc;

use crate::builtin;
use crate::error::{BebError, BebResult};
use crate::eval::interp::Interp;
use crate::eval::natives::{Arg, Args, Decl, Native, NumberOrList, as_estimate, as_text, iterate};
use crate::eval::ops;
use crate::eval::value::{RangeValue, Table, Value};
use crate::format;
use crate::syntax::ast::Span;

pub const NATIVES: &[Native] = &[
    Log::NATIVE,
    Log1p::NATIVE,
    Exp::NATIVE,
    Expm1::NATIVE,
    Sqrt::NATIVE,
    Abs::NATIVE,
    Floor::NATIVE,
    Ceil::NATIVE,
    Native {
        decl: Decl::Legacy("round(x: number, digits: int = 0) -> number"),
        doc: "Round half away from zero to `digits` decimals.",
        func: round,
    },
    Native {
        decl: Decl::Legacy("logsumexp(xs: list) -> number"),
        doc: "log(sum(exp(x))) without overflow or underflow.",
        func: logsumexp,
    },
    Native {
        decl: Decl::Legacy("min(*xs: number | list) -> number"),
        doc: "Smallest of the arguments, or of one list.",
        func: min,
    },
    Native {
        decl: Decl::Legacy("max(*xs: number | list) -> number"),
        doc: "Largest of the arguments, or of one list.",
        func: max,
    },
    Native {
        decl: Decl::Legacy("sum(xs: list) -> number"),
        doc: "Sum of a list of numbers (exact: compensated summation).",
        func: sum,
    },
    Native {
        decl: Decl::Legacy("mean(xs: list) -> number"),
        doc: "Arithmetic mean of a list of numbers.",
        func: mean,
    },
    Native {
        decl: Decl::Legacy("len(x: list | string | text | table | range) -> int"),
        doc: "Number of elements (units for a text, rows for a table).",
        func: len,
    },
    Native {
        decl: Decl::Legacy("range(start: int, end: int = none) -> range"),
        doc: "range(n) is 0..n; range(a, b) is a..b.",
        func: range,
    },
    Native {
        decl: Decl::Legacy("map(xs: list, f: function) -> list"),
        doc: "Apply f to every element.",
        func: map,
    },
    Native {
        decl: Decl::Legacy("filter(xs: list, keep: function) -> list"),
        doc: "The elements for which keep(x) is true.",
        func: filter,
    },
    Native {
        decl: Decl::Legacy("all(xs: list, test: function = none) -> bool"),
        doc: "Whether every element (or test(element)) is true.",
        func: all,
    },
    Native {
        decl: Decl::Legacy("any(xs: list, test: function = none) -> bool"),
        doc: "Whether some element (or test(element)) is true.",
        func: any,
    },
    Native {
        decl: Decl::Legacy("first(xs: list, test: function = none) -> any"),
        doc: "The first element (passing test, if given); none if there is none.",
        func: first,
    },
    Native {
        decl: Decl::Legacy("zip(*lists: list) -> list"),
        doc: "Lists of corresponding elements: zip([1, 2], [3, 4]) is [[1, 3], [2, 4]].",
        func: zip,
    },
    Native {
        decl: Decl::Legacy("concat(*parts: list | text | string) -> list | text | string"),
        doc: "Join lists, texts or strings end to end.",
        func: concat,
    },
    Native {
        decl: Decl::Legacy("sort(xs: list) -> list"),
        doc: "Numbers or strings in ascending order.",
        func: sort,
    },
    Native {
        decl: Decl::Legacy("reverse(xs: list) -> list"),
        doc: "The elements in reverse order.",
        func: reverse,
    },
    Native {
        decl: Decl::Legacy("fmt(x: number | estimate, digits: int = 6) -> string"),
        doc: "A number to `digits` significant digits (estimates: mean ± stderr).",
        func: fmt,
    },
    Native {
        decl: Decl::Legacy("str(x: any) -> string"),
        doc: "The value as it would print.",
        func: str_fn,
    },
    Native {
        decl: Decl::Legacy("type(x: any) -> string"),
        doc: "The name of the value's type.",
        func: type_fn,
    },
    Native {
        decl: Decl::Legacy("table(rows: list) -> table"),
        doc: "A table from a list of records with the same fields.",
        func: table,
    },
    Native {
        decl: Decl::Legacy("columns(t: table) -> list"),
        doc: "The column names of a table.",
        func: columns,
    },
    Native {
        decl: Decl::Legacy("text(sentences: list | string) -> text"),
        doc: "A text (prompt) from sentence strings.",
        func: text,
    },
    Native {
        decl: Decl::Legacy("sample_mean(xs: list) -> estimate"),
        doc: "The mean of sampled values as an estimate: mean ± standard error (n = len(xs)).",
        func: sample_mean,
    },
    Native {
        decl: Decl::Legacy("estimate(mean: number, stderr: number, n: int) -> estimate"),
        doc: "An estimate from its parts (e.g. read back from a saved run).",
        func: estimate,
    },
];

/// A function of one number, applied element-wise to lists (and ranges).
fn elementwise(
    x: &Arg<NumberOrList>,
    f: impl Fn(f64) -> f64 + Copy,
    name: &str,
) -> BebResult<Value> {
    fn apply(v: &Value, f: impl Fn(f64) -> f64 + Copy, name: &str, at: Span) -> BebResult<Value> {
        match v {
            Value::Num(x) => ops::checked(f(*x), || format!("{name}({})", format::number(*x))),
            Value::List(_) | Value::Range(_) => Ok(Value::list(
                ops::elements(v)?
                    .iter()
                    .map(|i| apply(i, f, name, at))
                    .collect::<BebResult<_>>()?,
            )),
            other => Err(BebError::argument(format!(
                "`x` of {name}() must be a number or a list of numbers, found {}",
                other.type_name()
            ))
            .at(at)),
        }
    }
    apply(&x.0, f, name, x.span)
}

/// Declares a builtin that applies `f` to a number or to each element of a list.
macro_rules! elementwise {
    ($(#[doc = $doc:literal])* $S:ident = $name:ident, $f:expr) => {
        builtin! {
            $(#[doc = $doc])*
            $S = $name(x: NumberOrList) -> "number | list"
        }
        impl $S {
            fn run(self, _: &mut Interp) -> BebResult<Value> {
                elementwise(&self.x, $f, stringify!($name))
            }
        }
    };
}

elementwise! {
    /// Natural logarithm; log(0) is -inf.
    Log = log, f64::ln
}
elementwise! {
    /// log(1 + x), accurate for tiny x (e.g. log1p(-1e-300)).
    Log1p = log1p, f64::ln_1p
}
elementwise! {
    /// e^x.
    Exp = exp, f64::exp
}
elementwise! {
    /// e^x - 1, accurate for tiny x.
    Expm1 = expm1, f64::exp_m1
}
elementwise! {
    /// Square root (negative input is an error).
    Sqrt = sqrt, f64::sqrt
}
elementwise! {
    /// Absolute value.
    Abs = abs, f64::abs
}
elementwise! {
    /// Largest whole number <= x.
    Floor = floor, f64::floor
}
elementwise! {
    /// Smallest whole number >= x.
    Ceil = ceil, f64::ceil
}

fn round(_: &mut Interp, a: &Args) -> BebResult<Value> {
    let x = a.num("x")?;
    let digits = a.opt_count("digits")?.unwrap_or(0).min(15) as i32;
    let scale = 10f64.powi(digits);
    let scaled = x * scale;
    // A number too large to scale has no fractional digits left to round.
    if !scaled.is_finite() {
        return Ok(Value::Num(x));
    }
    Ok(Value::Num(scaled.round() / scale))
}

/// The numbers in a list argument (errors name the first non-number).
pub fn numbers(a: &Args, name: &str) -> BebResult<Vec<f64>> {
    a.list(name)?
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Num(x) => Ok(*x),
            other => Err(a.invalid(
                name,
                format!(
                    "element {i} of `{name}` is a {}, not a number",
                    other.type_name()
                ),
            )),
        })
        .collect()
}

fn logsumexp(_: &mut Interp, a: &Args) -> BebResult<Value> {
    Ok(Value::Num(crate::stats::logspace::logsumexp(numbers(
        a, "xs",
    )?)))
}

/// The numbers among variadic arguments: either several numbers or a single list.
fn variadic_numbers(a: &Args) -> BebResult<Vec<f64>> {
    let values: Vec<Value> = match a.rest.as_slice() {
        [(single, _)] if !matches!(single, Value::Num(_)) => iterate(single).ok_or_else(|| {
            BebError::type_error(format!(
                "expected numbers or one list, found a {}",
                single.type_name()
            ))
        })?,
        many => many.iter().map(|(v, _)| v.clone()).collect(),
    };
    let out: Vec<f64> = values
        .iter()
        .map(|v| match v {
            Value::Num(x) => Ok(*x),
            other => Err(BebError::type_error(format!(
                "expected numbers, found a {}",
                other.type_name()
            ))),
        })
        .collect::<BebResult<_>>()?;
    if out.is_empty() {
        return Err(BebError::value(format!("{}() of nothing", a.builtin.name)));
    }
    Ok(out)
}

fn min(_: &mut Interp, a: &Args) -> BebResult<Value> {
    Ok(Value::Num(
        variadic_numbers(a)?
            .into_iter()
            .fold(f64::INFINITY, f64::min),
    ))
}
fn max(_: &mut Interp, a: &Args) -> BebResult<Value> {
    Ok(Value::Num(
        variadic_numbers(a)?
            .into_iter()
            .fold(f64::NEG_INFINITY, f64::max),
    ))
}

/// Neumaier's compensated sum: long sums of small terms stay exact to rounding.
fn compensated_sum(xs: &[f64]) -> f64 {
    let mut sum = 0.0;
    let mut c = 0.0;
    for &x in xs {
        let t = sum + x;
        if sum.abs() >= x.abs() {
            c += (sum - t) + x;
        } else {
            c += (x - t) + sum;
        }
        sum = t;
    }
    sum + c
}

fn sum(_: &mut Interp, a: &Args) -> BebResult<Value> {
    let xs = numbers(a, "xs")?;
    ops::checked(compensated_sum(&xs), || "the sum".into())
}

fn mean(_: &mut Interp, a: &Args) -> BebResult<Value> {
    let xs = numbers(a, "xs")?;
    if xs.is_empty() {
        return Err(a.invalid("xs", "the mean of an empty list is undefined"));
    }
    ops::checked(compensated_sum(&xs) / xs.len() as f64, || "the mean".into())
}

fn len(_: &mut Interp, a: &Args) -> BebResult<Value> {
    let n = match a.value("x")? {
        Value::List(items) => items.len(),
        Value::Str(s) => s.chars().count(),
        Value::Text(t) => t.units.len(),
        Value::Table(t) => t.rows.len(),
        Value::Range(r) => r.len(),
        Value::Record(r) => r.fields.len(),
        _ => return Err(a.wrong_type("x", "a list, string, text, table or range")),
    };
    Ok(Value::Num(n as f64))
}

fn range(_: &mut Interp, a: &Args) -> BebResult<Value> {
    let whole = |name: &str| -> BebResult<i64> {
        let x = a.num(name)?;
        if x.fract() != 0.0 || x.abs() > 9.0e15 {
            return Err(a.invalid(name, "range bounds are whole numbers"));
        }
        Ok(x as i64)
    };
    let (start, end) = match a.get("end") {
        None => (0, whole("start")?),
        Some(_) => (whole("start")?, whole("end")?),
    };
    Ok(Value::Range(RangeValue {
        start,
        end,
        inclusive: false,
    }))
}

fn map(interp: &mut Interp, a: &Args) -> BebResult<Value> {
    let f = a.callable("f")?;
    let span = a.span("f");
    let out = a
        .list("xs")?
        .into_iter()
        .map(|x| interp.call_simple(&f, vec![x], span))
        .collect::<BebResult<_>>()?;
    Ok(Value::list(out))
}

/// test(x) must be a boolean; anything else is an error, not "truthy".
fn holds(interp: &mut Interp, a: &Args, test: Option<&Value>, x: &Value) -> BebResult<bool> {
    let v = match test {
        Some(f) => interp.call_simple(f, vec![x.clone()], a.span("test"))?,
        None => x.clone(),
    };
    match v {
        Value::Bool(b) => Ok(b),
        other => Err(BebError::type_error(format!(
            "{}() needs true or false for each element, found a {}",
            a.builtin.name,
            other.type_name()
        ))),
    }
}

fn filter(interp: &mut Interp, a: &Args) -> BebResult<Value> {
    let f = a.callable("keep")?;
    let mut out = Vec::new();
    for x in a.list("xs")? {
        let v = interp.call_simple(&f, vec![x.clone()], a.span("keep"))?;
        match v {
            Value::Bool(true) => out.push(x),
            Value::Bool(false) => {}
            other => {
                return Err(BebError::type_error(format!(
                    "filter() needs true or false, found a {}",
                    other.type_name()
                )));
            }
        }
    }
    Ok(Value::list(out))
}

fn all(interp: &mut Interp, a: &Args) -> BebResult<Value> {
    let test = a.get("test").cloned();
    for x in a.list("xs")? {
        if !holds(interp, a, test.as_ref(), &x)? {
            return Ok(Value::Bool(false));
        }
    }
    Ok(Value::Bool(true))
}

fn any(interp: &mut Interp, a: &Args) -> BebResult<Value> {
    let test = a.get("test").cloned();
    for x in a.list("xs")? {
        if holds(interp, a, test.as_ref(), &x)? {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

fn first(interp: &mut Interp, a: &Args) -> BebResult<Value> {
    let test = a.get("test").cloned();
    for x in a.list("xs")? {
        if test.is_none() || holds(interp, a, test.as_ref(), &x)? {
            return Ok(x);
        }
    }
    Ok(Value::None)
}

fn zip(_: &mut Interp, a: &Args) -> BebResult<Value> {
    let lists: Vec<Vec<Value>> = a
        .rest
        .iter()
        .map(|(v, _)| {
            iterate(v).ok_or_else(|| {
                BebError::type_error(format!("zip() takes lists, found a {}", v.type_name()))
            })
        })
        .collect::<BebResult<_>>()?;
    let n = lists.iter().map(Vec::len).min().unwrap_or(0);
    if lists.iter().any(|l| l.len() != n) {
        return Err(BebError::value("zip() needs lists of the same length"));
    }
    Ok(Value::list(
        (0..n)
            .map(|i| Value::list(lists.iter().map(|l| l[i].clone()).collect()))
            .collect(),
    ))
}

fn concat(_: &mut Interp, a: &Args) -> BebResult<Value> {
    match a.rest.first().map(|(v, _)| v) {
        Some(Value::Str(_)) => {
            let mut out = String::new();
            for (v, _) in &a.rest {
                match v {
                    Value::Str(s) => out.push_str(s),
                    other => {
                        return Err(BebError::type_error(format!(
                            "concat() of strings got a {}",
                            other.type_name()
                        )));
                    }
                }
            }
            Ok(Value::Str(Rc::from(out)))
        }
        Some(Value::Text(_)) => {
            let mut units = Vec::new();
            for (v, _) in &a.rest {
                let t = as_text(v).ok_or_else(|| {
                    BebError::type_error(format!("concat() of texts got a {}", v.type_name()))
                })?;
                units.extend(t.units.iter().cloned());
            }
            Ok(Value::text(units))
        }
        _ => {
            let mut out = Vec::new();
            for (v, _) in &a.rest {
                out.extend(iterate(v).ok_or_else(|| {
                    BebError::type_error(format!("concat() of lists got a {}", v.type_name()))
                })?);
            }
            Ok(Value::list(out))
        }
    }
}

fn sort(_: &mut Interp, a: &Args) -> BebResult<Value> {
    let mut items = a.list("xs")?;
    if items.iter().all(|v| matches!(v, Value::Num(_))) {
        items.sort_by(|x, y| match (x, y) {
            (Value::Num(p), Value::Num(q)) => p.total_cmp(q),
            _ => std::cmp::Ordering::Equal,
        });
    } else if items.iter().all(|v| matches!(v, Value::Str(_))) {
        items.sort_by_key(|v| v.to_string());
    } else {
        return Err(a.invalid("xs", "sort() needs a list of numbers or a list of strings"));
    }
    Ok(Value::list(items))
}

fn reverse(_: &mut Interp, a: &Args) -> BebResult<Value> {
    let mut items = a.list("xs")?;
    items.reverse();
    Ok(Value::list(items))
}

fn fmt(_: &mut Interp, a: &Args) -> BebResult<Value> {
    let digits = a.opt_count("digits")?.unwrap_or(6).clamp(1, 17);
    match a.value("x")? {
        Value::Num(x) => Ok(Value::str(&format::significant(*x, digits))),
        Value::Estimate(_) => Ok(Value::str(&crate::eval::export::cell(a.value("x")?))),
        _ => Err(a.wrong_type("x", "a number or an estimate")),
    }
}

fn str_fn(_: &mut Interp, a: &Args) -> BebResult<Value> {
    Ok(Value::str(
        &a.get("x")
            .map(Value::to_string)
            .unwrap_or_else(|| "none".into()),
    ))
}

fn type_fn(_: &mut Interp, a: &Args) -> BebResult<Value> {
    Ok(Value::str(
        a.get("x").map(Value::type_name).unwrap_or("none"),
    ))
}

fn table(_: &mut Interp, a: &Args) -> BebResult<Value> {
    let rows = a.list("rows")?;
    let mut t = Table::default();
    for (i, row) in rows.iter().enumerate() {
        let Value::Record(r) = row else {
            return Err(a.invalid(
                "rows",
                format!("row {i} is a {}, not a record", row.type_name()),
            ));
        };
        if i == 0 {
            t.columns = r.fields.iter().map(|(n, _)| n.clone()).collect();
        }
        let names: Vec<_> = r.fields.iter().map(|(n, _)| n.clone()).collect();
        if names != t.columns {
            return Err(a.invalid("rows", format!("row {i} has fields different from row 0")));
        }
        t.rows
            .push(r.fields.iter().map(|(_, v)| v.clone()).collect());
    }
    Ok(Value::Table(Rc::new(t)))
}

fn columns(_: &mut Interp, a: &Args) -> BebResult<Value> {
    match a.value("t")? {
        Value::Table(t) => Ok(Value::list(
            t.columns.iter().map(|c| Value::Str(c.clone())).collect(),
        )),
        _ => Err(a.wrong_type("t", "a table")),
    }
}

fn text(_: &mut Interp, a: &Args) -> BebResult<Value> {
    Ok(Value::Text(a.text("sentences")?))
}

fn sample_mean(_: &mut Interp, a: &Args) -> BebResult<Value> {
    let xs = numbers(a, "xs")?;
    if xs.len() < 2 {
        return Err(a.invalid(
            "xs",
            "a sample mean needs at least 2 values for its standard error",
        ));
    }
    Ok(Value::Estimate(crate::stats::Estimate::from_samples(&xs)))
}

fn estimate(_: &mut Interp, a: &Args) -> BebResult<Value> {
    let stderr = a.num("stderr")?;
    if stderr.is_nan() || stderr < 0.0 {
        return Err(a.invalid("stderr", "a standard error is >= 0"));
    }
    Ok(Value::Estimate(crate::stats::Estimate {
        mean: a.num("mean")?,
        stderr,
        n: a.count("n")?,
    }))
}

/// Numbers or estimates in a list (for fits over curves).
pub fn estimates(a: &Args, name: &str) -> BebResult<Vec<crate::stats::Estimate>> {
    a.list(name)?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            as_estimate(v).ok_or_else(|| {
                a.invalid(
                    name,
                    format!("element {i} is a {}, not a number", v.type_name()),
                )
            })
        })
        .collect()
}
