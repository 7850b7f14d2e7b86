//! Nonlinear least squares of Lemma 5's curve KL(n) = log(1 + exp(c - beta n)).
//!
//! Levenberg-Marquardt on the two parameters (c, beta), started from a weighted linear fit of
//! the inverted curve, c - beta n = log(exp(KL) - 1), which is exact for noise-free data.

use super::{FitError, check_points, parameter};
use crate::stats::Estimate;
use crate::stats::logspace::{log1pexp, sigmoid};

const MAX_ITERATIONS: usize = 500;

/// KL(n) = log(1 + exp(c - beta n)) fitted to all points.
#[derive(Clone, Debug, PartialEq)]
pub struct Lemma5Fit {
    /// c, read as log(1/a) (eq. 7 and 100; the exact mixture gives log((1 - a)/a), equal to
    /// it for small a), with standard error from s² (JᵀJ)⁻¹.
    pub log_inv_alpha: Estimate,
    /// beta with its standard error.
    pub beta: Estimate,
    /// Residual sum of squares at the optimum.
    pub rss: f64,
    /// Residual standard deviation sqrt(RSS / (k - 2)).
    pub residual_sd: f64,
    /// Levenberg-Marquardt iterations taken.
    pub iterations: usize,
}

fn curve(c: f64, beta: f64, n: f64) -> f64 {
    log1pexp(c - beta * n)
}

fn rss(points: &[(f64, f64)], c: f64, beta: f64) -> f64 {
    points
        .iter()
        .map(|&(n, y)| (y - curve(c, beta, n)).powi(2))
        .sum()
}

/// JᵀJ (as [a11, a12, a22]) and Jᵀr at (c, beta); d/dc = sigmoid(z), d/dbeta = -n sigmoid(z).
fn normal_equations(points: &[(f64, f64)], c: f64, beta: f64) -> ([f64; 3], [f64; 2]) {
    let mut a = [0.0; 3];
    let mut g = [0.0; 2];
    for &(n, y) in points {
        let z = c - beta * n;
        let s = sigmoid(z);
        let (jc, jb) = (s, -n * s);
        let r = y - log1pexp(z);
        a[0] += jc * jc;
        a[1] += jc * jb;
        a[2] += jb * jb;
        g[0] += jc * r;
        g[1] += jb * r;
    }
    (a, g)
}

/// Solve the symmetric 2x2 system [a11 a12; a12 a22] x = g; `None` if singular.
fn solve2(a: [f64; 3], g: [f64; 2]) -> Option<[f64; 2]> {
    let det = a[0] * a[2] - a[1] * a[1];
    if det == 0.0 || !det.is_finite() {
        return None;
    }
    Some([
        (a[2] * g[0] - a[1] * g[1]) / det,
        (a[0] * g[1] - a[1] * g[0]) / det,
    ])
}

/// Starting point: weighted least squares of z = log(expm1(KL)) on n over points with
/// KL > 0, weights sigmoid(z)² (the curve's slope, so that flat tails count little).
fn initial_guess(points: &[(f64, f64)]) -> (f64, f64) {
    let mut sw = 0.0;
    let mut swx = 0.0;
    let mut swz = 0.0;
    let mut swxx = 0.0;
    let mut swxz = 0.0;
    for &(n, y) in points {
        if y > 0.0 {
            // log(e^y - 1) = y + log(1 - e^-y), accurate for small and large y.
            let z = y + (-(-y).exp_m1()).ln();
            let w = sigmoid(z).powi(2);
            sw += w;
            swx += w * n;
            swz += w * z;
            swxx += w * n * n;
            swxz += w * n * z;
        }
    }
    let det = sw * swxx - swx * swx;
    if sw > 0.0 && det > 1e-12 * sw * swxx {
        let slope = (sw * swxz - swx * swz) / det;
        let intercept = (swz - slope * swx) / sw;
        if intercept.is_finite() && slope.is_finite() {
            return (intercept, -slope);
        }
    }
    // Fallback: start at the largest value with a unit decay rate.
    let top = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    (top.max(0.1), 1.0)
}

/// Fit Lemma 5's form to all `points` (n, KL), at least three of them.
///
/// Standard errors: s² (JᵀJ)⁻¹ at the optimum with s² = RSS / (k - 2), the usual asymptotic
/// covariance of nonlinear least squares.
pub fn fit_lemma5(points: &[(f64, f64)]) -> Result<Lemma5Fit, FitError> {
    check_points(points, "a Lemma 5 fit", 3)?;
    let (mut c, mut beta) = initial_guess(points);
    let mut current = rss(points, c, beta);
    let mut lambda = 1e-3;
    let mut iterations = 0;
    let mut converged = current == 0.0;
    while !converged && iterations < MAX_ITERATIONS {
        iterations += 1;
        let (a, g) = normal_equations(points, c, beta);
        // Marquardt's scaling: damp each parameter relative to its own curvature.
        let damped = [
            a[0] + lambda * a[0].max(1e-300),
            a[1],
            a[2] + lambda * a[2].max(1e-300),
        ];
        let Some(step) = solve2(damped, g) else {
            return Err(FitError::Degenerate(
                "the Lemma 5 curve is flat at these points (all n equal, or the curve has \
                 decayed to zero everywhere), so c and beta cannot be separated"
                    .into(),
            ));
        };
        let (c_new, beta_new) = (c + step[0], beta + step[1]);
        let trial = rss(points, c_new, beta_new);
        let small_step =
            step[0].abs() <= 1e-14 * (1.0 + c.abs()) && step[1].abs() <= 1e-14 * (1.0 + beta.abs());
        if trial.is_finite() && trial <= current {
            let gain = current - trial;
            c = c_new;
            beta = beta_new;
            current = trial;
            lambda = (lambda / 10.0).max(1e-12);
            if small_step || current == 0.0 || gain <= 1e-30 * (1.0 + current) {
                converged = true;
            }
        } else {
            lambda *= 10.0;
            // No damping makes the sum of squares smaller: we sit at a minimum up to rounding.
            if lambda > 1e16 || small_step {
                converged = true;
            }
        }
    }
    if !converged {
        return Err(FitError::NoConvergence {
            what: "Lemma 5".into(),
            iterations,
        });
    }
    let k = points.len();
    let s2 = current / (k as f64 - 2.0);
    let (a, _) = normal_equations(points, c, beta);
    let det = a[0] * a[2] - a[1] * a[1];
    if det <= 0.0 || !s2.is_finite() {
        return Err(FitError::Degenerate(
            "Lemma 5's fit has no standard errors here (its normal equations are singular, or there are no residual degrees of freedom)".into(),
        ));
    }
    let (var_c, var_beta) = (s2 * a[2] / det, s2 * a[0] / det);
    Ok(Lemma5Fit {
        log_inv_alpha: parameter(c, var_c.sqrt(), k),
        beta: parameter(beta, var_beta.sqrt(), k),
        rss: current,
        residual_sd: s2.sqrt(),
        iterations,
    })
}
