//! Fits of the paper's section 4: reading log(1/a), beta and sigma off measured curves.
//!
//! * [`fit_kl_decay`]: KL(n) between P_minus and the mixture as a function of prompt length n.
//!   Its first points are nearly linear, KL(n) ~ log(1/a) - beta n (eq. 93); the whole curve
//!   follows Lemma 5's form KL(n) = log(1 + exp(c - beta n)) with c = log(1/a) (eq. 7).
//! * [`fit_sigma`]: sigma² as the slope of a linear upper bound through the origin on the
//!   log-ratio variance Var(n) <= n sigma² (def. 4).
//! * [`probe`]: cross-validated linear classifiers on hidden states (appendix K, table 2).
//!
//! A fitted parameter is an [`Estimate`] whose `n` is the number of points used and whose
//! standard error is the usual least-squares one (residual variance times (JᵀJ)⁻¹).

mod lemma5;
mod linear;
pub mod probe;

pub use lemma5::{Lemma5Fit, fit_lemma5};
pub use linear::{LinearKlFit, SigmaFit, fit_kl_linear, fit_sigma};

use crate::stats::Estimate;

/// Why a fit could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error("{what} needs at least {needed} points, got {got}")]
    TooFewPoints {
        what: String,
        needed: usize,
        got: usize,
    },
    #[error(
        "point {index} is ({}, {}); fits need finite numbers",
        crate::format::number(*.n),
        crate::format::number(*.value)
    )]
    NonFinite { index: usize, n: f64, value: f64 },
    #[error("{0}")]
    Degenerate(String),
    #[error("the {what} fit did not converge in {iterations} iterations")]
    NoConvergence { what: String, iterations: usize },
}

/// Both fits of a KL-versus-prompt-length curve.
#[derive(Clone, Debug, PartialEq)]
pub struct KlDecayFit {
    /// Ordinary least squares on the first points.
    pub linear: LinearKlFit,
    /// Nonlinear least squares of Lemma 5's form on all points, or why it failed (it can fail
    /// to converge where the line is still well defined, e.g. on a bootstrap resample).
    pub lemma5: Result<Lemma5Fit, FitError>,
}

/// Fit KL(n) both ways: the line log(1/a) - beta n through the first `first` points, and
/// Lemma 5's log(1 + exp(c - beta n)) through all of them. Only the line's failure is an error.
pub fn fit_kl_decay(points: &[(f64, f64)], first: usize) -> Result<KlDecayFit, FitError> {
    Ok(KlDecayFit {
        linear: fit_kl_linear(points, first)?,
        lemma5: fit_lemma5(points),
    })
}

fn check_points(points: &[(f64, f64)], what: &str, needed: usize) -> Result<(), FitError> {
    if points.len() < needed {
        return Err(FitError::TooFewPoints {
            what: what.to_string(),
            needed,
            got: points.len(),
        });
    }
    for (index, &(n, value)) in points.iter().enumerate() {
        if !n.is_finite() || !value.is_finite() {
            return Err(FitError::NonFinite { index, n, value });
        }
    }
    Ok(())
}

fn parameter(value: f64, stderr: f64, n: usize) -> Estimate {
    Estimate::new(value, stderr, n)
}

#[cfg(test)]
mod tests;
