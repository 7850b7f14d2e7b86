//! The Rao-Blackwellized Monte Carlo KL: for a text y ~ P(. | s), the sum over its steps t of
//! the exact step divergence KL(P(. | s, y<t) || Q(. | s, y<t)) instead of its log-ratio
//! log P(y | s) - log Q(y | s).
//!
//! Both have expectation KL(P(. | s) || Q(. | s)) (docs/statistics.md proves it: the chain
//! rule, and a stopping-time argument for units whose end depends on the text so far); the
//! exact step divergences average away the noise of which step was drawn, which is most of
//! the plain estimator's variance. A step is a token where both models give whole next-token
//! distributions (neural models and mixtures of them: P's come from its draw, Q's from one
//! scoring pass), else a unit where both can list their next-unit support (analytic models,
//! and neural models cut into single tokens).

use std::collections::HashMap;

use crate::lm::{LanguageModel, Unit};
use crate::seed::Stream;

use super::next_token::kl_of_logprobs;
use super::{MeasureError, chunked};

/// The Monte Carlo KL estimators `kl(..., estimator:)` chooses between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KlEstimator {
    /// The mean of log P(y) - log Q(y) over draws y ~ P.
    Plain,
    /// The mean of the sums of exact step divergences along draws y ~ P.
    RaoBlackwell,
}

impl KlEstimator {
    /// The estimator a script names (`"plain"` or `"rb"`).
    pub fn parse(name: &str) -> Option<KlEstimator> {
        match name {
            "plain" => Some(KlEstimator::Plain),
            "rb" => Some(KlEstimator::RaoBlackwell),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KlEstimator::Plain => "plain",
            KlEstimator::RaoBlackwell => "rb",
        }
    }
}

/// What one step of the Rao-Blackwellized sum is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steps {
    /// A token: both models give whole next-token distributions.
    Tokens,
    /// A unit: both models list their next-unit support.
    Units,
}

/// The steps the estimator can sum for P against Q after `given`, or why it cannot.
pub fn steps(
    p: &dyn LanguageModel,
    q: &dyn LanguageModel,
    given: &[Unit],
) -> Result<Result<Steps, String>, MeasureError> {
    let token_reason = p
        .token_steps_unavailable()
        .or_else(|| q.token_steps_unavailable());
    let Some(token_reason) = token_reason else {
        return Ok(Ok(Steps::Tokens));
    };
    for model in [p, q] {
        if model.support(given)?.is_none() {
            return Ok(Err(format!(
                "the Rao-Blackwellized estimator needs the exact next-step distribution of both \
                 models: {token_reason}, and the next-unit distribution of {} cannot be listed",
                model.name()
            )));
        }
    }
    Ok(Ok(Steps::Units))
}

/// Texts per batch of the token steps: enough for the batched passes, few enough that a
/// large vocabulary's distributions (texts x tokens x vocabulary numbers, for P and Q) fit.
const FIRST_CHUNK: usize = 8;
const MAX_CHUNK: usize = 64;
const STEP_BUDGET: usize = 1 << 23;

/// One term per draw y_i ~ P(. | given) of `horizon` units (draw i from `stream`): the sum of
/// the exact step divergences along it; `+inf` where Q misses a step P can take.
pub fn terms(
    p: &dyn LanguageModel,
    q: &dyn LanguageModel,
    given: &[Unit],
    horizon: usize,
    samples: usize,
    stream: &Stream,
    steps: Steps,
) -> Result<Vec<f64>, MeasureError> {
    chunked(horizon, samples, stream, |rngs| {
        chunk_terms(p, q, given, horizon, rngs, steps)
    })
}

/// [`terms`] for the draws of `rngs`.
fn chunk_terms(
    p: &dyn LanguageModel,
    q: &dyn LanguageModel,
    given: &[Unit],
    horizon: usize,
    rngs: &mut [rand_chacha::ChaCha20Rng],
    steps: Steps,
) -> Result<Vec<f64>, MeasureError> {
    let samples = rngs.len();
    match steps {
        Steps::Tokens => {
            let mut out = Vec::with_capacity(samples);
            let mut start = 0;
            let mut chunk = FIRST_CHUNK;
            while start < samples {
                let end = (start + chunk).min(samples);
                let (scored, p_steps) =
                    p.sample_with_steps(given, horizon, &mut rngs[start..end])?;
                let q_steps = q.token_steps(given, &scored.texts)?;
                let mut widest = 1;
                for (ps, qs) in p_steps.iter().zip(&q_steps) {
                    if ps.len() != qs.len() {
                        return Err(MeasureError::Invalid(format!(
                            "{} and {} gave {} and {} token steps for one text",
                            p.name(),
                            q.name(),
                            ps.len(),
                            qs.len()
                        )));
                    }
                    out.push(ps.iter().zip(qs).map(|(a, b)| kl_of_logprobs(a, b)).sum());
                    let size = ps.first().map_or(1, |d| d.len());
                    widest = widest.max(ps.len() * size);
                }
                chunk = (STEP_BUDGET / widest).clamp(FIRST_CHUNK, MAX_CHUNK);
                start = end;
            }
            Ok(out)
        }
        Steps::Units => {
            let texts = p.sample_many(given, horizon, rngs)?;
            texts
                .iter()
                .map(|text| unit_term(p, q, given, text))
                .collect()
        }
    }
}

/// The sum over the units of `text` of KL(P(. | given, earlier units) || Q(. | ...)).
fn unit_term(
    p: &dyn LanguageModel,
    q: &dyn LanguageModel,
    given: &[Unit],
    text: &[Unit],
) -> Result<f64, MeasureError> {
    let mut context = given.to_vec();
    let mut total = 0.0;
    for unit in text {
        let listed = |m: &dyn LanguageModel| -> Result<Vec<(Unit, f64)>, MeasureError> {
            m.support(&context)?.ok_or_else(|| {
                MeasureError::Invalid(format!(
                    "the next-unit distribution of {} cannot be listed after {} units",
                    m.name(),
                    context.len()
                ))
            })
        };
        let (ps, qs) = (listed(p)?, listed(q)?);
        let q_of: HashMap<&Unit, f64> = qs.iter().map(|(u, lp)| (u, *lp)).collect();
        let mut step = 0.0;
        for (u, lp) in &ps {
            if *lp == f64::NEG_INFINITY {
                continue;
            }
            let lq = q_of.get(u).copied().unwrap_or(f64::NEG_INFINITY);
            if lq == f64::NEG_INFINITY {
                return Ok(f64::INFINITY);
            }
            step += lp.exp() * (lp - lq);
        }
        // A divergence is >= 0; rounding can leave a tiny negative sum for equal rows.
        total += step.max(0.0);
        context.push(unit.clone());
    }
    Ok(total)
}
