//! Running and checking script files: reading, seeding, `--set` variables, diagnostics,
//! exit codes and the run record.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use miette::{GraphicalReportHandler, GraphicalTheme};

use crate::error::{BebError, ErrorKind};
use crate::eval::{Interp, Value};
use crate::record::RunRecord;

/// Render a diagnostic as the terminal shows it (plain when not a terminal, for stable logs).
pub fn render(error: &BebError) -> String {
    let theme = if std::io::stderr().is_terminal() {
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

fn read_script(path: &Path) -> Result<String, BebError> {
    std::fs::read_to_string(path).map_err(|e| {
        BebError::new(
            ErrorKind::Io,
            format!("cannot read {}: {e}", path.display()),
        )
        .with_help("check the path; scripts are UTF-8 text files")
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
                let globals = interp.globals.clone();
                match interp.eval(&expr, &globals) {
                    Ok(v) => v,
                    Err(_) => Value::str(text),
                }
            }
            _ => Value::str(text),
        };
        interp.globals.define(Rc::from(name), value);
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
    let mut interp = Interp::new(0, Box::new(std::io::sink()));
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
        println!("{}: ok", file.display());
        0
    }
}

/// `beb run FILE`: returns the process exit code.
pub fn run(file: &Path, seed: Option<u64>, sets: &[String], out: Option<PathBuf>) -> i32 {
    let root_seed = seed.unwrap_or_else(crate::seed::fresh_root_seed);
    eprintln!(
        "beb: root seed {root_seed}{}",
        if seed.is_none() {
            " (chosen; pass --seed to repeat)"
        } else {
            ""
        }
    );
    let mut interp = Interp::new(root_seed, Box::new(std::io::stdout()));
    let text = match read_script(file) {
        Ok(t) => t,
        Err(e) => {
            report(&interp, e);
            return 2;
        }
    };
    let mut record = RunRecord::start(file, &text, root_seed, out.clone());
    interp.out_dir = record.folder.clone();
    let flag = interp.interrupt.clone();
    // A second Ctrl-C while the first is being handled still stops the process.
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
    let outcome = (|| {
        record.sets = apply_sets(&mut interp, sets)?;
        let id = interp.add_source(&file.display().to_string(), &text);
        let program = interp.parse(id).map_err(BebError::from_syntax)?;
        if let Some(first) = interp.check(&program).into_iter().next() {
            return Err(first);
        }
        interp.run(&program).map(|_| ())
    })();
    let code = match &outcome {
        Ok(()) => 0,
        Err(e) => e.exit_code(),
    };
    let status = match &outcome {
        Ok(()) => "completed".to_string(),
        Err(e) if e.kind == ErrorKind::Interrupted => "interrupted".to_string(),
        Err(e) if e.kind == ErrorKind::Assertion => format!("assertion failed: {}", e.message),
        Err(e) => format!("failed: {}", e.message),
    };
    // Write what finished even when the script failed part-way.
    let must_write = out.is_some() || !interp.saved.is_empty();
    if must_write {
        if let Err(e) = record.finish(&interp, &status) {
            report(&interp, e);
        } else {
            eprintln!("beb: run record in {}", record.folder.display());
        }
    }
    if let Err(e) = outcome {
        report(&interp, e);
    }
    code
}
