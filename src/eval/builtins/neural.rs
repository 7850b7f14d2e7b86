//! Neural models: loading checkpoints, units of text, prompts as token ids, exact next-token
//! KL, and behavior scorers for generated text.

use std::rc::Rc;

use candle_core::{DType, Device};

use crate::builtin;
use crate::error::{BebError, BebResult, ErrorKind};
use crate::eval::interp::Interp;
use crate::eval::natives::{Arg, ModelPath, Native, ScorerValue, StringOrList, unit_value};
use crate::eval::value::{Text, Value};
use crate::lm::neural::{ComputeOptions, LoadOptions, NeuralLm, NeuralModel};
use crate::lm::{ModelRef, TokenRun, Unit, UnitSpec};
use crate::measure::behavior::{self, ScoreError};
use crate::measure::next_token;

pub const NATIVES: &[Native] = &[
    Load::NATIVE,
    Tokens::NATIVE,
    Sentence::NATIVE,
    Prompt::NATIVE,
    Decode::NATIVE,
    TokenIds::NATIVE,
    NextTokenKl::NATIVE,
    LikelihoodRatio::NATIVE,
    Keywords::NATIVE,
    Score::NATIVE,
    ModelInfo::NATIVE,
];

fn dtype_of(dtype: &Arg<Rc<str>>) -> BebResult<DType> {
    match &***dtype {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        other => Err(dtype.invalid(format!("dtype {other:?} is not one of f32, f16, bf16"))),
    }
}

fn device_of(device: &Arg<Rc<str>>) -> BebResult<Device> {
    let name = &***device;
    if name == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match name.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| device.invalid(format!("device {name:?}: use cuda or cuda:N")))?,
        None => {
            return Err(device.invalid(format!("device {name:?} is not one of cpu, cuda, cuda:N")));
        }
    };
    Device::new_cuda(ordinal).map_err(|e| {
        device.invalid(format!("cannot use {name}: {e}")).with_help(
            "CUDA needs a build with `--features cuda` on a machine with the CUDA toolkit",
        )
    })
}

builtin! {
    /// Load a neural model; the format is told by the path: a Hugging Face folder (config.json,
    /// safetensors, tokenizer.json; llama, mistral, qwen2, gemma, phi3), a .gguf file (llama,
    /// qwen2; tokenizer from its metadata unless `tokenizer:` is given) or a llama2.c .bin
    /// checkpoint (with a tokenizer.json beside it or given). dtype: f32, f16 or bf16; device:
    /// cpu or cuda[:N] (with the `cuda` build feature). `unit:` is the default unit (tokens(k)
    /// or sentence(...); default sentence(until: ".\n", max_tokens: 48)). A path starting with
    /// $BEB_SHARED reads the shared folder (default ../shared). `adapter:` attaches a LoRA
    /// adapter folder in the PEFT layout (see adapter(...)).
    Load = load(
        path: ModelPath,
        dtype: Rc<str> = "f32",
        device: Rc<str> = "cpu",
        tokenizer: Option<ModelPath> = none,
        unit: Option<UnitSpec> = none,
        cache_mb: f64 = 512,
        batch: usize = 64,
        name: Option<Rc<str>> = none,
        adapter: Option<ModelPath> = none,
    ) -> "model"
}

impl Load {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        interp.readable(&self.path, self.path.span)?;
        if let Some(tokenizer) = &*self.tokenizer {
            interp.readable(tokenizer, self.tokenizer.span)?;
        }
        if let Some(adapter) = &*self.adapter {
            interp.readable(adapter, self.adapter.span)?;
        }
        let options = LoadOptions {
            dtype: dtype_of(&self.dtype)?,
            device: device_of(&self.device)?,
            tokenizer: self.tokenizer.as_ref().map(|t| t.0.clone()),
        };
        let cache_mb = *self.cache_mb;
        if !(cache_mb.is_finite() && cache_mb >= 0.0) {
            return Err(self.cache_mb.invalid("cache_mb must be a number >= 0"));
        }
        if *self.batch == 0 {
            return Err(self.batch.invalid("batch must be at least 1"));
        }
        let run = ComputeOptions {
            cache_bytes: (cache_mb * 1048576.0) as usize,
            batch: *self.batch,
        };
        let mut model = NeuralModel::load(&self.path.0, &options, &run)
            .map_err(|e| BebError::from(e).at(self.path.span))?;
        if let Some(dir) = &*self.adapter {
            model = crate::lm::neural::train::with_adapter(&model, &dir.0)
                .map_err(|e| BebError::from(e).at(self.adapter.span))?;
        }
        let name = interp.model_name(self.name.as_deref(), "model");
        note_model_files(interp, &model);
        let unit = self.unit.value.unwrap_or_default();
        Ok(Value::Model(Rc::new(NeuralLm::new(
            name,
            Rc::new(model),
            unit,
        ))))
    }
}

/// The weights (adapters included) and tokenizer of a model, for the run record.
pub(crate) fn note_model_files(interp: &mut Interp, model: &NeuralModel) {
    for (file, sha) in model.files().iter().zip(model.sha256()) {
        interp.note_input_file(file, sha);
    }
    if let Some(tokenizer) = model.tokenizer_file() {
        interp.note_input(tokenizer);
    }
}

builtin! {
    /// A unit of exactly k tokens, for `unit:` arguments.
    Tokens = tokens(k: usize) -> "unit"
}

impl Tokens {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        let spec = UnitSpec::Tokens(*self.k);
        spec.validate()
            .map_err(|e| BebError::from(e).at(self.k.span))?;
        Ok(unit_value(&spec))
    }
}

builtin! {
    /// A unit that ends at the first token completing one of the delimiter strings, at an
    /// end-of-sequence token, or after max_tokens tokens.
    Sentence = sentence(until: StringOrList = ".\n", max_tokens: usize = 48) -> "unit"
}

impl Sentence {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        let spec = UnitSpec::Sentence {
            until: self.until.value.0,
            max_tokens: *self.max_tokens,
        };
        spec.validate()
            .map_err(|e| BebError::from(e).at(self.call.span))?;
        Ok(unit_value(&spec))
    }
}

/// The neural model of a `model` argument.
pub(crate) fn neural(model: &Arg<ModelRef>) -> BebResult<&NeuralLm> {
    model.value.as_neural().ok_or_else(|| {
        model.invalid(format!(
            "{} is not a neural model (load one with load(...))",
            model.value.name()
        ))
    })
}

/// A neural model seen through `unit:` when given.
fn with_unit(model: &Arg<ModelRef>, unit: Option<&UnitSpec>) -> BebResult<ModelRef> {
    let base = model.value.clone();
    Ok(match unit {
        Some(u) => base.view(Some(u), None)?.unwrap_or(base),
        None => base,
    })
}

builtin! {
    /// Tokenize a string once and cut its token ids into units (the model's unit unless `unit:`
    /// is given). The result is token ids end to end: slicing and measuring it never
    /// re-tokenizes.
    Prompt = prompt(model: ModelRef, text: Rc<str>, unit: Option<UnitSpec> = none) -> "text"
}

impl Prompt {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        tokens_of(&self.model)?;
        let model = with_unit(&self.model, self.unit.as_ref())?;
        let lm = model
            .as_tokens()
            .ok_or_else(|| self.model.invalid("not a neural model"))?;
        let units = lm
            .prompt(&self.text)
            .map_err(|e| BebError::from(e).at(self.text.span))?;
        Ok(Value::text(units))
    }
}

/// The tokenizer side of a `model` argument (a neural or served model).
fn tokens_of(model: &Arg<ModelRef>) -> BebResult<&dyn crate::lm::TokenText> {
    model.value.as_tokens().ok_or_else(|| {
        model.invalid(format!(
            "{} is not a neural model (load one with load(...) or server(...))",
            model.value.name()
        ))
    })
}

builtin! {
    /// The text of a text's token ids.
    Decode = decode(model: ModelRef, text: Rc<Text>) -> "string"
}

impl Decode {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        let lm = tokens_of(&self.model)?;
        let ids = lm.ids(&self.text.units)?;
        Ok(Value::str(&lm.decode(&ids)))
    }
}

builtin! {
    /// The token ids of a text (without the beginning-of-sequence token the model adds).
    TokenIds = token_ids(model: ModelRef, text: Rc<Text>) -> "list"
}

impl TokenIds {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        let lm = tokens_of(&self.model)?;
        let ids = lm.ids(&self.text.units)?;
        Ok(Value::list(
            ids.into_iter().map(|i| Value::Num(f64::from(i))).collect(),
        ))
    }
}

builtin! {
    /// Exact KL divergence between the next-token distributions of two neural models (or
    /// mixtures of them) after the prefix, summed over the whole vocabulary.
    NextTokenKl = next_token_kl(p: ModelRef, q: ModelRef, given: Rc<Text> = []) -> "number"
}

impl NextTokenKl {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        self.q.same_vocabulary_as(&self.p)?;
        let given = &self.given.units;
        let logprobs = |m: &Arg<ModelRef>| {
            next_token::next_token_logprobs(m, given).map_err(|e| BebError::from(e).at(m.span))
        };
        let (lp, lq) = (logprobs(&self.p)?, logprobs(&self.q)?);
        Ok(Value::Num(next_token::kl_of_logprobs(&lp, &lq)))
    }
}

builtin! {
    /// A behavior scorer (for `expect(..., behavior:)` and `score`): B(y) = sign(log P_plus(y) -
    /// log P_minus(y)) (appendix J), or with soft: true, tanh((log P_plus(y) - log P_minus(y)) /
    /// 2) = 2 sigmoid(d) - 1. y is scored on its own (after BOS).
    LikelihoodRatio = likelihood_ratio(plus: ModelRef, minus: ModelRef, soft: bool = false) -> "scorer"
}

impl LikelihoodRatio {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        self.minus.same_vocabulary_as(&self.plus)?;
        Ok(ScorerValue::value(behavior::Scorer::LikelihoodRatio {
            plus: self.plus.value,
            minus: self.minus.value,
            soft: *self.soft,
        }))
    }
}

builtin! {
    /// A behavior scorer: `hit` when the decoded text contains one of the words (or matches one
    /// of the regular expressions), else `miss`.
    Keywords = keywords(
        words: StringOrList,
        regex: bool = false,
        ignore_case: bool = true,
        hit: f64 = -1,
        miss: f64 = 1,
    ) -> "scorer"
}

impl Keywords {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        for x in [&self.hit, &self.miss] {
            if !(-1.0..=1.0).contains(&**x) {
                return Err(x.invalid(format!("`{}` must lie in [-1, 1]", x.name)));
            }
        }
        // Compiled now, so a bad pattern is reported where it is written.
        let scorer = behavior::Scorer::keywords(
            self.words.value.0,
            *self.regex,
            *self.ignore_case,
            *self.hit,
            *self.miss,
        )
        .map_err(|e| score_error(e).at(self.words.span))?;
        Ok(ScorerValue::value(scorer))
    }
}

/// Why a text could not be scored, as a beb error (a model's failure is a model error).
pub(crate) fn score_error(error: ScoreError) -> BebError {
    let model = error.model;
    let mut e = BebError::from(error);
    if model {
        e.kind = ErrorKind::Model;
    }
    e
}

/// A whole text as one unit (token runs joined, sentences joined by spaces).
pub(crate) fn as_one_unit(units: &[Unit]) -> Unit {
    if let [one] = units {
        return one.clone();
    }
    let mut ids = Vec::new();
    let mut decoder = None;
    for u in units {
        match u {
            Unit::Tokens(run) => {
                ids.extend_from_slice(&run.ids);
                decoder = decoder.or_else(|| run.decoder.clone());
            }
            Unit::Sentence(_) => {
                return Unit::Sentence(Rc::from(crate::lm::display_units(units).as_str()));
            }
        }
    }
    Unit::Tokens(TokenRun::new(ids, decoder))
}

builtin! {
    /// Apply a behavior scorer (likelihood_ratio, keywords or labels) to a text.
    Score = score(scorer: Rc<behavior::Scorer>, text: Rc<Text>) -> "number"
}

impl Score {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        let unit = as_one_unit(&self.text.units);
        let score = self
            .scorer
            .score(&unit)
            .map_err(|e| score_error(e).at(self.text.span))?;
        Ok(Value::Num(score))
    }
}

builtin! {
    /// A neural model's identity: architecture, format, parameters, dtype, device, vocabulary
    /// size, context length, unit, and the sha256 of its weight files.
    ModelInfo = model_info(model: ModelRef) -> "record"
}

impl ModelInfo {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        let lm = neural(&self.model)?;
        let m = lm.model();
        let c = m.config();
        let sha = m.sha256();
        Ok(Value::record(vec![
            ("name", Value::str(self.model.value.name())),
            ("architecture", Value::str(&c.arch)),
            ("format", Value::str(m.format())),
            ("parameters", Value::Num(m.parameters() as f64)),
            (
                "dtype",
                Value::str(&format!("{:?}", m.dtype()).to_lowercase()),
            ),
            ("device", Value::str(&m.device_name())),
            ("vocab", Value::Num(c.vocab as f64)),
            ("context", Value::Num(c.context as f64)),
            ("layers", Value::Num(c.layers as f64)),
            ("unit", unit_value(lm.unit())),
            (
                "sha256",
                match sha {
                    [one] => Value::str(one),
                    many => Value::list(many.iter().map(|s| Value::str(s)).collect()),
                },
            ),
        ]))
    }
}
