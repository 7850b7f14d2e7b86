//! Running and checking script files: reading, seeding, `--set` variables, diagnostics,
//! exit codes and the run record.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use miette::{GraphicalReportHandler, GraphicalTheme};

use crate::cache::Cache;
use crate::error::{BebError, ErrorKind};
use crate::eval::{Interp, Settings, Value};
use crate::record::{RunRecord, Status};
use crate::report::progress::ProgressHub;
use crate::seed::RootSeed;

/// Render a diagnostic as the terminal shows it (plain when not a terminal, for stable logs).
pub fn render(error: &BebError) -> String {
    render_with(error, std::io::stderr().is_terminal())
}

/// Render a diagnostic, in colour or plain (for files).
pub fn render_with(error: &BebError, color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
    let mut out = String::new();
    match handler.render_report(&mut out, error) {
        Ok(()) => out,
        Err(_) => format!("error: {error}\n"),
    }
}

/// Print a diagnostic with its source attached.
pub fn report(interp: &Interp, error: BebError) {
    eprint!("{}", render(&interp.attach_source(error)));
}

pub fn read_script(path: &Path) -> Result<String, BebError> {
    let bytes = std::fs::read(path).map_err(|e| {
        BebError::new(
            ErrorKind::Io,
            format!("cannot read {}: {e}", path.display()),
        )
        .with_help("check the path; scripts are UTF-8 text files")
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let before = String::from_utf8_lossy(&e.as_bytes()[..at]);
        let (line, column) = crate::error::line_col(&before, at);
        BebError::new(
            ErrorKind::Io,
            format!(
                "{} is not UTF-8 text: invalid byte at line {line}, column {column} (byte offset {at})",
                path.display()
            ),
        )
        .with_help("scripts are UTF-8 text files; re-save it as UTF-8")
    })
}

/// `--set name=value`: the value is a beb expression if it parses and evaluates, else a string.
pub fn apply_sets(interp: &mut Interp, sets: &[String]) -> Result<Vec<(String, String)>, BebError> {
    let mut applied = Vec::new();
    for set in sets {
        let Some((name, text)) = set.split_once('=') else {
            return Err(BebError::argument(format!(
                "--set {set:?} must look like name=value"
            )));
        };
        let name = name.trim();
        let valid_name = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(BebError::argument(format!(
                "--set: {name:?} is not a valid variable name"
            )));
        }
        let file = interp.add_source(&format!("--set {name}"), text);
        let value = match crate::syntax::parse_expression(text, file) {
            Ok(expr) if literal_only(&expr) => {
                let globals = interp.globals().clone();
                match interp.eval(&expr, &globals) {
                    Ok(v) => v,
                    Err(_) => Value::str(text),
                }
            }
            _ => Value::str(text),
        };
        interp.define_param(name, value);
        applied.push((name.to_string(), text.to_string()));
    }
    Ok(applied)
}

/// `--set` values may be literals and arithmetic on them, never calls or names.
fn literal_only(expr: &crate::syntax::Expr) -> bool {
    use crate::syntax::ExprKind as E;
    match &expr.node {
        E::Number(_) | E::Bool(_) | E::None => true,
        E::Str(parts) => parts
            .iter()
            .all(|p| matches!(p, crate::syntax::ast::StrPart::Text(_))),
        E::List(items) => items.iter().all(literal_only),
        E::Unary(_, e) => literal_only(e),
        E::Binary(_, l, r) => literal_only(l) && literal_only(r),
        E::Range { start, end, .. } => [start, end].into_iter().flatten().all(|e| literal_only(e)),
        _ => false,
    }
}

/// `beb check FILE`: exit 0 when the script parses and every name resolves.
pub fn check(file: &Path, sets: &[String]) -> i32 {
    let mut interp = Interp::with_settings(
        Settings {
            module_dirs: vec![script_dir(file)],
            ..Settings::default()
        },
        Box::new(std::io::sink()),
    );
    let text = match read_script(file) {
        Ok(t) => t,
        Err(e) => {
            report(&interp, e);
            return 2;
        }
    };
    if let Err(e) = apply_sets(&mut interp, sets) {
        report(&interp, e);
        return 2;
    }
    let id = interp.add_source(&file.display().to_string(), &text);
    let program = match interp.parse(id) {
        Ok(p) => p,
        Err(e) => {
            report(&interp, BebError::from_syntax(e));
            return 2;
        }
    };
    let errors = interp.check(&program);
    let failed = !errors.is_empty();
    for e in errors {
        report(&interp, e);
    }
    if failed {
        2
    } else {
        crate::outln!("{}: ok", file.display());
        0
    }
}

/// Which cache a run uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CacheChoice {
    /// `runs/.cache` (under `$BEB_RUNS_DIR` when set).
    #[default]
    Default,
    /// A given folder (`--cache DIR`).
    At(PathBuf),
    /// No cache (`--no-cache`): every model call is computed.
    Off,
}

impl CacheChoice {
    pub fn open(&self) -> Cache {
        match self {
            CacheChoice::Default => Cache::at(crate::record::runs_dir().join(".cache")),
            CacheChoice::At(dir) => Cache::at(dir),
            CacheChoice::Off => Cache::disabled(),
        }
    }
}

/// How to run a script.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Root seed (chosen when absent).
    pub seed: Option<u64>,
    /// `--set NAME=VALUE` definitions.
    pub sets: Vec<String>,
    /// The run folder (a fresh one under `runs/` when absent).
    pub out: Option<PathBuf>,
    /// Folders outside the run folder the script may write to.
    pub allow_write: Vec<PathBuf>,
    /// Hosts (`HOST` or `HOST:PORT`) the script may connect to (`--allow-net`).
    pub allow_net: Vec<String>,
    /// Files and folders the script may read besides its run folder and its own folder.
    pub allow_read: Vec<PathBuf>,
    pub cache: CacheChoice,
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    pub code: i32,
    pub status: Status,
    /// The run folder, when the run record was written.
    pub folder: Option<PathBuf>,
    pub root_seed: u64,
}

/// The process-wide Ctrl-C flag: the first Ctrl-C stops the running script cleanly (its run
/// record is still written and says so); a second one ends the process at once.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let handler_flag = flag.clone();
        let _ = ctrlc::set_handler(move || {
            if handler_flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
        flag
    })
    .clone()
}

/// Run one script: its printed output goes to `stdout`, each diagnostic (with its source
/// attached, ready to render) to `diagnostic`. Writes the run record into the run folder.
pub fn execute(
    file: &Path,
    options: &RunOptions,
    stdout: Box<dyn Write>,
    interrupt: Arc<AtomicBool>,
    progress: ProgressHub,
    diagnostic: &mut dyn FnMut(BebError),
) -> RunOutcome {
    let root_seed = RootSeed::resolve(options.seed).value;
    let mut outcome = RunOutcome {
        code: 2,
        status: Status::Failed(String::new()),
        folder: None,
        root_seed,
    };
    let text = match read_script(file) {
        Ok(t) => t,
        Err(e) => {
            outcome.status = Status::Failed(e.message.clone());
            diagnostic(e);
            return outcome;
        }
    };
    let started = SystemTime::now();
    let folder = options
        .out
        .clone()
        .unwrap_or_else(|| crate::record::fresh_folder(file, root_seed, started));
    let mut record = RunRecord::start(file, &text, root_seed, folder, started);
    let mut interp = Interp::with_settings(
        Settings {
            root_seed,
            out_dir: record.folder.clone(),
            allow_write: options.allow_write.clone(),
            allow_net: options.allow_net.clone(),
            allow_read: options.allow_read.clone(),
            module_dirs: vec![script_dir(file)],
            cache: options.cache.open(),
            progress,
            interrupt,
            fuel: None,
        },
        stdout,
    );
    let result = (|| {
        record.sets = apply_sets(&mut interp, &options.sets)?;
        record.begin(interp.cache())?;
        let id = interp.add_source(&file.display().to_string(), &text);
        let program = interp.parse(id).map_err(BebError::from_syntax)?;
        if let Some(first) = interp.check(&program).into_iter().next() {
            return Err(first);
        }
        interp.run(&program).map(|_| ())
    })();
    outcome.status = match &result {
        Ok(()) => Status::Completed,
        Err(e) if e.kind == ErrorKind::Interrupted => Status::Interrupted,
        Err(e) if e.kind == ErrorKind::Assertion => Status::AssertionFailed(e.message.clone()),
        Err(e) => Status::Failed(e.message.clone()),
    };
    outcome.code = match &result {
        Ok(()) => 0,
        Err(e) => e.exit_code(),
    };
    // Write what finished even when the script failed part-way.
    match record.finish(interp.context(), &outcome.status) {
        Ok(()) => outcome.folder = Some(record.folder.clone()),
        Err(e) => diagnostic(interp.attach_source(e)),
    }
    if let Err(e) = result {
        diagnostic(interp.attach_source(e));
    }
    outcome
}

/// `beb run FILE`: returns the process exit code.
pub fn run(file: &Path, options: &RunOptions) -> i32 {
    let root = RootSeed::resolve(options.seed);
    eprintln!("beb: root seed {root}");
    let options = RunOptions {
        seed: Some(root.value),
        ..options.clone()
    };
    let outcome = execute(
        file,
        &options,
        Box::new(std::io::stdout()),
        interrupt_flag(),
        ProgressHub::detect(),
        &mut |e| eprint!("{}", render(&e)),
    );
    if let Some(folder) = &outcome.folder {
        let note = if outcome.status == Status::Interrupted {
            " (interrupted: it holds what finished)"
        } else {
            ""
        };
        eprintln!("beb: run record in {}{note}", folder.display());
    }
    outcome.code
}

/// The folder `import` searches for a script's local modules.
fn script_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
