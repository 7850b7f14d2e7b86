//! Finetuning: the differentiable forward pass agrees with the inference one, LoRA trains only
//! the adapter, a PEFT adapter written by beb loads back and scores identically, training is
//! deterministic from the seed and cached, and finetuned P_minus / P_plus tell held-out
//! statements of the two sides apart (the paper's appendix J check; `--ignored`, slower).
//!
//! Tests that need the shared model and data skip with a message when they are missing, and
//! fail when `CI` is set.

mod common;

use std::path::{Path, PathBuf};

use common::{shared, stories};
use std::time::Instant;

use beb::data::texts::{self, Format};
use beb::lm::neural::random::{RandomLlama, word_tokenizer_json, write_random_llama};
use beb::lm::neural::train::{self, Method, Request, Schedule, TrainOptions};
use beb::lm::neural::{ComputeOptions, LoadOptions, NeuralModel, lora};

fn load(path: &Path) -> NeuralModel {
    NeuralModel::load(path, &LoadOptions::default(), &ComputeOptions::default())
        .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

const STATEMENTS: &[&str] = &[
    "I like to help my friends",
    "It is good to share toys",
    "I am kind to animals",
    "I say thank you to my mom",
    "I like to play in the park with others",
    "Being nice makes people happy",
];

fn statements() -> Vec<String> {
    STATEMENTS.iter().map(|s| s.to_string()).collect()
}

fn options(method: Method, epochs: usize, lr: f64, seed: u8) -> TrainOptions {
    TrainOptions {
        method,
        epochs,
        lr,
        batch: 4,
        weight_decay: 0.01,
        schedule: Schedule::Linear,
        seed: [seed; 32],
    }
}

fn lora_method(rank: usize) -> Method {
    Method::Lora {
        rank,
        alpha: 2.0 * rank as f64,
        targets: vec!["q_proj".into(), "v_proj".into()],
    }
}

fn request(model: &NeuralModel, statements: &[String], o: TrainOptions, cache: &Path) -> Request {
    let built = texts::build(statements, 3, &Format::Lines, ".\n");
    Request {
        options: o,
        texts: train::encode_texts(model, &built).expect("encode"),
        data: serde_json::json!({"test": true}),
        cache_root: cache.to_path_buf(),
    }
}

fn finetune(base: &NeuralModel, req: &Request) -> NeuralModel {
    train::finetune(base, req, &mut |_| true).unwrap_or_else(|e| panic!("finetune: {e}"))
}

/// Sum of log P(statement + ".\n") after BOS.
fn score(model: &NeuralModel, text: &str) -> f64 {
    let mut ids = vec![model.bos().unwrap_or(1)];
    ids.extend(model.encode(text).expect("encode"));
    model.token_logprobs(&ids).expect("score").iter().sum()
}

fn story_ids(model: &NeuralModel) -> Vec<u32> {
    let mut ids = vec![1];
    ids.extend(
        model
            .encode("Once upon a time, there was a little girl named Lily. She loved to play.")
            .expect("encode"),
    );
    ids
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn differentiable_forward_agrees_with_the_inference_path() {
    // A random llama with grouped-query attention and rotate-half rotary embeddings.
    let dir = common::scratch("finetune-test");
    let words = ["<unk>", "<s>", "a", "b", "c", "d", "e", "f"];
    let spec = RandomLlama {
        hidden: 32,
        intermediate: 48,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        vocab: words.len(),
        context: 64,
        std: 0.5,
    };
    write_random_llama(&dir, &spec, 3, &word_tokenizer_json(&words)).expect("write");
    let random = load(&dir);
    let ids: Vec<u32> = (0..40).map(|i| (i * 5 % 7) as u32 + 1).collect();
    let d = max_diff(
        &random.token_logprobs(&ids).expect("inference"),
        &train::training_logprobs(&random, &ids).expect("training"),
    );
    assert!(d < 1e-4, "random llama: {d}");
    let _ = std::fs::remove_dir_all(&dir);
    // stories260K in both rotary layouts (interleaved in the llama2.c file).
    let Some(dir) = stories() else { return };
    for path in ["hf", "stories260K.bin"] {
        let model = load(&dir.join(path));
        let ids = story_ids(&model);
        let d = max_diff(
            &model.token_logprobs(&ids).expect("inference"),
            &train::training_logprobs(&model, &ids).expect("training"),
        );
        println!("{path}: max difference {d:.2e} nats/token");
        assert!(d < 1e-4, "{path}: {d}");
    }
}

#[test]
fn lora_trains_only_the_adapter() {
    let Some(dir) = stories() else { return };
    let base = load(&dir.join("hf"));
    let c = base.config().clone();
    let (hd, kv) = (c.head_dim, c.kv_heads);
    for rank in [1, 4] {
        let method = lora_method(rank);
        let expected = c.layers * rank * ((c.hidden + c.heads * hd) + (c.hidden + kv * hd));
        assert_eq!(
            train::trainable_parameters(&base, &method).expect("count"),
            expected,
            "rank {rank}"
        );
    }
    let all = Method::Lora {
        rank: 2,
        alpha: 4.0,
        targets: lora::TARGETS.iter().map(|s| s.to_string()).collect(),
    };
    let per_layer = 2
        * (2 * (c.hidden + c.heads * hd)
            + 2 * (c.hidden + kv * hd)
            + 2 * (c.hidden + c.intermediate)
            + (c.intermediate + c.hidden));
    assert_eq!(
        train::trainable_parameters(&base, &all).expect("count"),
        c.layers * per_layer
    );
    assert_eq!(
        train::trainable_parameters(&base, &Method::Full).expect("count"),
        base.parameters(),
        "full finetuning trains every weight"
    );
    // Training moves the adapter only: the base's scores are unchanged, the adapter file
    // holds exactly rank-r matrices for the targets.
    let before = base.token_logprobs(&story_ids(&base)).expect("score");
    let cache = common::scratch("finetune-test");
    let tuned = finetune(
        &base,
        &request(
            &base,
            &statements(),
            options(lora_method(4), 2, 1e-2, 7),
            &cache,
        ),
    );
    assert_eq!(
        base.token_logprobs(&story_ids(&base)).expect("score"),
        before
    );
    assert_ne!(
        tuned.token_logprobs(&story_ids(&base)).expect("score"),
        before
    );
    let origin = tuned.origin().expect("origin");
    let tensors = candle_core::safetensors::load(
        origin.folder.join(lora::WEIGHTS_FILE),
        &candle_core::Device::Cpu,
    )
    .expect("adapter weights");
    assert_eq!(tensors.len(), c.layers * 2 * 2);
    let stored: usize = tensors.values().map(|t| t.elem_count()).sum();
    assert_eq!(
        stored,
        train::trainable_parameters(&base, &lora_method(4)).expect("count")
    );
    assert!(tensors.contains_key("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
    let info = origin.manifest.as_ref().expect("manifest");
    assert_eq!(info["trainable_parameters"].as_u64(), Some(stored as u64));
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn a_peft_adapter_written_by_beb_loads_back_and_scores_identically() {
    let Some(dir) = stories() else { return };
    let base = load(&dir.join("hf"));
    let cache = common::scratch("finetune-test");
    let req = request(
        &base,
        &statements(),
        options(lora_method(4), 2, 1e-2, 1),
        &cache,
    );
    let tuned = finetune(&base, &req);
    let folder = tuned.origin().expect("origin").folder.clone();
    for file in [lora::CONFIG_FILE, lora::WEIGHTS_FILE, train::MANIFEST] {
        assert!(folder.join(file).is_file(), "{file}");
    }
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(folder.join(lora::CONFIG_FILE)).expect("config"),
    )
    .expect("json");
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 4);
    assert_eq!(
        config["target_modules"],
        serde_json::json!(["q_proj", "v_proj"])
    );
    // Loaded back onto a freshly loaded base: the same scores, bit for bit.
    let again = train::with_adapter(&load(&dir.join("hf")), &folder).expect("adapter");
    let ids = story_ids(&base);
    let a = tuned.token_logprobs(&ids).expect("tuned");
    assert_eq!(a, again.token_logprobs(&ids).expect("loaded"));
    assert_ne!(a, base.token_logprobs(&ids).expect("base"));
    // Through the cached, batched scoring path too.
    for s in STATEMENTS {
        assert_eq!(score(&tuned, s), score(&again, s));
    }
    // The adapter's model: base files plus the adapter file; its identity says so.
    assert_eq!(again.files().len(), 2);
    assert!(
        again.identity().contains("LoRA adapter r=4"),
        "{}",
        again.identity()
    );
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn training_is_deterministic_from_the_seed_and_cached() {
    let Some(dir) = stories() else { return };
    let base = load(&dir.join("hf"));
    let (c1, c2) = (
        common::scratch("finetune-test"),
        common::scratch("finetune-test"),
    );
    let bytes = |m: &NeuralModel| {
        std::fs::read(m.origin().expect("origin").folder.join(lora::WEIGHTS_FILE)).expect("read")
    };
    let first = finetune(
        &base,
        &request(
            &base,
            &statements(),
            options(lora_method(2), 2, 1e-2, 5),
            &c1,
        ),
    );
    let second = finetune(
        &base,
        &request(
            &base,
            &statements(),
            options(lora_method(2), 2, 1e-2, 5),
            &c2,
        ),
    );
    assert!(!first.origin().expect("o").cached && !second.origin().expect("o").cached);
    assert_eq!(bytes(&first), bytes(&second), "same seed, same adapter");
    assert_eq!(
        first.origin().expect("o").losses(),
        second.origin().expect("o").losses()
    );
    let other = finetune(
        &base,
        &request(
            &base,
            &statements(),
            options(lora_method(2), 2, 1e-2, 6),
            &c2,
        ),
    );
    assert_ne!(
        bytes(&first),
        bytes(&other),
        "another seed, another adapter"
    );
    // The same request again is found in the cache, with the same key and weights.
    let started = Instant::now();
    let cached = finetune(
        &base,
        &request(
            &base,
            &statements(),
            options(lora_method(2), 2, 1e-2, 5),
            &c1,
        ),
    );
    let o = cached.origin().expect("origin");
    assert!(o.cached);
    assert_eq!(o.key, first.origin().expect("o").key);
    assert_eq!(bytes(&cached), bytes(&first));
    assert!(started.elapsed().as_secs_f64() < 2.0);
    // Any hyperparameter is part of the key.
    let k = |o: TrainOptions| train::cache_key(&base, &o, &[vec![5, 6]]);
    let reference = k(options(lora_method(2), 2, 1e-2, 5));
    assert_ne!(reference, k(options(lora_method(2), 3, 1e-2, 5)));
    assert_ne!(reference, k(options(lora_method(2), 2, 2e-2, 5)));
    assert_ne!(reference, k(options(lora_method(3), 2, 1e-2, 5)));
    assert_ne!(reference, k(options(Method::Full, 2, 1e-2, 5)));
    assert_ne!(
        reference,
        train::cache_key(&base, &options(lora_method(2), 2, 1e-2, 5), &[vec![5, 7]])
    );
    let _ = std::fs::remove_dir_all(&c1);
    let _ = std::fs::remove_dir_all(&c2);
}

#[test]
fn full_finetuning_lowers_the_loss_and_reloads() {
    let Some(dir) = stories() else { return };
    let base = load(&dir.join("stories260K.bin"));
    let cache = common::scratch("finetune-test");
    let req = request(
        &base,
        &statements(),
        options(Method::Full, 4, 3e-3, 2),
        &cache,
    );
    let tuned = finetune(&base, &req);
    let losses = tuned.origin().expect("origin").losses();
    assert_eq!(losses.len(), 4);
    assert!(losses[3] < losses[0], "{losses:?}");
    // The trained statements became more likely.
    let gain = score(&tuned, "I am kind to animals.\n") - score(&base, "I am kind to animals.\n");
    assert!(gain > 1.0, "gain {gain}");
    let again = finetune(&base, &req);
    assert!(again.origin().expect("origin").cached);
    let ids = story_ids(&base);
    assert_eq!(
        tuned.token_logprobs(&ids).expect("a"),
        again.token_logprobs(&ids).expect("b")
    );
    assert!(
        tuned.identity().contains("full finetune"),
        "{}",
        tuned.identity()
    );
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn bad_inputs_are_diagnosed() {
    let Some(dir) = stories() else { return };
    let base = load(&dir.join("hf"));
    let cache = common::scratch("finetune-test");
    let missing = train::with_adapter(&base, &cache.join("nope"));
    let message = missing.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("nope") && message.contains("not a folder"),
        "{message}"
    );
    // A config without weights.
    let half = cache.join("half");
    std::fs::create_dir_all(&half).expect("mkdir");
    std::fs::write(
        half.join(lora::CONFIG_FILE),
        r#"{"peft_type": "LORA", "r": 2, "lora_alpha": 4}"#,
    )
    .expect("write");
    let message = train::with_adapter(&base, &half)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("adapter_model.safetensors is missing"),
        "{message}"
    );
    // Weights of the wrong shape.
    let a = candle_core::Tensor::zeros((2, 10), candle_core::DType::F32, &candle_core::Device::Cpu)
        .expect("a");
    let b = candle_core::Tensor::zeros((64, 2), candle_core::DType::F32, &candle_core::Device::Cpu)
        .expect("b");
    let tensors = std::collections::HashMap::from([
        (lora::key(0, "q_proj", "A"), a),
        (lora::key(0, "q_proj", "B"), b),
    ]);
    candle_core::safetensors::save(&tensors, half.join(lora::WEIGHTS_FILE)).expect("save");
    let message = train::with_adapter(&base, &half)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("needs [r, 64]"), "{message}");
    // Quantized weights cannot be trained.
    let q8 = load(&dir.join("stories260K-q8_0.gguf"));
    let req = request(
        &q8,
        &statements(),
        options(lora_method(2), 1, 1e-2, 1),
        &cache,
    );
    let message = train::finetune(&q8, &req, &mut |_| true)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("quantized"), "{message}");
    // No full group of statements: no texts.
    let req = request(
        &base,
        &statements()[..2],
        options(lora_method(2), 1, 1e-2, 1),
        &cache,
    );
    assert!(train::finetune(&base, &req, &mut |_| true).is_err());
    // Stopping mid-run.
    let req = request(
        &base,
        &statements(),
        options(lora_method(2), 3, 1e-2, 1),
        &cache,
    );
    let message = train::finetune(&base, &req, &mut |s| s.step < 2)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("interrupted"), "{message}");
    let _ = std::fs::remove_dir_all(&cache);
}

/// The appendix J check on stories260K: P_minus finetuned on the ill-behaved statements and
/// P_plus on the well-behaved ones (80% of each side), and the fraction of held-out
/// statements each pair ranks right. Slow (four finetunes): `cargo test --release --test
/// finetune -- --ignored --nocapture`; BEB_TEST_EPOCHS, BEB_TEST_LR, BEB_TEST_METHOD (lora,
/// full), BEB_TEST_RANK, BEB_TEST_TARGETS and BEB_TEST_FINETUNE_CACHE change the run.
#[test]
#[ignore]
fn finetuned_pairs_tell_held_out_statements_apart() {
    let Some(data) = shared("data/persona") else {
        return;
    };
    let Some(dir) = stories() else { return };
    let base = load(&dir.join("hf"));
    let cache = std::env::var_os("BEB_TEST_FINETUNE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::scratch("finetune-test"));
    let method = std::env::var("BEB_TEST_METHOD").unwrap_or_else(|_| "lora".into());
    let epochs: usize = std::env::var("BEB_TEST_EPOCHS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let lr: f64 = std::env::var("BEB_TEST_LR")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1e-2);
    let rank: usize = std::env::var("BEB_TEST_RANK")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let targets: Vec<String> = std::env::var("BEB_TEST_TARGETS")
        .unwrap_or_else(|_| "q_proj,v_proj".into())
        .split(',')
        .map(str::to_string)
        .collect();
    let method = if method == "full" {
        Method::Full
    } else {
        Method::Lora {
            rank,
            alpha: 32.0,
            targets,
        }
    };
    for (behavior, ill_is_matching) in [("agreeableness", false), ("anti-immigration", true)] {
        let persona =
            beb::data::read_persona(&data.join(format!("{behavior}.jsonl"))).expect("persona");
        let (ill, good) = if ill_is_matching {
            (persona.matching, persona.not_matching)
        } else {
            (persona.not_matching, persona.matching)
        };
        // As a script does it: split(..., seed: 1) and split(..., seed: 2), finetune's seed 0.
        let (ill_train, ill_test) =
            beb::data::split(&ill, 0.2, &mut beb::seed::stream_rng(1, "split"));
        let (good_train, good_test) =
            beb::data::split(&good, 0.2, &mut beb::seed::stream_rng(2, "split"));
        let mut o = options(method.clone(), epochs, lr, 0);
        o.batch = 8;
        o.seed = beb::seed::stream_seed(0, "finetune");
        let started = Instant::now();
        let minus = finetune(&base, &request(&base, &ill_train, o.clone(), &cache));
        let t_minus = started.elapsed().as_secs_f64();
        let plus = finetune(&base, &request(&base, &good_train, o, &cache));
        let t_plus = started.elapsed().as_secs_f64() - t_minus;
        let rate = |tests: &[String], minus_wins: bool, suffix: &str| {
            let right = tests
                .iter()
                .filter(|s| {
                    let text = format!("{s}{suffix}");
                    (score(&minus, &text) > score(&plus, &text)) == minus_wins
                })
                .count();
            right as f64 / tests.len() as f64
        };
        println!(
            "{behavior}: P_minus {:.1}s losses {:?}; P_plus {:.1}s losses {:?}",
            t_minus,
            minus.origin().expect("o").losses(),
            t_plus,
            plus.origin().expect("o").losses()
        );
        let ill_rate = rate(&ill_test, true, ".\n");
        println!(
            "{behavior}: held-out ill-behaved: {:.3} ({} statements; as bare statements {:.3}); held-out well-behaved: {:.3}",
            ill_rate,
            ill_test.len(),
            rate(&ill_test, true, ""),
            rate(&good_test, false, ".\n")
        );
        assert!(ill_rate >= 0.8, "{behavior}: {ill_rate}");
    }
}

/// Run `script` with the run folder `dir`: (stdout, the error if it failed).
fn run_script(script: &str, dir: &Path) -> (String, Option<beb::error::BebError>) {
    common::run_in_process(script, Some(dir))
}

#[test]
fn the_builtins_read_train_cache_adapt_and_chat() {
    let Some(models) = stories() else { return };
    let dir = common::scratch("finetune-test");
    let rows: Vec<String> = STATEMENTS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let answer = if i % 2 == 0 { " Yes" } else { " No" };
            serde_json::json!({"statement": s, "answer_matching_behavior": answer}).to_string()
        })
        .collect();
    std::fs::write(dir.join("kind.jsonl"), rows.join("\n") + "\n").expect("write");
    let script = format!(
        r#"let base = load("{hf}")
let p = persona("{data}")
print p.behavior, len(p.matching), len(p.not_matching)
let both = concat(p.matching, p.not_matching)
let m = finetune(base, both, epochs: 2, lr: 1e-2, rank: 2, cache: "ft", seed: 3)
let info = finetune_info(m)
print info.kind, info.cached, info.trainable, len(info.losses), info.texts
let again = adapter(base, info.folder)
let s = prompt(base, "I like to help.")
print logprob(m, s) == logprob(again, s), logprob(m, s) == logprob(base, s)
print finetune_info(finetune(base, both, epochs: 2, lr: 1e-2, rank: 2, cache: "ft", seed: 3)).cached
let full = finetune(base, both, method: "full", epochs: 1, lr: 1e-3, cache: "ft", format: "inst")
print finetune_info(full).kind, finetune_info(full).trainable
let c = chat(base, ["Hi", "Hello.", "Bye"], system: "Be nice.", unit: sentence(until: "[/INST]"))
print len(c), decode(base, c[1])
"#,
        hf = models.join("hf").display(),
        data = dir.join("kind.jsonl").display(),
    );
    let (out, error) = run_script(&script, &dir);
    assert!(error.is_none(), "{error:?}\n{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "kind 3 3");
    assert_eq!(lines[1], "lora false 2240 2 6");
    assert_eq!(lines[2], "true false");
    assert_eq!(lines[3], "true");
    assert_eq!(lines[4], "full 260032");
    assert_eq!(lines[5], "3 Hello. </s>", "units end at [/INST] and at EOS");
    assert!(
        dir.join("ft").is_dir(),
        "the cache is inside the run folder"
    );
    // Diagnostics: a missing file names its path; a cache outside the run folder is refused.
    let (_, error) = run_script(r#"let p = persona("no/such.jsonl")"#, &dir);
    let error = error.expect("an error");
    assert_eq!(error.kind, beb::error::ErrorKind::Io);
    assert!(error.message.contains("no/such.jsonl"), "{}", error.message);
    let (_, error) = run_script(
        &format!(
            r#"finetune(load("{}"), ["a", "b", "c"], cache: "/elsewhere")"#,
            models.join("hf").display()
        ),
        &dir,
    );
    let message = error.map(|e| e.message).unwrap_or_default();
    assert!(message.starts_with("refusing to write"), "{message}");
    let _ = std::fs::remove_dir_all(&dir);
}
