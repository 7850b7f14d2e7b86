//! Token embeddings, dense or kept quantized: a quantized GGUF embedding dequantized whole
//! would add vocab x hidden x 4 bytes (262 MB for a 32000 x 2048 table) to a model whose file
//! is otherwise held at its own size, so only the rows a pass looks up are dequantized.

use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::{DType, Tensor};

use super::quantized::MappedBlocks;

/// The [vocab, hidden] table a forward pass reads its first activations from.
#[derive(Clone, Debug)]
pub enum Embedding {
    /// In the compute dtype (trainable: finetuning reads and replaces it).
    Dense(Tensor),
    /// Quantized blocks; looked-up rows come out in `dtype`.
    Quantized { table: Arc<QTensor>, dtype: DType },
    /// q8_0 / q4_0 blocks read in place from a mapped GGUF file.
    Mapped {
        table: Arc<MappedBlocks>,
        dtype: DType,
    },
}

impl Embedding {
    /// The embedding of each id, [ids, hidden] in the compute dtype. A quantized row is
    /// dequantized by the same block routine as a whole-table dequantization, so both give
    /// the same bits.
    pub fn lookup(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Embedding::Dense(t) => t.index_select(ids, 0),
            Embedding::Quantized { table, dtype } => table.embedding(ids)?.to_dtype(*dtype),
            Embedding::Mapped { table, dtype } => {
                let (vocab, hidden) = table.dims();
                let ids = ids.flatten_all()?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
                let mut rows = vec![0f32; ids.len() * hidden];
                for (&id, row) in ids.iter().zip(rows.chunks_exact_mut(hidden.max(1))) {
                    if id as usize >= vocab {
                        candle_core::bail!("token id {id} is outside the vocabulary of {vocab}");
                    }
                    table.dequantize_row(id as usize, row);
                }
                Tensor::from_vec(rows, (ids.len(), hidden), &candle_core::Device::Cpu)?
                    .to_dtype(*dtype)
            }
        }
    }

    /// [vocab, hidden].
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Embedding::Dense(t) => t.dims().to_vec(),
            Embedding::Quantized { table, .. } => table.shape().dims().to_vec(),
            Embedding::Mapped { table, .. } => {
                let (vocab, hidden) = table.dims();
                vec![vocab, hidden]
            }
        }
    }

    /// The dense table, `None` when quantized.
    pub fn dense(&self) -> Option<&Tensor> {
        match self {
            Embedding::Dense(t) => Some(t),
            Embedding::Quantized { .. } | Embedding::Mapped { .. } => None,
        }
    }
}

impl From<Tensor> for Embedding {
    fn from(t: Tensor) -> Embedding {
        Embedding::Dense(t)
    }
}
