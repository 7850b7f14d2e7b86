//! The paper's bounds as functions of measured quantities, in log space.
//!
//! `log_alpha` is log a, the prior log-weight of P_minus in P = a P_minus + (1 - a) P_plus;
//! `logratio` is r = log P_minus(s) / P_plus(s) for the prefix s in question.

use crate::stats::logspace::{log1pexp, sigmoid};

/// log((1 - a) / a) for a = exp(log_alpha), exact for tiny a (log_alpha = -2000 included).
fn log_odds_against(log_alpha: f64) -> f64 {
    // ln(1 - a) = ln_1p(-a); for a = 1 this is -inf and every bound below collapses to 0.
    (-log_alpha.exp()).ln_1p() - log_alpha
}

/// Eq. 99: for ANY prefix s and continuation y,
/// log P_minus(y | s) - log P(y | s) <= log(1 + (1 - a)/a · P_plus(s)/P_minus(s)),
/// hence also D_KL(P_minus(. | s) || P(. | s)) <= this value.
pub fn pointwise_bound(log_alpha: f64, logratio: f64) -> f64 {
    log1pexp(log_odds_against(log_alpha) - logratio)
}

/// Lemma 2, eq. 29: |B_P(s) - B_{P_minus}(s)| <= 2 (1 - a)/a · P_plus(s)/P_minus(s).
pub fn lemma2_bound(log_alpha: f64, logratio: f64) -> f64 {
    2.0 * (log_odds_against(log_alpha) - logratio).exp()
}

/// Lemma 5, eq. 7: KL <= log(1 + exp(log(1/a) - beta n)) for prompts whose log-ratio reaches
/// beta n (on average over prompts sampled from P_minus, not for every prompt).
pub fn lemma5_bound(log_alpha: f64, beta: f64, n: f64) -> f64 {
    log1pexp(-log_alpha - beta * n)
}

/// Lemma 7, eq. 8: B_P(s) <= 1 / (1 + exp(beta n - log(1/a))) for behaviors in {0, 1}, under
/// the same proviso as Lemma 5.
pub fn lemma7_bound(log_alpha: f64, beta: f64, n: f64) -> f64 {
    sigmoid(-(beta * n + log_alpha))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_by_hand() {
        // a = 1/2, r = 0: log(1 + 1) = ln 2; Lemma 2 gives 2.
        let la = 0.5f64.ln();
        assert!((pointwise_bound(la, 0.0) - 2f64.ln()).abs() < 1e-15);
        assert!((lemma2_bound(la, 0.0) - 2.0).abs() < 1e-15);
        // Tiny a without underflow: log((1-a)/a) = 2000.
        assert!((pointwise_bound(-2000.0, 1990.0) - log1pexp(10.0)).abs() < 1e-12);
        assert_eq!(pointwise_bound(0.0, 3.0), 0.0);
        assert!((lemma5_bound(-9.2, 1.5, 2.0) - log1pexp(6.2)).abs() < 1e-15);
        assert!((lemma7_bound(-9.2, 1.5, 2.0) - 1.0 / (1.0 + (-6.2f64).exp())).abs() < 1e-15);
    }
}
