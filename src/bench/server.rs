//! The Figure 2 procedure with P served over HTTP (stories260K f32 served as "stories260K" at
//! `$BEB_BENCH_SERVER`, e.g. llama-cpp-python on 127.0.0.1; docs/servers.md) against the same
//! with P local: the HTTP overhead per processed token. beb starts no programs, so the server
//! is started beforehand.

use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use crate::lm::neural::{ComputeOptions, LoadOptions, NeuralLm, NeuralModel};
use crate::lm::server::http::HttpOptions;
use crate::lm::server::{RemoteLm, Server, ServerOptions};
use crate::lm::{ModelRef, UnitSpec};
use crate::measure::{self, Method};

const SAMPLES: usize = 64;
const TOKENS: usize = 8;
const LENGTHS: [usize; 3] = [1, 2, 3];

fn local(path: &Path, tokenizer: &Path) -> Result<ModelRef, String> {
    let options = LoadOptions {
        tokenizer: Some(tokenizer.to_path_buf()),
        ..LoadOptions::default()
    };
    let model =
        NeuralModel::load(path, &options, &ComputeOptions::default()).map_err(|e| e.to_string())?;
    Ok(Rc::new(NeuralLm::new(
        "local",
        Rc::new(model),
        UnitSpec::Tokens(TOKENS),
    )))
}

/// KL(P||Q) over the next 8 tokens (Monte Carlo) and log P of the prompt after its first
/// token, per (text, length) cell: tokens processed per second.
fn procedure(p: &ModelRef, q: &ModelRef, texts: &[String]) -> Result<(f64, f64), String> {
    let tok = p.as_tokens().ok_or("not a token model")?;
    let start = Instant::now();
    let mut tokens = 0;
    for (i, text) in texts.iter().enumerate() {
        let units = tok.prompt(text).map_err(|e| e.to_string())?;
        for &n in &LENGTHS {
            let given = &units[..n.min(units.len())];
            let method = Method::monte_carlo(
                SAMPLES,
                crate::seed::Stream::new(1, format!("bench-server/{i}/{n}")),
            );
            measure::kl(p.as_ref(), q.as_ref(), given, 1, &method).map_err(|e| e.to_string())?;
            p.logprob(&given[..1], &given[1..])
                .map_err(|e| e.to_string())?;
            tokens += 3 * SAMPLES * TOKENS + (given.len() - 1) * TOKENS;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((tokens as f64 / secs, secs))
}

pub fn run() -> Result<(), String> {
    let url = std::env::var("BEB_BENCH_SERVER").map_err(|_| {
        "set BEB_BENCH_SERVER to the /v1 URL of a server of stories260K-f32.gguf named stories260K (docs/servers.md)".to_string()
    })?;
    let dir = super::figure2::shared()?;
    let tokenizer = dir.join("tokenizer.json");
    let options = ServerOptions {
        url,
        model: "stories260K".into(),
        http: HttpOptions::default(),
        api_key: None,
    };
    let served = Server::connect(options, &tokenizer).map_err(|e| e.to_string())?;
    let remote: ModelRef = Rc::new(RemoteLm::new(
        "served",
        Rc::new(served),
        UnitSpec::Tokens(TOKENS),
    ));
    let p = local(&dir.join("stories260K-f32.gguf"), &tokenizer)?;
    let q = local(&dir.join("stories260K-q8_0.gguf"), &tokenizer)?;
    let texts = vec![
        "Once upon a time, there was a little girl named Lily. She loved to play outside."
            .to_string(),
        "One day, a big dog came to the park. The dog was very happy and wanted to play."
            .to_string(),
        "Tom had a red ball. He liked to throw it high in the sky and catch it.".to_string(),
    ];
    crate::outln!(
        "server: KL(P||Q) over 8 tokens ({SAMPLES} samples) and log P(prompt), {} texts x {} lengths; P stories260K f32 served or local, Q local q8_0",
        texts.len(),
        LENGTHS.len()
    );
    let (local_rate, local_secs) = procedure(&p, &q, &texts)?;
    let (http_rate, http_secs) = procedure(&remote, &q, &texts)?;
    crate::outln!("  P local          {local_secs:>7.2} s, {local_rate:>9.0} tokens/s");
    crate::outln!("  P over HTTP      {http_secs:>7.2} s, {http_rate:>9.0} tokens/s");
    crate::outln!(
        "  ratio            {:>7.1}x the time per token over HTTP",
        local_rate / http_rate
    );
    Ok(())
}
