//! A quantized GGUF embedding stays quantized and only the looked-up rows are dequantized:
//! the rows, and a whole model's log-probs, are the same bits as with the table dequantized.

mod common;

use std::sync::Arc;

use beb::lm::neural::embedding::Embedding;
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{DType, Device, Tensor};

#[test]
fn quantized_rows_equal_dequantized_rows() {
    let values: Vec<f32> = (0..64 * 256)
        .map(|i| ((i * 7919) % 1000) as f32 / 300.0 - 1.6)
        .collect();
    let table = Tensor::from_vec(values, (64, 256), &Device::Cpu).expect("table");
    let ids = Tensor::new(&[3u32, 0, 63, 3, 17], &Device::Cpu).expect("ids");
    for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_0, GgmlDType::Q4K] {
        let q = QTensor::quantize(&table, dtype).expect("quantize");
        let dense = Embedding::Dense(q.dequantize(&Device::Cpu).expect("dequantize"));
        let quantized = Embedding::Quantized {
            table: Arc::new(q),
            dtype: DType::F32,
        };
        assert_eq!(quantized.dims(), vec![64, 256]);
        let a: Vec<Vec<f32>> = quantized.lookup(&ids).and_then(|t| t.to_vec2()).expect("a");
        let b: Vec<Vec<f32>> = dense.lookup(&ids).and_then(|t| t.to_vec2()).expect("b");
        assert_eq!(a, b, "{dtype:?}");
    }
}

/// stories260K q8_0 against a copy whose embedding is stored dequantized (f32) and whose
/// output layer keeps the q8_0 blocks: every log-prob is the same bits.
#[test]
fn quantized_embedding_model_equals_dequantized_embedding_model() {
    let Some(dir) = common::stories() else { return };
    let path = dir.join("stories260K-q8_0.gguf");
    let mut file = std::fs::File::open(&path).expect("open");
    let content = gguf_file::Content::read(&mut file).expect("read");
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for name in content.tensor_infos.keys() {
        let t = content
            .tensor(&mut file, name, &Device::Cpu)
            .expect("tensor");
        if name == "token_embd.weight" {
            assert_eq!(t.dtype(), GgmlDType::Q8_0);
            let dense = t.dequantize(&Device::Cpu).expect("dequantize");
            if !content.tensor_infos.contains_key("output.weight") {
                let again = content
                    .tensor(&mut file, name, &Device::Cpu)
                    .expect("tensor");
                tensors.push(("output.weight".into(), again));
            }
            tensors.push((
                name.clone(),
                QTensor::quantize(&dense, GgmlDType::F32).expect("f32"),
            ));
        } else {
            tensors.push((name.clone(), t));
        }
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let copy = common::scratch("quantized-embedding").join("dense-embedding.gguf");
    let mut out = std::fs::File::create(&copy).expect("create");
    gguf_file::write(&mut out, &metadata, &refs).expect("write");
    drop(out);

    let quantized = common::load(&path);
    let dense = common::load(&copy);
    for row in common::reference_rows(&dir) {
        let a = quantized.token_logprobs(&row.ids).expect("quantized");
        let b = dense.token_logprobs(&row.ids).expect("dense");
        assert_eq!(a, b, "{:?}", row.text);
    }
}

/// On the CPU a GGUF q8_0 model's blocks are read where they lie in a mapping of the file
/// (shared with every process that maps it), not copied: the file is mapped while the model
/// lives, and the mapping goes with it.
#[cfg(target_os = "linux")]
#[test]
fn q8_0_weights_stay_in_the_mapped_file_while_the_model_lives() {
    let Some(dir) = common::stories() else { return };
    // A copy of its own: other tests in this process load the shared file.
    let copy = common::scratch("mapped-q8_0").join("stories260K-q8_0.gguf");
    std::fs::copy(dir.join("stories260K-q8_0.gguf"), &copy).expect("copy");
    let path = std::fs::canonicalize(&copy).expect("path");
    let mapped = || {
        std::fs::read_to_string("/proc/self/maps")
            .expect("maps")
            .lines()
            .any(|l| l.ends_with(path.to_str().expect("utf-8 path")))
    };
    assert!(!mapped(), "mapped before loading");
    let model = common::load(&path);
    let row = &common::reference_rows(&dir)[0];
    let logprobs = model.token_logprobs(&row.ids).expect("score");
    assert!(logprobs.iter().all(|x| x.is_finite()));
    assert!(mapped(), "the model does not map {}", path.display());
    drop(model);
    assert!(!mapped(), "the mapping outlived the model");
}
