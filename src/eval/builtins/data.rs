//! Datasets: persona statement files, plain text and JSONL lists of statements, seeded
//! train/held-out splits, and the training texts a finetune builds from statements.

use crate::data::{self, texts};
use crate::error::BebResult;
use crate::eval::builtins::neural::resolve;
use crate::eval::interp::Interp;
use crate::eval::natives::{Args, Decl, Native};
use crate::eval::value::Value;
use crate::lm::neural::chat;

pub const NATIVES: &[Native] = &[
    Native {
        decl: Decl::Legacy("persona(path: string) -> record"),
        doc: "Read a persona file of Anthropic's model-written evaluations (one JSON object per line with `statement` and `answer_matching_behavior`): {behavior, matching, not_matching}, the statements that show the file's behavior (answer_matching_behavior is \" Yes\") and those that do not, each in file order. The side read from that field, never from row order. A path starting with $BEB_SHARED reads the shared folder.",
        func: persona_fn,
    },
    Native {
        decl: Decl::Legacy("lines(path: string) -> list"),
        doc: "The non-blank lines of a text file (one statement per line), trailing whitespace removed.",
        func: lines_fn,
    },
    Native {
        decl: Decl::Legacy("jsonl(path: string, field: string = \"text\") -> list"),
        doc: "The string field `field` of every row of a JSONL file (one JSON object per line; blank lines skipped).",
        func: jsonl_fn,
    },
    Native {
        decl: Decl::Legacy(
            "split(xs: list, held_out: number = 0.2, seed: int | string = none) -> record",
        ),
        doc: "Split a list into {train, held_out}: round(held_out * len) elements chosen uniformly at random from the seed's stream are held out; both parts keep the list's order.",
        func: split_fn,
    },
    Native {
        decl: Decl::Legacy(
            "training_texts(statements: list, format: string = \"lines\", separator: string = \".\\n\", group: int = 3) -> list",
        ),
        doc: "The training texts finetune builds from statements (the paper's appendix J): groups of `group` consecutive statements, each group in all its cyclic rotations (leftovers after the last full group dropped). format \"lines\": each statement followed by the separator; \"inst\": [INST]a.[/INST]b.[INST]c.[/INST]; \"llama2\", \"chatml\", \"plain\": the statements as alternating user and assistant turns of that chat template (shown here as strings, <s> and </s> standing for the special tokens).",
        func: training_texts_fn,
    },
];

/// The data file a builtin reads, recorded in the run's manifest.
fn path_arg(interp: &mut Interp, args: &Args) -> BebResult<std::path::PathBuf> {
    let path = resolve(&args.string("path")?);
    interp.note_input(&path);
    Ok(path)
}

fn strings(items: Vec<String>) -> Value {
    Value::list(items.iter().map(|s| Value::str(s)).collect())
}

fn persona_fn(interp: &mut Interp, args: &Args) -> BebResult<Value> {
    let path = path_arg(interp, args)?;
    let p = data::read_persona(&path)
        .map_err(|e| crate::error::BebError::from(e).at(args.span("path")))?;
    Ok(Value::record(vec![
        ("behavior", Value::str(&p.behavior)),
        ("matching", strings(p.matching)),
        ("not_matching", strings(p.not_matching)),
    ]))
}

fn lines_fn(interp: &mut Interp, args: &Args) -> BebResult<Value> {
    let path = path_arg(interp, args)?;
    let lines = data::read_lines(&path)
        .map_err(|e| crate::error::BebError::from(e).at(args.span("path")))?;
    Ok(strings(lines))
}

fn jsonl_fn(interp: &mut Interp, args: &Args) -> BebResult<Value> {
    let path = path_arg(interp, args)?;
    let field = match args.get("field") {
        None => "text".to_string(),
        Some(_) => args.string("field")?.to_string(),
    };
    let items = data::read_jsonl_field(&path, &field)
        .map_err(|e| crate::error::BebError::from(e).at(args.span("path")))?;
    Ok(strings(items))
}

fn split_fn(interp: &mut Interp, args: &Args) -> BebResult<Value> {
    let xs = args.list("xs")?;
    let held_out = args.opt_num("held_out")?.unwrap_or(0.2);
    if !(0.0..=1.0).contains(&held_out) {
        return Err(args.invalid(
            "held_out",
            format!("held_out is a fraction in [0, 1], found {held_out}"),
        ));
    }
    let mut rng = interp.stream(args)?.rng();
    let (train, test) = data::split(&xs, held_out, &mut rng);
    Ok(Value::record(vec![
        ("train", Value::list(train)),
        ("held_out", Value::list(test)),
    ]))
}

/// A list of strings argument.
pub fn string_list(args: &Args, name: &str) -> BebResult<Vec<String>> {
    args.list(name)?
        .into_iter()
        .map(|v| match v {
            Value::Str(s) => Ok(s.to_string()),
            _ => Err(args.wrong_type(name, "a list of strings")),
        })
        .collect()
}

/// The `format:`, `separator:` and `group:` arguments of training texts.
pub fn text_options(args: &Args) -> BebResult<(texts::Format, String, usize)> {
    let format = match args.get("format") {
        None => texts::Format::Lines,
        Some(_) => {
            let name = args.string("format")?;
            texts::Format::parse(&name).ok_or_else(|| {
                args.invalid(
                    "format",
                    format!(
                        "format {name:?} is not one of lines, inst, {}",
                        chat::TEMPLATES.join(", ")
                    ),
                )
            })?
        }
    };
    let separator = match args.get("separator") {
        None => ".\n".to_string(),
        Some(_) => args.string("separator")?.to_string(),
    };
    let group = args.opt_count("group")?.unwrap_or(3);
    if group == 0 {
        return Err(args.invalid("group", "group must be at least 1"));
    }
    Ok((format, separator, group))
}

fn training_texts_fn(_: &mut Interp, args: &Args) -> BebResult<Value> {
    let statements = string_list(args, "statements")?;
    let (format, separator, group) = text_options(args)?;
    let mut out = Vec::new();
    for t in texts::build(&statements, group, &format, &separator) {
        out.push(match t {
            texts::TrainingText::Plain(s) => s,
            texts::TrainingText::Turns(template, turns) => {
                let pieces = chat::render(template, None, &turns)
                    .map_err(|e| crate::error::BebError::from(e).at(args.span("statements")))?;
                chat::to_string(&pieces)
            }
        });
    }
    Ok(strings(out))
}
