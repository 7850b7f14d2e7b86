//! The finetune cache: finished finetunes stored in folders named by the sha256 key of what
//! determines them (the base's weight digests, its tokenizer and dtype, the training texts'
//! token ids, every hyperparameter and the seed), so the same request again loads the folder
//! instead of training.
//!
//! A folder holds `finetune.json` (what was trained, with the loss per epoch) and the weights:
//! `model.safetensors` (full; Hugging Face tensor names, in the base's own layout) or a PEFT
//! adapter (`adapter_config.json`, `adapter_model.safetensors`). A fresh result is also loaded
//! from its folder, so a cached and a fresh finetune are the same model bit for bit. A folder
//! appears whole or not at all: it is written under a temporary name and renamed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use candle_core::{DType, Tensor};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use super::lora;
use super::train::{
    MAX_GRAD_NORM, Method, Request, TRAINING_VERSION, TrainOptions, Trained, get, set, slots,
};
use super::{NeuralModel, model_err};
use crate::lm::{ModelError, ModelResult};

/// The record of a finetune in its folder.
pub const MANIFEST: &str = "finetune.json";
/// The weights of a full finetune in its folder.
pub const FULL_WEIGHTS: &str = "model.safetensors";

/// How a model was derived from a base.
#[derive(Clone, Debug)]
pub struct Origin {
    /// "full" or "lora" (finetuned by beb), or "adapter" (a PEFT adapter loaded from a folder).
    pub kind: String,
    pub rank: Option<usize>,
    pub alpha: Option<f64>,
    pub targets: Vec<String>,
    /// The folder the weights or the adapter were read from.
    pub folder: PathBuf,
    /// The cache key (finetunes only).
    pub key: Option<String>,
    /// The record of the finetune (`finetune.json`), when there is one.
    pub manifest: Option<Json>,
    /// Whether this finetune was found in the cache rather than trained now.
    pub cached: bool,
}

impl Origin {
    /// A short description for the model's identity.
    pub fn describe(&self) -> String {
        let lora = match (self.rank, self.alpha) {
            (Some(r), Some(a)) => format!("r={r}, alpha={a}, {}", self.targets.join("+")),
            _ => String::new(),
        };
        match self.kind.as_str() {
            "full" => "+ full finetune".to_string(),
            "lora" => format!("+ LoRA finetune {lora}"),
            _ => format!("+ LoRA adapter {lora}"),
        }
    }

    /// Mean training loss per epoch, from the record.
    pub fn losses(&self) -> Vec<f64> {
        self.manifest
            .as_ref()
            .and_then(|m| m.get("losses"))
            .and_then(Json::as_array)
            .map(|a| a.iter().filter_map(Json::as_f64).collect())
            .unwrap_or_default()
    }
}

fn invalid(message: impl Into<String>) -> ModelError {
    ModelError::Invalid(message.into())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn dtype_name(dtype: DType) -> String {
    format!("{dtype:?}").to_lowercase()
}

/// The cache key of a request on a base model.
pub fn cache_key(base: &NeuralModel, options: &TrainOptions, texts: &[Vec<u32>]) -> String {
    let method = match &options.method {
        Method::Full => json!({"method": "full"}),
        Method::Lora {
            rank,
            alpha,
            targets,
        } => json!({"method": "lora", "rank": rank, "alpha": alpha, "targets": targets}),
    };
    let inputs = json!({
        "training_version": TRAINING_VERSION,
        "base_sha256": base.sha256(),
        "tokenizer": base.tokenizer.digest,
        "dtype": dtype_name(base.net.dtype),
        "bos": base.bos,
        "method": method,
        "epochs": options.epochs,
        "lr": options.lr,
        "batch": options.batch,
        "weight_decay": options.weight_decay,
        "schedule": options.schedule.name(),
        "max_grad_norm": MAX_GRAD_NORM,
        "seed": hex(&options.seed),
        "texts": texts,
    });
    hex(&Sha256::digest(inputs.to_string().as_bytes()))
}

/// The record in a finetune or adapter folder, if it has one.
pub(super) fn read_manifest(folder: &Path) -> ModelResult<Option<Json>> {
    let path = folder.join(MANIFEST);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| invalid(format!("{} is not valid JSON: {e}", path.display())))
}

/// The finetune stored under `key` in `root`, if there is one.
pub(super) fn lookup(
    base: &NeuralModel,
    root: &Path,
    key: &str,
) -> ModelResult<Option<NeuralModel>> {
    let folder = root.join(key);
    if folder.join(MANIFEST).is_file() {
        return load_folder(base, &folder, true).map(Some);
    }
    Ok(None)
}

/// Store `trained` under `key` in the request's cache root (whole or not at all), then load
/// it back from there.
pub(super) fn store(
    base: &NeuralModel,
    request: &Request,
    key: &str,
    trained: &Trained,
) -> ModelResult<NeuralModel> {
    let folder = request.cache_root.join(key);
    let io =
        |what: &Path, e: std::io::Error| invalid(format!("cannot write {}: {e}", what.display()));
    std::fs::create_dir_all(&request.cache_root).map_err(|e| io(&request.cache_root, e))?;
    let temp = request
        .cache_root
        .join(format!(".{key}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&temp);
    std::fs::create_dir_all(&temp).map_err(|e| io(&temp, e))?;
    if let Err(e) = write_folder(&temp, base, request, key, trained) {
        let _ = std::fs::remove_dir_all(&temp);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&temp, &folder) {
        let _ = std::fs::remove_dir_all(&temp);
        // Another process may have finished the same finetune first: use its result.
        if !folder.join(MANIFEST).is_file() {
            return Err(io(&folder, e));
        }
    }
    load_folder(base, &folder, false)
}

/// The model a finetune folder holds, on `base`.
fn load_folder(base: &NeuralModel, folder: &Path, cached: bool) -> ModelResult<NeuralModel> {
    let manifest = read_manifest(folder)?.ok_or_else(|| {
        invalid(format!(
            "{} has no {MANIFEST}: not a finetune folder",
            folder.display()
        ))
    })?;
    let key = manifest
        .get("key")
        .and_then(Json::as_str)
        .map(str::to_string);
    match manifest.get("method").and_then(Json::as_str) {
        Some("lora") => {
            let mut model = lora::with_adapter(base, folder)?;
            let origin = model.origin.as_deref().cloned().map(|mut o| {
                o.kind = "lora".into();
                o.cached = cached;
                o
            });
            model.origin = origin.map(Rc::new);
            Ok(model)
        }
        Some("full") => {
            let path = folder.join(FULL_WEIGHTS);
            let mut tensors =
                candle_core::safetensors::load(&path, &base.net.device).map_err(|e| {
                    invalid(format!(
                        "cannot read {}: {e} (is the file complete?)",
                        path.display()
                    ))
                })?;
            let mut net = lora::merge(&base.net)?;
            for slot in slots(&net)? {
                let t = tensors.remove(&slot.name()).ok_or_else(|| {
                    invalid(format!(
                        "{} lacks the tensor `{}`",
                        path.display(),
                        slot.name()
                    ))
                })?;
                let expected = get(&net, &slot).map(|x| x.dims().to_vec());
                if expected.as_deref() != Some(t.dims()) {
                    return Err(invalid(format!(
                        "{}: tensor `{}` has shape {:?}, the model needs {:?}",
                        path.display(),
                        slot.name(),
                        t.dims(),
                        expected.unwrap_or_default()
                    )));
                }
                let t = t.to_dtype(net.dtype).map_err(model_err)?;
                set(&mut net, &slot, t)?;
            }
            let origin = Origin {
                kind: "full".into(),
                rank: None,
                alpha: None,
                targets: Vec::new(),
                folder: folder.to_path_buf(),
                key,
                manifest: Some(manifest),
                cached,
            };
            Ok(base.derive(net, vec![path], base.parameters, origin))
        }
        other => Err(invalid(format!(
            "{}: unknown finetune method {other:?}",
            folder.join(MANIFEST).display()
        ))),
    }
}

/// Write a trained result into `folder` (which exists and is empty).
fn write_folder(
    folder: &Path,
    base: &NeuralModel,
    request: &Request,
    key: &str,
    trained: &Trained,
) -> ModelResult<()> {
    let o = &request.options;
    let base_name = base
        .files
        .first()
        .map(|f| match base.format {
            "safetensors" => f.parent().unwrap_or(f).display().to_string(),
            _ => f.display().to_string(),
        })
        .unwrap_or_default();
    match (&o.method, &trained.adapter) {
        (Method::Lora { .. }, Some(adapter)) => lora::write(folder, adapter, &base_name)?,
        _ => {
            let tensors: HashMap<String, Tensor> = trained.full.iter().cloned().collect();
            let path = folder.join(FULL_WEIGHTS);
            candle_core::safetensors::save(&tensors, &path)
                .map_err(|e| invalid(format!("cannot write {}: {e}", path.display())))?;
        }
    }
    let (rank, alpha, targets) = match &o.method {
        Method::Full => (None, None, Vec::new()),
        Method::Lora {
            rank,
            alpha,
            targets,
        } => (Some(*rank), Some(*alpha), targets.clone()),
    };
    let manifest = json!({
        "beb_version": env!("CARGO_PKG_VERSION"),
        "training_version": TRAINING_VERSION,
        "key": key,
        "method": o.method.name(),
        "rank": rank,
        "alpha": alpha,
        "targets": targets,
        "epochs": o.epochs,
        "lr": o.lr,
        "batch": o.batch,
        "weight_decay": o.weight_decay,
        "schedule": o.schedule.name(),
        "max_grad_norm": MAX_GRAD_NORM,
        "seed": hex(&o.seed),
        "base": {"files": base.files, "sha256": base.sha256(), "dtype": dtype_name(base.net.dtype)},
        "data": request.data,
        "texts": request.texts.len(),
        "tokens_per_epoch": trained.tokens,
        "trainable_parameters": trained.trainable,
        "losses": trained.losses,
        "seconds": trained.seconds,
    });
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| invalid(format!("cannot encode {MANIFEST}: {e}")))?;
    let path = folder.join(MANIFEST);
    std::fs::write(&path, text + "\n")
        .map_err(|e| invalid(format!("cannot write {}: {e}", path.display())))
}
