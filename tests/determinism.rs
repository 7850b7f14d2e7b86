//! Batch-, cache- and thread-invariant neural results: every row is computed with the same
//! reduction order whatever the batch size, the prefix-cache state and the thread count (see
//! `src/lm/neural/kernels.rs`), so the same script and seed give byte-identical results.
//!
//! The library tests use random llamas written to scratch folders (wide enough that candle's
//! matmul picks different kernels for 1 and 64 rows); the script test runs stories260K from
//! the shared folder, skipping with a message when it is missing and failing when `CI` is set.

mod common;

use std::path::{Path, PathBuf};

use beb::lm::neural::kernels;
use beb::lm::neural::random::{RandomLlama, word_tokenizer_json, write_random_llama};
use beb::lm::neural::{ComputeOptions, NeuralModel};
use common::load_run;

// The matrix-product kernel alone: the same bits for any row count, row offset and thread
// count, and candle's result to float rounding.

fn values(n: usize, seed: u32) -> Vec<f32> {
    // A small deterministic generator: varied magnitudes and signs.
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32 - 0.5) * 4.0
        })
        .collect()
}

#[test]
fn kernel_every_row_count_gives_the_same_bits() {
    for &(n, k) in &[(37, 64), (512, 512), (13, 45), (5, 3)] {
        let w = values(n * k, 7);
        let x = values(64 * k, 3);
        let all = kernels::matmul_t(&x, 64, &w, n, k);
        for m in [1, 7, 64] {
            for start in [0, 64 - m] {
                let part = kernels::matmul_t(&x[start * k..], m, &w, n, k);
                let want = &all[start * n..(start + m) * n];
                assert!(
                    part.iter()
                        .zip(want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "m={m} n={n} k={k}"
                );
            }
        }
        // One element alone is the same dot product.
        assert_eq!(kernels::dot(&x[..k], &w[..k]).to_bits(), all[0].to_bits());
    }
}

#[test]
fn kernel_every_thread_count_gives_the_same_bits() {
    let (m, n, k) = (64, 300, 256);
    let w = values(n * k, 11);
    let x = values(m * k, 5);
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map(|pool| pool.install(|| kernels::matmul_t(&x, m, &w, n, k)))
            .unwrap_or_default()
    };
    let one = run(1);
    assert_eq!(one.len(), m * n);
    for threads in [2, 3, 4] {
        let other = run(threads);
        assert!(
            one.iter()
                .zip(&other)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }
}

#[test]
fn kernel_agrees_with_candle_to_float_rounding() {
    use candle_core::{Device, Tensor};
    let (m, n, k) = (9, 70, 333);
    let w = values(n * k, 2);
    let x = values(m * k, 4);
    let ours = kernels::matmul_t(&x, m, &w, n, k);
    let theirs: Vec<f32> = Tensor::from_vec(x.clone(), (m, k), &Device::Cpu)
        .and_then(|xt| {
            let wt = Tensor::from_vec(w.clone(), (n, k), &Device::Cpu)?;
            xt.matmul(&wt.t()?)?.flatten_all()?.to_vec1()
        })
        .unwrap_or_default();
    assert_eq!(theirs.len(), m * n);
    for (r, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        let exact: f64 = (0..k)
            .map(|i| x[(r / n) * k + i] as f64 * w[(r % n) * k + i] as f64)
            .sum();
        let scale: f64 = (0..k)
            .map(|i| (x[(r / n) * k + i] as f64 * w[(r % n) * k + i] as f64).abs())
            .sum();
        let tol = scale * k as f64 * f32::EPSILON as f64;
        assert!((*a as f64 - exact).abs() <= tol, "{a} vs {exact}");
        assert!((*a - *b).abs() as f64 <= 2.0 * tol, "{a} vs candle {b}");
    }
}

/// A random llama with a hidden size past candle's K-blocking, two layers and a sliding
/// window on the second, written once per call.
fn random_model(label: &str) -> PathBuf {
    let dir = common::scratch(label);
    let words: Vec<String> = (0..200).map(|i| format!("w{i}")).collect();
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    let spec = RandomLlama {
        hidden: 384,
        intermediate: 1024,
        layers: 2,
        heads: 6,
        kv_heads: 2,
        vocab: 256,
        context: 256,
        std: 0.3,
    };
    write_random_llama(&dir, &spec, 7, &word_tokenizer_json(&refs)).expect("write the model");
    dir
}

// The default fills any field added to ComputeOptions later.
#[allow(clippy::needless_update)]
fn options(batch: usize, cache: bool) -> ComputeOptions {
    ComputeOptions {
        batch,
        cache_bytes: if cache { 64 << 20 } else { 0 },
        ..ComputeOptions::default()
    }
}

fn bits(x: &[f64]) -> Vec<u64> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// Texts of different lengths after one prompt.
fn texts() -> (Vec<u32>, Vec<Vec<u32>>) {
    let prompt: Vec<u32> = (1..40).map(|i| (i * 7 % 250) as u32 + 3).collect();
    let texts = (0..67)
        .map(|r| {
            (0..(3 + r % 11))
                .map(|j| ((r * 13 + j * 5) % 250) as u32 + 3)
                .collect()
        })
        .collect();
    (prompt, texts)
}

#[test]
fn scores_are_the_same_bits_for_every_batch_size() {
    let dir = random_model("det-batch");
    let (prompt, texts) = texts();
    let score = |batch: usize| {
        let m: NeuralModel = load_run(&dir, options(batch, true));
        m.score(&prompt, &texts).expect("score")
    };
    let one = bits(&score(1));
    for batch in [7, 64] {
        assert_eq!(one, bits(&score(batch)), "batch {batch} against batch 1");
    }
    // A text scored after the prompt in a batch is the same as the whole sequence read from
    // scratch in one pass (no shared prefix, one row).
    let m = load_run(&dir, options(64, false));
    let batched = m.score(&prompt, &texts).expect("score");
    for (text, got) in texts.iter().zip(&batched).take(9) {
        let mut ids = prompt.clone();
        ids.extend(text);
        let fresh: f64 = m.token_logprobs(&ids).expect("score")[prompt.len() - 1..]
            .iter()
            .sum();
        // The sum runs in a different order than the scorer's, so compare the terms instead.
        let mut terms = vec![m.next_logprobs(&prompt).expect("state")[text[0] as usize]];
        terms.extend(&m.token_logprobs(&ids).expect("score")[prompt.len()..]);
        assert_eq!(
            terms.iter().sum::<f64>().to_bits(),
            fresh.to_bits(),
            "the per-token terms"
        );
        assert!((got - fresh).abs() < 1e-9, "{got} vs {fresh}");
    }
}

#[test]
fn prefix_states_are_the_same_bits_cached_or_fresh() {
    let dir = random_model("det-cache");
    let (prompt, _) = texts();
    let fresh = load_run(&dir, options(64, false));
    let cached = load_run(&dir, options(64, true));
    // Warm the cache with prefixes of several lengths (chunks that end at 5, 17, 30), so the
    // full prompt resumes from a cached state; the cold model reads it in one pass.
    for n in [5, 17, 30] {
        cached.next_logprobs(&prompt[..n]).expect("state");
    }
    let warm = cached.next_logprobs(&prompt).expect("state");
    let (hits, _, _) = cached.cache_stats();
    assert!(hits > 0, "the prefix cache served nothing");
    let cold = fresh.next_logprobs(&prompt).expect("state");
    assert_eq!(bits(&warm), bits(&cold));
    // Token by token from scratch: each position's distribution is the same bits too.
    let all = fresh.token_logprobs(&prompt).expect("score");
    for n in [5, 17, 30] {
        let next = cached.next_logprobs(&prompt[..n]).expect("state");
        assert_eq!(
            next[prompt[n] as usize].to_bits(),
            all[n - 1].to_bits(),
            "position {n}"
        );
    }
}

#[test]
fn samples_are_the_same_for_every_batch_size_and_thread_count() {
    use beb::lm::{Sampling, UnitSpec};
    use beb::seed::sample_rng;
    let dir = random_model("det-sample");
    let (prompt, _) = texts();
    let draw = |batch: usize, threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool");
        pool.install(|| {
            let m = load_run(&dir, options(batch, batch != 1));
            let mut rngs: Vec<_> = (0..20).map(|i| sample_rng(5, "s", i)).collect();
            m.sample(
                &prompt,
                6,
                &UnitSpec::Tokens(2),
                &Sampling::default(),
                &mut rngs,
            )
            .expect("sample")
        })
    };
    let reference = draw(64, 1);
    for (batch, threads) in [(1, 1), (7, 2), (64, 4)] {
        assert_eq!(
            reference,
            draw(batch, threads),
            "batch {batch}, {threads} threads"
        );
    }
}

/// GGUF q8_0 weights go through beb's block kernel (`quantized.rs`), which quantizes each
/// activation row and adds its block products in one fixed order: the same bits for every
/// batch size, and cached or fresh.
#[test]
fn quantized_scores_are_the_same_bits_for_every_batch_size() {
    let Some(dir) = common::stories() else { return };
    let path = dir.join("stories260K-q8_0.gguf");
    let prompt: Vec<u32> = vec![1, 403, 407, 261, 378, 285, 263, 443];
    let texts: Vec<Vec<u32>> = (0..67)
        .map(|r| {
            (0..(3 + r % 11))
                .map(|j| ((r * 13 + j * 5) % 500) as u32 + 3)
                .collect()
        })
        .collect();
    let score = |batch: usize, cache: bool| {
        let m = load_run(&path, options(batch, cache));
        m.score(&prompt, &texts).expect("score")
    };
    let one = bits(&score(1, false));
    for batch in [7, 64] {
        assert_eq!(one, bits(&score(batch, true)), "q8_0, batch {batch}");
    }
}

/// A neural script with 12 conversation rounds and Monte Carlo KL and log-ratio variance on
/// stories260K, its model given as the f32 GGUF and the q8_0 GGUF.
const SCRIPT: &str = r#"
let u = sentence(until: ".", max_tokens: 12)
let p = load("$BEB_SHARED/models/stories260K/stories260K-f32.gguf", batch: batch, unit: u)
let q = load("$BEB_SHARED/models/stories260K/stories260K-q8_0.gguf", batch: batch, unit: u)
let r = load("RANDOM", batch: batch, unit: sentence(until: "w7", max_tokens: 6))
let c = conversation(p, q, turns: 12, given: text(["Once upon a time"]), seed: 3)
let m = mixture(p, q, alpha: 0.5)
let kls = map([0, 5, 11], |t| kl(p, m, given: c.prompts[t], sentences: 1, samples: 24, seed: t))
let lrv = map([0, 11], |t| logratio_var(p, q, sentences: 1, given: c.prompts[t], samples: 24, seed: t))
let rc = conversation(r, r, turns: 12, given: prompt(r, "w1 w2 w3"), seed: 4)
let rkl = kl(r, r, given: rc.prompts[11], sentences: 1, samples: 24, seed: 9)
print decode(p, c.text)
print kls
print lrv
print rkl
save {text: decode(p, c.text), kls: kls, lrv: lrv, random: decode(r, rc.text), rkl: rkl} to "out.json"
"#;

/// `beb run` of the script in `dir` with `args`: (results.yaml, stdout).
fn run(dir: &Path, out: &str, args: &[&str], threads: Option<&str>) -> (String, String) {
    let mut all = vec!["run", "script.beb", "--seed", "1", "--out", out];
    all.extend(args);
    let mut cmd = common::beb_in(dir, &all);
    if let Some(n) = threads {
        cmd = cmd.env("BEB_THREADS", n);
    }
    let output = cmd.run();
    assert_eq!(output.code, Some(0), "{args:?}: {}", output.stderr);
    (
        common::read(&dir.join(out).join("results.yaml")),
        output.stdout,
    )
}

#[test]
fn a_script_gives_the_same_bytes_for_every_batch_cache_and_thread_setting() {
    if common::stories().is_none() {
        return;
    }
    let dir = common::scratch("det-script");
    let model = random_model("det-script-model");
    // Reads are confined to the script's folder: the random model goes beside it.
    std::fs::rename(&model, dir.join("random")).expect("move the model");
    common::write(&dir.join("script.beb"), &SCRIPT.replace("RANDOM", "random"));
    let cache = dir.join("cache");
    let cache = cache.to_str().expect("a UTF-8 path");
    let reference = run(&dir, "ref", &["--set", "batch=64", "--no-cache"], None);
    assert!(reference.0.contains("rkl"), "{}", reference.0);
    let cases: Vec<(&str, Vec<&str>, Option<&str>)> = vec![
        ("b1", vec!["--set", "batch=1", "--no-cache"], None),
        ("b7", vec!["--set", "batch=7", "--no-cache"], None),
        ("cold", vec!["--set", "batch=64", "--cache", cache], None),
        ("warm", vec!["--set", "batch=64", "--cache", cache], None),
        (
            "t1",
            vec!["--set", "batch=64", "--no-cache", "--threads", "1"],
            None,
        ),
        ("t2", vec!["--set", "batch=64", "--no-cache"], Some("2")),
        (
            "t4",
            vec!["--set", "batch=64", "--no-cache", "--threads", "4"],
            None,
        ),
    ];
    for (out, args, threads) in cases {
        let got = run(&dir, out, &args, threads);
        assert_eq!(reference.0, got.0, "results.yaml of {out} ({args:?})");
        assert_eq!(reference.1, got.1, "printed output of {out} ({args:?})");
    }
}
