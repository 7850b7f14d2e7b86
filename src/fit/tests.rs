use super::*;
use crate::stats::logspace::log1pexp;

fn lemma5_points(c: f64, beta: f64, ns: impl Iterator<Item = u32>) -> Vec<(f64, f64)> {
    ns.map(|n| (n as f64, log1pexp(c - beta * n as f64)))
        .collect()
}

#[test]
fn lemma5_recovers_exact_parameters() -> Result<(), FitError> {
    let points = lemma5_points(9.2, 1.5, 0..=12);
    let fit = fit_kl_decay(&points, 4)?;
    let l5 = fit
        .lemma5
        .as_ref()
        .expect("Lemma 5 fit converges on an exact curve");
    assert!((l5.log_inv_alpha.mean - 9.2).abs() < 1e-6, "{l5:?}");
    assert!((l5.beta.mean - 1.5).abs() < 1e-6, "{l5:?}");
    assert!(l5.rss < 1e-20 && l5.log_inv_alpha.stderr < 1e-6);
    assert_eq!(l5.beta.n, 13);
    // The first four points are nearly linear: the intercept is c up to the softplus
    // correction log(1 + e^-(c - 3 beta)) ~ 0.009.
    let lin = &fit.linear;
    assert!((lin.log_inv_alpha.mean - 9.2).abs() < 0.01, "{lin:?}");
    assert!((lin.beta.mean - 1.5).abs() < 0.01, "{lin:?}");
    assert_eq!(lin.beta.n, 4);
    Ok(())
}

#[test]
fn lemma5_recovers_from_many_starting_shapes() -> Result<(), FitError> {
    for &(c, beta) in &[
        (1.0, 0.1),
        (30.0, 5.0),
        (18.0, 0.7),
        (0.5, 2.0),
        (-1.0, 0.3),
    ] {
        let points = lemma5_points(c, beta, 0..=20);
        let fit = fit_lemma5(&points)?;
        assert!(
            (fit.log_inv_alpha.mean - c).abs() < 1e-6,
            "{c} {beta}: {fit:?}"
        );
        assert!((fit.beta.mean - beta).abs() < 1e-6, "{c} {beta}: {fit:?}");
    }
    Ok(())
}

#[test]
fn lemma5_standard_errors_cover_noisy_truth() -> Result<(), FitError> {
    // Deterministic alternating noise of size 0.05.
    let points: Vec<(f64, f64)> = lemma5_points(9.2, 1.5, 0..=12)
        .into_iter()
        .enumerate()
        .map(|(i, (n, y))| (n, y + if i % 2 == 0 { 0.05 } else { -0.05 }))
        .collect();
    let fit = fit_lemma5(&points)?;
    let (c, b) = (&fit.log_inv_alpha, &fit.beta);
    assert!(c.stderr > 0.0 && c.stderr < 0.2 && b.stderr > 0.0 && b.stderr < 0.05);
    assert!((c.mean - 9.2).abs() < 4.0 * c.stderr, "{c}");
    assert!((b.mean - 1.5).abs() < 4.0 * b.stderr, "{b}");
    // The optimum is stationary: nudging either parameter increases the RSS.
    for (dc, db) in [(1e-4, 0.0), (-1e-4, 0.0), (0.0, 1e-5), (0.0, -1e-5)] {
        let nudged: f64 = points
            .iter()
            .map(|&(n, y)| (y - log1pexp(c.mean + dc - (b.mean + db) * n)).powi(2))
            .sum();
        assert!(nudged > fit.rss);
    }
    Ok(())
}

#[test]
fn linear_fit_by_hand() -> Result<(), FitError> {
    // y = 0.9 + 0.9 x with residuals 0.1, 0.2, -0.7, 0.4: RSS 0.7, s² = 0.35, Sxx = 5.
    let points = [(0.0, 1.0), (1.0, 2.0), (2.0, 2.0), (3.0, 4.0), (4.0, 100.0)];
    let fit = fit_kl_linear(&points, 4)?;
    assert!((fit.log_inv_alpha.mean - 0.9).abs() < 1e-14);
    assert!((fit.beta.mean + 0.9).abs() < 1e-14);
    assert!((fit.beta.stderr - 0.07f64.sqrt()).abs() < 1e-14);
    assert!((fit.log_inv_alpha.stderr - 0.245f64.sqrt()).abs() < 1e-14);
    assert!((fit.residual_sd - 0.35f64.sqrt()).abs() < 1e-14);
    // Two points leave no residuals: no standard error, so no fit (never a NaN).
    match fit_kl_linear(&points, 2) {
        Err(FitError::Degenerate(why)) => assert!(why.contains("3 or more"), "{why}"),
        other => panic!("expected Degenerate, got {other:?}"),
    }
    Ok(())
}

#[test]
fn sigma_fit() -> Result<(), FitError> {
    let points = [(0.0, 0.0), (1.0, 0.6), (2.0, 0.9), (3.0, 1.5), (4.0, 2.1)];
    let fit = fit_sigma(&points)?;
    assert!((fit.tight_slope - 0.6).abs() < 1e-15 && fit.tight_at == 1.0);
    assert!(
        points
            .iter()
            .all(|&(n, v)| v <= fit.tight_slope * n + 1e-15)
    );
    // sum(n v) = 0.6 + 1.8 + 4.5 + 8.4 = 15.3; sum(n²) = 30.
    let slope = 15.3 / 30.0;
    assert!((fit.ls_slope.mean - slope).abs() < 1e-15);
    let rss: f64 = points.iter().map(|&(n, v)| (v - slope * n).powi(2)).sum();
    assert!((fit.ls_slope.stderr - (rss / 4.0 / 30.0).sqrt()).abs() < 1e-15);
    assert!((fit.ls_sigma.mean - slope.sqrt()).abs() < 1e-15);
    assert!((fit.tight_sigma - 0.6f64.sqrt()).abs() < 1e-15);
    Ok(())
}

#[test]
fn fits_reject_bad_input() {
    let good = [(0.0, 1.0), (1.0, 0.5), (2.0, 0.2)];
    assert!(matches!(
        fit_kl_linear(&good[..1], 1),
        Err(FitError::TooFewPoints { needed: 2, .. })
    ));
    assert!(matches!(
        fit_lemma5(&good[..2]),
        Err(FitError::TooFewPoints { needed: 3, .. })
    ));
    assert!(fit_kl_linear(&good, 4).is_err());
    let bad = [(0.0, 1.0), (1.0, f64::INFINITY), (2.0, 0.2)];
    match fit_lemma5(&bad) {
        Err(e @ FitError::NonFinite { index: 1, .. }) => {
            assert!(e.to_string().contains("inf"), "{e}")
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
    assert!(fit_kl_linear(&[(1.0, f64::NAN), (2.0, 1.0)], 2).is_err());
    assert!(matches!(
        fit_kl_linear(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)], 3),
        Err(FitError::Degenerate(_))
    ));
    assert!(fit_sigma(&[(0.0, 0.5), (1.0, 1.0)]).is_err());
    assert!(fit_sigma(&[(1.0, -0.5), (2.0, 1.0)]).is_err());
    assert!(fit_sigma(&[(0.0, 0.0), (0.0, 0.0)]).is_err());
}
