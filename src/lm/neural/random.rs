//! Randomly initialised llama checkpoints written as Hugging Face folders: test fixtures
//! and the benchmark's larger model, loaded through the ordinary loader.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

/// The shape of a random llama.
#[derive(Clone, Debug)]
pub struct RandomLlama {
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub vocab: usize,
    pub context: usize,
    /// Standard deviation of the weights (larger: peakier next-token distributions).
    pub std: f64,
}

impl RandomLlama {
    /// Number of weights (embeddings tied to the output layer).
    pub fn parameters(&self) -> usize {
        let hd = self.hidden / self.heads;
        let attn = 2 * self.hidden * self.hidden + 2 * self.hidden * self.kv_heads * hd;
        let mlp = 3 * self.hidden * self.intermediate;
        self.vocab * self.hidden + self.layers * (attn + mlp + 2 * self.hidden) + self.hidden
    }
}

fn normal(rng: &mut ChaCha20Rng, n: usize, std: f64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            // Box-Muller.
            let u: f64 = rng.random::<f64>().max(1e-300);
            let v: f64 = rng.random();
            ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos() * std) as f32
        })
        .collect()
}

/// Write config.json, model.safetensors and the given tokenizer.json into `dir`.
pub fn write_random_llama(
    dir: &Path,
    spec: &RandomLlama,
    seed: u64,
    tokenizer_json: &str,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let hd = spec.hidden / spec.heads;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut put = |name: String, shape: Vec<usize>, values: Vec<f32>| -> Result<(), String> {
        let t = Tensor::from_vec(values, shape, &Device::Cpu).map_err(|e| e.to_string())?;
        tensors.insert(name, t);
        Ok(())
    };
    let h = spec.hidden;
    put(
        "model.embed_tokens.weight".into(),
        vec![spec.vocab, h],
        normal(&mut rng, spec.vocab * h, spec.std),
    )?;
    for l in 0..spec.layers {
        let p = format!("model.layers.{l}");
        let shapes = [
            ("self_attn.q_proj", spec.heads * hd, h),
            ("self_attn.k_proj", spec.kv_heads * hd, h),
            ("self_attn.v_proj", spec.kv_heads * hd, h),
            ("self_attn.o_proj", h, spec.heads * hd),
            ("mlp.gate_proj", spec.intermediate, h),
            ("mlp.up_proj", spec.intermediate, h),
            ("mlp.down_proj", h, spec.intermediate),
        ];
        for (name, rows, cols) in shapes {
            let std = spec.std / (cols as f64 / 64.0).sqrt().max(1.0);
            put(
                format!("{p}.{name}.weight"),
                vec![rows, cols],
                normal(&mut rng, rows * cols, std),
            )?;
        }
        put(format!("{p}.input_layernorm.weight"), vec![h], vec![1.0; h])?;
        put(
            format!("{p}.post_attention_layernorm.weight"),
            vec![h],
            vec![1.0; h],
        )?;
    }
    put("model.norm.weight".into(), vec![h], vec![1.0; h])?;
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))
        .map_err(|e| e.to_string())?;
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": spec.hidden,
        "intermediate_size": spec.intermediate,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads,
        "vocab_size": spec.vocab,
        "max_position_embeddings": spec.context,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": true,
        "hidden_act": "silu",
    });
    std::fs::write(dir.join("config.json"), config.to_string())
        .map_err(|e| format!("cannot write config.json: {e}"))?;
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json)
        .map_err(|e| format!("cannot write tokenizer.json: {e}"))?;
    Ok(())
}

/// A word-level tokenizer.json over `words` (ids in order), split on whitespace; the first
/// word doubles as the unknown token.
pub fn word_tokenizer_json(words: &[&str]) -> String {
    let vocab: serde_json::Map<String, serde_json::Value> = words
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), serde_json::json!(i)))
        .collect();
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": null,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": false},
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": words.first().copied().unwrap_or("<unk>")}
    })
    .to_string()
}
