//! Neural models: reference log-probabilities of stories260K in every format, greedy text,
//! mixtures against brute force, Monte Carlo against exact KL, batching and seeds, and the
//! diagnostics for bad inputs.
//!
//! Tests that need the shared models skip with a message when they are missing, and fail
//! when `CI` is set.

mod common;

use std::path::{Path, PathBuf};

use common::stories as shared;
use common::{ReferenceRow, load, load_run, reference_rows, uncached};
use std::rc::Rc;

use beb::lm::mixture::Mixture;
use beb::lm::neural::random::{RandomLlama, word_tokenizer_json, write_random_llama};
use beb::lm::neural::{NeuralLm, NeuralModel};
use beb::lm::{LanguageModel, ModelRef, Sampling, Unit, UnitSpec};
use beb::measure::{self, Measured, Method};
use beb::seed::sample_rng;

fn lm(name: &str, model: NeuralModel, unit: UnitSpec) -> NeuralLm {
    NeuralLm::new(name, Rc::new(model), unit)
}

/// (max abs error per token, mean abs error per token) against the reference.
fn errors(model: &NeuralModel, rows: &[ReferenceRow]) -> (f64, f64) {
    let mut max: f64 = 0.0;
    let mut sum = 0.0;
    let mut n = 0usize;
    for row in rows {
        // The tokenizer gives the reference's ids (BOS is added by the model).
        assert_eq!(
            model.encode(&row.text).expect("encode"),
            row.ids[1..],
            "{:?}",
            row.text
        );
        let lps = model.token_logprobs(&row.ids).expect("score");
        assert_eq!(lps.len(), row.logprobs.len());
        for (a, b) in lps.iter().zip(&row.logprobs) {
            max = max.max((a - b).abs());
            sum += (a - b).abs();
            n += 1;
        }
    }
    (max, sum / n as f64)
}

#[test]
fn reference_logprobs_in_every_format() {
    let Some(dir) = shared() else { return };
    let rows = reference_rows(&dir);
    for path in ["hf", "stories260K.bin", "stories260K-f32.gguf"] {
        let model = load(&dir.join(path));
        let (max, mean) = errors(&model, &rows);
        println!("{path}: max error {max:.2e}, mean {mean:.2e} nats/token");
        assert!(max < 1e-4, "{path}: max error {max}");
    }
    let q8 = load(&dir.join("stories260K-q8_0.gguf"));
    let (max, mean) = errors(&q8, &rows);
    println!("q8_0: max error {max:.2e}, mean {mean:.2e} nats/token");
    assert!(mean < 0.05, "q8_0 mean error {mean}");
    // The cached, batched path agrees with the from-scratch one.
    let m = lm("m", load(&dir.join("hf")), UnitSpec::Tokens(4));
    for row in &rows {
        let text = m.prompt(&row.text).expect("prompt");
        let total: f64 = row.logprobs.iter().sum();
        let lp = m.logprob(&[], &text).expect("logprob");
        assert!((lp - total).abs() < 1e-3, "{lp} vs {total}");
        let half = text.len() / 2;
        let split = m.logprob(&[], &text[..half]).expect("a")
            + m.logprob(&text[..half], &text[half..]).expect("b");
        assert!((split - lp).abs() < 1e-4, "{split} vs {lp}");
    }
}

#[test]
fn greedy_decoding_reproduces_the_known_story() {
    let Some(dir) = shared() else { return };
    for path in ["hf", "stories260K.bin", "stories260K-f32.gguf"] {
        let model = lm("m", load(&dir.join(path)), UnitSpec::Tokens(45));
        let greedy = model
            .view(
                None,
                Some(&Sampling {
                    temperature: 0.0,
                    top_k: None,
                    top_p: None,
                }),
            )
            .expect("view")
            .expect("neural");
        let text = greedy
            .sample_many(&[], 1, &mut [sample_rng(1, "greedy", 0)])
            .expect("sample");
        let shown = beb::lm::display_units(&text[0]);
        assert!(
            shown.starts_with("Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball"),
            "{path}: {shown}"
        );
    }
}

#[test]
fn gguf_metadata_tokenizer_matches_tokenizer_json() {
    let Some(dir) = shared() else { return };
    let gguf = load(&dir.join("stories260K-q8_0.gguf"));
    let hf = load(&dir.join("hf"));
    assert_eq!(gguf.vocabulary(), hf.vocabulary());
    for row in reference_rows(&dir) {
        assert_eq!(gguf.encode(&row.text).expect("encode"), row.ids[1..]);
    }
}

#[test]
fn batching_and_threads_do_not_change_draws() {
    let Some(dir) = shared() else { return };
    let unit = UnitSpec::Sentence {
        until: vec![".".into()],
        max_tokens: 12,
    };
    let batched = lm("m", load(&dir.join("hf")), unit.clone());
    let single = lm("m", load_run(&dir.join("hf"), uncached()), unit);
    let given = batched
        .prompt("Once upon a time, there was a dog.")
        .expect("prompt");
    let rngs = |n: usize| -> Vec<_> { (0..n).map(|i| sample_rng(5, "s", i)).collect() };
    let a = batched.sample_many(&given, 2, &mut rngs(12)).expect("a");
    let b = single.sample_many(&given, 2, &mut rngs(5)).expect("b");
    assert_eq!(a[..5], b[..]);
    let la = batched.logprob_many(&given, &a).expect("la");
    let lb = single.logprob_many(&given, &a).expect("lb");
    for (x, y) in la.iter().zip(&lb) {
        // The same maths in another order of f32 operations.
        assert!((x - y).abs() < 1e-4, "{x} vs {y}");
    }
}

#[test]
fn a_mixture_of_a_model_with_itself_scores_like_the_model() {
    let Some(dir) = shared() else { return };
    let m: ModelRef = Rc::new(lm("m", load(&dir.join("hf")), UnitSpec::Tokens(3)));
    let mix = Mixture::new(vec![
        ("a".into(), m.clone(), 0.3f64.ln()),
        ("b".into(), m.clone(), 0.7f64.ln()),
    ])
    .expect("mixture");
    let given = m
        .as_neural()
        .expect("neural")
        .prompt("Lily went to the park. She saw a cat.")
        .expect("prompt");
    let texts = m
        .sample_many(
            &given,
            2,
            &mut [sample_rng(1, "x", 0), sample_rng(1, "x", 1)],
        )
        .expect("sample");
    for text in &texts {
        let a = m.logprob(&given, text).expect("m");
        let b = mix.logprob(&given, text).expect("mix");
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }
    let post = mix.posterior(&given).expect("posterior");
    assert!((post[0].1.exp() - 0.3).abs() < 1e-9);
}

/// Two tiny random llamas over a 12-word vocabulary (with "<s>" as BOS).
fn tiny_pair() -> (NeuralModel, NeuralModel, PathBuf) {
    let words = ["<s>", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "."];
    let spec = RandomLlama {
        hidden: 16,
        intermediate: 24,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        vocab: words.len(),
        context: 64,
        std: 1.0,
    };
    let dir = common::scratch("neural-test");
    let tok = word_tokenizer_json(&words);
    write_random_llama(&dir.join("p"), &spec, 1, &tok).expect("write p");
    write_random_llama(&dir.join("q"), &spec, 2, &tok).expect("write q");
    let p = load(&dir.join("p"));
    let q = load(&dir.join("q"));
    (p, q, dir)
}

#[test]
fn mixture_next_token_probabilities_match_brute_force() {
    let (p, q, dir) = tiny_pair();
    let words = ["<s>", "a", "b", "c"];
    let _ = words;
    let p = Rc::new(p);
    let q = Rc::new(q);
    let pm: ModelRef = Rc::new(NeuralLm::new("p", p.clone(), UnitSpec::Tokens(1)));
    let qm: ModelRef = Rc::new(NeuralLm::new("q", q.clone(), UnitSpec::Tokens(1)));
    let (wa, wb) = (0.2f64, 0.8f64);
    let mix = Mixture::new(vec![
        ("p".into(), pm.clone(), wa.ln()),
        ("q".into(), qm.clone(), wb.ln()),
    ])
    .expect("mixture");
    let context_ids = vec![3u32, 1, 4, 1, 5, 9, 2];
    let given: Vec<Unit> = context_ids
        .iter()
        .map(|&i| pm.as_neural().expect("n").run(vec![i]))
        .collect();
    let support = mix.support(&given).expect("support").expect("enumerable");
    assert_eq!(support.len(), 12);
    // Brute force: P(x | s) = sum_i a_i P_i(s x) / sum_i a_i P_i(s), whole sequences scored from scratch.
    let seq = |m: &NeuralModel, ids: &[u32]| -> f64 {
        let mut full = vec![0u32];
        full.extend_from_slice(ids);
        m.token_logprobs(&full)
            .expect("score")
            .iter()
            .sum::<f64>()
            .exp()
    };
    let denominator = wa * seq(&p, &context_ids) + wb * seq(&q, &context_ids);
    let mut total = 0.0;
    for (unit, lp) in &support {
        let Unit::Tokens(run) = unit else {
            panic!("token unit expected")
        };
        let mut ext = context_ids.clone();
        ext.push(run.ids[0]);
        let brute = (wa * seq(&p, &ext) + wb * seq(&q, &ext)) / denominator;
        assert!(
            (lp.exp() - brute).abs() < 1e-9,
            "token {}: {} vs {brute}",
            run.ids[0],
            lp.exp()
        );
        total += brute;
    }
    assert!((total - 1.0).abs() < 1e-9);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn monte_carlo_kl_agrees_with_the_exact_next_token_kl() {
    let (p, q, dir) = tiny_pair();
    let pm = NeuralLm::new("p", Rc::new(p), UnitSpec::Tokens(1));
    let qm = NeuralLm::new("q", Rc::new(q), UnitSpec::Tokens(1));
    let given: Vec<Unit> = vec![pm.run(vec![1, 2, 3])];
    let lp = pm.next_token_logprobs(&given).expect("p");
    let lq = qm.next_token_logprobs(&given).expect("q");
    let exact: f64 = lp
        .iter()
        .zip(lq.iter())
        .map(|(a, b)| a.exp() * (a - b))
        .sum();
    // The generic exact path (enumerating the one-token support) agrees.
    let enumerated = measure::kl(&pm, &qm, &given, 1, &Method::Exact).expect("exact");
    assert!((enumerated.value() - exact).abs() < 1e-12);
    let mc = measure::kl(
        &pm,
        &qm,
        &given,
        1,
        &Method::monte_carlo(4000, beb::seed::Stream::new(3, "kl")),
    )
    .expect("mc");
    let Measured::Estimate(e) = mc else {
        panic!("an estimate expected")
    };
    println!("exact {exact}, Monte Carlo {e}");
    assert!((e.mean - exact).abs() < 4.0 * e.stderr, "{e} vs {exact}");
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------- diagnostics

/// Run `script` as `dir/s.beb`, reading the test's scratch models too: (exit code, stderr
/// then stdout).
fn run_script(dir: &Path, script: &str) -> (i32, String) {
    common::write(&dir.join("s.beb"), script);
    let scratch = std::env::temp_dir().display().to_string();
    let out = common::beb(&["run", "--seed", "1", "s.beb", "--allow-read", &scratch])
        .current_dir(dir)
        .run();
    (out.code.unwrap_or(-1), out.stderr + &out.stdout)
}

fn expect_error(dir: &Path, script: &str, needles: &[&str]) {
    let (code, text) = run_script(dir, script);
    assert_eq!(code, 2, "{script}\n{text}");
    assert!(!text.contains("panicked"), "{text}");
    for n in needles {
        assert!(text.contains(n), "expected {n:?} in:\n{text}");
    }
}

#[test]
fn bad_inputs_are_diagnostics() {
    let dir = common::scratch("neural-test");
    expect_error(
        &dir,
        "let m = load(\"nowhere/model.gguf\")\n",
        &["beb::model", "does not exist"],
    );
    // Unsupported architecture: named, with the supported list.
    let arch = dir.join("neox");
    std::fs::create_dir_all(&arch).expect("mkdir");
    std::fs::write(
        arch.join("config.json"),
        r#"{"model_type": "gpt_neox", "hidden_size": 8}"#,
    )
    .expect("write");
    expect_error(
        &dir,
        "let m = load(\"neox\")\n",
        &[
            "gpt_neox",
            "supported: llama",
            "mistral",
            "qwen2",
            "gemma",
            "phi3",
        ],
    );
    // A random model with NaN weights.
    let (p, _, tiny) = tiny_pair();
    drop(p);
    let nan = tiny.join("p");
    let mut st =
        candle_core::safetensors::load(nan.join("model.safetensors"), &candle_core::Device::Cpu)
            .expect("read");
    let w = st.get("model.norm.weight").expect("norm").clone();
    let bad = (w * f64::NAN).expect("nan");
    st.insert("model.norm.weight".into(), bad);
    candle_core::safetensors::save(&st, nan.join("model.safetensors")).expect("save");
    let script = format!(
        "let m = load({:?})\nprint logprob(m, \"a b c\")\n",
        nan.display().to_string()
    );
    expect_error(&dir, &script, &["NaN"]);
    let script = format!(
        "let m = load({:?}, unit: tokens(2))\nprint sample(m, seed: 1)\n",
        nan.display().to_string()
    );
    expect_error(&dir, &script, &["NaN"]);
    let _ = std::fs::remove_dir_all(tiny);

    let Some(shared) = shared() else { return };
    // Truncated weight files, in each format.
    let bin = std::fs::read(shared.join("stories260K.bin")).expect("bin");
    std::fs::write(dir.join("cut.bin"), &bin[..bin.len() / 2]).expect("write");
    std::fs::copy(shared.join("tokenizer.json"), dir.join("tokenizer.json")).expect("copy");
    expect_error(&dir, "let m = load(\"cut.bin\")\n", &["truncated"]);
    let gguf = std::fs::read(shared.join("stories260K-q8_0.gguf")).expect("gguf");
    std::fs::write(dir.join("cut.gguf"), &gguf[..gguf.len() - 1000]).expect("write");
    expect_error(&dir, "let m = load(\"cut.gguf\")\n", &["truncated"]);
    let hf = dir.join("cut_hf");
    std::fs::create_dir_all(&hf).expect("mkdir");
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(shared.join("hf").join(f), hf.join(f)).expect("copy");
    }
    let st = std::fs::read(shared.join("hf/model.safetensors")).expect("st");
    std::fs::write(hf.join("model.safetensors"), &st[..st.len() / 3]).expect("write");
    expect_error(
        &dir,
        "let m = load(\"cut_hf\")\n",
        &["beb::model", "cut_hf"],
    );
    // A .bin without a tokenizer.
    let lone = dir.join("lone");
    std::fs::create_dir_all(&lone).expect("mkdir");
    std::fs::copy(shared.join("stories260K.bin"), lone.join("m.bin")).expect("copy");
    expect_error(&dir, "let m = load(\"lone/m.bin\")\n", &["tokenizer"]);

    let hf = shared.join("hf").display().to_string();
    // Tokenizer mismatch: a mixture names both models.
    let (_, _, tiny) = tiny_pair();
    let script = format!(
        "let story = load({hf:?})\nlet tiny = load({:?})\nlet mix = mixture(story, tiny)\n",
        tiny.join("q").display().to_string()
    );
    expect_error(&dir, &script, &["different vocabularies", "story", "tiny"]);
    let _ = std::fs::remove_dir_all(tiny);
    // A prompt longer than the context window is refused, never truncated.
    let script = format!(
        "let m = load({hf:?})\nlet long = \"\"\nfor i in 0..80 {{ long += \" Lily saw a big red ball in the park.\" }}\nprint logprob(m, long)\n"
    );
    expect_error(&dir, &script, &["context window of 512"]);
    let script = format!("let m = load({hf:?})\nprint sample(m, unit: tokens(600), seed: 1)\n");
    expect_error(&dir, &script, &["context window of 512"]);
    // unit: on an analytic model.
    expect_error(
        &dir,
        "let m = sentences { \"A.\": 1 @ 1 }\nprint sample(m, unit: tokens(2))\n",
        &["applies to neural models"],
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn scripts_measure_neural_models() {
    let Some(shared) = shared() else { return };
    let dir = common::scratch("neural-test");
    let hf = shared.join("hf").display().to_string();
    let q8 = shared.join("stories260K-q8_0.gguf").display().to_string();
    let script = format!(
        r#"let p = load({hf:?}, unit: sentence(until: ".", max_tokens: 24))
let q = load({q8:?}, unit: sentence(until: ".", max_tokens: 24))
let prompts = sample(p, sentences: 3, count: 4, seed: 2)
print len(prompts), len(prompts[0])
let k = kl(p, q, given: map(prompts, |t| t[..2]), samples: 16, unit: tokens(8), seed: 3)
let fixed = kl(p, q, given: map(prompts, |t| t[..2]), samples: 16, unit: tokens(8), seed: 3, error: "given_prompts")
print k.n, fixed.n, k.mean == fixed.mean
let v = logratio_var(p, q, sentences: 1, given: prompts[0], samples: 16, unit: tokens(8), seed: 3)
print v.n
print next_token_kl(p, q, given: prompts[0]) >= 0
let b = expect(p, given: prompts[0], behavior: keywords(["ball"]), samples: 8, unit: tokens(8), seed: 1)
print b.n
let lr = expect(p, given: prompts[0], behavior: likelihood_ratio(p, q), samples: 8, unit: tokens(8), seed: 1)
print lr.n
let s = prompt(p, "Lily saw a cat. The cat was happy.")
print len(s), decode(p, s[1..])
print score(keywords("cat"), s), score(keywords(["do+g"], regex: true), s)
let mix = mixture(p, q, alpha: 0.5)
print kl(mix, p, given: s, samples: 8, unit: tokens(4), seed: 1).n
print model_info(p).parameters
"#
    );
    let (code, text) = run_script(&dir, &script);
    assert_eq!(code, 0, "{text}");
    let expected = "4 3\n4 64 true\n16\ntrue\n8\n8\n2 The cat was happy.\n-1 1\n8\n260032\n";
    assert!(
        text.ends_with(expected) || text.contains(expected),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------- the run's disk cache

/// Run `script` in `dir` with `--out out_dir` and extra flags; (exit code, stdout, manifest).
fn run_recorded(dir: &Path, out_dir: &str, flags: &[&str]) -> (i32, String, String) {
    let out = common::beb(&["run", "--seed", "7", "s.beb", "--out", out_dir])
        .args(flags)
        .current_dir(dir)
        .run();
    let manifest =
        std::fs::read_to_string(dir.join(out_dir).join("manifest.yaml")).unwrap_or_default();
    (out.code.unwrap_or(-1), out.stdout, manifest)
}

/// The `key: value` line under `cache:` in a manifest.
fn cache_count(manifest: &str, key: &str) -> u64 {
    let section = manifest.split("cache:").nth(1).unwrap_or("");
    section
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX)
}

#[test]
fn model_calls_are_cached_and_reused_byte_for_byte() {
    let Some(models) = shared() else { return };
    let dir = common::scratch("neural-test");
    let hf = models.join("hf");
    std::fs::write(
        dir.join("s.beb"),
        format!(
            r#"let m = load({hf:?}, unit: sentence(until: ".", max_tokens: 24))
let q = load({hf:?}, unit: sentence(until: ".", max_tokens: 24), dtype: "f16")
let p = prompt(m, "Lily saw a cat.")
let s = sample(m, sentences: 2, count: 5, given: p, seed: 4)
print s
print kl(m, q, given: p, sentences: 2, samples: 40, seed: 1)
print logratio_var(m, q, sentences: 1, given: p, samples: 40, seed: 2)
print map(s, |t| logprob(m, t, given: p))
"#
        ),
    )
    .expect("write script");
    let (code, first, manifest) = run_recorded(&dir, "a", &[]);
    assert_eq!(code, 0, "{first}");
    assert!(cache_count(&manifest, "misses") > 0, "{manifest}");
    // The weights and the tokenizer are inputs of the run, with their sha256.
    assert!(manifest.contains("model.safetensors"), "{manifest}");
    assert!(manifest.contains("tokenizer.json"), "{manifest}");
    // A rerun computes nothing and prints the same bytes.
    let (code, second, manifest) = run_recorded(&dir, "b", &[]);
    assert_eq!(code, 0, "{second}");
    assert_eq!(first, second);
    assert_eq!(cache_count(&manifest, "misses"), 0, "{manifest}");
    assert!(cache_count(&manifest, "hits") > 0, "{manifest}");
    // Without the cache, the same answers again, from the model.
    let (code, third, manifest) = run_recorded(&dir, "c", &["--no-cache"]);
    assert_eq!(code, 0, "{third}");
    assert_eq!(first, third);
    assert_eq!(cache_count(&manifest, "hits"), 0, "{manifest}");
    let _ = std::fs::remove_dir_all(dir);
}
