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
    Component { others: Vec<(ModelRef, f64)> },
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
        let others: Vec<(ModelRef, f64)> = weighted
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != own)
            .map(|(_, (m, w))| (ModelRef::clone(m), *w))
            .collect();
        // The form pays off when P's own weight dominates (Q/P near 1). When the others
        // dominate, Q/P = w_P + sum_i w_i r_i is far from 1 and u = Q/P - 1 would lose a small
        // w_P to rounding; log Q - log P is then the accurate form.
        if logsumexp(others.iter().map(|(_, w)| *w)) > 0.5f64.ln() {
            return Ok(Relative::Direct);
        }
        Ok(Relative::Component { others })
    }

    /// The terms of each text y (with log P(y | given) = `lp`, finite: y is in P's
    /// support), each in the form that keeps its digits.
    pub fn terms(
        &self,
        q: &dyn LanguageModel,
        given: &[Unit],
        texts: &[Vec<Unit>],
        lp: &[f64],
    ) -> ModelResult<Vec<Terms>> {
        match self {
            Relative::Direct => {
                let lq = q.logprob_many(given, texts)?;
                Ok(lq
                    .iter()
                    .zip(lp)
                    .map(|(q, p)| {
                        let t = q - p;
                        Terms {
                            log_ratio: t,
                            excess: t.exp_m1(),
                            divergence: log_ratio_divergence(t),
                        }
                    })
                    .collect())
            }
            Relative::Component { others } => {
                let mut u = vec![0.0; texts.len()];
                for (model, log_w) in others {
                    let li = model.logprob_many(given, texts)?;
                    for ((u, li), lp) in u.iter_mut().zip(li).zip(lp) {
                        *u += weighted_expm1(*log_w, li - lp);
                    }
                }
                // P's own weight is at least 1/2, so u >= -1/2 and log1p(u) is exact. Where u
                // is huge (P(y) far below Q(y)) there is no cancellation to avoid, and u itself
                // may have overflowed: log Q - log P is then the form.
                let mut out = Vec::with_capacity(u.len());
                for (i, u) in u.into_iter().enumerate() {
                    out.push(if u < 1e15 {
                        Terms {
                            log_ratio: u.ln_1p(),
                            excess: u,
                            divergence: excess_divergence(u),
                        }
                    } else {
                        let t = q.logprob(given, &texts[i])? - lp[i];
                        Terms {
                            log_ratio: t,
                            excess: t.exp_m1(),
                            divergence: log_ratio_divergence(t),
                        }
                    });
                }
                Ok(out)
            }
        }
    }
}

/// One text's terms: t = log Q(y)/P(y), u = Q(y)/P(y) - 1, and u - log1p(u) = e^t - 1 - t >= 0,
/// its contribution to KL(P || Q) per unit of P(y).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Terms {
    pub log_ratio: f64,
    pub excess: f64,
    pub divergence: f64,
}

impl Terms {
    /// P(y) (e^t - 1 - t) for log P(y) = `lp`, in log space where P(y) underflows or the
    /// divergence overflows (there the term is Q(y) - P(y)(1 + t), about Q(y)).
    pub fn weighted(&self, lp: f64) -> f64 {
        let weight = lp.exp();
        if weight > 0.0 && self.divergence.is_finite() {
            weight * self.divergence
        } else if self.divergence == 0.0 {
            0.0
        } else {
            let log_divergence = if self.divergence.is_finite() {
                self.divergence.ln()
            } else {
                self.log_ratio
            };
            (lp + log_divergence).exp()
        }
    }
}

/// e^t - 1 - t >= 0 at full relative precision: the series t²/2 + t³/6 + ... near 0, where
/// the terms cancel, and the closed form elsewhere (well conditioned for t << 0 too, where
/// u = e^t - 1 is near -1 and u - log1p(u) would lose e^t to rounding).
pub(crate) fn log_ratio_divergence(t: f64) -> f64 {
    if t.abs() < 0.5 {
        let mut term = t * t / 2.0;
        let mut total = 0.0;
        for k in 3..60 {
            total += term;
            if term.abs() <= total.abs() * 1e-18 {
                break;
            }
            term *= t / k as f64;
        }
        total
    } else {
        t.exp_m1() - t
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
fn excess_divergence(u: f64) -> f64 {
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

/// log P(y)/Q(y) for each text, without cancellation when Q is a mixture containing P.
pub(crate) fn logratios(
    p: &dyn LanguageModel,
    q: &dyn LanguageModel,
    given: &[Unit],
    texts: &[Vec<Unit>],
) -> ModelResult<Vec<f64>> {
    let lp = p.logprob_many(given, texts)?;
    logratios_given(p, q, given, texts, &lp)
}

/// [`logratios`] for texts whose log P(y | given) is known already (`lp`, index for index:
/// texts P drew, with the log-probabilities the draw computed).
pub(crate) fn logratios_given(
    p: &dyn LanguageModel,
    q: &dyn LanguageModel,
    given: &[Unit],
    texts: &[Vec<Unit>],
    lp: &[f64],
) -> ModelResult<Vec<f64>> {
    let form = Relative::new(p, q, given)?;
    let lp = lp.to_vec();
    if let Relative::Direct = form {
        let lq = q.logprob_many(given, texts)?;
        return Ok(lp.into_iter().zip(lq).map(|(a, b)| a - b).collect());
    }
    // Texts P cannot produce keep -inf (or the error of both being zero) from the direct form.
    let possible: Vec<usize> = (0..texts.len())
        .filter(|&i| lp[i] > f64::NEG_INFINITY)
        .collect();
    let chosen: Vec<Vec<Unit>> = possible.iter().map(|&i| texts[i].clone()).collect();
    let chosen_lp: Vec<f64> = possible.iter().map(|&i| lp[i]).collect();
    let terms = form.terms(q, given, &chosen, &chosen_lp)?;
    let mut out = vec![f64::NEG_INFINITY; texts.len()];
    for (&i, t) in possible.iter().zip(terms) {
        out[i] = -t.log_ratio;
    }
    Ok(out)
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
    Ok(Some(logsumexp(outside).exp()))
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
            assert!(
                (got - leading).abs() <= 1e-9 * leading,
                "u {u}: {got} vs {leading}"
            );
        }
        assert_eq!(excess_divergence(-1.0), f64::INFINITY);
        // Continuous across the switch at 0.25.
        let below = excess_divergence(0.249_999_999);
        let above = excess_divergence(0.250_000_001);
        assert!((below - above).abs() < 1e-9);
    }

    #[test]
    fn log_ratio_divergence_is_accurate_on_both_sides() {
        for t in [1.0f64, -1.0, -21.386, 5.0, -700.0] {
            let direct: f64 = t.exp_m1() - t;
            assert!((log_ratio_divergence(t) - direct).abs() <= 1e-15 * direct);
        }
        for t in [1e-3f64, -1e-3, 1e-9, -4e-160] {
            let leading = t * t / 2.0 + t.powi(3) / 6.0 + t.powi(4) / 24.0 + t.powi(5) / 120.0;
            assert!((log_ratio_divergence(t) - leading).abs() <= 1e-9 * leading);
        }
    }

    #[test]
    fn weighted_expm1_matches_the_product() {
        for (w, d) in [
            (0.3f64, 1.2f64),
            (0.3, -1.2),
            (1e-3, 5.0),
            (0.5, f64::NEG_INFINITY),
        ] {
            let direct = w * d.exp_m1();
            assert!((weighted_expm1(w.ln(), d) - direct).abs() <= 1e-15 * direct.abs());
        }
        // 1e-300 · (e^700 - 1) overflows neither factor's product.
        let big = weighted_expm1(1e-300f64.ln(), 700.0);
        assert!(big.is_finite() && (big.ln() - (700.0 + 1e-300f64.ln())).abs() < 1e-9);
    }
}
