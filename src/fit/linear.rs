//! Linear least squares: the early linear decay of KL(n), and the sigma² slope.

use super::{FitError, check_points, parameter};
use crate::stats::Estimate;

/// KL(n) ~ log(1/a) - beta n fitted by ordinary least squares on the first points (eq. 93).
#[derive(Clone, Debug, PartialEq)]
pub struct LinearKlFit {
    /// The intercept (log(1/a), Lemma 6) with its OLS standard error.
    pub log_inv_alpha: Estimate,
    /// Minus the slope, with its OLS standard error.
    pub beta: Estimate,
    /// Residual standard deviation sqrt(RSS / (k - 2)); NaN for k = 2 points.
    pub residual_sd: f64,
}

impl LinearKlFit {
    /// The prior a implied by the intercept (may underflow to 0 for log(1/a) > ~745; use
    /// `log_inv_alpha` then).
    pub fn alpha(&self) -> f64 {
        (-self.log_inv_alpha.mean).exp()
    }
}

/// Intercept, slope, their standard errors and the residual standard deviation of the OLS
/// line through `points`.
pub(super) struct Ols {
    pub intercept: f64,
    pub slope: f64,
    pub se_intercept: f64,
    pub se_slope: f64,
    pub residual_sd: f64,
}

/// Ordinary least squares y = b0 + b1 x, centred for accuracy. Standard errors use
/// s² = RSS / (k - 2): SE(b1) = s / sqrt(Sxx), SE(b0) = s sqrt(1/k + x̄² / Sxx). With 2
/// points there are no residual degrees of freedom, so no standard error: an error.
pub(super) fn ols(points: &[(f64, f64)]) -> Result<Ols, FitError> {
    if points.len() < 3 {
        return Err(FitError::Degenerate(format!(
            "a line through {} points has no residuals, so its standard errors are unknown; fit 3 or more points",
            points.len()
        )));
    }
    let k = points.len() as f64;
    let x_mean = points.iter().map(|p| p.0).sum::<f64>() / k;
    let y_mean = points.iter().map(|p| p.1).sum::<f64>() / k;
    let sxx: f64 = points.iter().map(|p| (p.0 - x_mean).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - x_mean) * (p.1 - y_mean)).sum();
    if sxx == 0.0 {
        return Err(FitError::Degenerate(
            "all points have the same n, so no slope can be fitted".into(),
        ));
    }
    let slope = sxy / sxx;
    let intercept = y_mean - slope * x_mean;
    let rss: f64 = points
        .iter()
        .map(|p| (p.1 - intercept - slope * p.0).powi(2))
        .sum();
    let s2 = rss / (k - 2.0);
    Ok(Ols {
        intercept,
        slope,
        se_intercept: (s2 * (1.0 / k + x_mean * x_mean / sxx)).sqrt(),
        se_slope: (s2 / sxx).sqrt(),
        residual_sd: s2.sqrt(),
    })
}

/// Fit KL(n) ~ log(1/a) - beta n to the first `first` of `points` (n, KL) by OLS.
pub fn fit_kl_linear(points: &[(f64, f64)], first: usize) -> Result<LinearKlFit, FitError> {
    if first > points.len() {
        return Err(FitError::Degenerate(format!(
            "asked to fit the first {first} points, but there are only {}",
            points.len()
        )));
    }
    let used = &points[..first];
    check_points(used, "a linear KL fit", 2)?;
    let fit = ols(used)?;
    Ok(LinearKlFit {
        log_inv_alpha: parameter(fit.intercept, fit.se_intercept, first),
        beta: parameter(-fit.slope, fit.se_slope, first),
        residual_sd: fit.residual_sd,
    })
}

/// sigma² as the slope of a line through the origin bounding Var(n) from above (def. 4).
#[derive(Clone, Debug, PartialEq)]
pub struct SigmaFit {
    /// The tightest slope that bounds every point: max over n > 0 of Var(n) / n.
    pub tight_slope: f64,
    /// The n at which the tightest slope is attained.
    pub tight_at: f64,
    /// sqrt(tight_slope).
    pub tight_sigma: f64,
    /// Least-squares slope through the origin, sum(n v) / sum(n²), with standard error
    /// sqrt(s² / sum(n²)), s² = RSS / (k - 1).
    pub ls_slope: Estimate,
    /// sqrt of the least-squares slope; its standard error by the delta method,
    /// SE(slope) / (2 sigma) (0 when the slope is 0, which only all-zero variances give).
    pub ls_sigma: Estimate,
}

/// Fit Var(n) <= n sigma² to points (n, variance): n >= 0, variance >= 0, at least two points
/// and at least one with n > 0. A point at n = 0 must have variance 0 (an empty text has a
/// fixed log-ratio), since no line through the origin can bound anything else.
pub fn fit_sigma(points: &[(f64, f64)]) -> Result<SigmaFit, FitError> {
    check_points(points, "a sigma fit", 2)?;
    let mut tight: Option<(f64, f64)> = None;
    for &(n, v) in points {
        if n < 0.0 || v < 0.0 {
            return Err(FitError::Degenerate(format!(
                "point ({}, {}) is negative; lengths and variances are >= 0",
                crate::format::number(n),
                crate::format::number(v)
            )));
        }
        if n == 0.0 {
            if v > 0.0 {
                return Err(FitError::Degenerate(format!(
                    "the variance at n = 0 is {}, but a line through the origin is 0 there",
                    crate::format::number(v)
                )));
            }
            continue;
        }
        let slope = v / n;
        if tight.is_none_or(|(best, _)| slope > best) {
            tight = Some((slope, n));
        }
    }
    let Some((tight_slope, tight_at)) = tight else {
        return Err(FitError::Degenerate(
            "a sigma fit needs a point with n > 0".into(),
        ));
    };
    let k = points.len() as f64;
    let snn: f64 = points.iter().map(|p| p.0 * p.0).sum();
    let snv: f64 = points.iter().map(|p| p.0 * p.1).sum();
    let slope = snv / snn;
    let rss: f64 = points.iter().map(|p| (p.1 - slope * p.0).powi(2)).sum();
    let se = (rss / (k - 1.0) / snn).sqrt();
    let sigma = slope.sqrt();
    // A zero slope means every variance is 0 (they are >= 0), so the residuals and `se` are 0
    // too: sigma is exactly 0.
    let se_sigma = if sigma > 0.0 { se / (2.0 * sigma) } else { 0.0 };
    let used = points.len();
    Ok(SigmaFit {
        tight_slope,
        tight_at,
        tight_sigma: tight_slope.sqrt(),
        ls_slope: parameter(slope, se, used),
        ls_sigma: parameter(sigma, se_sigma, used),
    })
}
