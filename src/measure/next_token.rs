//! Exact next-token distributions of neural models (and mixtures of them), and the KL
//! divergence between two of them summed over the whole vocabulary.

use crate::lm::{LanguageModel, ModelRef, Unit, UnitSpec, check_same_vocabulary};

use super::MeasureError;

/// log P(token | given) for every token id of the vocabulary (-inf where P puts no mass).
pub fn next_token_logprobs(model: &ModelRef, given: &[Unit]) -> Result<Vec<f64>, MeasureError> {
    if let Some(lm) = model.as_neural() {
        return Ok(lm.next_token_logprobs(given)?.to_vec());
    }
    // A mixture: its one-token support is exact.
    let one = model
        .view(Some(&UnitSpec::Tokens(1)), None)?
        .ok_or_else(|| {
            MeasureError::Invalid(format!(
                "{} is not a neural model or a mixture of them",
                model.name()
            ))
        })?;
    let support = one.support(given)?.ok_or_else(|| {
        MeasureError::Invalid("the next-token distribution cannot be listed".into())
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

/// KL(P(.|given) || Q(.|given)) over the next token: +inf when Q misses a token P can emit.
pub fn next_token_kl(p: &ModelRef, q: &ModelRef, given: &[Unit]) -> Result<f64, MeasureError> {
    check_same_vocabulary(p.as_ref() as &dyn LanguageModel, q.as_ref())?;
    Ok(kl_of_logprobs(
        &next_token_logprobs(p, given)?,
        &next_token_logprobs(q, given)?,
    ))
}

/// KL between two distributions given as log-probabilities over the same ids.
pub fn kl_of_logprobs(lp: &[f64], lq: &[f64]) -> f64 {
    let mut total = 0.0;
    for (i, a) in lp.iter().enumerate() {
        if *a == f64::NEG_INFINITY {
            continue;
        }
        let b = lq.get(i).copied().unwrap_or(f64::NEG_INFINITY);
        if b == f64::NEG_INFINITY {
            return f64::INFINITY;
        }
        total += a.exp() * (a - b);
    }
    total.max(0.0)
}
