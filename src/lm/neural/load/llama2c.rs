//! llama2.c `.bin` checkpoints: the legacy (version 0) layout, grouped-query attention
//! allowed, read with a tokenizer.json beside the file or given.

use std::path::Path;

use candle_core::Tensor;

use super::{
    BOS_NAMES, EOS_NAMES, LoadOptions, Loaded, candle_err, invalid, token_named, tokenizer_beside,
};
use crate::lm::neural::transformer::{Activation, Config, Layer, Linear, Rope, Transformer};
use crate::lm::{ModelError, ModelResult};

pub(super) fn load(path: &Path, options: &LoadOptions) -> ModelResult<Loaded> {
    let file = std::fs::File::open(path)
        .map_err(|e| invalid(format!("cannot open {}: {e}", path.display())))?;
    // Safety: read-only mapping of a model file (see hf::load).
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
        embedded_template: None,
    })
}
