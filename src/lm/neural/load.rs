//! Reading checkpoints: the format is told by the path. A directory is a Hugging Face model
//! (config.json, model.safetensors or shards with an index, tokenizer.json); `*.gguf` is a
//! GGUF file (quantized or float, tokenizer from its metadata unless one is given); `*.bin`
//! is a llama2.c checkpoint (legacy layout, grouped-query attention allowed) read with a
//! tokenizer.json. Weight files are memory-mapped; tensors are copied out in the compute
//! dtype.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use candle_core::quantized::{QMatMul, gguf_file};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use serde_json::Value as Json;

use super::tokenizer::{self, TokenizerHandle};
use super::transformer::{Activation, Config, Layer, Linear, Rope, Transformer};
use crate::lm::{ModelError, ModelResult};

/// The Hugging Face `model_type`s that can be loaded.
pub const HF_ARCHITECTURES: &[&str] = &["llama", "mistral", "qwen2", "gemma", "phi3"];
/// The GGUF `general.architecture`s that can be loaded.
pub const GGUF_ARCHITECTURES: &[&str] = &["llama", "qwen2"];

/// How to load.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub dtype: DType,
    pub device: Device,
    /// A tokenizer.json to use instead of the checkpoint's own.
    pub tokenizer: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            dtype: DType::F32,
            device: Device::Cpu,
            tokenizer: None,
        }
    }
}

/// A loaded checkpoint.
pub struct Loaded {
    pub net: Transformer,
    pub tokenizer: TokenizerHandle,
    pub bos: Option<u32>,
    pub eos: Vec<u32>,
    pub format: &'static str,
    pub files: Vec<PathBuf>,
    pub parameters: usize,
}

fn invalid(message: impl Into<String>) -> ModelError {
    ModelError::Invalid(message.into())
}

fn candle_err(path: &Path, what: &str) -> impl Fn(candle_core::Error) -> ModelError {
    let path = path.display().to_string();
    let what = what.to_string();
    move |e| invalid(format!("{what} {path}: {e}"))
}

/// Load a model, choosing the format from the path.
pub fn load(path: &Path, options: &LoadOptions) -> ModelResult<Loaded> {
    if !path.exists() {
        return Err(invalid(format!(
            "no model at {}: the path does not exist",
            path.display()
        )));
    }
    if path.is_dir() {
        return load_hf(path, options);
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("gguf") => load_gguf(path, options),
        Some("bin") => load_llama2c(path, options),
        Some("safetensors") => Err(invalid(format!(
            "{} is a weight file: load the folder that holds it with its config.json and tokenizer.json",
            path.display()
        ))),
        _ => Err(invalid(format!(
            "cannot tell the format of {}: load a Hugging Face folder (config.json, *.safetensors, tokenizer.json), a .gguf file or a llama2.c .bin checkpoint",
            path.display()
        ))),
    }
}

fn tokenizer_beside(
    path: &Path,
    options: &LoadOptions,
    what: &str,
) -> ModelResult<TokenizerHandle> {
    if let Some(t) = &options.tokenizer {
        return TokenizerHandle::from_file(t);
    }
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let candidate = dir.join("tokenizer.json");
    if candidate.is_file() {
        TokenizerHandle::from_file(&candidate)
    } else {
        Err(invalid(format!(
            "{what} {} comes without a tokenizer.json beside it: pass tokenizer: \"path/to/tokenizer.json\"",
            path.display()
        )))
    }
}

/// Special token ids the tokenizer knows by their usual names.
fn token_named(t: &TokenizerHandle, names: &[&str]) -> Option<u32> {
    names.iter().find_map(|n| t.token_id(n))
}

const BOS_NAMES: &[&str] = &["<s>", "<|begin_of_text|>", "<bos>", "<|endoftext|>"];
const EOS_NAMES: &[&str] = &[
    "</s>",
    "<|end_of_text|>",
    "<eos>",
    "<|endoftext|>",
    "<|im_end|>",
];

// ---------------------------------------------------------------- Hugging Face folders

fn field(config: &Json, key: &str) -> Option<f64> {
    config.get(key).and_then(Json::as_f64)
}

fn usize_field(config: &Json, key: &str, path: &Path) -> ModelResult<usize> {
    config
        .get(key)
        .and_then(Json::as_u64)
        .map(|x| x as usize)
        .ok_or_else(|| {
            invalid(format!(
                "{} lacks the whole number `{key}`",
                path.join("config.json").display()
            ))
        })
}

fn ids_field(config: &Json, key: &str) -> Vec<u32> {
    match config.get(key) {
        Some(Json::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(Json::Array(items)) => items
            .iter()
            .filter_map(Json::as_u64)
            .map(|x| x as u32)
            .collect(),
        _ => Vec::new(),
    }
}

/// llama 3's rope scaling as per-frequency divisors.
fn llama3_factors(scaling: &Json, theta: f64, head_dim: usize) -> ModelResult<Vec<f64>> {
    let get = |k: &str| {
        scaling
            .get(k)
            .and_then(Json::as_f64)
            .ok_or_else(|| invalid(format!("rope_scaling lacks `{k}`")))
    };
    let factor = get("factor")?;
    let low = get("low_freq_factor")?;
    let high = get("high_freq_factor")?;
    let old = get("original_max_position_embeddings")?;
    let low_wavelen = old / low;
    let high_wavelen = old / high;
    Ok((0..head_dim / 2)
        .map(|i| {
            let f = 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / f;
            let scaled = if wavelen < high_wavelen {
                f
            } else if wavelen > low_wavelen {
                f / factor
            } else {
                let smooth = (old / wavelen - low) / (high - low);
                (1.0 - smooth) * f / factor + smooth * f
            };
            f / scaled
        })
        .collect())
}

/// How a Hugging Face architecture lays out its weights.
struct HfLayout {
    /// Biases on the query, key and value projections.
    qkv_bias: bool,
    /// A bias on the attention output projection.
    o_bias: bool,
    /// phi3: one fused qkv_proj and one fused gate_up_proj per layer.
    fused: bool,
    /// The output layer is the embedding matrix.
    tied: bool,
}

/// Which layers use sliding-window attention, as Hugging Face's `layer_types` (explicit or
/// derived from `use_sliding_window` and `max_window_layers`) for qwen2; every layer for
/// mistral and phi3; none for llama and gemma, whose models have no window.
fn sliding_layers(
    arch: &str,
    config: &Json,
    layers: usize,
) -> ModelResult<(Option<usize>, Vec<bool>)> {
    let window = config
        .get("sliding_window")
        .and_then(Json::as_u64)
        .map(|w| w as usize);
    let Some(window) = window else {
        return Ok((None, Vec::new()));
    };
    let marks = match arch {
        "mistral" | "phi3" => vec![true; layers],
        "qwen2" if config.get("use_sliding_window").and_then(Json::as_bool) == Some(true) => {
            match config.get("layer_types").and_then(Json::as_array) {
                Some(types) => {
                    if types.len() != layers {
                        return Err(invalid(format!(
                            "`layer_types` names {} layers of {layers}",
                            types.len()
                        )));
                    }
                    types
                        .iter()
                        .map(|t| t.as_str() == Some("sliding_attention"))
                        .collect()
                }
                None => {
                    // Hugging Face's default for a config without the field.
                    let first = config
                        .get("max_window_layers")
                        .and_then(Json::as_u64)
                        .map_or(28, |n| n as usize);
                    (0..layers).map(|l| l >= first).collect()
                }
            }
        }
        _ => return Ok((None, Vec::new())),
    };
    Ok((Some(window), marks))
}

fn hf_config(dir: &Path, config: &Json) -> ModelResult<(Config, HfLayout)> {
    let arch = config
        .get("model_type")
        .and_then(Json::as_str)
        .ok_or_else(|| {
            invalid(format!(
                "{} has no `model_type`",
                dir.join("config.json").display()
            ))
        })?
        .to_string();
    if !HF_ARCHITECTURES.contains(&arch.as_str()) {
        return Err(ModelError::Unsupported(format!(
            "architecture {arch:?} (model_type in {}) is not supported; supported: {}",
            dir.join("config.json").display(),
            HF_ARCHITECTURES.join(", ")
        )));
    }
    let hidden = usize_field(config, "hidden_size", dir)?;
    let heads = usize_field(config, "num_attention_heads", dir)?;
    let kv_heads = usize_field(config, "num_key_value_heads", dir).unwrap_or(heads);
    let head_dim = match config.get("head_dim").and_then(Json::as_u64) {
        Some(d) => d as usize,
        None => hidden / heads.max(1),
    };
    let rope_theta = field(config, "rope_theta").unwrap_or(10_000.0);
    let act_name = config
        .get("hidden_activation")
        .or_else(|| config.get("hidden_act"))
        .and_then(Json::as_str)
        .unwrap_or("silu");
    let activation = match (arch.as_str(), act_name) {
        ("gemma", a) if a.starts_with("gelu") => Activation::GeluTanh,
        (_, "silu" | "swish") => Activation::Silu,
        (_, other) => {
            return Err(ModelError::Unsupported(format!(
                "activation {other:?} of {arch} is not supported"
            )));
        }
    };
    let mut rope_freq_factors = None;
    match config.get("rope_scaling") {
        None | Some(Json::Null) => {}
        Some(s) => {
            let kind = s
                .get("rope_type")
                .or_else(|| s.get("type"))
                .and_then(Json::as_str)
                .unwrap_or("");
            if kind == "llama3" {
                rope_freq_factors = Some(llama3_factors(s, rope_theta, head_dim)?);
            } else {
                return Err(ModelError::Unsupported(format!(
                    "rope_scaling of type {kind:?} is not supported (supported: llama3)"
                )));
            }
        }
    }
    if field(config, "partial_rotary_factor").is_some_and(|f| f != 1.0) {
        return Err(ModelError::Unsupported(
            "partial rotary embeddings are not supported".into(),
        ));
    }
    if config.get("mlp_bias").and_then(Json::as_bool) == Some(true) {
        return Err(ModelError::Unsupported(
            "biases in the MLP (`mlp_bias`) are not supported".into(),
        ));
    }
    // Biases on every attention projection where the architecture has the option.
    let attention_bias = matches!(arch.as_str(), "llama" | "gemma")
        && config.get("attention_bias").and_then(Json::as_bool) == Some(true);
    let layers = usize_field(config, "num_hidden_layers", dir)?;
    let (sliding_window, sliding_layers) = sliding_layers(&arch, config, layers)?;
    let tied = match arch.as_str() {
        "gemma" => true,
        _ => config
            .get("tie_word_embeddings")
            .and_then(Json::as_bool)
            .unwrap_or(false),
    };
    let cfg = Config {
        hidden,
        intermediate: usize_field(config, "intermediate_size", dir)?,
        layers,
        heads,
        kv_heads,
        head_dim,
        vocab: usize_field(config, "vocab_size", dir)?,
        context: usize_field(config, "max_position_embeddings", dir).unwrap_or(2048),
        rms_eps: field(config, "rms_norm_eps").unwrap_or(1e-6),
        rope_theta,
        rope: Rope::Half,
        rope_freq_factors,
        activation,
        embed_scale: (arch == "gemma").then(|| (hidden as f64).sqrt()),
        sliding_window,
        sliding_layers,
        arch: arch.clone(),
    };
    cfg.validate().map_err(invalid)?;
    let layout = HfLayout {
        qkv_bias: attention_bias || arch == "qwen2",
        o_bias: attention_bias,
        fused: arch == "phi3",
        tied,
    };
    Ok((cfg, layout))
}

/// The safetensors files of a folder: one model.safetensors, or the shards of an index.
fn weight_files(dir: &Path) -> ModelResult<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index)
            .map_err(|e| invalid(format!("cannot read {}: {e}", index.display())))?;
        let json: Json = serde_json::from_str(&text)
            .map_err(|e| invalid(format!("{} is not valid JSON: {e}", index.display())))?;
        let map = json
            .get("weight_map")
            .and_then(Json::as_object)
            .ok_or_else(|| invalid(format!("{} has no `weight_map`", index.display())))?;
        let names: BTreeSet<&str> = map.values().filter_map(Json::as_str).collect();
        let files: Vec<PathBuf> = names.into_iter().map(|n| dir.join(n)).collect();
        for f in &files {
            if !f.is_file() {
                return Err(invalid(format!(
                    "shard {} named by {} is missing",
                    f.display(),
                    index.display()
                )));
            }
        }
        return Ok(files);
    }
    Err(invalid(format!(
        "{} has neither model.safetensors nor model.safetensors.index.json",
        dir.display()
    )))
}

struct Dense<'a> {
    st: &'a MmapedSafetensors,
    device: &'a Device,
    dtype: DType,
    dir: &'a Path,
    count: usize,
}

impl Dense<'_> {
    fn get(&mut self, name: &str) -> ModelResult<Tensor> {
        let t = self
            .st
            .load(name, self.device)
            .map_err(|e| {
                invalid(format!(
                    "cannot read tensor `{name}` from the weights in {}: {e}",
                    self.dir.display()
                ))
            })?
            .to_dtype(self.dtype)
            .map_err(candle_err(self.dir, "cannot convert weights of"))?;
        self.count += t.elem_count();
        Ok(t)
    }

    fn has(&self, name: &str) -> bool {
        self.st.get(name).is_ok()
    }

    fn linear(&mut self, prefix: &str, bias: bool) -> ModelResult<Linear> {
        let w = self.get(&format!("{prefix}.weight"))?;
        let b = if bias {
            Some(self.get(&format!("{prefix}.bias"))?)
        } else {
            None
        };
        Ok(Linear::dense(w, b))
    }
}

fn rows(t: &Tensor, start: usize, len: usize, dir: &Path) -> ModelResult<Tensor> {
    t.narrow(0, start, len)
        .and_then(|x| x.contiguous())
        .map_err(candle_err(dir, "cannot split a fused weight of"))
}

fn load_hf(dir: &Path, options: &LoadOptions) -> ModelResult<Loaded> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|e| {
        invalid(format!(
            "{} is not a Hugging Face model folder: cannot read {}: {e}",
            dir.display(),
            config_path.display()
        ))
    })?;
    let config: Json = serde_json::from_str(&text)
        .map_err(|e| invalid(format!("{} is not valid JSON: {e}", config_path.display())))?;
    let (cfg, layout) = hf_config(dir, &config)?;
    let HfLayout {
        qkv_bias,
        o_bias,
        fused,
        tied,
    } = layout;
    let files = weight_files(dir)?;
    // Safety: the files are mapped read-only; a model file changed while beb runs would
    // corrupt the weights read from it, as with any memory-mapped reader.
    let st = unsafe { MmapedSafetensors::multi(&files) }.map_err(|e| {
        invalid(format!(
            "cannot read the weights in {}: {e} (is the file complete?)",
            dir.display()
        ))
    })?;
    let device = &options.device;
    let mut d = Dense {
        st: &st,
        device,
        dtype: options.dtype,
        dir,
        count: 0,
    };
    let norm_offset = cfg.arch == "gemma";
    let norm = |d: &mut Dense, name: &str| -> ModelResult<Tensor> {
        let w = d.get(name)?;
        if norm_offset {
            (w + 1.0).map_err(candle_err(dir, "cannot convert weights of"))
        } else {
            Ok(w)
        }
    };
    let embed = d.get("model.embed_tokens.weight")?;
    let mut layers = Vec::with_capacity(cfg.layers);
    for i in 0..cfg.layers {
        let p = format!("model.layers.{i}");
        let (q, k, v) = if fused {
            let w = d.get(&format!("{p}.self_attn.qkv_proj.weight"))?;
            let (nq, nkv) = (cfg.heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim);
            (
                Linear::dense(rows(&w, 0, nq, dir)?, None),
                Linear::dense(rows(&w, nq, nkv, dir)?, None),
                Linear::dense(rows(&w, nq + nkv, nkv, dir)?, None),
            )
        } else {
            (
                d.linear(&format!("{p}.self_attn.q_proj"), qkv_bias)?,
                d.linear(&format!("{p}.self_attn.k_proj"), qkv_bias)?,
                d.linear(&format!("{p}.self_attn.v_proj"), qkv_bias)?,
            )
        };
        let (gate, up) = if fused {
            let w = d.get(&format!("{p}.mlp.gate_up_proj.weight"))?;
            (
                Linear::dense(rows(&w, 0, cfg.intermediate, dir)?, None),
                Linear::dense(rows(&w, cfg.intermediate, cfg.intermediate, dir)?, None),
            )
        } else {
            (
                d.linear(&format!("{p}.mlp.gate_proj"), false)?,
                d.linear(&format!("{p}.mlp.up_proj"), false)?,
            )
        };
        layers.push(Layer {
            attn_norm: norm(&mut d, &format!("{p}.input_layernorm.weight"))?,
            q,
            k,
            v,
            o: d.linear(&format!("{p}.self_attn.o_proj"), o_bias)?,
            mlp_norm: norm(&mut d, &format!("{p}.post_attention_layernorm.weight"))?,
            gate,
            up,
            down: d.linear(&format!("{p}.mlp.down_proj"), false)?,
        });
    }
    let final_norm = norm(&mut d, "model.norm.weight")?;
    let head = if !tied && d.has("lm_head.weight") {
        Linear::dense(d.get("lm_head.weight")?, None)
    } else {
        Linear::dense(embed.clone(), None)
    };
    let parameters = d.count;
    let tokenizer = tokenizer_beside(dir, options, "the model folder")?;
    let bos = ids_field(&config, "bos_token_id")
        .first()
        .copied()
        .or_else(|| token_named(&tokenizer, BOS_NAMES));
    let mut eos = ids_field(&config, "eos_token_id");
    if eos.is_empty() {
        eos.extend(token_named(&tokenizer, EOS_NAMES));
    }
    let net = Transformer::new(
        cfg,
        embed,
        layers,
        final_norm,
        head,
        device.clone(),
        options.dtype,
    )
    .map_err(candle_err(dir, "cannot set up"))?;
    Ok(Loaded {
        net,
        tokenizer,
        bos,
        eos,
        format: "safetensors",
        files,
        parameters,
    })
}

// ---------------------------------------------------------------- GGUF

fn gguf_number(content: &gguf_file::Content, key: &str) -> Option<f64> {
    use gguf_file::Value as V;
    match content.metadata.get(key)? {
        V::U8(x) => Some(f64::from(*x)),
        V::I8(x) => Some(f64::from(*x)),
        V::U16(x) => Some(f64::from(*x)),
        V::I16(x) => Some(f64::from(*x)),
        V::U32(x) => Some(f64::from(*x)),
        V::I32(x) => Some(f64::from(*x)),
        V::U64(x) => Some(*x as f64),
        V::I64(x) => Some(*x as f64),
        V::F32(x) => Some(f64::from(*x)),
        V::F64(x) => Some(*x),
        _ => None,
    }
}

fn load_gguf(path: &Path, options: &LoadOptions) -> ModelResult<Loaded> {
    let file = std::fs::File::open(path)
        .map_err(|e| invalid(format!("cannot open {}: {e}", path.display())))?;
    // Safety: read-only mapping of a model file (see load_hf).
    let map = unsafe { memmap2::Mmap::map(&file) }
        .map_err(|e| invalid(format!("cannot map {}: {e}", path.display())))?;
    let mut reader = std::io::Cursor::new(&map[..]);
    let content = gguf_file::Content::read(&mut reader).map_err(|e| {
        invalid(format!(
            "{} is not a readable GGUF file: {e} (is the file complete?)",
            path.display()
        ))
    })?;
    let file_size = map.len() as u64;
    for (name, info) in &content.tensor_infos {
        let elems = info.shape.elem_count() as u64;
        let bytes =
            elems / info.ggml_dtype.block_size() as u64 * info.ggml_dtype.type_size() as u64;
        let end = content.tensor_data_offset + info.offset + bytes;
        if end > file_size {
            return Err(invalid(format!(
                "{} is truncated: tensor `{name}` ends at byte {end} but the file has {file_size} bytes",
                path.display()
            )));
        }
    }
    let arch = content
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok().cloned())
        .unwrap_or_default();
    if !GGUF_ARCHITECTURES.contains(&arch.as_str()) {
        return Err(ModelError::Unsupported(format!(
            "GGUF architecture {arch:?} of {} is not supported; supported: {}",
            path.display(),
            GGUF_ARCHITECTURES.join(", ")
        )));
    }
    let need = |key: &str| -> ModelResult<usize> {
        gguf_number(&content, &format!("{arch}.{key}"))
            .map(|x| x as usize)
            .ok_or_else(|| invalid(format!("{} lacks `{arch}.{key}`", path.display())))
    };
    let hidden = need("embedding_length")?;
    let heads = need("attention.head_count")?;
    let kv_heads = need("attention.head_count_kv").unwrap_or(heads);
    let device = &options.device;
    let dtype = options.dtype;
    let mut parameters = 0usize;
    let mut qtensor = |name: &str| -> ModelResult<candle_core::quantized::QTensor> {
        let t = content.tensor(&mut reader, name, device).map_err(|e| {
            invalid(format!(
                "cannot read tensor `{name}` of {}: {e}",
                path.display()
            ))
        })?;
        parameters += t.shape().elem_count();
        Ok(t)
    };
    let dense = |t: candle_core::quantized::QTensor| -> ModelResult<Tensor> {
        t.dequantize(device)
            .and_then(|x| x.to_dtype(dtype))
            .map_err(candle_err(path, "cannot dequantize weights of"))
    };
    let qlinear =
        |t: candle_core::quantized::QTensor, bias: Option<Tensor>| -> ModelResult<Linear> {
            QMatMul::from_qtensor(t)
                .and_then(|q| Linear::quantized(q, bias, dtype))
                .map_err(candle_err(path, "cannot set up weights of"))
        };
    let embed_q = qtensor("token_embd.weight")?;
    let vocab = embed_q.shape().dims().first().copied().unwrap_or(0);
    let qkv_bias = arch == "qwen2";
    let layers_n = need("block_count")?;
    let mut layers = Vec::with_capacity(layers_n);
    for i in 0..layers_n {
        let p = format!("blk.{i}");
        let mut lin = |name: &str, bias: bool| -> ModelResult<Linear> {
            let w = qtensor(&format!("{p}.{name}.weight"))?;
            let b = if bias {
                Some(dense(qtensor(&format!("{p}.{name}.bias"))?)?)
            } else {
                None
            };
            qlinear(w, b)
        };
        let q = lin("attn_q", qkv_bias)?;
        let k = lin("attn_k", qkv_bias)?;
        let v = lin("attn_v", qkv_bias)?;
        let o = lin("attn_output", false)?;
        let gate = lin("ffn_gate", false)?;
        let up = lin("ffn_up", false)?;
        let down = lin("ffn_down", false)?;
        layers.push(Layer {
            attn_norm: dense(qtensor(&format!("{p}.attn_norm.weight"))?)?,
            q,
            k,
            v,
            o,
            mlp_norm: dense(qtensor(&format!("{p}.ffn_norm.weight"))?)?,
            gate,
            up,
            down,
        });
    }
    let final_norm = dense(qtensor("output_norm.weight")?)?;
    let head = if content.tensor_infos.contains_key("output.weight") {
        let w = qtensor("output.weight")?;
        qlinear(w, None)?
    } else {
        let again = content
            .tensor(&mut reader, "token_embd.weight", device)
            .map_err(candle_err(path, "cannot read weights of"))?;
        qlinear(again, None)?
    };
    let embed = dense(embed_q)?;
    let intermediate = need("feed_forward_length")?;
    let head_dim = gguf_number(&content, &format!("{arch}.rope.dimension_count"))
        .map(|x| x as usize)
        .unwrap_or(hidden / heads.max(1));
    // llama 3 rope scaling: llama.cpp's converter stores one divisor per frequency.
    let rope_freq_factors = if content.tensor_infos.contains_key("rope_freqs.weight") {
        let factors: Vec<f64> = content
            .tensor(&mut reader, "rope_freqs.weight", device)
            .and_then(|t| t.dequantize(device))
            .and_then(|t| t.to_dtype(DType::F64))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .map_err(candle_err(path, "cannot read `rope_freqs.weight` of"))?;
        if factors.len() != head_dim / 2 {
            return Err(invalid(format!(
                "{}: `rope_freqs.weight` has {} factors for a head dimension of {head_dim}",
                path.display(),
                factors.len()
            )));
        }
        Some(factors)
    } else {
        None
    };
    let cfg = Config {
        hidden,
        intermediate,
        layers: layers_n,
        heads,
        kv_heads,
        head_dim,
        vocab,
        context: need("context_length")?,
        rms_eps: gguf_number(
            &content,
            &format!("{arch}.attention.layer_norm_rms_epsilon"),
        )
        .unwrap_or(1e-5),
        rope_theta: gguf_number(&content, &format!("{arch}.rope.freq_base")).unwrap_or(10_000.0),
        rope: if arch == "qwen2" {
            Rope::Half
        } else {
            Rope::Interleaved
        },
        rope_freq_factors,
        activation: Activation::Silu,
        embed_scale: None,
        sliding_window: None,
        sliding_layers: Vec::new(),
        arch: arch.clone(),
    };
    cfg.validate().map_err(invalid)?;
    let tokenizer = match &options.tokenizer {
        Some(t) => TokenizerHandle::from_file(t)?,
        None => tokenizer::from_gguf(&content, &path.display().to_string())?,
    };
    let bos = gguf_number(&content, "tokenizer.ggml.bos_token_id")
        .map(|x| x as u32)
        .or_else(|| token_named(&tokenizer, BOS_NAMES));
    let eos: Vec<u32> = gguf_number(&content, "tokenizer.ggml.eos_token_id")
        .map(|x| x as u32)
        .or_else(|| token_named(&tokenizer, EOS_NAMES))
        .into_iter()
        .collect();
    let net = Transformer::new(cfg, embed, layers, final_norm, head, device.clone(), dtype)
        .map_err(candle_err(path, "cannot set up"))?;
    Ok(Loaded {
        net,
        tokenizer,
        bos,
        eos,
        format: "gguf",
        files: vec![path.to_path_buf()],
        parameters,
    })
}

// ---------------------------------------------------------------- llama2.c

fn load_llama2c(path: &Path, options: &LoadOptions) -> ModelResult<Loaded> {
    let file = std::fs::File::open(path)
        .map_err(|e| invalid(format!("cannot open {}: {e}", path.display())))?;
    // Safety: read-only mapping of a model file (see load_hf).
    let map = unsafe { memmap2::Mmap::map(&file) }
        .map_err(|e| invalid(format!("cannot map {}: {e}", path.display())))?;
    if map.len() < 28 {
        return Err(invalid(format!(
            "{} is truncated: {} bytes, shorter than a llama2.c header",
            path.display(),
            map.len()
        )));
    }
    let header: Vec<i32> = map[..28]
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if header[0] == 0x616b_3432 {
        return Err(ModelError::Unsupported(format!(
            "{} is a llama2.c version-{} export; only legacy (version 0) checkpoints are read",
            path.display(),
            header[1]
        )));
    }
    let [
        dim,
        hidden,
        n_layers,
        heads,
        kv_heads,
        vocab_signed,
        seq_len,
    ] = [
        header[0], header[1], header[2], header[3], header[4], header[5], header[6],
    ];
    let shared = vocab_signed > 0;
    let positive = |x: i32, what: &str| -> ModelResult<usize> {
        if x > 0 && x < 1 << 24 {
            Ok(x as usize)
        } else {
            Err(invalid(format!(
                "{} is not a llama2.c checkpoint: its header gives {what} = {x}",
                path.display()
            )))
        }
    };
    let dim = positive(dim, "dim")?;
    let hidden = positive(hidden, "hidden_dim")?;
    let n_layers = positive(n_layers, "n_layers")?;
    let heads = positive(heads, "n_heads")?;
    let kv_heads = positive(kv_heads, "n_kv_heads")?;
    let vocab = positive(vocab_signed.abs(), "vocab_size")?;
    let seq_len = positive(seq_len, "seq_len")?;
    let head_dim = dim / heads;
    let kv_dim = kv_heads * head_dim;
    let sizes: Vec<(&str, usize)> = vec![
        ("token_embedding", vocab * dim),
        ("rms_att", n_layers * dim),
        ("wq", n_layers * dim * dim),
        ("wk", n_layers * dim * kv_dim),
        ("wv", n_layers * dim * kv_dim),
        ("wo", n_layers * dim * dim),
        ("rms_ffn", n_layers * dim),
        ("w1", n_layers * hidden * dim),
        ("w2", n_layers * dim * hidden),
        ("w3", n_layers * hidden * dim),
        ("rms_final", dim),
        ("freq_cis", seq_len * head_dim),
        ("wcls", if shared { 0 } else { vocab * dim }),
    ];
    let floats: usize = sizes.iter().map(|s| s.1).sum();
    let expected = 28 + 4 * floats;
    if map.len() < expected {
        return Err(invalid(format!(
            "{} is truncated: a llama2.c checkpoint of this header needs {expected} bytes, the file has {}",
            path.display(),
            map.len()
        )));
    }
    if map.len() > expected {
        return Err(invalid(format!(
            "{} has {} bytes where a llama2.c checkpoint of this header has {expected}: not a legacy llama2.c file",
            path.display(),
            map.len()
        )));
    }
    let device = &options.device;
    let dtype = options.dtype;
    let mut offsets = std::collections::HashMap::new();
    let mut at = 28usize;
    for (name, n) in &sizes {
        offsets.insert(*name, at);
        at += 4 * n;
    }
    let tensor = |name: &str, index: usize, shape: &[usize]| -> ModelResult<Tensor> {
        let n: usize = shape.iter().product();
        let start = offsets.get(name).copied().unwrap_or(28) + 4 * n * index;
        let values: Vec<f32> = map[start..start + 4 * n]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Tensor::from_vec(values, shape, device)
            .and_then(|t| t.to_dtype(dtype))
            .map_err(candle_err(path, "cannot read weights of"))
    };
    let embed = tensor("token_embedding", 0, &[vocab, dim])?;
    let mut layers = Vec::with_capacity(n_layers);
    for l in 0..n_layers {
        layers.push(Layer {
            attn_norm: tensor("rms_att", l, &[dim])?,
            q: Linear::dense(tensor("wq", l, &[dim, dim])?, None),
            k: Linear::dense(tensor("wk", l, &[kv_dim, dim])?, None),
            v: Linear::dense(tensor("wv", l, &[kv_dim, dim])?, None),
            o: Linear::dense(tensor("wo", l, &[dim, dim])?, None),
            mlp_norm: tensor("rms_ffn", l, &[dim])?,
            gate: Linear::dense(tensor("w1", l, &[hidden, dim])?, None),
            down: Linear::dense(tensor("w2", l, &[dim, hidden])?, None),
            up: Linear::dense(tensor("w3", l, &[hidden, dim])?, None),
        });
    }
    let norm = tensor("rms_final", 0, &[dim])?;
    let head = if shared {
        Linear::dense(embed.clone(), None)
    } else {
        Linear::dense(tensor("wcls", 0, &[vocab, dim])?, None)
    };
    let parameters = floats - seq_len * head_dim;
    let cfg = Config {
        arch: "llama".into(),
        hidden: dim,
        intermediate: hidden,
        layers: n_layers,
        heads,
        kv_heads,
        head_dim,
        vocab,
        context: seq_len,
        rms_eps: 1e-5,
        rope_theta: 10_000.0,
        rope: Rope::Interleaved,
        rope_freq_factors: None,
        activation: Activation::Silu,
        embed_scale: None,
        sliding_window: None,
        sliding_layers: Vec::new(),
    };
    cfg.validate().map_err(invalid)?;
    let tokenizer = tokenizer_beside(path, options, "the llama2.c checkpoint")?;
    let bos = token_named(&tokenizer, BOS_NAMES).or(Some(1));
    let eos: Vec<u32> = token_named(&tokenizer, EOS_NAMES)
        .or(Some(2))
        .into_iter()
        .collect();
    let net = Transformer::new(cfg, embed, layers, norm, head, device.clone(), dtype)
        .map_err(candle_err(path, "cannot set up"))?;
    Ok(Loaded {
        net,
        tokenizer,
        bos,
        eos,
        format: "llama2.c",
        files: vec![path.to_path_buf()],
        parameters,
    })
}
