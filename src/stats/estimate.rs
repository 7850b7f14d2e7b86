//! A Monte Carlo estimate always travels with its standard error and sample size.

use std::fmt;

/// The mean of `n` independent draws with its standard error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    pub mean: f64,
    pub stderr: f64,
    pub n: usize,
}

impl Estimate {
    /// An exact number seen as an estimate: no error, no samples.
    pub fn exact(x: f64) -> Estimate {
        Estimate {
            mean: x,
            stderr: 0.0,
            n: 0,
        }
    }

    /// The sample mean and standard error (sample standard deviation / sqrt n) of `values`.
    /// Uses Welford's update so long runs do not lose precision.
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
        Estimate {
            mean: if n == 0 { f64::NAN } else { mean },
            stderr,
            n,
        }
    }
}

impl fmt::Display for Estimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (n={})",
            crate::format::estimate(self.mean, self.stderr),
            self.n
        )
    }
}
