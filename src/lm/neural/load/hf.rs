//! Hugging Face folders: `config.json` read per `model_type` (llama, mistral, qwen2, gemma,
//! phi3), weights from one `model.safetensors` or the shards of an index, memory-mapped.
//! Options a family has are honoured or refused, never ignored.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use serde_json::Value as Json;

use super::{
    BOS_NAMES, EOS_NAMES, HF_ARCHITECTURES, LoadOptions, Loaded, candle_err, invalid, token_named,
    tokenizer_beside,
};
use crate::lm::neural::transformer::{Activation, Config, Layer, Linear, Rope, Transformer};
use crate::lm::{ModelError, ModelResult};

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
        // Absent: Hugging Face's default; present, it must be a whole number.
        context: match config.get("max_position_embeddings") {
            None | Some(Json::Null) => 2048,
            Some(_) => usize_field(config, "max_position_embeddings", dir)?,
        },
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

pub(super) fn load(dir: &Path, options: &LoadOptions) -> ModelResult<Loaded> {
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
    // Weights of layers past num_hidden_layers would be silently dropped.
    let deepest = st
        .tensors()
        .iter()
        .filter_map(|(name, _)| {
            let rest = name.strip_prefix("model.layers.")?;
            rest.split('.').next()?.parse::<usize>().ok()
        })
        .max();
    if let Some(deepest) = deepest.filter(|&d| d >= cfg.layers) {
        return Err(invalid(format!(
            "{}: `num_hidden_layers` is {}, but the weights have layer {deepest} (model.layers.{deepest}.*)",
            dir.join("config.json").display(),
            cfg.layers
        )));
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
        embedded_template: None,
    })
}
