//! `beb bench`: speed measured against a baseline on the same machine, reported as ratios.
//!
//! `loop`: a 1,000,000-iteration arithmetic loop in beb against the same loop compiled
//! natively (the interpreter's overhead factor).
//!
//! `figure2`: the paper's Figure 2 procedure on neural models (10 prompts × 15 lengths × 64
//! samples × 8 tokens: Monte Carlo KL and prompt log-ratios), through the cached, batched
//! path against the naive one (no cache reuse, one sample at a time), on stories260K and on a
//! randomly initialised llama of about 25M parameters written by the benchmark.

use std::hint::black_box;
use std::time::{Duration, Instant};

use crate::eval::Interp;

const LOOP_SOURCE: &str = "let total = 0\nfor i in 0..1000000 { total += i * 2 - 1 }\ntotal";

/// The best of `runs` timings of `f` (the least disturbed by other work on the machine).
fn best_of(runs: usize, mut f: impl FnMut() -> Result<(), String>) -> Result<Duration, String> {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let start = Instant::now();
        f()?;
        best = best.min(start.elapsed());
    }
    Ok(best)
}

fn interpreted_loop() -> Result<(), String> {
    let mut interp = Interp::new(0, Box::new(std::io::sink()));
    let file = interp.add_source("<bench>", LOOP_SOURCE);
    let program = interp.parse(file).map_err(|e| e.message)?;
    let value = interp.run(&program).map_err(|e| e.message)?;
    if value.to_string() != "999998000000" {
        return Err(format!("the benchmark loop computed {value}"));
    }
    Ok(())
}

fn native_loop() -> Result<(), String> {
    let mut total = 0.0f64;
    for i in 0..black_box(1_000_000u32) {
        total += black_box(f64::from(i)) * 2.0 - 1.0;
    }
    black_box(total);
    Ok(())
}

/// Run the named benchmark (or all); returns the exit code.
pub fn run(name: Option<&str>) -> i32 {
    if name == Some("server") {
        return match server::run() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("beb bench server: {e}");
                2
            }
        };
    }
    if name == Some("kernels") {
        return match kernels::run() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("beb bench kernels: {e}");
                2
            }
        };
    }
    if name == Some("figure2") {
        return match figure2::run() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("beb bench figure2: {e}");
                2
            }
        };
    }
    match name {
        None | Some("loop") => match (best_of(5, interpreted_loop), best_of(5, native_loop)) {
            (Ok(beb), Ok(native)) => {
                println!("loop: 1,000,000 iterations of `total += i * 2 - 1`, best of 5");
                println!("  beb interpreter  {:>10.1} ms", beb.as_secs_f64() * 1e3);
                println!("  native Rust      {:>10.3} ms", native.as_secs_f64() * 1e3);
                println!(
                    "  ratio            {:>10.0}x slower than native",
                    beb.as_secs_f64() / native.as_secs_f64()
                );
                0
            }
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("beb bench: {e}");
                2
            }
        },
        Some(other) => {
            eprintln!(
                "beb bench: no benchmark `{other}` (benchmarks: loop, figure2, kernels, server)"
            );
            2
        }
    }
}

mod figure2 {
    use std::path::{Path, PathBuf};
    use std::rc::Rc;
    use std::time::Instant;

    use crate::lm::neural::random::{RandomLlama, write_random_llama};
    use crate::lm::neural::{ComputeOptions, LoadOptions, NeuralLm, NeuralModel};
    use crate::lm::{ModelRef, Unit, UnitSpec};
    use crate::measure::{self, Method};

    const PROMPTS: usize = 10;
    const LENGTHS: usize = 15;
    const SAMPLES: usize = 64;
    const TOKENS: usize = 8;

    pub(super) fn shared() -> Result<PathBuf, String> {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Ok(s) = std::env::var("BEB_SHARED") {
            candidates.push(PathBuf::from(s));
        }
        candidates.push(PathBuf::from("../shared"));
        candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
        candidates
            .into_iter()
            .map(|c| c.join("models/stories260K"))
            .find(|c| c.is_dir())
            .ok_or_else(|| "the shared models are not found (set BEB_SHARED)".to_string())
    }

    fn load(
        path: &Path,
        tokenizer: &Path,
        run: ComputeOptions,
        unit: UnitSpec,
    ) -> Result<ModelRef, String> {
        let options = LoadOptions {
            tokenizer: Some(tokenizer.to_path_buf()),
            ..LoadOptions::default()
        };
        let model = NeuralModel::load(path, &options, &run).map_err(|e| e.to_string())?;
        Ok(Rc::new(NeuralLm::new("m", Rc::new(model), unit)))
    }

    /// (p, q) with units of 8 tokens.
    fn pair(
        paths: &(PathBuf, PathBuf),
        tokenizer: &Path,
        run: &ComputeOptions,
    ) -> Result<(ModelRef, ModelRef), String> {
        Ok((
            load(&paths.0, tokenizer, run.clone(), UnitSpec::Tokens(TOKENS))?,
            load(&paths.1, tokenizer, run.clone(), UnitSpec::Tokens(TOKENS))?,
        ))
    }

    /// The procedure on `cells` (prompt, length) with `samples` samples each: tokens
    /// processed (sampled, scored by p, scored by q) and seconds taken.
    fn procedure(
        p: &ModelRef,
        q: &ModelRef,
        prompts: &[Vec<Unit>],
        cells: &[(usize, usize)],
        samples: usize,
    ) -> Result<(usize, f64, f64), String> {
        let start = Instant::now();
        let mut tokens = 0;
        let mut checksum = 0.0;
        for &(i, n) in cells {
            let given = &prompts[i][..n];
            let method = Method::monte_carlo(
                samples,
                crate::seed::Stream::new(1, format!("figure2/{i}/{n}")),
            );
            let kl = measure::kl(p.as_ref(), q.as_ref(), given, 1, &method)
                .map_err(|e| e.to_string())?;
            checksum += kl.value();
            if n > 0 {
                checksum += measure::logratio(p.as_ref(), q.as_ref(), given, &[])
                    .map_err(|e| e.to_string())?;
            }
            tokens += 3 * samples * TOKENS;
        }
        Ok((tokens, start.elapsed().as_secs_f64(), checksum))
    }

    fn case(
        name: &str,
        paths: (PathBuf, PathBuf),
        tokenizer: &Path,
        naive_cells: &[(usize, usize)],
        naive_samples: usize,
    ) -> Result<f64, String> {
        let fast_run = ComputeOptions::default();
        let naive_run = ComputeOptions {
            cache_bytes: 0,
            batch: 1,
        };
        let (p, q) = pair(&paths, tokenizer, &fast_run)?;
        let sentence = UnitSpec::Sentence {
            until: vec![".".into()],
            max_tokens: 24,
        };
        let sampler = p
            .view(Some(&sentence), None)
            .map_err(|e| e.to_string())?
            .ok_or("not neural")?;
        let prompts = measure::sample_texts(
            sampler.as_ref(),
            &[],
            LENGTHS - 1,
            PROMPTS,
            &crate::seed::Stream::new(1, "figure2/prompts"),
        )
        .map_err(|e| e.to_string())?;
        let params = p.as_neural().map(|m| m.model().parameters()).unwrap_or(0);
        let mean_len: f64 = prompts
            .iter()
            .map(|t| {
                t.iter()
                    .map(|u| match u {
                        Unit::Tokens(r) => r.ids.len(),
                        Unit::Sentence(_) => 0,
                    })
                    .sum::<usize>() as f64
            })
            .sum::<f64>()
            / PROMPTS as f64;
        println!(
            "{name}: {params} parameters; prompts of {} sentences, {mean_len:.0} tokens on average",
            LENGTHS - 1
        );
        let all: Vec<(usize, usize)> = (0..PROMPTS)
            .flat_map(|i| (0..LENGTHS).map(move |n| (i, n)))
            .collect();
        let (tokens, secs, _) = procedure(&p, &q, &prompts, &all, SAMPLES)?;
        let fast = tokens as f64 / secs;
        println!(
            "  cached, batched  {PROMPTS} prompts x {LENGTHS} lengths x {SAMPLES} samples x {TOKENS} tokens: {secs:>7.2} s, {fast:>9.0} tokens/s"
        );
        variance_ratio(&p, &q, &prompts, &all)?;
        let (p, q) = pair(&paths, tokenizer, &naive_run)?;
        let (tokens, secs, _) = procedure(&p, &q, &prompts, naive_cells, naive_samples)?;
        let naive = tokens as f64 / secs;
        println!(
            "  naive            {} (prompt, length) cells x {naive_samples} samples: {secs:>7.2} s, {naive:>9.0} tokens/s",
            naive_cells.len()
        );
        println!("  speed-up         {:>7.1}x", fast / naive);
        Ok(fast / naive)
    }

    /// The least variance ratio plain/rb the benchmark accepts: the Rao-Blackwellized KL must
    /// need at most 1/1.5 of the plain estimator's samples for the same standard error.
    const RB_FLOOR: f64 = 1.5;

    /// Variance ratio plain/rb of the Monte Carlo KL on the procedure's cells (the same draws
    /// for both estimators): the summed squared standard errors of the plain estimates over
    /// those of the rb ones. Fails below [`RB_FLOOR`].
    fn variance_ratio(
        p: &ModelRef,
        q: &ModelRef,
        prompts: &[Vec<Unit>],
        cells: &[(usize, usize)],
    ) -> Result<f64, String> {
        use crate::measure::KlEstimator;
        let (mut plain, mut rb) = (0.0, 0.0);
        for &(i, n) in cells {
            let given = &prompts[i][..n];
            let method = Method::monte_carlo(
                SAMPLES,
                crate::seed::Stream::new(1, format!("figure2/{i}/{n}")),
            );
            let se = |estimator| -> Result<f64, String> {
                let e =
                    measure::kl_with(p.as_ref(), q.as_ref(), given, 1, &method, Some(estimator))
                        .map_err(|e| e.to_string())?;
                Ok(e.as_estimate().stderr.powi(2))
            };
            plain += se(KlEstimator::Plain)?;
            rb += se(KlEstimator::RaoBlackwell)?;
        }
        let ratio = plain / rb;
        println!(
            "  variance ratio plain/rb = {ratio:.1} (n={SAMPLES} per cell, {} cells; floor {RB_FLOOR})",
            cells.len()
        );
        if ratio.is_nan() || ratio < RB_FLOOR {
            return Err(format!(
                "the Rao-Blackwellized KL's variance ratio {ratio:.2} is below the floor {RB_FLOOR}"
            ));
        }
        Ok(ratio)
    }

    pub fn run() -> Result<(), String> {
        let dir = shared()?;
        let tokenizer = dir.join("hf/tokenizer.json");
        println!(
            "figure2: KL(P||Q) over 8-token continuations (Monte Carlo) and prompt log-ratios, per prompt length"
        );
        println!(
            "tokens/s counts sampled tokens plus tokens scored under P and Q (3 per sampled token)"
        );
        let every_length: Vec<(usize, usize)> = (0..LENGTHS).map(|n| (0, n)).collect();
        let a = case(
            "stories260K (P: safetensors f32, Q: q8_0 GGUF)",
            (dir.join("hf"), dir.join("stories260K-q8_0.gguf")),
            &tokenizer,
            &every_length,
            16,
        )?;
        let tmp = std::env::temp_dir().join(format!("beb-bench-figure2-{}", std::process::id()));
        let spec = RandomLlama {
            hidden: 512,
            intermediate: 1408,
            layers: 8,
            heads: 8,
            kv_heads: 8,
            vocab: 512,
            context: 1024,
            std: 0.5,
        };
        let tok = std::fs::read_to_string(&tokenizer).map_err(|e| e.to_string())?;
        write_random_llama(&tmp.join("p"), &spec, 1, &tok)?;
        write_random_llama(&tmp.join("q"), &spec, 2, &tok)?;
        let some_lengths: Vec<(usize, usize)> = [0, 7, 14].iter().map(|&n| (0, n)).collect();
        let b = case(
            "random llama (P, Q: two random initialisations)",
            (tmp.join("p"), tmp.join("q")),
            &tokenizer,
            &some_lengths,
            4,
        );
        let _ = std::fs::remove_dir_all(&tmp);
        let b = b?;
        println!("speed-up: {a:.1}x (stories260K), {b:.1}x (random llama)");
        if a < 5.0 || b < 5.0 {
            return Err(
                "the cached, batched path is less than 5x faster than the naive one".into(),
            );
        }
        Ok(())
    }
}

/// The Figure 2 procedure with P served over HTTP (stories260K f32 served as "stories260K" at
/// `$BEB_BENCH_SERVER`, e.g. llama-cpp-python on 127.0.0.1; docs/servers.md) against the same
/// with P local: the HTTP overhead per processed token. beb starts no programs, so the server
/// is started beforehand.
mod server {
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
        let model = NeuralModel::load(path, &options, &ComputeOptions::default())
            .map_err(|e| e.to_string())?;
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
                measure::kl(p.as_ref(), q.as_ref(), given, 1, &method)
                    .map_err(|e| e.to_string())?;
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
        println!(
            "server: KL(P||Q) over 8 tokens ({SAMPLES} samples) and log P(prompt), {} texts x {} lengths; P stories260K f32 served or local, Q local q8_0",
            texts.len(),
            LENGTHS.len()
        );
        let (local_rate, local_secs) = procedure(&p, &q, &texts)?;
        let (http_rate, http_secs) = procedure(&remote, &q, &texts)?;
        println!("  P local          {local_secs:>7.2} s, {local_rate:>9.0} tokens/s");
        println!("  P over HTTP      {http_secs:>7.2} s, {http_rate:>9.0} tokens/s");
        println!(
            "  ratio            {:>7.1}x the time per token over HTTP",
            local_rate / http_rate
        );
        Ok(())
    }
}

/// The sgemm rate of the batch-invariant matrix product (`lm/neural/kernels.rs`) against
/// candle's matmul, in GFLOP/s, for the shapes a forward pass multiplies: a square 512 product,
/// one row (sampling a token), and a batch of 64 rows through a 25M llama's MLP.
mod kernels {
    use std::time::Instant;

    use candle_core::{Device, Tensor};

    use crate::lm::neural::kernels::{describe, matmul_t};

    /// Seconds of the fastest of enough repetitions to fill about half a second.
    fn time(mut f: impl FnMut() -> Result<(), String>) -> Result<f64, String> {
        let start = Instant::now();
        f()?;
        let once = start.elapsed().as_secs_f64().max(1e-7);
        let reps = ((0.5 / once) as usize).clamp(3, 10_000);
        let mut best = f64::INFINITY;
        for _ in 0..reps {
            let start = Instant::now();
            f()?;
            best = best.min(start.elapsed().as_secs_f64());
        }
        Ok(best)
    }

    pub fn run() -> Result<(), String> {
        let threads = rayon::current_num_threads();
        println!(
            "kernels: y = x W^T in f32, {threads} threads; invariant kernel: {}",
            describe()
        );
        println!(
            "{:>6} {:>6} {:>6}  {:>12} {:>12}  {:>6}",
            "m", "n", "k", "invariant", "candle", "ratio"
        );
        for (m, n, k) in [
            (512, 512, 512),
            (1, 512, 512),
            (64, 512, 512),
            (64, 1408, 512),
            (1, 1408, 512),
            (64, 512, 1408),
        ] {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0)
                .collect();
            let err = |e: candle_core::Error| e.to_string();
            let xt = Tensor::from_vec(x.clone(), (m, k), &Device::Cpu).map_err(err)?;
            let wt = Tensor::from_vec(w.clone(), (n, k), &Device::Cpu).map_err(err)?;
            let ours = time(|| {
                std::hint::black_box(matmul_t(&x, m, &w, n, k));
                Ok(())
            })?;
            let theirs = time(|| {
                let y = xt.matmul(&wt.t().map_err(err)?).map_err(err)?;
                std::hint::black_box(y);
                Ok(())
            })?;
            let flops = 2.0 * (m * n * k) as f64 / 1e9;
            println!(
                "{m:>6} {n:>6} {k:>6}  {:>8.1} GF/s {:>8.1} GF/s  {:>5.2}x",
                flops / ours,
                flops / theirs,
                ours / theirs
            );
        }
        println!("ratio: the invariant kernel's time over candle's (above 1: slower)");
        Ok(())
    }
}
