//! Datasets: persona statement files, plain text and JSONL lists of statements, seeded
//! train/held-out splits, and the training texts a finetune builds from statements.

use std::rc::Rc;

use crate::builtin;
use crate::data::{self, texts};
use crate::error::{BebError, BebResult};
use crate::eval::interp::Interp;
use crate::eval::natives::{Arg, Elements, List, ModelPath, Native, Seed};
use crate::eval::value::Value;
use crate::lm::neural::chat;

pub const NATIVES: &[Native] = &[
    Persona::NATIVE,
    Lines::NATIVE,
    Jsonl::NATIVE,
    Split::NATIVE,
    TrainingTexts::NATIVE,
];

builtin! {
    /// Read a persona file of Anthropic's model-written evaluations (one JSON object per line with `statement` and `answer_matching_behavior`): {behavior, matching, not_matching}, the statements that show the file's behavior (answer_matching_behavior is " Yes") and those that do not, each in file order. The side read from that field, never from row order. A path starting with $BEB_SHARED reads the shared folder.
    Persona = persona(path: ModelPath) -> "record"
}

builtin! {
    /// The non-blank lines of a text file (one statement per line), trailing whitespace removed.
    Lines = lines(path: ModelPath) -> "list"
}

builtin! {
    /// The string field `field` of every row of a JSONL file (one JSON object per line; blank lines skipped).
    Jsonl = jsonl(path: ModelPath, field: Rc<str> = "text") -> "list"
}

builtin! {
    /// Split a list into {train, held_out}: round(held_out * len) elements chosen uniformly at random from the seed's stream are held out; both parts keep the list's order.
    Split = split(xs: List, held_out: f64 = 0.2, seed: Option<Seed> = none) -> "record"
}

builtin! {
    /// The training texts finetune builds from statements (the paper's appendix J): groups of `group` consecutive statements, each group in all its cyclic rotations (leftovers after the last full group dropped). format "lines": each statement followed by the separator; "inst": [INST]a.[/INST]b.[INST]c.[/INST]; "llama2", "chatml", "plain": the statements as alternating user and assistant turns of that chat template (shown here as strings, <s> and </s> standing for the special tokens).
    TrainingTexts = training_texts(statements: Elements, format: Rc<str> = "lines", separator: Rc<str> = ".\n", group: usize = 3) -> "list"
}

/// The data file a builtin reads, if it may be read, recorded in the run's manifest.
fn note_path(interp: &mut Interp, path: &Arg<ModelPath>) -> BebResult<std::path::PathBuf> {
    let file = interp.readable(path, path.span)?;
    interp.note_input(&file);
    Ok(file)
}

fn strings(items: Vec<String>) -> Value {
    Value::list(items.iter().map(|s| Value::str(s)).collect())
}

impl Persona {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let path = note_path(interp, &self.path)?;
        let p = data::read_persona(&path).map_err(|e| BebError::from(e).at(self.path.span))?;
        Ok(Value::record(vec![
            ("behavior", Value::str(&p.behavior)),
            ("matching", strings(p.matching)),
            ("not_matching", strings(p.not_matching)),
        ]))
    }
}

impl Lines {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let path = note_path(interp, &self.path)?;
        let lines = data::read_lines(&path).map_err(|e| BebError::from(e).at(self.path.span))?;
        Ok(strings(lines))
    }
}

impl Jsonl {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let path = note_path(interp, &self.path)?;
        let items = data::read_jsonl_field(&path, &self.field)
            .map_err(|e| BebError::from(e).at(self.path.span))?;
        Ok(strings(items))
    }
}

impl Split {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let held_out = *self.held_out;
        if !(0.0..=1.0).contains(&held_out) {
            return Err(self.held_out.invalid(format!(
                "held_out is a fraction in [0, 1], found {held_out}"
            )));
        }
        let mut rng = interp.seed_stream(&self.call, self.seed.as_ref()).rng();
        let (train, test) = data::split(&self.xs.0, held_out, &mut rng);
        Ok(Value::record(vec![
            ("train", Value::list(train)),
            ("held_out", Value::list(test)),
        ]))
    }
}

/// The `format:`, `separator:` and `group:` arguments of training texts, checked.
pub fn training_options(
    format: &Arg<Rc<str>>,
    separator: &Arg<Rc<str>>,
    group: &Arg<usize>,
) -> BebResult<(texts::Format, String, usize)> {
    if &*format.value == chat::MODEL {
        return Err(format.invalid(
            "the model's own template needs the model: finetune(model, statements, format: \"model\")",
        ));
    }
    let parsed = texts::Format::parse(format).ok_or_else(|| {
        format.invalid(format!(
            "format {:?} is not one of lines, inst, {}",
            format.value,
            chat::TEMPLATES.join(", ")
        ))
    })?;
    if **group == 0 {
        return Err(group.invalid("group must be at least 1"));
    }
    Ok((parsed, separator.to_string(), **group))
}

impl TrainingTexts {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        let statements = self.statements.strings(&self.call)?;
        let (format, separator, group) =
            training_options(&self.format, &self.separator, &self.group)?;
        let mut out = Vec::new();
        for t in texts::build(&statements, group, &format, &separator) {
            out.push(match t {
                texts::TrainingText::Plain(s) => s,
                texts::TrainingText::Turns(template, turns) => {
                    let pieces = chat::render(&template, None, &turns)
                        .map_err(|e| BebError::from(e).at(self.statements.span))?;
                    chat::to_string(&pieces)
                }
            });
        }
        Ok(strings(out))
    }
}
