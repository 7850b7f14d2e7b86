//! The tree-walking interpreter: evaluates statements and expressions over the spanned AST.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cache::Cache;
use crate::error::{BebError, BebResult, ErrorKind};
use crate::eval::env::Env;
use crate::eval::natives::{Args, Builtin, iterate, to_count};
use crate::eval::ops;
use crate::eval::value::{Closure, RangeValue, Record, Table, Value};
use crate::eval::{builtins, stdlib, suggest};
use crate::report::progress::{Progress, ProgressHub};
use crate::stats::Estimate;
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

pub(crate) type Eval<T> = Result<T, Control>;

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

/// A file the results depend on (model weights, tokenizers, data), for the run record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputFile {
    pub path: String,
    pub sha256: String,
}

/// Provenance keys: an estimate's exact bits (mean, stderr, n).
type EstimateKey = (u64, u64, usize);

fn estimate_key(e: &Estimate) -> EstimateKey {
    (e.mean.to_bits(), e.stderr.to_bits(), e.n)
}

/// How many estimates' streams are remembered before the table starts afresh.
const MAX_PROVENANCE: usize = 1 << 20;

pub struct Interp {
    pub root_seed: u64,
    sources: Vec<Source>,
    builtin_env: Rc<Env>,
    pub globals: Rc<Env>,
    builtins: BTreeMap<String, Rc<Builtin>>,
    modules: HashMap<String, Value>,
    /// Modules being loaded now, to refuse circular imports.
    loading: Vec<String>,
    /// Where `import NAME` looks for `NAME.beb` when NAME is not a stdlib module: the running
    /// script's folder (the current folder in the REPL).
    pub module_dirs: Vec<PathBuf>,
    call_sites: HashMap<(u32, u32), u64>,
    depth: usize,
    pub interrupt: Arc<AtomicBool>,
    out: Box<dyn Write>,
    /// The variable a `let` is about to bind, so models can be named after it.
    name_hint: Option<Name>,
    /// Where `save` writes (created on first write).
    pub out_dir: PathBuf,
    /// Folders outside the run folder that scripts may write to (`--allow-write`).
    pub allow_write: Vec<PathBuf>,
    /// Every figure drawn, as the run record shows its path.
    pub plots: Vec<String>,
    /// Files the results depend on, in the order they were first used.
    pub inputs: Vec<InputFile>,
    /// The run's `--set` values by name (what `param` reads).
    pub params: BTreeMap<String, Value>,
    /// Warnings for the run record (also printed on stderr).
    pub warnings: Vec<String>,
    cache: Rc<Cache>,
    progress: ProgressHub,
    /// Streams drawn while some builtin call or assertion is watching (see `observe`).
    stream_log: Vec<(u64, String)>,
    observers: usize,
    /// The seed streams that produced each Monte Carlo estimate a builtin returned.
    estimate_streams: HashMap<EstimateKey, Rc<str>>,
    /// Sweeps being evaluated (only the outermost shows a progress bar).
    sweep_depth: usize,
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
            loading: Vec::new(),
            module_dirs: vec![PathBuf::from(".")],
            call_sites: HashMap::new(),
            depth: 0,
            interrupt: Arc::new(AtomicBool::new(false)),
            out,
            name_hint: None,
            out_dir: PathBuf::from("."),
            allow_write: Vec::new(),
            plots: Vec::new(),
            inputs: Vec::new(),
            params: BTreeMap::new(),
            warnings: Vec::new(),
            cache: Rc::new(Cache::disabled()),
            progress: ProgressHub::detect(),
            stream_log: Vec::new(),
            observers: 0,
            estimate_streams: HashMap::new(),
            sweep_depth: 0,
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
        let out = &mut self.out;
        self.progress
            .suspend(|| writeln!(out, "{text}").and_then(|_| out.flush()))
            .map_err(|e| BebError::new(ErrorKind::Io, format!("cannot write output: {e}")))
    }

    /// Print a warning on stderr (above any progress bar) and keep it for the run record.
    pub fn warn(&mut self, text: &str) {
        self.progress.println(&format!("beb: warning: {text}"));
        self.warnings.push(text.to_string());
    }

    // ----- services for builtins: input files, the cache, progress bars -----

    /// Record a file the results depend on (a model's weights, a tokenizer, a data file) with
    /// its sha256 (hex), for the run record's manifest. Noting a path twice keeps one entry.
    pub fn note_input_file(&mut self, path: impl AsRef<Path>, sha256: &str) {
        let path = path.as_ref().display().to_string();
        if !self
            .inputs
            .iter()
            .any(|f| f.path == path && f.sha256 == sha256)
        {
            self.inputs.push(InputFile {
                path,
                sha256: sha256.to_string(),
            });
        }
    }

    /// Record a file the results depend on, hashing it now (a file that cannot be read is
    /// left to the builtin reading it to report).
    pub fn note_input(&mut self, path: impl AsRef<Path>) {
        let path = path.as_ref();
        if let Ok(sha) = crate::cache::file_sha256(path) {
            self.note_input_file(path, &sha);
        }
    }

    /// The on-disk cache of expensive model calls (disabled unless the runner enabled it).
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    pub fn set_cache(&mut self, cache: Cache) {
        self.cache = Rc::new(cache);
    }

    /// `model` as measurements in this run should call it: samples and scores of neural models
    /// (and mixtures of them) go through the cache and show progress bars.
    pub fn for_run(&self, model: crate::lm::ModelRef) -> crate::lm::ModelRef {
        crate::lm::cached::for_run(model, &self.cache, &self.progress)
    }

    /// A progress bar for `total` steps of `label` (drawn only on a terminal, after half a
    /// second). Printing through the interpreter keeps it intact.
    pub fn progress(&self, total: u64, label: &str) -> Progress {
        self.progress.bar(total, label)
    }

    /// Where progress bars are drawn (e.g. to print above them).
    pub fn progress_hub(&self) -> &ProgressHub {
        &self.progress
    }

    pub fn set_progress_hub(&mut self, hub: ProgressHub) {
        self.progress = hub;
    }

    // ----- provenance: which seed streams an estimate came from -----

    /// Start watching which streams are drawn; returns the mark to pass to `streams_since`.
    fn observe(&mut self) -> usize {
        self.observers += 1;
        self.stream_log.len()
    }

    /// Stop watching; the streams drawn since `mark`.
    fn streams_since(&mut self, mark: usize) -> Vec<(u64, String)> {
        self.observers = self.observers.saturating_sub(1);
        let drawn = self.stream_log.get(mark..).unwrap_or_default().to_vec();
        if self.observers == 0 {
            self.stream_log.clear();
        }
        drawn
    }

    /// Remember `streams` as the origin of every estimate in `value` not already known.
    fn note_provenance(&mut self, value: &Value, streams: &[(u64, String)]) {
        if streams.is_empty() {
            return;
        }
        let mut found = Vec::new();
        collect_estimates(value, 0, &mut found);
        if found.is_empty() {
            return;
        }
        if self.estimate_streams.len() + found.len() > MAX_PROVENANCE {
            self.estimate_streams.clear();
        }
        let text: Rc<str> = Rc::from(describe_streams(streams));
        for e in found {
            self.estimate_streams
                .entry(estimate_key(&e))
                .or_insert_with(|| text.clone());
        }
    }

    /// The seed streams a Monte Carlo estimate was drawn from, when beb saw it drawn.
    pub fn estimate_stream(&self, e: &Estimate) -> Option<Rc<str>> {
        self.estimate_streams.get(&estimate_key(e)).cloned()
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
        .inspect(|(root, name)| {
            if self.observers > 0 {
                self.stream_log.push((*root, name.clone()));
            }
        })
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
                let written = crate::eval::export::save(&v, &p, &self.out_dir, &self.allow_write)
                    .map_err(|e| e.at(path.span))?;
                self.saved.push((written, v));
            }
            StmtKind::Plot {
                series,
                path,
                options,
            } => self.exec_plot(series, path, options.as_ref(), env)?,
            StmtKind::For { var, iter, body } => {
                let iterable = self.eval(iter, env)?;
                // Ranges are walked lazily: a loop over 0..10^9 needs no list of 10^9 numbers.
                let items: Box<dyn Iterator<Item = Value>> = match &iterable {
                    Value::Range(r) => Box::new(r.iter().map(|i| Value::Num(i as f64))),
                    _ => Box::new(
                        iterate(&iterable)
                            .ok_or_else(|| {
                                BebError::type_error(format!(
                                    "cannot iterate over a {}",
                                    iterable.type_name()
                                ))
                                .at(iter.span)
                            })?
                            .into_iter(),
                    ),
                };
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

    /// A module's source: a stdlib module, else `NAME.beb` in one of the module folders.
    /// Returns (file name for diagnostics, text, path of a local file).
    fn module_source(&self, name: &str) -> Option<(String, String, Option<PathBuf>)> {
        if let Some(text) = stdlib::source(name) {
            return Some((format!("stdlib/{name}.beb"), text.to_string(), None));
        }
        self.module_dirs.iter().find_map(|dir| {
            let path = dir.join(format!("{name}.beb"));
            let text = std::fs::read_to_string(&path).ok()?;
            Some((path.display().to_string(), text, Some(path)))
        })
    }

    /// Load (once) a module and return it as a record of its top-level definitions.
    pub fn load_module(&mut self, name: &str) -> BebResult<Value> {
        if let Some(v) = self.modules.get(name) {
            return Ok(v.clone());
        }
        if self.loading.iter().any(|m| m == name) {
            return Err(BebError::new(
                ErrorKind::Name,
                format!("circular import: {} -> {name}", self.loading.join(" -> ")),
            )
            .with_label("imported again while it is being loaded"));
        }
        let (file_name, text, local) = self.module_source(name).ok_or_else(|| {
            let known: Vec<&str> = stdlib::MODULES.iter().map(|(n, _)| *n).collect();
            let mut err = BebError::new(ErrorKind::Name, format!("there is no module `{name}`"))
                .with_label("unknown module");
            let places = format!(
                "modules: {} (stdlib), or a file {name}.beb beside the script",
                known.join(", ")
            );
            err.help = Some(match suggest::closest(name, known.iter().copied()) {
                Some(best) => format!("did you mean `{best}`? {places}"),
                None => places,
            });
            err
        })?;
        if let Some(path) = &local {
            self.note_input(path);
        }
        self.loading.push(name.to_string());
        let result = self.run_module(&file_name, &text);
        self.loading.pop();
        let value = result?;
        self.modules.insert(name.to_string(), value.clone());
        Ok(value)
    }

    /// Run a module's source in a scope of its own; its top-level names become a record.
    fn run_module(&mut self, file_name: &str, text: &str) -> BebResult<Value> {
        let file = self.add_source(file_name, text);
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
        Ok(Value::Record(Rc::new(record)))
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
        let mark = self.observe();
        let evaluated = self
            .eval_series(l, env)
            .and_then(|left| Ok((left, self.eval(r, env)?)));
        let drawn = self.streams_since(mark);
        let ((left, x_values), right) = evaluated?;
        let (left, x_values) = (left, x_values.map(|(name, xs, _)| (name, xs)));
        let inline = describe_streams(&drawn);
        let stream_of = |e: &Estimate| -> Option<String> {
            self.estimate_stream(e)
                .map(|s| s.to_string())
                .or_else(|| (!drawn.is_empty()).then(|| inline.clone()))
        };
        let test = crate::eval::stat_assert::one_sided(
            &left,
            *op,
            &right,
            level / 100.0,
            &stream_of,
            x_values.as_ref(),
        )
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

    pub(crate) fn snippet(&self, span: Span) -> String {
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
            let items = match &v {
                Value::Range(_) => ops::elements(&v),
                _ => iterate(&v).ok_or_else(|| {
                    BebError::type_error(format!(
                        "`sweep {} in ...` needs a list or range, found a {}",
                        name.node,
                        v.type_name()
                    ))
                }),
            }
            .map_err(|err| err.at(e.span))?;
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
        let bar = (self.sweep_depth == 0 && total > 1).then(|| {
            let names: Vec<&str> = vars.iter().map(|(n, _)| &*n.node).collect();
            self.progress(total as u64, &format!("sweep {}", names.join(", ")))
        });
        self.sweep_depth += 1;
        let rows = self.sweep_rows(
            vars,
            body,
            fields,
            env,
            &domains,
            total,
            columns.len(),
            bar.as_ref(),
        );
        self.sweep_depth -= 1;
        Ok(Value::Table(Rc::new(Table {
            columns,
            rows: rows?,
        })))
    }

    /// The rows of a sweep, one per combination of the swept values.
    #[allow(clippy::too_many_arguments)]
    fn sweep_rows(
        &mut self,
        vars: &[(Spanned<Name>, Expr)],
        body: &[Stmt],
        fields: &[Field],
        env: &Rc<Env>,
        domains: &[Vec<Value>],
        total: usize,
        width: usize,
        bar: Option<&Progress>,
    ) -> Eval<Vec<Vec<Value>>> {
        let mut rows = Vec::with_capacity(total.min(1 << 16));
        for step in 0..total {
            self.check_interrupt()?;
            let scope = Env::child(env);
            let mut row = Vec::with_capacity(width);
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
            if let Some(bar) = bar {
                bar.inc(1);
            }
        }
        Ok(rows)
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
            Value::Native(b) => {
                let mark = self.observe();
                let result = Args::bind(b.clone(), positional, named, span)
                    .and_then(|args| (b.func)(self, &args))
                    .map_err(|e| e.at(span));
                let drawn = self.streams_since(mark);
                if let Ok(v) = &result {
                    self.note_provenance(v, &drawn);
                }
                result
            }
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

/// The estimates inside a value (in lists, records and tables, a few levels deep).
fn collect_estimates(v: &Value, depth: usize, out: &mut Vec<Estimate>) {
    const MAX_DEPTH: usize = 4;
    const MAX_FOUND: usize = 1 << 16;
    if depth > MAX_DEPTH || out.len() >= MAX_FOUND {
        return;
    }
    match v {
        Value::Estimate(e) => out.push(*e),
        Value::List(items) => items
            .iter()
            .for_each(|i| collect_estimates(i, depth + 1, out)),
        Value::Record(r) => r
            .fields
            .iter()
            .for_each(|(_, f)| collect_estimates(f, depth + 1, out)),
        Value::Table(t) => t
            .rows
            .iter()
            .flatten()
            .for_each(|c| collect_estimates(c, depth + 1, out)),
        _ => {}
    }
}

/// Streams as the run record and assertion messages show them:
/// `quickstart.beb:12:9#0 (root seed 1)`; several are listed, many are summarised.
pub fn describe_streams(streams: &[(u64, String)]) -> String {
    let mut unique: Vec<&(u64, String)> = Vec::new();
    for s in streams {
        if !unique.contains(&s) {
            unique.push(s);
        }
    }
    let show = |(root, name): &(u64, String)| format!("{name} (root seed {root})");
    match unique.len() {
        0 => String::new(),
        1..=3 => unique
            .iter()
            .map(|s| show(s))
            .collect::<Vec<_>>()
            .join(", "),
        n => format!(
            "{}, {} and {} more",
            show(unique[0]),
            show(unique[1]),
            n - 2
        ),
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
            "ci" => {
                let (lo, hi) = e.interval(0.95);
                Ok(Value::list(vec![Value::Num(lo), Value::Num(hi)]))
            }
            _ => Err(missing(vec!["mean", "stderr", "n", "ci"])),
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
            let (_, text, _) = self.module_source(name)?;
            let program = parse_program(&text, u32::MAX).ok()?;
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

#[cfg(test)]
mod tests {

    use super::*;

    /// Parse and run `src`: (what it printed, its result, the interpreter afterwards).
    fn run_with(src: &str, setup: impl FnOnce(&mut Interp)) -> (String, BebResult<Value>, Interp) {
        let out = crate::eval::CapturedOutput::default();
        let mut interp = Interp::new(1, Box::new(out.clone()));
        setup(&mut interp);
        let file = interp.add_source("test.beb", src);
        let result = interp
            .parse(file)
            .map_err(BebError::from_syntax)
            .and_then(|program| interp.run(&program));
        (out.text(), result, interp)
    }

    fn printed(src: &str) -> String {
        let (out, result, _) = run_with(src, |_| {});
        if let Err(e) = result {
            panic!("{src}: {e}");
        }
        out
    }

    fn error(src: &str) -> BebError {
        match run_with(src, |_| {}).1 {
            Ok(v) => panic!("{src}: expected an error, got {v}"),
            Err(e) => e,
        }
    }

    /// The source text an error's span covers.
    fn underlined(src: &str, e: &BebError) -> String {
        let span = e.span.unwrap_or_else(|| panic!("no span on {e}"));
        src[span.start as usize..span.end as usize].to_string()
    }

    #[test]
    fn closures_see_later_assignments_to_captured_variables() {
        assert_eq!(
            printed("let k = 1\nlet f = |x| x + k\nk = 10\nprint f(1)"),
            "11\n"
        );
    }

    #[test]
    fn defaults_may_use_earlier_parameters_and_run_per_call() {
        assert_eq!(
            printed("fn f(a, b = a * 2) { b }\nprint f(3), f(3, b: 1), f(4)"),
            "6 1 8\n"
        );
    }

    #[test]
    fn functions_are_hoisted_within_their_block() {
        let src = "print even(10)\nfn even(n) { if n == 0 { true } else { odd(n - 1) } }\n\
                   fn odd(n) { if n == 0 { false } else { even(n - 1) } }";
        assert_eq!(printed(src), "true\n");
    }

    #[test]
    fn return_leaves_nested_loops_and_blocks() {
        let src = "fn find(xs, target) {\n  for i in 0..len(xs) {\n    for j in [0] {\n      \
                   if xs[i] == target { return i }\n    }\n  }\n  -1\n}\nprint find([5, 6, 7], 7), find([], 1)";
        assert_eq!(printed(src), "2 -1\n");
        assert_eq!(printed("fn f() { return }\nprint f()"), "none\n");
    }

    #[test]
    fn assignment_reaches_the_scope_that_defines_the_name() {
        let src = "let total = 0\nfor i in 1..=3 { let sq = i * i\n total += sq }\nprint total";
        assert_eq!(printed(src), "14\n");
        // The loop variable and the block's `let` do not leak.
        let e = error("for i in 0..2 { let inner = i }\nprint i");
        assert_eq!(e.kind, ErrorKind::Name);
        let e = error("x += 1");
        assert!(e.message.contains("`x` is not defined"), "{}", e.message);
    }

    #[test]
    fn blocks_are_expressions_with_their_own_scope() {
        assert_eq!(
            printed("let x = 1\nlet y = { let x = 5\n x * 2 }\nprint x, y"),
            "1 10\n"
        );
        assert_eq!(printed("print { let q = 1 }"), "none\n");
    }

    #[test]
    fn short_circuit_skips_the_right_side() {
        // The right sides would fail if evaluated.
        assert_eq!(
            printed("print false and 1 / 0 == 1, true or undefined_call()"),
            "false true\n"
        );
    }

    #[test]
    fn sweeps_bind_variables_and_earlier_columns() {
        let src = "let t = sweep a in [1, 2], b in 0..2 { let p = a * b\n prod: p, twice: prod * 2 }\n\
                   print t.a, t.b, t.prod, t.twice";
        assert_eq!(
            printed(src),
            "[1, 1, 2, 2] [0, 1, 0, 1] [0, 1, 0, 2] [0, 2, 0, 4]\n"
        );
        let e = error("print sweep n in 0..2 { n: 1 }");
        assert!(
            e.message.contains("column `n` appears twice"),
            "{}",
            e.message
        );
        let e = error("print sweep n in 5 { m: 1 }");
        assert_eq!(e.kind, ErrorKind::Type);
    }

    #[test]
    fn iteration_covers_lists_ranges_tables_and_texts() {
        let src = "for r in table([{a: 1}, {a: 2}]) { print r.a }\nfor s in text([\"A.\", \"B.\"]) { print s }";
        assert_eq!(printed(src), "1\n2\nA.\nB.\n");
        let e = error("for x in 3 { }");
        assert!(
            e.message.contains("cannot iterate over a number"),
            "{}",
            e.message
        );
    }

    #[test]
    fn ranges_too_long_to_hold_say_so() {
        for src in [
            "print sum(0..1e15)",
            "print sweep n in 0..1e15 { x: 1 }",
            "print -(0..1e15)",
            "print log(0..1e15)",
        ] {
            let e = error(src);
            assert!(
                e.message.contains("has too many elements"),
                "{src}: {}",
                e.message
            );
            assert!(e.span.is_some(), "{src}: no span");
        }
        // Ranges that are never listed may be as long as they like; `for` walks them lazily.
        assert_eq!(
            printed("fn f() { for i in 0..1e15 { if i == 3 { return i } } }\nprint f()"),
            "3\n"
        );
        assert_eq!(
            printed("let r = 0..1e15\nprint len(r), r[-1], r[10..12]"),
            "1000000000000000 999999999999999 10..12\n"
        );
    }

    #[test]
    fn indexing_and_slicing_check_their_bounds() {
        assert_eq!(
            printed("let xs = [1, 2, 3]\nprint xs[-3], xs[..0], xs[3..], xs[0..=2]"),
            "1 [] [] [1, 2, 3]\n"
        );
        for (src, message) in [
            (
                "print [1, 2][2]",
                "index 2 is out of range for a list of length 2",
            ),
            ("print [1, 2][-3]", "index -3 is out of range"),
            ("print [1, 2][..3]", "slice 0..3 is out of range"),
            ("print [1, 2][2..1]", "slice 2..1 is out of range"),
            ("print [1, 2][0.5]", "expected a whole number, found 0.5"),
            ("print 5[0]", "cannot index a number"),
            ("print [1][\"a\"]", "cannot index a list by name"),
        ] {
            let e = error(src);
            assert!(e.message.contains(message), "{src}: {}", e.message);
            assert!(e.span.is_some(), "{src}: no span");
        }
        assert_eq!(
            printed("let r = {a: 1}\nprint r[\"a\"], (0..10)[2..4], \"héllo\"[1]"),
            "1 2..4 é\n"
        );
    }

    #[test]
    fn fields_of_records_tables_and_estimates() {
        assert_eq!(
            printed("let e = estimate(1, 0.5, 4)\nprint e.mean, e.stderr, e.n"),
            "1 0.5 4\n"
        );
        let e = error("let r = {count: 1}\nprint r.cuont");
        assert_eq!(e.help.as_deref(), Some("did you mean `count`?"));
        let e = error("print (1).x");
        assert_eq!(e.help.as_deref(), Some("it has no fields"));
    }

    #[test]
    fn a_failed_comparison_labels_both_sides_and_the_operator() {
        let src = "let kl = 2\nassert kl <= 1";
        let e = error(src);
        assert_eq!(e.kind, ErrorKind::Assertion);
        assert_eq!(e.exit_code(), 1);
        assert_eq!(underlined(src, &e), "<=");
        assert_eq!(e.label.as_deref(), Some("2 <= 1 is false"));
        let notes: Vec<&str> = e.notes.iter().map(|(_, text)| text.as_str()).collect();
        assert_eq!(notes, ["left: 2", "right: 1"]);
        let e = error("assert [1, 5, 2] < 3, \"small\"");
        assert_eq!(e.message, "assertion failed: small");
        assert_eq!(e.label.as_deref(), Some("false at element 1: 5 < 3"));
        let e = error("assert 1");
        assert_eq!(e.kind, ErrorKind::Type);
    }

    #[test]
    fn verdicts_are_recorded_for_the_run_record() {
        let (_, result, interp) = run_with("assert 1 < 2\nassert 2 < 1", |_| {});
        assert!(result.is_err());
        let verdicts: Vec<(&str, bool)> = interp
            .verdicts
            .iter()
            .map(|v| (v.source.as_str(), v.passed))
            .collect();
        assert_eq!(verdicts, [("1 < 2", true), ("2 < 1", false)]);
        assert_eq!(interp.verdicts[1].location, "test.beb:2:1");
    }

    #[test]
    fn statistical_assertions_need_an_estimate_comparison() {
        assert_eq!(
            printed("assert estimate(0.5, 0.1, 50) >= 0.4 at 95%\nprint 1"),
            "1\n"
        );
        let e = error("assert estimate(0.5, 0.01, 50) >= 0.6 at 95%");
        assert_eq!(e.kind, ErrorKind::Assertion);
        assert!(
            e.label.as_deref().is_some_and(|l| l.contains("refuted")),
            "{:?}",
            e.label
        );
        let e = error("assert true at 95%");
        assert!(e.message.contains("needs a comparison"), "{}", e.message);
    }

    #[test]
    fn the_step_budget_stops_endless_loops() {
        let (_, result, _) = run_with("fn f(n) { for i in 0..100 { } f(n) }\nf(0)", |i| {
            i.fuel = Some(500)
        });
        let e = result.expect_err("the budget runs out");
        assert_eq!(e.kind, ErrorKind::Interrupted);
        assert_eq!(e.message, "step budget exhausted");
    }

    #[test]
    fn an_interrupt_stops_the_run() {
        let (_, result, _) = run_with("for i in 0..10 { }", |i| {
            i.interrupt.store(true, Ordering::SeqCst)
        });
        assert_eq!(
            result.map_err(|e| e.kind).err(),
            Some(ErrorKind::Interrupted)
        );
    }

    #[test]
    fn runaway_recursion_is_an_error() {
        // The interpreter recurses on the Rust stack, so give it room as the binary does.
        let handle = std::thread::Builder::new().stack_size(256 << 20).spawn(|| {
            let src = "fn down(n) { down(n + 1) }\ndown(0)";
            let e = error(src);
            (e.message.clone(), underlined(src, &e))
        });
        let (message, span) = handle
            .map(|h| h.join())
            .ok()
            .and_then(|r| r.ok())
            .expect("the thread finishes");
        assert!(message.contains("calls nested deeper than"), "{message}");
        assert_eq!(span, "down(n + 1)");
    }

    #[test]
    fn return_outside_a_function_is_an_error() {
        let e = error("return 1");
        assert!(
            e.message.contains("`return` outside a function"),
            "{}",
            e.message
        );
    }

    #[test]
    fn user_function_argument_errors_quote_the_signature() {
        for (src, message) in [
            ("fn f(a) { a }\nf(1, 2)", "f(a) takes 1 argument, 2 given"),
            (
                "fn f(a, b = 1) { a }\nf(b: 2)",
                "f(a, b = ...) is missing the argument `a`",
            ),
            ("fn f(a) { a }\nf(1, a: 2)", "`a` is given twice"),
            ("fn f(a) { a }\nf(c: 2)", "f(a) has no parameter `c`"),
            (
                "let g = |x| x\ng()",
                "lambda(x) is missing the argument `x`",
            ),
        ] {
            let e = error(src);
            assert_eq!(e.kind, ErrorKind::Argument, "{src}");
            assert!(e.message.contains(message), "{src}: {}", e.message);
        }
        let e = error("fn f(a) { a }\nf(1, 2)");
        assert_eq!(e.help.as_deref(), Some("signature: f(a)"));
        let e = error("print 3(1)");
        assert!(
            e.message.contains("a number is not a function"),
            "{}",
            e.message
        );
    }

    #[test]
    fn unknown_names_suggest_a_close_one() {
        let e = error("let threshold = 1\nprint treshold");
        assert_eq!(e.message, "unknown name `treshold`");
        assert_eq!(e.help.as_deref(), Some("did you mean `threshold`?"));
    }

    #[test]
    fn format_specs() {
        let n = Value::Num(1.23456);
        assert_eq!(format_with_spec(&n, ".2").ok().as_deref(), Some("1.23"));
        assert_eq!(format_with_spec(&n, ".1e").ok().as_deref(), Some("1.2e0"));
        assert_eq!(format_with_spec(&n, ".0").ok().as_deref(), Some("1"));
        let list = Value::list(vec![Value::Num(0.5), Value::Num(2.0)]);
        assert_eq!(
            format_with_spec(&list, ".1").ok().as_deref(),
            Some("[0.5, 2.0]")
        );
        for bad in ["3", ".x", ".3f", "", ".101"] {
            assert!(format_with_spec(&n, bad).is_err(), "{bad:?}");
        }
        assert!(format_with_spec(&n, ".100").is_ok());
        assert!(format_with_spec(&Value::str("s"), ".2").is_err());
    }

    #[test]
    fn interpolation_formats_values_like_print() {
        assert_eq!(
            printed("let xs = [1, \"a\"]\nprint \"{xs} {none} {1e-7} {{a: 1}.a}\""),
            "[1, \"a\"] none 1e-7 1\n"
        );
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\nx", 3), (2, 1));
        assert_eq!(line_col("éa", 2), (1, 2));
        assert_eq!(line_col("ab", 99), (1, 3));
    }

    #[test]
    fn whole_numbers_for_indices() {
        assert_eq!(integer(&Value::Num(-3.0)).ok(), Some(-3));
        assert!(integer(&Value::Num(0.5)).is_err());
        assert!(integer(&Value::Num(f64::INFINITY)).is_err());
        assert!(integer(&Value::Num(1e16)).is_err());
        assert!(integer(&Value::str("1")).is_err());
    }

    #[test]
    fn check_reports_names_before_running() {
        let mut interp = Interp::new(1, Box::new(std::io::sink()));
        let src = "print later\nlet later = 1\nfn f(x) { x + y }\nlet g = |v| v + w\nfor i in 0..2 { print i }\nprint i";
        let file = interp.add_source("check.beb", src);
        let program = interp.parse(file).unwrap_or_else(|e| panic!("{e:?}"));
        let names: Vec<String> = interp
            .check(&program)
            .iter()
            .map(|e| e.message.clone())
            .collect();
        assert_eq!(
            names,
            [
                "unknown name `later`",
                "unknown name `y`",
                "unknown name `w`",
                "unknown name `i`"
            ]
        );
        let file = interp.add_source(
            "ok.beb",
            "fn f(a, b = a) { return a + b }\nprint f(1)\nimport bounds.*",
        );
        let program = interp.parse(file).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(interp.check(&program).is_empty());
        let file = interp.add_source("ret.beb", "let f = |x| { return x }\nreturn 1");
        let program = interp.parse(file).unwrap_or_else(|e| panic!("{e:?}"));
        let errors = interp.check(&program);
        assert_eq!(errors.len(), 1, "only the top-level return: {errors:?}");
        assert!(errors[0].message.contains("`return` outside a function"));
    }

    #[test]
    fn imports_bind_modules() {
        assert_eq!(printed("import bounds as b\nprint type(b)"), "record\n");
        let e = error("import no_such_module");
        assert_eq!(e.message, "there is no module `no_such_module`");
        assert!(
            e.help.as_deref().is_some_and(|h| h.contains("bounds")),
            "{:?}",
            e.help
        );
    }

    #[test]
    fn save_writes_inside_the_run_folder() {
        let dir = std::env::temp_dir().join(format!("beb-interp-save-{}", std::process::id()));
        let target = dir.clone();
        let (_, result, interp) = run_with(
            "save [1, 2] to \"sub/xs.json\"\nsave 1 to \"../escape.json\"",
            |i| i.out_dir = target,
        );
        let e = result.expect_err("the second save escapes");
        assert!(
            e.message.contains("outside the run folder"),
            "{}",
            e.message
        );
        let written = std::fs::read_to_string(dir.join("sub").join("xs.json")).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(written.split_whitespace().collect::<String>(), "[1,2]");
        assert_eq!(interp.saved.len(), 1);
        let e = error("save 1 to 2");
        assert!(
            e.message.contains("needs a file name string"),
            "{}",
            e.message
        );
    }

    #[test]
    fn streams_are_named_by_call_site_unless_seeded() {
        fn nothing(_: &mut Interp, _: &Args) -> BebResult<Value> {
            Ok(Value::None)
        }
        let native = crate::eval::natives::Native {
            signature: "draw(seed: int | string = none) -> none",
            doc: "",
            func: nothing,
        };
        let builtin = Rc::new(Builtin::new("test", &native));
        let mut interp = Interp::new(42, Box::new(std::io::sink()));
        let file = interp.add_source("s.beb", "draw()\ndraw()");
        let at = |start: usize| Span::new(file, start, start + 6);
        let bind = |named: Vec<(String, Value, Span)>, span: Span| {
            Args::bind(builtin.clone(), vec![], named, span).unwrap_or_else(|e| panic!("{e}"))
        };
        let first = interp.stream(&bind(vec![], at(0))).ok();
        let again = interp.stream(&bind(vec![], at(0))).ok();
        let other = interp.stream(&bind(vec![], at(7))).ok();
        assert_eq!(first, Some((42, "s.beb:1:1#0".to_string())));
        assert_eq!(again, Some((42, "s.beb:1:1#1".to_string())));
        assert_eq!(other, Some((42, "s.beb:2:1#0".to_string())));
        let seed = |v: Value| vec![("seed".to_string(), v, at(0))];
        assert_eq!(
            interp.stream(&bind(seed(Value::Num(7.0)), at(0))).ok(),
            Some((7, "draw".to_string()))
        );
        assert_eq!(
            interp
                .stream(&bind(seed(Value::str("prompts")), at(0)))
                .ok(),
            Some((42, "prompts".to_string()))
        );
        assert!(interp.stream(&bind(seed(Value::Num(-1.0)), at(0))).is_err());
        assert!(
            interp
                .stream(&bind(seed(Value::Bool(true)), at(0)))
                .is_err()
        );
    }
}
