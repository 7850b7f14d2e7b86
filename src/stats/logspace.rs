//! Arithmetic on log-probabilities.
//!
//! Mixture weights such as a = 1e-300 (or log a = -2000, which no f64 can hold as a
//! probability) only survive if every sum of probabilities is taken in log space. These
//! helpers treat `-inf` (probability zero) as an ordinary value and never turn it into NaN.

/// log(sum_i exp(x_i)), exact for any mix of finite values and `-inf`.
///
/// All `-inf` (an empty sum of probabilities) gives `-inf`; a `+inf` term gives `+inf`;
/// a NaN term gives NaN.
pub fn logsumexp<I>(values: I) -> f64
where
    I: IntoIterator<Item = f64>,
    I::IntoIter: Clone,
{
    let iter = values.into_iter();
    let mut max = f64::NEG_INFINITY;
    for x in iter.clone() {
        if x.is_nan() {
            return f64::NAN;
        }
        if x > max {
            max = x;
        }
    }
    if max.is_infinite() {
        return max;
    }
    let sum: f64 = iter.map(|x| (x - max).exp()).sum();
    max + sum.ln()
}

/// log(exp(a) + exp(b)) without building a collection.
pub fn logaddexp(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        return f64::NAN;
    }
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if hi.is_infinite() {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// log(1 + exp(x)) (the softplus), accurate for large |x|.
pub fn log1pexp(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// 1 / (1 + exp(-x)), accurate for large |x|.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Normalise log-weights so that their exponentials sum to one; `None` when every weight
/// is zero (`-inf`) or a weight is NaN / `+inf`.
pub fn normalize_log(values: &[f64]) -> Option<Vec<f64>> {
    let total = logsumexp(values.iter().copied());
    if !total.is_finite() {
        return None;
    }
    // A -inf entry stays -inf: (-inf) - finite is -inf, never NaN.
    Some(values.iter().map(|&x| x - total).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logsumexp_handles_infinities() {
        let ninf = f64::NEG_INFINITY;
        assert_eq!(logsumexp([ninf, ninf]), ninf);
        assert_eq!(logsumexp(std::iter::empty::<f64>()), ninf);
        assert_eq!(logsumexp([ninf, 0.0]), 0.0);
        assert_eq!(logsumexp([-2000.0, ninf]), -2000.0);
        assert!((logsumexp([-2000.0, -2000.0]) - (-2000.0 + 2f64.ln())).abs() < 1e-12);
        assert!(logsumexp([f64::NAN, 0.0]).is_nan());
        assert_eq!(logsumexp([f64::INFINITY, 0.0]), f64::INFINITY);
        assert!((logsumexp([0.5f64.ln(), 0.25f64.ln()]) - 0.75f64.ln()).abs() < 1e-15);
    }

    #[test]
    fn logaddexp_matches_logsumexp() {
        for &(a, b) in &[(0.0, -1.0), (-1e3, -1e3 - 5.0), (f64::NEG_INFINITY, -3.0)] {
            assert!((logaddexp(a, b) - logsumexp([a, b])).abs() < 1e-13);
        }
        assert_eq!(
            logaddexp(f64::NEG_INFINITY, f64::NEG_INFINITY),
            f64::NEG_INFINITY
        );
    }

    #[test]
    fn softplus_and_sigmoid_are_stable() {
        assert_eq!(log1pexp(1000.0), 1000.0);
        assert!((log1pexp(-1000.0)).abs() < 1e-300);
        assert!((log1pexp(0.0) - 2f64.ln()).abs() < 1e-15);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-15);
    }

    #[test]
    fn normalize_keeps_zero_weights_zero() {
        let w = normalize_log(&[-2000.0, f64::NEG_INFINITY, -2000.0]);
        let w = w.unwrap_or_default();
        assert_eq!(w.len(), 3);
        assert!((w[0] - 0.5f64.ln()).abs() < 1e-12);
        assert_eq!(w[1], f64::NEG_INFINITY);
        assert!(normalize_log(&[f64::NEG_INFINITY]).is_none());
    }
}
