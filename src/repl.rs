//! The interactive session on rustyline: multi-line input (a `...> ` continuation prompt while
//! the parser says the input is incomplete), completion of names, named arguments and `:load`
//! paths, `:help`, `:vars`, `:load`, `:quit`. Ctrl-C stops a running evaluation and keeps the
//! session. Piped (non-terminal) input is evaluated the same way, line by line.

use std::borrow::Cow;
use std::cell::RefCell;
use std::io::BufRead;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Editor, Helper};

use crate::error::BebError;
use crate::eval::{Interp, Value};
use crate::runner::report;
use crate::syntax::parse_program;

const KEYWORDS: &[&str] = &[
    "let",
    "fn",
    "if",
    "else",
    "for",
    "in",
    "sweep",
    "import",
    "assert",
    "print",
    "return",
    "true",
    "false",
    "and",
    "or",
    "not",
    "none",
    "save",
    "plot",
    "to",
    "with",
    "at",
    "sentences",
    "while",
    "break",
    "continue",
];
const COMMANDS: &[&str] = &[":help", ":vars", ":load", ":quit"];

/// Start a session; returns the exit code (non-zero when piped input had errors). `read`
/// reads in the current folder, and in `allow_read` (`--allow-read`).
pub fn start(seed: Option<u64>, allow_read: Vec<std::path::PathBuf>) -> i32 {
    let root_seed = crate::seed::RootSeed::resolve(seed).value;
    let interp = Rc::new(RefCell::new(Interp::new(
        root_seed,
        Box::new(std::io::stdout()),
    )));
    interp.borrow_mut().context_mut().allow_read = allow_read;
    let flag = interp.borrow().interrupt_flag();
    let _ = ctrlc::set_handler(move || flag.store(true, std::sync::atomic::Ordering::SeqCst));
    if std::io::stdin().is_terminal() {
        eprintln!(
            "beb {} — root seed {root_seed}. :help for help, :quit to leave.",
            env!("CARGO_PKG_VERSION")
        );
        interactive(interp)
    } else {
        piped(interp)
    }
}

/// What one complete input did.
enum Outcome {
    Continue,
    Quit,
}

struct Session {
    interp: Rc<RefCell<Interp>>,
    /// In a terminal: take SIGINT back from the line editor while an input is evaluated.
    terminal: bool,
    counter: usize,
    /// The worst exit code seen (1 for a failed assertion, 2 for other errors).
    worst: i32,
}

impl Session {
    fn handle(&mut self, input: &str) -> Outcome {
        let trimmed = input.trim();
        if let Some(command) = trimmed.strip_prefix(':') {
            return self.command(command);
        }
        if trimmed.is_empty() {
            return Outcome::Continue;
        }
        self.counter += 1;
        let name = format!("<repl:{}>", self.counter);
        self.eval_source(&name, input);
        Outcome::Continue
    }

    fn eval_source(&mut self, name: &str, text: &str) {
        let mut interp = self.interp.borrow_mut();
        interp.interrupt_flag().store(false, Ordering::SeqCst);
        let file = interp.add_source(name, text);
        let _sigint = self
            .terminal
            .then(|| SigintDuringEval::install(interp.interrupt_flag()));
        // Whatever an evaluation does, the session (its variables) outlives it: a panic is
        // reported as an internal error of that input only.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            interp
                .parse(file)
                .map_err(BebError::from_syntax)
                .and_then(|program| {
                    let is_expression = matches!(
                        program.last().map(|s| &s.node),
                        Some(crate::syntax::StmtKind::Expr(_))
                    );
                    interp.run(&program).map(|v| (v, is_expression))
                })
        }))
        .unwrap_or_else(|_| {
            Err(BebError::new(
                crate::error::ErrorKind::Value,
                "internal error while evaluating this input (please report it); the session goes on",
            ))
        });
        match result {
            Ok((value, true)) if !matches!(value, Value::None) => {
                let _ = interp.print_line(&value.to_string());
            }
            Ok(_) => {}
            Err(e) => {
                self.worst = self.worst.max(e.exit_code());
                report(&interp, e);
            }
        }
    }

    fn command(&mut self, command: &str) -> Outcome {
        let (name, arg) = command
            .split_once(char::is_whitespace)
            .unwrap_or((command, ""));
        let arg = arg.trim();
        match name {
            "quit" | "q" | "exit" => return Outcome::Quit,
            "help" | "h" => self.help(arg),
            "vars" => {
                let interp = self.interp.borrow();
                let lines: Vec<String> = interp
                    .globals()
                    .local_bindings()
                    .iter()
                    .map(|(n, v)| format!("{n} = {}", short(v)))
                    .collect();
                crate::outln!(
                    "{}",
                    if lines.is_empty() {
                        "(no variables)".to_string()
                    } else {
                        lines.join("\n")
                    }
                );
            }
            "load" => match std::fs::read_to_string(arg) {
                Ok(text) => self.eval_source(arg, &text),
                Err(e) => {
                    self.worst = self.worst.max(2);
                    eprintln!("cannot read {arg}: {e}");
                }
            },
            other => {
                self.worst = self.worst.max(2);
                eprintln!(
                    "unknown command :{other} (commands: {})",
                    COMMANDS.join(" ")
                );
            }
        }
        Outcome::Continue
    }

    fn help(&self, topic: &str) {
        let interp = self.interp.borrow();
        if topic.is_empty() {
            crate::outln!("Type beb statements; an incomplete line continues on the next.");
            crate::outln!("Commands: :help [name]  :vars  :load FILE  :quit");
            crate::outln!("Keywords: {}", KEYWORDS.join(" "));
            let mut by_module: Vec<(&str, Vec<&str>)> = Vec::new();
            for b in interp.builtins() {
                match by_module.iter_mut().find(|(m, _)| *m == b.module) {
                    Some((_, names)) => names.push(&b.name),
                    None => by_module.push((b.module, vec![&b.name])),
                }
            }
            for (module, names) in by_module {
                crate::outln!("{module}: {}", names.join(" "));
            }
            crate::outln!(
                "stdlib modules (import NAME): {}",
                Interp::module_names().collect::<Vec<_>>().join(" ")
            );
            return;
        }
        let value = interp.globals().get(topic).or_else(|| {
            // `:help bounds.lemma5_kl` looks inside a module.
            let (module, member) = topic.split_once('.')?;
            match interp.globals().get(module)? {
                Value::Record(r) => r.get(member).cloned(),
                _ => None,
            }
        });
        match value.as_ref().and_then(Interp::describe_function) {
            Some((signature, doc)) => {
                crate::outln!("{signature}");
                if let Some(doc) = doc {
                    crate::outln!("{doc}");
                }
            }
            None => match value {
                Some(v) => crate::outln!("{topic}: {} = {}", v.type_name(), short(&v)),
                None => crate::outln!("{}", no_help(&interp, topic)),
            },
        }
    }
}

/// Why `:help TOPIC` found nothing, with the way on when TOPIC is in a module not imported yet.
fn no_help(interp: &Interp, topic: &str) -> String {
    if let Some((module, _)) = topic.split_once('.')
        && interp.globals().get(module).is_none()
        && Interp::module_names().any(|m| m == module)
    {
        return format!(
            "no help for `{topic}`: `{module}` is a stdlib module not imported yet; \
             run `import {module}` first, then `:help {topic}`"
        );
    }
    format!("no help for `{topic}`")
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    let first = text.lines().next().unwrap_or("");
    if text.lines().count() > 1 || first.chars().count() > 100 {
        format!("{}…", first.chars().take(100).collect::<String>())
    } else {
        text
    }
}

/// Whether `text` is a complete input (commands and blank lines always are). Input that ends
/// with a `##` doc comment waits for the function the comment documents.
fn incomplete(text: &str) -> bool {
    let t = text.trim();
    if t.is_empty() || t.starts_with(':') {
        return false;
    }
    let ends_with_doc = t
        .lines()
        .last()
        .is_some_and(|l| l.trim_start().starts_with("##"));
    ends_with_doc || matches!(parse_program(text, 0), Err(e) if e.incomplete)
}

fn piped(interp: Rc<RefCell<Interp>>) -> i32 {
    let mut session = Session {
        interp,
        terminal: false,
        counter: 0,
        worst: 0,
    };
    let mut buffer = String::new();
    // One line at a time, without holding stdin: a statement may read the lines after it
    // (label() reads its answers).
    let stdin = std::io::stdin();
    let mut number = 0usize;
    loop {
        let mut bytes = Vec::new();
        match stdin.lock().read_until(b'\n', &mut bytes) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("beb: cannot read the input: {e}");
                session.worst = session.worst.max(2);
                break;
            }
        }
        number += 1;
        // A line that is not UTF-8 is reported and skipped; the session goes on.
        let line = match String::from_utf8(bytes) {
            Ok(line) => line,
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                eprintln!(
                    "beb: input line {number} is not UTF-8 text (invalid byte at byte {}); it was skipped",
                    at + 1
                );
                session.worst = session.worst.max(2);
                continue;
            }
        };
        let line = line.strip_suffix('\n').unwrap_or(&line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        buffer.push_str(line);
        buffer.push('\n');
        if incomplete(&buffer) {
            continue;
        }
        let input = std::mem::take(&mut buffer);
        if let Outcome::Quit = session.handle(&input) {
            return session.worst;
        }
    }
    if !buffer.trim().is_empty() {
        session.handle(&buffer);
    }
    session.worst
}

fn history_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BEB_HISTORY") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".beb_history"))
}

struct BebHelper {
    interp: Rc<RefCell<Interp>>,
    files: FilenameCompleter,
}

/// The Interp flag SIGINT raises while an input is evaluated (null between evaluations).
static EVAL_FLAG: AtomicPtr<AtomicBool> = AtomicPtr::new(std::ptr::null_mut());

extern "C" fn on_sigint(_: libc::c_int) {
    let flag = EVAL_FLAG.load(Ordering::SeqCst);
    if !flag.is_null() {
        // SAFETY: the pointer comes from an Arc the guard below keeps alive while it is set;
        // an atomic store is async-signal-safe.
        unsafe { (*flag).store(true, Ordering::SeqCst) };
    }
}

/// rustyline keeps its own SIGINT handler installed for the editor's whole life (it reads
/// Ctrl-C as a key at the prompt), so during an evaluation Ctrl-C would be swallowed. This
/// guard installs a handler raising the interpreter's interrupt flag and puts the editor's
/// back when the evaluation ends.
struct SigintDuringEval {
    flag: std::sync::Arc<AtomicBool>,
    previous: libc::sigaction,
}

impl SigintDuringEval {
    fn install(flag: std::sync::Arc<AtomicBool>) -> SigintDuringEval {
        EVAL_FLAG.store(std::sync::Arc::as_ptr(&flag).cast_mut(), Ordering::SeqCst);
        // SAFETY: plain sigaction calls with zero-initialised structs; the handler only does
        // an atomic load and store.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigint as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            let mut previous: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGINT, &action, &mut previous);
            SigintDuringEval { flag, previous }
        }
    }
}

impl Drop for SigintDuringEval {
    fn drop(&mut self) {
        // SAFETY: restores the action saved by `install`.
        unsafe { libc::sigaction(libc::SIGINT, &self.previous, std::ptr::null_mut()) };
        EVAL_FLAG.store(std::ptr::null_mut(), Ordering::SeqCst);
        let _ = &self.flag;
    }
}

/// The function whose argument list the cursor is in (`kl(p, q, sa|` gives `kl`), when the
/// cursor starts an argument.
fn enclosing_call(before: &str) -> Option<&str> {
    let mut depth = 0usize;
    let mut open = None;
    for (i, c) in before.char_indices().rev() {
        match c {
            ')' | ']' | '}' => depth += 1,
            '(' if depth == 0 => {
                open = Some(i);
                break;
            }
            '[' | '{' if depth == 0 => return None,
            '(' | '[' | '{' => depth -= 1,
            _ => {}
        }
    }
    let head = before[..open?].trim_end();
    let start = head
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
        .map(|i| i + 1)
        .unwrap_or(0);
    let name = &head[start..];
    (!name.is_empty()).then_some(name)
}

impl BebHelper {
    /// The parameter names of the function `name` (a builtin, a user function or a module's
    /// member such as `bounds.lemma5_kl`).
    fn params_of(&self, name: &str) -> Vec<String> {
        let interp = self.interp.borrow();
        let value = match name.split_once('.') {
            Some((module, member)) => match interp.globals().get(module) {
                Some(Value::Record(r)) => r.get(member).cloned(),
                _ => None,
            },
            None => interp.globals().get(name),
        };
        match value {
            Some(Value::Native(b)) => b
                .params
                .iter()
                .filter(|p| !p.variadic)
                .map(|p| p.name.clone())
                .collect(),
            Some(Value::Func(c)) => c
                .def
                .params
                .iter()
                .map(|p| p.name.node.to_string())
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl Completer for BebHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        if let Some(rest) = before.trim_start().strip_prefix(":load")
            && rest.starts_with(char::is_whitespace)
        {
            return self.files.complete_path(line, pos);
        }
        let start = before
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .map(|i| i + 1)
            .unwrap_or(0);
        let word = &before[start..];
        if word.is_empty() {
            return Ok((start, Vec::new()));
        }
        // A named argument (`samples: `) first when the word starts an argument of a call.
        let mut candidates: Vec<Pair> = Vec::new();
        let starts_argument = before[..start].trim_end().ends_with(['(', ',']);
        if starts_argument && let Some(function) = enclosing_call(&before[..start]) {
            candidates.extend(
                self.params_of(function)
                    .into_iter()
                    .filter(|p| p.starts_with(word))
                    .map(|p| Pair {
                        display: format!("{p}:"),
                        replacement: format!("{p}: "),
                    }),
            );
        }
        let interp = self.interp.borrow();
        let mut names: Vec<String> = interp
            .globals()
            .names()
            .iter()
            .map(|n| n.to_string())
            .collect();
        names.extend(KEYWORDS.iter().map(|k| k.to_string()));
        names.extend(COMMANDS.iter().map(|c| c.to_string()));
        names.extend(Interp::module_names().map(String::from));
        names.sort();
        names.dedup();
        candidates.extend(
            names
                .into_iter()
                .filter(|n| n.starts_with(word))
                .map(|n| Pair {
                    display: n.clone(),
                    replacement: n,
                }),
        );
        Ok((start, candidates))
    }
}

impl Hinter for BebHelper {
    type Hint = String;
}

impl Highlighter for BebHelper {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(
        &'s self,
        prompt: &'p str,
        _default: bool,
    ) -> Cow<'b, str> {
        Cow::Borrowed(prompt)
    }
}

/// Every line is accepted as typed: the session loop continues an incomplete input on a
/// `...> ` prompt, so a paste of several lines runs line by line, as typed.
impl Validator for BebHelper {
    fn validate(&self, _: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        Ok(ValidationResult::Valid(None))
    }
}

impl Helper for BebHelper {}

fn interactive(interp: Rc<RefCell<Interp>>) -> i32 {
    let mut editor: Editor<BebHelper, rustyline::history::DefaultHistory> = match Editor::new() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("beb: cannot start the line editor ({e}); reading plain lines");
            return piped(interp);
        }
    };
    editor.set_helper(Some(BebHelper {
        interp: interp.clone(),
        files: FilenameCompleter::new(),
    }));
    let history = history_path();
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    let mut session = Session {
        interp,
        terminal: true,
        counter: 0,
        worst: 0,
    };
    // The input so far while it is incomplete; each line read (a pasted block is split into
    // its lines) goes through it, exactly as piped input does.
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() { "beb> " } else { "...> " };
        match editor.readline(prompt) {
            Ok(text) => {
                for line in text.split('\n') {
                    buffer.push_str(line.strip_suffix('\r').unwrap_or(line));
                    buffer.push('\n');
                    if incomplete(&buffer) {
                        continue;
                    }
                    let input = std::mem::take(&mut buffer);
                    let entry = input.trim_end();
                    if !entry.is_empty() {
                        let _ = editor.add_history_entry(entry);
                        if let Some(h) = &history {
                            let _ = editor.append_history(h);
                        }
                    }
                    if let Outcome::Quit = session.handle(&input) {
                        return 0;
                    }
                }
            }
            // Ctrl-C at a prompt abandons the input so far; the session and its variables stay.
            Err(ReadlineError::Interrupted) => buffer.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("beb: {e}");
                break;
            }
        }
    }
    0
}
