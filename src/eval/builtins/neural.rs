//! Neural models: loading checkpoints, units of text, prompts as token ids, exact next-token
//! KL, and behavior scorers for generated text.

use std::path::PathBuf;
use std::rc::Rc;

use candle_core::{DType, Device};

use crate::error::{BebError, BebResult, ErrorKind};
use crate::eval::interp::Interp;
use crate::eval::natives::{Args, Decl, Native};
use crate::eval::value::{Record, Value};
use crate::lm::neural::{ComputeOptions, LoadOptions, NeuralLm, NeuralModel};
use crate::lm::{ModelRef, TokenRun, Unit, UnitSpec};

pub const NATIVES: &[Native] = &[
    Native {
        decl: Decl::Legacy(
            "load(path: string, dtype: string = \"f32\", device: string = \"cpu\", tokenizer: string = none, unit: record = none, cache_mb: number = 512, batch: int = 64, name: string = none, adapter: string = none) -> model",
        ),
        doc: "Load a neural model; the format is told by the path: a Hugging Face folder (config.json, safetensors, tokenizer.json; llama, mistral, qwen2, gemma, phi3), a .gguf file (llama, qwen2; tokenizer from its metadata unless `tokenizer:` is given) or a llama2.c .bin checkpoint (with a tokenizer.json beside it or given). dtype: f32, f16 or bf16; device: cpu or cuda[:N] (with the `cuda` build feature). `unit:` is the default unit (tokens(k) or sentence(...); default sentence(until: \".\\n\", max_tokens: 48)). A path starting with $BEB_SHARED reads the shared folder (default ../shared). `adapter:` attaches a LoRA adapter folder in the PEFT layout (see adapter(...)).",
        func: load_fn,
    },
    Native {
        decl: Decl::Legacy("tokens(k: int) -> record"),
        doc: "A unit of exactly k tokens, for `unit:` arguments.",
        func: tokens_fn,
    },
    Native {
        decl: Decl::Legacy(
            "sentence(until: string | list = \".\\n\", max_tokens: int = 48) -> record",
        ),
        doc: "A unit that ends at the first token completing one of the delimiter strings, at an end-of-sequence token, or after max_tokens tokens.",
        func: sentence_fn,
    },
    Native {
        decl: Decl::Legacy("prompt(model: model, text: string, unit: record = none) -> text"),
        doc: "Tokenize a string once and cut its token ids into units (the model's unit unless `unit:` is given). The result is token ids end to end: slicing and measuring it never re-tokenizes.",
        func: prompt_fn,
    },
    Native {
        decl: Decl::Legacy("decode(model: model, text: text) -> string"),
        doc: "The text of a text's token ids.",
        func: decode_fn,
    },
    Native {
        decl: Decl::Legacy("token_ids(model: model, text: text) -> list"),
        doc: "The token ids of a text (without the beginning-of-sequence token the model adds).",
        func: token_ids_fn,
    },
    Native {
        decl: Decl::Legacy("next_token_kl(p: model, q: model, given: text = []) -> number"),
        doc: "Exact KL divergence between the next-token distributions of two neural models (or mixtures of them) after the prefix, summed over the whole vocabulary.",
        func: next_token_kl_fn,
    },
    Native {
        decl: Decl::Legacy(
            "likelihood_ratio(plus: model, minus: model, soft: bool = false) -> record",
        ),
        doc: "A behavior scorer (for `expect(..., behavior:)` and `score`): B(y) = sign(log P_plus(y) - log P_minus(y)) (appendix J), or with soft: true, tanh((log P_plus(y) - log P_minus(y)) / 2) = 2 sigmoid(d) - 1. y is scored on its own (after BOS).",
        func: likelihood_ratio_fn,
    },
    Native {
        decl: Decl::Legacy(
            "keywords(words: string | list, regex: bool = false, ignore_case: bool = true, hit: number = -1, miss: number = 1) -> record",
        ),
        doc: "A behavior scorer: `hit` when the decoded text contains one of the words (or matches one of the regular expressions), else `miss`.",
        func: keywords_fn,
    },
    Native {
        decl: Decl::Legacy("score(scorer: record, text: text) -> number"),
        doc: "Apply a behavior scorer (likelihood_ratio, keywords or labels) to a text.",
        func: score_fn,
    },
    Native {
        decl: Decl::Legacy("model_info(model: model) -> record"),
        doc: "A neural model's identity: architecture, format, parameters, dtype, device, vocabulary size, context length, unit, and the sha256 of its weight files.",
        func: model_info_fn,
    },
];

/// `$BEB_SHARED/...` read from the environment (default `../shared`).
pub(crate) fn resolve(path: &str) -> PathBuf {
    match path.strip_prefix("$BEB_SHARED") {
        Some(rest) => {
            let root = std::env::var("BEB_SHARED").unwrap_or_else(|_| "../shared".into());
            PathBuf::from(format!("{root}{rest}"))
        }
        None => PathBuf::from(path),
    }
}

fn dtype_arg(args: &Args) -> BebResult<DType> {
    match args.get("dtype") {
        None => Ok(DType::F32),
        Some(Value::Str(s)) => match &**s {
            "f32" => Ok(DType::F32),
            "f16" => Ok(DType::F16),
            "bf16" => Ok(DType::BF16),
            other => Err(args.invalid(
                "dtype",
                format!("dtype {other:?} is not one of f32, f16, bf16"),
            )),
        },
        Some(_) => Err(args.wrong_type("dtype", "a string")),
    }
}

fn device_arg(args: &Args) -> BebResult<Device> {
    let name = match args.get("device") {
        None => return Ok(Device::Cpu),
        Some(Value::Str(s)) => s.to_string(),
        Some(_) => return Err(args.wrong_type("device", "a string")),
    };
    if name == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match name.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                args.invalid("device", format!("device {name:?}: use cuda or cuda:N"))
            })?,
        None => {
            return Err(args.invalid(
                "device",
                format!("device {name:?} is not one of cpu, cuda, cuda:N"),
            ));
        }
    };
    Device::new_cuda(ordinal).map_err(|e| {
        args.invalid("device", format!("cannot use {name}: {e}"))
            .with_help(
                "CUDA needs a build with `--features cuda` on a machine with the CUDA toolkit",
            )
    })
}

/// A `unit:` argument: a record made by `tokens(k)` or `sentence(...)`.
pub fn unit_arg(args: &Args, name: &str) -> BebResult<Option<UnitSpec>> {
    let Some(value) = args.get(name) else {
        return Ok(None);
    };
    let spec = unit_of(value).ok_or_else(|| {
        args.invalid(
            name,
            "a unit is made by tokens(k) or sentence(until: ..., max_tokens: ...)",
        )
    })?;
    spec.validate()
        .map_err(|e| BebError::from(e).at(args.span(name)))?;
    Ok(Some(spec))
}

fn unit_of(value: &Value) -> Option<UnitSpec> {
    let Value::Record(r) = value else { return None };
    let count = |v: &Value| match v {
        Value::Num(x) => crate::eval::natives::to_count(*x),
        _ => None,
    };
    match r.get("unit")? {
        Value::Str(s) if &**s == "tokens" => Some(UnitSpec::Tokens(count(r.get("k")?)?)),
        Value::Str(s) if &**s == "sentence" => {
            let until = match r.get("until")? {
                Value::List(items) => items
                    .iter()
                    .map(|v| match v {
                        Value::Str(s) => Some(s.to_string()),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()?,
                _ => return None,
            };
            Some(UnitSpec::Sentence {
                until,
                max_tokens: count(r.get("max_tokens")?)?,
            })
        }
        _ => None,
    }
}

fn unit_value(spec: &UnitSpec) -> Value {
    match spec {
        UnitSpec::Tokens(k) => Value::record(vec![
            ("unit", Value::str("tokens")),
            ("k", Value::Num(*k as f64)),
        ]),
        UnitSpec::Sentence { until, max_tokens } => Value::record(vec![
            ("unit", Value::str("sentence")),
            (
                "until",
                Value::list(until.iter().map(|s| Value::str(s)).collect()),
            ),
            ("max_tokens", Value::Num(*max_tokens as f64)),
        ]),
    }
}

fn load_fn(interp: &mut Interp, args: &Args) -> BebResult<Value> {
    let path = resolve(&args.string("path")?);
    let mut options = LoadOptions {
        dtype: dtype_arg(args)?,
        device: device_arg(args)?,
        tokenizer: None,
    };
    if args.get("tokenizer").is_some() {
        options.tokenizer = Some(resolve(&args.string("tokenizer")?));
    }
    let cache_mb = args.opt_num("cache_mb")?.unwrap_or(512.0);
    if !(cache_mb.is_finite() && cache_mb >= 0.0) {
        return Err(args.invalid("cache_mb", "cache_mb must be a number >= 0"));
    }
    let batch = args.opt_count("batch")?.unwrap_or(64);
    if batch == 0 {
        return Err(args.invalid("batch", "batch must be at least 1"));
    }
    let unit = unit_arg(args, "unit")?.unwrap_or_default();
    let run = ComputeOptions {
        cache_bytes: (cache_mb * 1048576.0) as usize,
        batch,
    };
    let mut model = NeuralModel::load(&path, &options, &run)
        .map_err(|e| BebError::from(e).at(args.span("path")))?;
    if args.get("adapter").is_some() {
        let dir = resolve(&args.string("adapter")?);
        model = crate::lm::neural::train::with_adapter(&model, &dir)
            .map_err(|e| BebError::from(e).at(args.span("adapter")))?;
    }
    let name = match args.get("name") {
        Some(Value::Str(s)) => s.to_string(),
        Some(_) => return Err(args.wrong_type("name", "a string")),
        None => interp
            .take_name_hint()
            .map(|n| n.to_string())
            .unwrap_or_else(|| "model".into()),
    };
    note_model_files(interp, &model);
    Ok(Value::Model(Rc::new(NeuralLm::new(
        name,
        Rc::new(model),
        unit,
    ))))
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

fn tokens_fn(_: &mut Interp, args: &Args) -> BebResult<Value> {
    let k = args.count("k")?;
    let spec = UnitSpec::Tokens(k);
    spec.validate()
        .map_err(|e| BebError::from(e).at(args.span("k")))?;
    Ok(unit_value(&spec))
}

fn sentence_fn(_: &mut Interp, args: &Args) -> BebResult<Value> {
    let until = match args.get("until") {
        None => vec![".\n".to_string()],
        Some(Value::Str(s)) => vec![s.to_string()],
        Some(Value::List(items)) => items
            .iter()
            .map(|v| match v {
                Value::Str(s) => Ok(s.to_string()),
                _ => Err(args.wrong_type("until", "a string or a list of strings")),
            })
            .collect::<BebResult<_>>()?,
        Some(_) => return Err(args.wrong_type("until", "a string or a list of strings")),
    };
    let spec = UnitSpec::Sentence {
        until,
        max_tokens: args.opt_count("max_tokens")?.unwrap_or(48),
    };
    spec.validate()
        .map_err(|e| BebError::from(e).at(args.call_span))?;
    Ok(unit_value(&spec))
}

/// The neural model of argument `name`, seen through `unit:` when given.
fn neural(args: &Args, name: &str) -> BebResult<ModelRef> {
    let model = args.model(name)?;
    if model.as_neural().is_none() {
        return Err(args.invalid(
            name,
            format!(
                "{} is not a neural model (load one with load(...))",
                model.name()
            ),
        ));
    }
    Ok(model)
}

fn prompt_fn(_: &mut Interp, args: &Args) -> BebResult<Value> {
    let model = neural(args, "model")?;
    let model = match unit_arg(args, "unit")? {
        Some(u) => model.view(Some(&u), None)?.unwrap_or(model),
        None => model,
    };
    let text = args.string("text")?;
    let lm = model
        .as_neural()
        .ok_or_else(|| args.invalid("model", "not a neural model"))?;
    let units = lm
        .prompt(&text)
        .map_err(|e| BebError::from(e).at(args.span("text")))?;
    Ok(Value::text(units))
}

fn decode_fn(_: &mut Interp, args: &Args) -> BebResult<Value> {
    let model = neural(args, "model")?;
    let text = args.text("text")?;
    let lm = model
        .as_neural()
        .ok_or_else(|| args.invalid("model", "not a neural model"))?;
    let ids = lm.ids(&text.units)?;
    Ok(Value::str(&lm.model().decode(&ids)))
}

fn token_ids_fn(_: &mut Interp, args: &Args) -> BebResult<Value> {
    let model = neural(args, "model")?;
    let text = args.text("text")?;
    let lm = model
        .as_neural()
        .ok_or_else(|| args.invalid("model", "not a neural model"))?;
    let ids = lm.ids(&text.units)?;
    Ok(Value::list(
        ids.into_iter().map(|i| Value::Num(f64::from(i))).collect(),
    ))
}

/// The exact next-token distribution of a neural model or a mixture of them.
fn next_token_dist(model: &ModelRef, given: &[Unit]) -> BebResult<Vec<f64>> {
    if let Some(lm) = model.as_neural() {
        return Ok(lm.next_token_logprobs(given)?.to_vec());
    }
    // A mixture: its one-token support is exact.
    let one = model
        .view(Some(&UnitSpec::Tokens(1)), None)?
        .ok_or_else(|| {
            BebError::new(
                ErrorKind::Value,
                format!(
                    "{} is not a neural model or a mixture of them",
                    model.name()
                ),
            )
        })?;
    let support = one.support(given)?.ok_or_else(|| {
        BebError::new(
            ErrorKind::Value,
            "the next-token distribution cannot be listed",
        )
    })?;
    let size = support
        .iter()
        .filter_map(|(u, _)| match u {
            Unit::Tokens(run) => run.ids.first().map(|&i| i as usize + 1),
            Unit::Sentence(_) => None,
        })
        .max()
        .unwrap_or(0);
    let mut dist = vec![f64::NEG_INFINITY; size];
    for (u, lp) in support {
        if let Unit::Tokens(run) = u
            && let Some(&i) = run.ids.first()
        {
            dist[i as usize] = lp;
        }
    }
    Ok(dist)
}

fn next_token_kl_fn(_: &mut Interp, args: &Args) -> BebResult<Value> {
    let (p, q) = (args.model("p")?, args.model("q")?);
    if p.vocabulary() != q.vocabulary() {
        return Err(BebError::from(crate::lm::ModelError::VocabularyMismatch {
            left: p.name().to_string(),
            right: q.name().to_string(),
        })
        .at(args.span("q")));
    }
    let given = args.opt_text("given")?;
    let lp = next_token_dist(&p, &given.units).map_err(|e| e.at(args.span("p")))?;
    let lq = next_token_dist(&q, &given.units).map_err(|e| e.at(args.span("q")))?;
    let mut total = 0.0;
    for (i, a) in lp.iter().enumerate() {
        if *a == f64::NEG_INFINITY {
            continue;
        }
        let b = lq.get(i).copied().unwrap_or(f64::NEG_INFINITY);
        if b == f64::NEG_INFINITY {
            return Ok(Value::Num(f64::INFINITY));
        }
        total += a.exp() * (a - b);
    }
    Ok(Value::Num(total.max(0.0)))
}

fn likelihood_ratio_fn(_: &mut Interp, args: &Args) -> BebResult<Value> {
    let (plus, minus) = (args.model("plus")?, args.model("minus")?);
    if plus.vocabulary() != minus.vocabulary() {
        return Err(BebError::from(crate::lm::ModelError::VocabularyMismatch {
            left: plus.name().to_string(),
            right: minus.name().to_string(),
        })
        .at(args.span("minus")));
    }
    Ok(Value::record(vec![
        ("scorer", Value::str("likelihood_ratio")),
        ("plus", Value::Model(plus)),
        ("minus", Value::Model(minus)),
        ("soft", Value::Bool(args.boolean("soft", false)?)),
    ]))
}

fn keywords_fn(_: &mut Interp, args: &Args) -> BebResult<Value> {
    let words: Vec<Value> = match args.get("words") {
        Some(Value::Str(s)) => vec![Value::Str(s.clone())],
        Some(Value::List(items)) if items.iter().all(|v| matches!(v, Value::Str(_))) => {
            items.as_ref().clone()
        }
        _ => return Err(args.wrong_type("words", "a string or a list of strings")),
    };
    let hit = args.opt_num("hit")?.unwrap_or(-1.0);
    let miss = args.opt_num("miss")?.unwrap_or(1.0);
    for (k, x) in [("hit", hit), ("miss", miss)] {
        if !(-1.0..=1.0).contains(&x) {
            return Err(args.invalid(k, format!("`{k}` must lie in [-1, 1]")));
        }
    }
    let value = Value::record(vec![
        ("scorer", Value::str("keywords")),
        ("words", Value::list(words)),
        ("regex", Value::Bool(args.boolean("regex", false)?)),
        (
            "ignore_case",
            Value::Bool(args.boolean("ignore_case", true)?),
        ),
        ("hit", Value::Num(hit)),
        ("miss", Value::Num(miss)),
    ]);
    // Compile once now, so a bad pattern is reported where it is written.
    let _compiled = scorer(&value).map_err(|e| e.at(args.span("words")))?;
    Ok(value)
}

/// A behavior scorer built from a scorer record; `None` when the value is not one.
pub type Scorer = Box<dyn FnMut(&Unit) -> BebResult<f64>>;

fn field<'a>(r: &'a Record, name: &str) -> BebResult<&'a Value> {
    r.get(name).ok_or_else(|| {
        BebError::new(
            ErrorKind::Value,
            format!("the scorer record has no field `{name}`"),
        )
    })
}

/// Turn a scorer record (from likelihood_ratio or keywords) into a function of a unit.
pub fn scorer(value: &Value) -> BebResult<Scorer> {
    let not_scorer = || {
        BebError::new(
            ErrorKind::Type,
            "a behavior is a function or a scorer made by likelihood_ratio(...), keywords(...) or labels(...)",
        )
    };
    let Value::Record(r) = value else {
        return Err(not_scorer());
    };
    match r.get("scorer") {
        Some(Value::Str(s)) if &**s == "likelihood_ratio" => {
            let (Value::Model(plus), Value::Model(minus)) = (field(r, "plus")?, field(r, "minus")?)
            else {
                return Err(not_scorer());
            };
            let soft = matches!(field(r, "soft")?, Value::Bool(true));
            let (plus, minus) = (plus.clone(), minus.clone());
            Ok(Box::new(move |unit: &Unit| {
                let text = std::slice::from_ref(unit);
                let d = plus.logprob(&[], text)? - minus.logprob(&[], text)?;
                if d.is_nan() {
                    return Err(BebError::value(
                        "the text has probability zero under both models; its likelihood ratio is undefined",
                    ));
                }
                Ok(if soft {
                    (d / 2.0).tanh()
                } else if d > 0.0 {
                    1.0
                } else if d < 0.0 {
                    -1.0
                } else {
                    0.0
                })
            }))
        }
        Some(Value::Str(s)) if &**s == "keywords" => {
            let Value::List(words) = field(r, "words")? else {
                return Err(not_scorer());
            };
            let regex = matches!(field(r, "regex")?, Value::Bool(true));
            let ignore_case = matches!(field(r, "ignore_case")?, Value::Bool(true));
            let number = |name: &str| match field(r, name) {
                Ok(Value::Num(x)) => Ok(*x),
                _ => Err(not_scorer()),
            };
            let (hit, miss) = (number("hit")?, number("miss")?);
            let mut patterns = Vec::with_capacity(words.len());
            for w in words.iter() {
                let Value::Str(w) = w else {
                    return Err(not_scorer());
                };
                let source = if regex {
                    w.to_string()
                } else {
                    regex::escape(w)
                };
                let pattern = regex::RegexBuilder::new(&source)
                    .case_insensitive(ignore_case)
                    .build()
                    .map_err(|e| {
                        BebError::new(ErrorKind::Value, format!("bad pattern {w:?}: {e}"))
                    })?;
                patterns.push(pattern);
            }
            Ok(Box::new(move |unit: &Unit| {
                let text = unit.to_string();
                Ok(if patterns.iter().any(|p| p.is_match(&text)) {
                    hit
                } else {
                    miss
                })
            }))
        }
        Some(Value::Str(s)) if &**s == "labels" => crate::eval::builtins::labels::scorer_of(r),
        _ => Err(not_scorer()),
    }
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

fn score_fn(_: &mut Interp, args: &Args) -> BebResult<Value> {
    let mut f = scorer(args.value("scorer")?).map_err(|e| e.at(args.span("scorer")))?;
    let text = args.text("text")?;
    Ok(Value::Num(
        f(&as_one_unit(&text.units)).map_err(|e| e.at(args.span("text")))?,
    ))
}

fn model_info_fn(_: &mut Interp, args: &Args) -> BebResult<Value> {
    let model = neural(args, "model")?;
    let lm = model
        .as_neural()
        .ok_or_else(|| args.invalid("model", "not a neural model"))?;
    let m = lm.model();
    let c = m.config();
    let sha = m.sha256();
    Ok(Value::record(vec![
        ("name", Value::str(model.name())),
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
