//! Reading checkpoints: the format is told by the path. A directory is a Hugging Face model
//! (config.json, model.safetensors or shards with an index, tokenizer.json); `*.gguf` is a
//! GGUF file (quantized or float, tokenizer from its metadata unless one is given); `*.bin`
//! is a llama2.c checkpoint (legacy layout, grouped-query attention allowed) read with a
//! tokenizer.json. Weight files are memory-mapped; tensors are copied out in the compute
//! dtype.
//!
//! Each format has its own child module (`hf`, `gguf`, `llama2c`); this one keeps what they
//! share: the dispatch, the options, the result and how special tokens are found.

mod gguf;
mod hf;
mod llama2c;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use super::chat::{self, ModelTemplate};
use super::tokenizer::TokenizerHandle;
use super::transformer::Transformer;
use crate::lm::{ModelError, ModelResult};

/// The Hugging Face `model_type`s that can be loaded.
pub const HF_ARCHITECTURES: &[&str] = &["llama", "mistral", "qwen2", "gemma", "phi3"];
/// The GGUF `general.architecture`s that can be loaded.
pub const GGUF_ARCHITECTURES: &[&str] = &["llama", "qwen2"];

/// How to load.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub dtype: DType,
    pub device: Device,
    /// A tokenizer.json to use instead of the checkpoint's own.
    pub tokenizer: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            dtype: DType::F32,
            device: Device::Cpu,
            tokenizer: None,
        }
    }
}

/// A loaded checkpoint.
pub struct Loaded {
    pub net: Transformer,
    pub tokenizer: TokenizerHandle,
    pub bos: Option<u32>,
    pub eos: Vec<u32>,
    pub format: &'static str,
    pub files: Vec<PathBuf>,
    pub parameters: usize,
    /// A chat template stored in the weight file itself (GGUF `tokenizer.chat_template`).
    pub embedded_template: Option<String>,
}

fn invalid(message: impl Into<String>) -> ModelError {
    ModelError::Invalid(message.into())
}

fn candle_err(path: &Path, what: &str) -> impl Fn(candle_core::Error) -> ModelError {
    let path = path.display().to_string();
    let what = what.to_string();
    move |e| invalid(format!("{what} {path}: {e}"))
}

/// The model's own chat template: GGUF metadata, else beside the tokenizer in use (a
/// `tokenizer: ` given, else the model's folder or the folder of its file). Why there is none
/// (naming where beb looked) is kept for the script that asks for it; loading never fails
/// over a template.
pub fn chat_template(
    path: &Path,
    options: &LoadOptions,
    loaded: &Loaded,
) -> Result<ModelTemplate, String> {
    let dir = match (&options.tokenizer, path.is_dir()) {
        (Some(t), _) => t.parent().map(Path::to_path_buf).unwrap_or_default(),
        (None, true) => path.to_path_buf(),
        (None, false) => path.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let (source, bos, eos) = chat::template_in_folder(&dir);
    let source = match (&loaded.embedded_template, source) {
        (Some(t), _) => Ok((
            t.clone(),
            format!(
                "the GGUF metadata `tokenizer.chat_template` of {}",
                path.display()
            ),
        )),
        (None, Err(why)) if loaded.format == "gguf" => Err(format!(
            "{} has no `tokenizer.chat_template` in its metadata and {why}",
            path.display()
        )),
        (None, other) => other,
    }?;
    Ok(ModelTemplate::new(
        source,
        &loaded.tokenizer,
        loaded.bos,
        loaded.eos.first().copied(),
        (bos, eos),
    ))
}

/// Load a model, choosing the format from the path.
pub fn load(path: &Path, options: &LoadOptions) -> ModelResult<Loaded> {
    let text = path.to_string_lossy();
    if text.starts_with("http://") || text.starts_with("https://") {
        return Err(invalid(format!(
            "{text} is a server, not a file: use server(\"{text}\", model: \"NAME\", tokenizer: \"path/to/tokenizer.json\") (docs/servers.md)"
        )));
    }
    if !path.exists() {
        let shared = match std::env::var("BEB_SHARED") {
            Ok(root) => format!("BEB_SHARED is {root}"),
            Err(_) => "BEB_SHARED is not set, so it is ../shared".to_string(),
        };
        return Err(invalid(format!(
            "no model at {}: the path does not exist (a relative path is read from the current \
             folder; shared models are written `$BEB_SHARED/...`, and {shared})",
            path.display()
        )));
    }
    let loaded = if path.is_dir() {
        hf::load(path, options)
    } else {
        by_extension(path, options)
    }?;
    check_special_tokens(&loaded, path)?;
    Ok(loaded)
}

/// BOS and EOS must be tokens of both the tokenizer and the model's vocabulary.
fn check_special_tokens(loaded: &Loaded, path: &Path) -> ModelResult<()> {
    let vocab = loaded.net.config.vocab.min(loaded.tokenizer.size);
    for (name, id) in loaded
        .bos
        .iter()
        .map(|&b| ("beginning-of-sequence", b))
        .chain(loaded.eos.iter().map(|&e| ("end-of-sequence", e)))
    {
        if id as usize >= vocab {
            return Err(invalid(format!(
                "{}: the {name} token id {id} is outside the vocabulary of {vocab} (model {}, tokenizer {})",
                path.display(),
                loaded.net.config.vocab,
                loaded.tokenizer.size
            )));
        }
    }
    Ok(())
}

fn by_extension(path: &Path, options: &LoadOptions) -> ModelResult<Loaded> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("gguf") => gguf::load(path, options),
        Some("bin") => llama2c::load(path, options),
        Some("safetensors") => Err(invalid(format!(
            "{} is a weight file: load the folder that holds it with its config.json and tokenizer.json",
            path.display()
        ))),
        _ => Err(invalid(format!(
            "cannot tell the format of {}: load a Hugging Face folder (config.json, *.safetensors, tokenizer.json), a .gguf file or a llama2.c .bin checkpoint",
            path.display()
        ))),
    }
}

fn tokenizer_beside(
    path: &Path,
    options: &LoadOptions,
    what: &str,
) -> ModelResult<TokenizerHandle> {
    if let Some(t) = &options.tokenizer {
        return TokenizerHandle::from_file(t);
    }
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let candidate = dir.join("tokenizer.json");
    if candidate.is_file() {
        TokenizerHandle::from_file(&candidate)
    } else {
        Err(invalid(format!(
            "{what} {} comes without a tokenizer.json beside it: pass tokenizer: \"path/to/tokenizer.json\"",
            path.display()
        )))
    }
}

/// The beginning- and end-of-sequence ids a tokenizer knows by their usual names (for a model
/// whose weights live elsewhere, such as a server's).
pub fn named_special_tokens(t: &TokenizerHandle) -> (Option<u32>, Vec<u32>) {
    let bos = token_named(t, BOS_NAMES);
    (bos, token_named(t, EOS_NAMES).into_iter().collect())
}

/// Special token ids the tokenizer knows by their usual names.
fn token_named(t: &TokenizerHandle, names: &[&str]) -> Option<u32> {
    names.iter().find_map(|n| t.token_id(n))
}

const BOS_NAMES: &[&str] = &["<s>", "<|begin_of_text|>", "<bos>", "<|endoftext|>"];
const EOS_NAMES: &[&str] = &[
    "</s>",
    "<|end_of_text|>",
    "<eos>",
    "<|endoftext|>",
    "<|im_end|>",
];
