//! Typed builtin arguments. A builtin declares its parameters once, with `builtin!`: names,
//! Rust types, defaults (written in beb syntax, shown as written) and docs. The binder turns
//! each argument into its declared type, so a builtin body receives `Arg<T>` fields and can
//! neither read a parameter it did not declare nor forget a type check.

use std::rc::Rc;

use crate::error::{BebError, ErrorKind};
use crate::eval::value::{Table, Text, Value};
use crate::lm::ModelRef;
use crate::syntax::ast::Span;

use super::{as_text, iterate, to_count};

/// One argument as a builtin receives it: the typed value and where it was written.
#[derive(Clone)]
pub struct Arg<T> {
    pub value: T,
    /// The argument's span, or the call's when it was not given.
    pub span: Span,
    pub name: &'static str,
}

impl<T> std::ops::Deref for Arg<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> Arg<T> {
    /// A value error pointing at this argument.
    pub fn invalid(&self, message: impl Into<String>) -> BebError {
        BebError::new(ErrorKind::Value, message).at(self.span)
    }

    /// "`name` of f() must be {expected}, found {found}" at this argument, for builtins that
    /// check inside an argument (its elements) what the binder cannot.
    pub fn wrong_type(&self, call: &super::Call, expected: &str, found: &str) -> BebError {
        call.wrong_type(self.name, self.span, expected, found)
    }

    pub fn into_inner(self) -> T {
        self.value
    }

    /// The same argument with its value changed (keeps the span for later diagnostics).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Arg<U> {
        Arg {
            value: f(self.value),
            span: self.span,
            name: self.name,
        }
    }
}

impl Arg<ModelRef> {
    /// Two models compared token by token must share a vocabulary; the error points here.
    pub fn same_vocabulary_as(&self, other: &Arg<ModelRef>) -> crate::error::BebResult<()> {
        crate::lm::check_same_vocabulary(other.value.as_ref(), self.value.as_ref())
            .map_err(|e| BebError::from(e).at(self.span))
    }
}

/// Why a value could not become a parameter's type.
pub enum Mismatch {
    /// The wrong kind of value (reported with the parameter's expected type).
    Type,
    /// The right kind, but not an acceptable value (the message says why).
    Invalid(String),
}

/// A Rust type a builtin parameter can have.
pub trait FromArg: Sized {
    /// The type as signatures and the language reference show it.
    const TYPE: &'static str;
    /// The type as an error message names it ("must be {EXPECTED}").
    const EXPECTED: &'static str;
    /// Convert `value` (never `none`: that means "not given") for parameter `name`.
    fn from_value(value: &Value, name: &str) -> Result<Self, Mismatch>;
    /// What a parameter of this type is when not given and without a default; `None` makes
    /// the parameter required.
    fn absent() -> Option<Self> {
        None
    }
}

impl<T: FromArg> FromArg for Option<T> {
    const TYPE: &'static str = T::TYPE;
    const EXPECTED: &'static str = T::EXPECTED;
    fn from_value(value: &Value, name: &str) -> Result<Self, Mismatch> {
        T::from_value(value, name).map(Some)
    }
    fn absent() -> Option<Self> {
        Some(None)
    }
}

/// A parameter type that is one kind of value, taken as is.
macro_rules! variant_arg {
    ($T:ty = $ty:literal, $expected:literal, $variant:ident($x:ident) => $take:expr) => {
        impl FromArg for $T {
            const TYPE: &'static str = $ty;
            const EXPECTED: &'static str = $expected;
            fn from_value(value: &Value, _: &str) -> Result<Self, Mismatch> {
                match value {
                    Value::$variant($x) => Ok($take),
                    _ => Err(Mismatch::Type),
                }
            }
        }
    };
}

variant_arg!(f64 = "number", "a number", Num(x) => *x);

/// A count: a whole number >= 0.
impl FromArg for usize {
    const TYPE: &'static str = "int";
    const EXPECTED: &'static str = "a number";
    fn from_value(value: &Value, name: &str) -> Result<Self, Mismatch> {
        let x = f64::from_value(value, name)?;
        to_count(x).ok_or_else(|| {
            Mismatch::Invalid(format!("`{name}` must be a whole number >= 0, found {x}"))
        })
    }
}

variant_arg!(bool = "bool", "true or false", Bool(b) => *b);

variant_arg!(Rc<str> = "string", "a string", Str(s) => s.clone());

variant_arg!(ModelRef = "model", "a model", Model(m) => m.clone());

/// A text; a string or a list of strings is accepted as a text of those sentences.
impl FromArg for Rc<Text> {
    const TYPE: &'static str = "text";
    const EXPECTED: &'static str = "a text";
    fn from_value(value: &Value, _: &str) -> Result<Self, Mismatch> {
        as_text(value).ok_or(Mismatch::Type)
    }
    fn absent() -> Option<Self> {
        Some(Rc::new(Text::default()))
    }
}

variant_arg!(Rc<Table> = "table", "a table", Table(t) => t.clone());

/// Any value, unchecked (the builtin dispatches on it).
impl FromArg for Value {
    const TYPE: &'static str = "any";
    const EXPECTED: &'static str = "a value";
    fn from_value(value: &Value, _: &str) -> Result<Self, Mismatch> {
        Ok(value.clone())
    }
}

/// A list of values; ranges, table rows and texts count as lists.
#[derive(Clone, Debug)]
pub struct List(pub Vec<Value>);

impl FromArg for List {
    const TYPE: &'static str = "list";
    const EXPECTED: &'static str = "a list";
    fn from_value(value: &Value, _: &str) -> Result<Self, Mismatch> {
        match value {
            Value::Range(_) => crate::eval::ops::elements(value)
                .map(List)
                .map_err(|e| Mismatch::Invalid(e.message)),
            other => iterate(other).map(List).ok_or(Mismatch::Type),
        }
    }
}

/// A list argument (ranges, table rows and texts count as lists) that remembers the kind of
/// value it was given as, for messages about its elements ("must be a list of strings,
/// found range").
#[derive(Clone, Debug)]
pub struct Elements {
    pub items: Vec<Value>,
    /// The type name of the value given.
    pub given: &'static str,
}

impl FromArg for Elements {
    const TYPE: &'static str = "list";
    const EXPECTED: &'static str = "a list";
    fn from_value(value: &Value, name: &str) -> Result<Self, Mismatch> {
        let List(items) = List::from_value(value, name)?;
        Ok(Elements {
            items,
            given: value.type_name(),
        })
    }
}

impl Arg<Elements> {
    /// The elements as strings; any other element makes the whole argument a wrong type
    /// ("must be a list of strings, found list").
    pub fn strings(&self, call: &super::Call) -> crate::error::BebResult<Vec<String>> {
        self.items
            .iter()
            .map(|v| match v {
                Value::Str(s) => Ok(s.to_string()),
                _ => Err(self.wrong_type(call, "a list of strings", self.given)),
            })
            .collect()
    }
}

/// One string or a list of strings (sentence delimiters, keywords, file names).
#[derive(Clone, Debug)]
pub struct StringOrList(pub Vec<String>);

impl FromArg for StringOrList {
    const TYPE: &'static str = "string | list";
    const EXPECTED: &'static str = "a string or a list of strings";
    fn from_value(value: &Value, _: &str) -> Result<Self, Mismatch> {
        match value {
            Value::Str(s) => Ok(StringOrList(vec![s.to_string()])),
            Value::List(items) => items
                .iter()
                .map(|v| match v {
                    Value::Str(s) => Some(s.to_string()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(StringOrList)
                .ok_or(Mismatch::Type),
            _ => Err(Mismatch::Type),
        }
    }
}

/// The elements of a list, each taken by `pick`; the first element it refuses is named in
/// the message ("element 2 of `xs` is a string, not a number").
fn elements_as<T>(
    items: &[Value],
    name: &str,
    kind: &str,
    pick: impl Fn(&Value) -> Option<T>,
) -> Result<Vec<T>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            pick(v).ok_or_else(|| {
                format!(
                    "element {i} of `{name}` is a {}, not a {kind}",
                    v.type_name()
                )
            })
        })
        .collect()
}

/// The numbers in `items`, the elements of argument `name` (e.g. a row of a nested list).
/// An estimate among them is refused with the two ways on: its value, or `sample_mean`.
pub fn numbers_in(items: &[Value], name: &str) -> Result<Vec<f64>, String> {
    if let Some(i) = items.iter().position(|v| matches!(v, Value::Estimate(_))) {
        return Err(format!(
            "element {i} of `{name}` is an estimate, not a number: take its value with `.mean` \
             (e.g. `e.mean`), or, for the mean of sampled values with its standard error, \
             `sample_mean(values)` of plain numbers"
        ));
    }
    elements_as(items, name, "number", |v| match v {
        Value::Num(x) => Some(*x),
        _ => None,
    })
}

/// A list of strings; a value that is not a list is "must be a list", an element that is not
/// a string is named by its index.
#[derive(Clone, Debug)]
pub struct Strings(pub Vec<String>);

impl FromArg for Strings {
    const TYPE: &'static str = "list";
    const EXPECTED: &'static str = "a list";
    fn from_value(value: &Value, name: &str) -> Result<Self, Mismatch> {
        let List(items) = List::from_value(value, name)?;
        elements_as(&items, name, "string", |v| match v {
            Value::Str(s) => Some(s.to_string()),
            _ => None,
        })
        .map(Strings)
        .map_err(Mismatch::Invalid)
    }
}

/// A list of numbers; a value that is not a list is "must be a list", an element that is not
/// a number is named by its index.
#[derive(Clone, Debug)]
pub struct Numbers(pub Vec<f64>);

impl FromArg for Numbers {
    const TYPE: &'static str = "list";
    const EXPECTED: &'static str = "a list";
    fn from_value(value: &Value, name: &str) -> Result<Self, Mismatch> {
        let List(items) = List::from_value(value, name)?;
        numbers_in(&items, name)
            .map(Numbers)
            .map_err(Mismatch::Invalid)
    }
}

/// A function value: a user function, a lambda or a builtin.
#[derive(Clone, Debug)]
pub struct Func(pub Value);

impl FromArg for Func {
    const TYPE: &'static str = "function";
    const EXPECTED: &'static str = "a function";
    fn from_value(value: &Value, _: &str) -> Result<Self, Mismatch> {
        match value {
            Value::Func(_) | Value::Native(_) => Ok(Func(value.clone())),
            _ => Err(Mismatch::Type),
        }
    }
}

/// A seed: a whole number is a root seed of its own; a string names a stream under the
/// run's root seed.
#[derive(Clone, Debug)]
pub enum Seed {
    Root(u64),
    Named(Rc<str>),
}

impl FromArg for Seed {
    const TYPE: &'static str = "int | string";
    const EXPECTED: &'static str = "a whole number or a stream name";
    fn from_value(value: &Value, _: &str) -> Result<Self, Mismatch> {
        match value {
            Value::Num(x) => to_count(*x)
                .map(|n| Seed::Root(n as u64))
                .ok_or_else(|| Mismatch::Invalid("a seed is a whole number >= 0".into())),
            Value::Str(s) => Ok(Seed::Named(s.clone())),
            _ => Err(Mismatch::Type),
        }
    }
}

/// Declares a parameter type that is a union of value kinds the builtin tells apart itself
/// (e.g. `number | list`): a newtype over the value, checked for its kind at binding.
#[macro_export]
macro_rules! value_union {
    ($(#[doc = $doc:literal])* $T:ident = $ty:literal, $expected:literal, $pattern:pat) => {
        $(#[doc = $doc])*
        #[derive(Clone, Debug)]
        pub struct $T(pub $crate::eval::value::Value);

        impl $crate::eval::natives::FromArg for $T {
            const TYPE: &'static str = $ty;
            const EXPECTED: &'static str = $expected;
            fn from_value(
                value: &$crate::eval::value::Value,
                _: &str,
            ) -> Result<Self, $crate::eval::natives::Mismatch> {
                #[allow(unused_imports)]
                use $crate::eval::value::Value::*;
                match value {
                    $pattern => Ok($T(value.clone())),
                    _ => Err($crate::eval::natives::Mismatch::Type),
                }
            }
        }
    };
}

value_union!(
    /// A number or a list (or range) of numbers, for element-wise functions.
    NumberOrList = "number | list",
    "a number or a list of numbers",
    Num(_) | List(_) | Range(_)
);

/// Declares a builtin: its parameters with Rust types and defaults, its result type and its
/// doc comment. Generates a struct of `Arg<T>` fields (plus `call`, where the call is written)
/// and its `NATIVE` table entry; the builtin's body is the struct's `run` method:
///
/// ```ignore
/// builtin! {
///     /// log P(text | given), exact.
///     Logprob = logprob(model: ModelRef, text: Rc<Text>, given: Rc<Text> = []) -> "number"
/// }
/// impl Logprob {
///     fn run(self, interp: &mut Interp) -> BebResult<Value> { ... }
/// }
/// ```
///
/// A default is written in beb syntax and shown in the signature as written; `none` means
/// "not given" (an `Option` is then `None`). A first parameter written `*name: T` collects
/// the positional arguments into a `Vec<Arg<T>>`; the parameters after it are keyword-only.
#[macro_export]
macro_rules! builtin {
    (
        $(#[doc = $doc:literal])*
        $S:ident = $name:ident (
            $( $p:ident : $t:ty $(= $d:expr)? ),* $(,)?
        ) -> $ret:literal
    ) => {
        $crate::builtin!(@emit [$($doc)*] $S $name [] [$( $p : $t $(= $d)? ,)*] $ret);
    };
    (
        $(#[doc = $doc:literal])*
        $S:ident = $name:ident (
            * $rest:ident : $rt:ty $(, $p:ident : $t:ty $(= $d:expr)? )* $(,)?
        ) -> $ret:literal
    ) => {
        $crate::builtin!(@emit [$($doc)*] $S $name [$rest : $rt] [$( $p : $t $(= $d)? ,)*] $ret);
    };
    (@emit [$($doc:literal)*] $S:ident $name:ident [$($rest:ident : $rt:ty)?]
        [$( $p:ident : $t:ty $(= $d:expr)? ,)*] $ret:literal) => {
        $(#[doc = $doc])*
        #[allow(dead_code)]
        pub struct $S {
            /// Where the call is written.
            pub call: $crate::eval::natives::Call,
            $(pub $rest: Vec<$crate::eval::natives::Arg<$rt>>,)?
            $(pub $p: $crate::eval::natives::Arg<$t>,)*
        }

        impl $S {
            pub const NATIVE: $crate::eval::natives::Native = $crate::eval::natives::Native {
                name: stringify!($name),
                params: &[
                    $($crate::eval::natives::ParamDecl {
                        name: stringify!($rest),
                        ty: <$rt as $crate::eval::natives::FromArg>::TYPE,
                        default: None,
                        variadic: true,
                    },)?
                    $($crate::eval::natives::ParamDecl {
                        name: stringify!($p),
                        ty: <$t as $crate::eval::natives::FromArg>::TYPE,
                        default: $crate::builtin!(@default $($d)?),
                        variadic: false,
                    },)*
                ],
                returns: $ret,
                doc: concat!($($doc, "\n"),*),
                func: |interp, args| {
                    let mut slots = args.slots();
                    let bound = $S {
                        call: args.call(),
                        $($rest: slots.rest(stringify!($rest))?,)?
                        $($p: slots.next(stringify!($p))?,)*
                    };
                    bound.run(interp)
                },
            };
        }
    };
    (@default) => { None };
    (@default $d:expr) => { Some(stringify!($d)) };
}
