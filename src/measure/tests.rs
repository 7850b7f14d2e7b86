use std::rc::Rc;

use super::*;
use crate::lm::ModelRef;
use crate::lm::analytic::{Categorical, Markov};
use crate::lm::mixture::Mixture;
use crate::seed::Stream;

fn s(text: &str) -> Unit {
    Unit::Sentence(Rc::from(text))
}

fn cat(name: &str, list: &[(&str, f64, f64)]) -> Result<ModelRef, MeasureError> {
    let entries = list
        .iter()
        .map(|(t, p, b)| (t.to_string(), *p, *b))
        .collect();
    Ok(Rc::new(Categorical::new(name, entries, false)?))
}

/// P_minus says "bad" with 0.9, P_plus with 0.1.
fn world() -> Result<(ModelRef, ModelRef), MeasureError> {
    Ok((
        cat("minus", &[("bad", 0.9, -1.0), ("good", 0.1, 1.0)])?,
        cat("plus", &[("bad", 0.1, -1.0), ("good", 0.9, 1.0)])?,
    ))
}

fn half_half(minus: &ModelRef, plus: &ModelRef) -> Result<ModelRef, MeasureError> {
    Ok(Rc::new(Mixture::new(vec![
        ("minus".into(), minus.clone(), 0.5f64.ln()),
        ("plus".into(), plus.clone(), 0.5f64.ln()),
    ])?))
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

#[test]
fn exact_kl_by_hand() -> Result<(), MeasureError> {
    let (minus, plus) = world()?;
    let mix = half_half(&minus, &plus)?;
    // Next sentence: Q(bad) = Q(good) = 0.5.
    let k1 = kl(&*minus, &*mix, &[], 1, &Method::Exact)?;
    let expected1 = 0.9 * (0.9f64 / 0.5).ln() + 0.1 * (0.1f64 / 0.5).ln();
    assert!(close(k1.value(), expected1, 1e-14), "{k1}");
    // Two sentences: Q(bb) = Q(gg) = 0.41, Q(bg) = Q(gb) = 0.09 = P(bg) = P(gb).
    let k2 = kl(&*minus, &*mix, &[], 2, &Method::Exact)?;
    let expected2 = 0.81 * (0.81f64 / 0.41).ln() + 0.01 * (0.01f64 / 0.41).ln();
    assert!(close(k2.value(), expected2, 1e-14), "{k2}");
    // Independent units: the closed form gives twice the one-step value.
    let k3 = kl(&*minus, &*plus, &[s("good")], 3, &Method::Exact)?;
    let one = 0.9 * 9f64.ln() + 0.1 * (1.0f64 / 9.0).ln();
    assert!(close(k3.value(), 3.0 * one, 1e-14), "{k3}");
    Ok(())
}

#[test]
fn infinite_kl_prints_inf_not_nan() -> Result<(), MeasureError> {
    let (minus, _) = world()?;
    let never_good = cat("never_good", &[("bad", 1.0, -1.0), ("good", 0.0, 1.0)])?;
    let k = kl(&*minus, &*never_good, &[], 1, &Method::Exact)?;
    assert_eq!(k.value(), f64::INFINITY);
    assert_eq!(k.to_string(), "inf");
    // Through the enumeration path (a mixture is not Markov) as well.
    let wrapped: ModelRef = Rc::new(Mixture::new(vec![("x".into(), never_good.clone(), 0.0)])?);
    let k = kl(&*minus, &*wrapped, &[], 2, &Method::Exact)?;
    assert_eq!(k.to_string(), "inf");
    let k = kl(
        &*minus,
        &*never_good,
        &[],
        1,
        &Method::monte_carlo(100, Stream::new(1, "kl")),
    )?;
    assert_eq!(k.value(), f64::INFINITY);
    assert!(k.to_string().starts_with("inf ± nan"), "{k}");
    // The reverse direction is finite.
    let k = kl(&*never_good, &*minus, &[], 1, &Method::Exact)?;
    assert!(close(k.value(), (1.0f64 / 0.9).ln(), 1e-15));
    let v = logratio_var(&*minus, &*never_good, &[], 2, &Method::Exact)?;
    assert_eq!(v.value(), f64::INFINITY);
    Ok(())
}

#[test]
fn variance_by_hand_and_by_enumeration() -> Result<(), MeasureError> {
    let p = cat("p", &[("a", 0.5, 0.0), ("b", 0.5, 0.0)])?;
    let q = cat("q", &[("a", 0.25, 0.0), ("b", 0.75, 0.0)])?;
    let one = 0.25 * 3f64.ln().powi(2);
    for n in 1..=4 {
        let v = logratio_var(&*p, &*q, &[], n, &Method::Exact)?;
        assert!(close(v.value(), n as f64 * one, 1e-14), "{n}: {v}");
        // The same through enumeration (a one-component mixture hides the structure).
        let wrapped: ModelRef = Rc::new(Mixture::new(vec![("p".into(), p.clone(), 0.0)])?);
        let v = logratio_var(&*wrapped, &*q, &[], n, &Method::Exact)?;
        assert!(close(v.value(), n as f64 * one, 1e-12), "{n}: {v}");
    }
    Ok(())
}

fn chain(name: &str, stay: f64) -> Result<ModelRef, MeasureError> {
    Ok(Rc::new(Markov::new(
        name,
        vec![("a".into(), 0.3), ("b".into(), 0.7)],
        vec![
            (
                "a".into(),
                vec![("a".into(), stay), ("b".into(), 1.0 - stay)],
            ),
            (
                "b".into(),
                vec![("a".into(), 0.4), ("b".into(), 0.5), ("c".into(), 0.1)],
            ),
            (
                "c".into(),
                vec![("a".into(), 1.0 - stay), ("c".into(), stay)],
            ),
        ],
        vec![("a".into(), 1.0), ("b".into(), 0.0), ("c".into(), -1.0)],
        false,
    )?))
}

#[test]
fn markov_dynamic_program_matches_enumeration() -> Result<(), MeasureError> {
    let p = chain("p", 0.8)?;
    let q = chain("q", 0.3)?;
    let wrapped: ModelRef = Rc::new(Mixture::new(vec![("p".into(), p.clone(), 0.0)])?);
    for given in [vec![], vec![s("b"), s("c")], vec![s("a"), s("b")]] {
        for n in 1..=5 {
            let dp_kl = kl(&*p, &*q, &given, n, &Method::Exact)?.value();
            let en_kl = kl(&*wrapped, &*q, &given, n, &Method::Exact)?.value();
            assert!(close(dp_kl, en_kl, 1e-12), "{n}: {dp_kl} vs {en_kl}");
            let dp_var = logratio_var(&*p, &*q, &given, n, &Method::Exact)?.value();
            let en_var = logratio_var(&*wrapped, &*q, &given, n, &Method::Exact)?.value();
            assert!(close(dp_var, en_var, 1e-12), "{n}: {dp_var} vs {en_var}");
        }
    }
    Ok(())
}

#[test]
fn enumeration_limit_asks_for_samples() -> Result<(), MeasureError> {
    let five = cat(
        "five",
        &[
            ("a", 0.2, 0.0),
            ("b", 0.2, 0.0),
            ("c", 0.2, 0.0),
            ("d", 0.2, 0.0),
            ("e", 0.2, 0.0),
        ],
    )?;
    let mix: ModelRef = Rc::new(Mixture::new(vec![("five".into(), five.clone(), 0.0)])?);
    match kl(&*mix, &*five, &[], 10, &Method::Exact) {
        Err(e @ MeasureError::NeedsSamples { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("9765625"), "{msg}");
            assert!(msg.contains("samples: N"), "{msg}");
        }
        other => panic!("expected NeedsSamples, got {other:?}"),
    }
    // Independent units need no enumeration at any length.
    let k = kl(&*five, &*five, &[], 1000, &Method::Exact)?;
    assert_eq!(k.value(), 0.0);
    Ok(())
}

#[test]
fn behavior_expectations() -> Result<(), MeasureError> {
    let (minus, plus) = world()?;
    let b = expect_scores(&*minus, &[], &Method::Exact)?;
    assert!(close(b.value(), -0.8, 1e-15));
    let mix = half_half(&minus, &plus)?;
    // After "bad": w_minus = 0.9, so P(bad) = 0.9*0.9 + 0.1*0.1 = 0.82 and B = 1 - 2*0.82.
    let b = expect_scores(&*mix, &[s("bad")], &Method::Exact)?;
    assert!(close(b.value(), 1.0 - 2.0 * 0.82, 1e-14), "{b}");
    let mc = expect_scores(
        &*mix,
        &[s("bad")],
        &Method::monte_carlo(4000, Stream::new(3, "b")),
    )?;
    let e = mc.as_estimate();
    assert!((e.mean - b.value()).abs() < 4.0 * e.stderr, "{mc}");
    // A behavior out of range is an error naming the unit.
    let err = expect(
        &*minus,
        &[],
        &mut |u: &Unit| Ok::<f64, MeasureError>(if *u == s("good") { 1.5 } else { 0.0 }),
        &Method::Exact,
    );
    match err {
        Err(e @ MeasureError::BehaviorOutOfRange { .. }) => {
            assert!(e.to_string().contains("\"good\""), "{e}");
        }
        other => panic!("expected BehaviorOutOfRange, got {other:?}"),
    }
    let err = expect(
        &*minus,
        &[],
        &mut |_: &Unit| Ok::<f64, MeasureError>(f64::NAN),
        &Method::monte_carlo(10, Stream::new(1, "b")),
    );
    assert!(matches!(err, Err(MeasureError::BehaviorOutOfRange { .. })));
    let unscored: ModelRef = Rc::new(Categorical::with_optional_scores(
        "u",
        vec![("x".into(), 1.0, None)],
        false,
    )?);
    match expect_scores(&*unscored, &[], &Method::Exact) {
        Err(e @ MeasureError::MissingBehavior { .. }) => {
            assert!(e.to_string().contains("\"x\""), "{e}");
        }
        other => panic!("expected MissingBehavior, got {other:?}"),
    }
    Ok(())
}

#[test]
fn sampling_is_per_index() -> Result<(), MeasureError> {
    let p = chain("p", 0.8)?;
    let five = sample_texts(&*p, &[], 4, 5, &Stream::new(11, "prompts"))?;
    let ten = sample_texts(&*p, &[], 4, 10, &Stream::new(11, "prompts"))?;
    assert_eq!(five[..], ten[..5]);
    assert!(ten.iter().all(|t| t.len() == 4));
    let other = sample_texts(&*p, &[], 4, 10, &Stream::new(12, "prompts"))?;
    assert_ne!(ten, other);
    Ok(())
}

/// Measuring draws a chunk at a time gives the very values of measuring them all at once.
#[test]
fn chunks_give_the_values_of_one_pass() -> Result<(), MeasureError> {
    let (minus, plus) = world()?;
    let llm = half_half(&minus, &plus)?;
    let count = super::CHUNK + 904;
    let stream = Stream::new(5, "chunks");
    let chunked = sampled_logratios(&*minus, &*llm, &[], 3, count, &stream)?;
    let all = {
        let mut rngs: Vec<_> = (0..count).map(|i| stream.sample_rng(i)).collect();
        let scored = minus.sample_scored(&[], 3, &mut rngs)?;
        super::relative::logratios_given(&*minus, &*llm, &[], &scored.texts, &scored.logprobs)?
    };
    assert_eq!(chunked.len(), count);
    assert_eq!(
        chunked.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        all.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    Ok(())
}

#[test]
fn monte_carlo_kl_and_variance_near_exact() -> Result<(), MeasureError> {
    let (minus, plus) = world()?;
    let mix = half_half(&minus, &plus)?;
    let method = Method::monte_carlo(4000, Stream::new(5, "kl"));
    for n in 1..=3 {
        let exact = kl(&*minus, &*mix, &[], n, &Method::Exact)?.value();
        let mc = kl(&*minus, &*mix, &[], n, &method)?.as_estimate();
        assert!(
            (mc.mean - exact).abs() < 4.0 * mc.stderr,
            "{n}: {mc} vs {exact}"
        );
        let exact = logratio_var(&*minus, &*mix, &[], n, &Method::Exact)?.value();
        let mc = logratio_var(&*minus, &*mix, &[], n, &method)?.as_estimate();
        assert!(
            (mc.mean - exact).abs() < 4.0 * mc.stderr,
            "{n}: {mc} vs {exact}"
        );
    }
    Ok(())
}

#[test]
fn logratio_and_argument_errors() -> Result<(), MeasureError> {
    let (minus, plus) = world()?;
    let r = logratio(&*minus, &*plus, &[s("bad"), s("bad")], &[])?;
    assert!(close(r, 2.0 * 9f64.ln(), 1e-15));
    let never_good = cat("never_good", &[("bad", 1.0, -1.0), ("good", 0.0, 1.0)])?;
    assert_eq!(
        logratio(&*never_good, &*plus, &[s("good")], &[])?,
        f64::NEG_INFINITY
    );
    assert!(logratio(&*never_good, &*never_good, &[s("good")], &[]).is_err());
    assert!(kl(&*minus, &*plus, &[], 0, &Method::Exact).is_err());
    assert!(
        logratio_var(
            &*minus,
            &*plus,
            &[],
            1,
            &Method::monte_carlo(1, Stream::new(0, "v"))
        )
        .is_err()
    );
    assert!(
        kl(
            &*minus,
            &*plus,
            &[],
            1,
            &Method::monte_carlo(0, Stream::new(0, "v"))
        )
        .is_err()
    );
    Ok(())
}

#[test]
fn variance_estimate_standard_error_matches_normal_theory() {
    // For normal data Var(s²) ≈ 2σ⁴/(k-1); with a symmetric two-point sample the fourth moment
    // equals σ⁴ and the formula gives (σ⁴ - σ⁴ (k-3)/(k-1)) / k = 2σ⁴/(k(k-1)).
    let values: Vec<f64> = (0..100)
        .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    let e = Estimate::variance_of_samples(&values);
    let s2 = 100.0 / 99.0;
    assert!(close(e.mean, s2, 1e-15));
    let m4 = 1.0;
    let expected = ((m4 - s2 * s2 * 97.0 / 99.0) / 100.0f64).max(0.0).sqrt();
    assert!(close(e.stderr, expected, 1e-12), "{e}");
}
