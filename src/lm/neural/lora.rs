//! LoRA adapters: a low-rank term `scale · B A x` added to a linear map (Hu et al. 2022), read
//! and written in the Hugging Face PEFT layout (`adapter_config.json` and
//! `adapter_model.safetensors` with keys such as
//! `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`).
//!
//! An adapter is applied unmerged (the base weights stay as they are, quantized or not); a
//! model that already carries one has it folded into its dense weights before another is
//! attached, so training on an adapted model and loading the result back do the same thing.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde_json::{Value as Json, json};

use super::NeuralModel;
use super::finetune_store::{Origin, read_manifest};
use super::transformer::{Config, Layer, Linear, Transformer};
use crate::lm::{ModelError, ModelResult};

/// The linear maps an adapter can target (the llama family's module names).
pub const TARGETS: &[&str] = &[
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// The file names of the PEFT layout.
pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// `scale · x Aᵀ Bᵀ`: A is [rank, in], B is [out, rank].
#[derive(Clone, Debug)]
pub struct LowRank {
    pub a: Tensor,
    pub b: Tensor,
    pub scale: f64,
}

impl LowRank {
    /// The term for flat inputs [rows, in] -> [rows, out].
    pub fn forward(&self, flat: &Tensor) -> candle_core::Result<Tensor> {
        flat.matmul(&self.a.t()?)?.matmul(&self.b.t()?)? * self.scale
    }

    /// The dense update `scale · B A`, [out, in].
    pub fn delta(&self) -> candle_core::Result<Tensor> {
        self.b.matmul(&self.a)? * self.scale
    }
}

fn invalid(message: impl Into<String>) -> ModelError {
    ModelError::Invalid(message.into())
}

fn candle(what: String) -> impl Fn(candle_core::Error) -> ModelError {
    move |e| invalid(format!("{what}: {e}"))
}

/// The submodule (`self_attn` or `mlp`) a target lives in.
fn block(target: &str) -> &'static str {
    match target {
        "gate_proj" | "up_proj" | "down_proj" => "mlp",
        _ => "self_attn",
    }
}

/// The PEFT key of one adapter matrix (`which` is "A" or "B").
pub fn key(layer: usize, target: &str, which: &str) -> String {
    format!(
        "base_model.model.model.layers.{layer}.{}.{target}.lora_{which}.weight",
        block(target)
    )
}

/// The linear map `target` of a layer.
pub fn linear<'a>(layer: &'a Layer, target: &str) -> Option<&'a Linear> {
    Some(match target {
        "q_proj" => &layer.q,
        "k_proj" => &layer.k,
        "v_proj" => &layer.v,
        "o_proj" => &layer.o,
        "gate_proj" => &layer.gate,
        "up_proj" => &layer.up,
        "down_proj" => &layer.down,
        _ => return None,
    })
}

pub fn linear_mut<'a>(layer: &'a mut Layer, target: &str) -> Option<&'a mut Linear> {
    Some(match target {
        "q_proj" => &mut layer.q,
        "k_proj" => &mut layer.k,
        "v_proj" => &mut layer.v,
        "o_proj" => &mut layer.o,
        "gate_proj" => &mut layer.gate,
        "up_proj" => &mut layer.up,
        "down_proj" => &mut layer.down,
        _ => return None,
    })
}

/// (in, out) of a target's linear map.
pub fn dims(config: &Config, target: &str) -> Option<(usize, usize)> {
    let (h, q, kv, i) = (
        config.hidden,
        config.heads * config.head_dim,
        config.kv_heads * config.head_dim,
        config.intermediate,
    );
    Some(match target {
        "q_proj" => (h, q),
        "k_proj" | "v_proj" => (h, kv),
        "o_proj" => (q, h),
        "gate_proj" | "up_proj" => (h, i),
        "down_proj" => (i, h),
        _ => return None,
    })
}

/// An unknown target name, with the known ones.
pub fn check_target(target: &str) -> ModelResult<()> {
    if TARGETS.contains(&target) {
        Ok(())
    } else {
        Err(ModelError::Unsupported(format!(
            "LoRA target module {target:?} is not supported; supported: {}",
            TARGETS.join(", ")
        )))
    }
}

/// An adapter: per (layer, target), the matrices A [rank, in] and B [out, rank] and the scale.
#[derive(Clone, Debug)]
pub struct Adapter {
    pub rank: usize,
    pub alpha: f64,
    pub targets: Vec<String>,
    pub weights: BTreeMap<(usize, String), LowRank>,
}

impl Adapter {
    /// Number of adapter weights.
    pub fn parameters(&self) -> usize {
        self.weights
            .values()
            .map(|l| l.a.elem_count() + l.b.elem_count())
            .sum()
    }
}

/// Fold every low-rank term of `net` into its dense weights.
pub fn merge(net: &Transformer) -> ModelResult<Transformer> {
    let mut out = net.clone();
    for (l, layer) in out.layers.iter_mut().enumerate() {
        for target in TARGETS {
            let Some(lin) = linear_mut(layer, target) else {
                continue;
            };
            let Some(lora) = lin.lora().cloned() else {
                continue;
            };
            let w = lin.dense_weight().ok_or_else(|| {
                ModelError::Unsupported(format!(
                    "layer {l} {target} is quantized and already carries an adapter; a quantized model takes one adapter at a time"
                ))
            })?;
            let merged = lora
                .delta()
                .and_then(|d| d.to_dtype(w.dtype()))
                .and_then(|d| w + d)
                .map_err(candle(format!(
                    "cannot merge the adapter of layer {l} {target}"
                )))?;
            *lin = Linear::dense(merged, lin.bias().cloned());
        }
    }
    Ok(out)
}

/// `net` with the adapter's terms attached (any adapter it had is merged first).
pub fn apply(net: &Transformer, adapter: &Adapter) -> ModelResult<Transformer> {
    let has_lora = net.layers.iter().any(|layer| {
        TARGETS
            .iter()
            .any(|t| linear(layer, t).is_some_and(|l| l.lora().is_some()))
    });
    let mut out = if has_lora { merge(net)? } else { net.clone() };
    let dtype = out.dtype;
    for ((l, target), lora) in &adapter.weights {
        let layer = out.layers.get_mut(*l).ok_or_else(|| {
            invalid(format!(
                "the adapter has weights for layer {l}, the model has {} layers",
                net.layers.len()
            ))
        })?;
        let lin = linear_mut(layer, target).ok_or_else(|| {
            ModelError::Unsupported(format!("LoRA target module {target:?} is not supported"))
        })?;
        let convert = |t: &Tensor| {
            t.to_dtype(dtype).map_err(candle(format!(
                "cannot convert the adapter of layer {l} {target}"
            )))
        };
        let term = LowRank {
            a: convert(&lora.a)?,
            b: convert(&lora.b)?,
            scale: lora.scale,
        };
        *lin = lin.with_lora(Some(term));
    }
    Ok(out)
}

fn string_list(config: &Json, key: &str) -> Vec<String> {
    match config.get(key) {
        Some(Json::String(s)) => vec![s.clone()],
        Some(Json::Array(items)) => items
            .iter()
            .filter_map(Json::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// A per-module override of `pattern` (PEFT's `alpha_pattern`): the key that names the module
/// or ends its dotted name.
fn pattern_value(config: &Json, pattern: &str, module: &str) -> Option<f64> {
    let map = config.get(pattern)?.as_object()?;
    map.iter().find_map(|(k, v)| {
        (module == k || module.ends_with(&format!(".{k}")))
            .then(|| v.as_f64())
            .flatten()
    })
}

/// `base` with the PEFT LoRA adapter in `dir` attached.
pub fn with_adapter(base: &NeuralModel, dir: &Path) -> ModelResult<NeuralModel> {
    let adapter = read(dir, &base.net.config, &base.net.device)?;
    let net = apply(&base.net, &adapter)?;
    let manifest = read_manifest(dir)?;
    let mut files = base.files.clone();
    files.push(dir.join(WEIGHTS_FILE));
    let origin = Origin {
        kind: "adapter".into(),
        rank: Some(adapter.rank),
        alpha: Some(adapter.alpha),
        targets: adapter.targets.clone(),
        folder: dir.to_path_buf(),
        key: manifest
            .as_ref()
            .and_then(|m| m.get("key"))
            .and_then(Json::as_str)
            .map(str::to_string),
        manifest,
        cached: false,
    };
    Ok(base.derive(net, files, base.parameters + adapter.parameters(), origin))
}

/// Read a PEFT LoRA adapter folder for a model of `config`.
pub fn read(dir: &Path, config: &Config, device: &Device) -> ModelResult<Adapter> {
    let config_path = dir.join(CONFIG_FILE);
    if !dir.is_dir() {
        return Err(invalid(format!(
            "no adapter at {}: not a folder (a PEFT adapter is a folder with {CONFIG_FILE} and {WEIGHTS_FILE})",
            dir.display()
        )));
    }
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| invalid(format!("cannot read {}: {e}", config_path.display())))?;
    let cfg: Json = serde_json::from_str(&text)
        .map_err(|e| invalid(format!("{} is not valid JSON: {e}", config_path.display())))?;
    let shown = config_path.display().to_string();
    let peft_type = cfg
        .get("peft_type")
        .and_then(Json::as_str)
        .unwrap_or("LORA");
    if peft_type != "LORA" {
        return Err(ModelError::Unsupported(format!(
            "{shown}: adapter type {peft_type:?} is not supported (only LORA)"
        )));
    }
    for (flag, what) in [
        ("use_dora", "DoRA adapters"),
        ("fan_in_fan_out", "fan_in_fan_out (transposed) adapters"),
    ] {
        if cfg.get(flag).and_then(Json::as_bool) == Some(true) {
            return Err(ModelError::Unsupported(format!(
                "{shown}: {what} are not supported"
            )));
        }
    }
    match cfg.get("bias").and_then(Json::as_str) {
        None | Some("none") => {}
        Some(other) => {
            return Err(ModelError::Unsupported(format!(
                "{shown}: bias = {other:?} is not supported (only \"none\")"
            )));
        }
    }
    let saved = string_list(&cfg, "modules_to_save");
    if !saved.is_empty() {
        return Err(ModelError::Unsupported(format!(
            "{shown}: modules_to_save ({}) is not supported",
            saved.join(", ")
        )));
    }
    let rank = cfg
        .get("r")
        .and_then(Json::as_u64)
        .ok_or_else(|| invalid(format!("{shown} lacks the whole number `r`")))?
        as usize;
    let alpha = cfg
        .get("lora_alpha")
        .and_then(Json::as_f64)
        .unwrap_or(rank as f64);
    let rslora = cfg.get("use_rslora").and_then(Json::as_bool) == Some(true);
    let weights_path = dir.join(WEIGHTS_FILE);
    if !weights_path.is_file() {
        let hint = if dir.join("adapter_model.bin").is_file() {
            " (adapter_model.bin is a pickle file: convert it to safetensors)"
        } else {
            ""
        };
        return Err(invalid(format!(
            "{} is missing{hint}",
            weights_path.display()
        )));
    }
    let tensors = candle_core::safetensors::load(&weights_path, device).map_err(|e| {
        invalid(format!(
            "cannot read {}: {e} (is the file complete?)",
            weights_path.display()
        ))
    })?;
    let pattern = regex::Regex::new(
        r"(?:^|\.)layers\.(\d+)\.(self_attn|mlp)\.([A-Za-z_]+)\.lora_(A|B)(?:\.[A-Za-z0-9_-]+)?\.weight$",
    )
    .map_err(|e| invalid(format!("internal pattern: {e}")))?;
    let mut parts: BTreeMap<(usize, String), (Option<Tensor>, Option<Tensor>)> = BTreeMap::new();
    for (name, tensor) in tensors {
        let Some(m) = pattern.captures(&name) else {
            return Err(ModelError::Unsupported(format!(
                "{}: tensor `{name}` is not a LoRA matrix of a supported module ({})",
                weights_path.display(),
                TARGETS.join(", ")
            )));
        };
        let layer: usize = m[1]
            .parse()
            .map_err(|_| invalid(format!("bad layer number in `{name}`")))?;
        let target = m[3].to_string();
        check_target(&target)?;
        let slot = parts.entry((layer, target)).or_default();
        let tensor = tensor
            .to_dtype(DType::F32)
            .map_err(candle(format!("cannot convert `{name}`")))?;
        if &m[4] == "A" {
            slot.0 = Some(tensor);
        } else {
            slot.1 = Some(tensor);
        }
    }
    if parts.is_empty() {
        return Err(invalid(format!(
            "{} holds no LoRA matrices",
            weights_path.display()
        )));
    }
    let mut weights = BTreeMap::new();
    let mut targets: Vec<String> = Vec::new();
    for ((layer, target), (a, b)) in parts {
        let (Some(a), Some(b)) = (a, b) else {
            return Err(invalid(format!(
                "{}: layer {layer} {target} lacks its lora_A or lora_B matrix",
                weights_path.display()
            )));
        };
        if layer >= config.layers {
            return Err(invalid(format!(
                "{}: the adapter has weights for layer {layer}, the model has {} layers",
                weights_path.display(),
                config.layers
            )));
        }
        let (fan_in, fan_out) = dims(config, &target).ok_or_else(|| {
            ModelError::Unsupported(format!("LoRA target module {target:?} is not supported"))
        })?;
        let (ra, ia) = a
            .dims2()
            .map_err(candle(format!("layer {layer} {target} lora_A")))?;
        let (ob, rb) = b
            .dims2()
            .map_err(candle(format!("layer {layer} {target} lora_B")))?;
        if ia != fan_in || ob != fan_out || ra != rb || ra == 0 {
            return Err(invalid(format!(
                "{}: layer {layer} {target} has lora_A {:?} and lora_B {:?}; this model needs [r, {fan_in}] and [{fan_out}, r]",
                weights_path.display(),
                [ra, ia],
                [ob, rb]
            )));
        }
        let module = format!("model.layers.{layer}.{}.{target}", block(&target));
        let a_alpha = pattern_value(&cfg, "alpha_pattern", &module).unwrap_or(alpha);
        let scale = if rslora {
            a_alpha / (ra as f64).sqrt()
        } else {
            a_alpha / ra as f64
        };
        if !targets.contains(&target) {
            targets.push(target.clone());
        }
        weights.insert((layer, target), LowRank { a, b, scale });
    }
    targets.sort_by_key(|t| TARGETS.iter().position(|k| k == t));
    Ok(Adapter {
        rank,
        alpha,
        targets,
        weights,
    })
}

/// Write `adapter` as a PEFT folder (config and weights; the folder must exist).
pub fn write(dir: &Path, adapter: &Adapter, base: &str) -> ModelResult<()> {
    let config = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": adapter.rank,
        "lora_alpha": adapter.alpha,
        "lora_dropout": 0.0,
        "target_modules": adapter.targets,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "use_rslora": false,
        "use_dora": false,
        "modules_to_save": null,
        "layers_to_transform": null,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "base_model_name_or_path": base,
        "revision": null,
    });
    let text = serde_json::to_string_pretty(&config)
        .map_err(|e| invalid(format!("cannot encode the adapter config: {e}")))?;
    let config_path = dir.join(CONFIG_FILE);
    std::fs::write(&config_path, text + "\n")
        .map_err(|e| invalid(format!("cannot write {}: {e}", config_path.display())))?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for ((layer, target), lora) in &adapter.weights {
        tensors.insert(key(*layer, target, "A"), lora.a.clone());
        tensors.insert(key(*layer, target, "B"), lora.b.clone());
    }
    let weights_path = dir.join(WEIGHTS_FILE);
    candle_core::safetensors::save(&tensors, &weights_path)
        .map_err(|e| invalid(format!("cannot write {}: {e}", weights_path.display())))
}
