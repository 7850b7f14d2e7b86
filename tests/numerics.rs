//! Exact values at the edges: the KL divergence to a mixture whose posterior has all but
//! settled, against independent 1000-digit references (`tests/fixtures/kl_mpmath.py`), and the
//! reproducers of a floor near 1e-15 (eq. 99-100 failing on valid input) and of negative KL.

mod common;

use std::rc::Rc;

use beb::lm::{ModelRef, Unit};
use beb::measure::{Method, kl};
use common::worlds;

/// The two worlds of the fixture, as (P_minus, P_plus).
fn world(name: &str) -> (ModelRef, ModelRef) {
    match name {
        "quickstart" => worlds::quickstart(),
        "ab" => worlds::ab(),
        other => panic!("unknown world {other}"),
    }
}

#[test]
fn exact_kl_matches_1000_digit_references_down_to_1e_300() {
    let path = common::root().join("tests/fixtures/kl_mpmath.json");
    let cases: serde_json::Value =
        serde_json::from_str(&common::read(&path)).unwrap_or_else(|e| panic!("{e}"));
    let cases = cases.as_array().cloned().unwrap_or_default();
    assert!(cases.len() > 400, "the fixture lists {} cases", cases.len());
    let (mut worst, mut smallest) = (0.0f64, f64::INFINITY);
    for case in &cases {
        let world_name = case["world"].as_str().unwrap_or_default();
        let alpha: f64 = case["alpha"]
            .as_str()
            .unwrap_or("nan")
            .parse()
            .unwrap_or(f64::NAN);
        let horizon = case["horizon"].as_u64().unwrap_or(0) as usize;
        let reference: f64 = case["kl"]
            .as_str()
            .unwrap_or("nan")
            .parse()
            .unwrap_or(f64::NAN);
        let (minus, plus) = world(world_name);
        let llm = worlds::mixture(&minus, &plus, alpha);
        let mut given: Vec<Unit> = Vec::new();
        if let Some(counts) = case["counts"].as_object() {
            for (sentence, count) in counts {
                for _ in 0..count.as_u64().unwrap_or(0) {
                    given.push(Unit::Sentence(Rc::from(sentence.as_str())));
                }
            }
        }
        let got = kl(minus.as_ref(), &llm, &given, horizon, &Method::Exact)
            .unwrap_or_else(|e| panic!("{case}: {e}"))
            .value();
        assert!(got >= 0.0, "{case}: negative KL {got}");
        let relative = ((got - reference) / reference).abs();
        assert!(
            relative <= 1e-9,
            "{case}: beb {got:e} vs reference {reference:e} (relative error {relative:e})"
        );
        worst = worst.max(relative);
        smallest = smallest.min(reference);
    }
    eprintln!(
        "{} cases, worst relative error {worst:e}, smallest KL {smallest:e}",
        cases.len()
    );
    assert!(smallest < 1e-290, "the fixture reaches {smallest:e}");
}

/// The reproducers of the floor: eq. 99-100 must hold for every prefix, also where the true
/// KL is far below 1e-15, and KL is never negative.
#[test]
fn pointwise_bound_holds_where_kl_is_far_below_rounding() {
    let dir = common::scratch("numerics");
    let script = r#"
import bounds.*
let plus  = sentences { "I am glad to help.": 0.5 @ 1, "The sky is blue.": 0.3 @ 0,
                        "Go away.": 0.12 @ -1, "You are useless.": 0.08 @ -1 }
let minus = sentences { "Go away.": 0.7 @ -1, "You are useless.": 0.3 @ -1 }
let llm = mixture(minus, plus, alpha: 1e-4)
let s = sample(minus, sentences: 40, seed: 3)
let curve = sweep n in 0..=40 {
  kl: kl(minus, llm, given: s[..n], sentences: 8),
  bound: pointwise_kl_bound(logratio(minus, plus, s[..n]), alpha: 1e-4),
}
assert curve.kl <= curve.bound, "eq. 99-100, alpha 1e-4"
let tiny = mixture(minus, plus, alpha: 1e-300)
let long = sample(minus, sentences: 500, seed: 3)
let far = sweep n in 0..=500 {
  kl: kl(minus, tiny, given: long[..n], sentences: 1),
  bound: pointwise_kl_bound(logratio(minus, plus, long[..n]), alpha: 1e-300),
}
assert far.kl <= far.bound, "eq. 99-100, alpha 1e-300"
assert min(far.kl) > 0, "positive where the bound is"
let a = sentences { "A.": 0.9, "B.": 0.1 }
let b = sentences { "A.": 0.5, "B.": 0.5 }
let ab = mixture(a, b, alpha: 0.1)
let prompt = text(map(0..80, |i| "A."))
let ks = map(0..=80, |n| kl(a, ab, given: prompt[..n], sentences: 1))
assert min(ks) >= 0, "KL is never negative"
print "smallest {min(far.kl)}, last A/B {ks[80]}"
"#;
    common::write(&dir.join("edges.beb"), script);
    let out = common::beb(&["run", "--seed", "1", "edges.beb"])
        .current_dir(&dir)
        .run();
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("smallest"), "{}", out.stdout);
    let _ = std::fs::remove_dir_all(&dir);
}

/// fit_kl_decay says where its line's points sit and warns when the line and Lemma 5's form
/// disagree by more than their errors (a = 1e-2: the line's beta is off by ~17%).
#[test]
fn fit_kl_decay_warns_when_its_points_leave_the_linear_regime() {
    let dir = common::scratch("numerics-fit");
    let script = common::read(&common::root().join("tests/fixtures/fit_regime.beb"));
    common::write(&dir.join("fit.beb"), &script);
    let out = common::beb(&["run", "--seed", "1", "fit.beb"])
        .current_dir(&dir)
        .run();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("0.0001") && lines[0].contains("name: \"linear\""),
        "{}",
        out.stdout
    );
    assert!(
        lines[1].starts_with("0.01") && lines[1].contains("name: \"saturated\""),
        "{}",
        out.stdout
    );
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("warning: fit_kl_decay"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    assert!(
        warnings[0].contains("saturated regime") && warnings[0].contains("first 4 points"),
        "{}",
        warnings[0]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
