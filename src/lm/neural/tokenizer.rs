//! Tokenizers: a `tokenizer.json` read by the `tokenizers` crate, or one rebuilt from a GGUF
//! file's metadata (sentencepiece-style "llama" vocabularies with scores, and byte-level
//! "gpt2" vocabularies with merges).

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file;
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use crate::lm::{Detokenize, ModelError, ModelResult};

/// A tokenizer and the identity of its vocabulary.
pub struct TokenizerHandle {
    inner: tokenizers::Tokenizer,
    /// sha256 of the vocabulary (every token and its id, added tokens included).
    pub digest: String,
    /// Number of ids, added tokens included.
    pub size: usize,
    /// Where it came from, for messages.
    pub source: String,
}

impl std::fmt::Debug for TokenizerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenizerHandle({}, {} tokens)", self.source, self.size)
    }
}

impl Detokenize for TokenizerHandle {
    fn decode(&self, ids: &[u32]) -> String {
        self.inner
            .decode(ids, false)
            .unwrap_or_else(|_| format!("{ids:?}"))
    }
}

impl TokenizerHandle {
    pub fn new(inner: tokenizers::Tokenizer, source: String) -> TokenizerHandle {
        let mut vocab: Vec<(u32, String)> = inner
            .get_vocab(true)
            .into_iter()
            .map(|(t, i)| (i, t))
            .collect();
        vocab.sort();
        let mut hasher = Sha256::new();
        for (id, token) in &vocab {
            hasher.update(id.to_le_bytes());
            hasher.update((token.len() as u64).to_le_bytes());
            hasher.update(token.as_bytes());
        }
        let digest: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        TokenizerHandle {
            size: vocab.len(),
            inner,
            digest,
            source,
        }
    }

    pub fn from_file(path: &Path) -> ModelResult<TokenizerHandle> {
        if !path.is_file() {
            return Err(ModelError::Invalid(format!(
                "tokenizer file {} not found",
                path.display()
            )));
        }
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| {
            ModelError::Invalid(format!("cannot read tokenizer {}: {e}", path.display()))
        })?;
        Ok(TokenizerHandle::new(inner, path.display().to_string()))
    }

    /// Token ids of a text, without special tokens (no BOS: the model adds its own).
    pub fn encode(&self, text: &str) -> ModelResult<Vec<u32>> {
        self.inner
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| ModelError::Invalid(format!("cannot tokenize {text:?}: {e}")))
    }

    /// The vocabulary entry of an id (`<0x2E>` for a byte-fallback token).
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// A short name for the vocabulary (its size), used with the digest to compare models.
    pub fn name(&self) -> String {
        format!("{} tokens", self.size)
    }
}

fn meta<'a>(content: &'a gguf_file::Content, key: &str) -> ModelResult<&'a gguf_file::Value> {
    content.metadata.get(key).ok_or_else(|| {
        ModelError::Invalid(format!(
            "the GGUF file has no `{key}`: pass tokenizer: \"path/to/tokenizer.json\""
        ))
    })
}

fn strings(value: &gguf_file::Value, key: &str) -> ModelResult<Vec<String>> {
    let bad = || ModelError::Invalid(format!("GGUF metadata `{key}` is not a list of strings"));
    value
        .to_vec()
        .map_err(|_| bad())?
        .iter()
        .map(|v| v.to_string().cloned().map_err(|_| bad()))
        .collect()
}

fn numbers(value: &gguf_file::Value, key: &str) -> ModelResult<Vec<f64>> {
    let bad = || ModelError::Invalid(format!("GGUF metadata `{key}` is not a list of numbers"));
    value
        .to_vec()
        .map_err(|_| bad())?
        .iter()
        .map(|v| match v {
            gguf_file::Value::F32(x) => Ok(f64::from(*x)),
            gguf_file::Value::F64(x) => Ok(*x),
            gguf_file::Value::I32(x) => Ok(f64::from(*x)),
            gguf_file::Value::U32(x) => Ok(f64::from(*x)),
            gguf_file::Value::I8(x) => Ok(f64::from(*x)),
            gguf_file::Value::U8(x) => Ok(f64::from(*x)),
            _ => Err(bad()),
        })
        .collect()
}

/// Rebuild the tokenizer stored in a GGUF file's metadata.
pub fn from_gguf(content: &gguf_file::Content, source: &str) -> ModelResult<TokenizerHandle> {
    let model = meta(content, "tokenizer.ggml.model")?
        .to_string()
        .map_err(|_| ModelError::Invalid("GGUF `tokenizer.ggml.model` is not a string".into()))?
        .clone();
    let tokens = strings(
        meta(content, "tokenizer.ggml.tokens")?,
        "tokenizer.ggml.tokens",
    )?;
    let types: Vec<i64> = match content.metadata.get("tokenizer.ggml.token_type") {
        Some(v) => numbers(v, "tokenizer.ggml.token_type")?
            .into_iter()
            .map(|x| x as i64)
            .collect(),
        None => vec![1; tokens.len()],
    };
    let json = match model.as_str() {
        "llama" => {
            let scores = match content.metadata.get("tokenizer.ggml.scores") {
                Some(v) => numbers(v, "tokenizer.ggml.scores")?,
                None => (0..tokens.len()).map(|i| -(i as f64)).collect(),
            };
            sentencepiece_json(&tokens, &scores, &types)
        }
        "gpt2" => {
            let merges = strings(
                meta(content, "tokenizer.ggml.merges")?,
                "tokenizer.ggml.merges",
            )?;
            let pre = content
                .metadata
                .get("tokenizer.ggml.pre")
                .and_then(|v| v.to_string().ok().cloned())
                .unwrap_or_default();
            byte_level_json(&tokens, &merges, &types, &pre)
        }
        other => {
            return Err(ModelError::Unsupported(format!(
                "GGUF tokenizer model {other:?} is not supported (supported: llama, gpt2); pass tokenizer: \"path/to/tokenizer.json\""
            )));
        }
    };
    let bytes = serde_json::to_vec(&json)
        .map_err(|e| ModelError::Invalid(format!("cannot build the GGUF tokenizer: {e}")))?;
    let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| {
        ModelError::Invalid(format!(
            "cannot build the tokenizer from the GGUF metadata of {source}: {e}"
        ))
    })?;
    Ok(TokenizerHandle::new(
        inner,
        format!("{source} (GGUF metadata)"),
    ))
}

fn added_tokens(tokens: &[String], types: &[i64]) -> Vec<Json> {
    tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(types.get(*i), Some(2..=4)))
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false,
                   "special": types.get(i) != Some(&4)})
        })
        .collect()
}

/// A sentencepiece BPE vocabulary as a `tokenizers` BPE with byte fallback; merges are
/// recovered from the scores as the Hugging Face converter does (every split of a token into
/// two tokens, ranked by the merged token's score).
fn sentencepiece_json(tokens: &[String], scores: &[f64], types: &[i64]) -> Json {
    let vocab: HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let normal = |i: usize| matches!(types.get(i), Some(1) | None);
    let mut merges: Vec<(usize, usize, f64)> = Vec::new();
    for (id, token) in tokens.iter().enumerate() {
        if !normal(id) {
            continue;
        }
        let score = scores.get(id).copied().unwrap_or(0.0);
        let mut local = Vec::new();
        for (cut, _) in token.char_indices().skip(1) {
            let (l, r) = token.split_at(cut);
            if let (Some(&a), Some(&b)) = (vocab.get(l), vocab.get(r))
                && normal(a)
                && normal(b)
            {
                local.push((a, b, score));
            }
        }
        local.sort_by_key(|&(a, b, _)| (a, b));
        merges.extend(local);
    }
    merges.sort_by(|x, y| y.2.total_cmp(&x.2));
    let unk = types
        .iter()
        .position(|t| *t == 2)
        .and_then(|i| tokens.get(i).cloned());
    let vocab_json: serde_json::Map<String, Json> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let merges_json: Vec<Json> = merges
        .iter()
        .map(|&(a, b, _)| json!([tokens[a], tokens[b]]))
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens(tokens, types),
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u{2581}"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"}
        ]},
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}
        ]},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": unk,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
            "vocab": vocab_json, "merges": merges_json
        }
    })
}

/// A byte-level BPE (GPT-2 style) vocabulary with its merges; `pre` names llama.cpp's
/// pre-tokenizer (the split regex).
fn byte_level_json(tokens: &[String], merges: &[String], types: &[i64], pre: &str) -> Json {
    let regex = match pre {
        "qwen2" => Some(
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ),
        "llama-bpe" | "llama3" => Some(
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ),
        _ => None,
    };
    let pre_tokenizer = match regex {
        Some(r) => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": r}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}
        ]}),
        None => {
            json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true})
        }
    };
    let vocab_json: serde_json::Map<String, Json> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens(tokens, types),
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab_json, "merges": merges
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_vocabularies_rebuild() {
        let tokens: Vec<String> = ["a", "b", "ab", "Ġ", "Ġab", "<|endoftext|>"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let merges = vec!["a b".to_string(), "Ġ ab".to_string()];
        let types = vec![1, 1, 1, 1, 1, 3];
        let json = byte_level_json(&tokens, &merges, &types, "qwen2");
        let inner =
            tokenizers::Tokenizer::from_bytes(serde_json::to_vec(&json).unwrap_or_default());
        let Ok(inner) = inner else {
            panic!("byte-level tokenizer JSON rejected: {inner:?}");
        };
        let t = TokenizerHandle::new(inner, "test".into());
        assert_eq!(t.encode("ab ab").unwrap_or_default(), vec![2, 4]);
        assert_eq!(t.decode(&[2, 4]), "ab ab");
        assert_eq!(t.size, 6);
    }
}
