//! Models and measurements: analytic models, mixtures, sampling, scoring, KL, log-ratio
//! variance, behavior expectation and fits. Exact on finite support; Monte Carlo when
//! `samples:` is given (or required because the support cannot be enumerated).

use std::rc::Rc;

use crate::builtin;
use crate::error::{BebError, BebResult, ErrorKind};
use crate::eval::builtins::generation::{self, BestOf};
use crate::eval::interp::Interp;
use crate::eval::natives::{
    Arg, Behavior, Call, FromArg, List, Mismatch, Native, Numbers, Prompts, Seed, Strings,
    as_estimate, iterate, numbers_in,
};
use crate::eval::value::{Record, Text, Value};
use crate::fit;
use crate::lm::analytic;
use crate::lm::{ModelRef, Sampling, Unit, UnitSpec};
use crate::measure::{self, MeasureError, Measured, Method};
use crate::seed::Stream;
use crate::stats::{Count, Estimate};
use crate::syntax::ast::Name;
use crate::value_union;

pub const NATIVES: &[Native] = &[
    Categorical::NATIVE,
    Markov::NATIVE,
    Mixture::NATIVE,
    Posterior::NATIVE,
    Sample::NATIVE,
    Logprob::NATIVE,
    Logratio::NATIVE,
    Kl::NATIVE,
    LogratioVar::NATIVE,
    Expect::NATIVE,
    FitKlDecay::NATIVE,
    FitSigma::NATIVE,
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
fn viewed(
    model: &Arg<ModelRef>,
    unit: &Arg<Option<UnitSpec>>,
    sampling: Option<&Arg<Sampling>>,
) -> BebResult<ModelRef> {
    if unit.is_none() && sampling.is_none() {
        return Ok(model.value.clone());
    }
    let view = model
        .view(unit.as_ref(), sampling.map(|s| &s.value))
        .map_err(|e| BebError::from(e).at(model.span))?;
    view.ok_or_else(|| {
        let (what, span) = match sampling {
            Some(s) if unit.is_none() => ("temperature", s.span),
            _ => ("unit", unit.span),
        };
        BebError::new(
            ErrorKind::Value,
            format!(
                "`{what}:` applies to neural models and mixtures of them; {} is not one",
                model.name()
            ),
        )
        .at(span)
    })
}

/// temperature / top_k / top_p, when any is given (pointing at `temperature:`).
fn sampling(
    call: &Call,
    temperature: &Arg<Option<f64>>,
    top_k: &Arg<Option<usize>>,
    top_p: &Arg<Option<f64>>,
) -> BebResult<Option<Arg<Sampling>>> {
    if temperature.is_none() && top_k.is_none() && top_p.is_none() {
        return Ok(None);
    }
    let s = Sampling {
        temperature: temperature.value.unwrap_or(1.0),
        top_k: top_k.value,
        top_p: top_p.value,
    };
    s.validate().map_err(|e| BebError::from(e).at(call.span))?;
    Ok(Some(Arg {
        value: s,
        span: temperature.span,
        name: temperature.name,
    }))
}

fn model_value(model: impl crate::lm::LanguageModel + 'static) -> Value {
    Value::Model(Rc::new(model))
}

/// A categorical model from `(sentence, probability, score)` entries (the `sentences { }` literal).
pub fn categorical(
    name: String,
    entries: Vec<(String, f64, Option<f64>)>,
    normalize: bool,
) -> BebResult<Value> {
    Ok(model_value(analytic::Categorical::with_optional_scores(
        name, entries, normalize,
    )?))
}

/// Optional per-state scores, checked to match the number of states.
fn optional_scores(scores: &Arg<Option<Numbers>>, states: usize) -> BebResult<Vec<Option<f64>>> {
    let Some(Numbers(values)) = &scores.value else {
        return Ok(vec![None; states]);
    };
    if values.len() != states {
        return Err(scores.invalid(format!("{} scores for {states} sentences", values.len())));
    }
    Ok(values.iter().copied().map(Some).collect())
}

builtin! {
    /// A sentence-level model drawing each sentence independently with the given
    /// probabilities; scores are behavior values in [-1, 1]. Probabilities must sum to 1
    /// (within 1e-9) unless normalize is true. The literal
    /// `sentences { "text": p @ score, ... }` builds the same model.
    Categorical = categorical(
        sentences: Strings,
        probs: Numbers,
        scores: Option<Numbers> = none,
        normalize: bool = false,
        name: Option<Rc<str>> = none,
    ) -> "model"
}

impl Categorical {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let sentences = self.sentences.value.0.clone();
        let probs = self.probs.value.0.clone();
        if probs.len() != sentences.len() {
            return Err(self.probs.invalid(format!(
                "{} probabilities for {} sentences",
                probs.len(),
                sentences.len()
            )));
        }
        let scores = optional_scores(&self.scores, sentences.len())?;
        let name = interp.model_name(self.name.as_deref(), "categorical");
        let entries = sentences
            .into_iter()
            .zip(probs)
            .zip(scores)
            .map(|((s, p), b)| (s, p, b))
            .collect();
        categorical(name, entries, *self.normalize)
    }
}

builtin! {
    /// A sentence-level Markov chain: initial[i] is P(first sentence = states[i]);
    /// transitions[i][j] is P(next = states[j] | current = states[i]).
    Markov = markov(
        states: Strings,
        initial: Numbers,
        transitions: List,
        scores: Option<Numbers> = none,
        normalize: bool = false,
        name: Option<Rc<str>> = none,
    ) -> "model"
}

impl Markov {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let states = self.states.value.0.clone();
        let initial = self.initial.value.0.clone();
        if initial.len() != states.len() {
            return Err(self.initial.invalid(format!(
                "{} initial probabilities for {} states",
                initial.len(),
                states.len()
            )));
        }
        let rows = &self.transitions.0;
        if rows.len() != states.len() {
            return Err(self.transitions.invalid(format!(
                "{} transition rows for {} states",
                rows.len(),
                states.len()
            )));
        }
        let mut transitions = Vec::with_capacity(rows.len());
        for (from, row) in states.iter().zip(rows) {
            let row = iterate(row).ok_or_else(|| {
                self.transitions
                    .invalid("each transition row is a list of numbers")
            })?;
            let probs = numbers_in(&row, self.transitions.name)
                .map_err(|message| self.transitions.invalid(message))?;
            if probs.len() != states.len() {
                return Err(self.transitions.invalid(format!(
                    "the row of {from:?} has {} entries for {} states",
                    probs.len(),
                    states.len()
                )));
            }
            transitions.push((from.clone(), states.iter().cloned().zip(probs).collect()));
        }
        let scores: Vec<(String, f64)> = optional_scores(&self.scores, states.len())?
            .into_iter()
            .zip(&states)
            .filter_map(|(b, s)| b.map(|b| (s.clone(), b)))
            .collect();
        let name = interp.model_name(self.name.as_deref(), "markov");
        let initial = states.iter().cloned().zip(initial).collect();
        Ok(model_value(analytic::Markov::new(
            name,
            initial,
            transitions,
            scores,
            *self.normalize,
        )?))
    }
}

/// A mixture component as written: a model, or (as the only one) a list of models. mixture()
/// checks the kinds itself, so that its message names the components.
#[derive(Clone, Debug)]
pub struct Component(pub Value);

impl FromArg for Component {
    const TYPE: &'static str = "model";
    const EXPECTED: &'static str = "a model";
    fn from_value(value: &Value, _: &str) -> Result<Self, Mismatch> {
        Ok(Component(value.clone()))
    }
}

builtin! {
    /// The mixture of sequence distributions sum_i w_i P_i (eq. 3). Give weights, log_weights,
    /// or for two components alpha (P = alpha P_1 + (1 - alpha) P_2) or log_alpha; everything
    /// is kept in log space, so alpha = 1e-300 and log_alpha = -2000 both work.
    Mixture = mixture(
        *components: Component,
        weights: Option<Numbers> = none,
        log_weights: Option<Numbers> = none,
        alpha: Option<f64> = none,
        log_alpha: Option<f64> = none,
        name: Option<Rc<str>> = none,
    ) -> "model"
}

impl Mixture {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let signature = || format!("signature: {}", self.call.builtin.signature);
        // Components: several model arguments, or one list of models.
        let given: Vec<(&Value, crate::syntax::Span)> = match self.components.as_slice() {
            [
                Arg {
                    value: Component(Value::List(items)),
                    span,
                    ..
                },
            ] => items.iter().map(|v| (v, *span)).collect(),
            many => many.iter().map(|c| (&c.0, c.span)).collect(),
        };
        let mut models: Vec<ModelRef> = Vec::with_capacity(given.len());
        for (v, span) in given {
            match v {
                Value::Model(m) => models.push(m.clone()),
                other => {
                    return Err(BebError::type_error(format!(
                        "mixture() components are models, found a {}",
                        other.type_name()
                    ))
                    .at(span)
                    .with_help(signature()));
                }
            }
        }
        if models.is_empty() {
            return Err(BebError::argument("mixture() needs at least one component"));
        }
        let log_weights: Vec<f64> = match (
            &self.weights.value,
            &self.log_weights.value,
            self.alpha.value,
            self.log_alpha.value,
        ) {
            (None, None, None, None) => vec![-(models.len() as f64).ln(); models.len()],
            (Some(Numbers(weights)), None, None, None) => weights
                .iter()
                .map(|&w| {
                    if w >= 0.0 {
                        Ok(w.ln())
                    } else {
                        Err(self.weights.invalid("weights are >= 0"))
                    }
                })
                .collect::<BebResult<_>>()?,
            (None, Some(Numbers(log_weights)), None, None) => log_weights.clone(),
            (None, None, Some(a), None) => {
                two_components(&self.alpha, models.len())?;
                if !(a > 0.0 && a < 1.0) {
                    return Err(self.alpha.invalid(format!(
                        "alpha must lie in (0, 1), found {}",
                        crate::format::number(a)
                    )));
                }
                alpha_pair(a.ln())
            }
            (None, None, None, Some(la)) => {
                two_components(&self.log_alpha, models.len())?;
                if la.is_nan() || la >= 0.0 {
                    return Err(self.log_alpha.invalid("log_alpha must be < 0"));
                }
                alpha_pair(la)
            }
            _ => {
                let chosen: Vec<&str> = [
                    ("weights", self.weights.is_some()),
                    ("log_weights", self.log_weights.is_some()),
                    ("alpha", self.alpha.is_some()),
                    ("log_alpha", self.log_alpha.is_some()),
                ]
                .into_iter()
                .filter_map(|(k, given)| given.then_some(k))
                .collect();
                return Err(
                    BebError::argument(format!("give only one of {}", chosen.join(", ")))
                        .with_help(signature()),
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
        let name = interp.model_name(self.name.as_deref(), "mixture");
        let components = models
            .into_iter()
            .zip(log_weights)
            .map(|(m, w)| (m.name().to_string(), m, w))
            .collect();
        Ok(model_value(
            crate::lm::mixture::Mixture::new(components)?.with_name(name),
        ))
    }
}

/// `alpha:` and `log_alpha:` weigh exactly two components.
fn two_components(arg: &Arg<Option<f64>>, components: usize) -> BebResult<()> {
    if components == 2 {
        return Ok(());
    }
    let one = arg.name;
    Err(arg.invalid(format!(
        "`{one}` is for two components (P = a P_1 + (1 - a) P_2); found {components}"
    )))
}

/// The log weights (log a, log(1 - a)) of two components from log a.
fn alpha_pair(log_a: f64) -> Vec<f64> {
    // log(1 - a) = log1p(-a): exact even when a underflows.
    vec![log_a, (-log_a.exp()).ln_1p()]
}

builtin! {
    /// The components' posterior weights after the prefix (eq. 10): w_i(s) proportional to
    /// w_i P_i(s). With log: true, natural-log weights (no underflow).
    Posterior = posterior(mixture: ModelRef, given: Rc<Text> = [], log: bool = false) -> "record"
}

impl Posterior {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        let mixture = self.mixture.as_mixture().ok_or_else(|| {
            self.mixture
                .invalid(format!("{} is not a mixture", self.mixture.name()))
        })?;
        let weights = mixture.posterior(&self.given.units)?;
        let as_log = *self.log;
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
}

builtin! {
    /// Sample a text of `sentences` units after `given` (a list of `count` texts when count is
    /// given). Draw i uses its own stream derived from the seed, so results do not depend on
    /// count or order. For neural models, `unit:` sets what a unit is and
    /// temperature/top_k/top_p change how tokens are drawn (default: ancestral sampling, which
    /// measurements always use). With best_of: n, each draw is the best of n candidates by
    /// `by:` (a scorer or a function of a text; default the model's own scores), ties to the
    /// first (Theorem 4).
    Sample = sample(
        model: ModelRef,
        sentences: usize = 1,
        count: Option<usize> = none,
        given: Rc<Text> = [],
        seed: Option<Seed> = none,
        unit: Option<UnitSpec> = none,
        temperature: Option<f64> = none,
        top_k: Option<usize> = none,
        top_p: Option<f64> = none,
        best_of: Option<usize> = none,
        by: Option<Behavior> = none,
    ) -> "text | list"
}

impl Sample {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        // Best-of-n when `best_of:` is given; `by:` alone is refused rather than ignored.
        let candidates = match (self.best_of.value, &self.by.value) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(self
                    .by
                    .invalid("`by:` chooses among candidates: give `best_of: n` too"));
            }
            (Some(0), _) => return Err(self.best_of.invalid("best_of must be at least 1")),
            (Some(n), _) => Some(n),
        };
        let sampling = sampling(&self.call, &self.temperature, &self.top_k, &self.top_p)?;
        let model = viewed(&self.model, &self.unit, sampling.as_ref())?;
        let draws = self.count.unwrap_or(1);
        let stream = interp.seed_stream(&self.call, self.seed.as_ref());
        let mut values: Vec<Value> = match candidates {
            None => {
                let model = interp.for_run(model);
                measure::sample_texts(
                    model.as_ref(),
                    &self.given.units,
                    *self.sentences,
                    draws,
                    &stream,
                )?
                .into_iter()
                .map(Value::text)
                .collect()
            }
            Some(n) => generation::best_of(
                interp,
                BestOf {
                    model,
                    given: &self.given.units,
                    sentences: *self.sentences,
                    draws,
                    candidates: n,
                    by: self.by,
                    stream: &stream,
                },
            )?,
        };
        match self.count.value {
            Some(_) => Ok(Value::list(values)),
            // Invariant: count defaulted to 1, so exactly one text was drawn.
            None => Ok(values.pop().unwrap_or(Value::None)),
        }
    }
}

builtin! {
    /// log P(text | given), exact.
    Logprob = logprob(
        model: ModelRef,
        text: Rc<Text>,
        given: Rc<Text> = [],
        unit: Option<UnitSpec> = none,
    ) -> "number"
}

impl Logprob {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let model = interp.for_run(viewed(&self.model, &self.unit, None)?);
        Ok(Value::Num(
            model.logprob(&self.given.units, &self.text.units)?,
        ))
    }
}

builtin! {
    /// log P(text | given) - log Q(text | given); for p = P_minus, q = P_plus this is the r of
    /// eq. 99.
    Logratio = logratio(p: ModelRef, q: ModelRef, text: Rc<Text>, given: Rc<Text> = []) -> "number"
}

impl Logratio {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let (p, q) = (
            interp.for_run(self.p.into_inner()),
            interp.for_run(self.q.into_inner()),
        );
        Ok(Value::Num(measure::logratio(
            p.as_ref(),
            q.as_ref(),
            &self.text.units,
            &self.given.units,
        )?))
    }
}

/// Exact unless `samples:` is given; for several prompts, each gets its own stream.
fn method(
    interp: &mut Interp,
    call: &Call,
    samples: &Arg<Option<usize>>,
    seed: &Arg<Option<Seed>>,
) -> BebResult<Option<(usize, Stream)>> {
    match samples.value {
        None => {
            if seed.is_some() {
                return Err(seed.invalid(
                    "`seed:` only matters with `samples:` (exact values use no randomness)",
                ));
            }
            Ok(None)
        }
        Some(0) => Err(samples.invalid("samples must be at least 1")),
        Some(n) => Ok(Some((n, interp.seed_stream(call, seed.as_ref())))),
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

/// The two error bars of a measurement averaged over several prompts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PromptError {
    /// The spread of the per-prompt values across prompts (n = prompts): the error of a
    /// claim about prompts drawn at random, e.g. from P_minus.
    AcrossPrompts,
    /// Conditional on these prompts: per-prompt errors in quadrature (exact values stay
    /// exact).
    GivenPrompts,
}

fn prompt_error(error: &Arg<Rc<str>>) -> BebResult<PromptError> {
    match &*error.value {
        "across_prompts" => Ok(PromptError::AcrossPrompts),
        "given_prompts" => Ok(PromptError::GivenPrompts),
        other => Err(error.invalid(format!(
            "error: is \"across_prompts\" (the spread across prompts, the default) or \"given_prompts\" (conditional on these prompts), not {other:?}"
        ))),
    }
}

/// Average measurements over prompts with the error bar `error` asks for (one prompt: its
/// own value).
fn average(values: &[Measured], error: PromptError) -> Value {
    if let [single] = values {
        return measured(*single);
    }
    // The estimator every estimate names, if they all name one.
    let names: Vec<Option<&'static str>> = values
        .iter()
        .map(|m| match m {
            Measured::Estimate(e) => e.estimator,
            Measured::Exact(_) => None,
        })
        .collect();
    let named = if names.windows(2).all(|w| w[0] == w[1]) {
        names.first().copied().flatten()
    } else {
        None
    };
    match average_of(values, error) {
        Value::Estimate(e) => Value::Estimate(Estimate {
            estimator: named,
            ..e
        }),
        other => other,
    }
}

/// [`average`] before the estimator's name is carried over.
fn average_of(values: &[Measured], error: PromptError) -> Value {
    let m = values.len() as f64;
    match error {
        PromptError::AcrossPrompts => {
            let means: Vec<f64> = values.iter().map(Measured::value).collect();
            if means.iter().any(|x| x.is_infinite()) {
                let mean = means.iter().sum::<f64>() / m;
                return Value::Estimate(
                    Estimate::new(mean, f64::NAN, values.len()).counting(Count::Prompts),
                );
            }
            Value::Estimate(Estimate::from_samples(&means).counting(Count::Prompts))
        }
        PromptError::GivenPrompts => {
            if values.iter().all(Measured::is_exact) {
                return Value::Num(values.iter().map(Measured::value).sum::<f64>() / m);
            }
            let estimates: Vec<Estimate> = values.iter().map(Measured::as_estimate).collect();
            let stderr = estimates
                .iter()
                .map(|e| e.stderr * e.stderr)
                .sum::<f64>()
                .sqrt()
                / m;
            // The across-prompt mean, computed the same way: one number, two error bars.
            let means: Vec<f64> = estimates.iter().map(|e| e.mean).collect();
            Value::Estimate(
                Estimate::new(
                    Estimate::from_samples(&means).mean,
                    stderr,
                    estimates.iter().map(|e| e.n).sum(),
                )
                .counting(Count::DrawsGiven {
                    prompts: values.len(),
                }),
            )
        }
    }
}

fn measured(m: Measured) -> Value {
    match m {
        Measured::Exact(x) => Value::Num(x),
        Measured::Estimate(e) => Value::Estimate(e),
    }
}

builtin! {
    /// Conditional KL divergence D_KL(P(.|given) || Q(.|given)) over the next `sentences` units
    /// (def. 2). Exact by enumeration; with samples: N a Monte Carlo estimate. A list of
    /// prompts as `given` averages over them; its error bar is the spread across the prompts
    /// (n = prompts), or with error: "given_prompts" the error conditional on them. `given_q`
    /// conditions Q on another prompt (one per prompt of `given`):
    /// D_KL(P(.|given) || Q(.|given_q)), e.g. Q behind an aligning prefix s0 + given.
    /// `estimator` picks the Monte Carlo estimator: "plain" (the mean log-ratio) or "rb" (the
    /// Rao-Blackwellized sum of exact per-step divergences; refused, saying why, where a
    /// model has no exact next-step distribution); left out, the default applies.
    Kl = kl(
        p: ModelRef,
        q: ModelRef,
        given: Prompts = [],
        given_q: Option<Prompts> = none,
        sentences: usize = 1,
        samples: Option<usize> = none,
        seed: Option<Seed> = none,
        unit: Option<UnitSpec> = none,
        error: Rc<str> = "across_prompts",
        estimator: Option<Rc<str>> = none,
    ) -> "number | estimate"
}

impl Kl {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let p = interp.for_run(viewed(&self.p, &self.unit, None)?);
        let q = interp.for_run(viewed(&self.q, &self.unit, None)?);
        let prompts = &self.given.0;
        let error = prompt_error(&self.error)?;
        if let Some(q_prompts) = &self.given_q.value
            && q_prompts.0.len() != prompts.len()
        {
            return Err(self.given_q.invalid(format!(
                "`given_q` needs one prompt per prompt of `given`: {} for {}",
                q_prompts.0.len(),
                prompts.len()
            )));
        }
        let estimator = match self.estimator.value.as_deref() {
            None => None,
            Some(_) if self.samples.is_none() => {
                return Err(self.estimator.invalid(
                    "`estimator:` chooses a Monte Carlo estimator: pass `samples: N` too",
                ));
            }
            Some(name) => Some(measure::KlEstimator::parse(name).ok_or_else(|| {
                self.estimator.invalid(format!(
                    "estimator: is \"rb\" (Rao-Blackwellized) or \"plain\", not {name:?}"
                ))
            })?),
        };
        let plan = method(interp, &self.call, &self.samples, &self.seed)?;
        let mut values = Vec::with_capacity(prompts.len());
        for (i, prompt) in prompts.iter().enumerate() {
            let q = match &self.given_q.value {
                Some(q_prompts) => crate::eval::conditioned::wrap(
                    q.clone(),
                    prompt.units.clone(),
                    q_prompts.0[i].units.clone(),
                ),
                None => q.clone(),
            };
            values.push(measure::kl_with(
                p.as_ref(),
                q.as_ref(),
                &prompt.units,
                *self.sentences,
                &method_for(&plan, i, prompts.len()),
                estimator,
            )?);
        }
        Ok(average(&values, error))
    }
}

builtin! {
    /// Var over texts s ~ P(.|given) of `sentences` units of log P(s)/Q(s) (def. 4,
    /// sigma-similarity).
    LogratioVar = logratio_var(
        p: ModelRef,
        q: ModelRef,
        sentences: usize,
        given: Rc<Text> = [],
        samples: Option<usize> = none,
        seed: Option<Seed> = none,
        unit: Option<UnitSpec> = none,
    ) -> "number | estimate"
}

impl LogratioVar {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let p = interp.for_run(viewed(&self.p, &self.unit, None)?);
        let q = interp.for_run(viewed(&self.q, &self.unit, None)?);
        let plan = method(interp, &self.call, &self.samples, &self.seed)?;
        Ok(measured(measure::logratio_var(
            p.as_ref(),
            q.as_ref(),
            &self.given.units,
            *self.sentences,
            &method_for(&plan, 0, 1),
        )?))
    }
}

builtin! {
    /// Behavior expectation B_P(given) = E_{y ~ P(.|given)} B(y) of the next unit (eq. 2). B is
    /// the model's own sentence scores, behavior(y) for a one-unit text y, or a scorer made by
    /// likelihood_ratio(...), keywords(...) or labels(...). A list of prompts averages over
    /// them, with the error bar across the prompts (or error: "given_prompts", as for kl).
    Expect = expect(
        model: ModelRef,
        given: Prompts = [],
        behavior: Option<Behavior> = none,
        samples: Option<usize> = none,
        seed: Option<Seed> = none,
        unit: Option<UnitSpec> = none,
        error: Rc<str> = "across_prompts",
    ) -> "number | estimate"
}

impl Expect {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let model = interp.for_run(viewed(&self.model, &self.unit, None)?);
        let prompts = &self.given.0;
        let error = prompt_error(&self.error)?;
        let plan = method(interp, &self.call, &self.samples, &self.seed)?;
        let span = self.behavior.span;
        let mut values = Vec::with_capacity(prompts.len());
        for (i, prompt) in prompts.iter().enumerate() {
            let how = method_for(&plan, i, prompts.len());
            let value = match &self.behavior.value {
                None => measure::expect_scores(model.as_ref(), &prompt.units, &how)?,
                Some(Behavior::Scorer(scorer)) => {
                    let mut score = |unit: &Unit| -> BebResult<f64> {
                        scorer.score(unit).map_err(|e| BebError::from(e).at(span))
                    };
                    measure::expect(model.as_ref(), &prompt.units, &mut score, &how)?
                }
                Some(Behavior::Function(f)) => {
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
        Ok(average(&values, error))
    }
}

value_union!(
    /// A curve to fit: values at n = 0, 1, ... (a list or range), or a table with a column `n`.
    Curve = "list | table",
    "a list or a table",
    List(_) | Range(_) | Table(_) | Text(_)
);

/// (n, value) points from a list (n = 0, 1, ...) or a table with columns `n` and `column`.
fn curve_points(call: &Call, curve: &Arg<Curve>, column: &str) -> BebResult<Vec<(f64, f64)>> {
    let (ns, ys): (Vec<Value>, Vec<Value>) = match &curve.0 {
        Value::Table(t) => {
            let (Some(ni), Some(yi)) = (t.column_index("n"), t.column_index(column)) else {
                return Err(
                    curve.invalid(format!("a curve table needs columns `n` and `{column}`"))
                );
            };
            (t.column(ni), t.column(yi))
        }
        other => {
            // Only a range too long to list has no elements here.
            let ys = iterate(other).ok_or_else(|| {
                BebError::new(
                    ErrorKind::Argument,
                    format!(
                        "`{}` of {}() must be {}, found {}",
                        curve.name,
                        call.builtin.name,
                        Curve::EXPECTED,
                        other.type_name()
                    ),
                )
                .at(curve.span)
                .with_help(format!("signature: {}", call.builtin.signature))
            })?;
            ((0..ys.len()).map(|i| Value::Num(i as f64)).collect(), ys)
        }
    };
    ns.iter()
        .zip(&ys)
        .enumerate()
        .map(|(i, (n, y))| match (n, as_estimate(y)) {
            (Value::Num(n), Some(e)) => Ok((*n, e.mean)),
            _ => Err(curve.invalid(format!("point {i} is not a number"))),
        })
        .collect()
}

builtin! {
    /// Fit KL(n) = log(1/a) - beta n on the first `points` points (sec. 4.1) and Lemma 5's
    /// log(1 + e^(log(1/a) - beta n)) on all of them. curve: KL values at n = 0, 1, ... or a
    /// table with columns n and kl. Fitted values are estimates with standard errors. When the
    /// Lemma 5 fit fails (too few points, no convergence), `lemma5` is none and `lemma5_error`
    /// says why; the line's fit is still returned. `regime` says where the line's points sit
    /// on Lemma 5's curve ("linear", "transition", "saturated") and the bias that puts in the
    /// line's slope; a warning says so when the two fits disagree by more than their errors.
    /// A curve that rises (beta more than two standard errors below 0) is refused; a slightly
    /// negative beta within noise is a warning.
    FitKlDecay = fit_kl_decay(curve: Curve, points: usize = 3) -> "record"
}

impl FitKlDecay {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let points = curve_points(&self.call, &self.curve, "kl")?;
        let fit = fit::fit_kl_decay(&points, *self.points)?;
        let beta = fit.linear.beta;
        // The model is a decay; a negative beta means the data are not one (KL against the
        // wrong variable, p and q swapped, a prompt that aligns instead), not a finding.
        if beta.mean < 0.0 {
            let what = format!(
                "the KL curve rises over its first {} points: fitted beta = {:.4} < 0, but \
                 fit_kl_decay fits a decay log(1/a) - beta n",
                *self.points, beta.mean
            );
            if beta.mean + 2.0 * beta.stderr < 0.0 {
                return Err(BebError::value(format!(
                    "{what} (beta is more than two standard errors below 0)"
                ))
                .at(self.curve.span)
                .with_help(
                    "check that the curve is KL(P(.|prompt of length n) || model) against n, \
                         in the order the paper uses, with prompts that push toward P_minus",
                ));
            }
            interp.warn(&format!("{what} (within two standard errors of 0)"));
        }
        if let (Some(regime), Ok(l5)) = (&fit.regime, &fit.lemma5)
            && regime.disagrees(fit.linear.beta.mean, l5.beta.mean)
        {
            interp.warn(&format!(
                "fit_kl_decay: the line through the first {} points gives beta = {}, Lemma 5's form over all {} gives {}: they differ by more than their errors. The first {} points are in the {} regime (the curve's bend biases the line's slope by {:.1}%); fit fewer points, or read beta from `lemma5`.",
                *self.points,
                fit.linear.beta,
                points.len(),
                l5.beta,
                *self.points,
                regime.name,
                100.0 * regime.slope_bias
            ));
        }
        let regime = fit.regime.as_ref().map_or(Value::None, |r| {
            Value::record(vec![
                ("name", Value::str(r.name)),
                ("slope_bias", Value::Num(r.slope_bias)),
            ])
        });
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
            ("regime", regime),
        ]))
    }
}

builtin! {
    /// sigma^2 as the slope of a line through the origin bounding Var(n) (def. 4, sec. 4.2):
    /// the tightest bound max Var(n)/n, and a least-squares slope with its standard error.
    /// curve: variances at n = 0, 1, ... or a table with columns n and var.
    FitSigma = fit_sigma(curve: Curve) -> "record"
}

impl FitSigma {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        let points = curve_points(&self.call, &self.curve, "var")?;
        let fit = fit::fit_sigma(&points)?;
        Ok(Value::record(vec![
            ("sigma2_bound", Value::Num(fit.tight_slope)),
            ("sigma_bound", Value::Num(fit.tight_sigma)),
            ("at", Value::Num(fit.tight_at)),
            ("sigma2", Value::Estimate(fit.ls_slope)),
            ("sigma", Value::Estimate(fit.ls_sigma)),
        ]))
    }
}
