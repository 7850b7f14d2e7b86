//! A Monte Carlo estimate always travels with its standard error and sample size, and with
//! what is known of its sampling distribution, so that its intervals and tests hold where a
//! normal approximation would not.

use std::fmt;

/// What is known of an estimate's sampling distribution beyond its standard error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shape {
    /// A mean of independent draws with this sample skewness: one-sided tests and intervals
    /// use Hall's skewness-corrected t, whose size holds where the z-test's does not.
    Mean { skewness: f64 },
    /// A sample variance of independent draws with this (trimmed-mean) kurtosis estimate:
    /// intervals are Bonett's (2006) log-scale interval, not mean ± z·stderr, with its normal
    /// quantile scaled by `widen`, a bootstrap calibration of its 95% coverage.
    Variance { kurtosis: f64, widen: f64 },
    /// Anything else (sums of estimates, fitted parameters): the normal approximation.
    Normal,
}

/// What the `n` of an estimate counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// Independent draws.
    Draws,
    /// Prompts: the estimate is a mean over prompts, and its standard error is the spread
    /// across them (the error of a claim about prompts drawn at random).
    Prompts,
    /// Draws under a fixed list of this many prompts: the standard error treats the prompts
    /// as given (conditional on them).
    DrawsGiven { prompts: usize },
}

/// The mean of `n` independent draws with its standard error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    pub mean: f64,
    pub stderr: f64,
    pub n: usize,
    pub shape: Shape,
    pub count: Count,
    /// The estimator, named in the printed estimate where there is a choice of one (a KL's
    /// Rao-Blackwellized "rb"); `None` prints nothing.
    pub estimator: Option<&'static str>,
}

impl Estimate {
    /// An estimate with the normal approximation and `n` counting draws.
    pub fn new(mean: f64, stderr: f64, n: usize) -> Estimate {
        Estimate {
            mean,
            stderr,
            n,
            shape: Shape::Normal,
            count: Count::Draws,
            estimator: None,
        }
    }

    /// An exact number seen as an estimate: no error, no samples.
    pub fn exact(x: f64) -> Estimate {
        Estimate::new(x, 0.0, 0)
    }

    /// The same estimate with `n` counting something else.
    pub fn counting(self, count: Count) -> Estimate {
        Estimate { count, ..self }
    }

    /// The same estimate, naming the estimator that made it.
    pub fn by(self, estimator: &'static str) -> Estimate {
        Estimate {
            estimator: Some(estimator),
            ..self
        }
    }

    /// The same estimate without shape information (after arithmetic that changes it).
    pub fn normal(self) -> Estimate {
        Estimate {
            shape: Shape::Normal,
            ..self
        }
    }

    /// The sample mean and standard error (sample standard deviation / sqrt n) of `values`,
    /// with their skewness. Uses Welford's update so long runs do not lose precision.
    pub fn from_samples(values: &[f64]) -> Estimate {
        let n = values.len();
        let mut mean = 0.0;
        let mut m2 = 0.0;
        for (i, &x) in values.iter().enumerate() {
            let delta = x - mean;
            mean += delta / (i + 1) as f64;
            m2 += delta * (x - mean);
        }
        let stderr = if n > 1 {
            (m2 / (n - 1) as f64 / n as f64).sqrt()
        } else {
            f64::NAN
        };
        let mean = if n == 0 { f64::NAN } else { mean };
        let m3: f64 = values.iter().map(|x| (x - mean).powi(3)).sum::<f64>();
        // Sample skewness g1 = m3 / m2^(3/2) with both moments over n; zero spread has none.
        let nf = n as f64;
        let skewness = if m2 > 0.0 {
            (m3 / nf) / (m2 / nf).powf(1.5)
        } else {
            0.0
        };
        Estimate {
            mean,
            stderr,
            n,
            shape: Shape::Mean { skewness },
            count: Count::Draws,
            estimator: None,
        }
    }

    /// The mean of a few values (one result per seed of a study) with the plain Student t
    /// interval, n − 1 degrees of freedom: Hall's skewness correction needs the skewness, and
    /// a handful of values cannot estimate it, so the correction would add noise, not remove
    /// bias. One value has no standard error (NaN) and so no interval.
    pub fn student(values: &[f64]) -> Estimate {
        Estimate {
            shape: Shape::Mean { skewness: 0.0 },
            ..Estimate::from_samples(values)
        }
    }

    /// The unbiased sample variance of `values` (k >= 2) with its large-sample (delta-method)
    /// standard error sqrt((m4 - s⁴ (k - 3)/(k - 1)) / k), and, for k >= 5, the kurtosis that
    /// Bonett's interval needs (fourth moment about a trimmed mean, which keeps the interval
    /// honest on skewed draws).
    pub fn variance_of_samples(values: &[f64]) -> Estimate {
        let k = values.len();
        if k < 2 {
            return Estimate::new(f64::NAN, f64::NAN, k);
        }
        let kf = k as f64;
        let mean = values.iter().sum::<f64>() / kf;
        let m2: f64 = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>();
        let m4: f64 = values.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / kf;
        let s2 = m2 / (kf - 1.0);
        // Var(s²) ≈ (mu4 - sigma⁴ (k - 3) / (k - 1)) / k with sample moments; the (rare,
        // tiny-sample) negative values are clamped to zero.
        let var_s2 = ((m4 - s2 * s2 * (kf - 3.0) / (kf - 1.0)) / kf).max(0.0);
        let shape = if k >= 5 && m2 > 0.0 {
            Shape::Variance {
                kurtosis: bonett_kurtosis(values, mean, m2),
                widen: calibrate_bonett(values, s2),
            }
        } else {
            Shape::Normal
        };
        Estimate {
            mean: s2,
            stderr: var_s2.sqrt(),
            n: k,
            shape,
            count: Count::Draws,
            estimator: None,
        }
    }
}

/// Bonett's kurtosis estimate n Σ(x - m)⁴ / (Σ(x - x̄)²)² with m the mean trimmed by
/// 1/(2 sqrt(n - 4)) at each end: the trimmed center inflates it on skewed draws, which is
/// what keeps the interval's coverage there. `m2` is Σ(x - x̄)².
fn bonett_kurtosis(values: &[f64], mean: f64, m2: f64) -> f64 {
    let n = values.len() as f64;
    let _ = mean;
    let center = trimmed_mean(values, 1.0 / (2.0 * (n - 4.0).sqrt()));
    let m4: f64 = values.iter().map(|x| (x - center).powi(4)).sum();
    n * m4 / (m2 * m2)
}

/// Bonett's interval for a variance s² of n draws: center ln(c s²) and half-width
/// z c sqrt((kurtosis - (n - 3)/n) / (n - 1)), c = n / (n - z).
pub(crate) fn bonett(s2: f64, kurtosis: f64, n: usize, z: f64) -> (f64, f64) {
    let nf = n as f64;
    let c = nf / (nf - z);
    let spread = z * c * ((kurtosis - (nf - 3.0) / nf).max(0.0) / (nf - 1.0)).sqrt();
    ((c * s2).ln(), spread)
}

/// Resamples of the bootstrap calibration, and the largest sample it is run on (beyond it the
/// interval's asymptotics hold and the calibration would cost more than the draws).
const CALIBRATION_RESAMPLES: usize = 400;
const CALIBRATION_MAX_DRAWS: usize = 20_000;

/// The factor on Bonett's normal quantile that makes its 95% interval cover the sample's own
/// variance in 95% of bootstrap resamples (calibration by the bootstrap, Loh 1987; Hall and
/// Martin 1988): it widens the interval on heavy-tailed draws, where a few rare values carry
/// much of the variance, and narrows it where Bonett's is conservative. The resampling
/// generator is seeded from the draws themselves, so the same draws give the same interval.
fn calibrate_bonett(values: &[f64], s2: f64) -> f64 {
    use rand::{Rng, SeedableRng};
    let n = values.len();
    if n > CALIBRATION_MAX_DRAWS || !s2.is_finite() || s2 <= 0.0 {
        return 1.0;
    }
    let z95 = super::Z95;
    let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
    for x in values {
        digest = (digest ^ x.to_bits()).wrapping_mul(0x0100_0000_01b3);
    }
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(digest);
    let mut needed: Vec<f64> = Vec::with_capacity(CALIBRATION_RESAMPLES);
    let mut resample = vec![0.0; n];
    for _ in 0..CALIBRATION_RESAMPLES {
        for slot in resample.iter_mut() {
            *slot = values[rng.random_range(0..n)];
        }
        let nf = n as f64;
        let mean = resample.iter().sum::<f64>() / nf;
        let m2: f64 = resample.iter().map(|x| (x - mean).powi(2)).sum();
        if m2 <= 0.0 {
            needed.push(f64::INFINITY);
            continue;
        }
        let kurtosis = bonett_kurtosis(&resample, mean, m2);
        let s2_b = m2 / (nf - 1.0);
        // The smallest quantile whose interval around s2_b reaches s²: coverage grows with z,
        // so bisect on [0, min(20, n/2)].
        let covers = |z: f64| {
            let (center, spread) = bonett(s2_b, kurtosis, n, z);
            (center - s2.ln()).abs() <= spread
        };
        let mut hi = 20f64.min(nf / 2.0);
        if !covers(hi) {
            needed.push(f64::INFINITY);
            continue;
        }
        let mut lo = 0.0;
        for _ in 0..50 {
            let mid = 0.5 * (lo + hi);
            if covers(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        needed.push(hi);
    }
    needed.sort_by(f64::total_cmp);
    let at = ((0.95 * CALIBRATION_RESAMPLES as f64).ceil() as usize).saturating_sub(1);
    let z = needed[at.min(needed.len() - 1)];
    if z.is_finite() { z / z95 } else { 1.0 }
}

/// The mean of `values` without the lowest and highest `proportion` of them (at least none).
fn trimmed_mean(values: &[f64], proportion: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let cut = ((sorted.len() as f64) * proportion).floor() as usize;
    let kept = &sorted[cut.min(sorted.len() / 2)..sorted.len() - cut.min(sorted.len() / 2)];
    if kept.is_empty() {
        sorted.iter().sum::<f64>() / sorted.len() as f64
    } else {
        kept.iter().sum::<f64>() / kept.len() as f64
    }
}

impl fmt::Display for Estimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut n = match self.count {
            Count::Draws => format!("n={}", self.n),
            Count::Prompts => format!("n={} prompts", self.n),
            Count::DrawsGiven { prompts } => {
                format!("n={}, error given the {prompts} prompts", self.n)
            }
        };
        if let Some(name) = self.estimator {
            n = format!("{n}, {name}");
        }
        match self.shape {
            Shape::Variance { .. } if self.stderr.is_finite() && self.mean.is_finite() => {
                let (lo, hi) = self.interval(0.95);
                write!(
                    f,
                    "{} ({n}; 95% CI [{}, {}], Bonett)",
                    crate::format::estimate(self.mean, self.stderr),
                    crate::format::significant(lo, 3),
                    crate::format::significant(hi, 3),
                )
            }
            _ => write!(
                f,
                "{} ({n})",
                crate::format::estimate(self.mean, self.stderr)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skewness_of_a_symmetric_and_a_skewed_sample() {
        let symmetric = Estimate::from_samples(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(symmetric.shape, Shape::Mean { skewness: 0.0 });
        // 0, 0, 0, 3: m2 = 6.75/4, m3 = (3 * -0.75^3 + 2.25^3)/4.
        let skewed = Estimate::from_samples(&[0.0, 0.0, 0.0, 3.0]);
        let Shape::Mean { skewness } = skewed.shape else {
            panic!("a mean of samples has a skewness")
        };
        let m2: f64 = 6.75 / 4.0;
        let m3 = (3.0 * (-0.75f64).powi(3) + 2.25f64.powi(3)) / 4.0;
        assert!((skewness - m3 / m2.powf(1.5)).abs() < 1e-12);
    }

    #[test]
    fn trimmed_mean_drops_both_tails() {
        assert_eq!(trimmed_mean(&[100.0, 1.0, 2.0, 3.0, -50.0], 0.2), 2.0);
        assert_eq!(trimmed_mean(&[1.0, 2.0], 0.0), 1.5);
    }

    #[test]
    fn display_says_what_n_counts() {
        let e = Estimate::new(1.0, 0.1, 30);
        assert!(e.to_string().ends_with("(n=30)"));
        assert!(
            e.counting(Count::Prompts)
                .to_string()
                .ends_with("(n=30 prompts)")
        );
        let given = Estimate::new(1.0, 0.01, 6000).counting(Count::DrawsGiven { prompts: 30 });
        assert!(given.to_string().contains("error given the 30 prompts"));
    }
}
