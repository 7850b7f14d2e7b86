//! Sampling returns the drawn texts' log-probabilities under the model that drew them
//! (`LanguageModel::sample_scored`): the same texts as `sample_many`, with the values
//! `logprob_many` computes, so a Monte Carlo KL or log-ratio variance never asks P to score
//! what it drew.
//!
//! Analytic models and their mixtures sum the same numbers in the same order: bit for bit.
//! Neural models read the log-probabilities off the distributions the draw computed (one
//! token per forward pass with the key/value cache), where scoring runs the whole text in one
//! pass: the same f32 network evaluated in another order, so the two agree to float rounding.
//! The tolerance is 1e-4 nats per text (8 tokens, about 1e-5 per token, the f32 rounding of
//! logits of magnitude ~10 through two different matmul shapes); the measured differences are
//! printed.

mod common;

use std::cell::Cell;
use std::rc::Rc;

use rand_chacha::ChaCha20Rng;

use beb::lm::analytic::Markov;
use beb::lm::mixture::Mixture;
use beb::lm::neural::{ComputeOptions, NeuralLm, NeuralModel, Sampling};
use beb::lm::{LanguageModel, ModelRef, ModelResult, Scored, Unit, UnitSpec, Vocabulary};
use beb::measure::{self, Method};
use beb::seed::{Stream, sample_rng};
use common::worlds;

/// Tolerance between a draw's log-probability and a rescoring, for neural models (see above).
const NEURAL_TOLERANCE: f64 = 1e-4;

fn rngs(count: usize, name: &str) -> Vec<ChaCha20Rng> {
    (0..count).map(|i| sample_rng(7, name, i)).collect()
}

/// Draw with `sample_scored` and with `sample_many` from the same generators: the texts must
/// be equal and the generators left in the same place; returns (largest difference to a
/// rescoring, the scored draw).
fn compare(model: &dyn LanguageModel, given: &[Unit], units: usize, count: usize) -> (f64, Scored) {
    let mut a = rngs(count, "compare");
    let mut b = rngs(count, "compare");
    let scored = model
        .sample_scored(given, units, &mut a)
        .unwrap_or_else(|e| panic!("{e}"));
    let texts = model
        .sample_many(given, units, &mut b)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(scored.texts, texts, "{}: the same texts", model.name());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.get_word_pos(), y.get_word_pos(), "generators in step");
    }
    let rescored = model
        .logprob_many(given, &texts)
        .unwrap_or_else(|e| panic!("{e}"));
    let worst = scored
        .logprobs
        .iter()
        .zip(&rescored)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    (worst, scored)
}

fn markov() -> ModelRef {
    let row = |a: f64| vec![("A.".to_string(), a), ("B.".to_string(), 1.0 - a)];
    Rc::new(
        Markov::new(
            "chain",
            row(0.3),
            vec![("A.".into(), row(0.9)), ("B.".into(), row(0.2))],
            vec![],
            false,
        )
        .unwrap_or_else(|e| panic!("{e}")),
    )
}

#[test]
fn analytic_models_and_their_mixtures_return_exactly_the_rescored_values() {
    let (minus, plus) = worlds::quickstart();
    let mix: ModelRef = Rc::new(worlds::mixture(&minus, &plus, 0.3));
    let chain = markov();
    let given = [Unit::Sentence(Rc::from("Go away."))];
    for (model, units) in [(&minus, 5), (&plus, 3), (&mix, 1), (&mix, 4), (&chain, 6)] {
        let prompt: &[Unit] = if Rc::ptr_eq(model, &chain) {
            &[]
        } else {
            &given
        };
        let (worst, scored) = compare(model.as_ref(), prompt, units, 300);
        assert_eq!(
            worst,
            0.0,
            "{} over {units} units: bit for bit",
            model.name()
        );
        assert_eq!(scored.texts.len(), 300);
    }
}

fn stories(path: &str, batch: usize) -> Option<NeuralModel> {
    let dir = common::stories()?;
    Some(common::load_run(
        &dir.join(path),
        ComputeOptions {
            batch,
            ..ComputeOptions::default()
        },
    ))
}

fn neural(path: &str, batch: usize, unit: UnitSpec) -> Option<ModelRef> {
    let model = stories(path, batch)?;
    Some(Rc::new(NeuralLm::new(path, Rc::new(model), unit)))
}

#[test]
fn neural_draws_carry_their_log_probabilities() {
    let sentence = UnitSpec::Sentence {
        until: vec![".".into()],
        max_tokens: 12,
    };
    for (batch, unit, units) in [
        (64, UnitSpec::Tokens(8), 1),
        (64, sentence.clone(), 2),
        (1, UnitSpec::Tokens(4), 2),
        (1, sentence.clone(), 1),
    ] {
        let Some(p) = neural("hf", batch, unit.clone()) else {
            return;
        };
        let given = p
            .as_tokens()
            .map(|t| t.prompt("Once upon a time"))
            .transpose()
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_default();
        let (worst, _) = compare(p.as_ref(), &given, units, 100);
        println!(
            "stories260K, batch {batch}, {units} x {}: largest |draw - rescoring| = {worst:.2e} nats",
            unit.describe()
        );
        assert!(worst <= NEURAL_TOLERANCE, "{worst}");
    }
}

#[test]
fn neural_mixtures_carry_their_log_probabilities() {
    let (Some(f32), Some(q8)) = (
        neural("hf", 64, UnitSpec::Tokens(6)),
        neural("stories260K-q8_0.gguf", 64, UnitSpec::Tokens(6)),
    ) else {
        return;
    };
    let mix: ModelRef = Rc::new(
        Mixture::new(vec![
            ("f32".into(), f32, 0.4f64.ln()),
            ("q8".into(), q8, 0.6f64.ln()),
        ])
        .unwrap_or_else(|e| panic!("{e}")),
    );
    for units in [1, 2] {
        let (worst, _) = compare(mix.as_ref(), &[], units, 80);
        println!("mixture of stories260K f32 and q8_0, {units} x tokens(6): {worst:.2e} nats");
        assert!(worst <= NEURAL_TOLERANCE, "{worst}");
    }
}

/// With temperature, top-k or top-p the draw is not from the model, but the log-probability
/// returned is the model's own (what `score` computes), not the transformed distribution's;
/// a view that samples that way refuses to score, as its `logprob` does.
#[test]
fn tempered_draws_carry_the_models_own_log_probabilities() {
    let Some(model) = stories("hf", 64) else {
        return;
    };
    let tempered = Sampling {
        temperature: 0.6,
        top_k: Some(20),
        top_p: Some(0.9),
    };
    let ctx = vec![1u32];
    let mut a = rngs(50, "tempered");
    let rows = model
        .sample_scored(&ctx, 2, &UnitSpec::Tokens(5), &tempered, &mut a, false)
        .unwrap_or_else(|e| panic!("{e}"));
    let texts: Vec<Vec<u32>> = rows.iter().map(|r| r.units.concat()).collect();
    let scores = model.score(&ctx, &texts).unwrap_or_else(|e| panic!("{e}"));
    let mut worst: f64 = 0.0;
    let mut transformed_gap: f64 = 0.0;
    for (row, s) in rows.iter().zip(&scores) {
        worst = worst.max((row.logprob - s).abs());
        transformed_gap = transformed_gap.max(s.abs());
    }
    println!("tempered draws: largest |draw - model score| = {worst:.2e}");
    assert!(worst <= NEURAL_TOLERANCE, "{worst}");
    assert!(
        transformed_gap > 1.0,
        "the texts have non-trivial log-probabilities"
    );
    let model = Rc::new(model);
    let view = NeuralLm::new("m", model, UnitSpec::Tokens(5))
        .view(None, Some(&tempered))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("a neural view"));
    let err = view.sample_scored(&[], 1, &mut rngs(2, "x"));
    assert!(
        matches!(&err, Err(e) if e.to_string().contains("temperature")),
        "{err:?}"
    );
}

/// A model that counts the tokens it is asked to score; `forward` says whether it passes
/// `sample_scored` on to the model (else the default draws, then scores).
#[derive(Debug)]
struct Counting {
    inner: ModelRef,
    forward: bool,
    scored_tokens: Cell<usize>,
}

impl Counting {
    fn count(&self, texts: &[Vec<Unit>]) {
        let tokens: usize = texts
            .iter()
            .flatten()
            .map(|u| match u {
                Unit::Tokens(run) => run.ids.len(),
                Unit::Sentence(_) => 1,
            })
            .sum();
        self.scored_tokens.set(self.scored_tokens.get() + tokens);
    }
}

impl LanguageModel for Counting {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn vocabulary(&self) -> Vocabulary {
        self.inner.vocabulary()
    }
    fn logprob_next(&self, context: &[Unit], unit: &Unit) -> ModelResult<f64> {
        self.count(&[vec![unit.clone()]]);
        self.inner.logprob_next(context, unit)
    }
    fn support(&self, context: &[Unit]) -> ModelResult<Option<Vec<(Unit, f64)>>> {
        self.inner.support(context)
    }
    fn sample_next(&self, context: &[Unit], rng: &mut dyn rand::RngCore) -> ModelResult<Unit> {
        self.inner.sample_next(context, rng)
    }
    fn behavior(&self, unit: &Unit) -> Option<f64> {
        self.inner.behavior(unit)
    }
    fn sample_many(
        &self,
        given: &[Unit],
        units: usize,
        rngs: &mut [ChaCha20Rng],
    ) -> ModelResult<Vec<Vec<Unit>>> {
        self.inner.sample_many(given, units, rngs)
    }
    fn sample_scored(
        &self,
        given: &[Unit],
        units: usize,
        rngs: &mut [ChaCha20Rng],
    ) -> ModelResult<Scored> {
        if self.forward {
            self.inner.sample_scored(given, units, rngs)
        } else {
            let texts = self.sample_many(given, units, rngs)?;
            let logprobs = self.logprob_many(given, &texts)?;
            Ok(Scored { texts, logprobs })
        }
    }
    fn logprob_many(&self, given: &[Unit], texts: &[Vec<Unit>]) -> ModelResult<Vec<f64>> {
        self.count(texts);
        self.inner.logprob_many(given, texts)
    }
    fn logprob(&self, given: &[Unit], text: &[Unit]) -> ModelResult<f64> {
        self.count(&[text.to_vec()]);
        self.inner.logprob(given, text)
    }
    fn cache_identity(&self) -> Option<String> {
        self.inner.cache_identity()
    }
}

/// The saving, counted: a Monte Carlo KL over 200 texts of 8 tokens asks P to score 1,600
/// tokens when it must draw, then score; none when the draw gives them. The estimates agree
/// to the tolerance.
#[test]
fn kl_and_logratio_var_do_not_rescore_what_p_drew() {
    let (Some(p), Some(q)) = (
        neural("hf", 64, UnitSpec::Tokens(8)),
        neural("stories260K-q8_0.gguf", 64, UnitSpec::Tokens(8)),
    ) else {
        return;
    };
    let method = Method::monte_carlo(200, Stream::new(3, "saving"));
    let mut values = Vec::new();
    for forward in [false, true] {
        let counted = Counting {
            inner: p.clone(),
            forward,
            scored_tokens: Cell::new(0),
        };
        let kl =
            measure::kl(&counted, q.as_ref(), &[], 1, &method).unwrap_or_else(|e| panic!("{e}"));
        let var = measure::logratio_var(&counted, q.as_ref(), &[], 1, &method)
            .unwrap_or_else(|e| panic!("{e}"));
        println!(
            "P scored {} tokens for kl and logratio_var ({}): kl {kl}, var {var}",
            counted.scored_tokens.get(),
            if forward {
                "log-probs from the draw"
            } else {
                "draw, then score"
            }
        );
        let expected = if forward { 0 } else { 2 * 200 * 8 };
        assert_eq!(counted.scored_tokens.get(), expected);
        values.push((kl.value(), var.value()));
    }
    let (a, b) = (values[0], values[1]);
    // Each log-ratio moves by at most the tolerance, so their mean does too.
    assert!((a.0 - b.0).abs() <= NEURAL_TOLERANCE, "{a:?} {b:?}");
    assert!(
        (a.1 - b.1).abs() <= 1e-3 * a.1.abs().max(1e-6),
        "{a:?} {b:?}"
    );
}

/// Through the run cache: a second run reads the draws and their log-probabilities back and
/// prints the same bytes as the first, and as a run without the cache.
#[test]
fn cached_draws_keep_their_log_probabilities() {
    let Some(dir) = common::stories() else {
        return;
    };
    let work = common::scratch("sampled-logprobs-cache");
    let script = format!(
        "let p = load(\"{0}/hf\")\nlet q = load(\"{0}/stories260K-q8_0.gguf\")\nprint kl(p, q, unit: tokens(8), samples: 100)\nprint logratio_var(p, q, 1, unit: tokens(8), samples: 100)\n",
        dir.display()
    );
    common::write(&work.join("s.beb"), &script);
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--seed", "5"];
        args.extend_from_slice(extra);
        args.push("s.beb");
        let out = common::beb(&args).current_dir(&work).run();
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        out.stdout
    };
    let first = run(&[]);
    let second = run(&[]);
    let uncached = run(&["--no-cache"]);
    assert_eq!(first, second);
    assert_eq!(first, uncached);
    assert!(first.contains("n=100"), "{first}");
    let _ = std::fs::remove_dir_all(&work);
}
