//! log Q(y)/P(y) for Q close to P, without cancellation.
//!
//! Once a mixture's posterior has all but settled on one component, P(.|s) and the mixture
//! Q(.|s) differ by a posterior weight w that can be 1e-24 or 1e-300, far below the rounding
//! error of log P - log Q computed apart. Writing Q(y)/P(y) = 1 + u(y) with
//! u(y) = sum_{i != j} w_i (P_i(y)/P_j(y) - 1), taken from the posterior weights in log space,
//! keeps u at full relative precision; the divergences are then sums of non-negative terms:
//!
//!   KL(P || Q) = sum_y P(y) (u(y) - log1p(u(y)))  +  Q(y outside P's support),
//!
//! because the first-order terms sum_y P(y) u(y) cancel to minus that outside mass. Every
//! term is >= 0, so the result is never negative.

use crate::lm::{LanguageModel, ModelRef, ModelResult, Unit, same_model};
use crate::stats::logspace::logsumexp;

/// How Q relates to P for one context.
pub(crate) enum Relative {
    /// Q is a mixture with P as a component: the other components and their posterior
    /// log-weights given the context.
    Component {
        others: Vec<(ModelRef, f64)>,
    },
    /// No structure to use: u = expm1(log Q - log P).
    Direct,
}

impl Relative {
    /// The form for P against Q given `given`.
    pub fn new(
        p: &dyn LanguageModel,
        q: &dyn LanguageModel,
        given: &[Unit],
    ) -> ModelResult<Relative> {
        let Some(mixture) = q.as_mixture() else {
            return Ok(Relative::Direct);
        };
        let weighted = mixture.posterior_components(given)?;
        let Some(own) = weighted.iter().position(|(m, _)| same_model(m.as_ref(), p)) else {
            return Ok(Relative::Direct);
        };
        let others = weighted
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != own)
            .map(|(_, (m, w))| (ModelRef::clone(m), *w))
            .collect();
        Ok(Relative::Component { others })
    }

    /// u(y) = Q(y | given)/P(y | given) - 1 for texts `texts` with log P(y | given) = `lp`
    /// (finite: y is in P's support). -1 where Q(y) = 0; +inf only on overflow.
    pub fn excess(
        &self,
        p: &dyn LanguageModel,
        q: &dyn LanguageModel,
        given: &[Unit],
        texts: &[Vec<Unit>],
        lp: &[f64],
    ) -> ModelResult<Vec<f64>> {
        match self {
            Relative::Direct => {
                let _ = p;
                let lq = q.logprob_many(given, texts)?;
                Ok(lq.iter().zip(lp).map(|(q, p)| (q - p).exp_m1()).collect())
            }
            Relative::Component { others } => {
                let mut u = vec![0.0; texts.len()];
                for (model, log_w) in others {
                    let li = model.logprob_many(given, texts)?;
                    for ((u, li), lp) in u.iter_mut().zip(li).zip(lp) {
                        *u += weighted_expm1(*log_w, li - lp);
                    }
                }
                Ok(u)
            }
        }
    }
}

/// e^log_w · (e^d - 1), computed in log space so that a tiny weight times a huge ratio
/// neither underflows nor overflows before the product.
fn weighted_expm1(log_w: f64, d: f64) -> f64 {
    if d == 0.0 {
        0.0
    } else if d > 0.0 {
        // ln(e^d - 1) = d + ln(1 - e^-d)
        (log_w + d + (-(-d).exp()).ln_1p()).exp()
    } else {
        -(log_w + (-d.exp()).ln_1p()).exp()
    }
}

/// u - log1p(u) >= 0 (for u >= -1) at full relative precision, also for tiny u where both
/// terms agree to many digits: the series u²/2 - u³/3 + ... below |u| = 0.25.
pub(crate) fn excess_divergence(u: f64) -> f64 {
    if u.abs() < 0.25 {
        let mut power = u * u;
        let mut total = 0.0;
        for k in 2..80 {
            let term = power / k as f64;
            total += if k % 2 == 0 { term } else { -term };
            if term.abs() <= total.abs() * 1e-18 {
                break;
            }
            power *= u;
        }
        total
    } else if u == -1.0 {
        f64::INFINITY
    } else {
        u - u.ln_1p()
    }
}

/// log P(y)/Q(y) = -log1p(u(y)) for each text, without cancellation when Q is a mixture
/// containing P.
pub(crate) fn logratios(
    p: &dyn LanguageModel,
    q: &dyn LanguageModel,
    given: &[Unit],
    texts: &[Vec<Unit>],
) -> ModelResult<Vec<f64>> {
    let form = Relative::new(p, q, given)?;
    let lp = p.logprob_many(given, texts)?;
    if let Relative::Direct = form {
        let lq = q.logprob_many(given, texts)?;
        return Ok(lp.into_iter().zip(lq).map(|(a, b)| a - b).collect());
    }
    let u = form.excess(p, q, given, texts, &lp)?;
    Ok(lp
        .iter()
        .zip(u)
        .map(|(lp, u)| {
            if *lp == f64::NEG_INFINITY {
                // P cannot produce the text: Q's mixture of the others can (or both cannot).
                f64::NEG_INFINITY
            } else {
                -u.ln_1p()
            }
        })
        .collect())
}

/// The probability that Q's next `horizon` units leave P's support: Q's paths are enumerated
/// and cut at the first unit P cannot produce. `None` when Q cannot list its support.
pub(crate) fn outside_mass(
    p: &dyn LanguageModel,
    q: &dyn LanguageModel,
    given: &[Unit],
    horizon: usize,
    limit: u64,
) -> ModelResult<Option<f64>> {
    let mut context = given.to_vec();
    let mut visited = 0u64;
    let mut outside: Vec<f64> = Vec::new();
    if !walk_outside(
        p,
        q,
        &mut context,
        horizon,
        0.0,
        &mut visited,
        limit,
        &mut outside,
    )? {
        return Ok(None);
    }
    Ok(Some(logsumexp(outside.into_iter()).exp()))
}

/// Depth-first over Q's support; pushes log Q(prefix) of each prefix where P leaves. False
/// when Q cannot list a support or the walk passes `limit` nodes.
#[allow(clippy::too_many_arguments)]
fn walk_outside(
    p: &dyn LanguageModel,
    q: &dyn LanguageModel,
    context: &mut Vec<Unit>,
    depth_left: usize,
    log_q: f64,
    visited: &mut u64,
    limit: u64,
    outside: &mut Vec<f64>,
) -> ModelResult<bool> {
    if depth_left == 0 {
        return Ok(true);
    }
    let Some(support) = q.support(context)? else {
        return Ok(false);
    };
    for (unit, lq) in support {
        *visited += 1;
        if *visited > limit {
            return Ok(false);
        }
        let path = log_q + lq;
        if p.logprob_next(context, &unit)? == f64::NEG_INFINITY {
            outside.push(path);
            continue;
        }
        context.push(unit);
        let complete = walk_outside(p, q, context, depth_left - 1, path, visited, limit, outside)?;
        context.pop();
        if !complete {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excess_divergence_is_accurate_and_non_negative() {
        // Against the closed form where it has no cancellation, and the series limit u²/2.
        for u in [0.5, 2.0, -0.5, -0.9, 10.0] {
            let direct: f64 = u - f64::ln_1p(u);
            assert!((excess_divergence(u) - direct).abs() <= 1e-15 * direct);
        }
        for u in [1e-5, -1e-5, 1e-12, 1e-150, -3e-200] {
            let leading = u * u / 2.0 - u * u * u / 3.0;
            let got = excess_divergence(u);
            assert!(got >= 0.0);
            assert!((got - leading).abs() <= 1e-9 * leading, "u {u}: {got} vs {leading}");
        }
        assert_eq!(excess_divergence(-1.0), f64::INFINITY);
        // Continuous across the switch at 0.25.
        let below = excess_divergence(0.249_999_999);
        let above = excess_divergence(0.250_000_001);
        assert!((below - above).abs() < 1e-9);
    }

    #[test]
    fn weighted_expm1_matches_the_product() {
        for (w, d) in [(0.3f64, 1.2f64), (0.3, -1.2), (1e-3, 5.0), (0.5, f64::NEG_INFINITY)] {
            let direct = w * d.exp_m1();
            assert!((weighted_expm1(w.ln(), d) - direct).abs() <= 1e-15 * direct.abs());
        }
        // 1e-300 · (e^700 - 1) overflows neither factor's product.
        let big = weighted_expm1(1e-300f64.ln(), 700.0);
        assert!(big.is_finite() && (big.ln() - (700.0 + 1e-300f64.ln())).abs() < 1e-9);
    }
}
