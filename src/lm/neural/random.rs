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

/// How a weight's values are drawn.
#[derive(Clone, Copy)]
enum Init {
    Normal(f64),
    Ones,
}

/// Every weight in Hugging Face naming and [rows, cols] layout, in the order drawn: the
/// embedding, each layer, the final norm, then (untied only) the output layer.
fn weight_list(spec: &RandomLlama, untied: bool) -> Vec<(String, Vec<usize>, Init)> {
    let hd = spec.hidden / spec.heads;
    let h = spec.hidden;
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![spec.vocab, h],
        Init::Normal(spec.std),
    )];
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
            out.push((
                format!("{p}.{name}.weight"),
                vec![rows, cols],
                Init::Normal(std),
            ));
        }
        out.push((format!("{p}.input_layernorm.weight"), vec![h], Init::Ones));
        out.push((
            format!("{p}.post_attention_layernorm.weight"),
            vec![h],
            Init::Ones,
        ));
    }
    out.push(("model.norm.weight".into(), vec![h], Init::Ones));
    if untied {
        let std = spec.std / (h as f64 / 64.0).sqrt().max(1.0);
        out.push((
            "lm_head.weight".into(),
            vec![spec.vocab, h],
            Init::Normal(std),
        ));
    }
    out
}

/// Draw the weights one at a time from `seed` and hand each to `each` (name, shape, values),
/// so a model larger than memory in f32 can be written.
fn draw_weights(
    spec: &RandomLlama,
    seed: u64,
    untied: bool,
    mut each: impl FnMut(&str, &[usize], Vec<f32>) -> Result<(), String>,
) -> Result<(), String> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    for (name, shape, init) in weight_list(spec, untied) {
        let n = shape.iter().product();
        let values = match init {
            Init::Normal(std) => normal(&mut rng, n, std),
            Init::Ones => vec![1.0; n],
        };
        each(&name, &shape, values)?;
    }
    Ok(())
}

fn write_config(dir: &Path, spec: &RandomLlama, tied: bool) -> Result<(), String> {
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
        "tie_word_embeddings": tied,
        "hidden_act": "silu",
    });
    std::fs::write(dir.join("config.json"), config.to_string())
        .map_err(|e| format!("cannot write config.json: {e}"))
}

/// Write config.json, model.safetensors and the given tokenizer.json into `dir`.
pub fn write_random_llama(
    dir: &Path,
    spec: &RandomLlama,
    seed: u64,
    tokenizer_json: &str,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    draw_weights(spec, seed, false, |name, shape, values| {
        let t = Tensor::from_vec(values, shape, &Device::Cpu).map_err(|e| e.to_string())?;
        tensors.insert(name.to_string(), t);
        Ok(())
    })?;
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))
        .map_err(|e| e.to_string())?;
    write_config(dir, spec, true)?;
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json)
        .map_err(|e| format!("cannot write tokenizer.json: {e}"))?;
    Ok(())
}

/// f32 to bf16 bits, rounding to nearest even (the values are finite).
fn bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// The GGUF name of a Hugging Face llama weight.
fn gguf_name(hf: &str) -> Result<String, String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Ok(f.to_string());
    }
    let rest = hf
        .strip_prefix("model.layers.")
        .ok_or_else(|| format!("no GGUF name for {hf}"))?;
    let (layer, module) = rest
        .split_once('.')
        .ok_or_else(|| format!("no GGUF name for {hf}"))?;
    let short = match module {
        "self_attn.q_proj.weight" => "attn_q",
        "self_attn.k_proj.weight" => "attn_k",
        "self_attn.v_proj.weight" => "attn_v",
        "self_attn.o_proj.weight" => "attn_output",
        "mlp.gate_proj.weight" => "ffn_gate",
        "mlp.up_proj.weight" => "ffn_up",
        "mlp.down_proj.weight" => "ffn_down",
        "input_layernorm.weight" => "attn_norm",
        "post_attention_layernorm.weight" => "ffn_norm",
        _ => return Err(format!("no GGUF name for {hf}")),
    };
    Ok(format!("blk.{layer}.{short}.weight"))
}

/// Rows of a q or k projection reordered from Hugging Face's rotary layout (a head's two
/// halves rotate together) to GGUF llama's (adjacent pairs rotate together), as llama.cpp's
/// converter does, so both files hold the same model.
fn permute_rope_rows(values: &[f32], heads: usize, rows: usize, cols: usize) -> Vec<f32> {
    let hd = rows / heads;
    let half = hd / 2;
    let mut out = vec![0.0; values.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let from = h * hd + j * half + i;
                let to = h * hd + 2 * i + j;
                out[to * cols..(to + 1) * cols]
                    .copy_from_slice(&values[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

/// The tokens of a sentencepiece-style vocabulary of `vocab` entries as llama.cpp expects
/// them: `<unk>`, `<s>`, `</s>`, the 256 byte tokens, then distinct word pieces; with their
/// token types (2 unknown, 3 control, 6 byte, 1 normal).
pub fn sentencepiece_vocab(vocab: usize) -> Vec<(String, i32)> {
    let mut out = vec![
        ("<unk>".to_string(), 2),
        ("<s>".to_string(), 3),
        ("</s>".to_string(), 3),
    ];
    out.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>"), 6)));
    let mut i = 0;
    while out.len() < vocab {
        out.push((format!("\u{2581}w{i}"), 1));
        i += 1;
    }
    out.truncate(vocab);
    out
}

/// Where [`write_random_llama_files`] writes a GGUF copy and in which block type.
pub struct GgufOutput {
    pub path: std::path::PathBuf,
    pub dtype: candle_core::quantized::GgmlDType,
}

/// A random llama with its own output layer (TinyLlama's layout) written as a Hugging Face
/// folder in bf16 (config.json, model.safetensors, a word-level tokenizer.json over
/// [`sentencepiece_vocab`]) and as GGUF files with llama.cpp's metadata and that vocabulary.
/// Weights are drawn one at a time; the safetensors file is streamed, the quantized GGUF
/// tensors (a fraction of the f32 size) are held until each file is written.
pub fn write_random_llama_files(
    dir: &Path,
    spec: &RandomLlama,
    seed: u64,
    ggufs: &[GgufOutput],
) -> Result<(), String> {
    use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
    use std::io::Write;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |e: std::io::Error| format!("cannot write {what}: {e}")
    };
    // safetensors: 8-byte header length, JSON header, then the tensors' bytes in order.
    let list = weight_list(spec, true);
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape, _) in &list {
        let bytes = 2 * shape.iter().product::<usize>();
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut header = serde_json::Value::Object(header).to_string();
    while !header.len().is_multiple_of(8) {
        header.push(' ');
    }
    let st_path = dir.join("model.safetensors");
    let mut st = std::io::BufWriter::new(std::fs::File::create(&st_path).map_err(io(&st_path))?);
    st.write_all(&(header.len() as u64).to_le_bytes())
        .and_then(|()| st.write_all(header.as_bytes()))
        .map_err(io(&st_path))?;
    let hd = spec.hidden / spec.heads;
    let mut quantized: Vec<Vec<(String, QTensor)>> = ggufs.iter().map(|_| Vec::new()).collect();
    draw_weights(spec, seed, true, |name, shape, values| {
        let mut bytes = Vec::with_capacity(2 * values.len());
        for v in &values {
            bytes.extend_from_slice(&bf16_bits(*v).to_le_bytes());
        }
        st.write_all(&bytes).map_err(io(&st_path))?;
        drop(bytes);
        let heads = if name.ends_with("q_proj.weight") {
            Some(spec.heads)
        } else if name.ends_with("k_proj.weight") {
            Some(spec.kv_heads)
        } else {
            None
        };
        let values = match (heads, shape) {
            (Some(heads), [rows, cols]) if *rows == heads * hd => {
                permute_rope_rows(&values, heads, *rows, *cols)
            }
            _ => values,
        };
        let t = Tensor::from_vec(values, shape, &Device::Cpu).map_err(|e| e.to_string())?;
        let gname = gguf_name(name)?;
        for (out, q) in ggufs.iter().zip(quantized.iter_mut()) {
            // Norms stay f32, as llama.cpp's converter keeps them.
            let dtype = if shape.len() == 1 {
                GgmlDType::F32
            } else {
                out.dtype
            };
            q.push((
                gname.clone(),
                QTensor::quantize(&t, dtype).map_err(|e| e.to_string())?,
            ));
        }
        Ok(())
    })?;
    st.flush().map_err(io(&st_path))?;
    drop(st);
    let vocab = sentencepiece_vocab(spec.vocab);
    write_config(dir, spec, false)?;
    let words: Vec<&str> = vocab.iter().map(|(t, _)| t.as_str()).collect();
    std::fs::write(dir.join("tokenizer.json"), word_tokenizer_json(&words))
        .map_err(|e| format!("cannot write tokenizer.json: {e}"))?;
    use gguf_file::Value as V;
    let u32_of = |x: usize| V::U32(x as u32);
    let metadata: Vec<(&str, V)> = vec![
        ("general.architecture", V::String("llama".into())),
        ("general.name", V::String("random llama".into())),
        ("llama.context_length", u32_of(spec.context)),
        ("llama.embedding_length", u32_of(spec.hidden)),
        ("llama.block_count", u32_of(spec.layers)),
        ("llama.feed_forward_length", u32_of(spec.intermediate)),
        ("llama.attention.head_count", u32_of(spec.heads)),
        ("llama.attention.head_count_kv", u32_of(spec.kv_heads)),
        ("llama.rope.dimension_count", u32_of(hd)),
        ("llama.rope.freq_base", V::F32(10000.0)),
        ("llama.attention.layer_norm_rms_epsilon", V::F32(1e-5)),
        ("tokenizer.ggml.model", V::String("llama".into())),
        (
            "tokenizer.ggml.tokens",
            V::Array(vocab.iter().map(|(t, _)| V::String(t.clone())).collect()),
        ),
        (
            "tokenizer.ggml.scores",
            V::Array((0..vocab.len()).map(|i| V::F32(-(i as f32))).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            V::Array(vocab.iter().map(|(_, k)| V::I32(*k)).collect()),
        ),
        ("tokenizer.ggml.unknown_token_id", V::U32(0)),
        ("tokenizer.ggml.bos_token_id", V::U32(1)),
        ("tokenizer.ggml.eos_token_id", V::U32(2)),
    ];
    let metadata: Vec<(&str, &V)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    for (out, tensors) in ggufs.iter().zip(&quantized) {
        let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut f =
            std::io::BufWriter::new(std::fs::File::create(&out.path).map_err(io(&out.path))?);
        gguf_file::write(&mut f, &metadata, &refs).map_err(|e| e.to_string())?;
        f.flush().map_err(io(&out.path))?;
    }
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
