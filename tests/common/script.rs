//! Running scripts in-process. The only test code that builds or configures an interpreter.

use std::path::Path;
use std::rc::Rc;

use beb::error::BebError;
use beb::eval::natives::Builtin;
use beb::eval::{CapturedOutput, Interp, Settings, Value};

/// How to run a script in-process.
pub struct Options<'a> {
    /// The root seed.
    pub seed: u64,
    /// The run folder (the current folder when `None`).
    pub out_dir: Option<&'a Path>,
    /// A step budget, for scripts that may never end.
    pub fuel: Option<u64>,
    /// The name diagnostics give the script.
    pub name: &'a str,
    /// Run the name checker before running, collecting what it finds.
    pub check: bool,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            seed: 1,
            out_dir: None,
            fuel: None,
            name: "<test>",
            check: false,
        }
    }
}

/// What an in-process run gave. Its errors carry their source, ready for [`render`].
pub struct Run {
    /// What the script printed.
    pub stdout: String,
    /// Whether it parsed (when not, `result` holds the syntax error).
    pub parsed: bool,
    /// What the name checker found (with `check`).
    pub check_errors: Vec<BebError>,
    /// The value of a trailing expression, or the error the script stopped with.
    pub result: Result<Value, BebError>,
}

impl Run {
    /// Every error: the checker's, then the one the script stopped with.
    pub fn errors(&self) -> impl Iterator<Item = &BebError> {
        self.check_errors.iter().chain(self.result.as_ref().err())
    }
}

/// Parse, (optionally) check and run `script` as `options` say. Never panics on a bad script.
pub fn run_script(script: &str, options: &Options) -> Run {
    let out = CapturedOutput::default();
    let mut settings = Settings {
        root_seed: options.seed,
        fuel: options.fuel,
        ..Settings::default()
    };
    if let Some(dir) = options.out_dir {
        settings.out_dir = dir.to_path_buf();
    }
    // Tests build their models and data in scratch folders of the temporary directory.
    settings.allow_read = vec![std::env::temp_dir()];
    let mut interp = Interp::with_settings(settings, Box::new(out.clone()));
    let file = interp.add_source(options.name, script);
    let (parsed, check_errors, result) = match interp.parse(file) {
        Err(e) => (false, Vec::new(), Err(BebError::from_syntax(e))),
        Ok(program) => {
            let found = if options.check {
                interp.check(&program)
            } else {
                Vec::new()
            };
            (true, found, interp.run(&program))
        }
    };
    Run {
        stdout: out.text(),
        parsed,
        check_errors: check_errors
            .into_iter()
            .map(|e| interp.attach_source(e))
            .collect(),
        result: result.map_err(|e| interp.attach_source(e)),
    }
}

/// Run `script` in-process with root seed 1 and run folder `out_dir` (the current folder when
/// `None`): (stdout, the error if it failed). A syntax error fails the test.
pub fn run_in_process(script: &str, out_dir: Option<&Path>) -> (String, Option<BebError>) {
    let run = run_script(
        script,
        &Options {
            out_dir,
            ..Options::default()
        },
    );
    match run.result {
        Err(e) if !run.parsed => panic!("syntax: {e:?}"),
        result => (run.stdout, result.err()),
    }
}

/// An error as the `beb` binary shows it.
pub fn render(error: &BebError) -> String {
    beb::runner::render(error)
}

/// Every builtin, with its module, signature and doc.
pub fn builtins() -> Vec<Rc<Builtin>> {
    Interp::new(0, Box::new(std::io::sink()))
        .builtins()
        .cloned()
        .collect()
}

/// One builtin; a test fails when there is none of that name.
pub fn builtin(name: &str) -> Rc<Builtin> {
    Interp::new(0, Box::new(std::io::sink()))
        .builtin(name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} is not a builtin"))
}
