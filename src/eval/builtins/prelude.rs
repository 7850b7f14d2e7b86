//! The prelude: maths, lists and formatting, available in every script without an import.

use std::rc::Rc;

use crate::error::{BebError, BebResult};
use crate::eval::interp::Interp;
use crate::eval::natives::{
    Arg, Call, FromArg, Func, List, Mismatch, Native, NumberOrList, Numbers, as_estimate, as_text,
    iterate,
};
use crate::eval::ops;
use crate::eval::value::{RangeValue, Table, Text, Value};
use crate::format;
use crate::syntax::ast::Span;
use crate::{builtin, value_union};

pub const NATIVES: &[Native] = &[
    Log::NATIVE,
    Log1p::NATIVE,
    Exp::NATIVE,
    Expm1::NATIVE,
    Sqrt::NATIVE,
    Abs::NATIVE,
    Floor::NATIVE,
    Ceil::NATIVE,
    Round::NATIVE,
    Logsumexp::NATIVE,
    Min::NATIVE,
    Max::NATIVE,
    Sum::NATIVE,
    Mean::NATIVE,
    Len::NATIVE,
    Range::NATIVE,
    Map::NATIVE,
    Filter::NATIVE,
    All::NATIVE,
    Any::NATIVE,
    First::NATIVE,
    Zip::NATIVE,
    Concat::NATIVE,
    Sort::NATIVE,
    Reverse::NATIVE,
    Fmt::NATIVE,
    StrOf::NATIVE,
    TypeOf::NATIVE,
    MakeTable::NATIVE,
    Columns::NATIVE,
    MakeText::NATIVE,
    SampleMean::NATIVE,
    MakeEstimate::NATIVE,
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

/// Declares a parameter type shown in signatures as `$ty` that takes any value: the builtin
/// checks the value itself, and its errors say what it wanted.
macro_rules! unchecked {
    ($(#[doc = $doc:literal])* $T:ident = $ty:literal) => {
        $(#[doc = $doc])*
        #[derive(Clone, Debug)]
        pub struct $T(pub Value);

        impl FromArg for $T {
            const TYPE: &'static str = $ty;
            const EXPECTED: &'static str = "a value";
            fn from_value(value: &Value, _: &str) -> Result<Self, Mismatch> {
                Ok($T(value.clone()))
            }
        }
    };
}

unchecked!(
    /// Several numbers or one list (`min`, `max`); checked by `variadic_numbers`.
    NumbersOrList = "number | list"
);
unchecked!(
    /// One of `zip`'s lists; checked by `zip`.
    ZipList = "list"
);
unchecked!(
    /// One of `concat`'s parts; checked by `concat`.
    ConcatPart = "list | text | string"
);
unchecked!(
    /// The test of `all`, `any` and `first`; called on each element (calling a value that
    /// is not a function is the error).
    Test = "function"
);

value_union!(
    /// What `len` counts: a list, string, text, table, range (or record).
    Countable = "list | string | text | table | range",
    "a list, string, text, table or range",
    List(_) | Str(_) | Text(_) | Table(_) | Range(_) | Record(_)
);

value_union!(
    /// A number or an estimate, told apart (`fmt` shows them differently).
    NumberOrEstimate = "number | estimate",
    "a number or an estimate",
    Num(_) | Estimate(_)
);

/// A bound of `range`: a whole number (negative ones too).
#[derive(Clone, Copy, Debug)]
pub struct Bound(pub i64);

impl FromArg for Bound {
    const TYPE: &'static str = "int";
    const EXPECTED: &'static str = "a number";
    fn from_value(value: &Value, name: &str) -> Result<Self, Mismatch> {
        let x = f64::from_value(value, name)?;
        if x.fract() != 0.0 || x.abs() > 9.0e15 {
            return Err(Mismatch::Invalid("range bounds are whole numbers".into()));
        }
        Ok(Bound(x as i64))
    }
}

/// The sentences of `text(...)`: a list of sentence strings, or one string (a text is
/// accepted as itself).
#[derive(Clone, Debug)]
pub struct Sentences(pub Rc<Text>);

impl FromArg for Sentences {
    const TYPE: &'static str = "list | string";
    const EXPECTED: &'static str = "a text";
    fn from_value(value: &Value, _: &str) -> Result<Self, Mismatch> {
        as_text(value).map(Sentences).ok_or(Mismatch::Type)
    }
}

/// An argument that must not be `none` (declared `Option<T>` without a default, so that
/// `none` gets this error rather than the type's).
fn given<T>(arg: Arg<Option<T>>, call: &Call) -> BebResult<Arg<T>> {
    let Arg { value, span, name } = arg;
    match value {
        Some(value) => Ok(Arg { value, span, name }),
        None => Err(call.wrong_type(name, span, "given", "nothing")),
    }
}

builtin! {
    /// Round half away from zero to `digits` decimals.
    Round = round(x: f64, digits: usize = 0) -> "number"
}
impl Round {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        let x = *self.x;
        let digits = (*self.digits).min(15) as i32;
        let scale = 10f64.powi(digits);
        let scaled = x * scale;
        // A number too large to scale has no fractional digits left to round.
        if !scaled.is_finite() {
            return Ok(Value::Num(x));
        }
        Ok(Value::Num(scaled.round() / scale))
    }
}

builtin! {
    /// log(sum(exp(x))) without overflow or underflow.
    Logsumexp = logsumexp(xs: Numbers) -> "number"
}
impl Logsumexp {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        Ok(Value::Num(crate::stats::logspace::logsumexp(
            self.xs.into_inner().0,
        )))
    }
}

/// The numbers among variadic arguments: either several numbers or a single list.
fn variadic_numbers(xs: &[Arg<NumbersOrList>], call: &Call) -> BebResult<Vec<f64>> {
    let values: Vec<Value> = match xs {
        [single] if !matches!(single.0, Value::Num(_)) => iterate(&single.0).ok_or_else(|| {
            BebError::type_error(format!(
                "expected numbers or one list, found a {}",
                single.0.type_name()
            ))
        })?,
        many => many.iter().map(|v| v.0.clone()).collect(),
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
        return Err(BebError::value(format!(
            "{}() of nothing",
            call.builtin.name
        )));
    }
    Ok(out)
}

builtin! {
    /// Smallest of the arguments, or of one list.
    Min = min(*xs: NumbersOrList) -> "number"
}
impl Min {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        Ok(Value::Num(
            variadic_numbers(&self.xs, &self.call)?
                .into_iter()
                .fold(f64::INFINITY, f64::min),
        ))
    }
}

builtin! {
    /// Largest of the arguments, or of one list.
    Max = max(*xs: NumbersOrList) -> "number"
}
impl Max {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        Ok(Value::Num(
            variadic_numbers(&self.xs, &self.call)?
                .into_iter()
                .fold(f64::NEG_INFINITY, f64::max),
        ))
    }
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

builtin! {
    /// Sum of a list of numbers (exact: compensated summation).
    Sum = sum(xs: Numbers) -> "number"
}
impl Sum {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        ops::checked(compensated_sum(&self.xs.0), || "the sum".into())
    }
}

builtin! {
    /// Arithmetic mean of a list of numbers.
    Mean = mean(xs: Numbers) -> "number"
}
impl Mean {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        let xs = &self.xs.0;
        if xs.is_empty() {
            return Err(self.xs.invalid("the mean of an empty list is undefined"));
        }
        ops::checked(compensated_sum(xs) / xs.len() as f64, || "the mean".into())
    }
}

builtin! {
    /// Number of elements (units for a text, rows for a table).
    Len = len(x: Option<Countable>) -> "int"
}
impl Len {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        let x = given(self.x, &self.call)?;
        let n = match &x.0 {
            Value::List(items) => items.len(),
            Value::Str(s) => s.chars().count(),
            Value::Text(t) => t.units.len(),
            Value::Table(t) => t.rows.len(),
            Value::Range(r) => r.len(),
            Value::Record(r) => r.fields.len(),
            other => {
                return Err(self.call.wrong_type(
                    x.name,
                    x.span,
                    <Countable as FromArg>::EXPECTED,
                    other.type_name(),
                ));
            }
        };
        Ok(Value::Num(n as f64))
    }
}

builtin! {
    /// range(n) is 0..n; range(a, b) is a..b.
    Range = range(start: Bound, end: Option<Bound> = none) -> "range"
}
impl Range {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        let (start, end) = match *self.end {
            None => (0, self.start.0),
            Some(end) => (self.start.0, end.0),
        };
        Ok(Value::Range(RangeValue {
            start,
            end,
            inclusive: false,
        }))
    }
}

builtin! {
    /// Apply f to every element.
    Map = map(xs: List, f: Func) -> "list"
}
impl Map {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let span = self.f.span;
        let out = self
            .xs
            .into_inner()
            .0
            .into_iter()
            .map(|x| interp.call_simple(&self.f.0, vec![x], span))
            .collect::<BebResult<_>>()?;
        Ok(Value::list(out))
    }
}

/// test(x) must be a boolean; anything else is an error, not "truthy".
fn holds(
    interp: &mut Interp,
    call: &Call,
    test: Option<(&Value, Span)>,
    x: &Value,
) -> BebResult<bool> {
    let v = match test {
        Some((f, span)) => interp.call_simple(f, vec![x.clone()], span)?,
        None => x.clone(),
    };
    match v {
        Value::Bool(b) => Ok(b),
        other => Err(BebError::type_error(format!(
            "{}() needs true or false for each element, found a {}",
            call.builtin.name,
            other.type_name()
        ))),
    }
}

/// The test of `all`, `any` and `first`, with where it is written, when given.
fn given_test(test: &Arg<Option<Test>>) -> Option<(&Value, Span)> {
    test.value.as_ref().map(|t| (&t.0, test.span))
}

builtin! {
    /// The elements for which keep(x) is true.
    Filter = filter(xs: List, keep: Func) -> "list"
}
impl Filter {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let mut out = Vec::new();
        for x in self.xs.into_inner().0 {
            let v = interp.call_simple(&self.keep.0, vec![x.clone()], self.keep.span)?;
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
}

builtin! {
    /// Whether every element (or test(element)) is true.
    All = all(xs: List, test: Option<Test> = none) -> "bool"
}
impl All {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let test = given_test(&self.test);
        for x in self.xs.into_inner().0 {
            if !holds(interp, &self.call, test, &x)? {
                return Ok(Value::Bool(false));
            }
        }
        Ok(Value::Bool(true))
    }
}

builtin! {
    /// Whether some element (or test(element)) is true.
    Any = any(xs: List, test: Option<Test> = none) -> "bool"
}
impl Any {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let test = given_test(&self.test);
        for x in self.xs.into_inner().0 {
            if holds(interp, &self.call, test, &x)? {
                return Ok(Value::Bool(true));
            }
        }
        Ok(Value::Bool(false))
    }
}

builtin! {
    /// The first element (passing test, if given); none if there is none.
    First = first(xs: List, test: Option<Test> = none) -> "any"
}
impl First {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let test = given_test(&self.test);
        for x in self.xs.into_inner().0 {
            if test.is_none() || holds(interp, &self.call, test, &x)? {
                return Ok(x);
            }
        }
        Ok(Value::None)
    }
}

builtin! {
    /// Lists of corresponding elements: zip([1, 2], [3, 4]) is [[1, 3], [2, 4]].
    Zip = zip(*lists: ZipList) -> "list"
}
impl Zip {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        let lists: Vec<Vec<Value>> = self
            .lists
            .iter()
            .map(|v| {
                iterate(&v.0).ok_or_else(|| {
                    BebError::type_error(format!("zip() takes lists, found a {}", v.0.type_name()))
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
}

builtin! {
    /// Join lists, texts or strings end to end.
    Concat = concat(*parts: ConcatPart) -> "list | text | string"
}
impl Concat {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        let parts = self.parts.iter().map(|p| &p.0);
        let total: u64 = parts
            .clone()
            .map(|v| match v {
                Value::Str(s) => s.len() as u64,
                Value::List(items) => items.len() as u64,
                Value::Text(t) => t.units.len() as u64,
                Value::Range(r) => r.len() as u64,
                _ => 0,
            })
            .fold(0u64, u64::saturating_add);
        crate::budget::check(
            &format!("concat() of {total} elements"),
            total,
            std::mem::size_of::<Value>() as u64,
        )
        .map_err(BebError::value)?;
        match self.parts.first().map(|p| &p.0) {
            Some(Value::Str(_)) => {
                let mut out = String::new();
                for v in parts {
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
                for v in parts {
                    let t = as_text(v).ok_or_else(|| {
                        BebError::type_error(format!("concat() of texts got a {}", v.type_name()))
                    })?;
                    units.extend(t.units.iter().cloned());
                }
                Ok(Value::text(units))
            }
            _ => {
                let mut out = Vec::new();
                for v in parts {
                    out.extend(iterate(v).ok_or_else(|| {
                        BebError::type_error(format!("concat() of lists got a {}", v.type_name()))
                    })?);
                }
                Ok(Value::list(out))
            }
        }
    }
}

builtin! {
    /// Numbers or strings in ascending order.
    Sort = sort(xs: List) -> "list"
}
impl Sort {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        let mut items = self.xs.0.clone();
        if items.iter().all(|v| matches!(v, Value::Num(_))) {
            items.sort_by(|x, y| match (x, y) {
                (Value::Num(p), Value::Num(q)) => p.total_cmp(q),
                _ => std::cmp::Ordering::Equal,
            });
        } else if items.iter().all(|v| matches!(v, Value::Str(_))) {
            items.sort_by_key(|v| v.to_string());
        } else {
            return Err(self
                .xs
                .invalid("sort() needs a list of numbers or a list of strings"));
        }
        Ok(Value::list(items))
    }
}

builtin! {
    /// The elements in reverse order.
    Reverse = reverse(xs: List) -> "list"
}
impl Reverse {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        let mut items = self.xs.into_inner().0;
        items.reverse();
        Ok(Value::list(items))
    }
}

builtin! {
    /// A number to `digits` significant digits (estimates: mean ± stderr).
    Fmt = fmt(x: Option<NumberOrEstimate>, digits: usize = 6) -> "string"
}
impl Fmt {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        let digits = (*self.digits).clamp(1, 17);
        let x = given(self.x, &self.call)?;
        match &x.0 {
            Value::Num(n) => Ok(Value::str(&format::significant(*n, digits))),
            estimate => Ok(Value::str(&crate::eval::export::cell(estimate))),
        }
    }
}

builtin! {
    /// The value as it would print.
    StrOf = str(x: Option<Value>) -> "string"
}
impl StrOf {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        Ok(Value::str(
            &self
                .x
                .as_ref()
                .map(Value::to_string)
                .unwrap_or_else(|| "none".into()),
        ))
    }
}

builtin! {
    /// The name of the value's type.
    TypeOf = r#type(x: Option<Value>) -> "string"
}
impl TypeOf {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        Ok(Value::str(
            self.x.as_ref().map(Value::type_name).unwrap_or("none"),
        ))
    }
}

builtin! {
    /// A table from a list of records with the same fields.
    MakeTable = table(rows: List) -> "table"
}
impl MakeTable {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        let mut t = Table::default();
        for (i, row) in self.rows.0.iter().enumerate() {
            let Value::Record(r) = row else {
                return Err(self
                    .rows
                    .invalid(format!("row {i} is a {}, not a record", row.type_name())));
            };
            if i == 0 {
                t.columns = r.fields.iter().map(|(n, _)| n.clone()).collect();
            }
            let names: Vec<_> = r.fields.iter().map(|(n, _)| n.clone()).collect();
            if names != t.columns {
                return Err(self
                    .rows
                    .invalid(format!("row {i} has fields different from row 0")));
            }
            t.rows
                .push(r.fields.iter().map(|(_, v)| v.clone()).collect());
        }
        Ok(Value::Table(Rc::new(t)))
    }
}

builtin! {
    /// The column names of a table.
    Columns = columns(t: Option<Rc<Table>>) -> "list"
}
impl Columns {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        let t = given(self.t, &self.call)?;
        Ok(Value::list(
            t.columns.iter().map(|c| Value::Str(c.clone())).collect(),
        ))
    }
}

builtin! {
    /// A text (prompt) from sentence strings.
    MakeText = text(sentences: Sentences) -> "text"
}
impl MakeText {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        Ok(Value::Text(self.sentences.into_inner().0))
    }
}

builtin! {
    /// The mean of sampled values as an estimate: mean ± standard error (n = len(xs)).
    SampleMean = sample_mean(xs: Numbers) -> "estimate"
}
impl SampleMean {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        if self.xs.0.len() < 2 {
            return Err(self
                .xs
                .invalid("a sample mean needs at least 2 values for its standard error"));
        }
        Ok(Value::Estimate(crate::stats::Estimate::from_samples(
            &self.xs.0,
        )))
    }
}

builtin! {
    /// An estimate from its parts (e.g. read back from a saved run).
    MakeEstimate = estimate(mean: f64, stderr: f64, n: usize) -> "estimate"
}
impl MakeEstimate {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        let stderr = *self.stderr;
        if stderr.is_nan() || stderr < 0.0 {
            return Err(self.stderr.invalid("a standard error is >= 0"));
        }
        Ok(Value::Estimate(crate::stats::Estimate::new(
            *self.mean, stderr, *self.n,
        )))
    }
}

/// Numbers or estimates in a list (for fits over curves).
pub fn estimates(xs: &Arg<List>) -> BebResult<Vec<crate::stats::Estimate>> {
    xs.0.iter()
        .enumerate()
        .map(|(i, v)| {
            as_estimate(v).ok_or_else(|| {
                xs.invalid(format!("element {i} is a {}, not a number", v.type_name()))
            })
        })
        .collect()
}
