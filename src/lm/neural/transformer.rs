//! One decoder-only transformer forward pass on candle tensors, covering the llama family
//! (llama, mistral, qwen2, gemma, phi3 after their fused weights are split at load time).
//!
//! The key/value cache is explicit and immutable ([`KvState`]): a forward pass takes the state
//! of a prefix and returns the state of the longer sequence, so one prefix's state can be
//! shared by every sample drawn after it (broadcast to a batch), kept in an LRU, or extended
//! sentence by sentence. candle-transformers' models keep their caches private to the model,
//! which is why the pass is written here, against the same kernels (candle-nn's RMS norm,
//! rotary embeddings and softmax, candle-transformers' `repeat_kv`).

use std::sync::Arc;

use candle_core::quantized::QMatMul;
use candle_core::{D, DType, Device, Module, Tensor};

use super::embedding::Embedding;
use super::kernels;
use super::lora::LowRank;
use super::quantized::MappedBlocks;

/// How rotary position embeddings pair up the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rope {
    /// Pairs (2i, 2i + 1): llama2.c checkpoints and llama GGUF files.
    Interleaved,
    /// Pairs (i, i + d/2): Hugging Face checkpoints and qwen2 GGUF files.
    Half,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Silu,
    /// The tanh approximation of GELU (gemma).
    GeluTanh,
}

/// The shape and conventions of a checkpoint.
#[derive(Clone, Debug)]
pub struct Config {
    pub arch: String,
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
    pub context: usize,
    pub rms_eps: f64,
    pub rope_theta: f64,
    pub rope: Rope,
    /// Per-frequency factors (llama 3 rope scaling), applied as divisors of the frequencies.
    pub rope_freq_factors: Option<Vec<f64>>,
    pub activation: Activation,
    /// Multiply embeddings by this (gemma: sqrt(hidden)).
    pub embed_scale: Option<f64>,
    /// Sliding-window attention: a position attends to itself and the `window - 1`
    /// positions before it (Hugging Face's convention), in the layers `sliding_layers` marks.
    pub sliding_window: Option<usize>,
    /// Per layer, whether it attends through `sliding_window` (qwen2 keeps the layers below
    /// `max_window_layers` on full attention).
    pub sliding_layers: Vec<bool>,
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if self.heads == 0 || self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) {
            return Err(format!(
                "{} attention heads cannot be grouped over {} key/value heads",
                self.heads, self.kv_heads
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return Err(format!(
                "head dimension {} must be even and positive",
                self.head_dim
            ));
        }
        if self.layers == 0 || self.hidden == 0 || self.vocab == 0 || self.context == 0 {
            return Err("the configuration has a zero dimension".into());
        }
        if self.sliding_window == Some(0) {
            return Err("a sliding window of 0 positions attends to nothing".into());
        }
        if self.sliding_window.is_some() && self.sliding_layers.len() != self.layers {
            return Err(format!(
                "{} layers marked for sliding-window attention in a model of {} layers",
                self.sliding_layers.len(),
                self.layers
            ));
        }
        Ok(())
    }

    /// The attention window of layer `l`, if it has one.
    pub fn window(&self, l: usize) -> Option<usize> {
        self.sliding_window
            .filter(|_| self.sliding_layers.get(l).copied().unwrap_or(false))
    }
}

/// The most positions a context may have: past any model's training, and small enough for
/// the rotary tables (context x head_dim / 2 numbers) to be allocated.
pub const MAX_CONTEXT: usize = 1 << 24;

/// Every weight's shape against what the configuration implies, before anything is allocated
/// from it: a configuration that contradicts its weights is refused, naming the field and the
/// tensor, rather than computing with the wrong shapes or allocating what a field claims.
fn check_weights(
    c: &Config,
    embed: &Embedding,
    layers: &[Layer],
    norm: &Tensor,
    head: &Linear,
) -> Result<(), String> {
    if c.context > MAX_CONTEXT {
        return Err(format!(
            "a context of {} positions (max_position_embeddings / context_length) is more than the {MAX_CONTEXT} beb supports",
            c.context
        ));
    }
    if layers.len() != c.layers {
        return Err(format!(
            "the configuration has {} layers (num_hidden_layers / block_count) but {} were loaded",
            c.layers,
            layers.len()
        ));
    }
    let expect = |what: &str, got: Vec<usize>, want: &[usize], fields: &str| {
        if got == want {
            Ok(())
        } else {
            Err(format!(
                "the tensor {what} has shape {got:?}, but the configuration ({fields}) implies {want:?}"
            ))
        }
    };
    let (h, q, kv, f) = (
        c.hidden,
        c.heads * c.head_dim,
        c.kv_heads * c.head_dim,
        c.intermediate,
    );
    expect(
        "token embedding",
        embed.dims().to_vec(),
        &[c.vocab, h],
        "vocab_size, hidden_size",
    )?;
    expect(
        "output head",
        head.weight_dims(),
        &[c.vocab, h],
        "vocab_size, hidden_size",
    )?;
    expect("final norm", norm.dims().to_vec(), &[h], "hidden_size")?;
    for (i, l) in layers.iter().enumerate() {
        let heads = "num_attention_heads x head_dim, hidden_size";
        let kv_heads = "num_key_value_heads x head_dim, hidden_size";
        let ffn = "intermediate_size, hidden_size";
        expect(
            &format!("layer {i} query"),
            l.q.weight_dims(),
            &[q, h],
            heads,
        )?;
        expect(
            &format!("layer {i} key"),
            l.k.weight_dims(),
            &[kv, h],
            kv_heads,
        )?;
        expect(
            &format!("layer {i} value"),
            l.v.weight_dims(),
            &[kv, h],
            kv_heads,
        )?;
        expect(
            &format!("layer {i} output"),
            l.o.weight_dims(),
            &[h, q],
            heads,
        )?;
        expect(
            &format!("layer {i} gate"),
            l.gate.weight_dims(),
            &[f, h],
            ffn,
        )?;
        expect(&format!("layer {i} up"), l.up.weight_dims(), &[f, h], ffn)?;
        expect(
            &format!("layer {i} down"),
            l.down.weight_dims(),
            &[h, f],
            "hidden_size, intermediate_size",
        )?;
        for (name, t) in [("attention norm", &l.attn_norm), ("MLP norm", &l.mlp_norm)] {
            expect(
                &format!("layer {i} {name}"),
                t.dims().to_vec(),
                &[h],
                "hidden_size",
            )?;
        }
    }
    crate::budget::check(
        &format!("rotary tables for a context of {} positions", c.context),
        c.context as u64,
        (c.head_dim * std::mem::size_of::<f32>()) as u64,
    )?;
    Ok(())
}

/// A linear map y = x W^T (+ b), dense or quantized, plus an optional low-rank (LoRA)
/// term (see `lora.rs`).
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
    lora: Option<LowRank>,
}

#[derive(Clone, Debug)]
enum Weight {
    Dense(Tensor),
    Quantized(QMatMul),
    /// q8_0 / q4_0 blocks read in place from a mapped GGUF file (CPU).
    Mapped(Arc<MappedBlocks>),
}

impl Linear {
    pub fn dense(weight: Tensor, bias: Option<Tensor>) -> Linear {
        Linear {
            weight: Weight::Dense(weight),
            bias,
            lora: None,
        }
    }

    /// A quantized weight; float GGUF tensors come out of candle dense and are kept dense in
    /// `dtype`.
    pub fn quantized(
        weight: QMatMul,
        bias: Option<Tensor>,
        dtype: DType,
    ) -> candle_core::Result<Linear> {
        let weight = match weight {
            QMatMul::Tensor(t) | QMatMul::TensorF16(t) => Weight::Dense(t.to_dtype(dtype)?),
            q => Weight::Quantized(q),
        };
        Ok(Linear {
            weight,
            bias,
            lora: None,
        })
    }

    /// Quantized blocks multiplied where they lie in a mapped file (`quantized.rs`).
    pub fn mapped(weight: Arc<MappedBlocks>, bias: Option<Tensor>) -> Linear {
        Linear {
            weight: Weight::Mapped(weight),
            bias,
            lora: None,
        }
    }

    /// The weight's shape, [out, in] for a well-formed weight.
    pub fn weight_dims(&self) -> Vec<usize> {
        match &self.weight {
            Weight::Dense(w) => w.dims().to_vec(),
            Weight::Quantized(QMatMul::QTensor(q)) => q.shape().dims().to_vec(),
            Weight::Quantized(QMatMul::Tensor(t) | QMatMul::TensorF16(t)) => t.dims().to_vec(),
            Weight::Mapped(w) => {
                let (n, k) = w.dims();
                vec![n, k]
            }
        }
    }

    /// The weight, [out, in], when it is dense.
    pub fn dense_weight(&self) -> Option<&Tensor> {
        match &self.weight {
            Weight::Dense(w) => Some(w),
            Weight::Quantized(_) | Weight::Mapped(_) => None,
        }
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    pub fn lora(&self) -> Option<&LowRank> {
        self.lora.as_ref()
    }

    /// The same map with a low-rank term added (replacing any there was).
    pub fn with_lora(&self, lora: Option<LowRank>) -> Linear {
        Linear {
            lora,
            ..self.clone()
        }
    }

    /// x: [.., in] -> [.., out] with candle's matmul (whose reduction order depends on the
    /// number of rows; see [`Linear::forward_invariant`]).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dims = x.dims().to_vec();
        let inner = dims.last().copied().unwrap_or(0);
        let rows = x.elem_count() / inner.max(1);
        let flat = x.reshape((rows, inner))?;
        let y = match &self.weight {
            Weight::Dense(w) => flat.matmul(&w.t()?)?,
            Weight::Quantized(q) => {
                let dtype = flat.dtype();
                q.forward(&flat.to_dtype(DType::F32)?)?.to_dtype(dtype)?
            }
            Weight::Mapped(w) => mapped_product(&flat, w)?,
        };
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let y = match &self.lora {
            Some(l) => (y + l.forward(&flat)?)?,
            None => y,
        };
        let mut out_dims = dims;
        if let Some(last) = out_dims.last_mut() {
            *last = y.dim(1)?;
        }
        y.reshape(out_dims)
    }
}

impl Linear {
    /// x: [.., in] -> [.., out], every output row computed alone in a fixed order (see
    /// `kernels.rs`), so a row's result is the same bits in any batch. Dense f32 weights on the
    /// CPU go through [`kernels::matmul_t`]; quantized weights through candle's quantized
    /// matmul, which quantizes each activation row and takes one block dot product per output
    /// (row by row, so also independent of the batch; tests/determinism.rs checks it); other
    /// dtypes and devices fall back to [`Linear::forward`].
    pub fn forward_invariant(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // Mapped blocks have one kernel, invariant and fast (`quantized.rs`).
        let Weight::Dense(w) = &self.weight else {
            return self.forward(x);
        };
        if !invariant_f32(x) || !invariant_f32(w) {
            return self.forward(x);
        }
        let dims = x.dims().to_vec();
        let inner = dims.last().copied().unwrap_or(0);
        let rows = x.elem_count() / inner.max(1);
        let flat = x.reshape((rows, inner))?;
        let y = product(&flat, w)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let y = match &self.lora {
            Some(l) if invariant_f32(&l.a) && invariant_f32(&l.b) => {
                (y + (product(&product(&flat, &l.a)?, &l.b)? * l.scale)?)?
            }
            Some(l) => (y + l.forward(&flat)?)?,
            None => y,
        };
        let mut out_dims = dims;
        if let Some(last) = out_dims.last_mut() {
            *last = y.dim(1)?;
        }
        y.reshape(out_dims)
    }
}

/// x W^T for x [m, k] (any float dtype, on the CPU) and mapped quantized blocks: [m, n] in
/// x's dtype.
fn mapped_product(x: &Tensor, w: &MappedBlocks) -> candle_core::Result<Tensor> {
    let (m, k) = x.dims2()?;
    let (n, kw) = w.dims();
    if k != kw {
        candle_core::bail!(
            "a {} weight of [{n}, {kw}] cannot take rows of {k}",
            w.format().name()
        );
    }
    if !x.device().is_cpu() {
        candle_core::bail!("weights read in place from a GGUF file are multiplied on the CPU");
    }
    let dtype = x.dtype();
    let y = with_f32(&x.to_dtype(DType::F32)?, |values| w.matmul_t(values, m))?;
    Tensor::from_vec(y, (m, n), x.device())?.to_dtype(dtype)
}

/// Whether `t` is an f32 CPU tensor (what the invariant kernels compute on).
fn invariant_f32(t: &Tensor) -> bool {
    t.dtype() == DType::F32 && t.device().is_cpu()
}

/// `f` applied to the f32 values of a CPU tensor, in row-major order (copied only when the
/// tensor is not contiguous).
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("the invariant kernels run on the CPU");
    };
    let all = cpu.as_slice::<f32>()?;
    let start = layout.start_offset();
    match all.get(start..start + t.elem_count()) {
        Some(values) => Ok(f(values)),
        None => candle_core::bail!("a tensor's layout runs past its storage"),
    }
}

/// x W^T for x [m, k] and w [n, k] with the invariant kernel: [m, n].
fn product(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let (m, k) = x.dims2()?;
    let (n, kw) = w.dims2()?;
    if k != kw {
        candle_core::bail!("a product of [{m}, {k}] with [{n}, {kw}]^T");
    }
    let y = with_f32(x, |xs| with_f32(w, |ws| kernels::matmul_t(xs, m, ws, n, k)))??;
    Tensor::from_vec(y, (m, n), x.device())
}

/// silu(gate) * up for f32 CPU tensors of one shape, in one pass on the calling thread:
/// candle's silu (`v / (1 + exp(-v))`) and product, the same operations in the same order,
/// without two element-wise ops through candle's spinning thread pool.
fn swiglu(gate: &Tensor, up: &Tensor) -> candle_core::Result<Tensor> {
    if gate.dims() != up.dims() || !invariant_f32(gate) || !invariant_f32(up) {
        return candle_nn::ops::silu(gate)? * up;
    }
    let y = with_f32(gate, |g| {
        with_f32(up, |u| {
            g.iter()
                .zip(u)
                .map(|(&g, &u)| g / (1.0 + (-g).exp()) * u)
                .collect::<Vec<f32>>()
        })
    })??;
    Tensor::from_vec(y, gate.dims(), gate.device())
}

#[derive(Clone, Debug)]
pub struct Layer {
    pub attn_norm: Tensor,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub mlp_norm: Tensor,
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

/// Keys and values of every layer for a batch of rows that all have the same length: a
/// `shared` part, one row read by every row of the batch (a common prompt, never copied per
/// row), followed by each row's own positions.
#[derive(Clone, Debug)]
pub struct KvState {
    /// Per layer: keys and values of the shared prefix, [kv_heads, 1, shared_len, head_dim]
    /// (head-major, so that attention needs no transposes of long tensors).
    pub shared: Vec<(Tensor, Tensor)>,
    pub shared_len: usize,
    /// Per layer: each row's own keys and values, [kv_heads, batch, rows_len, head_dim].
    pub rows: Vec<(Tensor, Tensor)>,
    pub rows_len: usize,
    pub batch: usize,
}

impl KvState {
    pub fn empty(batch: usize) -> KvState {
        KvState {
            shared: Vec::new(),
            shared_len: 0,
            rows: Vec::new(),
            rows_len: 0,
            batch,
        }
    }

    pub fn len(&self) -> usize {
        self.shared_len + self.rows_len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held (for the cache's budget).
    pub fn bytes(&self) -> usize {
        self.shared
            .iter()
            .chain(&self.rows)
            .map(|(k, v)| (k.elem_count() + v.elem_count()) * k.dtype().size_in_bytes())
            .sum()
    }

    /// A batch of `rows` rows that all continue this single-row state, which becomes their
    /// shared prefix.
    pub fn fan_out(&self, rows: usize) -> candle_core::Result<KvState> {
        if self.batch != 1 || !self.shared.is_empty() {
            candle_core::bail!("only a single-row state without a shared part can fan out");
        }
        Ok(KvState {
            shared: self.rows.clone(),
            shared_len: self.rows_len,
            rows: Vec::new(),
            rows_len: 0,
            batch: rows,
        })
    }

    /// The state of the chosen rows only.
    pub fn select(&self, rows: &[u32]) -> candle_core::Result<KvState> {
        let mut out = KvState {
            batch: rows.len(),
            ..self.clone()
        };
        if let Some((first, _)) = self.rows.first() {
            let index = Tensor::new(rows, first.device())?;
            out.rows = self
                .rows
                .iter()
                .map(|(k, v)| Ok((k.index_select(&index, 1)?, v.index_select(&index, 1)?)))
                .collect::<candle_core::Result<_>>()?;
        }
        Ok(out)
    }
}

/// Head-major [kv, b, s, d] keys or values repeated for `rep` query heads per key head:
/// [kv * rep, b, s, d].
fn repeat_heads(x: &Tensor, rep: usize) -> candle_core::Result<Tensor> {
    if rep == 1 {
        return Ok(x.clone());
    }
    let (kv, b, s, d) = x.dims4()?;
    x.reshape((kv, 1, b * s * d))?
        .broadcast_as((kv, rep, b * s * d))?
        .contiguous()?
        .reshape((kv * rep, b, s, d))
}

/// [rows, t, heads * d] activations as head-major [heads, rows, t, d].
fn head_major(x: &Tensor, heads: usize, d: usize) -> candle_core::Result<Tensor> {
    let (b, t, _) = x.dims3()?;
    x.reshape((b * t, heads, d))?
        .transpose(0, 1)?
        .contiguous()?
        .reshape((heads, b, t, d))
}

/// Weights, rotary tables and configuration of one model.
#[derive(Clone, Debug)]
pub struct Transformer {
    pub config: Config,
    /// Token embeddings, [vocab, hidden] (dense in the compute dtype, or quantized).
    pub embed: Embedding,
    pub layers: Vec<Layer>,
    pub norm: Tensor,
    pub head: Linear,
    cos: Tensor,
    sin: Tensor,
    pub device: Device,
    pub dtype: DType,
    /// Compose RMS norm, softmax and rotary embeddings from differentiable tensor ops
    /// instead of candle-nn's fused kernels, which have no backward pass (for training; the
    /// two agree to float rounding, see tests/finetune.rs).
    pub differentiable: bool,
    /// Use candle's matmul and attention (faster on large batches, but a row's result then
    /// depends in its last bits on the batch size and on where a cached prefix ends) instead
    /// of the batch-invariant kernels.
    pub fast_kernels: bool,
}

impl Transformer {
    pub fn new(
        config: Config,
        embed: impl Into<Embedding>,
        layers: Vec<Layer>,
        norm: Tensor,
        head: Linear,
        device: Device,
        dtype: DType,
    ) -> candle_core::Result<Transformer> {
        let embed = embed.into();
        check_weights(&config, &embed, &layers, &norm, &head).map_err(candle_core::Error::Msg)?;
        let half = config.head_dim / 2;
        let mut inv: Vec<f64> = (0..half)
            .map(|i| {
                1.0 / config
                    .rope_theta
                    .powf(2.0 * i as f64 / config.head_dim as f64)
            })
            .collect();
        if let Some(factors) = &config.rope_freq_factors {
            for (f, s) in inv.iter_mut().zip(factors) {
                *f /= s;
            }
        }
        let mut cos = Vec::with_capacity(config.context * half);
        let mut sin = Vec::with_capacity(config.context * half);
        for p in 0..config.context {
            for f in &inv {
                let angle = p as f64 * f;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let cos = Tensor::from_vec(cos, (config.context, half), &device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (config.context, half), &device)?.to_dtype(dtype)?;
        Ok(Transformer {
            config,
            embed,
            layers,
            norm,
            head,
            cos,
            sin,
            device,
            dtype,
            differentiable: false,
            fast_kernels: false,
        })
    }

    /// Whether this pass runs on the batch-invariant kernels (f32 on the CPU, not training,
    /// not opted out).
    pub fn invariant(&self) -> bool {
        !self.differentiable
            && !self.fast_kernels
            && !kernels::fast()
            && self.dtype == DType::F32
            && self.device.is_cpu()
    }

    fn linear(&self, l: &Linear, x: &Tensor) -> candle_core::Result<Tensor> {
        if self.invariant() {
            l.forward_invariant(x)
        } else {
            l.forward(x)
        }
    }

    /// x + y; on the invariant path in one pass on the calling thread (candle hands large
    /// element-wise ops to its spinning thread pool, which costs more than the add).
    fn add(&self, x: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
        if !self.invariant() || x.dims() != y.dims() {
            return x + y;
        }
        let z = with_f32(x, |a| {
            with_f32(y, |b| {
                a.iter().zip(b).map(|(a, b)| a + b).collect::<Vec<f32>>()
            })
        })??;
        Tensor::from_vec(z, x.dims(), x.device())
    }

    fn rms_norm(&self, x: &Tensor, weight: &Tensor) -> candle_core::Result<Tensor> {
        let eps = self.config.rms_eps as f32;
        if self.differentiable {
            candle_nn::ops::rms_norm_slow(x, weight, eps)
        } else {
            candle_nn::ops::rms_norm(x, weight, eps)
        }
    }

    fn softmax(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if self.differentiable {
            candle_nn::ops::softmax(x, D::Minus1)
        } else {
            candle_nn::ops::softmax_last_dim(x)
        }
    }

    fn rotary(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
        use candle_nn::rotary_emb as r;
        match (self.config.rope, self.differentiable) {
            (Rope::Interleaved, false) => r::rope_i(x, cos, sin),
            (Rope::Interleaved, true) => r::rope_i_slow(x, cos, sin),
            (Rope::Half, false) => r::rope(x, cos, sin),
            (Rope::Half, true) => r::rope_slow(x, cos, sin),
        }
    }

    /// Run `tokens` ([batch, t], row-major) after `past`; the logits of every new position,
    /// [batch, t, vocab] in f32, and the state of the longer sequences.
    pub fn forward(
        &self,
        tokens: &[u32],
        batch: usize,
        past: &KvState,
    ) -> candle_core::Result<(Tensor, KvState)> {
        let (x, state) = self.residual(tokens, batch, past, self.layers.len())?;
        let x = self.rms_norm(&x, &self.norm)?;
        let logits = self.linear(&self.head, &x)?.to_dtype(DType::F32)?;
        Ok((logits, state))
    }

    /// The hidden states of every position of `tokens` ([batch, t], read from scratch),
    /// [batch, t, hidden] in f32: with `layer` `None` after the final norm (what the LM head
    /// reads), with `Some(k)` the residual stream after block k (0: the embeddings).
    pub fn hidden(
        &self,
        tokens: &[u32],
        batch: usize,
        layer: Option<usize>,
    ) -> candle_core::Result<Tensor> {
        let depth = layer.unwrap_or(self.layers.len());
        if depth > self.layers.len() {
            candle_core::bail!("layer {depth} of a model of {} blocks", self.layers.len());
        }
        let (x, _) = self.residual(tokens, batch, &KvState::empty(batch), depth)?;
        let x = match layer {
            None => self.rms_norm(&x, &self.norm)?,
            Some(_) => x,
        };
        x.to_dtype(DType::F32)
    }

    /// The residual stream after the first `depth` blocks for `tokens` after `past`, and the
    /// state of those blocks.
    fn residual(
        &self,
        tokens: &[u32],
        batch: usize,
        past: &KvState,
        depth: usize,
    ) -> candle_core::Result<(Tensor, KvState)> {
        let c = &self.config;
        let t = tokens.len() / batch.max(1);
        if t == 0 || t * batch != tokens.len() {
            candle_core::bail!("{} tokens do not fill a batch of {batch}", tokens.len());
        }
        if past.batch != batch && !past.rows.is_empty() {
            candle_core::bail!("a state of {} rows for {batch} rows", past.batch);
        }
        let pos = past.len();
        if pos + t > c.context {
            candle_core::bail!(
                "{} positions exceed the context window of {}",
                pos + t,
                c.context
            );
        }
        let ids = Tensor::new(tokens, &self.device)?;
        let mut x = self.embed.lookup(&ids)?.reshape((batch, t, c.hidden))?;
        if let Some(scale) = c.embed_scale {
            x = (x * scale)?;
        }
        let cos = self.cos.narrow(0, pos, t)?;
        let sin = self.sin.narrow(0, pos, t)?;
        let full_mask = self.mask(t, pos, None)?;
        let window_mask = match c.sliding_window {
            Some(w) if c.sliding_layers.contains(&true) => self.mask(t, pos, Some(w))?,
            _ => None,
        };
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        let rep = c.heads / c.kv_heads;
        let shared_len = past.shared_len;
        let mut rows = Vec::with_capacity(self.layers.len());
        for (l, layer) in self.layers.iter().enumerate().take(depth) {
            let h = self.rms_norm(&x, &layer.attn_norm)?;
            let q = head_major(&self.linear(&layer.q, &h)?, c.heads, c.head_dim)?;
            let k = head_major(&self.linear(&layer.k, &h)?, c.kv_heads, c.head_dim)?;
            let v = head_major(&self.linear(&layer.v, &h)?, c.kv_heads, c.head_dim)?;
            // Head-major [heads, rows, t, d] is what the rotary kernels call [b, h, t, d]:
            // positions are still the third dimension.
            let (q, k) = (self.rotary(&q, &cos, &sin)?, self.rotary(&k, &cos, &sin)?);
            let (k, v) = match past.rows.get(l) {
                Some((pk, pv)) => (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?),
                None => (k, v),
            };
            rows.push((k.clone(), v.clone()));
            let y = if self.invariant() {
                self.attention(
                    &q,
                    &k,
                    &v,
                    past.shared.get(l),
                    shared_len,
                    batch,
                    c.window(l),
                )?
            } else {
                let kr = repeat_heads(&k, rep)?;
                let vr = repeat_heads(&v, rep)?;
                // [heads, rows, t, own]
                let own = q.matmul(&kr.t()?)?;
                let shared = past.shared.get(l);
                let grouped = (c.kv_heads, rep * batch * t, c.head_dim);
                let scores = match shared {
                    Some((sk, _)) => {
                        // One matmul per key head for every row and query head: the shared
                        // keys are read once, never copied per row.
                        let s = q
                            .reshape(grouped)?
                            .matmul(&sk.squeeze(1)?.t()?)?
                            .reshape((c.heads, batch, t, shared_len))?;
                        Tensor::cat(&[&s, &own], 3)?
                    }
                    None => own,
                };
                let scores = (scores * scale)?;
                let mask = if c.window(l).is_some() {
                    &window_mask
                } else {
                    &full_mask
                };
                let scores = match mask {
                    Some(m) => scores.broadcast_add(m)?,
                    None => scores,
                };
                let att = self.softmax(&scores)?;
                let y = match shared {
                    Some((_, sv)) => {
                        let own_len = att.dim(3)? - shared_len;
                        let a_shared = att.narrow(3, 0, shared_len)?.contiguous()?.reshape((
                            c.kv_heads,
                            rep * batch * t,
                            shared_len,
                        ))?;
                        let y_shared = a_shared
                            .matmul(&sv.squeeze(1)?)?
                            .reshape((c.heads, batch, t, c.head_dim))?;
                        let a_own = att.narrow(3, shared_len, own_len)?.contiguous()?;
                        (y_shared + a_own.matmul(&vr)?)?
                    }
                    None => att.matmul(&vr)?,
                };
                // [heads, rows, t, d] -> [rows, t, heads * d]
                y.permute((1, 2, 0, 3))?
                    .contiguous()?
                    .reshape((batch, t, c.heads * c.head_dim))?
            };
            x = self.add(&x, &self.linear(&layer.o, &y)?)?;
            let h = self.rms_norm(&x, &layer.mlp_norm)?;
            let gate = self.linear(&layer.gate, &h)?;
            let up = self.linear(&layer.up, &h)?;
            let gated = match c.activation {
                Activation::Silu if self.invariant() => swiglu(&gate, &up)?,
                Activation::Silu => (candle_nn::ops::silu(&gate)? * up)?,
                Activation::GeluTanh => (gate.gelu()? * up)?,
            };
            let m = self.linear(&layer.down, &gated)?;
            x = self.add(&x, &m)?;
        }
        Ok((
            x,
            KvState {
                shared: past.shared.clone(),
                shared_len,
                rows,
                rows_len: past.rows_len + t,
                batch,
            },
        ))
    }

    /// Attention of head-major queries `q` [heads, rows, t, d] over the shared keys and
    /// values (if any) and each row's own `k`, `v` [kv_heads, rows, len, d] with the invariant
    /// kernel: [rows, t, heads * d].
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        shared: Option<&(Tensor, Tensor)>,
        shared_len: usize,
        batch: usize,
        window: Option<usize>,
    ) -> candle_core::Result<Tensor> {
        let c = &self.config;
        let (_, _, t, d) = q.dims4()?;
        let rows_len = k.dim(2)?;
        let empty = Tensor::zeros(0, DType::F32, &self.device)?;
        let (sk, sv) = match shared {
            Some((sk, sv)) => (sk, sv),
            None => (&empty, &empty),
        };
        let y = with_f32(q, |q| {
            with_f32(k, |k| {
                with_f32(v, |v| {
                    with_f32(sk, |shared_k| {
                        with_f32(sv, |shared_v| {
                            kernels::Attention {
                                q,
                                shared_k,
                                shared_v,
                                shared_len: if shared.is_some() { shared_len } else { 0 },
                                k,
                                v,
                                rows_len,
                                heads: c.heads,
                                kv_heads: c.kv_heads,
                                batch,
                                t,
                                d,
                                scale: (1.0 / (c.head_dim as f64).sqrt()) as f32,
                                window,
                            }
                            .run()
                        })
                    })
                })
            })
        })?????;
        Tensor::from_vec(y, (batch, t, c.heads * d), &self.device)
    }

    /// The additive attention mask of t new positions after `pos` old ones (causal, and
    /// within `window` positions when given); `None` when nothing is masked.
    fn mask(
        &self,
        t: usize,
        pos: usize,
        window: Option<usize>,
    ) -> candle_core::Result<Option<Tensor>> {
        let total = pos + t;
        let window = window.unwrap_or(usize::MAX);
        if t == 1 && total <= window {
            return Ok(None);
        }
        let mut m = vec![0f32; t * total];
        for i in 0..t {
            let at = pos + i;
            for j in 0..total {
                if j > at || at - j >= window {
                    m[i * total + j] = f32::NEG_INFINITY;
                }
            }
        }
        Ok(Some(
            Tensor::from_vec(m, (t, total), &self.device)?.to_dtype(self.dtype)?,
        ))
    }
}

/// Natural-log softmax over the last dimension in f64 (from f32 logits): the precision every
/// score and sampling distribution is computed in.
pub fn log_softmax_f64(logits: &Tensor) -> candle_core::Result<Tensor> {
    candle_nn::ops::log_softmax(&logits.to_dtype(DType::F64)?, D::Minus1)
}
