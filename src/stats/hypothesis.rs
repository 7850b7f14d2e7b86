//! Confidence intervals and one-sided tests of claims about Monte Carlo estimates.
//!
//! A script asserts bounds from the theory (`kl <= bound`) on noisy estimates. A claim is
//! treated as the null hypothesis and is reported as refuted only when the estimate
//! contradicts it at the requested level, so sampling noise alone fails an assertion with
//! probability at most 1 - level. For a whole curve of claims, [`holm`] applies the
//! Holm-Bonferroni step-down correction, which bounds the chance that *any* true claim of
//! the curve is refuted by 1 - level.

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

use super::Estimate;
use super::estimate::{Shape, bonett};

/// Why a test could not be carried out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    #[error("confidence level must lie strictly between 0 and 1, got {0}")]
    InvalidLevel(f64),
    #[error(
        "an estimate from {n} sample(s) has no standard error; take at least 2 samples to test it"
    )]
    NoStandardError { n: usize },
    #[error("{0}")]
    Invalid(String),
}

/// Which side of the threshold a claim puts the true value on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The true value is >= the threshold.
    AtLeast,
    /// The true value is <= the threshold.
    AtMost,
}

/// The outcome of testing one claim.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub direction: Direction,
    pub threshold: f64,
    pub estimate: Estimate,
    pub level: f64,
    /// One-sided p-value of the claim: the chance of an estimate this far on the wrong side
    /// of the threshold if the true value sat exactly on it (by the estimate's test).
    pub p_value: f64,
    /// The p-value after multiple-testing correction (equal to `p_value` for a lone test).
    pub adjusted_p: f64,
    /// One-sided confidence bound at `level`: the upper bound for `AtLeast` (the claim is
    /// consistent iff threshold <= bound), the lower bound for `AtMost`.
    pub bound: f64,
    /// Two-sided interval at `level`, for display.
    pub interval: (f64, f64),
    /// False when the data refute the claim at `level` (after correction, if any).
    pub holds: bool,
}

fn check_level(level: f64) -> Result<(), StatsError> {
    if level > 0.0 && level < 1.0 {
        Ok(())
    } else {
        Err(StatsError::InvalidLevel(level))
    }
}

/// The 97.5% standard normal quantile: `mean ± Z95 · stderr` is a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// The standard normal quantile.
fn z_quantile(p: f64) -> f64 {
    Normal::standard().inverse_cdf(p)
}

fn phi(x: f64) -> f64 {
    Normal::standard().cdf(x)
}

impl Estimate {
    /// Two-sided interval at `level`: Bonett's log-scale interval for a sample variance,
    /// Hall's skewness-corrected t for a mean of draws, `mean ± z · stderr` otherwise.
    ///
    /// An infinite mean (some sampled term was infinite, which is certain, not noise) or a
    /// zero standard error gives the point interval; a level outside (0, 1) or a missing
    /// standard error gives `(NaN, NaN)`.
    pub fn interval(&self, level: f64) -> (f64, f64) {
        if check_level(level).is_err() || self.mean.is_nan() {
            return (f64::NAN, f64::NAN);
        }
        if self.mean.is_infinite() || self.stderr == 0.0 {
            return (self.mean, self.mean);
        }
        let tail = 0.5 + level / 2.0;
        (self.lower_bound(tail), self.upper_bound(tail))
    }

    /// One-sided lower confidence bound at `level` (the true value is above it with
    /// probability `level`).
    pub fn lower_bound(&self, level: f64) -> f64 {
        self.bound(level, -1.0)
    }

    /// One-sided upper confidence bound at `level`.
    pub fn upper_bound(&self, level: f64) -> f64 {
        self.bound(level, 1.0)
    }

    /// The one-sided bound at `level` below (`side` = -1) or above (`side` = +1) the estimate,
    /// by the estimate's own method.
    fn bound(&self, level: f64, side: f64) -> f64 {
        match self.shape {
            Shape::Variance { kurtosis, widen } if self.n >= 5 => {
                let z = widen * z_quantile(level);
                let (center, spread) = bonett(self.mean, kurtosis, self.n, z);
                (center + side * spread).exp()
            }
            Shape::Mean { skewness } if self.n >= 2 => {
                let q = -side * t_quantile(level, self.n);
                self.mean - self.stderr * hall_inverse(skewness, self.n, q)
            }
            _ => self.mean + side * z_quantile(level) * self.stderr,
        }
    }

    /// Which test a one-sided claim about this estimate gets, for messages.
    pub fn test_name(&self) -> &'static str {
        match self.shape {
            Shape::Variance { .. } if self.n >= 5 => {
                "Bonett's log-scale test for a variance, bootstrap-calibrated"
            }
            Shape::Mean { .. } if self.n >= 2 => "Hall's skewness-corrected t",
            _ => "normal approximation",
        }
    }

    /// One-sided p-value of a claim: the chance, were the true value on the threshold, of an
    /// estimate at least this far on the claim's wrong side. Each tail is computed directly
    /// (never as 1 - the other), so tiny p-values keep their digits.
    fn p_value(&self, direction: Direction, threshold: f64, level: f64) -> f64 {
        // A statistic that is large when the estimate lies above the threshold, and the
        // probability that it is at least `x` / at most `x` under the claim.
        let (x, upper, lower): (f64, Tail, Tail) = match self.shape {
            Shape::Variance { kurtosis, widen } if self.n >= 5 => {
                if threshold <= 0.0 {
                    let above = self.mean > threshold;
                    return match direction {
                        Direction::AtMost => f64::from(u8::from(!above)),
                        Direction::AtLeast => 1.0,
                    };
                }
                let z = widen * z_quantile(level);
                let (center, spread) = bonett(self.mean, kurtosis, self.n, z);
                (
                    (center - threshold.ln()) / (spread / z),
                    |x, _| phi(-x),
                    |x, _| phi(x),
                )
            }
            Shape::Mean { skewness } if self.n >= 2 => (
                hall(skewness, self.n, (self.mean - threshold) / self.stderr),
                |x, n| student_cdf(-x, n),
                student_cdf,
            ),
            _ => (
                (self.mean - threshold) / self.stderr,
                |x, _| phi(-x),
                |x, _| phi(x),
            ),
        };
        match direction {
            Direction::AtMost => upper(x, self.n),
            Direction::AtLeast => lower(x, self.n),
        }
    }

    /// Test the claim "true value >= threshold" at `level`.
    pub fn at_least(&self, threshold: f64, level: f64) -> Result<Verdict, StatsError> {
        one_sided(self, Direction::AtLeast, threshold, level)
    }

    /// Test the claim "true value <= threshold" at `level`.
    pub fn at_most(&self, threshold: f64, level: f64) -> Result<Verdict, StatsError> {
        one_sided(self, Direction::AtMost, threshold, level)
    }
}

/// A tail probability of a test statistic: (value, n) -> probability.
type Tail = fn(f64, usize) -> f64;

/// Student t quantile with n - 1 degrees of freedom (the normal one for huge n).
fn t_quantile(p: f64, n: usize) -> f64 {
    match StudentsT::new(0.0, 1.0, (n - 1) as f64) {
        Ok(t) if n < 100_000 => t.inverse_cdf(p),
        _ => z_quantile(p),
    }
}

fn student_cdf(x: f64, n: usize) -> f64 {
    match StudentsT::new(0.0, 1.0, (n - 1) as f64) {
        Ok(t) if n < 100_000 => t.cdf(x),
        _ => phi(x),
    }
}

/// Hall's (1992) monotone cubic transformation of the t statistic of a mean of n draws with
/// sample skewness g: T = t + a t²/3 + a² t³/27 + a/6 with a = g/sqrt(n), which removes the
/// skewness term of t's Edgeworth expansion. Written as ((1 + a t/3)³ - 1)/a + a/6.
fn hall(skewness: f64, n: usize, t: f64) -> f64 {
    let a = skewness / (n as f64).sqrt();
    if a.abs() < 1e-12 {
        return t + a / 6.0;
    }
    ((1.0 + a * t / 3.0).powi(3) - 1.0) / a + a / 6.0
}

/// The t with hall(t) = q.
fn hall_inverse(skewness: f64, n: usize, q: f64) -> f64 {
    let a = skewness / (n as f64).sqrt();
    if a.abs() < 1e-12 {
        return q - a / 6.0;
    }
    3.0 / a * ((1.0 + a * (q - a / 6.0)).cbrt() - 1.0)
}

/// Test one claim about `estimate` at `level` (e.g. 0.95): Hall's skewness-corrected t for
/// a mean of draws, Bonett's log-scale test for a sample variance, the normal approximation
/// otherwise ([`Estimate::test_name`] says which).
///
/// The claim is refuted iff its p-value is below 1 - level, equivalently iff the threshold
/// lies outside the one-sided confidence bound. A zero standard error or an infinite mean
/// makes the comparison exact (p-value 0 or 1).
pub fn one_sided(
    estimate: &Estimate,
    direction: Direction,
    threshold: f64,
    level: f64,
) -> Result<Verdict, StatsError> {
    check_level(level)?;
    if threshold.is_nan() || estimate.mean.is_nan() {
        return Err(StatsError::Invalid(format!(
            "cannot test {} against {}",
            crate::format::number(estimate.mean),
            crate::format::number(threshold)
        )));
    }
    let exact = estimate.mean.is_infinite() || estimate.stderr == 0.0;
    if !exact && (estimate.stderr.is_nan() || estimate.stderr < 0.0) {
        return Err(StatsError::NoStandardError { n: estimate.n });
    }
    let (p_value, bound) = if exact {
        let holds = match direction {
            Direction::AtLeast => estimate.mean >= threshold,
            Direction::AtMost => estimate.mean <= threshold,
        };
        (if holds { 1.0 } else { 0.0 }, estimate.mean)
    } else {
        let p = estimate.p_value(direction, threshold, level);
        match direction {
            Direction::AtLeast => (p, estimate.upper_bound(level)),
            Direction::AtMost => (p, estimate.lower_bound(level)),
        }
    };
    Ok(Verdict {
        direction,
        threshold,
        estimate: *estimate,
        level,
        p_value,
        adjusted_p: p_value,
        bound,
        interval: estimate.interval(level),
        holds: p_value >= 1.0 - level,
    })
}

/// Holm-Bonferroni correction of a family of one-sided verdicts (a curve of claims) at
/// family-wise `level`: with m claims sorted by p-value, the k-th smallest (k = 1..m) gets
/// the adjusted p-value max_{j<=k} min(1, (m - j + 1) p_(j)), and a claim is refuted iff its
/// adjusted p-value is below 1 - level. Returns the verdicts in their original order.
pub fn holm(verdicts: &[Verdict], level: f64) -> Result<Vec<Verdict>, StatsError> {
    check_level(level)?;
    let m = verdicts.len();
    let mut order: Vec<usize> = (0..m).collect();
    // p-values are never NaN (one_sided rejects NaN inputs), so total_cmp orders them as numbers.
    order.sort_by(|&a, &b| verdicts[a].p_value.total_cmp(&verdicts[b].p_value));
    let mut out = verdicts.to_vec();
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        let scaled = ((m - rank) as f64 * verdicts[i].p_value).min(1.0);
        running = running.max(scaled);
        out[i].adjusted_p = running;
        out[i].level = level;
        out[i].holds = running >= 1.0 - level;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est(mean: f64, stderr: f64) -> Estimate {
        Estimate::new(mean, stderr, 100)
    }

    #[test]
    fn student_intervals_use_t_with_n_minus_one_degrees_of_freedom() {
        // A skewed sample: Hall's correction would make the interval asymmetric; Student's
        // is mean ± t(n - 1) · stderr, t(3) = 3.182446.
        let e = Estimate::student(&[1.0, 2.0, 3.0, 10.0]);
        let (lo, hi) = e.interval(0.95);
        assert!((hi - e.mean - 3.182_446_305_284_263 * e.stderr).abs() < 1e-9);
        assert!((e.mean - lo - (hi - e.mean)).abs() < 1e-9);
        let one = Estimate::student(&[4.0]);
        assert!(one.interval(0.95).0.is_nan() && one.n == 1);
    }

    #[test]
    fn interval_uses_normal_quantile() {
        let (lo, hi) = est(1.0, 0.5).interval(0.95);
        assert!((lo - (1.0 - 1.959963984540054 * 0.5)).abs() < 1e-9);
        assert!((hi - (1.0 + 1.959963984540054 * 0.5)).abs() < 1e-9);
        assert_eq!(est(f64::INFINITY, f64::NAN).interval(0.95).0, f64::INFINITY);
        assert!(est(1.0, 0.5).interval(1.5).0.is_nan());
    }

    #[test]
    fn one_sided_tests_refute_only_clear_violations() -> Result<(), StatsError> {
        // 1.0 ± 0.5: "<= 0.5" is one standard error away: consistent at 95%.
        let v = est(1.0, 0.5).at_most(0.5, 0.95)?;
        assert!(v.holds);
        assert!((v.p_value - phi(-1.0)).abs() < 1e-12);
        assert!((v.bound - (1.0 - 1.6448536269514722 * 0.5)).abs() < 1e-9);
        // "<= -0.5" is three standard errors away: refuted.
        let v = est(1.0, 0.5).at_most(-0.5, 0.95)?;
        assert!(!v.holds);
        assert!(v.p_value < 0.01);
        let v = est(1.0, 0.5).at_least(2.5, 0.95)?;
        assert!(!v.holds);
        let v = est(1.0, 0.5).at_least(0.0, 0.95)?;
        assert!(v.holds && v.p_value > 0.95);
        // Exact comparisons.
        assert!(est(2.0, 0.0).at_most(2.0, 0.95)?.holds);
        assert!(!est(2.0, 0.0).at_most(1.999, 0.95)?.holds);
        assert!(!est(f64::INFINITY, f64::NAN).at_most(1e300, 0.95)?.holds);
        assert!(matches!(
            est(1.0, f64::NAN).at_most(0.0, 0.95),
            Err(StatsError::NoStandardError { .. })
        ));
        assert!(est(1.0, 0.1).at_most(0.0, 1.0).is_err());
        Ok(())
    }

    #[test]
    fn holm_is_stricter_than_single_tests() -> Result<(), StatsError> {
        // p-values 0.01, 0.02, 0.04 with alpha 0.05:
        // adjusted 0.03, 0.04, 0.04 -> all refuted;
        // with 0.01, 0.03, 0.04: adjusted 0.03, 0.06, 0.06 -> only the first refuted.
        let make = |p: f64| {
            // mean - threshold = z * se with Phi(z) = p for an AtLeast claim.
            let z = z_quantile(p);
            one_sided(&est(z, 1.0), Direction::AtLeast, 0.0, 0.95)
        };
        let family = vec![make(0.04)?, make(0.01)?, make(0.02)?];
        let out = holm(&family, 0.95)?;
        assert!((out[1].adjusted_p - 0.03).abs() < 1e-9);
        assert!((out[2].adjusted_p - 0.04).abs() < 1e-9);
        assert!((out[0].adjusted_p - 0.04).abs() < 1e-9);
        assert!(out.iter().all(|v| !v.holds));
        let family = vec![make(0.01)?, make(0.03)?, make(0.04)?];
        let out = holm(&family, 0.95)?;
        assert!(!out[0].holds);
        assert!(out[1].holds && out[2].holds);
        assert!((out[1].adjusted_p - 0.06).abs() < 1e-9);
        // Single tests would have refuted all three.
        assert!(family.iter().all(|v| !v.holds));
        Ok(())
    }
}
