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
    /// Where the line's points sit on Lemma 5's curve (when that fit succeeded).
    pub regime: Option<Regime>,
}

/// Where the first points of a KL curve sit on Lemma 5's curve log(1 + e^(c - beta n)): the
/// line log(1/a) - beta n is its asymptote, so the line's fit is unbiased only while
/// c - beta n stays large over the points it uses.
#[derive(Clone, Debug, PartialEq)]
pub struct Regime {
    /// "linear", "transition" (the curve bends over the points) or "saturated" (the points
    /// reach past the knee n = c / beta, where KL flattens towards zero).
    pub name: &'static str,
    /// The relative bias the bend puts into the line's slope: (d_last - d_first) / (beta
    /// (n_last - n_first)), with d = log1p(e^-(c - beta n)) the curve's distance above the line.
    pub slope_bias: f64,
    /// (beta_line - beta_lemma5) in units of their combined standard error (NaN when neither
    /// has one).
    pub disagreement: f64,
}

impl Regime {
    /// Whether the two fits disagree by more than their errors (two combined standard
    /// errors), or, where neither has an error (exact curves), by more than 1%.
    pub fn disagrees(&self, beta_line: f64, beta_lemma5: f64) -> bool {
        if self.disagreement.is_nan() {
            (beta_line - beta_lemma5).abs() > 0.01 * beta_lemma5.abs()
        } else {
            self.disagreement.abs() > 2.0
        }
    }
}

/// Fit KL(n) both ways: the line log(1/a) - beta n through the first `first` points, and
/// Lemma 5's log(1 + exp(c - beta n)) through all of them. Only the line's failure is an error.
pub fn fit_kl_decay(points: &[(f64, f64)], first: usize) -> Result<KlDecayFit, FitError> {
    let linear = fit_kl_linear(points, first)?;
    let lemma5 = fit_lemma5(points);
    let regime = lemma5
        .as_ref()
        .ok()
        .map(|l5| regime(&points[..first], &linear, l5));
    Ok(KlDecayFit {
        linear,
        lemma5,
        regime,
    })
}

fn regime(used: &[(f64, f64)], linear: &LinearKlFit, l5: &Lemma5Fit) -> Regime {
    let (c, beta) = (l5.log_inv_alpha.mean, l5.beta.mean);
    let bend = |n: f64| (-(c - beta * n)).exp().ln_1p();
    let (first, last) = (used[0].0, used[used.len() - 1].0);
    let slope_bias = (bend(last) - bend(first)) / (beta * (last - first));
    let name = if c - beta * last < 0.0 {
        "saturated"
    } else if slope_bias.abs() > 0.01 {
        "transition"
    } else {
        "linear"
    };
    let combined = (linear.beta.stderr.powi(2) + l5.beta.stderr.powi(2)).sqrt();
    let gap = linear.beta.mean - beta;
    let disagreement = if combined > 0.0 {
        gap / combined
    } else if gap == 0.0 {
        0.0
    } else {
        gap.signum() * f64::INFINITY
    };
    Regime {
        name,
        slope_bias,
        disagreement,
    }
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
