//! The calibration suite: every interval beb prints covers the true value as often as it
//! says, and a one-sided `assert ... at 95%` refutes a true claim 5% of the time. Analytic
//! models give exact answers, so each interval is checked over many seeds against them and
//! the coverage must fall within binomial limits (three standard deviations) of the nominal
//! level. The figures are printed (`--nocapture`) and quoted in docs/statistics.md.

mod common;

use std::rc::Rc;

use beb::lm::{LanguageModel, ModelRef, Unit};
use beb::measure::{self, Method};
use beb::seed::Stream;
use beb::stats::Estimate;
use common::worlds;

/// The README's world: (P_minus, P_plus, P = mixture at alpha 1e-4).
fn quickstart() -> (ModelRef, ModelRef, ModelRef) {
    let (minus, plus) = worlds::quickstart();
    let llm: ModelRef = Rc::new(worlds::mixture(&minus, &plus, 1e-4));
    (minus, plus, llm)
}

fn monte_carlo(seed: u64, samples: usize) -> Method {
    Method::monte_carlo(samples, Stream::new(seed, "calibration"))
}

fn estimate(m: measure::Measured) -> Estimate {
    m.as_estimate()
}

/// The fraction of `runs` seeds whose 95% interval covers `truth`.
fn coverage(runs: u64, truth: f64, draw: impl Fn(u64) -> Estimate) -> f64 {
    let hits = (0..runs)
        .filter(|&seed| {
            let (lo, hi) = draw(seed).interval(0.95);
            lo <= truth && truth <= hi
        })
        .count();
    hits as f64 / runs as f64
}

/// Three binomial standard deviations around `nominal` for `runs` trials.
fn within_binomial(observed: f64, nominal: f64, runs: u64) -> bool {
    (observed - nominal).abs() <= 3.0 * (nominal * (1.0 - nominal) / runs as f64).sqrt()
}

fn check_coverage(what: &str, observed: f64, runs: u64) {
    println!(
        "coverage of {what}: {:.1}% over {runs} seeds",
        100.0 * observed
    );
    assert!(
        within_binomial(observed, 0.95, runs),
        "{what}: 95% intervals covered {:.1}% of {runs} seeds",
        100.0 * observed
    );
}

fn exact(m: Result<measure::Measured, measure::MeasureError>) -> f64 {
    m.unwrap_or_else(|e| panic!("{e}")).value()
}

const RUNS: u64 = 1000;

#[test]
fn kl_and_expect_intervals_cover() {
    let (minus, _, llm) = quickstart();
    let truth = exact(measure::kl(&*minus, &*llm, &[], 8, &Method::Exact));
    let kl = coverage(RUNS, truth, |seed| {
        estimate(
            measure::kl(&*minus, &*llm, &[], 8, &monte_carlo(seed, 200))
                .unwrap_or_else(|e| panic!("{e}")),
        )
    });
    check_coverage("kl(minus, llm, sentences: 8, samples: 200)", kl, RUNS);

    let given: Vec<Unit> = (0..3)
        .map(|_| Unit::Sentence(Rc::from("Go away.")))
        .collect();
    let truth = exact(measure::expect_scores(&*llm, &given, &Method::Exact));
    let expect = coverage(RUNS, truth, |seed| {
        estimate(
            measure::expect_scores(&*llm, &given, &monte_carlo(seed, 200))
                .unwrap_or_else(|e| panic!("{e}")),
        )
    });
    check_coverage(
        "expect(llm, given: 3 sentences, samples: 200)",
        expect,
        RUNS,
    );
}

#[test]
fn logratio_variance_intervals_cover() {
    let (minus, plus, llm) = quickstart();
    let (a, b) = worlds::ab();
    // The first setup is the hard one: a log-ratio with kurtosis 12 whose rarest values
    // (prompts with at most 2 of 8 "Go away.", 1% of draws) carry 29% of its variance and are
    // missing from 10% of samples of 200, where no interval built from the sample can know
    // them. The delta method covered 85.6% there; calibrated Bonett reaches 92.2%, and the
    // floor below is that figure's binomial lower limit, not the nominal level's.
    let setups: [(&str, &dyn LanguageModel, &dyn LanguageModel, usize, f64); 3] = [
        (
            "logratio_var(minus, llm, sentences: 8, samples: 200)",
            &*minus,
            &*llm,
            8,
            0.90,
        ),
        (
            "logratio_var(a, b, sentences: 1, samples: 200)",
            &*a,
            &*b,
            1,
            0.0,
        ),
        (
            "logratio_var(minus, plus, sentences: 8, samples: 200)",
            &*minus,
            &*plus,
            8,
            0.0,
        ),
    ];
    for (what, p, q, units, floor) in setups {
        let truth = exact(measure::logratio_var(p, q, &[], units, &Method::Exact));
        let observed = coverage(RUNS, truth, |seed| {
            estimate(
                measure::logratio_var(p, q, &[], units, &monte_carlo(seed, 200))
                    .unwrap_or_else(|e| panic!("{e}")),
            )
        });
        if floor > 0.0 {
            println!(
                "coverage of {what}: {:.1}% over {RUNS} seeds",
                100.0 * observed
            );
            assert!(observed >= floor, "{what}: {observed}");
        } else {
            check_coverage(what, observed, RUNS);
        }
    }
}

/// Why the hard setup above stays near 92% and why no interval built from one sample of 200
/// can do better without over-covering elsewhere. The log-ratio of 8 sentences from P_minus
/// depends only on k, the number of "Go away." among them (k ~ Binomial(8, 0.7)); the rare
/// values k <= 2 are missing from about 10% of samples. Drawn directly from that law, the
/// interval covers almost every sample that holds a rare value and few of those that hold
/// none. Those samples are, draw for draw, samples of the law conditioned on k >= 3, whose
/// variance is 29% smaller, and there the same interval covers its own truth at the nominal
/// level: to cover the full law's variance from them as well, an interval would have to be
/// far too wide on a legitimate world that looks exactly the same. Over 10,000 samples: 99.4%
/// covered with a rare value, 32.1% without, 92.6% overall; 96.2% in the conditioned world.
#[test]
fn variance_intervals_miss_only_where_the_sample_lacks_the_rare_values() {
    use rand::{Rng, SeedableRng};
    let (minus, _, llm) = quickstart();
    let sentence = |text: &str| Unit::Sentence(Rc::from(text));
    // values[k]: log-ratio of a text with k "Go away." and 8 - k "You are useless."
    // (sentences are independent, so their order does not matter).
    let values: Vec<f64> = (0..=8)
        .map(|k| {
            let text: Vec<Unit> = (0..8)
                .map(|i| {
                    sentence(if i < k {
                        "Go away."
                    } else {
                        "You are useless."
                    })
                })
                .collect();
            measure::logratio(&*minus, &*llm, &text, &[]).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let binomial = |k: usize| {
        let choose = (0..k).fold(1.0, |c, i| c * (8 - i) as f64 / (i + 1) as f64);
        choose * 0.7f64.powi(k as i32) * 0.3f64.powi(8 - k as i32)
    };
    let full: Vec<f64> = (0..=8).map(binomial).collect();
    let conditioned: Vec<f64> = (0..=8)
        .map(|k| if k >= 3 { binomial(k) } else { 0.0 })
        .collect();
    let variance = |law: &[f64]| {
        let total: f64 = law.iter().sum();
        let mean: f64 = law.iter().zip(&values).map(|(p, v)| p * v).sum::<f64>() / total;
        law.iter()
            .zip(&values)
            .map(|(p, v)| p * (v - mean).powi(2))
            .sum::<f64>()
            / total
    };
    // One sample of 200 draws of k from `law` (inverse CDF), as (values, holds a rare value).
    let draw = |law: &[f64], seed: u64| {
        let total: f64 = law.iter().sum();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        let mut rare = false;
        let sample: Vec<f64> = (0..200)
            .map(|_| {
                let mut u = rng.random::<f64>() * total;
                let k = law
                    .iter()
                    .position(|&p| {
                        u -= p;
                        u < 0.0
                    })
                    .unwrap_or(8);
                rare |= k <= 2;
                values[k]
            })
            .collect();
        (sample, rare)
    };
    let covers = |sample: &[f64], truth: f64| {
        let (lo, hi) = Estimate::variance_of_samples(sample).interval(0.95);
        lo <= truth && truth <= hi
    };
    let (truth, truth_without) = (variance(&full), variance(&conditioned));
    let (mut with_rare, mut with_rare_hits, mut without_hits) = (0u64, 0u64, 0u64);
    for seed in 0..RUNS {
        let (sample, rare) = draw(&full, seed);
        let hit = covers(&sample, truth) as u64;
        if rare {
            with_rare += 1;
            with_rare_hits += hit;
        } else {
            without_hits += hit;
        }
    }
    let without = RUNS - with_rare;
    println!(
        "full law: {with_rare} samples with a rare value, {:.1}% covered; {without} without, \
         {:.1}% covered; overall {:.1}%",
        100.0 * with_rare_hits as f64 / with_rare as f64,
        100.0 * without_hits as f64 / without.max(1) as f64,
        100.0 * (with_rare_hits + without_hits) as f64 / RUNS as f64,
    );
    assert!(with_rare_hits as f64 >= 0.97 * with_rare as f64);
    assert!((without_hits as f64) < 0.7 * without as f64);
    println!(
        "variance without the rare values: {:.3} of the full law's",
        truth_without / truth
    );
    let conditioned_coverage = (0..RUNS)
        .filter(|&seed| covers(&draw(&conditioned, RUNS + seed).0, truth_without))
        .count() as f64
        / RUNS as f64;
    check_coverage(
        "the variance of the law conditioned on k >= 3",
        conditioned_coverage,
        RUNS,
    );
}

/// `assert kl(...) <= truth at 95%` with the truth exactly on the bound: refuted in 5% of
/// runs (binomial limits), where the old z-test refuted 7-9%. Power is printed next to the
/// z-test's at a bound one and two standard errors below the truth.
#[test]
fn one_sided_asserts_have_their_stated_size() {
    let (minus, _, llm) = quickstart();
    let truth = exact(measure::kl(&*minus, &*llm, &[], 8, &Method::Exact));
    let runs = 2000u64;
    for samples in [200usize, 50] {
        let draws: Vec<Estimate> = (0..runs)
            .map(|seed| {
                estimate(
                    measure::kl(&*minus, &*llm, &[], 8, &monte_carlo(seed, samples))
                        .unwrap_or_else(|e| panic!("{e}")),
                )
            })
            .collect();
        // The estimator's true standard error, for the power rows.
        let sd = (exact(measure::logratio_var(
            &*minus,
            &*llm,
            &[],
            8,
            &Method::Exact,
        )) / samples as f64)
            .sqrt();
        let rate = |bound: f64, normal: bool| {
            let refuted = draws
                .iter()
                .filter(|e| {
                    let e = if normal { e.normal() } else { **e };
                    !e.at_most(bound, 0.95).is_ok_and(|v| v.holds)
                })
                .count();
            refuted as f64 / runs as f64
        };
        let size = rate(truth, false);
        println!(
            "assert kl(minus, llm, sentences: 8, samples: {samples}) <= truth at 95%: refuted {:.2}% (z-test {:.2}%); power at truth - 1 se: {:.1}% (z-test {:.1}%), at truth - 2 se: {:.1}% (z-test {:.1}%)",
            100.0 * size,
            100.0 * rate(truth, true),
            100.0 * rate(truth - sd, false),
            100.0 * rate(truth - sd, true),
            100.0 * rate(truth - 2.0 * sd, false),
            100.0 * rate(truth - 2.0 * sd, true),
        );
        assert!(
            within_binomial(size, 0.05, runs),
            "size {:.2}% with {samples} samples over {runs} runs",
            100.0 * size
        );
    }
}

/// `kl(..., given: prompts, samples: N)` over prompts drawn from P_minus: its default error
/// bar (across prompts) covers the expectation over prompts, E_s KL(P_minus(.|s) || P(.|s)),
/// in 95% of seeds; the conditional one (`error: "given_prompts"`) does not, and is printed.
#[test]
fn across_prompt_error_bars_cover_the_expectation_over_prompts() {
    let dir = common::scratch("calibration");
    let script = common::read(&common::root().join("tests/fixtures/across_prompts.beb"));
    common::write(&dir.join("across.beb"), &script);
    let out = common::beb(&["run", "--seed", "1", "across.beb"])
        .current_dir(&dir)
        .run();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    println!("{}", out.stdout.trim());
    let percent = |label: &str| -> f64 {
        let tail = out.stdout.split(label).nth(1).unwrap_or_default();
        let number: String = tail
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        number.parse().unwrap_or(f64::NAN)
    };
    let across = percent("across-prompt intervals cover") / 100.0;
    let given = percent("conditional ones") / 100.0;
    assert!(within_binomial(across, 0.95, 1000), "{}", out.stdout);
    assert!(
        given < 0.5,
        "the conditional error bar is not for prompts at random: {given}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same check on a real model: Monte Carlo KL between stories260K (f32) and its q8_0 copy
/// over the next token, against the exact value over the vocabulary. The per-token log-ratio
/// of two such close models is very heavy-tailed (sd 8e-3 around a KL of 3e-5), so small
/// samples under-cover (71% at 100 samples, 92.7% at 1000, printed for the docs); at 5000 the
/// intervals hold.
#[test]
fn neural_kl_intervals_cover_with_enough_samples() {
    let Some(_) = common::stories() else {
        return;
    };
    let dir = common::scratch("calibration-neural");
    let script = common::read(&common::root().join("tests/fixtures/neural_kl_coverage.beb"))
        .replace("$BEB_SHARED", &common::shared_root().display().to_string());
    common::write(&dir.join("neural.beb"), &script);
    let out = common::beb(&[
        "run",
        "--seed",
        "1",
        "--no-cache",
        "neural.beb",
        "--set",
        "n=5000",
    ])
    .current_dir(&dir)
    .run();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    println!("{}", out.stdout.trim());
    let covered: f64 = out
        .stdout
        .split("intervals cover ")
        .nth(1)
        .and_then(|t| t.split('%').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or(f64::NAN);
    assert!(
        within_binomial(covered / 100.0, 0.95, 1000),
        "{}",
        out.stdout
    );
    let _ = std::fs::remove_dir_all(&dir);
}
