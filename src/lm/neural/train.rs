//! Finetuning a loaded model by next-token loss: full finetuning or LoRA, AdamW (candle-nn),
//! candle's autograd through the differentiable form of the forward pass
//! (`Transformer::differentiable`).
//!
//! The procedure follows the paper's (appendix J and its code, which uses the Hugging Face
//! `Trainer` defaults): AdamW with betas (0.9, 0.999), eps 1e-8 and decoupled weight decay
//! (not on norms and biases); the learning rate decays linearly to zero over the run; the
//! gradient's global norm is clipped to 1; each epoch visits the texts in a seeded random
//! order, in batches padded on the right, the loss being the mean over the batch's real
//! target tokens. LoRA matrices start as in PEFT: A uniform in ±1/sqrt(fan_in), B zero.
//!
//! Results are cached by `finetune_store`: the same request again loads the stored folder
//! instead of training.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{D, DType, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use serde_json::Value as Json;

use super::chat::{self, TrainingText};
use super::finetune_store;
use super::lora::{self, Adapter, LowRank};
use super::transformer::{KvState, Linear, Transformer};
use super::{NeuralModel, model_err};
use crate::lm::{ModelError, ModelResult};

// Re-exported so that callers keep one path to everything about finetunes.
pub use super::finetune_store::{FULL_WEIGHTS, MANIFEST, Origin, cache_key};
pub use super::lora::with_adapter;

/// Bumped when training changes in a way that changes its results (part of the cache key).
pub const TRAINING_VERSION: u32 = 1;
/// The global gradient norm is clipped to this (the Hugging Face Trainer's default).
pub const MAX_GRAD_NORM: f64 = 1.0;

/// What is trained.
#[derive(Clone, Debug, PartialEq)]
pub enum Method {
    /// Every weight of the model.
    Full,
    /// A low-rank adapter on the target modules; the base weights stay frozen.
    Lora {
        rank: usize,
        alpha: f64,
        targets: Vec<String>,
    },
}

impl Method {
    pub fn name(&self) -> &'static str {
        match self {
            Method::Full => "full",
            Method::Lora { .. } => "lora",
        }
    }
}

/// How the learning rate moves over the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// From `lr` down to zero, step by step (the Hugging Face default).
    Linear,
    Constant,
}

impl Schedule {
    pub fn parse(name: &str) -> Option<Schedule> {
        match name {
            "linear" => Some(Schedule::Linear),
            "constant" => Some(Schedule::Constant),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Schedule::Linear => "linear",
            Schedule::Constant => "constant",
        }
    }
}

/// The hyperparameters of a finetune.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub method: Method,
    pub epochs: usize,
    pub lr: f64,
    pub batch: usize,
    pub weight_decay: f64,
    pub schedule: Schedule,
    /// The 256-bit seed of the run's generator (shuffling, adapter initialisation).
    pub seed: [u8; 32],
}

/// A finetune to run: the options, the training texts as token ids (without BOS; the model's
/// BOS is put before each), a description of the data for the record, and where results are
/// cached.
pub struct Request {
    pub options: TrainOptions,
    pub texts: Vec<Vec<u32>>,
    pub data: Json,
    pub cache_root: PathBuf,
}

/// Progress of a run, reported after every optimizer step.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    pub epoch: usize,
    pub epochs: usize,
    /// Steps done so far (all epochs), out of `steps`.
    pub step: usize,
    pub steps: usize,
    /// This step's mean loss per target token.
    pub loss: f64,
}

fn invalid(message: impl Into<String>) -> ModelError {
    ModelError::Invalid(message.into())
}

// ---------------------------------------------------------------- parameters by name

/// A dense parameter of the model.
#[derive(Clone, Debug)]
pub(super) enum Slot {
    Embed,
    Norm,
    Head,
    AttnNorm(usize),
    MlpNorm(usize),
    Weight(usize, &'static str),
    Bias(usize, &'static str),
}

impl Slot {
    /// The Hugging Face name of the parameter.
    pub(super) fn name(&self) -> String {
        let block = |t: &str| match t {
            "gate_proj" | "up_proj" | "down_proj" => "mlp",
            _ => "self_attn",
        };
        match self {
            Slot::Embed => "model.embed_tokens.weight".into(),
            Slot::Norm => "model.norm.weight".into(),
            Slot::Head => "lm_head.weight".into(),
            Slot::AttnNorm(l) => format!("model.layers.{l}.input_layernorm.weight"),
            Slot::MlpNorm(l) => format!("model.layers.{l}.post_attention_layernorm.weight"),
            Slot::Weight(l, t) => format!("model.layers.{l}.{}.{t}.weight", block(t)),
            Slot::Bias(l, t) => format!("model.layers.{l}.{}.{t}.bias", block(t)),
        }
    }

    /// Weight decay applies to weights, not to norms and biases (as in the Hugging Face
    /// Trainer).
    fn decays(&self) -> bool {
        matches!(self, Slot::Embed | Slot::Head | Slot::Weight(..))
    }
}

/// Whether the output layer reads the embedding matrix itself.
fn tied(net: &Transformer) -> bool {
    net.head
        .dense_weight()
        .is_some_and(|w| net.embed.dense().is_some_and(|e| w.id() == e.id()))
}

/// Every dense parameter of `net` (the output layer only when not tied to the embeddings);
/// an error when some weight is quantized.
pub(super) fn slots(net: &Transformer) -> ModelResult<Vec<Slot>> {
    let quantized = |what: String| {
        ModelError::Unsupported(format!(
            "{what} is quantized: finetuning needs float weights (load a safetensors, llama2.c or float GGUF checkpoint)"
        ))
    };
    if net.embed.dense().is_none() {
        return Err(quantized("the token embedding".into()));
    }
    let mut out = vec![Slot::Embed];
    for (l, layer) in net.layers.iter().enumerate() {
        out.push(Slot::AttnNorm(l));
        out.push(Slot::MlpNorm(l));
        for t in lora::TARGETS {
            let lin = lora::linear(layer, t).ok_or_else(|| invalid("unknown module"))?;
            if lin.dense_weight().is_none() {
                return Err(quantized(format!("layer {l} {t}")));
            }
            out.push(Slot::Weight(l, t));
            if lin.bias().is_some() {
                out.push(Slot::Bias(l, t));
            }
        }
    }
    out.push(Slot::Norm);
    if net.head.dense_weight().is_none() {
        return Err(quantized("the output layer".into()));
    }
    if !tied(net) {
        out.push(Slot::Head);
        if net.head.bias().is_some() {
            return Err(ModelError::Unsupported(
                "an output layer with a bias cannot be finetuned".into(),
            ));
        }
    }
    Ok(out)
}

pub(super) fn get(net: &Transformer, slot: &Slot) -> Option<Tensor> {
    match slot {
        Slot::Embed => net.embed.dense().cloned(),
        Slot::Norm => Some(net.norm.clone()),
        Slot::Head => net.head.dense_weight().cloned(),
        Slot::AttnNorm(l) => net.layers.get(*l).map(|x| x.attn_norm.clone()),
        Slot::MlpNorm(l) => net.layers.get(*l).map(|x| x.mlp_norm.clone()),
        Slot::Weight(l, t) => lora::linear(net.layers.get(*l)?, t)?
            .dense_weight()
            .cloned(),
        Slot::Bias(l, t) => lora::linear(net.layers.get(*l)?, t)?.bias().cloned(),
    }
}

/// Put `value` in `slot` (keeping a tied output layer tied to the embeddings).
pub(super) fn set(net: &mut Transformer, slot: &Slot, value: Tensor) -> ModelResult<()> {
    let missing = || invalid(format!("the model has no parameter {}", slot.name()));
    match slot {
        Slot::Embed => {
            if tied(net) {
                net.head = Linear::dense(value.clone(), None);
            }
            net.embed = value.into();
        }
        Slot::Norm => net.norm = value,
        Slot::Head => net.head = Linear::dense(value, None),
        Slot::AttnNorm(l) => net.layers.get_mut(*l).ok_or_else(missing)?.attn_norm = value,
        Slot::MlpNorm(l) => net.layers.get_mut(*l).ok_or_else(missing)?.mlp_norm = value,
        Slot::Weight(l, t) => {
            let layer = net.layers.get_mut(*l).ok_or_else(missing)?;
            let lin = lora::linear_mut(layer, t).ok_or_else(missing)?;
            *lin = Linear::dense(value, lin.bias().cloned());
        }
        Slot::Bias(l, t) => {
            let layer = net.layers.get_mut(*l).ok_or_else(missing)?;
            let lin = lora::linear_mut(layer, t).ok_or_else(missing)?;
            let w = lin.dense_weight().cloned().ok_or_else(missing)?;
            *lin = Linear::dense(w, Some(value));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- training

/// A net ready to train: its trainable variables, split by whether weight decay applies.
struct Trainable {
    net: Transformer,
    decay: Vec<Var>,
    no_decay: Vec<Var>,
    /// Full: the variable of each slot. LoRA: each (layer, target) with its A and B.
    full: Vec<(Slot, Var)>,
    lora: Vec<((usize, String), Var, Var, f64)>,
}

impl Trainable {
    fn parameters(&self) -> usize {
        self.decay
            .iter()
            .chain(&self.no_decay)
            .map(|v| v.elem_count())
            .sum()
    }
}

fn prepare(base: &Transformer, method: &Method, rng: &mut ChaCha20Rng) -> ModelResult<Trainable> {
    let mut net = lora::merge(base)?;
    let all = slots(&net)?;
    net.differentiable = true;
    let err = |e: candle_core::Error| invalid(format!("cannot set up training: {e}"));
    let mut t = Trainable {
        net,
        decay: Vec::new(),
        no_decay: Vec::new(),
        full: Vec::new(),
        lora: Vec::new(),
    };
    match method {
        Method::Full => {
            for slot in all {
                let value = get(&t.net, &slot).ok_or_else(|| invalid("missing parameter"))?;
                let var = Var::from_tensor(&value).map_err(err)?;
                set(&mut t.net, &slot, var.as_tensor().clone())?;
                if slot.decays() {
                    t.decay.push(var.clone());
                } else {
                    t.no_decay.push(var.clone());
                }
                t.full.push((slot, var));
            }
        }
        Method::Lora {
            rank,
            alpha,
            targets,
        } => {
            if *rank == 0 {
                return Err(invalid("a LoRA rank must be at least 1"));
            }
            let scale = alpha / *rank as f64;
            let (device, dtype) = (t.net.device.clone(), t.net.dtype);
            let config = t.net.config.clone();
            for l in 0..t.net.layers.len() {
                for target in targets {
                    lora::check_target(target)?;
                    let (fan_in, fan_out) = lora::dims(&config, target)
                        .ok_or_else(|| invalid(format!("unknown target {target}")))?;
                    // PEFT: kaiming_uniform(a = sqrt(5)) for A, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
                    let bound = 1.0 / (fan_in as f64).sqrt();
                    let values: Vec<f32> = (0..rank * fan_in)
                        .map(|_| ((rng.random::<f64>() * 2.0 - 1.0) * bound) as f32)
                        .collect();
                    let a = Tensor::from_vec(values, (*rank, fan_in), &device)
                        .and_then(|x| x.to_dtype(dtype))
                        .and_then(|x| Var::from_tensor(&x))
                        .map_err(err)?;
                    let b = Var::zeros((fan_out, *rank), dtype, &device).map_err(err)?;
                    let layer = t
                        .net
                        .layers
                        .get_mut(l)
                        .ok_or_else(|| invalid("missing layer"))?;
                    let lin = lora::linear_mut(layer, target)
                        .ok_or_else(|| invalid(format!("unknown target {target}")))?;
                    *lin = lin.with_lora(Some(LowRank {
                        a: a.as_tensor().clone(),
                        b: b.as_tensor().clone(),
                        scale,
                    }));
                    t.decay.push(a.clone());
                    t.decay.push(b.clone());
                    t.lora.push(((l, target.clone()), a, b, scale));
                }
            }
        }
    }
    Ok(t)
}

/// Mean negative log-likelihood per target token of a batch of sequences (each starting with
/// BOS), padded on the right; returns the loss tensor and the number of target tokens.
fn batch_loss(net: &Transformer, seqs: &[&[u32]]) -> candle_core::Result<(Tensor, usize)> {
    let rows = seqs.len();
    let t = seqs.iter().map(|s| s.len() - 1).max().unwrap_or(0);
    let mut tokens = Vec::with_capacity(rows * t);
    let mut targets = Vec::with_capacity(rows * t);
    let mut mask = Vec::with_capacity(rows * t);
    for s in seqs {
        for j in 0..t {
            let real = j + 1 < s.len();
            tokens.push(s.get(j).copied().unwrap_or(0));
            targets.push(if real { s[j + 1] } else { 0 });
            mask.push(if real { 1f32 } else { 0f32 });
        }
    }
    let count = mask.iter().filter(|m| **m > 0.0).count();
    let (logits, _) = net.forward(&tokens, rows, &KvState::empty(rows))?;
    let device = &net.device;
    let targets = Tensor::from_vec(targets, (rows, t, 1), device)?;
    let mask = Tensor::from_vec(mask, (rows, t), device)?;
    let picked = candle_nn::ops::log_softmax(&logits, D::Minus1)?
        .gather(&targets, D::Minus1)?
        .squeeze(D::Minus1)?;
    let loss = ((picked * mask)?.sum_all()? * (-1.0 / count.max(1) as f64))?;
    Ok((loss, count))
}

/// Clip the gradients of `vars` to a global norm of `max_norm`.
fn clip(
    grads: &mut candle_core::backprop::GradStore,
    vars: &[&Var],
    max_norm: f64,
) -> candle_core::Result<()> {
    let mut total = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            total += g
                .to_dtype(DType::F64)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f64>()?;
        }
    }
    let norm = total.sqrt();
    if norm > max_norm {
        let factor = max_norm / (norm + 1e-6);
        for v in vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                let scaled = (g * factor)?;
                grads.insert(v.as_tensor(), scaled);
            }
        }
    }
    Ok(())
}

/// The result of a training run (what the finetune store writes).
pub(super) struct Trained {
    pub full: Vec<(String, Tensor)>,
    pub adapter: Option<Adapter>,
    pub trainable: usize,
    pub losses: Vec<f64>,
    pub tokens: usize,
    pub seconds: f64,
}

fn train(
    base: &NeuralModel,
    request: &Request,
    on_step: &mut dyn FnMut(&Step) -> bool,
) -> ModelResult<Trained> {
    let o = &request.options;
    if o.epochs == 0 || o.batch == 0 {
        return Err(invalid("epochs and batch must be at least 1"));
    }
    if !(o.lr.is_finite() && o.lr > 0.0) {
        return Err(invalid(format!(
            "the learning rate must be a positive number, not {}",
            o.lr
        )));
    }
    let context = base.net.config.context;
    let mut seqs: Vec<Vec<u32>> = Vec::with_capacity(request.texts.len());
    for (i, ids) in request.texts.iter().enumerate() {
        base.check_ids(ids)?;
        let mut s: Vec<u32> = base.bos.into_iter().collect();
        s.extend_from_slice(ids);
        if s.len() < 2 {
            return Err(invalid(format!(
                "training text {} has fewer than two tokens",
                i + 1
            )));
        }
        if s.len() - 1 > context {
            return Err(invalid(format!(
                "training text {} needs {} tokens, more than the context window of {context} tokens (texts are never truncated)",
                i + 1,
                s.len() - 1
            )));
        }
        seqs.push(s);
    }
    if seqs.is_empty() {
        return Err(invalid(
            "there are no training texts (a text is a full group of statements)",
        ));
    }
    let started = Instant::now();
    let mut rng = ChaCha20Rng::from_seed(o.seed);
    let t = prepare(&base.net, &o.method, &mut rng)?;
    let err = |e: candle_core::Error| invalid(format!("training failed: {e}"));
    let params = |wd: f64| ParamsAdamW {
        lr: o.lr,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: wd,
    };
    let mut opt_decay = AdamW::new(t.decay.clone(), params(o.weight_decay)).map_err(err)?;
    let mut opt_plain = AdamW::new(t.no_decay.clone(), params(0.0)).map_err(err)?;
    let all: Vec<&Var> = t.decay.iter().chain(&t.no_decay).collect();
    let per_epoch = seqs.len().div_ceil(o.batch);
    let steps = per_epoch * o.epochs;
    let mut losses = Vec::with_capacity(o.epochs);
    let mut step = 0usize;
    let mut tokens_seen = 0usize;
    for epoch in 0..o.epochs {
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        for i in (1..order.len()).rev() {
            let j = rng.random_range(0..=i);
            order.swap(i, j);
        }
        let (mut sum, mut count) = (0f64, 0usize);
        for chunk in order.chunks(o.batch) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| seqs[i].as_slice()).collect();
            let (loss, n) = batch_loss(&t.net, &batch).map_err(err)?;
            let value = f64::from(loss.to_scalar::<f32>().map_err(err)?);
            if !value.is_finite() {
                return Err(invalid(format!(
                    "the training loss became {value} at step {} (lower the learning rate)",
                    step + 1
                )));
            }
            let mut grads = loss.backward().map_err(err)?;
            clip(&mut grads, &all, MAX_GRAD_NORM).map_err(err)?;
            let lr = match o.schedule {
                Schedule::Linear => o.lr * (steps - step) as f64 / steps as f64,
                Schedule::Constant => o.lr,
            };
            opt_decay.set_learning_rate(lr);
            opt_plain.set_learning_rate(lr);
            opt_decay.step(&grads).map_err(err)?;
            opt_plain.step(&grads).map_err(err)?;
            sum += value * n as f64;
            count += n;
            step += 1;
            let info = Step {
                epoch: epoch + 1,
                epochs: o.epochs,
                step,
                steps,
                loss: value,
            };
            if !on_step(&info) {
                return Err(invalid("finetuning was interrupted"));
            }
        }
        tokens_seen = count;
        losses.push(sum / count.max(1) as f64);
    }
    let trainable = t.parameters();
    let mut trained = Trained {
        full: Vec::new(),
        adapter: None,
        trainable,
        losses,
        tokens: tokens_seen,
        seconds: started.elapsed().as_secs_f64(),
    };
    match &o.method {
        Method::Full => {
            for (slot, var) in &t.full {
                trained
                    .full
                    .push((slot.name(), var.as_detached_tensor().copy().map_err(err)?));
            }
        }
        Method::Lora {
            rank,
            alpha,
            targets,
        } => {
            let mut weights = std::collections::BTreeMap::new();
            for (at, a, b, scale) in &t.lora {
                weights.insert(
                    at.clone(),
                    LowRank {
                        a: a.as_detached_tensor().copy().map_err(err)?,
                        b: b.as_detached_tensor().copy().map_err(err)?,
                        scale: *scale,
                    },
                );
            }
            trained.adapter = Some(Adapter {
                rank: *rank,
                alpha: *alpha,
                targets: targets.clone(),
                weights,
            });
        }
    }
    Ok(trained)
}

/// Finetune `base` as `request` says, or load the result from the cache when the same
/// request was trained before. `on_step` sees every optimizer step and stops the run by
/// returning false.
pub fn finetune(
    base: &NeuralModel,
    request: &Request,
    on_step: &mut dyn FnMut(&Step) -> bool,
) -> ModelResult<NeuralModel> {
    let key = cache_key(base, &request.options, &request.texts);
    if let Some(model) = finetune_store::lookup(base, &request.cache_root, &key)? {
        return Ok(model);
    }
    let trained = train(base, request, on_step)?;
    finetune_store::store(base, request, &key, &trained)
}

/// The token ids of training texts (chat turns through their template, special tokens as
/// ids), without BOS.
pub fn encode_texts(model: &NeuralModel, texts: &[TrainingText]) -> ModelResult<Vec<Vec<u32>>> {
    texts
        .iter()
        .map(|t| match t {
            TrainingText::Plain(s) => model.encode(s),
            TrainingText::Turns(template, turns) => {
                chat::render(template, None, turns).and_then(|p| {
                    chat::to_ids(&p, &model.tokenizer, model.bos, model.eos.first().copied())
                })
            }
        })
        .collect()
}

/// Log-probabilities of `ids[i + 1]` given `ids[..=i]` from the differentiable form of the
/// forward pass (what training computes), for comparison with the inference path.
pub fn training_logprobs(model: &NeuralModel, ids: &[u32]) -> ModelResult<Vec<f64>> {
    model.check_ids(ids)?;
    if ids.len() < 2 {
        return Ok(Vec::new());
    }
    let mut net = model.net.clone();
    net.differentiable = true;
    let (logits, _) = net
        .forward(&ids[..ids.len() - 1], 1, &KvState::empty(1))
        .map_err(model_err)?;
    let targets = Tensor::from_vec(ids[1..].to_vec(), (1, ids.len() - 1, 1), &net.device)
        .map_err(model_err)?;
    candle_nn::ops::log_softmax(&logits.to_dtype(DType::F64).map_err(model_err)?, D::Minus1)
        .and_then(|ls| ls.gather(&targets, D::Minus1))
        .and_then(|x| x.flatten_all())
        .and_then(|x| x.to_vec1())
        .map_err(model_err)
}

/// The number of weights a finetune trains (without training): for tests and reports.
pub fn trainable_parameters(base: &NeuralModel, method: &Method) -> ModelResult<usize> {
    let mut rng = ChaCha20Rng::from_seed([0; 32]);
    Ok(prepare(&base.net, method, &mut rng)?.parameters())
}
