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
//! * `model`: the model's own Jinja template (`chat_template` in its tokenizer_config.json or
//!   chat_template.jinja, or GGUF metadata `tokenizer.chat_template`), rendered with minijinja
//!   as transformers' `apply_chat_template` renders it, so a prompt is built exactly as the
//!   model was trained. Special tokens it writes (`<|im_start|>`, `<s>`) become their ids when
//!   tokenized; a leading BOS is dropped, since the model reads its own before every text.
//!
//! Turns alternate user, assistant, user, ...; contents are trimmed (as Meta's code does).

use std::path::Path;
use std::sync::Arc;

use crate::lm::{ModelError, ModelResult};

use super::tokenizer::TokenizerHandle;

/// The built-in template names.
pub const TEMPLATES: &[&str] = &["llama2", "chatml", "plain"];

/// The name that picks the model's own template.
pub const MODEL: &str = "model";

/// Every name a script may give, for messages.
pub fn names() -> String {
    format!("{}, {MODEL}", TEMPLATES.join(", "))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Template {
    Llama2,
    ChatMl,
    Plain,
    /// A model's own template.
    Model(Arc<ModelTemplate>),
}

/// A model's chat template with the special-token strings it is rendered with.
#[derive(Debug, PartialEq, Eq)]
pub struct ModelTemplate {
    pub source: String,
    pub bos_token: String,
    pub eos_token: String,
    /// Where it was read, for messages.
    pub origin: String,
    /// The model reads `bos_token` before every text by itself, so a leading one in the
    /// rendering is dropped rather than doubled.
    pub strip_bos: bool,
}

/// Where a model's own template comes from: the Jinja source and the file or key it was read
/// from, or why there is none (naming where beb looked).
pub type TemplateSource = Result<(String, String), String>;

/// The chat template of a Hugging Face folder: `chat_template.jinja` (newer transformers),
/// else `chat_template` in `tokenizer_config.json` (a string, or a list of named templates of
/// which "default" is taken). Also returns the config's `bos_token` and `eos_token` (a string
/// or an `{content: ...}` object), when it has them.
pub fn template_in_folder(dir: &Path) -> (TemplateSource, Option<String>, Option<String>) {
    let config_path = dir.join("tokenizer_config.json");
    let parsed: Option<Result<serde_json::Value, serde_json::Error>> =
        std::fs::read_to_string(&config_path)
            .ok()
            .map(|text| serde_json::from_str(&text));
    let config = parsed.as_ref().and_then(|p| p.as_ref().ok());
    let token = |key: &str| -> Option<String> {
        let v = config?.get(key)?;
        v.as_str()
            .or_else(|| v.get("content").and_then(|c| c.as_str()))
            .map(str::to_string)
    };
    let (bos, eos) = (token("bos_token"), token("eos_token"));
    let jinja = dir.join("chat_template.jinja");
    if let Ok(text) = std::fs::read_to_string(&jinja) {
        return (Ok((text, jinja.display().to_string())), bos, eos);
    }
    let shown = config_path.display();
    let source = match (config_path.is_file(), &parsed) {
        (false, _) => Err(format!("there is no {shown}")),
        (true, None) => Err(format!("cannot read {shown}")),
        (true, Some(Err(e))) => Err(format!(
            "{shown} is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        )),
        (true, Some(Ok(c))) => match c.get("chat_template") {
            Some(serde_json::Value::String(t)) => Ok((t.clone(), shown.to_string())),
            Some(serde_json::Value::Array(named)) => named
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template")?.as_str())
                .map(|t| (t.to_string(), shown.to_string()))
                .ok_or_else(|| format!("{shown} lists chat templates but none named \"default\"")),
            _ => Err(format!("{shown} has no `chat_template`")),
        },
    };
    (source, bos, eos)
}

/// A Jinja mapping of named values.
fn map<const N: usize>(pairs: [(&str, minijinja::Value); N]) -> minijinja::Value {
    let map: std::collections::BTreeMap<String, minijinja::Value> =
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    minijinja::Value::from(map)
}

impl ModelTemplate {
    /// The template with the special tokens of the model that reads it: `bos_token` and
    /// `eos_token` as given (by tokenizer_config.json), else the vocabulary's entries for the
    /// model's BOS and EOS ids.
    pub fn new(
        (source, origin): (String, String),
        tokenizer: &TokenizerHandle,
        bos: Option<u32>,
        eos: Option<u32>,
        tokens: (Option<String>, Option<String>),
    ) -> ModelTemplate {
        let text = |given: Option<String>, id: Option<u32>| {
            given
                .or_else(|| id.and_then(|i| tokenizer.token_text(i)))
                .unwrap_or_default()
        };
        let bos_token = text(tokens.0, bos);
        let eos_token = text(tokens.1, eos);
        let strip_bos = bos.is_some() && tokenizer.token_id(&bos_token) == bos;
        ModelTemplate {
            source,
            bos_token,
            eos_token,
            origin,
            strip_bos,
        }
    }

    /// The template rendered for `messages` (role, content), as transformers renders it:
    /// trim_blocks and lstrip_blocks, Python string methods, `raise_exception`.
    pub fn render(
        &self,
        messages: &[(&str, &str)],
        add_generation_prompt: bool,
    ) -> ModelResult<String> {
        use minijinja::value::Value;
        let mut env = minijinja::Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| self.error(&e))?;
        env.set_syntax(syntax);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<Value, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    message,
                ))
            },
        );
        let template = env
            .template_from_str(&self.source)
            .map_err(|e| self.error(&e))?;
        let messages: Vec<Value> = messages
            .iter()
            .map(|(role, content)| {
                map([
                    ("role", Value::from(*role)),
                    ("content", Value::from(*content)),
                ])
            })
            .collect();
        let context = map([
            ("messages", Value::from(messages)),
            ("bos_token", Value::from(self.bos_token.as_str())),
            ("eos_token", Value::from(self.eos_token.as_str())),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
        ]);
        template.render(context).map_err(|e| self.error(&e))
    }

    fn error(&self, e: &minijinja::Error) -> ModelError {
        let mut message = format!("the chat template of {} failed: {e}", self.origin);
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            message += &format!(": {cause}");
            source = cause.source();
        }
        ModelError::Invalid(message)
    }
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
    /// A built-in template by name (`model` needs the model: `NeuralModel::chat_template`).
    pub fn parse(name: &str) -> Option<Template> {
        match name {
            "llama2" => Some(Template::Llama2),
            "chatml" => Some(Template::ChatMl),
            "plain" => Some(Template::Plain),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Template::Llama2 => "llama2",
            Template::ChatMl => "chatml",
            Template::Plain => "plain",
            Template::Model(_) => MODEL,
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
    template: &Template,
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
        Template::Model(model) => {
            let mut messages = Vec::new();
            if let Some(s) = system {
                messages.push(("system", s));
            }
            for (i, t) in turns.iter().enumerate() {
                messages.push((if i % 2 == 0 { "user" } else { "assistant" }, *t));
            }
            let text = model.render(&messages, turns.len() % 2 == 1)?;
            let text = match text.strip_prefix(model.bos_token.as_str()) {
                Some(rest) if model.strip_bos && !model.bos_token.is_empty() => rest.to_string(),
                _ => text,
            };
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

/// The pieces as token ids: each text piece tokenized on its own (special tokens written in it,
/// such as `<|im_start|>`, become their ids), BOS and EOS as the model's ids.
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
            &Template::Llama2,
            Some("Be nice."),
            &turns(&["Hi ", "Hello.", "Who are you?"]),
        )
        .unwrap_or_default();
        assert_eq!(
            to_string(&pieces),
            "[INST] <<SYS>>\nBe nice.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] Who are you? [/INST]"
        );
        let plain = render(&Template::Llama2, None, &turns(&["Hi"])).unwrap_or_default();
        assert_eq!(to_string(&plain), "[INST] Hi [/INST]");
    }

    #[test]
    fn chatml_and_plain() {
        let t = turns(&["a", "b", "c"]);
        let c = render(&Template::ChatMl, Some("s"), &t).unwrap_or_default();
        assert_eq!(
            to_string(&c),
            "<|im_start|>system\ns<|im_end|>\n<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n<|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\n"
        );
        let p = render(&Template::Plain, None, &t[..2]).unwrap_or_default();
        assert_eq!(to_string(&p), "User: a\nAssistant: b\n");
        assert!(render(&Template::Plain, None, &[]).is_err());
    }
}
