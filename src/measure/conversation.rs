//! Conversations between two models (sec. 3.2, Theorem 3): a user model and an assistant
//! model take turns, each conditioned on what it sees of the conversation so far, optionally
//! framed by a chat template. Texts stay token ids end to end.

use std::rc::Rc;

use crate::lm::neural::{NeuralModel, chat};
use crate::lm::{Detokenize, LanguageModel, ModelError, TokenRun, Unit};
use crate::seed::Stream;

use super::{MeasureError, sample_texts};

/// What the user model is conditioned on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum UserContext {
    /// The whole conversation so far, replies included.
    All,
    /// The user's own earlier turns only (its text is then one draw of the user model, the
    /// prompt-only comparison of Theorem 3).
    Own,
}

/// The pieces of a chat template around the turns, as token-id units: what goes before the
/// first user turn, between a user turn and the reply, and between a reply and the next user
/// turn. Taken from `chat::render` with placeholder turns, so the formats are chat()'s.
pub struct Frame {
    pub first_user: Vec<Unit>,
    pub to_assistant: Vec<Unit>,
    pub to_user: Vec<Unit>,
}

const USER_MARK: char = '\u{E000}';
const REPLY_MARK: char = '\u{E001}';

impl Frame {
    pub fn new(
        template: &chat::Template,
        system: Option<&str>,
        model: &NeuralModel,
    ) -> Result<Frame, ModelError> {
        let turns: Vec<String> = [USER_MARK, REPLY_MARK, USER_MARK, REPLY_MARK, USER_MARK]
            .iter()
            .map(|c| c.to_string())
            .collect();
        let pieces = chat::render(template, system, &turns)?;
        // Cut the rendered pieces at the placeholders: segment k lies before turn k.
        let mut segments: Vec<Vec<chat::Piece>> = vec![Vec::new()];
        for piece in pieces {
            match piece {
                chat::Piece::Text(text) => {
                    let mut rest = text.as_str();
                    while let Some(at) = rest.find([USER_MARK, REPLY_MARK]) {
                        push_text(segments.last_mut(), &rest[..at]);
                        segments.push(Vec::new());
                        // Both marks are 3 bytes in UTF-8.
                        rest = &rest[at + USER_MARK.len_utf8()..];
                    }
                    push_text(segments.last_mut(), rest);
                }
                other => {
                    if let Some(last) = segments.last_mut() {
                        last.push(other);
                    }
                }
            }
        }
        if segments.len() != turns.len() + 1 {
            return Err(ModelError::Invalid(format!(
                "the {} template did not keep the turns apart",
                template.name()
            )));
        }
        let decoder: Rc<dyn Detokenize> = model.tokenizer().clone();
        let units = |segment: &[chat::Piece]| -> Result<Vec<Unit>, ModelError> {
            let ids = chat::to_ids(
                segment,
                model.tokenizer(),
                model.bos(),
                model.eos().first().copied(),
            )?;
            Ok(if ids.is_empty() {
                Vec::new()
            } else {
                vec![Unit::Tokens(TokenRun::new(ids, Some(decoder.clone())))]
            })
        };
        Ok(Frame {
            first_user: units(&segments[0])?,
            to_assistant: units(&segments[1])?,
            to_user: units(&segments[2])?,
        })
    }
}

/// Add a template's text to a segment. Spaces at either end are left to the turns'
/// own tokens (a SentencePiece tokenizer marks a word's leading space itself), newlines kept.
fn push_text(segment: Option<&mut Vec<chat::Piece>>, text: &str) {
    let text = text.trim_matches(' ');
    if let Some(segment) = segment
        && !text.is_empty()
    {
        segment.push(chat::Piece::Text(text.to_string()));
    }
}

/// How a conversation is run.
pub struct Setup {
    pub turns: usize,
    /// Units the user says per turn.
    pub user_units: usize,
    /// Units the assistant replies per turn.
    pub reply_units: usize,
    pub user_context: UserContext,
    pub frame: Option<Frame>,
}

/// One turn: what was said, and where it lies in the whole text (unit positions).
pub struct Turn {
    pub user: Vec<Unit>,
    pub reply: Vec<Unit>,
    pub user_start: usize,
    pub reply_start: usize,
    pub end: usize,
}

/// A finished conversation.
pub struct Dialogue {
    /// The whole conversation (with the template's frame).
    pub text: Vec<Unit>,
    /// The user's turns alone.
    pub user_text: Vec<Unit>,
    /// For each turn, the conversation up to the user's turn: what the assistant answered.
    pub prompts: Vec<Vec<Unit>>,
    /// For each turn, the user's text without the replies.
    pub user_prompts: Vec<Vec<Unit>>,
    pub turns: Vec<Turn>,
}

/// Which side of a conversation failed.
pub enum Side {
    User,
    Assistant,
}

/// Run a conversation after `given`; turn t draws the user's units from `stream/user{t}` and
/// the reply from `stream/reply{t}`. `after_turn` is called once a turn is done.
pub fn converse(
    user: &dyn LanguageModel,
    assistant: &dyn LanguageModel,
    given: &[Unit],
    setup: &Setup,
    stream: &Stream,
    after_turn: &mut dyn FnMut(),
) -> Result<Dialogue, (Side, MeasureError)> {
    // Each turn keeps its text, two prompts and a record of itself.
    let each = 3 * std::mem::size_of::<Vec<Unit>>() + std::mem::size_of::<Turn>() + 64;
    crate::budget::check(
        &format!("a conversation of {} turns", setup.turns),
        setup.turns as u64,
        each as u64,
    )
    .map_err(|e| (Side::User, MeasureError::Invalid(e)))?;
    let frame = setup.frame.as_ref();
    let mut text: Vec<Unit> = given.to_vec();
    let mut user_text: Vec<Unit> = given.to_vec();
    // The user's own turns as one message (what it sees with user_context: "own").
    let mut own: Vec<Unit> = given.to_vec();
    if let Some(f) = frame {
        own.extend(f.first_user.iter().cloned());
    }
    let mut dialogue = Dialogue {
        text: Vec::new(),
        user_text: Vec::new(),
        prompts: Vec::with_capacity(setup.turns),
        user_prompts: Vec::with_capacity(setup.turns),
        turns: Vec::with_capacity(setup.turns),
    };
    for t in 1..=setup.turns {
        if let Some(f) = frame {
            let scaffold = if t == 1 { &f.first_user } else { &f.to_user };
            text.extend(scaffold.iter().cloned());
        }
        let context = match setup.user_context {
            UserContext::All => &text,
            UserContext::Own => &own,
        };
        let asked = one_draw(
            user,
            context,
            setup.user_units,
            &stream.child(&format!("user{t}")),
        )
        .map_err(|e| (Side::User, e))?;
        let user_start = text.len();
        text.extend(asked.iter().cloned());
        user_text.extend(asked.iter().cloned());
        own.extend(asked.iter().cloned());
        let mut alone = own.clone();
        if let Some(f) = frame {
            text.extend(f.to_assistant.iter().cloned());
            alone.extend(f.to_assistant.iter().cloned());
        }
        dialogue.prompts.push(text.clone());
        dialogue.user_prompts.push(alone);
        let reply_start = text.len();
        let reply = one_draw(
            assistant,
            &text,
            setup.reply_units,
            &stream.child(&format!("reply{t}")),
        )
        .map_err(|e| (Side::Assistant, e))?;
        text.extend(reply.iter().cloned());
        dialogue.turns.push(Turn {
            user: asked,
            reply,
            user_start,
            reply_start,
            end: text.len(),
        });
        after_turn();
    }
    dialogue.text = text;
    dialogue.user_text = user_text;
    Ok(dialogue)
}

fn one_draw(
    model: &dyn LanguageModel,
    context: &[Unit],
    units: usize,
    stream: &Stream,
) -> Result<Vec<Unit>, MeasureError> {
    let mut texts = sample_texts(model, context, units, 1, stream)?;
    // Invariant: sample_texts returns one text per requested draw.
    Ok(texts.pop().unwrap_or_default())
}
