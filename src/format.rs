//! How numbers are written: shortest round-trip digits, scientific notation for very large
//! or very small magnitudes, so output is exact, readable and identical across runs.

/// Format a number the way beb prints it everywhere.
pub fn number(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return "0".into();
    }
    let magnitude = x.abs();
    if (1e-4..1e16).contains(&magnitude) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// Format a number rounded to `digits` significant digits (for tables meant for reading).
pub fn significant(x: f64, digits: usize) -> String {
    if !x.is_finite() || x == 0.0 {
        return number(x);
    }
    let digits = digits.max(1);
    let magnitude = x.abs();
    if (1e-4..1e16).contains(&magnitude) {
        let exponent = magnitude.log10().floor() as i32;
        let decimals = (digits as i32 - 1 - exponent).max(0) as usize;
        let text = format!("{x:.decimals$}");
        // Trailing zeros carry no information: 1.50000 prints as 1.5.
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    } else {
        // 1.50000e-6 reads as 1.5e-6: trailing zeros of the mantissa carry no information.
        let text = format!("{x:.prec$e}", prec = digits - 1);
        match text.split_once('e') {
            Some((mantissa, exponent)) if mantissa.contains('.') => format!(
                "{}e{exponent}",
                mantissa.trim_end_matches('0').trim_end_matches('.')
            ),
            _ => text,
        }
    }
}

/// An estimate as `mean ± stderr`, the mean rounded to the standard error's second
/// significant digit (the digits beyond it are noise).
pub fn estimate(mean: f64, stderr: f64) -> String {
    if !mean.is_finite() || !stderr.is_finite() || stderr <= 0.0 {
        return format!("{} ± {}", significant(mean, 6), number(stderr));
    }
    let decimals = 1 - stderr.log10().floor() as i32;
    if (0..=8).contains(&decimals) && mean.abs() < 1e12 {
        let d = decimals as usize;
        format!("{mean:.d$} ± {stderr:.d$}")
    } else if decimals > 8 && (1e-4..1e12).contains(&mean.abs()) {
        // A near-exact estimate of an ordinary number: the mean in full, the tiny error apart.
        let d = (decimals as usize).min(15);
        format!("{mean:.d$} ± {stderr:.1e}")
    } else {
        let digits = ((mean.abs() / stderr).log10().floor().max(0.0) as usize + 1).min(15);
        format!("{mean:.digits$e} ± {stderr:.1e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_compactly() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.1), "0.1");
        assert_eq!(number(1e-300), "1e-300");
        assert_eq!(number(f64::INFINITY), "inf");
        assert_eq!(estimate(9.188161, 0.014678), "9.188 ± 0.015");
        assert_eq!(estimate(23.14, 1.23), "23.1 ± 1.2");
        assert_eq!(estimate(4.54e-5, 1.32e-5), "0.000045 ± 0.000013");
        assert_eq!(estimate(4.54e-12, 1.32e-12), "4.5e-12 ± 1.3e-12");
        assert_eq!(
            estimate(74.9999999999989, 1.1e-12),
            "74.9999999999989 ± 1.1e-12"
        );
        assert_eq!(significant(1.23456, 3), "1.23");
        assert_eq!(significant(1234.5, 2), "1234");
        assert_eq!(significant(1.0, 6), "1");
        assert_eq!(significant(0.5, 6), "0.5");
        assert_eq!(significant(1e-6, 6), "1e-6");
        assert_eq!(significant(1.5e-7, 6), "1.5e-7");
        assert_eq!(significant(9.09122e-5, 6), "9.09122e-5");
    }
}
