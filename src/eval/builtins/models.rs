//! Models and measurements: analytic models, mixtures, sampling, scoring, KL, log-ratio
//! variance, behavior expectation and fits. Exact on finite support; Monte Carlo when
//! `samples:` is given (or required because the support cannot be enumerated).

use std::rc::Rc;

use crate::error::{BebError, BebResult, ErrorKind};
use crate::eval::builtins::prelude::numbers;
use crate::eval::interp::Interp;
use crate::eval::natives::{Args, Decl, Native, as_estimate, as_text, iterate};
use crate::eval::value::{Record, Text, Value};
use crate::fit;
use crate::lm::analytic::{Categorical, Markov};
use crate::lm::mixture::Mixture;
use crate::lm::{ModelRef, Unit};
use crate::measure::{self, MeasureError, Measured, Method};
use crate::seed::Stream;
use crate::stats::Estimate;
use crate::syntax::ast::Name;

pub const NATIVES: &[Native] = &[
    Native {
        decl: Decl::Legacy(
            "categorical(sentences: list, probs: list, scores: list = none, normalize: bool = false, name: string = none) -> model",
        ),
        doc: "A sentence-level model drawing each sentence independently with the given probabilities; scores are behavior values in [-1, 1]. Probabilities must sum to 1 (within 1e-9) unless normalize is true. The literal `sentences { \"text\": p @ score, ... }` builds the same model.",
        func: categorical_fn,
    },
    Native {
        decl: Decl::Legacy(
            "markov(states: list, initial: list, transitions: list, scores: list = none, normalize: bool = false, name: string = none) -> model",
        ),
        doc: "A sentence-level Markov chain: initial[i] is P(first sentence = states[i]); transitions[i][j] is P(next = states[j] | current = states[i]).",
        func: markov_fn,
    },
    Native {
        decl: Decl::Legacy(
            "mixture(*components: model, weights: list = none, log_weights: list = none, alpha: number = none, log_alpha: number = none, name: string = none) -> model",
        ),
        doc: "The mixture of sequence distributions sum_i w_i P_i (eq. 3). Give weights, log_weights, or for two components alpha (P = alpha P_1 + (1 - alpha) P_2) or log_alpha; everything is kept in log space, so alpha = 1e-300 and log_alpha = -2000 both work.",
        func: mixture_fn,
    },
    Native {
        decl: Decl::Legacy(
            "posterior(mixture: model, given: text = [], log: bool = false) -> record",
        ),
        doc: "The components' posterior weights after the prefix (eq. 10): w_i(s) proportional to w_i P_i(s). With log: true, natural-log weights (no underflow).",
        func: posterior_fn,
    },
    Native {
        decl: Decl::Legacy(
            "sample(model: model, sentences: int = 1, count: int = none, given: text = [], seed: int | string = none, unit: record = none, temperature: number = none, top_k: int = none, top_p: number = none, best_of: int = none, by: function | record = none) -> text | list",
        ),
        doc: "Sample a text of `sentences` units after `given` (a list of `count` texts when count is given). Draw i uses its own stream derived from the seed, so results do not depend on count or order. For neural models, `unit:` sets what a unit is and temperature/top_k/top_p change how tokens are drawn (default: ancestral sampling, which measurements always use). With best_of: n, each draw is the best of n candidates by `by:` (a scorer or a function of a text; default the model's own scores), ties to the first (Theorem 4).",
        func: sample_fn,
    },
    Native {
        decl: Decl::Legacy(
            "logprob(model: model, text: text, given: text = [], unit: record = none) -> number",
        ),
        doc: "log P(text | given), exact.",
        func: logprob_fn,
    },
    Native {
        decl: Decl::Legacy("logratio(p: model, q: model, text: text, given: text = []) -> number"),
        doc: "log P(text | given) - log Q(text | given); for p = P_minus, q = P_plus this is the r of eq. 99.",
        func: logratio_fn,
    },
    Native {
        decl: Decl::Legacy(
            "kl(p: model, q: model, given: text | list = [], sentences: int = 1, samples: int = none, seed: int | string = none, unit: record = none) -> number | estimate",
        ),
        doc: "Conditional KL divergence D_KL(P(.|given) || Q(.|given)) over the next `sentences` units (def. 2). Exact by enumeration; with samples: N a Monte Carlo estimate. A list of prompts as `given` averages over them.",
        func: kl_fn,
    },
    Native {
        decl: Decl::Legacy(
            "logratio_var(p: model, q: model, sentences: int, given: text = [], samples: int = none, seed: int | string = none, unit: record = none) -> number | estimate",
        ),
        doc: "Var over texts s ~ P(.|given) of `sentences` units of log P(s)/Q(s) (def. 4, sigma-similarity).",
        func: logratio_var_fn,
    },
    Native {
        decl: Decl::Legacy(
            "expect(model: model, given: text | list = [], behavior: function | record = none, samples: int = none, seed: int | string = none, unit: record = none) -> number | estimate",
        ),
        doc: "Behavior expectation B_P(given) = E_{y ~ P(.|given)} B(y) of the next unit (eq. 2). B is the model's own sentence scores, behavior(y) for a one-unit text y, or a scorer made by likelihood_ratio(...), keywords(...) or labels(...). A list of prompts averages over them.",
        func: expect_fn,
    },
    Native {
        decl: Decl::Legacy("fit_kl_decay(curve: list | table, points: int = 3) -> record"),
        doc: "Fit KL(n) = log(1/a) - beta n on the first `points` points (sec. 4.1) and Lemma 5's log(1 + e^(log(1/a) - beta n)) on all of them. curve: KL values at n = 0, 1, ... or a table with columns n and kl. Fitted values are estimates with standard errors. When the Lemma 5 fit fails (too few points, no convergence), `lemma5` is none and `lemma5_error` says why; the line's fit is still returned.",
        func: fit_kl_decay_fn,
    },
    Native {
        decl: Decl::Legacy("fit_sigma(curve: list | table) -> record"),
        doc: "sigma^2 as the slope of a line through the origin bounding Var(n) (def. 4, sec. 4.2): the tightest bound max Var(n)/n, and a least-squares slope with its standard error. curve: variances at n = 0, 1, ... or a table with columns n and var.",
        func: fit_sigma_fn,
    },
];

impl From<MeasureError> for BebError {
    fn from(error: MeasureError) -> BebError {
        let kind = match error {
            MeasureError::Model(_) => ErrorKind::Model,
            _ => ErrorKind::Value,
        };
        BebError::new(kind, error.to_string())
    }
}

impl From<fit::FitError> for BebError {
    fn from(error: fit::FitError) -> BebError {
        BebError::new(ErrorKind::Value, error.to_string())
    }
}

/// `model` seen through the `unit:` (and sampling) arguments, when any are given.
pub(crate) fn viewed(
    args: &Args,
    name: &str,
    model: ModelRef,
    sampling: Option<&crate::lm::Sampling>,
) -> BebResult<ModelRef> {
    let unit = crate::eval::builtins::neural::unit_arg(args, "unit")?;
    if unit.is_none() && sampling.is_none() {
        return Ok(model);
    }
    let what = if unit.is_some() {
        "unit"
    } else {
        "temperature"
    };
    match model
        .view(unit.as_ref(), sampling)
        .map_err(|e| BebError::from(e).at(args.span(name)))?
    {
        Some(m) => Ok(m),
        None => Err(args.invalid(
            what,
            format!(
                "`{what}:` applies to neural models and mixtures of them; {} is not one",
                model.name()
            ),
        )),
    }
}

/// temperature / top_k / top_p, when any is given.
pub(crate) fn sampling_arg(args: &Args) -> BebResult<Option<crate::lm::Sampling>> {
    let temperature = args.opt_num("temperature")?;
    let top_k = args.opt_count("top_k")?;
    let top_p = args.opt_num("top_p")?;
    if temperature.is_none() && top_k.is_none() && top_p.is_none() {
        return Ok(None);
    }
    let s = crate::lm::Sampling {
        temperature: temperature.unwrap_or(1.0),
        top_k,
        top_p,
    };
    s.validate()
        .map_err(|e| BebError::from(e).at(args.call_span))?;
    Ok(Some(s))
}

fn model_value(model: impl crate::lm::LanguageModel + 'static) -> Value {
    Value::Model(Rc::new(model))
}

/// The model's name: `name:` if given, else the variable it is being bound to.
pub fn model_name(interp: &mut Interp, args: &Args, fallback: &str) -> BebResult<String> {
    match args.get("name") {
        Some(Value::Str(s)) => Ok(s.to_string()),
        Some(_) => Err(args.wrong_type("name", "a string")),
        None => Ok(interp
            .take_name_hint()
            .map(|n| n.to_string())
            .unwrap_or_else(|| fallback.into())),
    }
}

/// A categorical model from `(sentence, probability, score)` entries, named after its variable.
pub fn categorical(
    name: Option<Name>,
    entries: Vec<(String, f64, Option<f64>)>,
    normalize: bool,
) -> BebResult<Value> {
    let name = name
        .map(|n| n.to_string())
        .unwrap_or_else(|| "sentences".into());
    Ok(model_value(Categorical::with_optional_scores(
        name, entries, normalize,
    )?))
}

fn strings(args: &Args, name: &str) -> BebResult<Vec<String>> {
    args.list(name)?
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Str(s) => Ok(s.to_string()),
            other => Err(args.invalid(
                name,
                format!(
                    "element {i} of `{name}` is a {}, not a string",
                    other.type_name()
                ),
            )),
        })
        .collect()
}

fn numbers_of(args: &Args, name: &str, items: &[Value]) -> BebResult<Vec<f64>> {
    items
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Num(x) => Ok(*x),
            other => Err(args.invalid(
                name,
                format!(
                    "element {i} of `{name}` is a {}, not a number",
                    other.type_name()
                ),
            )),
        })
        .collect()
}

/// Optional per-state scores, checked to match the number of states.
fn optional_scores(args: &Args, states: usize) -> BebResult<Vec<Option<f64>>> {
    match args.get("scores") {
        None => Ok(vec![None; states]),
        Some(_) => {
            let scores = numbers(args, "scores")?;
            if scores.len() != states {
                return Err(args.invalid(
                    "scores",
                    format!("{} scores for {states} sentences", scores.len()),
                ));
            }
            Ok(scores.into_iter().map(Some).collect())
        }
    }
}

fn categorical_fn(interp: &mut Interp, args: &Args) -> BebResult<Value> {
    let sentences = strings(args, "sentences")?;
    let probs = numbers(args, "probs")?;
    if probs.len() != sentences.len() {
        return Err(args.invalid(
            "probs",
            format!(
                "{} probabilities for {} sentences",
                probs.len(),
                sentences.len()
            ),
        ));
    }
    let scores = optional_scores(args, sentences.len())?;
    let normalize = args.boolean("normalize", false)?;
    let name = model_name(interp, args, "categorical")?;
    let entries = sentences
        .into_iter()
        .zip(probs)
        .zip(scores)
        .map(|((s, p), b)| (s, p, b))
        .collect();
    Ok(model_value(Categorical::with_optional_scores(
        name, entries, normalize,
    )?))
}

fn markov_fn(interp: &mut Interp, args: &Args) -> BebResult<Value> {
    let states = strings(args, "states")?;
    let initial = numbers(args, "initial")?;
    if initial.len() != states.len() {
        return Err(args.invalid(
            "initial",
            format!(
                "{} initial probabilities for {} states",
                initial.len(),
                states.len()
            ),
        ));
    }
    let rows = args.list("transitions")?;
    if rows.len() != states.len() {
        return Err(args.invalid(
            "transitions",
            format!("{} transition rows for {} states", rows.len(), states.len()),
        ));
    }
    let mut transitions = Vec::with_capacity(rows.len());
    for (from, row) in states.iter().zip(&rows) {
        let row = iterate(row).ok_or_else(|| {
            args.invalid("transitions", "each transition row is a list of numbers")
        })?;
        let probs = numbers_of(args, "transitions", &row)?;
        if probs.len() != states.len() {
            return Err(args.invalid(
                "transitions",
                format!(
                    "the row of {from:?} has {} entries for {} states",
                    probs.len(),
                    states.len()
                ),
            ));
        }
        transitions.push((from.clone(), states.iter().cloned().zip(probs).collect()));
    }
    let scores: Vec<(String, f64)> = optional_scores(args, states.len())?
        .into_iter()
        .zip(&states)
        .filter_map(|(b, s)| b.map(|b| (s.clone(), b)))
        .collect();
    let normalize = args.boolean("normalize", false)?;
    let name = model_name(interp, args, "markov")?;
    let initial = states.iter().cloned().zip(initial).collect();
    Ok(model_value(Markov::new(
        name,
        initial,
        transitions,
        scores,
        normalize,
    )?))
}

fn mixture_fn(interp: &mut Interp, args: &Args) -> BebResult<Value> {
    // Components: several model arguments, or one list of models.
    let given: Vec<(Value, crate::syntax::Span)> = match args.rest.as_slice() {
        [(Value::List(items), span)] => items.iter().map(|v| (v.clone(), *span)).collect(),
        many => many.to_vec(),
    };
    let mut models: Vec<ModelRef> = Vec::with_capacity(given.len());
    for (v, span) in &given {
        match v {
            Value::Model(m) => models.push(m.clone()),
            other => {
                return Err(BebError::type_error(format!(
                    "mixture() components are models, found a {}",
                    other.type_name()
                ))
                .at(*span)
                .with_help(format!("signature: {}", args.builtin.signature)));
            }
        }
    }
    if models.is_empty() {
        return Err(BebError::argument("mixture() needs at least one component"));
    }
    let chosen: Vec<&str> = ["weights", "log_weights", "alpha", "log_alpha"]
        .into_iter()
        .filter(|k| args.get(k).is_some())
        .collect();
    let log_weights: Vec<f64> = match chosen.as_slice() {
        ["weights"] => numbers(args, "weights")?
            .into_iter()
            .map(|w| {
                if w >= 0.0 {
                    Ok(w.ln())
                } else {
                    Err(args.invalid("weights", "weights are >= 0"))
                }
            })
            .collect::<BebResult<_>>()?,
        ["log_weights"] => numbers(args, "log_weights")?,
        [one @ ("alpha" | "log_alpha")] => {
            if models.len() != 2 {
                return Err(args.invalid(
                    one,
                    format!(
                        "`{one}` is for two components (P = a P_1 + (1 - a) P_2); found {}",
                        models.len()
                    ),
                ));
            }
            let log_a = if *one == "alpha" {
                let a = args.num("alpha")?;
                if !(a > 0.0 && a < 1.0) {
                    return Err(args.invalid(
                        "alpha",
                        format!(
                            "alpha must lie in (0, 1), found {}",
                            crate::format::number(a)
                        ),
                    ));
                }
                a.ln()
            } else {
                let la = args.num("log_alpha")?;
                if la.is_nan() || la >= 0.0 {
                    return Err(args.invalid("log_alpha", "log_alpha must be < 0"));
                }
                la
            };
            // log(1 - a) = log1p(-a): exact even when a underflows.
            vec![log_a, (-log_a.exp()).ln_1p()]
        }
        [] => vec![-(models.len() as f64).ln(); models.len()],
        _ => {
            return Err(
                BebError::argument(format!("give only one of {}", chosen.join(", ")))
                    .with_help(format!("signature: {}", args.builtin.signature)),
            );
        }
    };
    if log_weights.len() != models.len() {
        return Err(BebError::argument(format!(
            "{} weights for {} components",
            log_weights.len(),
            models.len()
        )));
    }
    let name = model_name(interp, args, "mixture")?;
    let components = models
        .into_iter()
        .zip(log_weights)
        .map(|(m, w)| (m.name().to_string(), m, w))
        .collect();
    Ok(model_value(Mixture::new(components)?.with_name(name)))
}

fn posterior_fn(_: &mut Interp, args: &Args) -> BebResult<Value> {
    let model = args.model("mixture")?;
    let mixture = model
        .as_mixture()
        .ok_or_else(|| args.invalid("mixture", format!("{} is not a mixture", model.name())))?;
    let given = args.opt_text("given")?;
    let as_log = args.boolean("log", false)?;
    let weights = mixture.posterior(&given.units)?;
    let fields = weights
        .into_iter()
        .map(|(name, lw)| {
            (
                Name::from(name.as_str()),
                Value::Num(if as_log { lw } else { lw.exp() }),
            )
        })
        .collect();
    Ok(Value::Record(Rc::new(Record { fields })))
}

fn sample_fn(interp: &mut Interp, args: &Args) -> BebResult<Value> {
    if crate::eval::builtins::generation::best_of_requested(args) {
        return crate::eval::builtins::generation::best_of_sample(interp, args);
    }
    let sampling = sampling_arg(args)?;
    let model = interp.for_run(viewed(
        args,
        "model",
        args.model("model")?,
        sampling.as_ref(),
    )?);
    let sentences = args.opt_count("sentences")?.unwrap_or(1);
    let given = args.opt_text("given")?;
    let stream = interp.stream(args)?;
    let count = args.opt_count("count")?;
    let texts = measure::sample_texts(
        model.as_ref(),
        &given.units,
        sentences,
        count.unwrap_or(1),
        &stream,
    )?;
    let mut values: Vec<Value> = texts.into_iter().map(Value::text).collect();
    match count {
        Some(_) => Ok(Value::list(values)),
        // Invariant: count defaulted to 1, so exactly one text was drawn.
        None => Ok(values.pop().unwrap_or(Value::None)),
    }
}

fn logprob_fn(interp: &mut Interp, args: &Args) -> BebResult<Value> {
    let model = interp.for_run(viewed(args, "model", args.model("model")?, None)?);
    let text = args.text("text")?;
    let given = args.opt_text("given")?;
    Ok(Value::Num(model.logprob(&given.units, &text.units)?))
}

fn logratio_fn(interp: &mut Interp, args: &Args) -> BebResult<Value> {
    let (p, q) = (
        interp.for_run(args.model("p")?),
        interp.for_run(args.model("q")?),
    );
    let text = args.text("text")?;
    let given = args.opt_text("given")?;
    Ok(Value::Num(measure::logratio(
        p.as_ref(),
        q.as_ref(),
        &text.units,
        &given.units,
    )?))
}

/// The prompts a measurement is conditioned on: one text, or a list of texts to average over.
fn prompts(args: &Args) -> BebResult<Vec<Rc<Text>>> {
    match args.get("given") {
        None => Ok(vec![Rc::new(Text::default())]),
        Some(Value::List(items))
            if !items.is_empty() && items.iter().all(|v| matches!(v, Value::Text(_))) =>
        {
            Ok(items.iter().filter_map(as_text).collect())
        }
        Some(_) => Ok(vec![args.text("given")?]),
    }
}

/// Exact unless `samples:` is given; for several prompts, each gets its own stream.
fn method(interp: &mut Interp, args: &Args) -> BebResult<Option<(usize, Stream)>> {
    match args.opt_count("samples")? {
        None => {
            if args.get("seed").is_some() {
                return Err(args.invalid(
                    "seed",
                    "`seed:` only matters with `samples:` (exact values use no randomness)",
                ));
            }
            Ok(None)
        }
        Some(0) => Err(args.invalid("samples", "samples must be at least 1")),
        Some(n) => Ok(Some((n, interp.stream(args)?))),
    }
}

fn method_for(plan: &Option<(usize, Stream)>, prompt: usize, prompts: usize) -> Method {
    match plan {
        None => Method::Exact,
        Some((n, stream)) if prompts > 1 => {
            Method::monte_carlo(*n, stream.child(&format!("prompt{prompt}")))
        }
        Some((n, stream)) => Method::monte_carlo(*n, stream.clone()),
    }
}

/// Average measurements over prompts: exact values stay exact; estimates combine as the mean
/// of independent means (standard errors add in quadrature).
fn average(values: &[Measured]) -> Value {
    if let [single] = values {
        return measured(*single);
    }
    let m = values.len() as f64;
    if values.iter().all(Measured::is_exact) {
        return Value::Num(values.iter().map(Measured::value).sum::<f64>() / m);
    }
    let estimates: Vec<Estimate> = values.iter().map(Measured::as_estimate).collect();
    Value::Estimate(Estimate {
        mean: estimates.iter().map(|e| e.mean).sum::<f64>() / m,
        stderr: estimates
            .iter()
            .map(|e| e.stderr * e.stderr)
            .sum::<f64>()
            .sqrt()
            / m,
        n: estimates.iter().map(|e| e.n).sum(),
    })
}

fn measured(m: Measured) -> Value {
    match m {
        Measured::Exact(x) => Value::Num(x),
        Measured::Estimate(e) => Value::Estimate(e),
    }
}

fn kl_fn(interp: &mut Interp, args: &Args) -> BebResult<Value> {
    let p = interp.for_run(viewed(args, "p", args.model("p")?, None)?);
    let q = interp.for_run(viewed(args, "q", args.model("q")?, None)?);
    let horizon = args.opt_count("sentences")?.unwrap_or(1);
    let prompts = prompts(args)?;
    let plan = method(interp, args)?;
    let mut values = Vec::with_capacity(prompts.len());
    for (i, prompt) in prompts.iter().enumerate() {
        values.push(measure::kl(
            p.as_ref(),
            q.as_ref(),
            &prompt.units,
            horizon,
            &method_for(&plan, i, prompts.len()),
        )?);
    }
    Ok(average(&values))
}

fn logratio_var_fn(interp: &mut Interp, args: &Args) -> BebResult<Value> {
    let p = interp.for_run(viewed(args, "p", args.model("p")?, None)?);
    let q = interp.for_run(viewed(args, "q", args.model("q")?, None)?);
    let units = args.count("sentences")?;
    let given = args.opt_text("given")?;
    let plan = method(interp, args)?;
    Ok(measured(measure::logratio_var(
        p.as_ref(),
        q.as_ref(),
        &given.units,
        units,
        &method_for(&plan, 0, 1),
    )?))
}

fn expect_fn(interp: &mut Interp, args: &Args) -> BebResult<Value> {
    let model = interp.for_run(viewed(args, "model", args.model("model")?, None)?);
    let prompts = prompts(args)?;
    let plan = method(interp, args)?;
    let behavior = args.get("behavior").cloned();
    let span = args.span("behavior");
    let mut values = Vec::with_capacity(prompts.len());
    for (i, prompt) in prompts.iter().enumerate() {
        let how = method_for(&plan, i, prompts.len());
        let value = match &behavior {
            None => measure::expect_scores(model.as_ref(), &prompt.units, &how)?,
            Some(record @ (Value::Record(_) | Value::Object(_))) => {
                let mut score =
                    crate::eval::builtins::neural::scorer(record).map_err(|e| e.at(span))?;
                measure::expect(model.as_ref(), &prompt.units, &mut score, &how)?
            }
            Some(f) => {
                let mut score = |unit: &Unit| -> BebResult<f64> {
                    match interp.call_simple(f, vec![Value::text(vec![unit.clone()])], span)? {
                        Value::Num(x) => Ok(x),
                        Value::Bool(b) => Ok(if b { 1.0 } else { 0.0 }),
                        other => Err(BebError::type_error(format!(
                            "a behavior function returns a number in [-1, 1], found a {}",
                            other.type_name()
                        ))
                        .at(span)),
                    }
                };
                measure::expect(model.as_ref(), &prompt.units, &mut score, &how)?
            }
        };
        values.push(value);
    }
    Ok(average(&values))
}

/// (n, value) points from a list (n = 0, 1, ...) or a table with columns `n` and `column`.
fn curve_points(args: &Args, column: &str) -> BebResult<Vec<(f64, f64)>> {
    let value = args.value("curve")?;
    let (ns, ys): (Vec<Value>, Vec<Value>) = match value {
        Value::Table(t) => {
            let (Some(ni), Some(yi)) = (t.column_index("n"), t.column_index(column)) else {
                return Err(args.invalid(
                    "curve",
                    format!("a curve table needs columns `n` and `{column}`"),
                ));
            };
            (t.column(ni), t.column(yi))
        }
        other => {
            let ys = iterate(other).ok_or_else(|| args.wrong_type("curve", "a list or a table"))?;
            ((0..ys.len()).map(|i| Value::Num(i as f64)).collect(), ys)
        }
    };
    ns.iter()
        .zip(&ys)
        .enumerate()
        .map(|(i, (n, y))| match (n, as_estimate(y)) {
            (Value::Num(n), Some(e)) => Ok((*n, e.mean)),
            _ => Err(args.invalid("curve", format!("point {i} is not a number"))),
        })
        .collect()
}

fn fit_kl_decay_fn(_: &mut Interp, args: &Args) -> BebResult<Value> {
    let points = curve_points(args, "kl")?;
    let first = args.opt_count("points")?.unwrap_or(3);
    let fit = fit::fit_kl_decay(&points, first)?;
    let (lemma5, lemma5_error) = match &fit.lemma5 {
        Ok(l5) => (
            Value::record(vec![
                ("log_inv_alpha", Value::Estimate(l5.log_inv_alpha)),
                ("beta", Value::Estimate(l5.beta)),
                ("rss", Value::Num(l5.rss)),
            ]),
            Value::None,
        ),
        Err(e) => (Value::None, Value::str(&e.to_string())),
    };
    Ok(Value::record(vec![
        ("log_inv_alpha", Value::Estimate(fit.linear.log_inv_alpha)),
        ("beta", Value::Estimate(fit.linear.beta)),
        ("lemma5", lemma5),
        ("lemma5_error", lemma5_error),
    ]))
}

fn fit_sigma_fn(_: &mut Interp, args: &Args) -> BebResult<Value> {
    let points = curve_points(args, "var")?;
    let fit = fit::fit_sigma(&points)?;
    Ok(Value::record(vec![
        ("sigma2_bound", Value::Num(fit.tight_slope)),
        ("sigma_bound", Value::Num(fit.tight_sigma)),
        ("at", Value::Num(fit.tight_at)),
        ("sigma2", Value::Estimate(fit.ls_slope)),
        ("sigma", Value::Estimate(fit.ls_sigma)),
    ]))
}
