//! The quantities of the BEB framework, measured on any [`LanguageModel`]: conditional KL
//! divergence (def. 2), log-likelihood ratios and their variance (def. 4), and behavior
//! expectations (eq. 2).
//!
//! Every measurement takes a [`Method`]. `Exact` enumerates continuations (or, for models of
//! Markov order <= 1, runs a dynamic program over states) and refuses with
//! [`MeasureError::NeedsSamples`] when the support is unbounded or too large. `MonteCarlo`
//! draws sample i from its own stream `sample_rng(root_seed, stream, i)`, so an estimate does
//! not depend on batch size or evaluation order, and the same stream name gives the same texts
//! in every measurement.
//!
//! All probabilities stay in log space; infinite divergences come out as `+inf`, never NaN.

pub mod behavior;
mod bounds;
pub mod conversation;
mod exact;
pub mod next_token;
pub mod rao_blackwell;
mod relative;

use std::fmt;

use rand::RngCore;

pub use bounds::{lemma2_bound, lemma5_bound, lemma7_bound, pointwise_bound};
pub use rao_blackwell::KlEstimator;

use crate::lm::{LanguageModel, ModelError, ModelResult, Scored, Unit, check_same_vocabulary};
use crate::seed::Stream;
use crate::stats::Estimate;
use exact::{Flow, Moments, WeightedMoments, enumerate, markov_kl, markov_moments};
use relative::{Relative, outside_mass};

/// The Monte Carlo KL estimator used where a script names none and it applies.
pub const DEFAULT_KL_ESTIMATOR: KlEstimator = KlEstimator::Plain;

/// The most continuations an exact measurement will enumerate.
pub const ENUMERATION_LIMIT: u64 = 2_000_000;

/// How to compute a measurement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Method {
    /// Enumerate (or use a closed form); an error when that is impossible or too large.
    Exact,
    /// Average `samples` draws; draw i uses `sample_rng(root_seed, &stream, i)`.
    MonteCarlo { samples: usize, stream: Stream },
}

impl Method {
    pub fn monte_carlo(samples: usize, stream: Stream) -> Method {
        Method::MonteCarlo { samples, stream }
    }
}

/// A measured value: exact, or a Monte Carlo estimate with its standard error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Measured {
    Exact(f64),
    Estimate(Estimate),
}

impl Measured {
    /// The exact value or the estimate's mean.
    pub fn value(&self) -> f64 {
        match self {
            Measured::Exact(x) => *x,
            Measured::Estimate(e) => e.mean,
        }
    }

    pub fn is_exact(&self) -> bool {
        matches!(self, Measured::Exact(_))
    }

    /// As an estimate; an exact value has standard error zero and n = 0 (no samples).
    pub fn as_estimate(&self) -> Estimate {
        match self {
            Measured::Exact(x) => Estimate::new(*x, 0.0, 0),
            Measured::Estimate(e) => *e,
        }
    }
}

impl fmt::Display for Measured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Measured::Exact(x) => f.write_str(&crate::format::number(*x)),
            Measured::Estimate(e) => e.fmt(f),
        }
    }
}

/// Why a measurement could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MeasureError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(
        "{what} cannot be computed exactly: {reason}; pass `samples: N` for a Monte Carlo estimate"
    )]
    NeedsSamples { what: String, reason: String },
    #[error(
        "the behavior of {unit:?} is {}; a behavior must be a number in [-1, 1]",
        crate::format::number(*.value)
    )]
    BehaviorOutOfRange { unit: String, value: f64 },
    #[error("{unit:?} has no behavior score in {model}")]
    MissingBehavior { unit: String, model: String },
    #[error("{0}")]
    Invalid(String),
}

fn positive_length(what: &str, n: usize) -> Result<(), MeasureError> {
    if n == 0 {
        Err(MeasureError::Invalid(format!(
            "{what} needs a text of at least one unit"
        )))
    } else {
        Ok(())
    }
}

fn monte_carlo_samples(what: &str, samples: usize, least: usize) -> Result<(), MeasureError> {
    if samples < least {
        Err(MeasureError::Invalid(format!(
            "a Monte Carlo {what} needs at least {least} samples, got {samples}"
        )))
    } else {
        Ok(())
    }
}

/// Draw `units` units from `model` after `given`, one at a time from the same generator.
pub fn sample_text(
    model: &dyn LanguageModel,
    given: &[Unit],
    units: usize,
    rng: &mut dyn RngCore,
) -> ModelResult<Vec<Unit>> {
    let mut context = given.to_vec();
    for _ in 0..units {
        let unit = model.sample_next(&context, rng)?;
        context.push(unit);
    }
    Ok(context.split_off(given.len()))
}

/// `count` texts of `units` units from `model` after `given`; text i is drawn with
/// `sample_rng(root_seed, stream, i)`.
pub fn sample_texts(
    model: &dyn LanguageModel,
    given: &[Unit],
    units: usize,
    count: usize,
    stream: &Stream,
) -> ModelResult<Vec<Vec<Unit>>> {
    let mut rngs = stream_rngs(units, count, stream)?;
    model.sample_many(given, units, &mut rngs)
}

/// [`sample_texts`] with each text's log-probability under `model`, from the draw itself
/// where the model computes it ([`LanguageModel::sample_scored`]).
pub fn sample_scored_texts(
    model: &dyn LanguageModel,
    given: &[Unit],
    units: usize,
    count: usize,
    stream: &Stream,
) -> ModelResult<Scored> {
    let mut rngs = stream_rngs(units, count, stream)?;
    model.sample_scored(given, units, &mut rngs)
}

/// Draws a Monte Carlo figure makes, measures and drops at a time: only one number per draw is
/// kept (the interval needs them all), so memory grows by a few bytes a sample whatever the
/// texts' length, and `samples` is bounded by the budget on those numbers alone.
const CHUNK: usize = 4096;

/// The values `measure` gives for the draws of `stream` (draw i from its own generator),
/// `CHUNK` draws at a time and in draw order: the same values as measuring all draws at once,
/// in memory for one chunk of texts of `units` units plus `count` numbers.
pub(crate) fn chunked<E: From<MeasureError>>(
    units: usize,
    count: usize,
    stream: &Stream,
    mut measure: impl FnMut(&mut [rand_chacha::ChaCha20Rng]) -> Result<Vec<f64>, E>,
) -> Result<Vec<f64>, E> {
    crate::budget::check(
        &format!("keeping the values of {count} draws"),
        count as u64,
        2 * std::mem::size_of::<f64>() as u64,
    )
    .map_err(MeasureError::Invalid)?;
    let mut values = Vec::with_capacity(count);
    let mut start = 0;
    while start < count {
        let end = count.min(start + CHUNK);
        let mut rngs = stream_rngs(units, end - start, stream).map_err(MeasureError::from)?;
        for (k, rng) in rngs.iter_mut().enumerate() {
            *rng = stream.sample_rng(start + k);
        }
        let got = measure(&mut rngs)?;
        if got.len() != end - start {
            return Err(MeasureError::Invalid(format!(
                "{} values came back for {} draws",
                got.len(),
                end - start
            ))
            .into());
        }
        values.extend(got);
        start = end;
    }
    Ok(values)
}

/// The generators of texts 0..count of `stream`, once the memory budget allows `count`
/// texts of `units` units.
fn stream_rngs(
    units: usize,
    count: usize,
    stream: &Stream,
) -> ModelResult<Vec<rand_chacha::ChaCha20Rng>> {
    // Each text holds its generator, its units and the values measured on it.
    let each = std::mem::size_of::<rand_chacha::ChaCha20Rng>()
        + std::mem::size_of::<Vec<Unit>>()
        + units.saturating_mul(std::mem::size_of::<Unit>() + 32)
        + 3 * std::mem::size_of::<f64>();
    crate::budget::check(
        &format!("drawing {count} texts of {units} units"),
        count as u64,
        each as u64,
    )
    .map_err(crate::lm::ModelError::Invalid)?;
    Ok((0..count).map(|i| stream.sample_rng(i)).collect())
}

/// log P(text | given) - log Q(text | given). An error when both are zero (the ratio is
/// undefined); `+inf` / `-inf` when only one is.
pub fn logratio(
    p: &dyn LanguageModel,
    q: &dyn LanguageModel,
    text: &[Unit],
    given: &[Unit],
) -> Result<f64, MeasureError> {
    check_same_vocabulary(p, q)?;
    let lp = p.logprob(given, text)?;
    let lq = q.logprob(given, text)?;
    if lp == f64::NEG_INFINITY && lq == f64::NEG_INFINITY {
        return Err(MeasureError::Invalid(format!(
            "the text has probability zero under both {} and {}, so their log-ratio is undefined",
            p.name(),
            q.name()
        )));
    }
    if lp.is_finite() && lq.is_finite() && q.as_mixture().is_some() {
        // A mixture containing P: -log1p(u) keeps the ratio's digits when it is near 1.
        return Ok(relative::logratios(p, q, given, &[text.to_vec()])?[0]);
    }
    Ok(lp - lq)
}

/// log P(y_i | given) - log Q(y_i | given) for `samples` texts y_i ~ P(. | given), text i from
/// `sample_rng(root_seed, stream, i)`; a term is `+inf` when Q cannot produce what P did.
fn sampled_logratios(
    p: &dyn LanguageModel,
    q: &dyn LanguageModel,
    given: &[Unit],
    units: usize,
    samples: usize,
    stream: &Stream,
) -> Result<Vec<f64>, MeasureError> {
    // Sampling and scoring go through the batched entry points; text i still comes from its
    // own generator, so the values are those of drawing and scoring one text at a time. The
    // draw gives log P of each text (P is not asked to score what it drew).
    chunked(units, samples, stream, |rngs| {
        let Scored {
            texts,
            logprobs: lp,
        } = p.sample_scored(given, units, rngs)?;
        if q.cache_identity().is_none() {
            // Models cheap enough not to cache score exactly, so the cancellation-free form
            // for a mixture containing P pays off; cached (neural) scores stay whole-mixture
            // scores.
            return Ok(relative::logratios_given(p, q, given, &texts, &lp)?);
        }
        let lq = q.logprob_many(given, &texts)?;
        Ok(lp.into_iter().zip(lq).map(|(a, b)| a - b).collect())
    })
}

/// An estimate whose mean is +inf because some draw was: certain, not noise, so the standard
/// error is reported as NaN (undefined) rather than as a number.
fn infinite_estimate(n: usize) -> Estimate {
    Estimate::new(f64::INFINITY, f64::NAN, n)
}

/// D_KL(P(. | given) || Q(. | given)) over the next `horizon` units (def. 2, eq. 5).
///
/// Exact: the sum over continuations y with P(y | given) > 0 of p(y)(log p(y) - log q(y)),
/// `+inf` as soon as q(y) = 0 for such a y. Monte Carlo: the mean of
/// log P(y_i | given) - log Q(y_i | given) over y_i ~ P(. | given); if some term is `+inf` the
/// estimate is `+inf` with a NaN standard error.
pub fn kl(
    p: &dyn LanguageModel,
    q: &dyn LanguageModel,
    given: &[Unit],
    horizon: usize,
    method: &Method,
) -> Result<Measured, MeasureError> {
    kl_with(p, q, given, horizon, method, None)
}

/// [`kl`] with the Monte Carlo estimator chosen: `Some(Plain)`, `Some(RaoBlackwell)` (an
/// error naming why where it does not apply: `rao_blackwell.rs`), or `None` for the default,
/// [`DEFAULT_KL_ESTIMATOR`] where it applies and the plain one elsewhere. A Rao-Blackwellized
/// estimate says so when printed (`n=200, rb`); exact measurements ignore the choice.
pub fn kl_with(
    p: &dyn LanguageModel,
    q: &dyn LanguageModel,
    given: &[Unit],
    horizon: usize,
    method: &Method,
    estimator: Option<KlEstimator>,
) -> Result<Measured, MeasureError> {
    check_same_vocabulary(p, q)?;
    positive_length("a KL divergence", horizon)?;
    match method {
        Method::Exact => {
            if let Some(kl) = markov_kl(p, q, given, horizon)? {
                return Ok(Measured::Exact(kl));
            }
            Ok(Measured::Exact(enumerated_kl(p, q, given, horizon)?))
        }
        Method::MonteCarlo { samples, stream } => {
            monte_carlo_samples("KL divergence", *samples, 1)?;
            let rb = match estimator.unwrap_or(DEFAULT_KL_ESTIMATOR) {
                KlEstimator::Plain => None,
                KlEstimator::RaoBlackwell => match rao_blackwell::steps(p, q, given)? {
                    Ok(steps) => Some(steps),
                    Err(why) if estimator.is_some() => return Err(MeasureError::Invalid(why)),
                    Err(_) => None,
                },
            };
            let Some(steps) = rb else {
                let values = sampled_logratios(p, q, given, horizon, *samples, stream)?;
                if values.contains(&f64::INFINITY) {
                    return Ok(Measured::Estimate(infinite_estimate(values.len())));
                }
                return Ok(Measured::Estimate(Estimate::from_samples(&values)));
            };
            let name = KlEstimator::RaoBlackwell.name();
            let values = rao_blackwell::terms(p, q, given, horizon, *samples, stream, steps)?;
            if values.contains(&f64::INFINITY) {
                return Ok(Measured::Estimate(infinite_estimate(values.len()).by(name)));
            }
            Ok(Measured::Estimate(Estimate::from_samples(&values).by(name)))
        }
    }
}

/// KL(P || Q) over `horizon` units by enumerating P's continuations, as the sum of
/// non-negative terms P(y) (u - log1p u) with u = Q(y)/P(y) - 1, plus the mass Q puts outside
/// P's support (`relative.rs`): never negative, and at full relative precision when Q is a
/// mixture containing P whose other components' posterior weight is tiny.
fn enumerated_kl(
    p: &dyn LanguageModel,
    q: &dyn LanguageModel,
    given: &[Unit],
    horizon: usize,
) -> Result<f64, MeasureError> {
    let form = Relative::new(p, q, given)?;
    let (mut inside, mut first_order, mut infinite) = (0.0, 0.0, false);
    enumerate(
        p,
        given,
        horizon,
        "the KL divergence",
        &mut |text, lp_path| {
            let text = [text.to_vec()];
            let lp = p.logprob_many(given, &text)?;
            let Some(terms) = form.terms(q, given, &text, &lp)?.pop() else {
                return Err(MeasureError::Invalid("a text was scored as nothing".into()));
            };
            if terms.log_ratio == f64::NEG_INFINITY {
                infinite = true;
                return Ok(Flow::Stop);
            }
            inside += terms.weighted(lp_path);
            if terms.excess.is_finite() {
                first_order += lp_path.exp() * terms.excess;
            }
            Ok(Flow::Continue)
        },
    )?;
    if infinite {
        return Ok(f64::INFINITY);
    }
    let outside = match outside_mass(p, q, given, horizon, ENUMERATION_LIMIT)? {
        Some(mass) => mass,
        // Q cannot list its support: the first-order terms sum to minus the outside mass, up
        // to rounding (an absolute error near 1e-16), which is all that is left to use.
        None => (-first_order).max(0.0),
    };
    Ok(inside + outside)
}

/// Var_{s ~ P(. | given)}[log P(s | given) / Q(s | given)] over texts of `units` units
/// (def. 4, eq. 6: sigma-similarity bounds it by units · sigma²).
///
/// Exact: by a dynamic program when both models have Markov order <= 1 (a closed form,
/// units × one-step variance, for independent units), else by enumeration. `+inf` when Q
/// gives probability zero to a text P can produce (the log-ratio is then infinite with
/// positive probability). Monte Carlo: the unbiased sample variance s² of the sampled
/// log-ratios, with standard error sqrt((m4 - s⁴ (k - 3)/(k - 1)) / k), the large-sample
/// (delta-method) variance of a sample variance, where m4 is the sample fourth central
/// moment and k the number of samples.
pub fn logratio_var(
    p: &dyn LanguageModel,
    q: &dyn LanguageModel,
    given: &[Unit],
    units: usize,
    method: &Method,
) -> Result<Measured, MeasureError> {
    check_same_vocabulary(p, q)?;
    positive_length("a log-ratio variance", units)?;
    match method {
        Method::Exact => {
            if let Some(m) = markov_moments(p, q, given, units)? {
                return Ok(Measured::Exact(m.var));
            }
            let mut moments = WeightedMoments::default();
            let mut infinite = false;
            enumerate(
                p,
                given,
                units,
                "the log-ratio variance",
                &mut |text, lp_path| {
                    let r = relative::logratios(p, q, given, &[text.to_vec()])?[0];
                    if r == f64::INFINITY {
                        infinite = true;
                        return Ok(Flow::Stop);
                    }
                    moments.push(lp_path.exp(), r);
                    Ok(Flow::Continue)
                },
            )?;
            if infinite {
                return Ok(Measured::Exact(f64::INFINITY));
            }
            let Moments { var, .. } = moments.finish();
            Ok(Measured::Exact(var))
        }
        Method::MonteCarlo { samples, stream } => {
            monte_carlo_samples("log-ratio variance", *samples, 2)?;
            let values = sampled_logratios(p, q, given, units, *samples, stream)?;
            if values.contains(&f64::INFINITY) {
                return Ok(Measured::Estimate(infinite_estimate(values.len())));
            }
            Ok(Measured::Estimate(Estimate::variance_of_samples(&values)))
        }
    }
}

fn checked_behavior(unit: &Unit, value: f64) -> Result<f64, MeasureError> {
    if (-1.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(MeasureError::BehaviorOutOfRange {
            unit: unit.to_string(),
            value,
        })
    }
}

/// Behavior expectation of the next unit, B_P(given) = E_{y ~ P(. | given)} B(y) (eq. 2).
///
/// `behavior` may fail with the caller's error type (e.g. a script error); a value outside
/// [-1, 1] or NaN is an error. Monte Carlo draws unit i with `sample_rng(root, stream, i)`.
pub fn expect<E>(
    model: &dyn LanguageModel,
    given: &[Unit],
    behavior: &mut dyn FnMut(&Unit) -> Result<f64, E>,
    method: &Method,
) -> Result<Measured, E>
where
    E: From<MeasureError>,
{
    match method {
        Method::Exact => {
            let support = model.support(given).map_err(MeasureError::from)?;
            let Some(support) = support else {
                return Err(MeasureError::NeedsSamples {
                    what: "the behavior expectation".into(),
                    reason: format!(
                        "the next-unit distribution of {} cannot be enumerated",
                        model.name()
                    ),
                }
                .into());
            };
            let mut total = 0.0;
            for (unit, lp) in &support {
                let b = checked_behavior(unit, behavior(unit)?)?;
                total += lp.exp() * b;
            }
            Ok(Measured::Exact(total))
        }
        Method::MonteCarlo { samples, stream } => {
            monte_carlo_samples("behavior expectation", *samples, 1)?;
            let values = chunked(1, *samples, stream, |rngs| -> Result<Vec<f64>, E> {
                let texts = model
                    .sample_many(given, 1, rngs)
                    .map_err(MeasureError::from)?;
                let mut values = Vec::with_capacity(texts.len());
                for text in &texts {
                    let Some(unit) = text.first() else {
                        return Err(MeasureError::Invalid("a sample came back empty".into()).into());
                    };
                    values.push(checked_behavior(unit, behavior(unit)?)?);
                }
                Ok(values)
            })?;
            Ok(Measured::Estimate(Estimate::from_samples(&values)))
        }
    }
}

/// [`expect`] with the model's own behavior scores; a unit without one is an error naming it.
pub fn expect_scores(
    model: &dyn LanguageModel,
    given: &[Unit],
    method: &Method,
) -> Result<Measured, MeasureError> {
    expect(
        model,
        given,
        &mut |unit: &Unit| {
            model
                .behavior(unit)
                .ok_or_else(|| MeasureError::MissingBehavior {
                    unit: unit.to_string(),
                    model: model.name().to_string(),
                })
        },
        method,
    )
}

#[cfg(test)]
mod tests;
