//! The tree-walking interpreter: evaluates statements and expressions over the spanned AST.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cache::Cache;
use crate::error::{BebError, BebResult, ErrorKind, line_col};
use crate::eval::call::signature_of;
use crate::eval::env::Env;
use crate::eval::natives::Builtin;
use crate::eval::provenance::Provenance;
use crate::eval::run_context::RunContext;
use crate::eval::value::Closure;
use crate::eval::value::Value;
use crate::eval::{builtins, stdlib};
use crate::report::progress::{Progress, ProgressHub};
use crate::syntax::ast::*;
use crate::syntax::{SyntaxError, parse_program};

/// Calls nested deeper than this are refused (the runner gives the interpreter a large stack).
pub(super) const MAX_CALL_DEPTH: usize = 2_000;

/// One loaded source file (scripts, REPL inputs, stdlib modules).
pub struct Source {
    pub name: String,
    pub text: Arc<str>,
    /// The module the source belongs to (default seed streams are named after it).
    pub module: Rc<str>,
}

/// The module name of the main script and of REPL inputs.
pub const MAIN_MODULE: &str = "main";

/// Non-local exits: errors, and `return` unwinding to its function.
pub enum Control {
    Error(Box<BebError>),
    Return(Value),
    /// `break` / `continue` on their way to the innermost loop (at the statement's span).
    Break(Span),
    Continue(Span),
}

impl Control {
    /// The error for a `break` or `continue` that reached no loop (the checker refuses them
    /// first; a value carried out of a function body is the caller's).
    pub(super) fn outside_loop(self) -> BebError {
        match self {
            Control::Error(e) => *e,
            Control::Return(_) => BebError::new(ErrorKind::Value, "`return` outside a function"),
            Control::Break(span) => {
                BebError::new(ErrorKind::Syntax, "`break` outside a loop").at(span)
            }
            Control::Continue(span) => {
                BebError::new(ErrorKind::Syntax, "`continue` outside a loop").at(span)
            }
        }
    }
}

impl From<BebError> for Control {
    fn from(e: BebError) -> Control {
        Control::Error(Box::new(e))
    }
}

pub type Eval<T> = Result<T, Control>;

/// How an interpreter is set up: what a runner, the REPL or a test chooses before a script
/// starts. Start from `Settings::default()` and override what differs.
pub struct Settings {
    /// The root every seed stream derives from.
    pub root_seed: u64,
    /// The run folder, where `save` and `plot` write.
    pub out_dir: PathBuf,
    /// Folders outside the run folder that scripts may write to (`--allow-write`).
    pub allow_write: Vec<PathBuf>,
    /// Hosts (`HOST` or `HOST:PORT`) scripts may connect to (`--allow-net`).
    pub allow_net: Vec<String>,
    /// Files and folders outside the run folder and the script's folder that scripts may
    /// read (`--allow-read`).
    pub allow_read: Vec<PathBuf>,
    /// Where `import NAME` looks for `NAME.beb` when NAME is not a stdlib module.
    pub module_dirs: Vec<PathBuf>,
    /// The on-disk cache of expensive model calls.
    pub cache: Cache,
    /// Where progress bars are drawn.
    pub progress: ProgressHub,
    /// Raised by Ctrl-C; checked at every loop step and call.
    pub interrupt: Arc<AtomicBool>,
    /// Loop steps and calls allowed before evaluation stops (unlimited when `None`); lets
    /// tests run arbitrary generated programs safely.
    pub fuel: Option<u64>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            root_seed: 0,
            out_dir: PathBuf::from("."),
            allow_write: Vec::new(),
            allow_net: Vec::new(),
            allow_read: Vec::new(),
            module_dirs: vec![PathBuf::from(".")],
            cache: Cache::disabled(),
            progress: ProgressHub::detect(),
            interrupt: Arc::new(AtomicBool::new(false)),
            fuel: None,
        }
    }
}

pub struct Interp {
    pub(super) root_seed: u64,
    pub(super) sources: Vec<Source>,
    pub(super) builtin_env: Rc<Env>,
    pub(super) globals: Rc<Env>,
    pub(super) builtins: BTreeMap<String, Rc<Builtin>>,
    pub(super) modules: HashMap<String, Value>,
    /// Modules being loaded now, to refuse circular imports.
    pub(super) loading: Vec<String>,
    pub(super) module_dirs: Vec<PathBuf>,
    /// How often each call site has drawn a default stream.
    pub(super) call_sites: HashMap<String, u64>,
    pub(super) depth: usize,
    pub(super) interrupt: Arc<AtomicBool>,
    pub(super) fuel: Option<u64>,
    pub(super) out: Box<dyn Write>,
    /// The variable a `let` is about to bind, so models can be named after it.
    pub(super) name_hint: Option<Name>,
    pub(super) provenance: Provenance,
    /// Sweeps being evaluated (only the outermost shows a progress bar).
    pub(super) sweep_depth: usize,
    pub(super) run: RunContext,
    /// Scopes captured by closures. A closure stored in its own scope (any named function)
    /// is a reference cycle, so these are cleared when the interpreter is dropped; without
    /// that, every run would leak its globals (models included) in a long-lived process.
    captured: Vec<Weak<Env>>,
}

impl Interp {
    /// An interpreter with default settings and root seed `root_seed`.
    pub fn new(root_seed: u64, out: Box<dyn Write>) -> Interp {
        Interp::with_settings(
            Settings {
                root_seed,
                ..Settings::default()
            },
            out,
        )
    }

    pub fn with_settings(settings: Settings, out: Box<dyn Write>) -> Interp {
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
            root_seed: settings.root_seed,
            sources: Vec::new(),
            builtin_env,
            globals,
            builtins: table,
            modules: HashMap::new(),
            loading: Vec::new(),
            module_dirs: settings.module_dirs,
            call_sites: HashMap::new(),
            depth: 0,
            interrupt: settings.interrupt,
            fuel: settings.fuel,
            out,
            name_hint: None,
            provenance: Provenance::default(),
            sweep_depth: 0,
            captured: Vec::new(),
            run: RunContext {
                allow_net: settings.allow_net,
                allow_read: settings.allow_read,
                ..RunContext::new(
                    settings.out_dir,
                    settings.allow_write,
                    settings.cache,
                    settings.progress,
                )
            },
        }
    }

    /// A closure over `env`; `env` is remembered so that dropping the interpreter can break
    /// the cycle the closure may close.
    pub(super) fn closure(&mut self, def: &Rc<FnDef>, env: &Rc<Env>) -> Value {
        let known = self
            .captured
            .last()
            .is_some_and(|last| std::ptr::eq(last.as_ptr(), Rc::as_ptr(env)));
        if !known {
            if self.captured.len() == self.captured.capacity() {
                // Amortised pruning keeps the list as long as the live scopes, not the calls.
                self.captured.retain(|w| w.strong_count() > 0);
            }
            self.captured.push(Rc::downgrade(env));
        }
        Value::Func(Rc::new(Closure {
            def: def.clone(),
            env: env.clone(),
        }))
    }

    pub fn root_seed(&self) -> u64 {
        self.root_seed
    }

    /// The global scope (what the REPL lists and `--set` defines into).
    pub fn globals(&self) -> &Rc<Env> {
        &self.globals
    }

    /// Define a `--set NAME=VALUE` parameter: a global, and what `param(NAME)` reads.
    pub fn define_param(&mut self, name: &str, value: Value) {
        self.globals.define(Rc::from(name), value.clone());
        self.run.params.insert(name.to_string(), value);
    }

    /// The run's state outside the language (files, figures, verdicts, warnings).
    pub fn context(&self) -> &RunContext {
        &self.run
    }

    pub fn context_mut(&mut self) -> &mut RunContext {
        &mut self.run
    }

    /// The flag Ctrl-C raises.
    pub fn interrupt_flag(&self) -> Arc<AtomicBool> {
        self.interrupt.clone()
    }

    pub fn builtins(&self) -> impl Iterator<Item = &Rc<Builtin>> {
        self.builtins.values()
    }

    pub fn builtin(&self, name: &str) -> Option<&Rc<Builtin>> {
        self.builtins.get(name)
    }

    /// Add a source of the main script (or a REPL input); returns its file id.
    pub fn add_source(&mut self, name: &str, text: &str) -> u32 {
        self.add_module_source(name, text, MAIN_MODULE)
    }

    pub fn add_module_source(&mut self, name: &str, text: &str, module: &str) -> u32 {
        self.sources.push(Source {
            name: name.to_string(),
            text: Arc::from(crate::syntax::without_bom(text)),
            module: Rc::from(module),
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
        self.warn_shadowed_builtins(program);
        let globals = self.globals.clone();
        self.exec_block(program, &globals)
            .map_err(Control::outside_loop)
    }

    pub fn print_line(&mut self, text: &str) -> BebResult<()> {
        let out = &mut self.out;
        self.run
            .progress
            .suspend(|| writeln!(out, "{text}").and_then(|_| out.flush()))
            .map_err(|e| BebError::new(ErrorKind::Io, format!("cannot write output: {e}")))
    }

    /// Print a warning on stderr (above any progress bar) and keep it for the run record.
    pub fn warn(&mut self, text: &str) {
        self.run.warn(text);
    }

    // ----- services for builtins: input files, the cache, progress bars -----

    /// Record a served model the results depend on (one line: URL, model, what the server
    /// reports, tokenizer digest), for the run record.
    pub fn note_server(&mut self, line: String) {
        if !self.run.servers.contains(&line) {
            self.run.servers.push(line);
        }
    }

    /// Record a file the results depend on with its sha256 (hex), for the run record.
    pub fn note_input_file(&mut self, path: impl AsRef<Path>, sha256: &str) {
        self.run.note_input_file(path, sha256);
    }

    /// Every folder a script may read below: the run folder, the script's folders, the shared
    /// folder, the model caches (the Hugging Face cache, the finetune store), what
    /// `--allow-read` allowed and where it may write (report/confine.rs).
    pub fn read_roots(&self) -> Vec<PathBuf> {
        let mut roots = vec![self.context().out_dir.clone()];
        roots.extend(self.module_dirs.iter().cloned());
        roots.push(crate::eval::natives::shared_root());
        roots.push(crate::eval::natives::hub_cache());
        roots.push(crate::eval::builtins::finetune::default_store());
        roots.extend(self.context().allow_read.iter().cloned());
        roots.extend(self.context().allow_write.iter().cloned());
        roots
    }

    /// The file a path argument names, refused at `span` unless it may be read.
    pub fn readable(
        &self,
        path: &crate::eval::natives::ModelPath,
        span: Span,
    ) -> BebResult<PathBuf> {
        crate::report::confine::check_readable(path.written(), &path.0, &self.read_roots())
            .map_err(|e| e.at(span))?;
        Ok(path.0.clone())
    }

    /// Record a file the results depend on, hashing it now.
    pub fn note_input(&mut self, path: impl AsRef<Path>) {
        self.run.note_input(path);
    }

    /// The on-disk cache of expensive model calls (disabled unless the runner enabled it).
    pub fn cache(&self) -> &Cache {
        &self.run.cache
    }

    /// `model` as measurements in this run should call it: samples and scores of neural models
    /// (and mixtures of them) go through the cache and show progress bars.
    pub fn for_run(&self, model: crate::lm::ModelRef) -> crate::lm::ModelRef {
        let model = crate::lm::run_cache::for_run(model, &self.run.cache, &self.run.progress);
        crate::eval::interruptible::wrap(model, self.interrupt.clone())
    }

    /// A builtin's error once Ctrl-C was pressed during it: the interruption, not whatever
    /// the interrupted computation failed with.
    pub(super) fn interrupted_instead(&self, error: BebError) -> BebError {
        if self.interrupt.swap(false, Ordering::SeqCst) {
            BebError::new(ErrorKind::Interrupted, "interrupted")
        } else {
            error
        }
    }

    /// A progress bar for `total` steps of `label` (drawn only on a terminal, after half a
    /// second). Printing through the interpreter keeps it intact.
    pub fn progress(&self, total: u64, label: &str) -> Progress {
        self.run.progress.bar(total, label)
    }

    /// Where progress bars are drawn (e.g. to print above them).
    pub fn progress_hub(&self) -> &ProgressHub {
        &self.run.progress
    }

    /// Called at every loop step and call: honours Ctrl-C and the optional step budget.
    pub(super) fn check_interrupt(&mut self) -> BebResult<()> {
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

    /// A model's name: `given` (its `name:` argument) when there is one, else the variable
    /// the model is being bound to, else `fallback`.
    pub fn model_name(&mut self, given: Option<&str>, fallback: &str) -> String {
        match given {
            Some(name) => name.to_string(),
            None => self
                .name_hint
                .take()
                .map(|n| n.to_string())
                .unwrap_or_else(|| fallback.to_string()),
        }
    }
}

impl Interp {
    /// Report unknown names in `program` without running it.
    pub fn check(&self, program: &[Stmt]) -> Vec<BebError> {
        let module_names = |name: &str| -> Option<Vec<String>> {
            let (_, text, _) = self.module_source(name)?;
            let program = parse_program(crate::syntax::without_bom(&text), u32::MAX).ok()?;
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
        crate::eval::check::check_names(program, self.globals.names(), &module_names)
    }

    /// Warn, with both places, about each call that reaches a `let` or sweep column named like
    /// a builtin instead of the builtin.
    fn warn_shadowed_builtins(&mut self, program: &[Stmt]) {
        let builtins = &self.builtins;
        let found = crate::eval::check::shadowed_builtins(program, self.globals.names(), &|n| {
            builtins.contains_key(n)
        });
        for s in found {
            let text = format!(
                "`{name}(...)` at {called} calls the `{name}` bound at {bound}, not the builtin \
                 `{name}`; rename that binding to call the builtin",
                name = s.name,
                called = self.location(s.called),
                bound = self.location(s.bound),
            );
            self.warn(&text);
        }
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

impl Drop for Interp {
    fn drop(&mut self) {
        // Every cycle runs through a closure's captured scope and on up its parent chain
        // back to the scope holding the closure, so emptying those scopes frees them all.
        for scope in std::mem::take(&mut self.captured) {
            let mut next = scope.upgrade();
            while let Some(env) = next {
                env.clear();
                next = env.parent().cloned();
            }
        }
        self.globals.clear();
    }
}
