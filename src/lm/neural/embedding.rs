//! Token embeddings, dense or kept quantized: a quantized GGUF embedding dequantized whole
//! would add vocab x hidden x 4 bytes (262 MB for a 32000 x 2048 table) to a model whose file
//! is otherwise held at its own size, so only the rows a pass looks up are dequantized.

use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::{DType, Tensor};

/// The [vocab, hidden] table a forward pass reads its first activations from.
#[derive(Clone, Debug)]
pub enum Embedding {
    /// In the compute dtype (trainable: finetuning reads and replaces it).
    Dense(Tensor),
    /// Quantized blocks; looked-up rows come out in `dtype`.
    Quantized { table: Arc<QTensor>, dtype: DType },
}

impl Embedding {
    /// The embedding of each id, [ids, hidden] in the compute dtype. A quantized row is
    /// dequantized by the same block routine as a whole-table dequantization, so both give
    /// the same bits.
    pub fn lookup(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Embedding::Dense(t) => t.index_select(ids, 0),
            Embedding::Quantized { table, dtype } => table.embedding(ids)?.to_dtype(*dtype),
        }
    }

    /// [vocab, hidden].
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Embedding::Dense(t) => t.dims().to_vec(),
            Embedding::Quantized { table, .. } => table.shape().dims().to_vec(),
        }
    }

    /// The dense table, `None` when quantized.
    pub fn dense(&self) -> Option<&Tensor> {
        match self {
            Embedding::Dense(t) => Some(t),
            Embedding::Quantized { .. } => None,
        }
    }
}

impl From<Tensor> for Embedding {
    fn from(t: Tensor) -> Embedding {
        Embedding::Dense(t)
    }
}
