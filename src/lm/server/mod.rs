//! Models served by an inference server over the OpenAI completions API (vLLM, the
//! llama-cpp-python server): a [`RemoteLm`] is a [`LanguageModel`] like a local neural model,
//! with the same token ids, units and tokenizer, whose scores and samples come over HTTP.
//!
//! - Scoring sends `[BOS] ++ context ++ text` with `echo: true, logprobs: 1` and sums the
//!   prompt tokens' log-probs after the context.
//! - Sampling draws whole token streams on the server (temperature 1 and every truncation
//!   off: the model's own distribution), one request per draw with a seed taken from that
//!   draw's generator, then cuts them into units here with the same stopping rule as a local
//!   model (`UnitSpec::ends`). A request asks for as many tokens as the units can have, so
//!   every unit end is seen; what is drawn past the last unit is dropped, which leaves the
//!   units distributed exactly as ancestral sampling draws them (the stopping rule looks
//!   only at tokens already drawn). Stop strings are not used: a server stops at text, not at
//!   the token that completes it. The sampled tokens' log-probs are kept, so a text is not
//!   scored again by the model that drew it.
//! - Two prompt modes, chosen by what the server accepts: token ids (vLLM, with
//!   `return_tokens_as_token_ids`), and text with verification (llama-cpp-python, whose
//!   request model takes strings only): the ids are decoded, sent as text, and the tokens the
//!   server echoes must be exactly those ids, else an error. That server gives `null` for the
//!   first token after BOS and has no exact way to ask for it (an explicit "<s>" is read as a
//!   second BOS, and an empty prompt's log-probs come back empty), so in text mode a text
//!   scored from the very beginning is an error naming the servers that can; texts after a
//!   non-empty context, and all sampling, are exact.

pub mod http;

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use rand::RngCore;
use rand_chacha::ChaCha20Rng;
use serde_json::{Value as Json, json};

use super::neural::tokenizer::TokenizerHandle;
use super::neural::{Sampling, UnitSpec};
use super::{
    Detokenize, LanguageModel, ModelError, ModelRef, ModelResult, Scored, TokenRun, TokenText,
    Unit, Vocabulary,
};
use http::{Client, HttpError, HttpOptions};

/// The text whose tokenization the server and the local tokenizer must agree on.
pub const PROBE: &str =
    "Once upon a time, a little dog said: \"Hello, world!\" 42 times.\nThe end.";

/// Servers that return prompt log-probs, for the message when one cannot.
const CAPABLE: &str = "vLLM (`vllm serve MODEL`), or llama-cpp-python's server started with \
`--logits_all true`; llama.cpp's own llama-server cannot (llama.cpp issue #27174)";

/// How prompts travel to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptMode {
    /// `prompt` as a list of token ids, tokens returned as `token_id:N` (vLLM).
    Ids,
    /// `prompt` as the decoded text, checked against the tokens the server echoes
    /// (llama-cpp-python, which takes strings only).
    Text,
}

/// How to reach a server and what it serves.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// The API's base URL, ending in `/v1`.
    pub url: String,
    /// The served model's name (`model` in every request).
    pub model: String,
    pub http: HttpOptions,
    /// The bearer token (read from the environment by the caller; never printed).
    pub api_key: Option<String>,
}

/// One served model: its client, tokenizer and identity.
pub struct Server {
    options: ServerOptions,
    client: Client,
    tokenizer: Rc<TokenizerHandle>,
    bos: Option<u32>,
    eos: Vec<u32>,
    mode: PromptMode,
    /// What the server says it is, for the cache key and the run record.
    reported: String,
    /// The server's software, in words.
    software: String,
    /// Text mode: each token's text as the server prints it.
    pieces: OnceCell<Vec<String>>,
    /// Log-probs of texts this model sampled: (context ids, text ids) -> log P(text | context).
    drawn: RefCell<HashMap<Drawn, f64>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Server({}, {})", self.options.url, self.options.model)
    }
}

fn invalid(message: impl Into<String>) -> ModelError {
    ModelError::Invalid(message.into())
}

fn http_err(e: HttpError) -> ModelError {
    invalid(format!("the server failed: {e}"))
}

/// A sampled text as remembered: (context ids with BOS, the text's ids).
type Drawn = (Vec<u32>, Vec<u32>);

/// Texts sampled and remembered with their log-probs before the memo is emptied.
const DRAWN_LIMIT: usize = 200_000;

/// `http://HOST:PORT/...` as (host, port).
pub fn host_port(url: &str) -> ModelResult<(String, u16)> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid(format!("{url:?} is not a URL (http://HOST:PORT/v1)")))?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        other => {
            return Err(invalid(format!(
                "{url:?}: the scheme {other:?} is not http or https"
            )));
        }
    };
    let authority = rest.split('/').next().unwrap_or("");
    if authority.contains('@') {
        return Err(invalid(
            "a server URL cannot carry credentials: use api_key_env: \"VARIABLE\"",
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| invalid(format!("{url:?}: unclosed [ in the host")))?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(invalid(format!("{url:?} names no host")));
    }
    let port = match port {
        Some(p) => p
            .parse()
            .map_err(|_| invalid(format!("{url:?}: the port {p:?} is not a number")))?,
        None => default_port,
    };
    Ok((host.to_ascii_lowercase(), port))
}

/// Whether `--allow-net` entries (`HOST` or `HOST:PORT`) allow this host and port.
pub fn net_allowed(allowed: &[String], host: &str, port: u16) -> bool {
    allowed.iter().any(|entry| {
        let entry = entry.trim().to_ascii_lowercase();
        let entry = entry.trim_start_matches('[');
        match entry.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !h.ends_with(':') => {
                h.trim_end_matches(']') == host && p.parse::<u16>().ok() == Some(port)
            }
            _ => entry.trim_end_matches(']') == host,
        }
    })
}

/// The log-probs of a completion's tokens (`None` where the server gave null).
fn token_logprobs(choice: &Json) -> Option<Vec<Option<f64>>> {
    let lps = choice.get("logprobs")?.get("token_logprobs")?.as_array()?;
    Some(lps.iter().map(Json::as_f64).collect())
}

/// The tokens of a completion as the server printed them.
fn token_texts(choice: &Json) -> Option<Vec<String>> {
    let tokens = choice.get("logprobs")?.get("tokens")?.as_array()?;
    tokens
        .iter()
        .map(|t| t.as_str().map(str::to_string))
        .collect()
}

fn first_choice<'a>(reply: &'a Json, url: &str) -> ModelResult<&'a Json> {
    reply.get("choices").and_then(|c| c.get(0)).ok_or_else(|| {
        invalid(format!(
            "{url}: the answer has no choices: {}",
            http::excerpt(&reply.to_string(), 200)
        ))
    })
}

/// One sampled continuation: its token ids and their log-probs (`None` where unknown), and
/// whether the server stopped at an end-of-sequence token.
struct Completion {
    ids: Vec<u32>,
    logprobs: Vec<Option<f64>>,
    stopped: bool,
}

impl Server {
    /// Connect, find out what the server is and accepts, check its tokenizer against
    /// `tokenizer` and that it returns prompt log-probs.
    pub fn connect(options: ServerOptions, tokenizer: &Path) -> ModelResult<Server> {
        let tokenizer = Rc::new(TokenizerHandle::from_file(tokenizer)?);
        let (bos, eos) = super::neural::load::named_special_tokens(&tokenizer);
        let client = Client::new(options.http.clone(), options.api_key.clone());
        let base = options.url.trim_end_matches('/').to_string();
        let root = base.strip_suffix("/v1").unwrap_or(&base).to_string();
        let models = client
            .request(&format!("{base}/models"), None)
            .map_err(|e| invalid(format!("cannot reach the server: {e}")))?;
        let served: Vec<String> = models
            .get("data")
            .and_then(Json::as_array)
            .map(|d| {
                d.iter()
                    .filter_map(|m| m.get("id").and_then(Json::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if !served.is_empty() && !served.contains(&options.model) {
            return Err(invalid(format!(
                "{base}/models does not list the model {:?}; it serves {}",
                options.model,
                served
                    .iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        // vLLM answers /version; llama-cpp-python has /extras/tokenize.
        let version = client.request(&format!("{root}/version"), None).ok();
        let (mode, software, server_ids) = match version
            .as_ref()
            .and_then(|v| v.get("version"))
            .and_then(Json::as_str)
        {
            Some(v) => {
                let body =
                    json!({"model": options.model, "prompt": PROBE, "add_special_tokens": true});
                let ids = client
                    .request(&format!("{root}/tokenize"), Some(&body))
                    .ok()
                    .and_then(|r| ids_of(r.get("tokens")?));
                (PromptMode::Ids, format!("vLLM {v}"), ids)
            }
            None => {
                let body = json!({"input": PROBE, "model": options.model});
                match client.request(&format!("{root}/extras/tokenize"), Some(&body)) {
                    Ok(r) => (
                        PromptMode::Text,
                        "llama-cpp-python".to_string(),
                        r.get("tokens").and_then(ids_of),
                    ),
                    Err(_) => (PromptMode::Ids, "OpenAI-compatible".to_string(), None),
                }
            }
        };
        let reported = format!(
            "{software}; models {}; version {}",
            models,
            version.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
        );
        let server = Server {
            options,
            client,
            tokenizer,
            bos,
            eos,
            mode,
            reported,
            software,
            pieces: OnceCell::new(),
            drawn: RefCell::new(HashMap::new()),
        };
        let local: Vec<u32> = server
            .bos
            .into_iter()
            .chain(server.tokenizer.encode(PROBE)?)
            .collect();
        if let Some(remote) = server_ids
            && remote != local
        {
            return Err(server.tokenizer_mismatch(&remote, &local));
        }
        server.check_scores(&local)?;
        Ok(server)
    }

    /// The server for the run record: URL, served name, what it reports about itself and
    /// the tokenizer's digest (never the API key).
    pub fn record_line(&self) -> String {
        format!(
            "{} model {:?}; {}; tokenizer {} sha256 {}",
            self.options.url,
            self.options.model,
            self.reported,
            self.tokenizer.source,
            self.tokenizer.digest
        )
    }

    fn tokenizer_mismatch(&self, remote: &[u32], local: &[u32]) -> ModelError {
        invalid(format!(
            "the server's tokenizer ({} serving {:?} at {}) and {} disagree: {PROBE:?} is {remote:?} on the server and {local:?} locally; pass the tokenizer.json of the served model",
            self.software, self.options.model, self.options.url, self.tokenizer.source
        ))
    }

    /// Capability and round-trip check: the probe scored with echo must come back with a
    /// log-prob for every token (and, with ids, the same ids).
    fn check_scores(&self, full: &[u32]) -> ModelResult<()> {
        let scored = self.score_full(&[full.to_vec()]).map_err(|e| match e {
            ModelError::Unsupported(m) => invalid(m),
            other => other,
        })?;
        let known = match self.mode {
            PromptMode::Ids => &scored[0][..],
            PromptMode::Text => &scored[0][1.min(scored[0].len())..],
        };
        if scored[0].len() + 1 != full.len() || known.iter().any(|x| !x.is_some_and(f64::is_finite))
        {
            return Err(self.incapable("some prompt tokens came back without a log-prob"));
        }
        Ok(())
    }

    fn incapable(&self, what: &str) -> ModelError {
        invalid(format!(
            "the server at {} cannot return prompt log-probs ({what}): scores need `echo: true` with `logprobs`, which {CAPABLE}",
            self.options.url
        ))
    }

    fn completions_url(&self) -> String {
        format!("{}/completions", self.options.url.trim_end_matches('/'))
    }

    /// The request fields every request carries: the model's own distribution, nothing
    /// truncated or penalised.
    fn body(&self, full: &[u32], max_tokens: usize) -> ModelResult<Json> {
        let mut body = json!({
            "model": self.options.model,
            "max_tokens": max_tokens,
            "temperature": 1.0,
            "top_p": 1.0,
            "min_p": 0.0,
            "n": 1,
        });
        match self.mode {
            PromptMode::Ids => {
                body["prompt"] = json!(full);
                body["top_k"] = json!(-1);
                body["repetition_penalty"] = json!(1.0);
                body["return_tokens_as_token_ids"] = json!(true);
                body["skip_special_tokens"] = json!(false);
            }
            PromptMode::Text => {
                let ids = match (full.first(), self.bos) {
                    (Some(&b), Some(bos)) if b == bos => &full[1..],
                    _ => full,
                };
                let text = self.tokenizer.decode(ids);
                // Text carries only the tokenizer's own reading of it: other ids for the same
                // text (a byte token in place of a whole one) cannot be sent.
                if self.tokenizer.encode(&text)? != ids {
                    return Err(invalid(format!(
                        "the token ids of {:?} are not the tokenizer's own reading of that text, so they cannot be sent as text to {}; a server that takes token ids can (vLLM)",
                        http::excerpt(&text, 60),
                        self.software
                    )));
                }
                body["prompt"] = json!(text);
                body["top_k"] = json!(0);
                body["typical_p"] = json!(1.0);
                body["repeat_penalty"] = json!(1.0);
            }
        }
        Ok(body)
    }

    /// Ids mode: the ids of tokens the server printed as `token_id:N`.
    fn read_ids(texts: &[String]) -> Option<Vec<u32>> {
        texts
            .iter()
            .map(|t| t.strip_prefix("token_id:").and_then(|n| n.parse().ok()))
            .collect()
    }

    /// Each id's text as llama.cpp prints a single token: its decoded text (a leading space
    /// kept), and "" for special tokens and bytes that are not UTF-8 on their own.
    fn pieces(&self) -> &[String] {
        self.pieces.get_or_init(|| {
            // A token's own text is read after an anchor, so that a leading space is kept.
            let anchor = self.tokenizer.encode("a").unwrap_or_default();
            let head = self.tokenizer.decode(&anchor);
            let unk = self.tokenizer.token_id("<unk>");
            let n = self.tokenizer.size as u32;
            (0..n)
                .map(|id| {
                    if self.bos == Some(id) || self.eos.contains(&id) || unk == Some(id) {
                        return String::new();
                    }
                    let mut ids = anchor.clone();
                    ids.push(id);
                    let text = self.tokenizer.decode(&ids);
                    text.strip_prefix(&head)
                        .filter(|p| !p.contains('\u{FFFD}'))
                        .unwrap_or("")
                        .to_string()
                })
                .collect()
        })
    }

    /// Token text -> the ids printed so, whole tokens before byte tokens.
    fn piece_index(&self) -> HashMap<&str, Vec<u32>> {
        let mut index: HashMap<&str, Vec<u32>> = HashMap::new();
        for (i, p) in self.pieces().iter().enumerate() {
            index.entry(p.as_str()).or_default().push(i as u32);
        }
        // A byte-fallback token (`<0x2E>`) never comes out of the tokenizer when a whole
        // token prints the same.
        let byte = |id: u32| {
            self.tokenizer
                .token_text(id)
                .is_some_and(|t| t.starts_with("<0x") && t.ends_with('>'))
        };
        for ids in index.values_mut() {
            ids.sort_by_key(|&id| byte(id));
        }
        index
    }

    /// Text mode: the ids of sampled tokens from their texts. Where a text is printed by
    /// several ids (a byte token printing like a whole token), the tokenizer's own id is
    /// taken: the server says no more, and text cannot be echoed back with the other id to
    /// check (docs/servers.md: what text mode cannot tell).
    fn resolve(&self, texts: &[String]) -> ModelResult<Vec<u32>> {
        let index = self.piece_index();
        texts
            .iter()
            .map(|t| {
                index
                    .get(t.as_str())
                    .and_then(|ids| ids.first().copied())
                    .filter(|_| !t.is_empty())
                    .ok_or_else(|| {
                        invalid(format!(
                            "the server sampled a token printed {t:?}, which names no single id of {}: its id cannot be told; a server that returns token ids can (vLLM)",
                            self.tokenizer.source
                        ))
                    })
            })
            .collect()
    }

    /// log P(full[i + 1] | full[..=i]) for every position of each sequence (which starts
    /// with BOS when the model has one), from echoed prompts; `None` where the server does
    /// not say (text mode: the first token after BOS).
    fn score_full(&self, fulls: &[Vec<u32>]) -> ModelResult<Vec<Vec<Option<f64>>>> {
        let url = self.completions_url();
        let bodies: Vec<Json> = fulls
            .iter()
            .map(|f| {
                let mut b = self.body(f, 1)?;
                b["echo"] = json!(true);
                b["logprobs"] = json!(1);
                b["temperature"] = json!(0.0);
                Ok(b)
            })
            .collect::<ModelResult<_>>()?;
        let replies = self.client.post_all(&url, &bodies).map_err(http_err)?;
        let mut out = Vec::with_capacity(fulls.len());
        for (full, reply) in fulls.iter().zip(&replies) {
            out.push(self.read_echo(full, first_choice(reply, &url)?)?);
        }
        Ok(out)
    }

    /// The prompt tokens' log-probs of an echoed answer, checked to be exactly `full`'s.
    fn read_echo(&self, full: &[u32], choice: &Json) -> ModelResult<Vec<Option<f64>>> {
        let lps =
            token_logprobs(choice).ok_or_else(|| self.incapable("the answer has no logprobs"))?;
        let texts =
            token_texts(choice).ok_or_else(|| self.incapable("the answer has no tokens"))?;
        // What the server echoes: ids mode all of `full`; text mode all but the BOS.
        let skip = match (self.mode, full.first(), self.bos) {
            (PromptMode::Text, Some(&f), Some(b)) if f == b => 1,
            _ => 0,
        };
        let prompt = &full[skip..];
        if texts.len() < prompt.len() || lps.len() < prompt.len() {
            return Err(self.mismatch(prompt, &texts));
        }
        match self.mode {
            PromptMode::Ids => {
                if Self::read_ids(&texts[..prompt.len()]).as_deref() != Some(prompt) {
                    return Err(self.mismatch(prompt, &texts));
                }
            }
            PromptMode::Text => {
                // Each echoed token prints as beb's id does: the server read these ids.
                let pieces = self.pieces();
                if texts
                    .iter()
                    .zip(prompt)
                    .any(|(t, &id)| pieces.get(id as usize) != Some(t))
                {
                    return Err(self.mismatch(prompt, &texts));
                }
            }
        }
        let mut out = Vec::with_capacity(full.len().saturating_sub(1));
        for (i, lp) in lps[..prompt.len()].iter().enumerate() {
            if skip == 0 && i == 0 {
                continue; // the first token of `full` has no context to be predicted from
            }
            match lp {
                Some(x) => out.push(Some(*x)),
                None if skip == 1 && i == 0 => out.push(None),
                None => return Err(self.incapable("a prompt token's log-prob is null")),
            }
        }
        Ok(out)
    }

    fn mismatch(&self, prompt: &[u32], texts: &[String]) -> ModelError {
        let shown: Vec<&String> = texts.iter().take(prompt.len() + 2).collect();
        invalid(format!(
            "the server read the prompt as other tokens than beb's: beb sent {} ids {:?}, the server echoed {} tokens {:?}; the server's tokenizer differs from {}",
            prompt.len(),
            &prompt[..prompt.len().min(40)],
            texts.len(),
            &shown[..shown.len().min(40)],
            self.tokenizer.source
        ))
    }

    /// Whether `full` goes to the server as the empty prompt (text mode, BOS alone).
    fn sends_nothing(&self, full: &[u32]) -> bool {
        self.mode == PromptMode::Text
            && match (full, self.bos) {
                ([], _) => true,
                ([first], Some(bos)) => *first == bos,
                _ => false,
            }
    }

    /// Draw continuations of each prompt on the server: up to `max_tokens[i]` tokens with
    /// seed `seeds[i]`.
    fn complete(
        &self,
        prompts: &[Vec<u32>],
        max_tokens: &[usize],
        seeds: &[u32],
    ) -> ModelResult<Vec<Completion>> {
        let url = self.completions_url();
        let bodies: Vec<Json> = prompts
            .iter()
            .zip(max_tokens)
            .zip(seeds)
            .map(|((p, &m), &s)| {
                let mut b = self.body(p, m)?;
                b["seed"] = json!(s);
                b["logprobs"] = json!(0);
                Ok(b)
            })
            .collect::<ModelResult<_>>()?;
        let replies = self.client.post_all(&url, &bodies).map_err(http_err)?;
        let mut out = Vec::with_capacity(replies.len());
        for ((reply, &m), prompt) in replies.iter().zip(max_tokens).zip(prompts) {
            let choice = first_choice(reply, &url)?;
            let texts = token_texts(choice)
                .ok_or_else(|| self.incapable("a completion came without its tokens"))?;
            let mut logprobs = if self.sends_nothing(prompt) {
                // llama-cpp-python pairs the log-probs of a completion of the empty prompt
                // with the wrong positions (each token gets the next one's distribution), so
                // they are not kept: such texts are scored again, which says what it cannot.
                Vec::new()
            } else {
                token_logprobs(choice).unwrap_or_default()
            };
            logprobs.resize(texts.len(), None);
            let mut ids: Vec<u32> = match self.mode {
                PromptMode::Ids => Self::read_ids(&texts).ok_or_else(|| {
                    invalid(format!(
                        "{url}: the tokens came back as text, not as token_id:N (the server ignores return_tokens_as_token_ids)"
                    ))
                })?,
                PromptMode::Text => self.resolve(&texts)?,
            };
            let finish = choice
                .get("finish_reason")
                .and_then(Json::as_str)
                .unwrap_or("");
            let ends_eos = ids.last().is_some_and(|t| self.eos.contains(t));
            let stopped = ends_eos || (finish == "stop" && ids.len() < m);
            if stopped && !ends_eos {
                // The server stopped at an end-of-sequence token it did not return.
                let Some(&eos) = self.eos.first() else {
                    return Err(invalid(
                        "the server stopped at an end-of-sequence token the tokenizer does not name",
                    ));
                };
                ids.push(eos);
                logprobs.push(None);
            }
            out.push(Completion {
                ids,
                logprobs,
                stopped,
            });
        }
        Ok(out)
    }
}

/// A list of token ids in JSON.
fn ids_of(value: &Json) -> Option<Vec<u32>> {
    value
        .as_array()?
        .iter()
        .map(|v| v.as_u64().and_then(|x| u32::try_from(x).ok()))
        .collect()
}

/// A drawn text's units (token ids) and the sum of its tokens' log-probs as the server sent
/// them (`None` where some were not sent or not kept).
type DrawnText = (Vec<Vec<u32>>, Option<f64>);

/// A served model cut into units: the [`LanguageModel`] scripts measure.
#[derive(Debug, Clone)]
pub struct RemoteLm {
    name: String,
    server: Rc<Server>,
    unit: UnitSpec,
}

impl RemoteLm {
    pub fn new(name: impl Into<String>, server: Rc<Server>, unit: UnitSpec) -> RemoteLm {
        RemoteLm {
            name: name.into(),
            server,
            unit,
        }
    }

    pub fn server(&self) -> &Server {
        &self.server
    }

    fn decoder(&self) -> Rc<dyn Detokenize> {
        self.server.tokenizer.clone()
    }

    fn check_ids(&self, ids: &[u32]) -> ModelResult<()> {
        let size = self.server.tokenizer.size;
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= size) {
            return Err(invalid(format!(
                "token id {bad} is outside the tokenizer's vocabulary of {size}"
            )));
        }
        Ok(())
    }

    /// `[BOS] ++ ids of the units`.
    fn context(&self, given: &[Unit]) -> ModelResult<Vec<u32>> {
        let mut full: Vec<u32> = self.server.bos.into_iter().collect();
        full.extend(self.ids(given)?);
        if full.is_empty() {
            return Err(invalid(
                "the model has no beginning-of-sequence token, so it needs a non-empty prompt",
            ));
        }
        Ok(full)
    }

    /// Draw `units` units after `ctx` with each generator: one request per draw for as many
    /// tokens as the units can have, cut into units here; a draw that stopped at
    /// end-of-sequence before its units were complete continues with another request.
    /// (Requests carry whole texts rather than one unit each: a server that takes text could
    /// not continue from sampled tokens that are not the tokenizer's own reading of them.)
    /// Each row comes with the sum of its tokens' log-probs as the server sent them, `None`
    /// where some were not sent or not kept (`Server::sends_nothing`).
    fn draw(
        &self,
        ctx: &[u32],
        units: usize,
        rngs: &mut [&mut dyn RngCore],
    ) -> ModelResult<Vec<DrawnText>> {
        let decode = |ids: &[u32]| self.server.tokenizer.decode(ids);
        let eos = &self.server.eos;
        let n = rngs.len();
        let mut stream: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut lps: Vec<Vec<Option<f64>>> = vec![Vec::new(); n];
        let mut done: Vec<Vec<Vec<u32>>> = vec![Vec::new(); n];
        let mut pending: Vec<usize> = if units == 0 {
            Vec::new()
        } else {
            (0..n).collect()
        };
        let capacity = units * self.unit.max_tokens();
        while !pending.is_empty() {
            let mut prompts = Vec::with_capacity(pending.len());
            let mut budgets = Vec::with_capacity(pending.len());
            let mut seeds = Vec::with_capacity(pending.len());
            for &i in &pending {
                let mut p = ctx.to_vec();
                p.extend_from_slice(&stream[i]);
                prompts.push(p);
                budgets.push(capacity - stream[i].len());
                // 31 bits: positive in every server's seed type and never llama.cpp's
                // "random seed" value.
                seeds.push(rngs[i].next_u32() >> 1);
            }
            let got = self.server.complete(&prompts, &budgets, &seeds)?;
            let mut still = Vec::new();
            for ((&i, c), &budget) in pending.iter().zip(got).zip(&budgets) {
                self.check_ids(&c.ids)?;
                if c.ids.is_empty() {
                    return Err(invalid("the server returned no tokens for a completion"));
                }
                stream[i].extend_from_slice(&c.ids);
                lps[i].extend(
                    c.logprobs
                        .iter()
                        .copied()
                        .chain(std::iter::repeat(None))
                        .take(c.ids.len()),
                );
                let mut cut = self.unit.split(&stream[i], eos, &decode);
                if cut.last().is_some_and(|u| !self.unit.ends(u, eos, &decode)) {
                    cut.pop();
                }
                if cut.len() >= units {
                    cut.truncate(units);
                    done[i] = cut;
                } else if c.stopped || c.ids.len() < budget {
                    still.push(i);
                } else {
                    return Err(invalid(format!(
                        "the server returned {} tokens where {budget} were asked, and the units are not complete",
                        c.ids.len()
                    )));
                }
            }
            pending = still;
        }
        let mut memo = self.server.drawn.borrow_mut();
        if memo.len() > DRAWN_LIMIT {
            memo.clear();
        }
        let mut out = Vec::with_capacity(done.len());
        for (row, row_lps) in done.into_iter().zip(&lps) {
            let len: usize = row.iter().map(Vec::len).sum();
            let total = row_lps[..len].iter().copied().sum::<Option<f64>>();
            if let Some(total) = total {
                memo.insert((ctx.to_vec(), row.concat()), total);
            }
            out.push((row, total));
        }
        Ok(out)
    }

    fn run(&self, ids: Vec<u32>) -> Unit {
        Unit::Tokens(TokenRun::new(ids, Some(self.decoder())))
    }
}

impl TokenText for RemoteLm {
    fn ids(&self, units: &[Unit]) -> ModelResult<Vec<u32>> {
        let mut ids = Vec::new();
        for unit in units {
            match unit {
                Unit::Tokens(run) => ids.extend_from_slice(&run.ids),
                Unit::Sentence(s) => ids.extend(self.server.tokenizer.encode(s)?),
            }
        }
        self.check_ids(&ids)?;
        Ok(ids)
    }

    fn prompt(&self, text: &str) -> ModelResult<Vec<Unit>> {
        let ids = self.server.tokenizer.encode(text)?;
        let decode = |ids: &[u32]| self.server.tokenizer.decode(ids);
        Ok(self
            .unit
            .split(&ids, &self.server.eos, &decode)
            .into_iter()
            .map(|u| self.run(u))
            .collect())
    }

    fn decode(&self, ids: &[u32]) -> String {
        self.server.tokenizer.decode(ids)
    }

    fn token_run(&self, ids: Vec<u32>) -> Unit {
        self.run(ids)
    }

    fn batch(&self) -> usize {
        // A progress step (and a run-cache write) per round of requests in flight.
        self.server.options.http.concurrency.max(1) * 4
    }
}

impl LanguageModel for RemoteLm {
    fn name(&self) -> &str {
        &self.name
    }

    fn vocabulary(&self) -> Vocabulary {
        Vocabulary::Tokenizer {
            name: self.server.tokenizer.name(),
            digest: self.server.tokenizer.digest.clone(),
        }
    }

    fn as_tokens(&self) -> Option<&dyn TokenText> {
        Some(self)
    }

    fn describe(&self) -> Option<String> {
        Some(format!(
            "{:?} served by {} at {}, tokenizer {} ({})",
            self.server.options.model,
            self.server.software,
            self.server.options.url,
            self.server.tokenizer.source,
            &self.server.tokenizer.digest[..12.min(self.server.tokenizer.digest.len())]
        ))
    }

    fn cache_identity(&self) -> Option<String> {
        let s = &self.server;
        Some(format!(
            "server {}; model {:?}; {}; mode {:?}; tokenizer {}; bos {:?}; eos {:?}; unit {:?}",
            s.options.url,
            s.options.model,
            s.reported,
            s.mode,
            s.tokenizer.digest,
            s.bos,
            s.eos,
            self.unit
        ))
    }

    fn logprob_next(&self, context: &[Unit], unit: &Unit) -> ModelResult<f64> {
        self.logprob(context, std::slice::from_ref(unit))
    }

    /// Never enumerable: a server gives the log-probs of tokens, not whole distributions.
    fn support(&self, _context: &[Unit]) -> ModelResult<Option<Vec<(Unit, f64)>>> {
        Ok(None)
    }

    fn sample_next(&self, context: &[Unit], rng: &mut dyn RngCore) -> ModelResult<Unit> {
        let ctx = self.context(context)?;
        let mut rows = self.draw(&ctx, 1, &mut [rng])?;
        // Invariant: one generator and one unit give one row of one unit.
        let unit = rows
            .pop()
            .and_then(|(mut row, _)| row.pop())
            .ok_or_else(|| invalid("sampling drew no unit"))?;
        Ok(self.run(unit))
    }

    fn behavior(&self, _unit: &Unit) -> Option<f64> {
        None
    }

    fn logprob(&self, given: &[Unit], text: &[Unit]) -> ModelResult<f64> {
        let scores = self.logprob_many(given, &[text.to_vec()])?;
        Ok(scores.first().copied().unwrap_or(0.0))
    }

    fn logprob_many(&self, given: &[Unit], texts: &[Vec<Unit>]) -> ModelResult<Vec<f64>> {
        let ctx = self.context(given)?;
        let mut out = vec![0.0; texts.len()];
        let mut todo: Vec<(usize, Vec<u32>)> = Vec::new();
        {
            let memo = self.server.drawn.borrow();
            for (i, t) in texts.iter().enumerate() {
                let ids = self.ids(t)?;
                if ids.is_empty() {
                    continue;
                }
                match memo.get(&(ctx.clone(), ids.clone())) {
                    Some(&lp) => out[i] = lp,
                    None => todo.push((i, ids)),
                }
            }
        }
        let fulls: Vec<Vec<u32>> = todo
            .iter()
            .map(|(_, ids)| {
                let mut f = ctx.clone();
                f.extend_from_slice(ids);
                f
            })
            .collect();
        let scored = self.server.score_full(&fulls)?;
        for ((i, ids), row) in todo.iter().zip(scored) {
            // row[k] scores full[k + 1]; the text starts at position ctx.len().
            let start = ctx.len() - 1;
            if row.len() != start + ids.len() {
                return Err(invalid(
                    "the server scored a different number of tokens than sent",
                ));
            }
            out[*i] = row[start..]
                .iter()
                .copied()
                .sum::<Option<f64>>()
                .ok_or_else(|| {
                    ModelError::Unsupported(format!(
                        "{} cannot give the log-prob of a text's first token (it answers null there and reads an explicit \"<s>\" as a second BOS), so texts are scored after a non-empty prompt only; a server that takes token ids can (vLLM: `vllm serve MODEL`)",
                        self.server.software
                    ))
                })?;
        }
        Ok(out)
    }

    fn sample_many(
        &self,
        given: &[Unit],
        units: usize,
        rngs: &mut [ChaCha20Rng],
    ) -> ModelResult<Vec<Vec<Unit>>> {
        let ctx = self.context(given)?;
        let mut refs: Vec<&mut dyn RngCore> =
            rngs.iter_mut().map(|r| r as &mut dyn RngCore).collect();
        let rows = self.draw(&ctx, units, &mut refs)?;
        Ok(rows
            .into_iter()
            .map(|(row, _)| row.into_iter().map(|u| self.run(u)).collect())
            .collect())
    }

    /// The log-probs the server sent with each completion; rows whose log-probs were not
    /// sent or not kept are scored, which says what it cannot.
    fn sample_scored(
        &self,
        given: &[Unit],
        units: usize,
        rngs: &mut [ChaCha20Rng],
    ) -> ModelResult<Scored> {
        let ctx = self.context(given)?;
        let mut refs: Vec<&mut dyn RngCore> =
            rngs.iter_mut().map(|r| r as &mut dyn RngCore).collect();
        let rows = self.draw(&ctx, units, &mut refs)?;
        let mut scored = Scored::default();
        let mut unscored = Vec::new();
        for (i, (row, total)) in rows.into_iter().enumerate() {
            scored
                .texts
                .push(row.into_iter().map(|u| self.run(u)).collect());
            scored.logprobs.push(total.unwrap_or(f64::NAN));
            if total.is_none() {
                unscored.push(i);
            }
        }
        if !unscored.is_empty() {
            let todo: Vec<Vec<Unit>> = unscored.iter().map(|&i| scored.texts[i].clone()).collect();
            for (&i, lp) in unscored.iter().zip(self.logprob_many(given, &todo)?) {
                scored.logprobs[i] = lp;
            }
        }
        Ok(scored)
    }

    fn token_steps_unavailable(&self) -> Option<String> {
        Some(format!(
            "{} is served: a server sends the log-probs of the tokens it chose (at most a few \
             top ones), never whole next-token distributions",
            self.name
        ))
    }

    fn view(
        &self,
        unit: Option<&UnitSpec>,
        sampling: Option<&Sampling>,
    ) -> ModelResult<Option<ModelRef>> {
        let mut out = self.clone();
        if let Some(u) = unit {
            u.validate()?;
            out.unit = u.clone();
        }
        if let Some(s) = sampling
            && *s != Sampling::default()
        {
            return Err(ModelError::Unsupported(
                "a served model samples from its own distribution only (temperature 1, no top-k or top-p): measurements need draws from the model itself".into(),
            ));
        }
        Ok(Some(Rc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_their_host_and_port() {
        assert_eq!(
            host_port("http://127.0.0.1:8000/v1").ok(),
            Some(("127.0.0.1".into(), 8000))
        );
        assert_eq!(
            host_port("http://GPU-3/v1").ok(),
            Some(("gpu-3".into(), 80))
        );
        assert_eq!(host_port("http://[::1]:9/v1").ok(), Some(("::1".into(), 9)));
        assert!(host_port("ftp://x/v1").is_err());
        assert!(host_port("http://user:secret@x:1/v1").is_err());
        assert!(host_port("http://x:port/v1").is_err());
    }

    #[test]
    fn allow_net_names_a_host_or_a_host_and_port() {
        let allowed = vec![
            "127.0.0.1:8000".to_string(),
            "gpu-3".to_string(),
            "[::1]:9".to_string(),
        ];
        assert!(net_allowed(&allowed, "127.0.0.1", 8000));
        assert!(!net_allowed(&allowed, "127.0.0.1", 8001));
        assert!(net_allowed(&allowed, "gpu-3", 1234));
        assert!(net_allowed(&allowed, "::1", 9));
        assert!(!net_allowed(&allowed, "localhost", 8000));
        assert!(!net_allowed(&[], "127.0.0.1", 8000));
    }

    #[test]
    fn excerpts_are_short_and_on_one_line() {
        assert_eq!(http::excerpt("a\nb", 10), "a b");
        assert_eq!(http::excerpt("abcdef", 3), "abc...");
    }
}
