//! GGUF files (llama, qwen2): quantized weights stay quantized; the tokenizer comes from the
//! file's metadata unless one is given.

use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor, gguf_file};
use candle_core::{DType, Tensor};

use super::{
    BOS_NAMES, EOS_NAMES, GGUF_ARCHITECTURES, LoadOptions, Loaded, candle_err, invalid, token_named,
};
use crate::lm::neural::embedding::Embedding;
use crate::lm::neural::quantized::{BlockFormat, MappedBlocks};
use crate::lm::neural::tokenizer::{self, TokenizerHandle};
use crate::lm::neural::transformer::{Activation, Config, Layer, Linear, Rope, Transformer};
use crate::lm::{ModelError, ModelResult};

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

/// The token embedding's blocks: in place in the mapping, or read by candle.
enum Table {
    Mapped(Arc<MappedBlocks>),
    Read(Arc<QTensor>),
}

pub(super) fn load(path: &Path, options: &LoadOptions) -> ModelResult<Loaded> {
    let file = std::fs::File::open(path)
        .map_err(|e| invalid(format!("cannot open {}: {e}", path.display())))?;
    // On the CPU, q8_0 and q4_0 matrices are multiplied where they lie in a mapping of the
    // file (`quantized.rs`); other tensors are read into candle's own blocks.
    let map = if options.device.is_cpu() {
        // SAFETY: the mapping is read only; as with any mapped weights (safetensors too),
        // truncating the file while the model is loaded is the user's error.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| invalid(format!("cannot map {}: {e}", path.display())))?;
        Some(Arc::new(map))
    } else {
        None
    };
    let file_size = file
        .metadata()
        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?
        .len();
    let mut reader = std::io::BufReader::new(file);
    let content = gguf_file::Content::read(&mut reader).map_err(|e| {
        invalid(format!(
            "{} is not a readable GGUF file: {e} (is the file complete?)",
            path.display()
        ))
    })?;
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
    // The matrix `name` in place in the mapping, where it is a q8_0 / q4_0 matrix and the
    // model runs on the CPU.
    let mapped_parameters = std::cell::Cell::new(0usize);
    let mapped = |name: &str| -> ModelResult<Option<Arc<MappedBlocks>>> {
        let (Some(map), Some(info)) = (&map, content.tensor_infos.get(name)) else {
            return Ok(None);
        };
        let format = match info.ggml_dtype {
            GgmlDType::Q8_0 => BlockFormat::Q8_0,
            GgmlDType::Q4_0 => BlockFormat::Q4_0,
            _ => return Ok(None),
        };
        let &[n, k] = info.shape.dims() else {
            return Ok(None);
        };
        let start = usize::try_from(content.tensor_data_offset + info.offset).map_err(|_| {
            invalid(format!(
                "tensor `{name}` of {} lies past what this machine can address",
                path.display()
            ))
        })?;
        let blocks = MappedBlocks::new(map.clone(), start, n, k, format)
            .map_err(|e| invalid(format!("tensor `{name}` of {}: {e}", path.display())))?;
        mapped_parameters.set(mapped_parameters.get() + n * k);
        Ok(Some(Arc::new(blocks)))
    };
    let table = match mapped("token_embd.weight")? {
        Some(m) => Table::Mapped(m),
        None => Table::Read(Arc::new(qtensor("token_embd.weight")?)),
    };
    let vocab = match &table {
        Table::Mapped(m) => m.dims().0,
        Table::Read(q) => q.shape().dims().first().copied().unwrap_or(0),
    };
    let qkv_bias = arch == "qwen2";
    let layers_n = need("block_count")?;
    // Weights of blocks past block_count would be silently dropped.
    if let Some(deepest) = content
        .tensor_infos
        .keys()
        .filter_map(|name| {
            name.strip_prefix("blk.")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .filter(|&d| d >= layers_n)
    {
        return Err(invalid(format!(
            "{}: `{arch}.block_count` is {layers_n}, but the file has block {deepest} (blk.{deepest}.*)",
            path.display()
        )));
    }
    let mut layers = Vec::with_capacity(layers_n);
    for i in 0..layers_n {
        let p = format!("blk.{i}");
        let mut lin = |name: &str, bias: bool| -> ModelResult<Linear> {
            let weight = format!("{p}.{name}.weight");
            let b = if bias {
                Some(dense(qtensor(&format!("{p}.{name}.bias"))?)?)
            } else {
                None
            };
            match mapped(&weight)? {
                Some(w) => Ok(Linear::mapped(w, b)),
                None => qlinear(qtensor(&weight)?, b),
            }
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
    // A tied output layer shares the embedding's blocks rather than reading them again.
    let head = if content.tensor_infos.contains_key("output.weight") {
        match mapped("output.weight")? {
            Some(w) => Linear::mapped(w, None),
            None => qlinear(qtensor("output.weight")?, None)?,
        }
    } else {
        match &table {
            Table::Mapped(m) => Linear::mapped(m.clone(), None),
            Table::Read(q) => QMatMul::from_arc(q.clone())
                .and_then(|q| Linear::quantized(q, None, dtype))
                .map_err(candle_err(path, "cannot set up weights of"))?,
        }
    };
    // Float tables are dense in the compute dtype; quantized ones stay quantized.
    let embed = match table {
        Table::Mapped(table) => Embedding::Mapped { table, dtype },
        Table::Read(q)
            if matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) =>
        {
            Embedding::Dense(
                q.dequantize(device)
                    .and_then(|x| x.to_dtype(dtype))
                    .map_err(candle_err(path, "cannot dequantize weights of"))?,
            )
        }
        Table::Read(table) => Embedding::Quantized { table, dtype },
    };
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
    let embedded_template = match content.metadata.get("tokenizer.chat_template") {
        Some(v) => Some(v.to_string().cloned().map_err(|_| {
            invalid(format!(
                "GGUF metadata `tokenizer.chat_template` of {} is not a string",
                path.display()
            ))
        })?),
        None => None,
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
        parameters: parameters + mapped_parameters.get(),
        embedded_template,
    })
}
