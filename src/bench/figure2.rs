//! The paper's Figure 2 procedure on neural models, through the cached, batched path against
//! the naive one, on stories260K and on a random llama of about 25M parameters.

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
        let kl =
            measure::kl(p.as_ref(), q.as_ref(), given, 1, &method).map_err(|e| e.to_string())?;
        checksum += kl.value();
        if n > 0 {
            checksum +=
                measure::logratio(p.as_ref(), q.as_ref(), given, &[]).map_err(|e| e.to_string())?;
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
            let e = measure::kl_with(p.as_ref(), q.as_ref(), given, 1, &method, Some(estimator))
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
        return Err("the cached, batched path is less than 5x faster than the naive one".into());
    }
    Ok(())
}
