//! Generation beyond single draws, to probe the paper's extensions on any model: best-of-n
//! sampling (Theorem 4; reached through `sample(..., best_of: n, by: behavior)`) and
//! conversations in which a user model and an assistant model take turns (Theorem 3).

use std::rc::Rc;

use crate::builtin;
use crate::error::{BebError, BebResult};
use crate::eval::builtins::neural::as_one_unit;
use crate::eval::interp::Interp;
use crate::eval::natives::{Arg, Behavior, FromArg, Mismatch, Native, Seed};
use crate::eval::value::{Table, Text, Value};
use crate::lm::neural::NeuralModel;
use crate::lm::{ModelRef, Unit};
use crate::measure::behavior::Scorer;
use crate::measure::conversation::{self, Frame, Setup, Side, UserContext};
use crate::measure::{self, MeasureError};
use crate::seed::Stream;
use crate::syntax::ast::Span;

pub const NATIVES: &[Native] = &[Conversation::NATIVE];

// ----- best-of-n -----

/// A `sample(..., best_of: n)` call, as `sample` hands it over.
pub struct BestOf<'a> {
    /// The model, seen through `unit:` and the sampling arguments.
    pub model: ModelRef,
    pub given: &'a [Unit],
    pub sentences: usize,
    /// How many texts to draw.
    pub draws: usize,
    /// n: how many candidates each draw chooses among (at least 1).
    pub candidates: usize,
    /// What judges the candidates (`by:`); none: the model's own scores.
    pub by: Arg<Option<Behavior>>,
    /// The call's stream.
    pub stream: &'a Stream,
}

/// The stream of candidate `j` of every draw: candidate 0 is the plain draw (so best_of: 1 is
/// plain sampling), and candidate j of draw i is index i of its own stream, so draw i is the
/// same whatever `count` is, and best-of-2n extends best-of-n with new candidates.
fn candidate_stream(stream: &Stream, j: usize) -> Stream {
    if j == 0 {
        stream.clone()
    } else {
        stream.child(&format!("candidate{j}"))
    }
}

/// What `by:` judges candidates with.
enum Judge {
    /// The model's own behavior scores, averaged over a candidate's units.
    Own(ModelRef),
    /// A scorer (likelihood_ratio, keywords, labels), applied to the whole candidate.
    Scorer(Rc<Scorer>, Span),
    /// A beb function of a text returning a number.
    Function(Value, Span),
}

impl Judge {
    fn new(by: Arg<Option<Behavior>>, model: &ModelRef) -> Judge {
        match by.value {
            None => Judge::Own(model.clone()),
            Some(Behavior::Scorer(scorer)) => Judge::Scorer(scorer, by.span),
            Some(Behavior::Function(f)) => Judge::Function(f, by.span),
        }
    }

    fn score(&mut self, interp: &mut Interp, text: &[Unit]) -> BebResult<f64> {
        match self {
            Judge::Own(model) => {
                if text.is_empty() {
                    return Err(BebError::value(
                        "a candidate of no units has no behavior score; sample at least one sentence",
                    ));
                }
                let mut total = 0.0;
                for unit in text {
                    let b = model
                        .behavior(unit)
                        .ok_or_else(|| MeasureError::MissingBehavior {
                            unit: unit.to_string(),
                            model: model.name().to_string(),
                        })
                        .map_err(|e| {
                            BebError::from(e).with_help(
                                "give `by:` a scorer (keywords(...), likelihood_ratio(...), labels(...)) or a function of a text",
                            )
                        })?;
                    total += b;
                }
                Ok(total / text.len() as f64)
            }
            Judge::Scorer(scorer, span) => scorer
                .score(&as_one_unit(text))
                .map_err(|e| BebError::from(e).at(*span)),
            Judge::Function(f, span) => {
                match interp.call_simple(f, vec![Value::text(text.to_vec())], *span)? {
                    Value::Num(x) => Ok(x),
                    Value::Bool(b) => Ok(if b { 1.0 } else { 0.0 }),
                    other => Err(BebError::type_error(format!(
                        "a `by:` function returns a number, found a {}",
                        other.type_name()
                    ))
                    .at(*span)),
                }
            }
        }
    }
}

/// `sample(..., best_of: n, by: behavior)`: each draw keeps the highest-scoring of n
/// candidates (ties: the lowest candidate index), the best-of-n sampling of Theorem 4. One
/// text per draw.
pub fn best_of(interp: &mut Interp, request: BestOf<'_>) -> BebResult<Vec<Value>> {
    let mut judge = Judge::new(request.by, &request.model);
    // Through the run's cache (and its progress bars), as plain sampling is.
    let model = interp.for_run(request.model);
    let mut best: Vec<Option<(f64, Vec<Unit>)>> = vec![None; request.draws];
    // Candidate j of every draw at once, so neural models sample them in batches.
    for j in 0..request.candidates {
        let texts = measure::sample_texts(
            model.as_ref(),
            request.given,
            request.sentences,
            request.draws,
            &candidate_stream(request.stream, j),
        )?;
        for (slot, text) in best.iter_mut().zip(texts) {
            let score = judge.score(interp, &text)?;
            if slot.as_ref().is_none_or(|(kept, _)| score > *kept) {
                *slot = Some((score, text));
            }
        }
    }
    Ok(best
        .into_iter()
        .map(|slot| {
            slot.map(|(_, text)| Value::text(text))
                .unwrap_or(Value::None)
        })
        .collect())
}

// ----- conversations -----

impl FromArg for UserContext {
    const TYPE: &'static str = "string";
    const EXPECTED: &'static str = "\"all\" or \"own\"";
    fn from_value(value: &Value, name: &str) -> Result<Self, Mismatch> {
        match value {
            Value::Str(s) if &**s == "all" => Ok(UserContext::All),
            Value::Str(s) if &**s == "own" => Ok(UserContext::Own),
            Value::Str(s) => Err(Mismatch::Invalid(format!(
                "{name} {s:?} is not \"all\" or \"own\""
            ))),
            _ => Err(Mismatch::Type),
        }
    }
}

/// The neural model behind a model (a mixture's first neural component), for its tokenizer.
fn neural_of(model: &ModelRef) -> Option<Rc<NeuralModel>> {
    if let Some(lm) = model.as_neural() {
        return Some(lm.model().clone());
    }
    model
        .as_mixture()?
        .components()
        .find_map(|(_, component, _)| neural_of(component))
}

/// A count that must be at least 1.
fn positive(n: &Arg<usize>) -> BebResult<usize> {
    if n.value == 0 {
        return Err(n.invalid(format!("`{}` must be at least 1", n.name)));
    }
    Ok(n.value)
}

builtin! {
    /// A conversation of `turns` turns after `given` (sec. 3.2, Theorem 3): each turn the user
    /// model says `user_sentences` units, conditioned on the whole conversation so far
    /// (user_context: "all") or on its own earlier turns only ("own"), then the assistant
    /// replies with `reply_sentences` units conditioned on everything so far. Returns {text,
    /// user_text, prompts, user_prompts, turns}: the whole conversation, the user's turns
    /// alone, for each turn t the conversation up to the user's turn t (what the assistant
    /// answered) and the same user text without the replies, and a table of the turns with
    /// their unit positions in `text`. Texts stay token ids end to end. template: "llama2",
    /// "chatml" or "plain" wraps the turns of neural models in that chat format, "model" in the
    /// assistant model's own template (`system:` is its system prompt).
    Conversation = conversation(
        user: ModelRef,
        assistant: ModelRef,
        turns: usize,
        user_sentences: usize = 1,
        reply_sentences: usize = 1,
        given: Rc<Text> = [],
        user_context: UserContext = "all",
        template: Option<Rc<str>> = none,
        system: Option<Rc<str>> = none,
        seed: Option<Seed> = none,
    ) -> "record"
}

impl Conversation {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        self.assistant.same_vocabulary_as(&self.user).map_err(|e| {
            e.with_help("a conversation is one text: both models must read the same units")
        })?;
        let setup = Setup {
            turns: positive(&self.turns)?,
            user_units: positive(&self.user_sentences)?,
            reply_units: positive(&self.reply_sentences)?,
            user_context: self.user_context.value,
            frame: self.frame()?,
        };
        let stream = interp.seed_stream(&self.call, self.seed.as_ref());
        let user = interp.for_run(self.user.value.clone());
        let assistant = interp.for_run(self.assistant.value.clone());
        let progress = interp.progress(setup.turns as u64, "conversation");
        let dialogue = conversation::converse(
            user.as_ref(),
            assistant.as_ref(),
            &self.given.units,
            &setup,
            &stream,
            &mut || progress.inc(1),
        )
        .map_err(|(side, e)| {
            let span = match side {
                Side::User => self.user.span,
                Side::Assistant => self.assistant.span,
            };
            BebError::from(e).at(span)
        })?;
        progress.finish();
        let texts = |ts: Vec<Vec<Unit>>| Value::list(ts.into_iter().map(Value::text).collect());
        let rows = dialogue
            .turns
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                vec![
                    Value::Num((i + 1) as f64),
                    Value::text(t.user),
                    Value::text(t.reply),
                    Value::Num(t.user_start as f64),
                    Value::Num(t.reply_start as f64),
                    Value::Num(t.end as f64),
                ]
            })
            .collect();
        let table = Table {
            columns: ["turn", "user", "reply", "user_start", "reply_start", "end"]
                .into_iter()
                .map(Rc::from)
                .collect(),
            rows,
        };
        Ok(Value::record(vec![
            ("text", Value::text(dialogue.text)),
            ("user_text", Value::text(dialogue.user_text)),
            ("prompts", texts(dialogue.prompts)),
            ("user_prompts", texts(dialogue.user_prompts)),
            ("turns", Value::Table(Rc::new(table))),
        ]))
    }

    /// The chat template's frame around the turns, when `template:` is given.
    fn frame(&self) -> BebResult<Option<Frame>> {
        let Some(name) = &self.template.value else {
            if self.system.is_some() {
                return Err(self
                    .system
                    .invalid("a system prompt belongs to a chat template: give `template:` too"));
            }
            return Ok(None);
        };
        let model = neural_of(&self.assistant)
            .or_else(|| neural_of(&self.user))
            .ok_or_else(|| {
                self.template.invalid(
                    "a chat template is made of tokens: it needs neural models (load(...))",
                )
            })?;
        let template = model
            .chat_template(name)
            .map_err(|e| BebError::from(e).at(self.template.span))?;
        let frame = Frame::new(&template, self.system.as_deref(), &model)
            .map_err(|e| BebError::from(e).at(self.template.span))?;
        Ok(Some(frame))
    }
}
