//! Neural language models on candle: a loaded checkpoint ([`NeuralModel`]: weights,
//! tokenizer, prefix cache) seen through a unit spec ([`NeuralLm`], a [`LanguageModel`] whose
//! units are runs of token ids).
//!
//! Texts stay token ids end to end: a context is `[BOS] ++ ids of its units`, a plain string
//! in a text is tokenized on its own, and nothing is decoded and re-encoded. Scores are exact
//! (log-softmax in f64 of the model's f32 logits); sampling is ancestral unless asked
//! otherwise; every sample i uses only its own generator, so batching never changes a draw.

pub mod chat;
pub mod embedding;
pub mod finetune_store;
pub mod kernels;
pub mod load;
pub mod lora;
pub mod prefix_cache;
pub mod quantized;
pub mod random;
pub mod tokenizer;
pub mod train;
pub mod transformer;
pub mod units;

use std::cell::{OnceCell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;

use candle_core::{D, DType, Tensor};
use rand::RngCore;
use rand_chacha::ChaCha20Rng;

pub use load::{GGUF_ARCHITECTURES, HF_ARCHITECTURES, LoadOptions};
pub use units::{Sampling, UnitSpec};

use super::{
    Detokenize, LanguageModel, ModelError, ModelRef, ModelResult, Scored, TokenRun, TokenSteps,
    Unit, Vocabulary,
};
use prefix_cache::{PrefixCache, State};
use tokenizer::TokenizerHandle;
use transformer::{KvState, Transformer, log_softmax_f64};

/// Default prefix-cache budget.
pub const DEFAULT_CACHE_BYTES: usize = 512 << 20;
/// Default number of rows sampled or scored in one forward pass.
pub const DEFAULT_BATCH: usize = 64;
/// Rows × positions × vocabulary of f64 log-probabilities one scoring pass may hold.
const SCORE_BUDGET: usize = 1 << 24;
/// New tokens of a prompt run in one forward pass.
const PROMPT_CHUNK: usize = 256;

/// How a loaded model computes: prefix-cache budget and rows per forward pass (speed and
/// memory; results agree to float rounding).
#[derive(Clone, Debug)]
pub struct ComputeOptions {
    /// Bytes of prefix states kept (0: no cache, every call starts from scratch).
    pub cache_bytes: usize,
    /// Rows per forward pass (1: one sample at a time).
    pub batch: usize,
}

impl Default for ComputeOptions {
    fn default() -> ComputeOptions {
        ComputeOptions {
            cache_bytes: DEFAULT_CACHE_BYTES,
            batch: DEFAULT_BATCH,
        }
    }
}

/// One drawn text: its units' token ids, the model's log-probability of all its tokens, and
/// (when asked for) the next-token distribution before each token.
#[derive(Clone, Debug, Default)]
pub struct DrawnRow {
    pub units: Vec<Vec<u32>>,
    pub logprob: f64,
    pub steps: Vec<Rc<Vec<f64>>>,
}

/// A loaded checkpoint: weights, tokenizer and a cache of prefix states.
pub struct NeuralModel {
    net: Transformer,
    tokenizer: Rc<TokenizerHandle>,
    bos: Option<u32>,
    eos: Vec<u32>,
    format: &'static str,
    files: Vec<PathBuf>,
    parameters: usize,
    sha256: OnceCell<Vec<String>>,
    cache: RefCell<PrefixCache>,
    batch: usize,
    /// How a finetuned or adapted model was derived from its base (`None` when loaded as is).
    origin: Option<Rc<finetune_store::Origin>>,
    /// Its own chat template, or why it has none (where beb looked).
    chat_template: Result<std::sync::Arc<chat::ModelTemplate>, String>,
}

impl std::fmt::Debug for NeuralModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NeuralModel({}, {:?})", self.net.config.arch, self.files)
    }
}

fn model_err(e: candle_core::Error) -> ModelError {
    ModelError::Invalid(format!("model computation failed: {e}"))
}

/// An error when a row of log-probabilities is not a distribution (NaN or +inf logits).
fn check_row(row: &[f64], what: &str) -> ModelResult<()> {
    if row.iter().any(|x| x.is_nan() || *x == f64::INFINITY) {
        return Err(ModelError::Invalid(format!(
            "the model produced NaN or infinite logits {what}; its weights or inputs are broken"
        )));
    }
    Ok(())
}

impl NeuralModel {
    pub fn load(
        path: &std::path::Path,
        options: &LoadOptions,
        compute: &ComputeOptions,
    ) -> ModelResult<NeuralModel> {
        let loaded = load::load(path, options)?;
        let chat_template = load::chat_template(path, options, &loaded).map(std::sync::Arc::new);
        Ok(NeuralModel {
            net: loaded.net,
            tokenizer: Rc::new(loaded.tokenizer),
            bos: loaded.bos,
            eos: loaded.eos,
            format: loaded.format,
            files: loaded.files,
            parameters: loaded.parameters,
            sha256: OnceCell::new(),
            cache: RefCell::new(PrefixCache::new(compute.cache_bytes)),
            batch: compute.batch.max(1),
            origin: None,
            chat_template,
        })
    }

    /// A model that shares this one's tokenizer and settings with a new net (a finetune, or
    /// this model with an adapter).
    fn derive(
        &self,
        net: Transformer,
        files: Vec<PathBuf>,
        parameters: usize,
        origin: finetune_store::Origin,
    ) -> NeuralModel {
        NeuralModel {
            net,
            tokenizer: self.tokenizer.clone(),
            bos: self.bos,
            eos: self.eos.clone(),
            format: self.format,
            files,
            parameters,
            sha256: OnceCell::new(),
            cache: RefCell::new(PrefixCache::new(self.cache.borrow().budget())),
            batch: self.batch,
            origin: Some(Rc::new(origin)),
            chat_template: self.chat_template.clone(),
        }
    }

    /// How this model was derived from a base (finetuned, or with an adapter), if it was.
    pub fn origin(&self) -> Option<&finetune_store::Origin> {
        self.origin.as_deref()
    }

    pub fn config(&self) -> &transformer::Config {
        &self.net.config
    }

    pub fn parameters(&self) -> usize {
        self.parameters
    }

    pub fn format(&self) -> &str {
        self.format
    }

    pub fn dtype(&self) -> DType {
        self.net.dtype
    }

    pub fn device_name(&self) -> String {
        match self.net.device.location() {
            candle_core::DeviceLocation::Cpu => "cpu".into(),
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
        }
    }

    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos(&self) -> &[u32] {
        &self.eos
    }

    /// The chat template named `name`: a built-in one, or (`model`) the model's own; an
    /// error says where beb looked for the model's own and which names exist.
    pub fn chat_template(&self, name: &str) -> ModelResult<chat::Template> {
        if name != chat::MODEL {
            return chat::Template::parse(name).ok_or_else(|| {
                ModelError::Invalid(format!(
                    "chat template {name:?} is not one of {}",
                    chat::names()
                ))
            });
        }
        match &self.chat_template {
            Ok(t) => Ok(chat::Template::Model(t.clone())),
            Err(why) => Err(ModelError::Invalid(format!(
                "the model has no chat template of its own: {why}; use a built-in one \
                 (template: \"{}\")",
                chat::TEMPLATES.join("\", \"")
            ))),
        }
    }

    /// sha256 of each weight file (computed once, on first use).
    pub fn sha256(&self) -> &[String] {
        self.sha256.get_or_init(|| {
            self.files
                .iter()
                .map(|f| {
                    crate::cache::file_sha256(f).unwrap_or_else(|e| format!("unreadable ({e})"))
                })
                .collect()
        })
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// How many texts are sampled or scored together.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The tokenizer's file, when it was read from one (not from GGUF metadata).
    pub fn tokenizer_file(&self) -> Option<PathBuf> {
        let path = PathBuf::from(&self.tokenizer.source);
        path.is_file().then_some(path)
    }

    pub fn tokenizer(&self) -> &Rc<TokenizerHandle> {
        &self.tokenizer
    }

    pub fn vocabulary(&self) -> Vocabulary {
        Vocabulary::Tokenizer {
            name: self.tokenizer.name(),
            digest: self.tokenizer.digest.clone(),
        }
    }

    /// Identity in words: architecture, size, dtype, device, vocabulary, context, weights.
    pub fn identity(&self) -> String {
        let c = &self.net.config;
        let sha = self.sha256();
        let sha = match sha {
            [one] => format!("sha256 {one}"),
            many => format!("sha256 [{}]", many.join(", ")),
        };
        let origin = self
            .origin
            .as_ref()
            .map(|o| format!(" {}", o.describe()))
            .unwrap_or_default();
        format!(
            "{} ({}{origin}), {} parameters, {}, {}, vocab {}, context {}, {sha}",
            c.arch,
            self.format,
            self.parameters,
            dtype_name(self.net.dtype),
            self.device_name(),
            c.vocab,
            c.context
        )
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        self.tokenizer.decode(ids)
    }

    pub fn encode(&self, text: &str) -> ModelResult<Vec<u32>> {
        let ids = self.tokenizer.encode(text)?;
        self.check_ids(&ids)?;
        Ok(ids)
    }

    fn check_ids(&self, ids: &[u32]) -> ModelResult<()> {
        let vocab = self.net.config.vocab;
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= vocab) {
            return Err(ModelError::Invalid(format!(
                "token id {bad} is outside the model's vocabulary of {vocab}"
            )));
        }
        Ok(())
    }

    fn check_length(&self, tokens: usize, what: &str) -> ModelResult<()> {
        let context = self.net.config.context;
        if tokens > context {
            return Err(ModelError::Invalid(format!(
                "{what} needs {tokens} tokens, more than the context window of {context} tokens (texts are never truncated)"
            )));
        }
        Ok(())
    }

    /// `[BOS] ++ ids`: the context the model reads.
    fn context(&self, ids: Vec<u32>) -> ModelResult<Vec<u32>> {
        let mut full: Vec<u32> = self.bos.into_iter().collect();
        full.extend(ids);
        if full.is_empty() {
            return Err(ModelError::Invalid(
                "the model has no beginning-of-sequence token, so it needs a non-empty prompt"
                    .into(),
            ));
        }
        self.check_ids(&full)?;
        Ok(full)
    }

    fn forward(
        &self,
        tokens: &[u32],
        batch: usize,
        past: &KvState,
    ) -> ModelResult<(Tensor, KvState)> {
        self.net.forward(tokens, batch, past).map_err(model_err)
    }

    /// The state after reading `ids` (at least one), from the longest cached prefix; kept
    /// in the cache when `keep`.
    pub fn state(&self, ids: &[u32], keep: bool) -> ModelResult<State> {
        if ids.is_empty() {
            return Err(ModelError::Invalid(
                "a context needs at least one token".into(),
            ));
        }
        self.check_length(ids.len(), "the prompt")?;
        let found = if self.cache.borrow().enabled() {
            self.cache.borrow_mut().longest_prefix(ids, 1)
        } else {
            None
        };
        let (mut start, mut state) = match found {
            Some((n, st)) if n == ids.len() => return Ok(st),
            Some((n, st)) => (n, Some(st)),
            None => (0, None),
        };
        let mut cumulative = state.as_ref().map_or(0.0, |s| s.cumulative);
        while start < ids.len() {
            let end = (start + PROMPT_CHUNK).min(ids.len());
            let chunk = &ids[start..end];
            let past = state
                .as_ref()
                .map_or_else(|| KvState::empty(1), |s| s.kv.clone());
            if let Some(s) = &state {
                cumulative += s.next[chunk[0] as usize];
            }
            let (logits, kv) = self.forward(chunk, 1, &past)?;
            let ls = log_softmax_f64(&logits.squeeze(0).map_err(model_err)?).map_err(model_err)?;
            let m = chunk.len();
            if m > 1 {
                let targets: Vec<u32> = chunk[1..].to_vec();
                let targets =
                    Tensor::from_vec(targets, (m - 1, 1), &self.net.device).map_err(model_err)?;
                let picked: Vec<f64> = ls
                    .narrow(0, 0, m - 1)
                    .and_then(|x| x.gather(&targets, 1))
                    .and_then(|x| x.flatten_all())
                    .and_then(|x| x.to_vec1())
                    .map_err(model_err)?;
                check_row(&picked, "on the prompt")?;
                cumulative += picked.iter().sum::<f64>();
            }
            let next: Vec<f64> = ls.get(m - 1).and_then(|x| x.to_vec1()).map_err(model_err)?;
            check_row(&next, "on the prompt")?;
            state = Some(State {
                kv,
                next: Rc::new(next),
                cumulative,
            });
            start = end;
        }
        // Invariant: ids is non-empty and not fully cached, so the loop ran at least once.
        let state = state.ok_or_else(|| ModelError::Invalid("empty context".into()))?;
        if keep {
            self.cache.borrow_mut().insert(ids, &state);
        }
        Ok(state)
    }

    /// The next-token log-probabilities after `ctx` (cached).
    pub fn next_logprobs(&self, ctx: &[u32]) -> ModelResult<Rc<Vec<f64>>> {
        Ok(self.state(ctx, true)?.next)
    }

    /// log P(text | ctx) for each text, in batches from one shared state of `ctx`.
    pub fn score(&self, ctx: &[u32], texts: &[Vec<u32>]) -> ModelResult<Vec<f64>> {
        let root = self.state(ctx, true)?;
        let mut out = vec![0.0; texts.len()];
        let order = self.checked_order(ctx, texts)?;
        for &i in &order {
            out[i] = root.next[texts[i][0] as usize];
        }
        self.text_passes(&root, texts, order, |group, t, logits| {
            let mut targets = Vec::with_capacity(group.len() * t);
            for &i in group {
                targets.extend((0..t).map(|j| texts[i].get(j + 1).copied().unwrap_or(0)));
            }
            let targets = Tensor::from_vec(targets, (group.len(), t, 1), &self.net.device)
                .map_err(model_err)?;
            let picked: Vec<Vec<f64>> = log_softmax_f64(logits)
                .and_then(|ls| ls.gather(&targets, D::Minus1))
                .and_then(|x| x.squeeze(2))
                .and_then(|x| x.to_vec2())
                .map_err(model_err)?;
            for (r, &i) in group.iter().enumerate() {
                let n = texts[i].len() - 1;
                let row = &picked[r][..n];
                check_row(row, "while scoring")?;
                out[i] += row.iter().sum::<f64>();
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The texts' indices, non-empty ones only, shortest first (similar lengths share a
    /// batch, so padding wastes little), once every text's ids and length are checked.
    fn checked_order(&self, ctx: &[u32], texts: &[Vec<u32>]) -> ModelResult<Vec<usize>> {
        let mut order: Vec<usize> = (0..texts.len()).filter(|&i| !texts[i].is_empty()).collect();
        order.sort_by_key(|&i| texts[i].len());
        for &i in &order {
            self.check_ids(&texts[i])?;
            self.check_length(ctx.len() + texts[i].len() - 1, "the text")?;
        }
        Ok(order)
    }

    /// The padded forward passes `score` and `steps` share: the texts of `order` with more
    /// than one token, in groups of up to `batch` rows (fewer where a group's logits would
    /// pass the score budget), each continuing `root`; `each` gets a group's text indices,
    /// its width t (tokens per row) and its logits.
    fn text_passes(
        &self,
        root: &State,
        texts: &[Vec<u32>],
        order: Vec<usize>,
        mut each: impl FnMut(&[usize], usize, &Tensor) -> ModelResult<()>,
    ) -> ModelResult<()> {
        let vocab = self.net.config.vocab;
        let long: Vec<usize> = order.into_iter().filter(|&i| texts[i].len() > 1).collect();
        let mut k = 0;
        while k < long.len() {
            let width = texts[long[(k + self.batch).min(long.len()) - 1]].len() - 1;
            let rows = self
                .batch
                .min((SCORE_BUDGET / (width * vocab).max(1)).max(1))
                .min(long.len() - k);
            let group = &long[k..k + rows];
            let t = texts[group[rows - 1]].len() - 1;
            let mut tokens = Vec::with_capacity(rows * t);
            for &i in group {
                tokens.extend((0..t).map(|j| texts[i].get(j).copied().unwrap_or(0)));
            }
            let past = root.kv.fan_out(rows).map_err(model_err)?;
            let (logits, _) = self.forward(&tokens, rows, &past)?;
            each(group, t, &logits)?;
            k += rows;
        }
        Ok(())
    }

    /// Draw `units` units after `ctx` for each generator; per row, the units' token ids.
    pub fn sample(
        &self,
        ctx: &[u32],
        units: usize,
        spec: &UnitSpec,
        sampling: &Sampling,
        rngs: &mut [ChaCha20Rng],
    ) -> ModelResult<Vec<Vec<Vec<u32>>>> {
        Ok(self
            .sample_scored(ctx, units, spec, sampling, rngs, false)?
            .into_iter()
            .map(|row| row.units)
            .collect())
    }

    /// [`sample`](NeuralModel::sample), each row with the model's own log-probability of its
    /// tokens (the untransformed distribution's, whatever `sampling` draws with: what
    /// [`score`](NeuralModel::score) computes, to float rounding) and, when `keep_steps`, the
    /// next-token distribution before each of its tokens. Both come from the sampling pass.
    pub fn sample_scored(
        &self,
        ctx: &[u32],
        units: usize,
        spec: &UnitSpec,
        sampling: &Sampling,
        rngs: &mut [ChaCha20Rng],
        keep_steps: bool,
    ) -> ModelResult<Vec<DrawnRow>> {
        let mut out: Vec<DrawnRow> = Vec::with_capacity(rngs.len());
        if units == 0 {
            return Ok(rngs.iter().map(|_| DrawnRow::default()).collect());
        }
        let root = self.state(ctx, true)?;
        for chunk in rngs.chunks_mut(self.batch) {
            // A root state is always a single row without a shared part, so it fans out.
            let start = State {
                kv: root.kv.fan_out(chunk.len()).map_err(model_err)?,
                next: root.next.clone(),
                cumulative: root.cumulative,
            };
            out.extend(self.draw_units(
                ctx.len(),
                start,
                units,
                spec,
                sampling,
                chunk,
                keep_steps,
            )?);
        }
        Ok(out)
    }

    /// For each text, the next-token log-probabilities after `ctx` ++ its earlier tokens,
    /// before each of its tokens (one vector per token): the teacher-forced pass of exact
    /// per-step divergences, in batches from one shared state of `ctx` as in `score`.
    pub fn steps(&self, ctx: &[u32], texts: &[Vec<u32>]) -> ModelResult<Vec<Vec<Rc<Vec<f64>>>>> {
        let root = self.state(ctx, true)?;
        let mut out: Vec<Vec<Rc<Vec<f64>>>> = vec![Vec::new(); texts.len()];
        let order = self.checked_order(ctx, texts)?;
        for &i in &order {
            out[i].push(root.next.clone());
        }
        self.text_passes(&root, texts, order, |group, _, logits| {
            let all: Vec<Vec<Vec<f64>>> = log_softmax_f64(logits)
                .and_then(|x| x.to_vec3())
                .map_err(model_err)?;
            for (per_row, &i) in all.into_iter().zip(group) {
                let n = texts[i].len() - 1;
                for row in per_row.into_iter().take(n) {
                    check_row(&row, "while scoring")?;
                    out[i].push(Rc::new(row));
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The token-drawing loop of all sampling: `units` units per generator, every row
    /// continuing `start` (a state of `rngs.len()` rows after `ctx_len` tokens), one token per
    /// forward pass for the rows still drawing, each row drawn with its own generator alone.
    /// Each row also sums the model's log-probability of the tokens it drew (from the
    /// distributions the draw already computed, before any temperature or truncation) and,
    /// when `keep_steps`, keeps those distributions.
    #[allow(clippy::too_many_arguments)]
    fn draw_units<R: RngCore>(
        &self,
        ctx_len: usize,
        start: State,
        units: usize,
        spec: &UnitSpec,
        sampling: &Sampling,
        rngs: &mut [R],
        keep_steps: bool,
    ) -> ModelResult<Vec<DrawnRow>> {
        let decode = |ids: &[u32]| self.tokenizer.decode(ids);
        let b = rngs.len();
        let mut done: Vec<DrawnRow> = vec![DrawnRow::default(); b];
        let mut current: Vec<Vec<u32>> = vec![Vec::new(); b];
        let mut active: Vec<usize> = (0..b).collect();
        let mut dists: Vec<Rc<Vec<f64>>> = vec![start.next; b];
        let mut kv = start.kv;
        let mut step = 0usize;
        loop {
            let mut still = Vec::with_capacity(active.len());
            let mut last = Vec::with_capacity(active.len());
            for (a, &r) in active.iter().enumerate() {
                let token = if sampling.is_ancestral() {
                    units::draw(&dists[a], &mut rngs[r])?
                } else {
                    units::draw(&sampling.transform(&dists[a]), &mut rngs[r])?
                };
                let row = &mut done[r];
                row.logprob += dists[a][token as usize];
                if keep_steps {
                    row.steps.push(dists[a].clone());
                }
                current[r].push(token);
                if spec.ends(&current[r], &self.eos, &decode) {
                    row.units.push(std::mem::take(&mut current[r]));
                }
                if row.units.len() < units {
                    still.push((a, r));
                    last.push(token);
                }
            }
            if still.is_empty() {
                return Ok(done);
            }
            step += 1;
            self.check_length(ctx_len + step, "sampling after this prompt")?;
            if still.len() < active.len() {
                let keep: Vec<u32> = still.iter().map(|&(a, _)| a as u32).collect();
                kv = kv.select(&keep).map_err(model_err)?;
            }
            let (logits, next_kv) = self.forward(&last, still.len(), &kv)?;
            let rows: Vec<Vec<f64>> = log_softmax_f64(&logits)
                .and_then(|x| x.squeeze(1))
                .and_then(|x| x.to_vec2())
                .map_err(model_err)?;
            dists = Vec::with_capacity(rows.len());
            for row in rows {
                check_row(&row, "while sampling")?;
                dists.push(Rc::new(row));
            }
            kv = next_kv;
            active = still.into_iter().map(|(_, r)| r).collect();
        }
    }

    /// log P(ids[i + 1] | ids[..=i]) for every position, from one forward pass from scratch
    /// (no cache): the reference computation the cached paths are tested against.
    pub fn token_logprobs(&self, ids: &[u32]) -> ModelResult<Vec<f64>> {
        self.check_ids(ids)?;
        self.check_length(ids.len(), "the text")?;
        if ids.len() < 2 {
            return Ok(Vec::new());
        }
        let (logits, _) = self.forward(&ids[..ids.len() - 1], 1, &KvState::empty(1))?;
        let targets = Tensor::from_vec(ids[1..].to_vec(), (1, ids.len() - 1, 1), &self.net.device)
            .map_err(model_err)?;
        let out: Vec<f64> = log_softmax_f64(&logits)
            .and_then(|ls| ls.gather(&targets, D::Minus1))
            .and_then(|x| x.flatten_all())
            .and_then(|x| x.to_vec1())
            .map_err(model_err)?;
        check_row(&out, "while scoring")?;
        Ok(out)
    }

    /// The hidden state of the last token of `[BOS] ++ ids` for each text, at `layer` (`None`:
    /// after the final norm, what the LM head reads; `Some(k)`: after block k, 0 the
    /// embeddings). Read from scratch in batches of similar lengths, padded on the right,
    /// which causal attention never lets change an earlier position.
    pub fn hidden_states(
        &self,
        texts: &[Vec<u32>],
        layer: Option<usize>,
    ) -> ModelResult<Vec<Vec<f32>>> {
        let c = &self.net.config;
        if let Some(k) = layer.filter(|&k| k > c.layers) {
            return Err(ModelError::Invalid(format!(
                "layer {k} does not exist: the model has {} blocks (layers 0 to {0}, or -1 after the final norm)",
                c.layers
            )));
        }
        let contexts: Vec<Vec<u32>> = texts
            .iter()
            .map(|ids| {
                let full = self.context(ids.clone())?;
                self.check_length(full.len(), "the text")?;
                Ok(full)
            })
            .collect::<ModelResult<_>>()?;
        let mut order: Vec<usize> = (0..contexts.len()).collect();
        order.sort_by_key(|&i| contexts[i].len());
        let mut out = vec![Vec::new(); contexts.len()];
        let mut k = 0;
        while k < order.len() {
            let width = contexts[order[(k + self.batch).min(order.len()) - 1]].len();
            // Activations per row: t x (intermediate or heads x t) numbers.
            let per_row = width * c.intermediate.max(c.heads * width).max(c.hidden);
            let rows = self
                .batch
                .min((SCORE_BUDGET / per_row.max(1)).max(1))
                .min(order.len() - k);
            let group = &order[k..k + rows];
            let t = contexts[group[rows - 1]].len();
            let mut tokens = Vec::with_capacity(rows * t);
            let mut last = Vec::with_capacity(rows);
            for (r, &i) in group.iter().enumerate() {
                let ctx = &contexts[i];
                tokens.extend((0..t).map(|j| ctx.get(j).copied().unwrap_or(0)));
                last.push((r * t + ctx.len() - 1) as u32);
            }
            let x = self.net.hidden(&tokens, rows, layer).map_err(model_err)?;
            let last = Tensor::from_vec(last, rows, &self.net.device).map_err(model_err)?;
            let picked: Vec<Vec<f32>> = x
                .reshape((rows * t, c.hidden))
                .and_then(|x| x.index_select(&last, 0))
                .and_then(|x| x.to_vec2())
                .map_err(model_err)?;
            for (row, &i) in picked.into_iter().zip(group) {
                if row.iter().any(|v| !v.is_finite()) {
                    return Err(ModelError::Invalid(
                        "the model produced NaN or infinite hidden states; its weights or inputs are broken".into(),
                    ));
                }
                out[i] = row;
            }
            k += rows;
        }
        Ok(out)
    }

    /// Drop every cached prefix state.
    pub fn clear_cache(&self) {
        self.cache.borrow_mut().clear();
    }

    /// (hits, misses, entries) of the prefix cache.
    pub fn cache_stats(&self) -> (u64, u64, usize) {
        let c = self.cache.borrow();
        (c.hits, c.misses, c.len())
    }
}

fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::F64 => "f64",
        _ => "other",
    }
}

/// A neural model cut into units and sampled in a given way: the [`LanguageModel`] scripts
/// measure.
#[derive(Debug, Clone)]
pub struct NeuralLm {
    name: String,
    model: Rc<NeuralModel>,
    unit: UnitSpec,
    sampling: Sampling,
}

impl NeuralLm {
    pub fn new(name: impl Into<String>, model: Rc<NeuralModel>, unit: UnitSpec) -> NeuralLm {
        NeuralLm {
            name: name.into(),
            model,
            unit,
            sampling: Sampling::default(),
        }
    }

    pub fn model(&self) -> &Rc<NeuralModel> {
        &self.model
    }

    pub fn unit(&self) -> &UnitSpec {
        &self.unit
    }

    pub fn sampling(&self) -> &Sampling {
        &self.sampling
    }

    fn decoder(&self) -> Rc<dyn Detokenize> {
        self.model.tokenizer.clone()
    }

    /// A unit of these token ids, printable with this model's tokenizer.
    pub fn run(&self, ids: Vec<u32>) -> Unit {
        Unit::Tokens(TokenRun::new(ids, Some(self.decoder())))
    }

    /// The token ids of a text (plain sentences are tokenized on their own).
    pub fn ids(&self, units: &[Unit]) -> ModelResult<Vec<u32>> {
        let mut ids = Vec::new();
        for unit in units {
            match unit {
                Unit::Tokens(run) => ids.extend_from_slice(&run.ids),
                Unit::Sentence(s) => ids.extend(self.model.tokenizer.encode(s)?),
            }
        }
        self.model.check_ids(&ids)?;
        Ok(ids)
    }

    /// A string as a text of units: tokenized once, then cut by the unit rule.
    pub fn prompt(&self, text: &str) -> ModelResult<Vec<Unit>> {
        let ids = self.model.encode(text)?;
        self.split_ids(&ids)
    }

    /// Token ids as a text of units, cut by the unit rule.
    pub fn split_ids(&self, ids: &[u32]) -> ModelResult<Vec<Unit>> {
        self.model.check_ids(ids)?;
        self.model.check_length(ids.len() + 1, "the prompt")?;
        let decode = |ids: &[u32]| self.model.decode(ids);
        Ok(self
            .unit
            .split(ids, &self.model.eos, &decode)
            .into_iter()
            .map(|u| self.run(u))
            .collect())
    }

    fn context(&self, given: &[Unit]) -> ModelResult<Vec<u32>> {
        self.model.context(self.ids(given)?)
    }

    /// The exact next-token distribution after `given` (natural logs over the vocabulary).
    pub fn next_token_logprobs(&self, given: &[Unit]) -> ModelResult<Rc<Vec<f64>>> {
        let next = self.model.next_logprobs(&self.context(given)?)?;
        if self.sampling.is_ancestral() {
            Ok(next)
        } else {
            Ok(Rc::new(self.sampling.transform(&next)))
        }
    }
}

impl NeuralLm {
    /// One unit after `context` with `rng`, with the model's log-probability of its tokens
    /// and (when `keep_steps`) their next-token distributions: the unbatched draw.
    fn draw_one(
        &self,
        context: &[Unit],
        rng: &mut dyn RngCore,
        keep_steps: bool,
    ) -> ModelResult<(Unit, f64, TokenSteps)> {
        let ctx = self.context(context)?;
        let state = self.model.state(&ctx, true)?;
        let mut rows = self.model.draw_units(
            ctx.len(),
            state,
            1,
            &self.unit,
            &self.sampling,
            std::slice::from_mut(&mut &mut *rng),
            keep_steps,
        )?;
        // Invariant: one generator and one unit give one row of one unit.
        let row = rows
            .pop()
            .ok_or_else(|| ModelError::Invalid("sampling drew no unit".into()))?;
        let unit = row
            .units
            .into_iter()
            .next()
            .ok_or_else(|| ModelError::Invalid("sampling drew no unit".into()))?;
        Ok((self.run(unit), row.logprob, row.steps))
    }

    /// Texts with their log-probabilities (and steps when `keep_steps`) as `sample_many`
    /// draws them: batched, or one unit at a time when the batch is 1.
    fn draw_scored(
        &self,
        given: &[Unit],
        units: usize,
        rngs: &mut [ChaCha20Rng],
        keep_steps: bool,
    ) -> ModelResult<(Scored, Vec<TokenSteps>)> {
        if !self.sampling.is_ancestral() {
            return Err(self.not_the_model());
        }
        let mut scored = Scored::default();
        let mut steps = Vec::with_capacity(rngs.len());
        if self.model.batch == 1 {
            for rng in rngs.iter_mut() {
                let mut context = given.to_vec();
                let (mut total, mut row_steps) = (0.0, Vec::new());
                for _ in 0..units {
                    let (unit, lp, s) = self.draw_one(&context, rng, keep_steps)?;
                    total += lp;
                    row_steps.extend(s);
                    context.push(unit);
                }
                scored.texts.push(context.split_off(given.len()));
                scored.logprobs.push(total);
                steps.push(row_steps);
            }
            return Ok((scored, steps));
        }
        let ctx = self.context(given)?;
        let rows =
            self.model
                .sample_scored(&ctx, units, &self.unit, &self.sampling, rngs, keep_steps)?;
        for row in rows {
            scored
                .texts
                .push(row.units.into_iter().map(|u| self.run(u)).collect());
            scored.logprobs.push(row.logprob);
            steps.push(row.steps);
        }
        Ok((scored, steps))
    }

    /// Why a view that samples with temperature, top-k or top-p has no scores.
    fn not_the_model(&self) -> ModelError {
        ModelError::Unsupported(
            "scores are of the model itself: drop temperature/top_k/top_p to score".into(),
        )
    }
}

impl super::TokenText for NeuralLm {
    fn ids(&self, units: &[Unit]) -> ModelResult<Vec<u32>> {
        NeuralLm::ids(self, units)
    }

    fn prompt(&self, text: &str) -> ModelResult<Vec<Unit>> {
        NeuralLm::prompt(self, text)
    }

    fn decode(&self, ids: &[u32]) -> String {
        self.model.decode(ids)
    }

    fn token_run(&self, ids: Vec<u32>) -> Unit {
        self.run(ids)
    }

    fn batch(&self) -> usize {
        self.model.batch()
    }
}

impl LanguageModel for NeuralLm {
    fn name(&self) -> &str {
        &self.name
    }

    fn vocabulary(&self) -> Vocabulary {
        self.model.vocabulary()
    }

    fn as_neural(&self) -> Option<&NeuralLm> {
        Some(self)
    }

    fn describe(&self) -> Option<String> {
        Some(self.model.identity())
    }

    fn cache_identity(&self) -> Option<String> {
        let digest = match self.model.vocabulary() {
            Vocabulary::Tokenizer { digest, .. } => digest,
            Vocabulary::Sentences => String::new(),
        };
        Some(format!(
            "{}; tokenizer {digest}; bos {:?}; eos {:?}; unit {:?}; sampling {:?}",
            self.model.identity(),
            self.model.bos,
            self.model.eos,
            self.unit,
            self.sampling
        ))
    }

    fn logprob_next(&self, context: &[Unit], unit: &Unit) -> ModelResult<f64> {
        self.logprob(context, std::slice::from_ref(unit))
    }

    /// Enumerable only when a unit is one token: then it is the next-token distribution.
    fn support(&self, context: &[Unit]) -> ModelResult<Option<Vec<(Unit, f64)>>> {
        if self.unit != UnitSpec::Tokens(1) {
            return Ok(None);
        }
        let next = self.next_token_logprobs(context)?;
        Ok(Some(
            next.iter()
                .enumerate()
                .filter(|(_, lp)| **lp > f64::NEG_INFINITY)
                .map(|(i, lp)| (self.run(vec![i as u32]), *lp))
                .collect(),
        ))
    }

    fn sample_next(&self, context: &[Unit], rng: &mut dyn RngCore) -> ModelResult<Unit> {
        Ok(self.draw_one(context, rng, false)?.0)
    }

    fn behavior(&self, _unit: &Unit) -> Option<f64> {
        None
    }

    fn logprob(&self, given: &[Unit], text: &[Unit]) -> ModelResult<f64> {
        let scores = self.logprob_many(given, &[text.to_vec()])?;
        Ok(scores.first().copied().unwrap_or(0.0))
    }

    fn logprob_many(&self, given: &[Unit], texts: &[Vec<Unit>]) -> ModelResult<Vec<f64>> {
        if !self.sampling.is_ancestral() {
            return Err(self.not_the_model());
        }
        let ctx = self.context(given)?;
        let ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.ids(t))
            .collect::<ModelResult<_>>()?;
        if self.model.batch == 1 {
            // One text at a time (the unbatched path).
            let mut out = Vec::with_capacity(ids.len());
            for t in &ids {
                out.extend(self.model.score(&ctx, std::slice::from_ref(t))?);
            }
            return Ok(out);
        }
        self.model.score(&ctx, &ids)
    }

    /// The log-probabilities the draw computed (of the model itself: a view that samples with
    /// temperature, top-k or top-p refuses, as its `logprob` does).
    fn sample_scored(
        &self,
        given: &[Unit],
        units: usize,
        rngs: &mut [ChaCha20Rng],
    ) -> ModelResult<Scored> {
        Ok(self.draw_scored(given, units, rngs, false)?.0)
    }

    fn token_steps_unavailable(&self) -> Option<String> {
        (!self.sampling.is_ancestral()).then(|| {
            format!(
                "{} samples with temperature, top_k or top_p, which is not the model's own distribution",
                self.name
            )
        })
    }

    fn token_steps(&self, given: &[Unit], texts: &[Vec<Unit>]) -> ModelResult<Vec<TokenSteps>> {
        if !self.sampling.is_ancestral() {
            return Err(self.not_the_model());
        }
        let ctx = self.context(given)?;
        let ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.ids(t))
            .collect::<ModelResult<_>>()?;
        self.model.steps(&ctx, &ids)
    }

    /// The distributions the draw computed, kept instead of computed again.
    fn sample_with_steps(
        &self,
        given: &[Unit],
        units: usize,
        rngs: &mut [ChaCha20Rng],
    ) -> ModelResult<(Scored, Vec<TokenSteps>)> {
        self.draw_scored(given, units, rngs, true)
    }

    fn sample_many(
        &self,
        given: &[Unit],
        units: usize,
        rngs: &mut [ChaCha20Rng],
    ) -> ModelResult<Vec<Vec<Unit>>> {
        if self.model.batch == 1 {
            return crate::lm::sample_one_by_one(self, given, units, rngs);
        }
        let ctx = self.context(given)?;
        let rows = self
            .model
            .sample(&ctx, units, &self.unit, &self.sampling, rngs)?;
        Ok(rows
            .into_iter()
            .map(|row| row.into_iter().map(|u| self.run(u)).collect())
            .collect())
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
        if let Some(s) = sampling {
            s.validate()?;
            out.sampling = s.clone();
        }
        Ok(Some(Rc::new(out)))
    }
}
