//! Human labels. The paper classified generated responses by hand; `label(responses)` asks a
//! person for those classifications and keeps them in a CSV file of the run, and
//! `labels(file)` turns such a file into a behavior scorer, so the manual classification is
//! data that a later run reproduces exactly.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::builtin;
use crate::error::{BebError, BebResult, ErrorKind};
use crate::eval::interp::Interp;
use crate::eval::natives::{Arg, List, ModelPath, Native, ScorerValue, StringOrList};
use crate::eval::value::Value;
use crate::lm::display_units;
use crate::measure::behavior::{Scorer, excerpt, label_key};

pub const NATIVES: &[Native] = &[Label::NATIVE, Labels::NATIVE];

/// Labelled texts keyed by their trimmed text, in the order first seen.
#[derive(Default)]
struct Book {
    rows: Vec<Row>,
    position: HashMap<String, usize>,
}

#[derive(Clone)]
struct Row {
    index: String,
    text: String,
    label: f64,
}

impl Book {
    fn get(&self, text: &str) -> Option<f64> {
        self.position
            .get(label_key(text))
            .map(|&i| self.rows[i].label)
    }

    /// Add a row unless its text is already labelled; whether it was added.
    fn add(&mut self, row: Row) -> bool {
        if self.position.contains_key(label_key(&row.text)) {
            return false;
        }
        self.position
            .insert(label_key(&row.text).to_string(), self.rows.len());
        self.rows.push(row);
        true
    }

    fn csv(&self) -> BebResult<Vec<u8>> {
        let io = |e: csv::Error| BebError::new(ErrorKind::Io, format!("cannot write CSV: {e}"));
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer
            .write_record(["index", "text", "label"])
            .map_err(io)?;
        for row in &self.rows {
            writer
                .write_record([
                    row.index.as_str(),
                    row.text.as_str(),
                    &crate::format::number(row.label),
                ])
                .map_err(io)?;
        }
        writer
            .into_inner()
            .map_err(|e| BebError::new(ErrorKind::Io, format!("cannot write CSV: {}", e.error())))
    }

    /// The rows as the run record keeps them.
    fn value(&self) -> Value {
        Value::list(
            self.rows
                .iter()
                .map(|r| {
                    Value::record(vec![
                        ("index", Value::str(&r.index)),
                        ("text", Value::str(&r.text)),
                        ("label", Value::Num(r.label)),
                    ])
                })
                .collect(),
        )
    }
}

/// The labelled rows of a labels CSV (header with `text` and `label`; `index` optional; rows
/// with an empty label are not labels and are left out).
fn read_rows(path: &Path) -> BebResult<Vec<Row>> {
    let shown = path.display();
    let bytes = std::fs::read(path)
        .map_err(|e| BebError::new(ErrorKind::Io, format!("cannot read {shown}: {e}")))?;
    let bad = |what: String| BebError::value(format!("{shown}: {what}"));
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes.as_slice());
    let headers = reader
        .headers()
        .map_err(|e| bad(e.to_string()))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
        .collect::<Vec<_>>();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let (Some(text_at), Some(label_at)) = (column("text"), column("label")) else {
        return Err(bad(format!(
            "a labels file has columns `text` and `label`; found {}",
            headers.join(", ")
        ))
        .with_help("label(...) writes such files: index,text,label"));
    };
    let index_at = column("index");
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| bad(e.to_string()))?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let cell = |i: usize| record.get(i).unwrap_or("");
        let raw = cell(label_at).trim();
        if raw.is_empty() {
            continue;
        }
        let label: f64 = raw
            .parse()
            .ok()
            .filter(|x: &f64| (-1.0..=1.0).contains(x))
            .ok_or_else(|| {
                bad(format!(
                    "line {line}: the label {raw:?} is not a number in [-1, 1]"
                ))
            })?;
        rows.push(Row {
            index: index_at.map(|i| cell(i).to_string()).unwrap_or_default(),
            text: cell(text_at).to_string(),
            label,
        });
    }
    Ok(rows)
}

/// A file to read: `$BEB_SHARED/...` resolved; a relative path in the run folder when it is
/// there (a file this run labelled), else from the current folder; refused outside the
/// folders a script may read.
fn input_path(interp: &Interp, name: &str) -> BebResult<PathBuf> {
    let path = ModelPath::new(name);
    if path.0.is_relative() {
        let in_run = interp.context().out_dir.join(&path.0);
        if in_run.is_file() {
            return Ok(in_run);
        }
    }
    crate::report::confine::check_readable(name, &path.0, &interp.read_roots())?;
    Ok(path.0)
}

/// A response as the person sees it, and as its label is keyed.
fn shown(responses: &Arg<List>, i: usize, v: &Value) -> BebResult<String> {
    match v {
        Value::Text(t) => Ok(display_units(&t.units)),
        Value::Str(s) => Ok(s.to_string()),
        other => Err(responses.invalid(format!(
            "response {i} is a {}; responses are texts or strings",
            other.type_name()
        ))),
    }
}

/// One answer of the person.
enum Answer {
    Label(f64),
    Skip,
    Stop,
}

fn parse_answer(line: &str) -> Option<Answer> {
    match line.trim() {
        "+" | "1" | "+1" => Some(Answer::Label(1.0)),
        "0" => Some(Answer::Label(0.0)),
        "-" | "-1" => Some(Answer::Label(-1.0)),
        "s" | "S" => Some(Answer::Skip),
        "q" | "Q" => Some(Answer::Stop),
        _ => None,
    }
}

const KEYS: &str = "+ or 1, 0, - or -1; s skips, q stops";

/// Write on stderr, above any progress bar.
fn say(interp: &Interp, text: &str) {
    interp.progress_hub().suspend(|| {
        let mut err = std::io::stderr();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    });
}

/// The next line of input; `None` at its end. Lines come from standard input, the REPL's
/// terminal when there is one (the REPL does not hold it while a statement runs).
fn read_line() -> BebResult<Option<String>> {
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(0) => Ok(None),
        Ok(_) => Ok(Some(line)),
        Err(e) => Err(BebError::new(
            ErrorKind::Io,
            format!("cannot read an answer: {e}"),
        )),
    }
}

/// Write the book atomically where `file` resolved, and keep it in the run record.
fn store(interp: &mut Interp, book: &Book, path: &Path, shown_path: &str) -> BebResult<()> {
    crate::report::save::write_atomic(path, &book.csv()?)?;
    let value = book.value();
    interp.context_mut().keep_saved(shown_path, value);
    Ok(())
}

builtin! {
    /// Ask a person to label each response (a text, shown decoded, or a string): + or 1 for +1,
    /// 0 for 0, - or -1 for -1, s to skip, q to stop; one answer a line, read from the
    /// terminal, or from standard input when it is not one. The answers go to a CSV file
    /// (index, text, label) in the run folder, rewritten atomically after each answer;
    /// responses already labelled there, or in the `from:` files, are not asked again. Returns
    /// the labels in order (none where skipped).
    Label = label(responses: List, file: Rc<str> = "labels.csv", from: Option<StringOrList> = none) -> "list"
}

impl Label {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let texts = self
            .responses
            .0
            .iter()
            .enumerate()
            .map(|(i, v)| shown(&self.responses, i, v))
            .collect::<BebResult<Vec<_>>>()?;
        let name = &*self.file;
        let (path, shown_path) = crate::report::confine::confined_path(
            name,
            &interp.context().out_dir,
            &interp.context().allow_write,
        )
        .map_err(|e| e.at(self.file.span))?;
        let mut book = Book::default();
        let existed = path.is_file();
        if existed {
            for row in read_rows(&path).map_err(|e| e.at(self.file.span))? {
                book.add(row);
            }
        }
        let mut changed = !existed;
        for source in self.from.iter().flat_map(|f| &f.0) {
            let source_path = input_path(interp, source).map_err(|e| e.at(self.from.span))?;
            for row in read_rows(&source_path).map_err(|e| e.at(self.from.span))? {
                changed |= book.add(row);
            }
            interp.note_input(&source_path);
        }
        // Each text is asked once, at its first occurrence.
        let mut pending: Vec<usize> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, text) in texts.iter().enumerate() {
            if book.get(text).is_none() && seen.insert(label_key(text)) {
                pending.push(i);
            }
        }
        if changed {
            store(interp, &book, &path, &shown_path).map_err(|e| e.at(self.file.span))?;
        }
        if !pending.is_empty() {
            say(
                interp,
                &format!(
                    "label: {} response(s) to label into {shown_path} ({} known); answer {KEYS}\n",
                    pending.len(),
                    texts.len() - pending.len()
                ),
            );
        }
        let mut answered = 0;
        'responses: for (k, &i) in pending.iter().enumerate() {
            let indented = texts[i].replace('\n', "\n    ");
            say(
                interp,
                &format!(
                    "\n[{}/{}] response {i}:\n    {indented}\nlabel ({KEYS}): ",
                    k + 1,
                    pending.len()
                ),
            );
            let answer = loop {
                let Some(line) = read_line()? else {
                    say(interp, "\n");
                    return Err(BebError::new(
                    ErrorKind::Io,
                    format!(
                        "the input ended after {answered} of {} responses to label; the answers so far are in {shown_path}",
                        pending.len()
                    ),
                )
                .at(self.call.span)
                .with_help("run again with the same file to go on: labelled responses are not asked again"));
                };
                if interp
                    .interrupt
                    .swap(false, std::sync::atomic::Ordering::SeqCst)
                {
                    return Err(BebError::new(ErrorKind::Interrupted, "interrupted"));
                }
                match parse_answer(&line) {
                    Some(answer) => break answer,
                    None => say(
                        interp,
                        &format!("{:?} is not an answer; {KEYS}: ", line.trim()),
                    ),
                }
            };
            match answer {
                Answer::Label(label) => {
                    book.add(Row {
                        index: i.to_string(),
                        text: texts[i].clone(),
                        label,
                    });
                    answered += 1;
                    store(interp, &book, &path, &shown_path).map_err(|e| e.at(self.file.span))?;
                }
                Answer::Skip => {}
                Answer::Stop => {
                    say(
                        interp,
                        &format!(
                            "label: stopped after {answered} of {}; the answers are in {shown_path}\n",
                            pending.len()
                        ),
                    );
                    break 'responses;
                }
            }
        }
        Ok(Value::list(
            texts
                .iter()
                .map(|t| book.get(t).map(Value::Num).unwrap_or(Value::None))
                .collect(),
        ))
    }
}

builtin! {
    /// A behavior scorer (for score, expect(..., behavior:) and sample(..., by:)) from a CSV
    /// file of labels with columns text and label, as label(...) writes: a response scores its
    /// label; a response not in the file is an error naming it. A relative path is looked up in
    /// the run folder first, then in the current folder.
    Labels = labels(path: Rc<str>) -> "scorer"
}

impl Labels {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let name = &*self.path;
        let path = input_path(interp, name).map_err(|e| e.at(self.path.span))?;
        let rows = read_rows(&path).map_err(|e| e.at(self.path.span))?;
        let mut book = Book::default();
        for row in rows {
            if let Some(earlier) = book.get(&row.text)
                && earlier != row.label
            {
                return Err(self.path.invalid(format!(
                    "{}: {:?} is labelled both {} and {}",
                    path.display(),
                    excerpt(&row.text),
                    crate::format::number(earlier),
                    crate::format::number(row.label)
                )));
            }
            book.add(row);
        }
        if book.rows.is_empty() {
            return Err(self
                .path
                .invalid(format!("{} has no labels", path.display())));
        }
        interp.note_input(&path);
        let (texts, labels) = book.rows.into_iter().map(|r| (r.text, r.label)).unzip();
        Ok(ScorerValue::value(Scorer::labels(
            name.to_string(),
            texts,
            labels,
        )))
    }
}
