//! Builtins implemented in Rust. Each module of builtins declares a table of [`Native`]s with
//! a signature string and a doc string; the signature drives argument binding, so every
//! argument error can quote it, and the REPL's `:help` shows it.

use std::rc::Rc;

use crate::error::{BebError, BebResult, ErrorKind};
use crate::eval::interp::Interp;
use crate::eval::value::{Text, Value};
use crate::lm::ModelRef;
use crate::stats::Estimate;
use crate::syntax::ast::{CallSite, Span};

mod arg;
mod domain;

pub use arg::{
    Arg, FromArg, Func, List, Mismatch, NumOrEstimate, NumberOrList, Numbers, Seed, Strings,
};
pub use domain::{Behavior, ModelPath, Prompts, ScorerValue, unit_value};

pub type NativeFn = fn(&mut Interp, &Args) -> BebResult<Value>;

/// A builtin as declared by its module.
pub struct Native {
    pub decl: Decl,
    pub doc: &'static str,
    pub func: NativeFn,
}

/// How a builtin declares its parameters.
pub enum Decl {
    /// A signature string, e.g. `"kl(p: model, q: model, given: text = []) -> number"`;
    /// arguments are read by name.
    Legacy(&'static str),
    /// Typed parameters, declared with `builtin!`.
    Typed {
        name: &'static str,
        params: &'static [ParamDecl],
        returns: &'static str,
    },
}

/// One typed parameter: its name, its type as shown, and its default in beb syntax.
pub struct ParamDecl {
    pub name: &'static str,
    pub ty: &'static str,
    pub default: Option<&'static str>,
    pub variadic: bool,
}

/// One declared parameter, as binding needs it.
#[derive(Clone, Debug)]
pub struct ParamSpec {
    pub name: String,
    pub optional: bool,
    pub variadic: bool,
    /// The declared default (typed builtins); `none` when absent.
    pub default: Option<Value>,
}

/// A registered builtin: the declaration plus its parsed parameter list.
pub struct Builtin {
    pub name: String,
    pub module: &'static str,
    pub signature: String,
    pub doc: String,
    pub params: Vec<ParamSpec>,
    pub func: NativeFn,
}

impl Builtin {
    pub fn new(module: &'static str, native: &Native) -> Builtin {
        let doc = native
            .doc
            .lines()
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ")
            .trim()
            .to_string();
        match &native.decl {
            Decl::Legacy(signature) => {
                let (name, params) = parse_signature(signature);
                Builtin {
                    name,
                    module,
                    signature: signature.to_string(),
                    doc,
                    params,
                    func: native.func,
                }
            }
            Decl::Typed {
                name,
                params,
                returns,
            } => {
                let shown: Vec<String> = params
                    .iter()
                    .map(|p| {
                        let star = if p.variadic { "*" } else { "" };
                        match p.default {
                            Some(d) => format!("{star}{}: {} = {d}", p.name, p.ty),
                            None => format!("{star}{}: {}", p.name, p.ty),
                        }
                    })
                    .collect();
                let name = name.trim_start_matches("r#");
                Builtin {
                    name: name.to_string(),
                    module,
                    signature: format!("{name}({}) -> {returns}", shown.join(", ")),
                    doc,
                    params: params
                        .iter()
                        .map(|p| ParamSpec {
                            name: p.name.to_string(),
                            optional: p.default.is_some() || p.variadic,
                            variadic: p.variadic,
                            default: p.default.and_then(literal),
                        })
                        .collect(),
                    func: native.func,
                }
            }
        }
    }
}

/// The value of a default written in beb syntax: a literal (numbers, strings, booleans,
/// `none`, lists and records of literals).
fn literal(text: &str) -> Option<Value> {
    use crate::syntax::ast::{ExprKind, StrPart, UnaryOp};
    fn value(e: &crate::syntax::ast::Expr) -> Option<Value> {
        Some(match &e.node {
            ExprKind::Number(x) => Value::Num(*x),
            ExprKind::Bool(b) => Value::Bool(*b),
            ExprKind::None => Value::None,
            ExprKind::Str(parts) => match parts.as_slice() {
                [] => Value::str(""),
                [StrPart::Text(t)] => Value::str(t),
                _ => return None,
            },
            ExprKind::Unary(UnaryOp::Neg, inner) => match value(inner)? {
                Value::Num(x) => Value::Num(-x),
                _ => return None,
            },
            ExprKind::List(items) => Value::list(items.iter().map(value).collect::<Option<_>>()?),
            _ => return None,
        })
    }
    crate::syntax::parse_expression(text, u32::MAX)
        .ok()
        .and_then(|e| value(&e))
}

/// `name(a: t, b: t = d, *rest: t) -> r` into the name and parameters. Types and defaults
/// are documentation; optionality and order are what binding needs.
fn parse_signature(signature: &str) -> (String, Vec<ParamSpec>) {
    let open = signature.find('(').unwrap_or(signature.len());
    let name = signature[..open].trim().to_string();
    let close = signature.rfind(')').unwrap_or(signature.len());
    let inner = signature.get(open + 1..close).unwrap_or("");
    let mut params = Vec::new();
    let mut depth = 0i32;
    let mut current = String::new();
    for c in inner.chars().chain(std::iter::once(',')) {
        match c {
            '[' | '(' | '{' => depth += 1,
            ']' | ')' | '}' => depth -= 1,
            _ => {}
        }
        if c == ',' && depth == 0 {
            let piece = current.trim();
            if !piece.is_empty() {
                let variadic = piece.starts_with('*');
                let head = piece.trim_start_matches('*');
                let pname = head
                    .split([':', '='])
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string();
                params.push(ParamSpec {
                    name: pname,
                    optional: piece.contains('=') || variadic,
                    variadic,
                    default: None,
                });
            }
            current.clear();
        } else {
            current.push(c);
        }
    }
    (name, params)
}

/// Arguments bound to a builtin's parameters by position and name.
pub struct Args {
    pub builtin: Rc<Builtin>,
    values: Vec<Option<(Value, Span)>>,
    pub rest: Vec<(Value, Span)>,
    pub call_span: Span,
    /// Where the call is written, when it is (names the call's default seed stream).
    pub site: Option<CallSite>,
}

impl Args {
    /// Bind positional and named arguments; errors quote the signature.
    pub fn bind(
        builtin: Rc<Builtin>,
        positional: Vec<(Value, Span)>,
        named: Vec<(String, Value, Span)>,
        call_span: Span,
    ) -> BebResult<Args> {
        let mut values: Vec<Option<(Value, Span)>> = vec![None; builtin.params.len()];
        let mut rest = Vec::new();
        // Positional arguments fill the parameters before a `*rest` one; those after it are
        // keyword-only.
        let fixed: Vec<usize> = (0..builtin.params.len())
            .take_while(|&i| !builtin.params[i].variadic)
            .collect();
        let variadic = builtin.params.iter().any(|p| p.variadic);
        let mut positional = positional.into_iter();
        for &i in &fixed {
            match positional.next() {
                Some(arg) => values[i] = Some(arg),
                None => break,
            }
        }
        for (value, span) in positional {
            if variadic {
                rest.push((value, span));
            } else {
                return Err(signature_error(
                    &builtin,
                    format!(
                        "{}() takes at most {} positional argument{}",
                        builtin.name,
                        fixed.len(),
                        if fixed.len() == 1 { "" } else { "s" }
                    ),
                    span,
                ));
            }
        }
        for (name, value, span) in named {
            match builtin
                .params
                .iter()
                .position(|p| p.name == name && !p.variadic)
            {
                Some(i) if values[i].is_some() => {
                    return Err(signature_error(
                        &builtin,
                        format!("`{name}` is given twice"),
                        span,
                    ));
                }
                Some(i) => values[i] = Some((value, span)),
                None => {
                    let known: Vec<&str> = builtin.params.iter().map(|p| p.name.as_str()).collect();
                    let mut err = signature_error(
                        &builtin,
                        format!("{}() has no parameter `{name}`", builtin.name),
                        span,
                    );
                    if let Some(best) = crate::eval::suggest::closest(&name, known.iter().copied())
                    {
                        err.help = Some(format!(
                            "did you mean `{best}`? signature: {}",
                            builtin.signature
                        ));
                    }
                    return Err(err);
                }
            }
        }
        for (i, p) in builtin.params.iter().enumerate() {
            if !p.optional && values[i].is_none() {
                return Err(signature_error(
                    &builtin,
                    format!("{}() is missing the argument `{}`", builtin.name, p.name),
                    call_span,
                ));
            }
        }
        Ok(Args {
            builtin,
            values,
            rest,
            call_span,
            site: None,
        })
    }

    fn slot(&self, name: &str) -> Option<&(Value, Span)> {
        let i = self.builtin.params.iter().position(|p| p.name == name)?;
        self.values[i].as_ref()
    }

    /// The argument, if given and not `none`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        match self.slot(name) {
            Some((Value::None, _)) | None => None,
            Some((v, _)) => Some(v),
        }
    }

    pub fn span(&self, name: &str) -> Span {
        self.slot(name).map(|(_, s)| *s).unwrap_or(self.call_span)
    }

    /// A type error pointing at argument `name`, quoting the signature.
    pub fn wrong_type(&self, name: &str, expected: &str) -> BebError {
        let found = self.get(name).map(Value::type_name).unwrap_or("nothing");
        signature_error(
            &self.builtin,
            format!(
                "`{name}` of {}() must be {expected}, found {found}",
                self.builtin.name
            ),
            self.span(name),
        )
    }

    /// A value error pointing at argument `name`.
    pub fn invalid(&self, name: &str, message: impl Into<String>) -> BebError {
        BebError::new(ErrorKind::Value, message).at(self.span(name))
    }

    pub fn value(&self, name: &str) -> BebResult<&Value> {
        self.get(name).ok_or_else(|| self.wrong_type(name, "given"))
    }

    pub fn num(&self, name: &str) -> BebResult<f64> {
        match self.get(name) {
            Some(Value::Num(x)) => Ok(*x),
            _ => Err(self.wrong_type(name, "a number")),
        }
    }

    pub fn opt_num(&self, name: &str) -> BebResult<Option<f64>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Num(x)) => Ok(Some(*x)),
            Some(_) => Err(self.wrong_type(name, "a number")),
        }
    }

    /// A non-negative whole number.
    pub fn count(&self, name: &str) -> BebResult<usize> {
        let x = self.num(name)?;
        to_count(x).ok_or_else(|| {
            self.invalid(
                name,
                format!("`{name}` must be a whole number >= 0, found {x}"),
            )
        })
    }

    pub fn opt_count(&self, name: &str) -> BebResult<Option<usize>> {
        match self.get(name) {
            None => Ok(None),
            Some(_) => self.count(name).map(Some),
        }
    }

    pub fn boolean(&self, name: &str, default: bool) -> BebResult<bool> {
        match self.get(name) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(self.wrong_type(name, "true or false")),
        }
    }

    pub fn string(&self, name: &str) -> BebResult<Rc<str>> {
        match self.get(name) {
            Some(Value::Str(s)) => Ok(s.clone()),
            _ => Err(self.wrong_type(name, "a string")),
        }
    }

    pub fn model(&self, name: &str) -> BebResult<ModelRef> {
        match self.get(name) {
            Some(Value::Model(m)) => Ok(m.clone()),
            _ => Err(self.wrong_type(name, "a model")),
        }
    }

    /// A text; a list of strings is accepted as a text of those sentences.
    pub fn text(&self, name: &str) -> BebResult<Rc<Text>> {
        match self.get(name) {
            Some(v) => as_text(v).ok_or_else(|| self.wrong_type(name, "a text")),
            None => Err(self.wrong_type(name, "a text")),
        }
    }

    pub fn opt_text(&self, name: &str) -> BebResult<Rc<Text>> {
        match self.get(name) {
            None => Ok(Rc::new(Text::default())),
            Some(_) => self.text(name),
        }
    }

    /// A list of values (ranges and table columns count as lists).
    pub fn list(&self, name: &str) -> BebResult<Vec<Value>> {
        match self.get(name) {
            Some(v @ Value::Range(_)) => {
                crate::eval::ops::elements(v).map_err(|e| e.at(self.span(name)))
            }
            Some(v) => iterate(v).ok_or_else(|| self.wrong_type(name, "a list")),
            None => Err(self.wrong_type(name, "a list")),
        }
    }

    pub fn callable(&self, name: &str) -> BebResult<Value> {
        match self.get(name) {
            Some(v @ (Value::Func(_) | Value::Native(_))) => Ok(v.clone()),
            _ => Err(self.wrong_type(name, "a function")),
        }
    }

    pub fn estimate_or_num(&self, name: &str) -> BebResult<Value> {
        match self.get(name) {
            Some(v @ (Value::Num(_) | Value::Estimate(_))) => Ok(v.clone()),
            _ => Err(self.wrong_type(name, "a number or an estimate")),
        }
    }
}

/// Where a builtin is called: for diagnostics about the whole call and for naming its
/// default seed stream.
#[derive(Clone)]
pub struct Call {
    pub span: Span,
    pub builtin: Rc<Builtin>,
    pub site: Option<CallSite>,
}

impl Call {
    /// A value error pointing at the whole call.
    pub fn invalid(&self, message: impl Into<String>) -> BebError {
        BebError::new(ErrorKind::Value, message).at(self.span)
    }
}

impl Args {
    /// Where this call is written.
    pub fn call(&self) -> Call {
        Call {
            span: self.call_span,
            builtin: self.builtin.clone(),
            site: self.site.clone(),
        }
    }

    /// The bound arguments in declaration order, for a typed builtin to convert.
    pub fn slots(&self) -> Slots<'_> {
        Slots {
            args: self,
            next: 0,
        }
    }
}

/// Hands out a typed builtin's arguments in declaration order (see `builtin!`).
pub struct Slots<'a> {
    args: &'a Args,
    next: usize,
}

impl Slots<'_> {
    /// The next declared parameter (`name`, as declared), converted to its type; a missing
    /// or `none` argument takes the declared default.
    pub fn next<T: FromArg>(&mut self, name: &'static str) -> BebResult<Arg<T>> {
        let i = self.next;
        self.next += 1;
        let args = self.args;
        let spec = args.builtin.params.get(i);
        let given = args.values.get(i).and_then(|slot| slot.as_ref());
        // A given `none` means "not given" but keeps its span for diagnostics.
        let default = || spec.and_then(|p| p.default.clone()).unwrap_or(Value::None);
        let (value, span) = match given {
            Some((Value::None, span)) => (default(), *span),
            Some((v, span)) => (v.clone(), *span),
            None => (default(), args.call_span),
        };
        let converted = match value {
            Value::None => T::absent().ok_or_else(|| wrong_type::<T>(args, name, "nothing", span)),
            v => T::from_value(&v, name).map_err(|m| match m {
                Mismatch::Type => wrong_type::<T>(args, name, v.type_name(), span),
                Mismatch::Invalid(message) => BebError::new(ErrorKind::Value, message).at(span),
            }),
        }?;
        Ok(Arg {
            value: converted,
            span,
            name,
        })
    }

    /// The variadic first parameter: every positional argument, converted.
    pub fn rest<T: FromArg>(&mut self) -> BebResult<Vec<Arg<T>>> {
        self.next += 1;
        let args = self.args;
        let name: &'static str = "rest";
        args.rest
            .iter()
            .map(|(v, span)| {
                T::from_value(v, name)
                    .map(|value| Arg {
                        value,
                        span: *span,
                        name,
                    })
                    .map_err(|m| match m {
                        Mismatch::Type => wrong_type::<T>(args, name, v.type_name(), *span),
                        Mismatch::Invalid(message) => {
                            BebError::new(ErrorKind::Value, message).at(*span)
                        }
                    })
            })
            .collect()
    }
}

fn wrong_type<T: FromArg>(args: &Args, name: &str, found: &str, span: Span) -> BebError {
    let what = match args.builtin.params.iter().find(|p| p.variadic) {
        Some(p) if name == "rest" => p.name.as_str(),
        _ => name,
    };
    signature_error(
        &args.builtin,
        format!(
            "`{what}` of {}() must be {}, found {found}",
            args.builtin.name,
            T::EXPECTED
        ),
        span,
    )
}

fn signature_error(builtin: &Builtin, message: String, span: Span) -> BebError {
    BebError::new(ErrorKind::Argument, message)
        .at(span)
        .with_help(format!("signature: {}", builtin.signature))
}

/// `x` as a count if it is a non-negative whole number that fits.
pub fn to_count(x: f64) -> Option<usize> {
    (x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x < 9.0e15).then_some(x as usize)
}

/// The longest range turned into a list.
pub const MAX_MATERIALIZED: usize = 50_000_000;

/// The elements of anything iterable: lists, ranges, table rows, texts (one-unit texts).
pub fn iterate(value: &Value) -> Option<Vec<Value>> {
    match value {
        Value::List(items) => Some(items.as_ref().clone()),
        // Materialising more than this many numbers is almost surely a mistake (and would
        // exhaust memory); loops over larger ranges are refused rather than attempted.
        Value::Range(r) if r.len() > MAX_MATERIALIZED => None,
        Value::Range(r) => Some(r.iter().map(|i| Value::Num(i as f64)).collect()),
        Value::Table(t) => Some(
            (0..t.rows.len())
                .filter_map(|i| t.row_record(i))
                .map(|r| Value::Record(Rc::new(r)))
                .collect(),
        ),
        Value::Text(t) => Some(
            t.units
                .iter()
                .map(|u| Value::text(vec![u.clone()]))
                .collect(),
        ),
        _ => None,
    }
}

/// A text from a text value, or from a list of sentence strings.
pub fn as_text(value: &Value) -> Option<Rc<Text>> {
    match value {
        Value::Text(t) => Some(t.clone()),
        Value::Str(s) => Some(Rc::new(Text {
            units: vec![crate::lm::Unit::Sentence(s.clone())],
        })),
        Value::List(items) => {
            let mut units = Vec::with_capacity(items.len());
            for item in items.iter() {
                match item {
                    Value::Str(s) => units.push(crate::lm::Unit::Sentence(s.clone())),
                    Value::Text(t) => units.extend(t.units.iter().cloned()),
                    _ => return None,
                }
            }
            Some(Rc::new(Text { units }))
        }
        _ => None,
    }
}

/// A number or estimate as an estimate-like triple, for builtins that accept both.
pub fn as_estimate(value: &Value) -> Option<Estimate> {
    match value {
        Value::Num(x) => Some(Estimate {
            mean: *x,
            stderr: 0.0,
            n: 0,
        }),
        Value::Estimate(e) => Some(*e),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_parse_into_parameters() {
        let (name, params) =
            parse_signature("kl(p: model, q: model, given: text = [], *rest: number) -> number");
        assert_eq!(name, "kl");
        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["p", "q", "given", "rest"]);
        assert!(!params[0].optional && params[2].optional && params[3].variadic);
    }

    fn nothing(_: &mut Interp, _: &Args) -> BebResult<Value> {
        Ok(Value::None)
    }

    fn builtin(signature: &'static str) -> Rc<Builtin> {
        Rc::new(Builtin::new(
            "test",
            &Native {
                decl: Decl::Legacy(signature),
                doc: "",
                func: nothing,
            },
        ))
    }

    fn at(i: usize) -> Span {
        Span::new(0, i, i + 1)
    }

    fn positional(values: &[f64]) -> Vec<(Value, Span)> {
        values
            .iter()
            .enumerate()
            .map(|(i, &x)| (Value::Num(x), at(i)))
            .collect()
    }

    fn named(name: &str, x: f64) -> (String, Value, Span) {
        (name.to_string(), Value::Num(x), at(9))
    }

    #[test]
    fn binding_by_position_and_name() {
        let f = builtin("f(a: number, b: number = 1, c: number = 2) -> number");
        let args = Args::bind(f.clone(), positional(&[5.0]), vec![named("c", 7.0)], at(0))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(args.num("a").ok(), Some(5.0));
        assert_eq!(args.opt_num("b").ok(), Some(None));
        assert_eq!(args.num("c").ok(), Some(7.0));
        assert_eq!(args.span("c"), at(9));
        assert_eq!(
            args.span("b"),
            at(0),
            "an absent argument points at the call"
        );
        // `none` counts as absent.
        let with_none = Args::bind(
            f,
            vec![(Value::Num(1.0), at(0)), (Value::None, at(1))],
            vec![],
            at(0),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(with_none.get("b").is_none());
    }

    #[test]
    fn binding_errors_quote_the_signature() {
        let f = builtin("f(a: number, b: number = 1) -> number");
        let message = |result: BebResult<Args>| match result {
            Ok(_) => panic!("expected a binding error"),
            Err(e) => {
                let help = e.help.unwrap_or_default();
                assert!(
                    help.starts_with("signature: ") && help.ends_with(") -> number"),
                    "{help}"
                );
                e.message
            }
        };
        assert_eq!(
            message(Args::bind(
                f.clone(),
                positional(&[1.0, 2.0, 3.0]),
                vec![],
                at(0)
            )),
            "f() takes at most 2 positional arguments"
        );
        assert_eq!(
            message(Args::bind(f.clone(), vec![], vec![], at(0))),
            "f() is missing the argument `a`"
        );
        assert_eq!(
            message(Args::bind(
                f.clone(),
                positional(&[1.0]),
                vec![named("a", 2.0)],
                at(0)
            )),
            "`a` is given twice"
        );
        let unknown = Args::bind(f.clone(), positional(&[1.0]), vec![named("bb", 2.0)], at(0));
        let Err(e) = unknown else {
            panic!("unknown parameter accepted")
        };
        assert_eq!(e.message, "f() has no parameter `bb`");
        assert!(
            e.help
                .as_deref()
                .is_some_and(|h| h.starts_with("did you mean `b`?")),
            "{:?}",
            e.help
        );
        let one = builtin("g(x: number) -> number");
        assert_eq!(
            message(Args::bind(one, positional(&[1.0, 2.0]), vec![], at(0))),
            "g() takes at most 1 positional argument"
        );
    }

    #[test]
    fn variadic_parameters_collect_the_rest() {
        let f = builtin("f(first: number, *rest: number) -> list");
        let args = Args::bind(f.clone(), positional(&[1.0, 2.0, 3.0]), vec![], at(0))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(args.num("first").ok(), Some(1.0));
        assert_eq!(args.rest.len(), 2);
        // A variadic parameter cannot be given by name.
        assert!(Args::bind(f, positional(&[1.0]), vec![named("rest", 2.0)], at(0)).is_err());
    }

    #[test]
    fn typed_accessors_report_what_they_wanted() {
        let f = builtin("f(x: any, n: int = none) -> any");
        let args = Args::bind(
            f,
            vec![(Value::str("s"), at(0)), (Value::Num(2.5), at(1))],
            vec![],
            at(0),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            args.num("x").map_err(|e| e.message).err().as_deref(),
            Some("`x` of f() must be a number, found string")
        );
        assert!(
            args.count("n")
                .map_err(|e| e.message)
                .err()
                .is_some_and(|m| m.contains("whole number"))
        );
        assert!(args.list("x").is_err());
        assert!(args.callable("x").is_err());
        assert_eq!(args.string("x").ok().as_deref(), Some("s"));
        assert_eq!(args.boolean("missing", true).ok(), Some(true));
    }

    #[test]
    fn signatures_with_nested_brackets() {
        let (name, params) =
            parse_signature("h(xs: list = [1, 2], f: fn(a, b) = none, *more) -> none");
        assert_eq!(name, "h");
        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["xs", "f", "more"]);
        assert!(params.iter().all(|p| p.optional));
        let (name, params) = parse_signature("nothing() -> none");
        assert_eq!((name.as_str(), params.len()), ("nothing", 0));
    }

    #[test]
    fn counts_and_iteration() {
        assert_eq!(to_count(3.0), Some(3));
        assert_eq!(to_count(-1.0), None);
        assert_eq!(to_count(0.5), None);
        assert_eq!(to_count(f64::INFINITY), None);
        let range = Value::Range(crate::eval::value::RangeValue {
            start: 1,
            end: 3,
            inclusive: true,
        });
        assert_eq!(
            iterate(&range)
                .map(|v| Value::list(v).to_string())
                .as_deref(),
            Some("[1, 2, 3]")
        );
        let huge = Value::Range(crate::eval::value::RangeValue {
            start: 0,
            end: 1 << 40,
            inclusive: false,
        });
        assert!(iterate(&huge).is_none());
        assert!(iterate(&Value::Num(1.0)).is_none());
        let sentences = Value::list(vec![Value::str("A."), Value::str("B.")]);
        assert_eq!(as_text(&sentences).map(|t| t.units.len()), Some(2));
        assert!(as_text(&Value::list(vec![Value::Num(1.0)])).is_none());
    }
}
