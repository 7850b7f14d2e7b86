//! The tree-walking interpreter: evaluates statements and expressions over the spanned AST.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{BebError, BebResult, ErrorKind};
use crate::eval::env::Env;
use crate::eval::natives::{Args, Builtin, iterate, to_count};
use crate::eval::ops;
use crate::eval::value::{Closure, RangeValue, Record, Table, Value};
use crate::eval::{builtins, stdlib, suggest};
use crate::syntax::ast::*;
use crate::syntax::{SyntaxError, parse_program};

/// Calls nested deeper than this are refused (the runner gives the interpreter a large stack).
const MAX_CALL_DEPTH: usize = 2_000;

/// One loaded source file (scripts, REPL inputs, stdlib modules).
pub struct Source {
    pub name: String,
    pub text: Arc<str>,
}

/// Non-local exits: errors, and `return` unwinding to its function.
pub enum Control {
    Error(Box<BebError>),
    Return(Value),
}

impl From<BebError> for Control {
    fn from(e: BebError) -> Control {
        Control::Error(Box::new(e))
    }
}

type Eval<T> = Result<T, Control>;

/// Whether an assertion held, what to say about it, and labelled spans for the diagnostic.
type AssertOutcome = (bool, String, Vec<(Span, String)>);

/// An assertion's outcome, kept for the run record.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub source: String,
    pub location: String,
    pub passed: bool,
    pub detail: String,
}

pub struct Interp {
    pub root_seed: u64,
    sources: Vec<Source>,
    builtin_env: Rc<Env>,
    pub globals: Rc<Env>,
    builtins: BTreeMap<String, Rc<Builtin>>,
    modules: HashMap<String, Value>,
    call_sites: HashMap<(u32, u32), u64>,
    depth: usize,
    pub interrupt: Arc<AtomicBool>,
    out: Box<dyn Write>,
    /// The variable a `let` is about to bind, so models can be named after it.
    name_hint: Option<Name>,
    /// Where `save` writes (created on first write).
    pub out_dir: PathBuf,
    /// Every assertion evaluated, in order.
    pub verdicts: Vec<Verdict>,
    /// Every value saved: (path relative to the run folder, value).
    pub saved: Vec<(String, Value)>,
    /// Loop steps and calls allowed before evaluation stops (unlimited when `None`); lets
    /// tests run arbitrary generated programs safely.
    pub fuel: Option<u64>,
}

impl Interp {
    pub fn new(root_seed: u64, out: Box<dyn Write>) -> Interp {
        let builtin_env = Env::root();
        let mut table = BTreeMap::new();
        for (module, natives) in builtins::MODULES {
            for native in *natives {
                let builtin = Rc::new(Builtin::new(module, native));
                builtin_env.define(
                    Rc::from(builtin.name.as_str()),
                    Value::Native(builtin.clone()),
                );
                table.insert(builtin.name.clone(), builtin);
            }
        }
        let globals = Env::child(&builtin_env);
        Interp {
            root_seed,
            sources: Vec::new(),
            builtin_env,
            globals,
            builtins: table,
            modules: HashMap::new(),
            call_sites: HashMap::new(),
            depth: 0,
            interrupt: Arc::new(AtomicBool::new(false)),
            out,
            name_hint: None,
            out_dir: PathBuf::from("."),
            verdicts: Vec::new(),
            saved: Vec::new(),
            fuel: None,
        }
    }

    pub fn builtins(&self) -> impl Iterator<Item = &Rc<Builtin>> {
        self.builtins.values()
    }

    pub fn builtin(&self, name: &str) -> Option<&Rc<Builtin>> {
        self.builtins.get(name)
    }

    pub fn add_source(&mut self, name: &str, text: &str) -> u32 {
        self.sources.push(Source {
            name: name.to_string(),
            text: Arc::from(text),
        });
        (self.sources.len() - 1) as u32
    }

    pub fn source(&self, file: u32) -> Option<&Source> {
        self.sources.get(file as usize)
    }

    /// Attach the source text an error's span points into, ready for rendering.
    pub fn attach_source(&self, error: BebError) -> BebError {
        match error.span.and_then(|s| self.source(s.file)) {
            Some(src) => error.with_source(&src.name, src.text.clone()),
            None => error,
        }
    }

    /// "file:line:col" for a span (1-based, as editors count).
    pub fn location(&self, span: Span) -> String {
        match self.source(span.file) {
            Some(src) => {
                let (line, col) = line_col(&src.text, span.start as usize);
                format!("{}:{line}:{col}", src.name)
            }
            None => "?".into(),
        }
    }

    pub fn parse(&self, file: u32) -> Result<Vec<Stmt>, SyntaxError> {
        let text = self
            .sources
            .get(file as usize)
            .map(|s| s.text.clone())
            .unwrap_or_else(|| Arc::from(""));
        parse_program(&text, file)
    }

    /// Run a parsed program in the global scope. Returns the value of a trailing expression.
    pub fn run(&mut self, program: &[Stmt]) -> BebResult<Value> {
        let globals = self.globals.clone();
        match self.exec_block(program, &globals) {
            Ok(v) => Ok(v),
            Err(Control::Error(e)) => Err(*e),
            Err(Control::Return(_)) => Err(BebError::new(
                ErrorKind::Value,
                "`return` outside a function",
            )),
        }
    }

    pub fn print_line(&mut self, text: &str) -> BebResult<()> {
        writeln!(self.out, "{text}")
            .and_then(|_| self.out.flush())
            .map_err(|e| BebError::new(ErrorKind::Io, format!("cannot write output: {e}")))
    }

    /// Called at every loop step and call: honours Ctrl-C and the optional step budget.
    fn check_interrupt(&mut self) -> BebResult<()> {
        if self.interrupt.swap(false, Ordering::SeqCst) {
            return Err(BebError::new(ErrorKind::Interrupted, "interrupted"));
        }
        if let Some(fuel) = &mut self.fuel {
            if *fuel == 0 {
                return Err(BebError::new(
                    ErrorKind::Interrupted,
                    "step budget exhausted",
                ));
            }
            *fuel -= 1;
        }
        Ok(())
    }

    /// The stream a randomised builtin draws from: an explicit `seed:` (a number is a root seed,
    /// a string names a stream under the run's root), or else one named by the call site.
    pub fn stream(&mut self, args: &Args) -> BebResult<(u64, String)> {
        match args.get("seed") {
            Some(Value::Num(x)) => {
                let seed = to_count(*x)
                    .ok_or_else(|| args.invalid("seed", "a seed is a whole number >= 0"))?;
                Ok((seed as u64, args.builtin.name.clone()))
            }
            Some(Value::Str(s)) => Ok((self.root_seed, s.to_string())),
            Some(_) => Err(args.wrong_type("seed", "a whole number or a stream name")),
            None => {
                let span = args.call_span;
                let counter = self.call_sites.entry((span.file, span.start)).or_insert(0);
                let occurrence = *counter;
                *counter += 1;
                Ok((
                    self.root_seed,
                    format!("{}#{occurrence}", self.location(span)),
                ))
            }
        }
    }

    /// Take the pending `let` name (models are named after the variable they are bound to).
    pub fn take_name_hint(&mut self) -> Option<Name> {
        self.name_hint.take()
    }

    // ----- statements -----

    fn exec_block(&mut self, stmts: &[Stmt], env: &Rc<Env>) -> Eval<Value> {
        // Functions are hoisted so they can call each other regardless of order.
        for stmt in stmts {
            if let StmtKind::Fn(def) = &stmt.node {
                let name = def.name.clone().unwrap_or_else(|| Rc::from("?"));
                env.define(
                    name,
                    Value::Func(Rc::new(Closure {
                        def: def.clone(),
                        env: env.clone(),
                    })),
                );
            }
        }
        let mut last = Value::None;
        for stmt in stmts {
            last = self.exec(stmt, env)?;
        }
        Ok(last)
    }

    fn exec(&mut self, stmt: &Stmt, env: &Rc<Env>) -> Eval<Value> {
        match &stmt.node {
            StmtKind::Expr(e) => return self.eval(e, env),
            StmtKind::Let(name, e) => {
                self.name_hint = Some(name.node.clone());
                let value = self.eval(e, env);
                self.name_hint = None;
                env.define(name.node.clone(), value?);
            }
            StmtKind::Assign(name, op, e) => {
                let current = env.get(&name.node).ok_or_else(|| {
                    BebError::new(ErrorKind::Name, format!("`{}` is not defined", name.node))
                        .at(name.span)
                        .with_help(format!("define it first with `let {} = ...`", name.node))
                })?;
                let rhs = self.eval(e, env)?;
                let value = match op {
                    AssignOp::Set => rhs,
                    AssignOp::Add => self.binary_at(BinaryOp::Add, &current, &rhs, stmt.span)?,
                    AssignOp::Sub => self.binary_at(BinaryOp::Sub, &current, &rhs, stmt.span)?,
                    AssignOp::Mul => self.binary_at(BinaryOp::Mul, &current, &rhs, stmt.span)?,
                    AssignOp::Div => self.binary_at(BinaryOp::Div, &current, &rhs, stmt.span)?,
                };
                env.assign(&name.node, value);
            }
            StmtKind::Fn(_) | StmtKind::Doc => {}
            StmtKind::Import { module, alias, all } => {
                self.import(module, alias.as_ref(), *all, env)?
            }
            StmtKind::Assert {
                cond,
                confidence,
                message,
            } => self.assert(stmt.span, cond, *confidence, message.as_ref(), env)?,
            StmtKind::Print(exprs) => {
                let mut parts = Vec::with_capacity(exprs.len());
                for e in exprs {
                    parts.push(self.eval(e, env)?.to_string());
                }
                self.print_line(&parts.join(" "))
                    .map_err(|e| e.at(stmt.span))?;
            }
            StmtKind::Save { value, path } => {
                let v = self.eval(value, env)?;
                let p = match self.eval(path, env)? {
                    Value::Str(s) => s,
                    other => {
                        return Err(BebError::type_error(format!(
                            "`save ... to` needs a file name string, found a {}",
                            other.type_name()
                        ))
                        .at(path.span)
                        .into());
                    }
                };
                let written = crate::report::save::save(&v, &p, &self.out_dir)
                    .map_err(|e| e.at(path.span))?;
                self.saved.push((written, v));
            }
            StmtKind::For { var, iter, body } => {
                let iterable = self.eval(iter, env)?;
                let items = iterate(&iterable).ok_or_else(|| {
                    BebError::type_error(format!("cannot iterate over a {}", iterable.type_name()))
                        .at(iter.span)
                })?;
                for item in items {
                    self.check_interrupt().map_err(|e| e.at(stmt.span))?;
                    let scope = Env::child(env);
                    scope.define(var.node.clone(), item);
                    self.exec_block(body, &scope)?;
                }
            }
            StmtKind::Return(e) => {
                let value = match e {
                    Some(e) => self.eval(e, env)?,
                    None => Value::None,
                };
                return Err(Control::Return(value));
            }
        }
        Ok(Value::None)
    }

    fn import(
        &mut self,
        module: &Spanned<Name>,
        alias: Option<&Spanned<Name>>,
        all: bool,
        env: &Rc<Env>,
    ) -> Eval<()> {
        let value = self
            .load_module(&module.node)
            .map_err(|e| e.at(module.span))?;
        if all {
            if let Value::Record(r) = &value {
                for (name, v) in &r.fields {
                    env.define(name.clone(), v.clone());
                }
            }
        } else {
            let name = alias
                .map(|a| a.node.clone())
                .unwrap_or_else(|| module.node.clone());
            env.define(name, value);
        }
        Ok(())
    }

    /// Load (once) a stdlib module and return it as a record of its top-level definitions.
    pub fn load_module(&mut self, name: &str) -> BebResult<Value> {
        if let Some(v) = self.modules.get(name) {
            return Ok(v.clone());
        }
        let text = stdlib::source(name).ok_or_else(|| {
            let known: Vec<&str> = stdlib::MODULES.iter().map(|(n, _)| *n).collect();
            let mut err = BebError::new(ErrorKind::Name, format!("there is no module `{name}`"))
                .with_label("unknown module");
            err.help = Some(match suggest::closest(name, known.iter().copied()) {
                Some(best) => format!("did you mean `{best}`? modules: {}", known.join(", ")),
                None => format!("modules: {}", known.join(", ")),
            });
            err
        })?;
        let file = self.add_source(&format!("stdlib/{name}.beb"), text);
        let program = self.parse(file).map_err(BebError::from_syntax)?;
        let scope = Env::child(&self.builtin_env);
        match self.exec_block(&program, &scope) {
            Ok(_) => {}
            Err(Control::Error(e)) => return Err(*e),
            Err(Control::Return(_)) => return Err(BebError::value("`return` outside a function")),
        }
        let record = Record {
            fields: scope.local_bindings(),
        };
        let value = Value::Record(Rc::new(record));
        self.modules.insert(name.to_string(), value.clone());
        Ok(value)
    }

    fn assert(
        &mut self,
        span: Span,
        cond: &Expr,
        confidence: Option<f64>,
        message: Option<&Expr>,
        env: &Rc<Env>,
    ) -> Eval<()> {
        let source_text = self.snippet(cond.span);
        let location = self.location(span);
        let message = match message {
            Some(m) => Some(self.eval(m, env)?.to_string()),
            None => None,
        };
        let outcome = match confidence {
            Some(level) => self.statistical_assert(cond, level, env)?,
            None => self.exact_assert(cond, env)?,
        };
        let (passed, detail, notes) = outcome;
        self.verdicts.push(Verdict {
            source: source_text.clone(),
            location,
            passed,
            detail: detail.clone(),
        });
        if passed {
            return Ok(());
        }
        let headline = match &message {
            Some(m) => format!("assertion failed: {m}"),
            None => format!("assertion failed: {source_text}"),
        };
        // With both sides labelled, the verdict goes under the operator: labels that overlap
        // the sides' labels would be drawn on top of each other.
        let primary = match &cond.node {
            ExprKind::Binary(op, l, r) if !notes.is_empty() => {
                self.operator_span(*op, l.span, r.span)
            }
            _ => cond.span,
        };
        let mut err = BebError::new(ErrorKind::Assertion, headline)
            .at(primary)
            .with_label(detail.clone());
        for (s, text) in notes {
            err = err.with_note(s, text);
        }
        if message.is_some() {
            err = err.with_help(format!("{source_text}: {detail}"));
        }
        Err(err.into())
    }

    /// Evaluate an exact assertion; for a comparison, report both sides.
    fn exact_assert(&mut self, cond: &Expr, env: &Rc<Env>) -> Eval<AssertOutcome> {
        if let ExprKind::Binary(op, l, r) = &cond.node
            && op.is_comparison()
        {
            let left = self.eval(l, env)?;
            let right = self.eval(r, env)?;
            let result = self.binary_at(*op, &left, &right, cond.span)?;
            let notes = vec![
                (l.span, format!("left: {}", brief(&left))),
                (r.span, format!("right: {}", brief(&right))),
            ];
            return Ok(match truth(&result) {
                Truth::All => (
                    true,
                    format!("{} {} {}", brief(&left), op.symbol(), brief(&right)),
                    notes,
                ),
                Truth::FailsAt(i) => {
                    let pick = |v: &Value| match iterate(v) {
                        Some(items) if matches!(v, Value::List(_) | Value::Range(_)) => {
                            items.get(i).map(brief).unwrap_or_default()
                        }
                        _ => brief(v),
                    };
                    let detail = match i {
                        usize::MAX => format!(
                            "{} {} {} is false",
                            brief(&left),
                            op.symbol(),
                            brief(&right)
                        ),
                        _ => format!(
                            "false at element {i}: {} {} {}",
                            pick(&left),
                            op.symbol(),
                            pick(&right)
                        ),
                    };
                    (false, detail, notes)
                }
                Truth::NotBool(t) => {
                    return Err(BebError::type_error(format!(
                        "`assert` needs true or false, found a {t}"
                    ))
                    .at(cond.span)
                    .into());
                }
            });
        }
        let value = self.eval(cond, env)?;
        match truth(&value) {
            Truth::All => Ok((true, "true".into(), vec![])),
            Truth::FailsAt(usize::MAX) => Ok((false, "the condition is false".into(), vec![])),
            Truth::FailsAt(i) => Ok((false, format!("element {i} is false"), vec![])),
            Truth::NotBool(t) => Err(BebError::type_error(format!(
                "`assert` needs true or false, found a {t}"
            ))
            .at(cond.span)
            .into()),
        }
    }

    /// `assert estimate >= x at 95%`: a one-sided test at the given confidence level.
    fn statistical_assert(
        &mut self,
        cond: &Expr,
        level: f64,
        env: &Rc<Env>,
    ) -> Eval<AssertOutcome> {
        let ExprKind::Binary(op, l, r) = &cond.node else {
            return Err(
                BebError::type_error("`at N%` needs a comparison such as `estimate >= x`")
                    .at(cond.span)
                    .into(),
            );
        };
        let left = self.eval(l, env)?;
        let right = self.eval(r, env)?;
        let test = crate::eval::stat_assert::one_sided(&left, *op, &right, level / 100.0)
            .map_err(|e| e.at(cond.span))?;
        let notes = vec![
            (l.span, format!("left: {}", brief(&left))),
            (r.span, format!("right: {}", brief(&right))),
        ];
        Ok((test.passed, test.detail, notes))
    }

    /// The span of the operator written between two operands (the whole gap if it is not found).
    fn operator_span(&self, op: BinaryOp, left: Span, right: Span) -> Span {
        let gap = Span {
            start: left.end,
            end: right.start,
            file: left.file,
        };
        match self.snippet(gap).find(op.symbol()) {
            Some(i) => Span::new(
                gap.file,
                gap.start as usize + i,
                gap.start as usize + i + op.symbol().len(),
            ),
            None => gap,
        }
    }

    fn snippet(&self, span: Span) -> String {
        self.source(span.file)
            .and_then(|s| s.text.get(span.start as usize..span.end as usize))
            .unwrap_or("?")
            .to_string()
    }

    // ----- expressions -----

    fn binary_at(&self, op: BinaryOp, l: &Value, r: &Value, span: Span) -> BebResult<Value> {
        ops::binary(op, l, r).map_err(|e| e.at(span))
    }

    pub fn eval(&mut self, expr: &Expr, env: &Rc<Env>) -> Eval<Value> {
        let span = expr.span;
        Ok(match &expr.node {
            ExprKind::Number(x) => Value::Num(*x),
            ExprKind::Bool(b) => Value::Bool(*b),
            ExprKind::None => Value::None,
            ExprKind::Str(parts) => self.interpolate(parts, env)?,
            ExprKind::Ident(name) => match env.get(name) {
                Some(v) => v,
                None => return Err(self.unknown_name(name, span, env).into()),
            },
            ExprKind::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(self.eval(item, env)?);
                }
                Value::list(out)
            }
            ExprKind::Record(fields) => {
                let mut out: Vec<(Name, Value)> = Vec::with_capacity(fields.len());
                for f in fields {
                    if out.iter().any(|(n, _)| *n == f.name.node) {
                        return Err(BebError::value(format!(
                            "field `{}` is given twice",
                            f.name.node
                        ))
                        .at(f.name.span)
                        .into());
                    }
                    out.push((f.name.node.clone(), self.eval(&f.value, env)?));
                }
                Value::Record(Rc::new(Record { fields: out }))
            }
            ExprKind::Range {
                start,
                end,
                inclusive,
            } => {
                let bound = |this: &mut Interp, e: &Option<Box<Expr>>| -> Eval<Option<i64>> {
                    match e {
                        None => Ok(None),
                        Some(e) => {
                            let v = this.eval(e, env)?;
                            Ok(Some(integer(&v).map_err(|err| err.at(e.span))?))
                        }
                    }
                };
                let s = bound(self, start)?;
                let e = bound(self, end)?;
                match (s, e) {
                    (Some(start), Some(end)) => Value::Range(RangeValue {
                        start,
                        end,
                        inclusive: *inclusive,
                    }),
                    _ => {
                        return Err(BebError::value(
                            "an open range like `..n` can only be used inside `[...]`",
                        )
                        .at(span)
                        .into());
                    }
                }
            }
            ExprKind::Unary(op, e) => {
                let v = self.eval(e, env)?;
                ops::unary(*op, &v).map_err(|err| err.at(span))?
            }
            ExprKind::Binary(op, l, r) => self.eval_binary(*op, l, r, span, env)?,
            ExprKind::Call { callee, args } => self.eval_call(callee, args, span, env)?,
            ExprKind::Index { target, index } => {
                let t = self.eval(target, env)?;
                self.eval_index(&t, index, env)?
            }
            ExprKind::Field { target, name } => {
                let t = self.eval(target, env)?;
                field(&t, &name.node).map_err(|e| e.at(name.span))?
            }
            ExprKind::Lambda(def) => Value::Func(Rc::new(Closure {
                def: def.clone(),
                env: env.clone(),
            })),
            ExprKind::If {
                cond,
                then,
                otherwise,
            } => match self.eval(cond, env)? {
                Value::Bool(true) => self.eval(then, env)?,
                Value::Bool(false) => match otherwise {
                    Some(e) => self.eval(e, env)?,
                    None => Value::None,
                },
                other => {
                    return Err(BebError::type_error(format!(
                        "`if` needs true or false, found a {}",
                        other.type_name()
                    ))
                    .at(cond.span)
                    .into());
                }
            },
            ExprKind::Block(stmts) => {
                let scope = Env::child(env);
                self.exec_block(stmts, &scope)?
            }
            ExprKind::Sweep { vars, body, fields } => self.eval_sweep(vars, body, fields, env)?,
            ExprKind::Sentences(entries) => {
                let hint = self.take_name_hint();
                let mut evaluated = Vec::with_capacity(entries.len());
                for entry in entries {
                    let text = match self.eval(&entry.text, env)? {
                        Value::Str(s) => s.to_string(),
                        other => {
                            return Err(BebError::type_error(format!(
                                "a sentence must be a string, found a {}",
                                other.type_name()
                            ))
                            .at(entry.text.span)
                            .into());
                        }
                    };
                    let prob = self.number(&entry.prob, env, "a probability")?;
                    let score = match &entry.score {
                        Some(s) => Some(self.number(s, env, "a behavior score")?),
                        None => None,
                    };
                    evaluated.push((text, prob, score));
                }
                builtins::models::categorical(hint, evaluated, false).map_err(|e| e.at(span))?
            }
        })
    }

    fn number(&mut self, expr: &Expr, env: &Rc<Env>, what: &str) -> Eval<f64> {
        match self.eval(expr, env)? {
            Value::Num(x) => Ok(x),
            other => Err(BebError::type_error(format!(
                "expected {what} (a number), found a {}",
                other.type_name()
            ))
            .at(expr.span)
            .into()),
        }
    }

    fn unknown_name(&self, name: &str, span: Span, env: &Rc<Env>) -> BebError {
        let names = env.names();
        let mut err = BebError::new(ErrorKind::Name, format!("unknown name `{name}`"))
            .at(span)
            .with_label("not defined");
        if let Some(best) = suggest::closest(name, names.iter().map(|n| &**n)) {
            err = err.with_help(format!("did you mean `{best}`?"));
        }
        err
    }

    fn eval_binary(
        &mut self,
        op: BinaryOp,
        l: &Expr,
        r: &Expr,
        span: Span,
        env: &Rc<Env>,
    ) -> Eval<Value> {
        let left = self.eval(l, env)?;
        // `and`/`or` short-circuit on booleans.
        match (op, &left) {
            (BinaryOp::And, Value::Bool(false)) => return Ok(Value::Bool(false)),
            (BinaryOp::Or, Value::Bool(true)) => return Ok(Value::Bool(true)),
            _ => {}
        }
        let right = self.eval(r, env)?;
        Ok(self.binary_at(op, &left, &right, span)?)
    }

    fn interpolate(&mut self, parts: &[StrPart], env: &Rc<Env>) -> Eval<Value> {
        let mut out = String::new();
        for part in parts {
            match part {
                StrPart::Text(t) => out.push_str(t),
                StrPart::Interp { expr, spec } => {
                    let v = self.eval(expr, env)?;
                    match spec {
                        None => out.push_str(&v.to_string()),
                        Some(spec) => {
                            out.push_str(&format_with_spec(&v, spec).map_err(|e| e.at(expr.span))?)
                        }
                    }
                }
            }
        }
        Ok(Value::Str(Rc::from(out)))
    }

    fn eval_index(&mut self, target: &Value, index: &Expr, env: &Rc<Env>) -> Eval<Value> {
        // Slices: `[a..b]`, `[..n]`, `[n..]`.
        if let ExprKind::Range {
            start,
            end,
            inclusive,
        } = &index.node
        {
            let len = length(target).ok_or_else(|| {
                BebError::type_error(format!("cannot slice a {}", target.type_name()))
                    .at(index.span)
            })?;
            let mut bound = |e: &Option<Box<Expr>>, default: i64| -> Eval<i64> {
                match e {
                    None => Ok(default),
                    Some(e) => {
                        let v = self.eval(e, env)?;
                        Ok(integer(&v).map_err(|err| err.at(e.span))?)
                    }
                }
            };
            let lo = bound(start, 0)?;
            let hi = bound(end, len as i64)? + i64::from(*inclusive && end.is_some());
            if lo < 0 || hi < lo || hi as usize > len {
                return Err(BebError::new(
                    ErrorKind::Index,
                    format!(
                        "slice {lo}..{hi} is out of range for a {} of length {len}",
                        target.type_name()
                    ),
                )
                .at(index.span)
                .into());
            }
            return Ok(slice(target, lo as usize, hi as usize));
        }
        let key = self.eval(index, env)?;
        if let Value::Range(r) = key {
            let len = length(target).unwrap_or(0);
            if r.start < 0 || r.stop() < r.start || r.stop() as usize > len {
                return Err(BebError::new(
                    ErrorKind::Index,
                    format!(
                        "slice {}..{} is out of range for length {len}",
                        r.start,
                        r.stop()
                    ),
                )
                .at(index.span)
                .into());
            }
            return Ok(slice(target, r.start as usize, r.stop() as usize));
        }
        Ok(index_value(target, &key).map_err(|e| e.at(index.span))?)
    }

    fn eval_sweep(
        &mut self,
        vars: &[(Spanned<Name>, Expr)],
        body: &[Stmt],
        fields: &[Field],
        env: &Rc<Env>,
    ) -> Eval<Value> {
        let mut domains = Vec::with_capacity(vars.len());
        for (name, e) in vars {
            let v = self.eval(e, env)?;
            let items = iterate(&v).ok_or_else(|| {
                BebError::type_error(format!(
                    "`sweep {} in ...` needs a list or range, found a {}",
                    name.node,
                    v.type_name()
                ))
                .at(e.span)
            })?;
            domains.push(items);
        }
        let mut columns: Vec<Name> = vars.iter().map(|(n, _)| n.node.clone()).collect();
        for f in fields {
            if columns.contains(&f.name.node) {
                return Err(
                    BebError::value(format!("column `{}` appears twice", f.name.node))
                        .at(f.name.span)
                        .into(),
                );
            }
            columns.push(f.name.node.clone());
        }
        let mut rows = Vec::new();
        let total = domains
            .iter()
            .try_fold(1usize, |n, d| n.checked_mul(d.len()))
            .ok_or_else(|| {
                let span = vars
                    .iter()
                    .map(|(_, e)| e.span)
                    .reduce(Span::to)
                    .unwrap_or_default();
                BebError::value("this sweep has more rows than can be counted").at(span)
            })?;
        for step in 0..total {
            self.check_interrupt()?;
            let scope = Env::child(env);
            let mut row = Vec::with_capacity(columns.len());
            let mut rest = step;
            let mut picks = vec![0usize; domains.len()];
            for (i, d) in domains.iter().enumerate().rev() {
                picks[i] = rest % d.len();
                rest /= d.len();
            }
            for ((name, _), (d, &k)) in vars.iter().zip(domains.iter().zip(&picks)) {
                scope.define(name.node.clone(), d[k].clone());
                row.push(d[k].clone());
            }
            self.exec_block(body, &scope)?;
            for f in fields {
                let v = self.eval(&f.value, &scope)?;
                scope.define(f.name.node.clone(), v.clone());
                row.push(v);
            }
            rows.push(row);
        }
        Ok(Value::Table(Rc::new(Table { columns, rows })))
    }

    fn eval_call(&mut self, callee: &Expr, args: &[Arg], span: Span, env: &Rc<Env>) -> Eval<Value> {
        // The `let` name is meant for this call, not for calls among its arguments.
        let hint = self.name_hint.take();
        let f = self.eval(callee, env)?;
        let mut positional = Vec::new();
        let mut named = Vec::new();
        for a in args {
            let v = self.eval(&a.value, env)?;
            match &a.name {
                Some(n) => {
                    if named
                        .iter()
                        .any(|(m, _, _): &(String, Value, Span)| **m == *n.node)
                    {
                        return Err(BebError::argument(format!("`{}` is given twice", n.node))
                            .at(n.span)
                            .into());
                    }
                    named.push((n.node.to_string(), v, n.span));
                }
                None => positional.push((v, a.value.span)),
            }
        }
        self.name_hint = hint;
        let result = self.call(&f, positional, named, span);
        self.name_hint = None;
        Ok(result?)
    }

    /// Call any function value with evaluated arguments.
    pub fn call(
        &mut self,
        f: &Value,
        positional: Vec<(Value, Span)>,
        named: Vec<(String, Value, Span)>,
        span: Span,
    ) -> BebResult<Value> {
        self.check_interrupt().map_err(|e| e.at(span))?;
        if self.depth >= MAX_CALL_DEPTH {
            return Err(BebError::value(format!(
                "calls nested deeper than {MAX_CALL_DEPTH} (runaway recursion?)"
            ))
            .at(span));
        }
        self.depth += 1;
        let result = match f {
            Value::Native(b) => Args::bind(b.clone(), positional, named, span)
                .and_then(|args| (b.func)(self, &args))
                .map_err(|e| e.at(span)),
            Value::Func(c) => {
                self.name_hint = None;
                self.call_closure(c, positional, named, span)
            }
            other => Err(BebError::type_error(format!(
                "a {} is not a function",
                other.type_name()
            ))
            .at(span)),
        };
        self.depth -= 1;
        result
    }

    /// Convenience for builtins: call with positional values only.
    pub fn call_simple(&mut self, f: &Value, args: Vec<Value>, span: Span) -> BebResult<Value> {
        self.call(
            f,
            args.into_iter().map(|v| (v, span)).collect(),
            Vec::new(),
            span,
        )
    }

    fn call_closure(
        &mut self,
        c: &Rc<Closure>,
        positional: Vec<(Value, Span)>,
        named: Vec<(String, Value, Span)>,
        span: Span,
    ) -> BebResult<Value> {
        let def = &c.def;
        let scope = Env::child(&c.env);
        let signature = || signature_of(def);
        if positional.len() > def.params.len() {
            return Err(BebError::argument(format!(
                "{} takes {} argument{}, {} given",
                signature(),
                def.params.len(),
                if def.params.len() == 1 { "" } else { "s" },
                positional.len()
            ))
            .at(span)
            .with_help(format!("signature: {}", signature())));
        }
        let mut given: Vec<Option<Value>> = vec![None; def.params.len()];
        for (i, (v, _)) in positional.into_iter().enumerate() {
            given[i] = Some(v);
        }
        for (name, v, nspan) in named {
            match def.params.iter().position(|p| *p.name.node == *name) {
                Some(i) if given[i].is_some() => {
                    return Err(BebError::argument(format!("`{name}` is given twice")).at(nspan));
                }
                Some(i) => given[i] = Some(v),
                None => {
                    return Err(BebError::argument(format!(
                        "{} has no parameter `{name}`",
                        signature()
                    ))
                    .at(nspan)
                    .with_help(format!("signature: {}", signature())));
                }
            }
        }
        for (p, v) in def.params.iter().zip(given) {
            let value = match (v, &p.default) {
                (Some(v), _) => v,
                (None, Some(d)) => match self.eval(d, &scope) {
                    Ok(v) => v,
                    Err(Control::Error(e)) => return Err(*e),
                    Err(Control::Return(v)) => v,
                },
                (None, None) => {
                    return Err(BebError::argument(format!(
                        "{} is missing the argument `{}`",
                        signature(),
                        p.name.node
                    ))
                    .at(span)
                    .with_help(format!("signature: {}", signature())));
                }
            };
            scope.define(p.name.node.clone(), value);
        }
        match self.eval(&def.body, &scope) {
            Ok(v) | Err(Control::Return(v)) => Ok(v),
            Err(Control::Error(e)) => Err(*e),
        }
    }
}

/// `name(a, b = ...)`, as argument errors and `:help` show a user function.
fn signature_of(def: &FnDef) -> String {
    let params: Vec<String> = def
        .params
        .iter()
        .map(|p| match p.default {
            Some(_) => format!("{} = ...", p.name.node),
            None => p.name.node.to_string(),
        })
        .collect();
    format!(
        "{}({})",
        def.name.as_deref().unwrap_or("lambda"),
        params.join(", ")
    )
}

enum Truth {
    All,
    /// Index of the first false element (`usize::MAX` for a plain `false`).
    FailsAt(usize),
    NotBool(&'static str),
}

fn truth(v: &Value) -> Truth {
    match v {
        Value::Bool(true) => Truth::All,
        Value::Bool(false) => Truth::FailsAt(usize::MAX),
        Value::List(items) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::Bool(true) => {}
                    Value::Bool(false) => return Truth::FailsAt(i),
                    other => return Truth::NotBool(other.type_name()),
                }
            }
            Truth::All
        }
        other => Truth::NotBool(other.type_name()),
    }
}

/// A short rendering for diagnostics (long lists are elided).
fn brief(v: &Value) -> String {
    let text = match v {
        Value::Table(t) => format!(
            "<table {} rows × {} columns>",
            t.rows.len(),
            t.columns.len()
        ),
        other => other.repr(),
    };
    if text.chars().count() > 120 {
        let cut: String = text.chars().take(117).collect();
        format!("{cut}...")
    } else {
        text
    }
}

pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

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

fn length(v: &Value) -> Option<usize> {
    Some(match v {
        Value::List(items) => items.len(),
        Value::Str(s) => s.chars().count(),
        Value::Text(t) => t.units.len(),
        Value::Table(t) => t.rows.len(),
        Value::Range(r) => r.len(),
        _ => return None,
    })
}

fn slice(v: &Value, lo: usize, hi: usize) -> Value {
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

fn index_value(target: &Value, key: &Value) -> BebResult<Value> {
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
            _ => Err(missing(vec!["mean", "stderr", "n"])),
        },
        Value::Model(m) => match name {
            "name" => Ok(Value::str(m.name())),
            _ => Err(missing(vec!["name"])),
        },
        _ => Err(missing(vec![])),
    }
}

/// The most digits a format spec may ask for (well past what an f64 holds).
const MAX_FORMAT_DIGITS: usize = 100;

/// `{x:.3}` (fixed decimals) and `{x:.3e}` (scientific) in string interpolation.
fn format_with_spec(v: &Value, spec: &str) -> BebResult<String> {
    let bad = || {
        BebError::value(format!("unknown format `:{spec}`"))
            .with_help("formats: `:.3` (3 decimals), `:.3e` (scientific)")
    };
    let body = spec.strip_prefix('.').ok_or_else(bad)?;
    let (digits, scientific) = match body.strip_suffix('e') {
        Some(d) => (d, true),
        None => (body, false),
    };
    let digits: usize = digits.parse().map_err(|_| bad())?;
    if digits > MAX_FORMAT_DIGITS {
        return Err(BebError::value(format!(
            "`:{spec}` asks for more than {MAX_FORMAT_DIGITS} digits"
        )));
    }
    let one = |x: f64| {
        if scientific {
            format!("{x:.digits$e}")
        } else {
            format!("{x:.digits$}")
        }
    };
    match v {
        Value::Num(x) => Ok(one(*x)),
        Value::Estimate(e) => Ok(format!("{} ± {} (n={})", one(e.mean), one(e.stderr), e.n)),
        Value::List(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|i| format_with_spec(i, spec))
                .collect::<BebResult<_>>()?;
            Ok(format!("[{}]", parts.join(", ")))
        }
        other => Err(BebError::type_error(format!(
            "`:{spec}` formats numbers, found a {}",
            other.type_name()
        ))),
    }
}

impl Interp {
    /// Report unknown names in `program` without running it.
    pub fn check(&self, program: &[Stmt]) -> Vec<BebError> {
        let module_names = |name: &str| -> Option<Vec<String>> {
            let program = parse_program(stdlib::source(name)?, u32::MAX).ok()?;
            Some(
                program
                    .iter()
                    .filter_map(|s| match &s.node {
                        StmtKind::Let(n, _) => Some(n.node.to_string()),
                        StmtKind::Fn(def) => def.name.as_ref().map(|n| n.to_string()),
                        _ => None,
                    })
                    .collect(),
            )
        };
        crate::eval::resolve::check_names(program, self.globals.names(), &module_names)
    }

    /// The doc comment and parameters of a user or stdlib function, for `:help`.
    pub fn describe_function(value: &Value) -> Option<(String, Option<String>)> {
        match value {
            Value::Func(c) => Some((signature_of(&c.def), c.def.doc.clone())),
            Value::Native(b) => Some((b.signature.to_string(), Some(b.doc.to_string()))),
            _ => None,
        }
    }

    /// Stdlib module names, for completion and `:help`.
    pub fn module_names() -> impl Iterator<Item = &'static str> {
        stdlib::MODULES.iter().map(|(n, _)| *n)
    }
}
