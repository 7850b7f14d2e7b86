//! Chat templates: turns of a conversation as the text a chat model was trained on, kept as
//! token ids (special tokens are ids, never re-tokenized strings).
//!
//! * `llama2`: Meta's Llama 2 chat format, as its reference code builds it: each
//!   (user, assistant) pair is `[BOS] "[INST] {user} [/INST] {assistant} " [EOS]`, a final user
//!   turn is `[BOS] "[INST] {user} [/INST]"`, each piece tokenized on its own; a system prompt
//!   goes inside the first user turn as `"<<SYS>>\n{system}\n<</SYS>>\n\n"`. The first BOS is
//!   the one the model reads before every text.
//! * `chatml`: `<|im_start|>{role}\n{content}<|im_end|>\n` per turn (system first), ending with
//!   `<|im_start|>assistant\n` when the last turn is the user's.
//! * `plain`: `System: ...\n\nUser: ...\nAssistant: ...\n`, ending with `Assistant:` when the
//!   last turn is the user's: for models without a chat format.
//!
//! Turns alternate user, assistant, user, ...; contents are trimmed (as Meta's code does).

use crate::lm::{ModelError, ModelResult};

use super::tokenizer::TokenizerHandle;

/// The template names.
pub const TEMPLATES: &[&str] = &["llama2", "chatml", "plain"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Template {
    Llama2,
    ChatMl,
    Plain,
}

/// One training text: a string, or the turns of a conversation for a chat template. It lives
/// here, beside the templates it names, so that training (in `lm`) never depends on `data`,
/// which builds these texts from statements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrainingText {
    Plain(String),
    Turns(Template, Vec<String>),
}

impl Template {
    pub fn parse(name: &str) -> Option<Template> {
        match name {
            "llama2" => Some(Template::Llama2),
            "chatml" => Some(Template::ChatMl),
            "plain" => Some(Template::Plain),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Template::Llama2 => "llama2",
            Template::ChatMl => "chatml",
            Template::Plain => "plain",
        }
    }
}

/// A piece of a rendered conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Bos,
    Eos,
}

/// The pieces of a conversation (without the leading BOS the model adds itself).
pub fn render(
    template: Template,
    system: Option<&str>,
    turns: &[String],
) -> ModelResult<Vec<Piece>> {
    if turns.is_empty() {
        return Err(ModelError::Invalid(
            "a conversation needs at least one turn".into(),
        ));
    }
    let turns: Vec<&str> = turns.iter().map(|t| t.trim()).collect();
    let system = system.map(str::trim).filter(|s| !s.is_empty());
    let mut out = Vec::new();
    match template {
        Template::Llama2 => {
            for (k, pair) in turns.chunks(2).enumerate() {
                let user = match (k, system) {
                    (0, Some(s)) => format!("<<SYS>>\n{s}\n<</SYS>>\n\n{}", pair[0]),
                    _ => pair[0].to_string(),
                };
                if k > 0 {
                    out.push(Piece::Bos);
                }
                match pair.get(1) {
                    Some(answer) => {
                        out.push(Piece::Text(format!("[INST] {user} [/INST] {answer} ")));
                        out.push(Piece::Eos);
                    }
                    None => out.push(Piece::Text(format!("[INST] {user} [/INST]"))),
                }
            }
        }
        Template::ChatMl => {
            let mut text = String::new();
            if let Some(s) = system {
                text += &format!("<|im_start|>system\n{s}<|im_end|>\n");
            }
            for (i, t) in turns.iter().enumerate() {
                let role = if i % 2 == 0 { "user" } else { "assistant" };
                text += &format!("<|im_start|>{role}\n{t}<|im_end|>\n");
            }
            if turns.len() % 2 == 1 {
                text += "<|im_start|>assistant\n";
            }
            out.push(Piece::Text(text));
        }
        Template::Plain => {
            let mut text = String::new();
            if let Some(s) = system {
                text += &format!("System: {s}\n\n");
            }
            for (i, t) in turns.iter().enumerate() {
                let role = if i % 2 == 0 { "User" } else { "Assistant" };
                text += &format!("{role}: {t}\n");
            }
            if turns.len() % 2 == 1 {
                text += "Assistant:";
            }
            out.push(Piece::Text(text));
        }
    }
    Ok(out)
}

/// The pieces as one string, with BOS and EOS written as `<s>` and `</s>`.
pub fn to_string(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => t.as_str(),
            Piece::Bos => "<s>",
            Piece::Eos => "</s>",
        })
        .collect()
}

/// The pieces as token ids: each text piece tokenized on its own, BOS and EOS as the model's
/// ids.
pub fn to_ids(
    pieces: &[Piece],
    tokenizer: &TokenizerHandle,
    bos: Option<u32>,
    eos: Option<u32>,
) -> ModelResult<Vec<u32>> {
    let mut ids = Vec::new();
    for p in pieces {
        match p {
            Piece::Text(t) => ids.extend(tokenizer.encode(t)?),
            Piece::Bos => ids.push(bos.ok_or_else(|| {
                ModelError::Invalid(
                    "the model has no beginning-of-sequence token for the llama2 chat format"
                        .into(),
                )
            })?),
            Piece::Eos => ids.push(eos.ok_or_else(|| {
                ModelError::Invalid(
                    "the model has no end-of-sequence token for the llama2 chat format".into(),
                )
            })?),
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turns(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn llama2_matches_the_reference_format() {
        let pieces = render(
            Template::Llama2,
            Some("Be nice."),
            &turns(&["Hi ", "Hello.", "Who are you?"]),
        )
        .unwrap_or_default();
        assert_eq!(
            to_string(&pieces),
            "[INST] <<SYS>>\nBe nice.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] Who are you? [/INST]"
        );
        let plain = render(Template::Llama2, None, &turns(&["Hi"])).unwrap_or_default();
        assert_eq!(to_string(&plain), "[INST] Hi [/INST]");
    }

    #[test]
    fn chatml_and_plain() {
        let t = turns(&["a", "b", "c"]);
        let c = render(Template::ChatMl, Some("s"), &t).unwrap_or_default();
        assert_eq!(
            to_string(&c),
            "<|im_start|>system\ns<|im_end|>\n<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n<|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\n"
        );
        let p = render(Template::Plain, None, &t[..2]).unwrap_or_default();
        assert_eq!(to_string(&p), "User: a\nAssistant: b\n");
        assert!(render(Template::Plain, None, &[]).is_err());
    }
}
