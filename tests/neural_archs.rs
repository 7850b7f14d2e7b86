//! Every architecture the loader claims, against an independent forward pass.
//!
//! Each test writes a tiny randomly initialised checkpoint in the Hugging Face layout
//! (config.json with the architecture's own field names and characteristic options,
//! model.safetensors, tokenizer.json), loads it with beb, and compares beb's next-token
//! log-probabilities after every prefix of a few token sequences with those of
//! candle-transformers' own implementation of that architecture run on the same weights.
//! beb is read three ways: every prefix from scratch, every prefix resumed from the cached
//! state of the one before, and whole continuations scored in a batch after a shared prompt.
//! GGUF files written from the same weights are checked against the Hugging Face folder
//! (and, for qwen2, against candle's quantized qwen2 model).
//!
//! The weights are far from the usual normal(0, 0.02) initialisation on purpose: with
//! matrices of standard deviation 1/sqrt(fan-in), embeddings of 0.3 and norm weights away
//! from 1, next-token distributions are peaked (several nats between the likeliest and the
//! least likely token) and attention patterns depend on content and position, so a wrong
//! convention (a missing norm offset, a rotary layout, a mask off by one) moves the numbers
//! by far more than the tolerance.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use beb::lm::neural::random::word_tokenizer_json;
use beb::lm::neural::{ComputeOptions, LoadOptions};
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{gemma, llama, mistral, phi3, quantized_qwen2, qwen2};
use common::{load_run, load_with, max_diff, uncached};
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use serde_json::{Value as Json, json};

/// Largest difference allowed between two log-probabilities of one token, in nats (f32).
const TOLERANCE: f64 = 1e-4;
const VOCAB: usize = 48;
const CONTEXT: usize = 64;
/// Token sequences compared, and the length of each.
const SEQUENCES: usize = 3;
const LENGTH: usize = 10;
/// Tokens of the shared prompt when continuations are scored in a batch.
const PROMPT: usize = 3;

// ---------------------------------------------------------------- checkpoints

/// A fresh scratch folder, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        Scratch(common::scratch(&format!("archs-{name}")))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn words() -> Vec<String> {
    let mut w: Vec<String> = ["<unk>", "<s>", "</s>"].map(String::from).to_vec();
    w.extend((w.len()..VOCAB).map(|i| format!("w{i}")));
    w
}

/// The shape of a checkpoint and the conventions of its weight files.
#[derive(Clone, Debug)]
struct Shape {
    hidden: usize,
    intermediate: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    /// Biases on the query, key and value projections.
    qkv_bias: bool,
    /// A bias on the output projection too.
    o_bias: bool,
    /// phi3: one qkv_proj and one gate_up_proj per layer.
    fused: bool,
    /// No lm_head.weight: the output layer is the embedding matrix.
    tied: bool,
    /// gemma: norm weights w scale by (1 + w), so they are drawn around 0 rather than 1.
    norm_offset: bool,
}

impl Shape {
    /// The dimensions a config.json gives, with plain llama conventions.
    fn of(config: &Json) -> Shape {
        let get = |k: &str| config[k].as_u64().unwrap_or_else(|| panic!("{k}")) as usize;
        let (hidden, heads) = (get("hidden_size"), get("num_attention_heads"));
        Shape {
            hidden,
            intermediate: get("intermediate_size"),
            layers: get("num_hidden_layers"),
            heads,
            kv_heads: get("num_key_value_heads"),
            head_dim: config["head_dim"]
                .as_u64()
                .map_or(hidden / heads, |d| d as usize),
            qkv_bias: false,
            o_bias: false,
            fused: false,
            tied: false,
            norm_offset: false,
        }
    }
}

fn normal(rng: &mut ChaCha20Rng, n: usize, mean: f64, std: f64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            // Box-Muller.
            let u: f64 = rng.random::<f64>().max(1e-300);
            let v: f64 = rng.random();
            (mean + (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos() * std) as f32
        })
        .collect()
}

/// Seeded random weights under their Hugging Face names.
fn random_weights(shape: &Shape, seed: u64) -> HashMap<String, Tensor> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut tensors = HashMap::new();
    let mut put = |name: String, dims: &[usize], mean: f64, std: f64| {
        let n = dims.iter().product();
        let t =
            Tensor::from_vec(normal(&mut rng, n, mean, std), dims, &Device::Cpu).expect("tensor");
        tensors.insert(name, t);
    };
    let (h, d) = (shape.hidden, shape.head_dim);
    let (nq, nkv, inter) = (shape.heads * d, shape.kv_heads * d, shape.intermediate);
    let norm_mean = if shape.norm_offset { 0.0 } else { 1.0 };
    let matrix = |cols: usize| 1.0 / (cols as f64).sqrt();
    put("model.embed_tokens.weight".into(), &[VOCAB, h], 0.0, 0.3);
    for l in 0..shape.layers {
        let p = format!("model.layers.{l}");
        if shape.fused {
            put(
                format!("{p}.self_attn.qkv_proj.weight"),
                &[nq + 2 * nkv, h],
                0.0,
                matrix(h),
            );
            put(
                format!("{p}.mlp.gate_up_proj.weight"),
                &[2 * inter, h],
                0.0,
                matrix(h),
            );
        } else {
            for (name, rows) in [("q_proj", nq), ("k_proj", nkv), ("v_proj", nkv)] {
                put(
                    format!("{p}.self_attn.{name}.weight"),
                    &[rows, h],
                    0.0,
                    matrix(h),
                );
                if shape.qkv_bias {
                    put(format!("{p}.self_attn.{name}.bias"), &[rows], 0.0, 0.3);
                }
            }
            put(
                format!("{p}.mlp.gate_proj.weight"),
                &[inter, h],
                0.0,
                matrix(h),
            );
            put(
                format!("{p}.mlp.up_proj.weight"),
                &[inter, h],
                0.0,
                matrix(h),
            );
        }
        put(
            format!("{p}.self_attn.o_proj.weight"),
            &[h, nq],
            0.0,
            matrix(nq),
        );
        if shape.o_bias {
            put(format!("{p}.self_attn.o_proj.bias"), &[h], 0.0, 0.3);
        }
        put(
            format!("{p}.mlp.down_proj.weight"),
            &[h, inter],
            0.0,
            matrix(inter),
        );
        put(format!("{p}.input_layernorm.weight"), &[h], norm_mean, 0.2);
        put(
            format!("{p}.post_attention_layernorm.weight"),
            &[h],
            norm_mean,
            0.2,
        );
    }
    put("model.norm.weight".into(), &[h], norm_mean, 0.2);
    if !shape.tied {
        put("lm_head.weight".into(), &[VOCAB, h], 0.0, 0.3);
    }
    tensors
}

/// A Hugging Face folder: config.json, model.safetensors (from `seed`), tokenizer.json.
fn write_folder(dir: &Path, config: &Json, shape: &Shape, seed: u64) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join("config.json"), config.to_string()).expect("config.json");
    candle_core::safetensors::save(&random_weights(shape, seed), dir.join("model.safetensors"))
        .expect("model.safetensors");
    let words = words();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    std::fs::write(dir.join("tokenizer.json"), word_tokenizer_json(&words))
        .expect("tokenizer.json");
}

/// The weights of a folder as written (what the reference models are built from).
fn read_weights(dir: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)
        .expect("read model.safetensors")
}

fn var_builder(dir: &Path) -> VarBuilder<'static> {
    VarBuilder::from_tensors(read_weights(dir), DType::F32, &Device::Cpu)
}

/// A few fixed token sequences, each starting with BOS (id 1).
fn sequences() -> Vec<Vec<u32>> {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    (0..SEQUENCES)
        .map(|_| {
            let mut s = vec![1u32];
            s.extend((1..LENGTH).map(|_| rng.random_range(3..VOCAB as u32)));
            s
        })
        .collect()
}

// ---------------------------------------------------------------- comparison

/// For each sequence and each prefix length n = 1..=LENGTH, the reference's next-token
/// log-probabilities after the first n tokens, each prefix run from scratch.
/// `last_logits` runs a [1, n] batch of ids and returns the logits of its last position.
fn reference_rows(
    seqs: &[Vec<u32>],
    mut last_logits: impl FnMut(&Tensor) -> candle_core::Result<Tensor>,
) -> Vec<Vec<Vec<f64>>> {
    seqs.iter()
        .map(|seq| {
            (1..=seq.len())
                .map(|n| {
                    let ids = Tensor::new(&seq[..n], &Device::Cpu)
                        .and_then(|t| t.unsqueeze(0))
                        .expect("ids");
                    let logits: Vec<f32> = last_logits(&ids)
                        .and_then(|t| t.flatten_all())
                        .and_then(|t| t.to_dtype(DType::F32))
                        .and_then(|t| t.to_vec1())
                        .expect("reference forward pass");
                    assert_eq!(logits.len(), VOCAB, "reference logits");
                    let logits: Vec<f64> = logits.iter().map(|&x| f64::from(x)).collect();
                    common::log_softmax(&logits)
                })
                .collect()
        })
        .collect()
}

/// The reference rows must be worth comparing: peaked distributions that depend on the
/// context, far from what an arbitrary model would give.
fn check_informative(name: &str, rows: &[Vec<Vec<f64>>]) {
    for seq in rows {
        for row in seq {
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let min = row.iter().copied().fold(f64::INFINITY, f64::min);
            assert!(
                max - min > 1.0,
                "{name}: a next-token distribution is nearly uniform ({max} .. {min})"
            );
        }
        for pair in seq.windows(2) {
            assert!(
                max_diff(&pair[0], &pair[1]) > 0.05,
                "{name}: the next-token distribution hardly depends on the context"
            );
        }
    }
}

/// The largest difference between beb and the reference rows, over every prefix read
/// from scratch, every prefix resumed from the cached state of the one before, one pass
/// over each whole sequence, and continuations scored in a batch after a shared prompt.
fn compare(name: &str, path: &Path, options: &LoadOptions, reference: &[Vec<Vec<f64>>]) -> f64 {
    let seqs = sequences();
    let fresh = load_with(path, options, uncached());
    let cached = load_with(path, options, ComputeOptions::default());
    let mut worst = 0.0f64;
    let mut check = |what: &str, d: f64| {
        assert!(
            d <= TOLERANCE,
            "{name}: {what} differs from the reference by {d:.3e} nats"
        );
        worst = worst.max(d);
    };
    for (s, seq) in seqs.iter().enumerate() {
        for n in 1..=seq.len() {
            let expected = &reference[s][n - 1];
            let a = fresh.next_logprobs(&seq[..n]).expect("from scratch");
            check(
                &format!("sequence {s}, prefix {n}, from scratch"),
                max_diff(&a, expected),
            );
            let b = cached.next_logprobs(&seq[..n]).expect("resumed");
            check(
                &format!("sequence {s}, prefix {n}, resumed"),
                max_diff(&b, expected),
            );
        }
        // One pass over the whole sequence.
        let picked = fresh.token_logprobs(seq).expect("token log-probabilities");
        for (i, lp) in picked.iter().enumerate() {
            let expected = reference[s][i][seq[i + 1] as usize];
            check(
                &format!("sequence {s}, token {} in one pass", i + 1),
                (lp - expected).abs(),
            );
        }
        // Continuations of several lengths scored together after a shared prompt.
        let texts: Vec<Vec<u32>> = (PROMPT + 1..=seq.len())
            .rev()
            .map(|end| seq[PROMPT..end].to_vec())
            .collect();
        let scores = cached.score(&seq[..PROMPT], &texts).expect("score");
        for (text, got) in texts.iter().zip(&scores) {
            let expected: f64 = (0..text.len())
                .map(|j| reference[s][PROMPT + j - 1][text[j] as usize])
                .sum();
            // A sum of up to LENGTH terms, each within the tolerance.
            check(
                &format!("sequence {s}, a continuation of {} tokens", text.len()),
                (got - expected).abs() / text.len() as f64,
            );
        }
    }
    println!("{name}: max |beb - reference| = {worst:.2e} nats");
    worst
}

/// Write the folder, build the reference on its weights, compare.
fn check_hf(
    name: &str,
    config: Json,
    shape: &Shape,
    reference: impl FnOnce(&Json, &Path) -> Vec<Vec<Vec<f64>>>,
) -> f64 {
    let scratch = Scratch::new(name);
    let dir = scratch.0.join("hf");
    write_folder(&dir, &config, shape, 11);
    let rows = reference(&config, &dir);
    check_informative(name, &rows);
    compare(name, &dir, &LoadOptions::default(), &rows)
}

fn with(config: &Json, changes: Json) -> Json {
    let mut out = config.clone();
    if let (Some(o), Some(c)) = (out.as_object_mut(), changes.as_object()) {
        for (k, v) in c {
            if v.is_null() {
                o.remove(k);
            } else {
                o.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

// ---------------------------------------------------------------- architectures

fn llama_config() -> Json {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": VOCAB,
        "max_position_embeddings": CONTEXT,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        // llama 3 rope scaling, with an original context short enough that the head's
        // frequencies fall in all three bands (kept, scaled, interpolated).
        "rope_scaling": {
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
            "rope_type": "llama3"
        },
        "attention_bias": false,
        "mlp_bias": false,
        "tie_word_embeddings": false,
        "hidden_act": "silu",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32"
    })
}

fn llama_reference(config: &Json, dir: &Path) -> Vec<Vec<Vec<f64>>> {
    let cfg: llama::LlamaConfig = serde_json::from_value(config.clone()).expect("llama config");
    let cfg = cfg.into_config(false);
    let model = llama::Llama::load(var_builder(dir), &cfg).expect("candle llama");
    reference_rows(&sequences(), |ids| {
        let mut cache = llama::Cache::new(false, DType::F32, &cfg, &Device::Cpu)?;
        model.forward(ids, 0, &mut cache)
    })
}

#[test]
fn llama_matches_candle() {
    let config = llama_config();
    check_hf(
        "llama",
        config.clone(),
        &Shape::of(&config),
        llama_reference,
    );
}

#[test]
fn llama_tied_matches_candle() {
    let config = with(
        &llama_config(),
        json!({"tie_word_embeddings": true, "num_key_value_heads": 4, "rope_scaling": null,
               "rope_theta": 10000.0}),
    );
    let shape = Shape {
        tied: true,
        ..Shape::of(&config)
    };
    check_hf("llama-tied", config, &shape, llama_reference);
}

fn mistral_config() -> Json {
    json!({
        "architectures": ["MistralForCausalLM"],
        "model_type": "mistral",
        "hidden_size": 48,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        // A head dimension other than hidden / heads, as in Mistral-Nemo.
        "head_dim": 16,
        "vocab_size": VOCAB,
        "max_position_embeddings": CONTEXT,
        "rms_norm_eps": 1e-5,
        "rope_theta": 1000000.0,
        // Shorter than the sequences, so that the window masks keys.
        "sliding_window": 4,
        "tie_word_embeddings": false,
        "hidden_act": "silu",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32"
    })
}

/// candle's mistral and qwen2 masks keep keys j with i - j <= window (window + 1 keys);
/// Hugging Face's keep i - j < window (`sliding_window_overlay` in transformers'
/// masking_utils: kv_idx > q_idx - sliding_window), which is what checkpoints are trained
/// with and what beb does. The reference is given window - 1 so that both keep the same keys.
fn candle_window(config: &Json) -> Json {
    let w = config["sliding_window"].as_u64().expect("sliding_window");
    with(config, json!({"sliding_window": w - 1}))
}

fn mistral_reference(config: &Json, dir: &Path) -> Vec<Vec<Vec<f64>>> {
    let cfg: mistral::Config =
        serde_json::from_value(candle_window(config)).expect("mistral config");
    let mut model = mistral::Model::new(&cfg, var_builder(dir)).expect("candle mistral");
    reference_rows(&sequences(), |ids| {
        model.clear_kv_cache();
        model.forward(ids, 0)
    })
}

#[test]
fn mistral_matches_candle() {
    let config = mistral_config();
    check_hf(
        "mistral",
        config.clone(),
        &Shape::of(&config),
        mistral_reference,
    );
}

fn qwen2_config() -> Json {
    json!({
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": 32,
        "intermediate_size": 80,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": VOCAB,
        "max_position_embeddings": CONTEXT,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        // As in the released checkpoints: a window is configured but not used.
        "use_sliding_window": false,
        "sliding_window": CONTEXT,
        "max_window_layers": 2,
        "tie_word_embeddings": true,
        "hidden_act": "silu",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32"
    })
}

fn qwen2_shape() -> Shape {
    Shape {
        qkv_bias: true,
        tied: true,
        ..Shape::of(&qwen2_config())
    }
}

fn qwen2_reference(config: &Json, dir: &Path) -> Vec<Vec<Vec<f64>>> {
    // candle's qwen2 applies `sliding_window` whether or not `use_sliding_window` is set.
    let config = if config["use_sliding_window"] == json!(true) {
        candle_window(config)
    } else {
        with(config, json!({"sliding_window": CONTEXT}))
    };
    let cfg: qwen2::Config = serde_json::from_value(config).expect("qwen2 config");
    let mut model = qwen2::ModelForCausalLM::new(&cfg, var_builder(dir)).expect("candle qwen2");
    reference_rows(&sequences(), |ids| {
        model.clear_kv_cache();
        model.forward(ids, 0)
    })
}

#[test]
fn qwen2_matches_candle() {
    check_hf("qwen2", qwen2_config(), &qwen2_shape(), qwen2_reference);
}

#[test]
fn qwen2_sliding_window_matches_candle() {
    // Every layer from max_window_layers = 0 on attends through the window.
    let config = with(
        &qwen2_config(),
        json!({"use_sliding_window": true, "sliding_window": 4, "max_window_layers": 0,
               "tie_word_embeddings": false}),
    );
    let shape = Shape {
        tied: false,
        ..qwen2_shape()
    };
    check_hf("qwen2-window", config, &shape, qwen2_reference);
}

#[test]
fn qwen2_window_applies_from_max_window_layers_on() {
    // Layers below max_window_layers attend to everything: with max_window_layers equal to
    // the number of layers, the window is used nowhere, and with it at 1 only the second
    // layer uses it (Hugging Face's `layer_types`).
    let shape = qwen2_shape();
    let scratch = Scratch::new("qwen2-layers");
    let run = |name: &str, changes: Json| -> Vec<Vec<f64>> {
        let dir = scratch.0.join(name);
        write_folder(&dir, &with(&qwen2_config(), changes), &shape, 11);
        let m = load_run(&dir, uncached());
        let seq = &sequences()[0];
        (1..=seq.len())
            .map(|n| m.next_logprobs(&seq[..n]).expect("logprobs").to_vec())
            .collect()
    };
    let full = run("full", json!({}));
    let none = run(
        "none",
        json!({"use_sliding_window": true, "sliding_window": 4, "max_window_layers": 2}),
    );
    let upper = run(
        "upper",
        json!({"use_sliding_window": true, "sliding_window": 4, "max_window_layers": 1}),
    );
    let all = run(
        "all",
        json!({"use_sliding_window": true, "sliding_window": 4, "max_window_layers": 0}),
    );
    // An explicit `layer_types` overrides max_window_layers.
    let types = run(
        "types",
        json!({"use_sliding_window": true, "sliding_window": 4, "max_window_layers": 0,
               "layer_types": ["full_attention", "sliding_attention"]}),
    );
    for (n, row) in full.iter().enumerate() {
        assert!(
            max_diff(row, &none[n]) < 1e-9,
            "max_window_layers = number of layers must not use the window"
        );
        assert!(max_diff(&upper[n], &types[n]) < 1e-9, "layer_types");
        if n >= 4 {
            // Past the window, a windowed layer sees fewer keys.
            assert!(max_diff(row, &upper[n]) > 1e-3, "prefix {n}");
            assert!(max_diff(&upper[n], &all[n]) > 1e-3, "prefix {n}");
        } else {
            assert!(max_diff(row, &upper[n]) < 1e-9, "prefix {n}");
            assert!(max_diff(row, &all[n]) < 1e-9, "prefix {n}");
        }
    }
}

fn gemma_config() -> Json {
    json!({
        "architectures": ["GemmaForCausalLM"],
        "model_type": "gemma",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        // Multi-query attention with a head dimension other than hidden / heads, as in
        // gemma-2b (8 heads of 256 over a hidden size of 2048, one key/value head).
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "vocab_size": VOCAB,
        "max_position_embeddings": CONTEXT,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "attention_bias": false,
        // Both names, as in the published config: hidden_activation wins.
        "hidden_act": "gelu",
        "hidden_activation": "gelu_pytorch_tanh",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "torch_dtype": "float32"
    })
}

fn gemma_shape() -> Shape {
    Shape {
        tied: true,
        norm_offset: true,
        ..Shape::of(&gemma_config())
    }
}

fn gemma_reference(config: &Json, dir: &Path) -> Vec<Vec<Vec<f64>>> {
    // candle refuses a config that names both activations.
    let cfg: gemma::Config =
        serde_json::from_value(with(config, json!({"hidden_act": null}))).expect("gemma config");
    let mut model = gemma::Model::new(false, &cfg, var_builder(dir)).expect("candle gemma");
    reference_rows(&sequences(), |ids| {
        model.clear_kv_cache();
        model.forward(ids, 0)
    })
}

#[test]
fn gemma_matches_candle() {
    check_hf("gemma", gemma_config(), &gemma_shape(), gemma_reference);
}

#[test]
fn gemma_attention_bias_matches_candle() {
    let config = with(&gemma_config(), json!({"attention_bias": true}));
    let shape = Shape {
        qkv_bias: true,
        o_bias: true,
        ..gemma_shape()
    };
    check_hf("gemma-bias", config, &shape, gemma_reference);
}

fn phi3_config() -> Json {
    json!({
        "architectures": ["Phi3ForCausalLM"],
        "model_type": "phi3",
        "hidden_size": 48,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": VOCAB,
        "max_position_embeddings": CONTEXT,
        "original_max_position_embeddings": CONTEXT,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "rope_scaling": null,
        // As in Phi-3-mini-4k (2047 of 4096): longer than the sequences here.
        "sliding_window": CONTEXT - 1,
        "tie_word_embeddings": false,
        "hidden_act": "silu",
        "attention_bias": false,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32"
    })
}

#[test]
fn phi3_matches_candle() {
    let shape = Shape {
        fused: true,
        ..Shape::of(&phi3_config())
    };
    check_hf("phi3", phi3_config(), &shape, |config, dir| {
        let cfg: phi3::Config = serde_json::from_value(config.clone()).expect("phi3 config");
        let mut model = phi3::Model::new(&cfg, var_builder(dir)).expect("candle phi3");
        reference_rows(&sequences(), |ids| {
            model.clear_kv_cache();
            model.forward(ids, 0)
        })
    });
}

// ---------------------------------------------------------------- GGUF

fn gguf_tensor(t: &Tensor) -> QTensor {
    QTensor::quantize(t, GgmlDType::F32).expect("an f32 GGUF tensor")
}

/// llama.cpp's reordering of query and key rows for interleaved rotary pairs
/// (`permute` in convert_hf_to_gguf.py).
fn permute_rows(w: &Tensor, heads: usize) -> Tensor {
    let dims = w.dims().to_vec();
    let rows = dims[0];
    let mut split = vec![heads, 2, rows / heads / 2];
    split.extend(&dims[1..]);
    w.reshape(split)
        .and_then(|t| t.transpose(1, 2))
        .and_then(|t| t.contiguous())
        .and_then(|t| t.reshape(dims))
        .expect("permute")
}

/// llama 3 rope scaling as llama.cpp stores it (`rope_freqs.weight`): one divisor per
/// frequency.
fn llama3_rope_freqs(config: &Json, head_dim: usize) -> Vec<f32> {
    let s = &config["rope_scaling"];
    let get = |k: &str| s[k].as_f64().expect("rope_scaling field");
    let (factor, low, high, old) = (
        get("factor"),
        get("low_freq_factor"),
        get("high_freq_factor"),
        get("original_max_position_embeddings"),
    );
    let theta = config["rope_theta"].as_f64().expect("rope_theta");
    (0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let f = if wavelen < old / high {
                1.0
            } else if wavelen > old / low {
                factor
            } else {
                let smooth = (old / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            };
            f as f32
        })
        .collect()
}

/// The weights of a Hugging Face folder as an f32 GGUF file of architecture `arch`, with
/// the metadata llama.cpp's converter writes.
fn write_gguf(path: &Path, arch: &str, config: &Json, shape: &Shape, hf: &HashMap<String, Tensor>) {
    use gguf_file::Value as V;
    let get = |name: &str| -> &Tensor { hf.get(name).unwrap_or_else(|| panic!("{name}")) };
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut put = |name: String, t: &Tensor| tensors.push((name, gguf_tensor(t)));
    put("token_embd.weight".into(), get("model.embed_tokens.weight"));
    put("output_norm.weight".into(), get("model.norm.weight"));
    if let Some(head) = hf.get("lm_head.weight") {
        put("output.weight".into(), head);
    }
    let permute = arch == "llama";
    for l in 0..shape.layers {
        let hf_name = |n: &str| format!("model.layers.{l}.{n}");
        let blk = |n: &str| format!("blk.{l}.{n}");
        for (from, to, heads) in [
            ("self_attn.q_proj", "attn_q", shape.heads),
            ("self_attn.k_proj", "attn_k", shape.kv_heads),
        ] {
            let w = get(&hf_name(&format!("{from}.weight")));
            let w = if permute {
                permute_rows(w, heads)
            } else {
                w.clone()
            };
            put(blk(&format!("{to}.weight")), &w);
        }
        for (from, to) in [
            ("self_attn.v_proj.weight", "attn_v.weight"),
            ("self_attn.o_proj.weight", "attn_output.weight"),
            ("mlp.gate_proj.weight", "ffn_gate.weight"),
            ("mlp.up_proj.weight", "ffn_up.weight"),
            ("mlp.down_proj.weight", "ffn_down.weight"),
            ("input_layernorm.weight", "attn_norm.weight"),
            ("post_attention_layernorm.weight", "ffn_norm.weight"),
            ("self_attn.q_proj.bias", "attn_q.bias"),
            ("self_attn.k_proj.bias", "attn_k.bias"),
            ("self_attn.v_proj.bias", "attn_v.bias"),
        ] {
            if let Some(t) = hf.get(&hf_name(from)) {
                put(blk(to), t);
            }
        }
    }
    if arch == "llama" && config["rope_scaling"]["rope_type"] == json!("llama3") {
        let freqs = llama3_rope_freqs(config, shape.head_dim);
        let n = freqs.len();
        put(
            "rope_freqs.weight".into(),
            &Tensor::from_vec(freqs, n, &Device::Cpu).expect("rope_freqs"),
        );
    }
    let num = |k: &str| config[k].as_f64().expect(k);
    let key = |k: &str| format!("{arch}.{k}");
    let metadata: Vec<(String, V)> = vec![
        ("general.architecture".into(), V::String(arch.into())),
        (key("context_length"), V::U32(CONTEXT as u32)),
        (key("embedding_length"), V::U32(shape.hidden as u32)),
        (key("block_count"), V::U32(shape.layers as u32)),
        (
            key("feed_forward_length"),
            V::U32(shape.intermediate as u32),
        ),
        (key("attention.head_count"), V::U32(shape.heads as u32)),
        (
            key("attention.head_count_kv"),
            V::U32(shape.kv_heads as u32),
        ),
        (
            key("attention.layer_norm_rms_epsilon"),
            V::F32(num("rms_norm_eps") as f32),
        ),
        (key("rope.freq_base"), V::F32(num("rope_theta") as f32)),
        (key("rope.dimension_count"), V::U32(shape.head_dim as u32)),
        ("tokenizer.ggml.bos_token_id".into(), V::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), V::U32(2)),
    ];
    let metadata: Vec<(&str, &V)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let mut file = std::fs::File::create(path).expect("create the GGUF file");
    gguf_file::write(&mut file, &metadata, &tensors).expect("write the GGUF file");
}

/// The rows of beb's reading of a Hugging Face folder (the reference for its GGUF file).
fn beb_rows(dir: &Path) -> Vec<Vec<Vec<f64>>> {
    let m = load_run(dir, uncached());
    sequences()
        .iter()
        .map(|seq| {
            (1..=seq.len())
                .map(|n| m.next_logprobs(&seq[..n]).expect("logprobs").to_vec())
                .collect()
        })
        .collect()
}

#[test]
fn gguf_qwen2_matches_the_folder_and_candle() {
    let scratch = Scratch::new("gguf-qwen2");
    let (config, shape) = (qwen2_config(), qwen2_shape());
    let dir = scratch.0.join("hf");
    write_folder(&dir, &config, &shape, 11);
    // The folder itself against candle's qwen2 first.
    let hf_reference = qwen2_reference(&config, &dir);
    compare(
        "qwen2 (folder)",
        &dir,
        &LoadOptions::default(),
        &hf_reference,
    );
    let gguf = scratch.0.join("model.gguf");
    write_gguf(&gguf, "qwen2", &config, &shape, &read_weights(&dir));
    let options = LoadOptions {
        tokenizer: Some(dir.join("tokenizer.json")),
        ..LoadOptions::default()
    };
    let d = compare("qwen2 (GGUF vs folder)", &gguf, &options, &beb_rows(&dir));
    assert!(d <= TOLERANCE);
    // And against candle's own GGUF qwen2.
    let mut file = std::fs::File::open(&gguf).expect("open");
    let content = gguf_file::Content::read(&mut file).expect("read GGUF");
    let mut model = quantized_qwen2::ModelWeights::from_gguf(content, &mut file, &Device::Cpu)
        .expect("candle quantized qwen2");
    let rows = reference_rows(&sequences(), |ids| {
        model.clear_kv_cache();
        model.forward(ids, 0)
    });
    compare("qwen2 (GGUF vs candle GGUF)", &gguf, &options, &rows);
}

#[test]
fn gguf_llama_matches_the_folder() {
    // Query and key rows permuted for interleaved rotary pairs, llama 3 rope factors as a
    // tensor, an untied output layer: the folder is checked against candle above.
    let scratch = Scratch::new("gguf-llama");
    let config = llama_config();
    let shape = Shape::of(&config);
    let dir = scratch.0.join("hf");
    write_folder(&dir, &config, &shape, 11);
    let gguf = scratch.0.join("model.gguf");
    write_gguf(&gguf, "llama", &config, &shape, &read_weights(&dir));
    let options = LoadOptions {
        tokenizer: Some(dir.join("tokenizer.json")),
        ..LoadOptions::default()
    };
    compare("llama (GGUF vs folder)", &gguf, &options, &beb_rows(&dir));
}
