//! What one unit of a neural model's text is, and how the next token is drawn.
//!
//! A unit is a stopping rule on the token stream: `tokens(k)` ends after k tokens;
//! `sentence(until: [...], max_tokens: m)` ends at the first token after which the unit's
//! decoded text contains a delimiter, at an end-of-sequence token, or after m tokens. Because
//! the rule only looks at tokens already drawn, the probability of a unit is the product of
//! its tokens' conditional probabilities, and units partition the token stream exactly.

use rand::{Rng, RngCore};

use crate::lm::{ModelError, ModelResult};

/// How a token stream is cut into units.
#[derive(Clone, Debug, PartialEq)]
pub enum UnitSpec {
    /// Exactly k tokens.
    Tokens(usize),
    /// Tokens up to and including the first that completes a delimiter (or an end-of-sequence
    /// token), at most `max_tokens`.
    Sentence {
        until: Vec<String>,
        max_tokens: usize,
    },
}

impl Default for UnitSpec {
    fn default() -> UnitSpec {
        UnitSpec::Sentence {
            until: vec![".\n".into()],
            max_tokens: 48,
        }
    }
}

impl UnitSpec {
    pub fn validate(&self) -> ModelResult<()> {
        match self {
            UnitSpec::Tokens(0) => Err(ModelError::Invalid(
                "a unit of tokens(k) needs k >= 1".into(),
            )),
            UnitSpec::Sentence { until, .. } if until.iter().any(String::is_empty) => Err(
                ModelError::Invalid("a sentence delimiter cannot be the empty string".into()),
            ),
            UnitSpec::Sentence { max_tokens: 0, .. } => Err(ModelError::Invalid(
                "a sentence unit needs max_tokens >= 1".into(),
            )),
            _ => Ok(()),
        }
    }

    /// The most tokens one unit can have.
    pub fn max_tokens(&self) -> usize {
        match self {
            UnitSpec::Tokens(k) => *k,
            UnitSpec::Sentence { max_tokens, .. } => *max_tokens,
        }
    }

    /// Whether a unit whose tokens so far are `unit` is complete. `decode` gives its text;
    /// `eos` are the model's end-of-sequence ids.
    pub fn ends(&self, unit: &[u32], eos: &[u32], decode: &dyn Fn(&[u32]) -> String) -> bool {
        match self {
            UnitSpec::Tokens(k) => unit.len() >= *k,
            UnitSpec::Sentence { until, max_tokens } => {
                if unit.len() >= *max_tokens {
                    return true;
                }
                match unit.last() {
                    None => false,
                    Some(last) if eos.contains(last) => true,
                    Some(_) => {
                        let text = decode(unit);
                        until.iter().any(|d| text.contains(d.as_str()))
                    }
                }
            }
        }
    }

    /// Cut a token stream into units; the last one may be incomplete.
    pub fn split(
        &self,
        ids: &[u32],
        eos: &[u32],
        decode: &dyn Fn(&[u32]) -> String,
    ) -> Vec<Vec<u32>> {
        let mut units = Vec::new();
        let mut current = Vec::new();
        for &id in ids {
            current.push(id);
            if self.ends(&current, eos, decode) {
                units.push(std::mem::take(&mut current));
            }
        }
        if !current.is_empty() {
            units.push(current);
        }
        units
    }

    pub fn describe(&self) -> String {
        match self {
            UnitSpec::Tokens(k) => format!("tokens({k})"),
            UnitSpec::Sentence { until, max_tokens } => {
                format!("sentence(until: {until:?}, max_tokens: {max_tokens})")
            }
        }
    }
}

/// How the next token is drawn. The default is ancestral sampling (temperature 1, no
/// truncation): measurements need draws from the model itself, since truncating the
/// distribution (top-k, top-p) biases KL and expectation estimates.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    /// 0 means greedy (the most likely token, ties to the lowest id).
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
}

impl Default for Sampling {
    fn default() -> Sampling {
        Sampling {
            temperature: 1.0,
            top_k: None,
            top_p: None,
        }
    }
}

impl Sampling {
    pub fn is_ancestral(&self) -> bool {
        *self == Sampling::default()
    }

    pub fn validate(&self) -> ModelResult<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(ModelError::Invalid(format!(
                "temperature must be a finite number >= 0, found {}",
                crate::format::number(self.temperature)
            )));
        }
        if self.top_k == Some(0) {
            return Err(ModelError::Invalid("top_k must be at least 1".into()));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(ModelError::Invalid(format!(
                "top_p must lie in (0, 1], found {}",
                crate::format::number(p)
            )));
        }
        Ok(())
    }

    /// The distribution actually sampled from, as natural logs over the vocabulary
    /// (`-inf` for excluded tokens), from the model's next-token log-probabilities.
    pub fn transform(&self, logprobs: &[f64]) -> Vec<f64> {
        if self.is_ancestral() {
            return logprobs.to_vec();
        }
        let mut out: Vec<f64> = if self.temperature == 0.0 {
            let best = argmax(logprobs);
            (0..logprobs.len())
                .map(|i| if i == best { 0.0 } else { f64::NEG_INFINITY })
                .collect()
        } else {
            logprobs.iter().map(|l| l / self.temperature).collect()
        };
        normalize(&mut out);
        if self.top_k.is_some() || self.top_p.is_some() {
            let mut order: Vec<usize> = (0..out.len()).collect();
            // Most likely first; ties by id, so the cut is deterministic.
            order.sort_by(|&a, &b| out[b].total_cmp(&out[a]).then(a.cmp(&b)));
            let mut keep = order.len();
            if let Some(k) = self.top_k {
                keep = keep.min(k);
            }
            if let Some(p) = self.top_p {
                let mut mass = 0.0;
                for (n, &i) in order.iter().enumerate() {
                    mass += out[i].exp();
                    if mass >= p {
                        keep = keep.min(n + 1);
                        break;
                    }
                }
            }
            for &i in &order[keep..] {
                out[i] = f64::NEG_INFINITY;
            }
            normalize(&mut out);
        }
        out
    }
}

fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// Renormalise natural-log weights in place (logsumexp).
fn normalize(logs: &mut [f64]) {
    let total = crate::stats::logspace::logsumexp(logs.iter().copied());
    if total.is_finite() {
        for l in logs.iter_mut() {
            *l -= total;
        }
    }
}

/// One token by inverse-CDF over ids in order: exactly one uniform draw per token.
pub fn draw(logprobs: &[f64], rng: &mut dyn RngCore) -> ModelResult<u32> {
    let u: f64 = rng.random();
    let mut cumulative = 0.0;
    let mut last_live = None;
    for (i, lp) in logprobs.iter().enumerate() {
        if *lp == f64::NEG_INFINITY {
            continue;
        }
        cumulative += lp.exp();
        last_live = Some(i);
        if u < cumulative {
            return Ok(i as u32);
        }
    }
    // A draw past a cumulative sum rounded below one falls to the last possible token.
    match last_live {
        Some(i) => Ok(i as u32),
        None => Err(ModelError::Invalid(
            "the next-token distribution is empty (every token has probability zero)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentence_units_stop_at_delimiters_eos_or_length() {
        let decode = |ids: &[u32]| -> String {
            ids.iter()
                .map(|i| match i {
                    9 => ".\n".to_string(),
                    _ => "a".to_string(),
                })
                .collect()
        };
        let unit = UnitSpec::Sentence {
            until: vec![".\n".into()],
            max_tokens: 4,
        };
        let parts = unit.split(&[5, 5, 9, 5, 2, 5, 5, 5, 5, 5], &[2], &decode);
        assert_eq!(
            parts,
            vec![vec![5, 5, 9], vec![5, 2], vec![5, 5, 5, 5], vec![5]]
        );
        let parts = UnitSpec::Tokens(3).split(&[1, 2, 3, 4], &[], &decode);
        assert_eq!(parts, vec![vec![1, 2, 3], vec![4]]);
    }

    #[test]
    fn truncation_and_temperature() {
        let lp: Vec<f64> = [0.5f64, 0.3, 0.2].iter().map(|p| p.ln()).collect();
        let greedy = Sampling {
            temperature: 0.0,
            ..Sampling::default()
        }
        .transform(&lp);
        assert_eq!(greedy[0], 0.0);
        assert!(greedy[1] == f64::NEG_INFINITY && greedy[2] == f64::NEG_INFINITY);
        let top2 = Sampling {
            top_k: Some(2),
            ..Sampling::default()
        }
        .transform(&lp);
        assert!((top2[0].exp() - 0.625).abs() < 1e-12 && top2[2] == f64::NEG_INFINITY);
        let top_p = Sampling {
            top_p: Some(0.75),
            ..Sampling::default()
        }
        .transform(&lp);
        assert!((top_p[1].exp() - 0.375).abs() < 1e-12);
    }
}
