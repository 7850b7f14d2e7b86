//! beb's quantized path against llama.cpp on the same GGUF files, token by token: the only
//! independent reference for q8_0 (a float64 reference of the dequantized weights does not
//! see the activation quantization that q8_0 matrix products do). llama.cpp comes from
//! llama-cpp-python, which `.ci/run` installs (`BEB_LLAMA_SERVER_PYTHON`); the figures are
//! printed (`--nocapture`) and quoted in docs/servers.md.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

fn python() -> Option<String> {
    match std::env::var("BEB_LLAMA_SERVER_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ if std::env::var_os("CI").is_some() => {
            panic!("BEB_LLAMA_SERVER_PYTHON is not set; .ci/run installs llama-cpp-python")
        }
        _ => {
            eprintln!("skipping: BEB_LLAMA_SERVER_PYTHON (a python with llama_cpp) is not set");
            None
        }
    }
}

/// llama.cpp's per-token log-probs of each row of ids (BOS first) under `model`.
fn llama_cpp(python: &str, model: &std::path::Path, rows: &[Vec<u32>]) -> Vec<Vec<f64>> {
    let script = common::root().join("tests/fixtures/llama_cpp_logprobs.py");
    let request = serde_json::json!({ "model": model, "rows": rows });
    let mut child = Command::new(python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{python}: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(request.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "llama.cpp failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    json["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    r.as_array()
                        .map(|v| v.iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// (max, mean) absolute difference per token.
fn compare(a: &[Vec<f64>], b: &[Vec<f64>]) -> (f64, f64) {
    let (mut max, mut sum, mut n) = (0.0f64, 0.0, 0usize);
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.len(), y.len());
        for (p, q) in x.iter().zip(y) {
            max = max.max((p - q).abs());
            sum += (p - q).abs();
            n += 1;
        }
    }
    (max, sum / n.max(1) as f64)
}

#[test]
fn quantized_logprobs_agree_with_llama_cpp_token_by_token() {
    let Some(dir) = common::stories() else { return };
    let Some(python) = python() else { return };
    let rows_read = common::reference_rows(&dir);
    let rows: Vec<Vec<u32>> = rows_read.iter().map(|r| r.ids.clone()).collect();
    let reference: Vec<Vec<f64>> = rows_read.iter().map(|r| r.logprobs.clone()).collect();
    let tokens: usize = reference.iter().map(Vec::len).sum();
    for (file, max_allowed) in [
        ("stories260K-f32.gguf", 1e-4),
        ("stories260K-q8_0.gguf", 0.1),
    ] {
        let path = dir.join(file);
        let model = common::load(&path);
        let beb: Vec<Vec<f64>> = rows
            .iter()
            .map(|ids| model.token_logprobs(ids).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        // The same model read one token at a time: each state extends the cached previous one
        // by a single position, as llama.cpp's n_batch = 1 evaluation does.
        let stepwise: Vec<Vec<f64>> = rows
            .iter()
            .map(|ids| {
                (0..ids.len() - 1)
                    .map(|i| {
                        let next = model
                            .next_logprobs(&ids[..=i])
                            .unwrap_or_else(|e| panic!("{e}"));
                        next[ids[i + 1] as usize]
                    })
                    .collect()
            })
            .collect();
        let theirs = llama_cpp(&python, &path, &rows);
        let (step_max, step_mean) = compare(&stepwise, &theirs);
        let (self_max, self_mean) = compare(&stepwise, &beb);
        println!(
            "{file}: beb one token at a time vs llama.cpp max {step_max:.2e} mean {step_mean:.2e}; beb at once vs one at a time max {self_max:.2e} mean {self_mean:.2e}"
        );
        let (max, mean) = compare(&beb, &theirs);
        let (ref_max, ref_mean) = compare(&beb, &reference);
        let (their_ref_max, their_ref_mean) = compare(&theirs, &reference);
        println!(
            "{file}, {tokens} tokens: beb vs llama.cpp max {max:.2e} mean {mean:.2e}; beb vs float64 reference max {ref_max:.2e} mean {ref_mean:.2e}; llama.cpp vs reference max {their_ref_max:.2e} mean {their_ref_mean:.2e} nats/token"
        );
        assert!(
            max < max_allowed,
            "{file}: beb and llama.cpp differ by up to {max}"
        );
        // Both quantized implementations must agree with each other far better than either
        // agrees with the float64 reference of the dequantized weights.
        assert!(
            mean < 0.1 * ref_mean.max(their_ref_mean).max(1e-4),
            "{file}: mean difference {mean} vs {ref_mean} from the reference"
        );
    }
}
