//! Loading neural models (the shared ones or a test's own) and comparing their numbers.

use std::path::Path;

use beb::lm::neural::{ComputeOptions, LoadOptions, NeuralModel};

/// Load a model with the default options; a test fails when it cannot.
pub fn load(path: &Path) -> NeuralModel {
    load_with(path, &LoadOptions::default(), ComputeOptions::default())
}

/// Load a model with the given run options (cache, batch).
pub fn load_run(path: &Path, run: ComputeOptions) -> NeuralModel {
    load_with(path, &LoadOptions::default(), run)
}

/// Load a model with the given load and run options.
pub fn load_with(path: &Path, options: &LoadOptions, run: ComputeOptions) -> NeuralModel {
    NeuralModel::load(path, options, &run)
        .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

/// Run options with no state cache and one text per pass: every prefix from scratch.
pub fn uncached() -> ComputeOptions {
    ComputeOptions {
        cache_bytes: 0,
        batch: 1,
    }
}

/// The largest difference between two vectors of the same length.
pub fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "vector lengths");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// The largest difference between two f32 vectors of the same length.
pub fn max_diff32(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "vector lengths");
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from((x - y).abs()))
        .fold(0.0, f64::max)
}

/// Log-probabilities from logits.
pub fn log_softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let z = logits.iter().map(|x| (x - max).exp()).sum::<f64>().ln() + max;
    logits.iter().map(|x| x - z).collect()
}

/// One text of a model folder's `reference_logprobs.json`: its token ids (BOS first) and the
/// float64 log-probabilities of ids[1..], each given the ids before it.
pub struct ReferenceRow {
    pub text: String,
    pub ids: Vec<u32>,
    pub logprobs: Vec<f64>,
}

/// The rows of `dir/reference_logprobs.json`.
pub fn reference_rows(dir: &Path) -> Vec<ReferenceRow> {
    let text = super::read(&dir.join("reference_logprobs.json"));
    let json: serde_json::Value = serde_json::from_str(&text).expect("reference JSON");
    let numbers = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        v.as_array().expect("a list of numbers").clone()
    };
    json["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| ReferenceRow {
            text: r["text"].as_str().expect("text").to_string(),
            ids: numbers(&r["token_ids"])
                .iter()
                .map(|x| x.as_u64().expect("id") as u32)
                .collect(),
            logprobs: numbers(&r["token_logprobs"])
                .iter()
                .map(|x| x.as_f64().expect("logprob"))
                .collect(),
        })
        .collect()
}
