//! Classifier and probe checks (the paper's tables 1 and 2): last-token hidden states agree
//! with the LM head's next-token distribution in every format and with a LoRA adapter; the
//! cross-validated linear probe finds separable data, not noise, and is deterministic; the
//! likelihood-ratio classifier is exact on analytic models and matches direct scoring on
//! neural ones; and a probe on stories260K's hidden states of persona statements runs.
//!
//! Tests that need the shared model and data skip with a message when they are missing, and
//! fail when `CI` is set.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{load_run, max_diff, max_diff32, run_in_process, shared};
use std::time::Instant;

use beb::fit::probe::{ProbeMethod, ProbeOptions, cross_validate, stratified_folds};
use beb::lm::neural::lora::{self, Adapter, LowRank};
use beb::lm::neural::{ComputeOptions, NeuralModel, train};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// A model run `batch` texts per pass.
fn load(path: &Path, batch: usize) -> NeuralModel {
    let run = ComputeOptions {
        batch,
        ..ComputeOptions::default()
    };
    load_run(path, run)
}

const TEXTS: &[&str] = &[
    "Once upon a time, there was a little girl named Lily.",
    "I like to help my friends",
    "The dog ran",
    "It is important to treat other people with kindness and respect, even when they are rude to you.",
    "Tom",
];

fn ids(model: &NeuralModel) -> Vec<Vec<u32>> {
    TEXTS
        .iter()
        .map(|t| model.encode(t).expect("encode"))
        .collect()
}

/// A tensor of the HF checkpoint as rows of f64.
fn rows(tensors: &std::collections::HashMap<String, Tensor>, name: &str) -> Vec<Vec<f64>> {
    let t = tensors
        .get(name)
        .unwrap_or_else(|| panic!("no tensor {name}"));
    let t = t.to_dtype(candle_core::DType::F64).expect("f64");
    match t.dims().len() {
        1 => vec![t.to_vec1().expect("vec1")],
        _ => t.to_vec2().expect("vec2"),
    }
}

/// `head · h`, then log-softmax.
fn head_logprobs(head: &[Vec<f64>], h: &[f32]) -> Vec<f64> {
    let logits: Vec<f64> = head
        .iter()
        .map(|w| w.iter().zip(h).map(|(a, b)| a * f64::from(*b)).sum())
        .collect();
    common::log_softmax(&logits)
}

/// The next-token log-probabilities the model's own scoring path gives after `[BOS] ++ ids`.
fn next_logprobs(model: &NeuralModel, ids: &[u32]) -> Vec<f64> {
    let mut ctx = vec![model.bos().expect("bos")];
    ctx.extend_from_slice(ids);
    model.next_logprobs(&ctx).expect("next").to_vec()
}

#[test]
fn final_hidden_state_times_the_lm_head_gives_the_next_token_logprobs() {
    let Some(dir) = shared("models/stories260K") else {
        return;
    };
    let hf = load(&dir.join("hf"), 64);
    let c = hf.config().clone();
    let tensors = candle_core::safetensors::load(dir.join("hf/model.safetensors"), &Device::Cpu)
        .expect("safetensors");
    // stories260K ties its head to the embeddings.
    let head = rows(&tensors, "model.embed_tokens.weight");
    let norm = rows(&tensors, "model.norm.weight").remove(0);
    let texts = ids(&hf);
    let last = hf.hidden_states(&texts, None).expect("hidden");
    assert_eq!(last.len(), texts.len());
    for (h, t) in last.iter().zip(&texts) {
        assert_eq!(h.len(), c.hidden);
        let d = max_diff(&head_logprobs(&head, h), &next_logprobs(&hf, t));
        assert!(d < 1e-4, "final hidden state x head vs logprobs: {d}");
    }
    // Layer 0 is the last token's embedding; layer L after the final RMS norm is layer -1.
    let embeddings = hf.hidden_states(&texts, Some(0)).expect("layer 0");
    for (h, t) in embeddings.iter().zip(&texts) {
        let token = *t.last().expect("non-empty") as usize;
        let e: Vec<f32> = head[token].iter().map(|&x| x as f32).collect();
        assert_eq!(h, &e);
    }
    let raw = hf.hidden_states(&texts, Some(c.layers)).expect("layer L");
    for (r, h) in raw.iter().zip(&last) {
        let ms = r.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / r.len() as f64;
        let inv = 1.0 / (ms + c.rms_eps).sqrt();
        let normed: Vec<f32> = r
            .iter()
            .zip(&norm)
            .map(|(x, w)| (f64::from(*x) * inv * w) as f32)
            .collect();
        assert!(max_diff32(&normed, h) < 1e-5);
    }
    // Middle layers differ from both ends; a layer past the last block is an error.
    let middle = hf.hidden_states(&texts, Some(2)).expect("layer 2");
    assert!(max_diff32(&middle[0], &raw[0]) > 1e-3);
    let err = hf
        .hidden_states(&texts, Some(c.layers + 1))
        .expect_err("no such layer");
    assert!(err.to_string().contains("does not exist"), "{err}");
    // One text per pass gives what the padded batch gives.
    let alone = load(&dir.join("hf"), 1)
        .hidden_states(&texts, None)
        .expect("alone");
    for (a, b) in alone.iter().zip(&last) {
        assert!(max_diff32(a, b) < 1e-5, "batching changed a hidden state");
    }
    // The llama2.c and float GGUF files are the same network: the same hidden states.
    for path in ["stories260K.bin", "stories260K-f32.gguf"] {
        let m = load(&dir.join(path), 64);
        let other = m.hidden_states(&texts, None).expect("hidden");
        for ((o, h), t) in other.iter().zip(&last).zip(&texts) {
            assert!(max_diff32(o, h) < 1e-4, "{path}: hidden states differ");
            let d = max_diff(&head_logprobs(&head, o), &next_logprobs(&m, t));
            assert!(d < 1e-4, "{path}: {d}");
        }
    }
    // Quantized weights: close, not equal.
    let q8 = load(&dir.join("stories260K-q8_0.gguf"), 64);
    let quantized = q8.hidden_states(&texts, None).expect("hidden");
    for (q, h) in quantized.iter().zip(&last) {
        let scale = h.iter().map(|x| x.abs()).fold(0.0f32, f32::max);
        assert!(max_diff32(q, h) < 0.1 * f64::from(scale));
    }
}

/// A random LoRA adapter on q_proj, v_proj and down_proj (B nonzero, so it changes the model).
fn random_adapter(model: &NeuralModel, dir: &Path) {
    let c = model.config();
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let rank = 2;
    let targets = ["q_proj", "v_proj", "down_proj"];
    let mut weights = BTreeMap::new();
    for layer in 0..c.layers {
        for target in targets {
            let (inp, out) = lora::dims(c, target).expect("dims");
            let mut normal = |n: usize| -> Vec<f32> {
                (0..n).map(|_| rng.random_range(-0.3f32..0.3f32)).collect()
            };
            let a = Tensor::from_vec(normal(rank * inp), (rank, inp), &Device::Cpu).expect("a");
            let b = Tensor::from_vec(normal(out * rank), (out, rank), &Device::Cpu).expect("b");
            weights.insert((layer, target.to_string()), LowRank { a, b, scale: 2.0 });
        }
    }
    let adapter = Adapter {
        rank,
        alpha: 4.0,
        targets: targets.iter().map(|s| s.to_string()).collect(),
        weights,
    };
    lora::write(dir, &adapter, "stories260K").expect("write adapter");
}

#[test]
fn hidden_states_of_an_adapted_model_feed_its_own_distribution() {
    let Some(dir) = shared("models/stories260K") else {
        return;
    };
    let base = load(&dir.join("hf"), 64);
    let folder = common::scratch("probe-test");
    random_adapter(&base, &folder);
    let adapted = train::with_adapter(&base, &folder).expect("adapter");
    let tensors = candle_core::safetensors::load(dir.join("hf/model.safetensors"), &Device::Cpu)
        .expect("safetensors");
    let head = rows(&tensors, "model.embed_tokens.weight");
    let texts = ids(&base);
    let before = base.hidden_states(&texts, None).expect("base");
    let after = adapted.hidden_states(&texts, None).expect("adapted");
    for ((a, b), t) in after.iter().zip(&before).zip(&texts) {
        assert!(
            max_diff32(a, b) > 1e-3,
            "the adapter changes the hidden state"
        );
        // The head is not adapted, so the adapted hidden state alone carries the change.
        let d = max_diff(&head_logprobs(&head, a), &next_logprobs(&adapted, t));
        assert!(d < 1e-4, "adapted: {d}");
    }
    let _ = std::fs::remove_dir_all(&folder);
}

/// Two Gaussian clouds `gap` apart along the first axis, in `dim` dimensions.
fn clouds(n: usize, dim: usize, gap: f64, seed: u64) -> (Vec<Vec<f64>>, Vec<bool>) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut normal = move || {
        let u: f64 = rng.random::<f64>().max(1e-300);
        let v: f64 = rng.random();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    };
    let mut features = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let y = i % 2 == 0;
        let mut x: Vec<f64> = (0..dim).map(|_| normal()).collect();
        x[0] += if y { gap / 2.0 } else { -gap / 2.0 };
        features.push(x);
        labels.push(y);
    }
    (features, labels)
}

fn options(method: ProbeMethod) -> ProbeOptions {
    ProbeOptions {
        method,
        folds: 5,
        c: 1.0,
    }
}

#[test]
fn probes_find_separable_data_and_not_noise() {
    for method in [ProbeMethod::Logistic, ProbeMethod::Svm] {
        // Separable: the classes are 12 standard deviations apart along one of 20 axes.
        let (x, y) = clouds(200, 20, 12.0, 1);
        let r = cross_validate(&x, &y, &options(method), &mut ChaCha20Rng::seed_from_u64(3))
            .expect("probe");
        assert_eq!(r.fold_accuracy, vec![1.0; 5], "{method:?}");
        assert_eq!(
            (r.accuracy.mean, r.accuracy.stderr, r.accuracy.n),
            (1.0, 0.0, 5)
        );
        assert_eq!((r.n, r.std, r.baseline), (200, 0.0, 0.5));
        // Noise: labels independent of the features.
        let (x, _) = clouds(600, 20, 0.0, 2);
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let y: Vec<bool> = (0..600).map(|_| rng.random()).collect();
        let r = cross_validate(&x, &y, &options(method), &mut ChaCha20Rng::seed_from_u64(3))
            .expect("probe");
        assert!(
            (r.accuracy.mean - 0.5).abs() < 0.07,
            "{method:?} on noise: {}",
            r.accuracy
        );
        assert!(r.accuracy.stderr > 0.0 && r.std > 0.0);
        let std = r.accuracy.stderr * 5f64.sqrt();
        assert!((r.std - std).abs() < 1e-12, "std = stderr sqrt(folds)");
    }
}

#[test]
fn folds_partition_the_data_and_the_seed_fixes_everything() {
    let (x, y) = clouds(103, 5, 1.0, 4);
    let r = cross_validate(
        &x,
        &y,
        &options(ProbeMethod::Logistic),
        &mut ChaCha20Rng::seed_from_u64(1),
    )
    .expect("probe");
    let mut all: Vec<usize> = r.folds.concat();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..103).collect::<Vec<_>>(),
        "folds partition the data"
    );
    for fold in &r.folds {
        assert!((20..=21).contains(&fold.len()));
        let positives = fold.iter().filter(|&&i| y[i]).count();
        assert!((10..=11).contains(&positives), "stratified: {positives}");
    }
    for method in [ProbeMethod::Logistic, ProbeMethod::Svm] {
        let run = |seed| {
            cross_validate(
                &x,
                &y,
                &options(method),
                &mut ChaCha20Rng::seed_from_u64(seed),
            )
            .expect("probe")
        };
        let (a, b, other) = (run(1), run(1), run(2));
        assert_eq!(a.fold_accuracy, b.fold_accuracy);
        assert_eq!(a.folds, b.folds);
        assert_ne!(a.folds, other.folds);
    }
    assert_eq!(
        stratified_folds(&y, 5, &mut ChaCha20Rng::seed_from_u64(7)),
        stratified_folds(&y, 5, &mut ChaCha20Rng::seed_from_u64(7))
    );
}

#[test]
fn bad_probe_inputs_are_errors() {
    let (x, y) = clouds(20, 3, 1.0, 1);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let o = options(ProbeMethod::Logistic);
    let few: Vec<bool> = (0..20).map(|i| i < 3).collect();
    let e = cross_validate(&x, &few, &o, &mut rng).expect_err("too few");
    assert!(e.to_string().contains("at least 5 examples"), "{e}");
    let mut ragged = x.clone();
    ragged[4].pop();
    let e = cross_validate(&ragged, &y, &o, &mut rng).expect_err("ragged");
    assert!(e.to_string().contains("feature vector 4"), "{e}");
    let mut nan = x.clone();
    nan[2][1] = f64::NAN;
    assert!(cross_validate(&nan, &y, &o, &mut rng).is_err());
    let zero_c = ProbeOptions { c: 0.0, ..o };
    assert!(cross_validate(&x, &y, &zero_c, &mut rng).is_err());
}

/// The numbers of a printed list `[a, b, ...]`.
fn numbers(line: &str) -> Vec<f64> {
    line.trim_matches(['[', ']'])
        .split(", ")
        .map(|x| x.parse().unwrap_or(f64::NAN))
        .collect()
}

fn expect_error(script: &str, words: &[&str]) {
    let (out, error) = run_in_process(script, None);
    let error = error.unwrap_or_else(|| panic!("expected an error from {script:?}, got {out}"));
    for w in words {
        assert!(
            error.message.contains(w),
            "{script:?}: {:?} lacks {w:?}",
            error.message
        );
    }
}

#[test]
fn the_likelihood_ratio_classifier_is_exact_on_analytic_models() {
    let (out, error) = run_in_process(
        r#"let plus = sentences { "a": 0.6 @ 1, "b": 0.3 @ 1, "c": 0.1 @ -1 }
let minus = sentences { "a": 0.1 @ 1, "b": 0.2 @ 1, "c": 0.7 @ -1 }
let r = classify(plus, minus, ["a", "b", "c"], ["c", "c", "a"])
print r.n, r.ties, r.good_accuracy.mean, r.bad_accuracy.mean, r.accuracy.mean, r.accuracy.stderr, r.accuracy.n
print r.good_logratio
print r.bad_logratio
print classify(plus, plus, ["a"], ["b"]).ties
"#,
        None,
    );
    assert!(error.is_none(), "{error:?}\n{out}");
    let lines: Vec<&str> = out.lines().collect();
    let p: f64 = 4.0 / 6.0;
    assert_eq!(
        lines[0],
        format!(
            "6 0 {} {} {} {} 6",
            2.0 / 3.0,
            2.0 / 3.0,
            p,
            (p * (1.0 - p) / 6.0).sqrt()
        )
    );
    let ln = |a: f64, b: f64| (a / b).ln();
    let good = numbers(lines[1]);
    let bad = numbers(lines[2]);
    assert!(max_diff(&good, &[ln(0.6, 0.1), ln(0.3, 0.2), ln(0.1, 0.7)]) < 1e-12);
    assert!(max_diff(&bad, &[ln(0.1, 0.7), ln(0.1, 0.7), ln(0.6, 0.1)]) < 1e-12);
    assert_eq!(lines[3], "2", "equal models tie on every statement");
    // A statement impossible under both models has no ratio; mismatched vocabularies and
    // empty lists are refused.
    expect_error(
        r#"let p = sentences { "a": 1 @ 1 }
classify(p, p, ["a"], ["zzz"])"#,
        &["statement 0", "zzz", "probability zero"],
    );
    expect_error(
        r#"let p = sentences { "a": 1 @ 1 }
classify(p, p, [], ["a"])"#,
        &["no statements"],
    );
}

#[test]
fn the_probe_builtin_checks_its_arguments_and_repeats_with_its_seed() {
    let data = r#"let xs = map(range(0, 40), |i| [i % 2 * 4 - 2 + (i % 7) / 7, (i % 5) / 5])
let ys = map(range(0, 40), |i| if i % 2 == 0 { "no" } else { "yes" })
"#;
    let (out, error) = run_in_process(
        &format!(
            r#"{data}let a = probe(xs, ys, seed: 3)
let b = probe(xs, ys, seed: 3)
let s = probe(xs, ys, method: "svm", folds: 4, c: 10)
print a.accuracy.mean, a.n, a.folds, a.method, a.baseline, a.fold_accuracy == b.fold_accuracy
print s.accuracy.mean, s.accuracy.n, s.method, s.c, len(s.fold_accuracy)
"#
        ),
        None,
    );
    assert!(error.is_none(), "{error:?}\n{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1 40 5 logistic 0.5 true");
    assert_eq!(lines[1], "1 4 svm 10 4");
    expect_error(
        &format!("{data}probe(xs, map(range(0, 40), |i| i % 3))"),
        &["third value"],
    );
    expect_error(
        &format!("{data}probe(xs, map(range(0, 40), |i| 1))"),
        &["only one value"],
    );
    expect_error(&format!("{data}probe(xs, ys, method: \"tree\")"), &["svm"]);
    expect_error(&format!("{data}probe(xs, ys[..5])"), &["5 labels for 40"]);
    expect_error(&format!("{data}probe(xs, ys, folds: 1)"), &["2 folds"]);
    expect_error(&format!("{data}probe(xs, ys, folds: 30)"), &["at least 30"]);
    expect_error(&format!("{data}probe(xs, ys, c: -1)"), &["positive"]);
    expect_error(
        &format!("{data}probe([[1], [2, 3]], [1, 2])"),
        &["feature vector 1"],
    );
}

#[test]
fn classify_scores_neural_statements_as_direct_scoring_does() {
    let Some(dir) = shared("models/stories260K") else {
        return;
    };
    let folder = common::scratch("probe-test");
    random_adapter(&load(&dir.join("hf"), 64), &folder);
    let hf = dir.join("hf").display().to_string();
    let (out, error) = run_in_process(
        &format!(
            r#"let plus = load("{hf}")
let minus = load("{hf}", adapter: "{adapter}")
let good = ["I like to help my friends.", "The dog ran."]
let bad = ["Go away, I hate you.", "Tom"]
let r = classify(plus, minus, good, bad)
let direct = map(concat(good, bad), |s| logprob(plus, s) - logprob(minus, s))
print concat(r.good_logratio, r.bad_logratio)
print direct
print r.n, r.accuracy.n, r.good_accuracy.n
let h = hidden_states(plus, concat(good, [prompt(plus, "Tom")]))
print len(h), len(h[0])
print h[2]
print hidden_states(plus, ["Tom"])[0]
print len(hidden_states(plus, ["Tom"], layer: 0)[0])
"#,
            adapter = folder.display()
        ),
        None,
    );
    assert!(error.is_none(), "{error:?}\n{out}");
    let lines: Vec<&str> = out.lines().collect();
    // Batched scoring agrees with one statement at a time to float rounding.
    let (batched, direct) = (numbers(lines[0]), numbers(lines[1]));
    assert_eq!(batched.len(), 4);
    assert!(
        max_diff(&batched, &direct) < 1e-4,
        "{batched:?} vs {direct:?}"
    );
    assert!(
        batched.iter().all(|d| d.abs() > 1e-3),
        "the adapter changes every score"
    );
    assert_eq!(lines[2], "4 4 2");
    assert_eq!(lines[3], "3 64");
    // A string and its prompt are the same ids; alone or in a batch, the same state.
    let (in_batch, alone) = (numbers(lines[4]), numbers(lines[5]));
    assert_eq!(in_batch.len(), 64);
    assert!(max_diff(&in_batch, &alone) < 1e-5);
    assert_eq!(lines[6], "64");
    expect_error(
        &format!("hidden_states(load(\"{hf}\"), [\"a\"], layer: 6)"),
        &["layer 6 does not exist", "5 blocks"],
    );
    expect_error(
        "hidden_states(sentences { \"a\": 1 @ 1 }, [\"a\"])",
        &["not a neural model"],
    );
    let _ = std::fs::remove_dir_all(&folder);
}

/// Table 2 on stories260K: a probe on the last-token hidden states of every agreeableness
/// statement, matching against non-matching. Prints the accuracy and the time it took.
#[test]
fn a_probe_on_persona_hidden_states_runs_on_stories260k() {
    let (Some(models), Some(data)) = (
        shared("models/stories260K"),
        shared("data/persona/agreeableness.jsonl"),
    ) else {
        return;
    };
    let started = Instant::now();
    let (out, error) = run_in_process(
        &format!(
            r#"let m = load("{hf}")
let p = persona("{data}")
let xs = hidden_states(m, concat(p.matching, p.not_matching))
let ys = concat(map(p.matching, |s| 1), map(p.not_matching, |s| -1))
let logistic = probe(xs, ys, seed: 1)
let svm = probe(xs, ys, method: "svm", seed: 1)
print len(xs), len(xs[0])
print logistic.accuracy, logistic.std, logistic.baseline
print svm.accuracy, svm.std
"#,
            hf = models.join("hf").display(),
            data = data.display()
        ),
        None,
    );
    let seconds = started.elapsed().as_secs_f64();
    assert!(error.is_none(), "{error:?}\n{out}");
    println!("{out}wall time {seconds:.1} s");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000 64");
    let accuracy = |line: &str| -> f64 {
        line.split_whitespace()
            .next()
            .and_then(|x| x.parse().ok())
            .unwrap_or(f64::NAN)
    };
    // Far better than chance even for a 260K-parameter model trained on children's stories.
    assert!(accuracy(lines[1]) > 0.6, "{}", lines[1]);
    assert!(accuracy(lines[2]) > 0.6, "{}", lines[2]);
}
