//! `beb bench scale`: a random llama of TinyLlama's shape (about 1.1B parameters) in
//! safetensors bf16 and GGUF q8_0 / q4_0, written once by the benchmark: load time, resident
//! memory, scoring and sampling tokens/s in beb, side by side with llama.cpp (through
//! llama-cpp-python) on the same GGUF files, token ids and thread count.
//!
//! Each format is measured in a child process (this executable again, told by
//! `BEB_BENCH_SCALE_CHILD`), so that one format's resident memory never includes another's.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use candle_core::quantized::GgmlDType;
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

use crate::lm::UnitSpec;
use crate::lm::neural::random::{GgufOutput, RandomLlama, write_random_llama_files};
use crate::lm::neural::units::Sampling;
use crate::lm::neural::{ComputeOptions, LoadOptions, NeuralModel};

/// The child's environment variable: the model path to measure.
const CHILD: &str = "BEB_BENCH_SCALE_CHILD";
const SEED: u64 = 11;
/// Token ids scored in one forward pass (BOS first).
const SCORE_TOKENS: usize = 256;
/// Prompt tokens before sampling, and tokens sampled after them.
const PROMPT_TOKENS: usize = 8;
const SAMPLE_TOKENS: usize = 32;
/// Scored positions whose log-probs beb and llama.cpp compare on the GGUF files.
const CHECK_TOKENS: usize = 32;
/// beb's q8_0 scoring must reach llama.cpp's divided by this.
const SCORE_FLOOR: f64 = 1.5;
/// A GGUF model's resident memory must stay within this multiple of its file.
const RSS_FLOOR: f64 = 1.15;

/// TinyLlama 1.1B's shape.
fn spec() -> RandomLlama {
    RandomLlama {
        hidden: 2048,
        intermediate: 5632,
        layers: 22,
        heads: 32,
        kv_heads: 4,
        vocab: 32000,
        context: 2048,
        // Logits of a few units' spread: peakier random models turn quantization error into
        // nats, which would hide a real disagreement between beb and llama.cpp.
        std: 0.1,
    }
}

/// The model's folder under the user's cache (`$XDG_CACHE_HOME` or `~/.cache`), or
/// `$BEB_BENCH_SCALE_DIR`.
fn cache_dir() -> Result<PathBuf, String> {
    if let Some(d) = std::env::var_os("BEB_BENCH_SCALE_DIR") {
        return Ok(PathBuf::from(d));
    }
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x),
        _ => {
            PathBuf::from(std::env::var_os("HOME").ok_or("neither XDG_CACHE_HOME nor HOME is set")?)
                .join(".cache")
        }
    };
    Ok(base.join("beb/bench-scale"))
}

/// The three files, written unless a complete set is there: the marker is written last and
/// names the shape and seed, so a killed or differently sized write is redone.
fn ensure_model(dir: &Path) -> Result<[(String, PathBuf); 3], String> {
    let spec = spec();
    let files = [
        ("safetensors bf16".to_string(), dir.join("hf")),
        ("GGUF q8_0".to_string(), dir.join("model-q8_0.gguf")),
        ("GGUF q4_0".to_string(), dir.join("model-q4_0.gguf")),
    ];
    let marker = dir.join("complete");
    let want = format!("{spec:?} seed {SEED} untied\n");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(want.as_str()) {
        return Ok(files);
    }
    let _ = std::fs::remove_file(&marker);
    crate::outln!(
        "writing the random model ({:.2}B parameters) to {} ...",
        (spec.parameters() + spec.vocab * spec.hidden) as f64 / 1e9,
        dir.display()
    );
    let start = Instant::now();
    write_random_llama_files(
        &files[0].1,
        &spec,
        SEED,
        &[
            GgufOutput {
                path: files[1].1.clone(),
                dtype: GgmlDType::Q8_0,
            },
            GgufOutput {
                path: files[2].1.clone(),
                dtype: GgmlDType::Q4_0,
            },
        ],
    )?;
    std::fs::write(&marker, want).map_err(|e| format!("cannot write {}: {e}", marker.display()))?;
    crate::outln!("  written in {:.0} s", start.elapsed().as_secs_f64());
    Ok(files)
}

/// The scored ids: BOS, then ids past the special and byte tokens, from a fixed seed.
fn score_ids(vocab: usize) -> Vec<u32> {
    let mut rng = ChaCha20Rng::seed_from_u64(SEED);
    let mut ids = vec![1u32];
    ids.extend((1..SCORE_TOKENS).map(|_| rng.random_range(259..vocab as u32)));
    ids
}

/// A field of /proc/self/status in MB (VmRSS: resident now, VmHWM: its peak).
fn status_mb(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(str::to_string))
        })
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// One side's figures for one file.
#[derive(Clone, Debug, Default)]
struct Figures {
    load_s: f64,
    rss_load_mb: f64,
    rss_end_mb: f64,
    hwm_mb: f64,
    score_tps: f64,
    sample_tps: f64,
    logprobs: Vec<f64>,
}

impl Figures {
    fn from_json(v: &serde_json::Value) -> Result<Figures, String> {
        let f = |k: &str| {
            v.get(k)
                .and_then(serde_json::Value::as_f64)
                .ok_or_else(|| format!("the measurement lacks `{k}`: {v}"))
        };
        Ok(Figures {
            load_s: f("load_s")?,
            rss_load_mb: f("rss_load_mb")?,
            rss_end_mb: f("rss_end_mb")?,
            hwm_mb: f("hwm_mb")?,
            score_tps: f("score_tps")?,
            sample_tps: f("sample_tps")?,
            logprobs: v
                .get("logprobs")
                .and_then(serde_json::Value::as_array)
                .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
                .unwrap_or_default(),
        })
    }
}

/// The child: measure beb on the model at `path` and print the figures as one JSON line.
fn child(path: &Path) -> Result<(), String> {
    let start = Instant::now();
    let model = NeuralModel::load(path, &LoadOptions::default(), &ComputeOptions::default())
        .map_err(|e| e.to_string())?;
    // One one-token forward, as on llama.cpp's side (where it pages the mapped weights in).
    model.token_logprobs(&[1, 259]).map_err(|e| e.to_string())?;
    let load_s = start.elapsed().as_secs_f64();
    let rss_load_mb = status_mb("VmRSS");
    let ids = score_ids(model.config().vocab);
    let start = Instant::now();
    let logprobs = model.token_logprobs(&ids).map_err(|e| e.to_string())?;
    let score_tps = ids.len() as f64 / start.elapsed().as_secs_f64();
    let mut rngs = [ChaCha20Rng::seed_from_u64(1)];
    let start = Instant::now();
    let drawn = model
        .sample(
            &ids[..PROMPT_TOKENS],
            SAMPLE_TOKENS,
            &UnitSpec::Tokens(1),
            &Sampling::default(),
            &mut rngs,
        )
        .map_err(|e| e.to_string())?;
    let sample_tps = SAMPLE_TOKENS as f64 / start.elapsed().as_secs_f64();
    let got: usize = drawn.iter().flatten().map(Vec::len).sum();
    if got != SAMPLE_TOKENS {
        return Err(format!("sampled {got} tokens, not {SAMPLE_TOKENS}"));
    }
    let out = serde_json::json!({
        "load_s": load_s,
        "rss_load_mb": rss_load_mb,
        "rss_end_mb": status_mb("VmRSS"),
        "hwm_mb": status_mb("VmHWM"),
        "score_tps": score_tps,
        "sample_tps": sample_tps,
        "logprobs": &logprobs[..CHECK_TOKENS.min(logprobs.len())],
    });
    crate::outln!("{out}");
    Ok(())
}

/// The last stdout line of a finished process as JSON figures.
fn figures_of(output: std::process::Output, what: &str) -> Result<Figures, String> {
    if !output.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line)
        .map_err(|e| format!("{what} printed no figures ({e}): {text}"))?;
    Figures::from_json(&v)
}

fn beb_side(path: &Path) -> Result<Figures, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find beb itself: {e}"))?;
    let output = Command::new(exe)
        .args(["bench", "scale"])
        .env(CHILD, path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start beb: {e}"))?;
    figures_of(output, &format!("beb on {}", path.display()))
}

/// llama-cpp-python's interpreter: `$BEB_LLAMA_PYTHON`, or the virtual environment `.ci/run`
/// installs it in.
fn llama_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BEB_LLAMA_PYTHON").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let venv = match std::env::var_os("BEB_LLAMA_VENV") {
        Some(v) => PathBuf::from(v),
        None => cache_dir().ok()?.parent()?.join("llama-venv"),
    };
    let python = venv.join("bin/python");
    python.is_file().then_some(python)
}

/// llama.cpp's figures and whether it ran without its repacked weight layouts: when its
/// default configuration dies (the prebuilt 0.3.36 crashes in its AMX matrix product on
/// some CPUs), it is run again with them off.
fn llama_side(
    python: &Path,
    path: &Path,
    ids: &[u32],
    threads: usize,
) -> Result<(Figures, bool), String> {
    match llama_run(python, path, ids, threads, true) {
        Ok(f) => Ok((f, false)),
        Err(first) => {
            crate::outln!(
                "  (llama.cpp failed in its default configuration, {first}; retried without repacked weights)"
            );
            llama_run(python, path, ids, threads, false).map(|f| (f, true))
        }
    }
}

fn llama_run(
    python: &Path,
    path: &Path,
    ids: &[u32],
    threads: usize,
    extra_bufts: bool,
) -> Result<Figures, String> {
    let request = serde_json::json!({
        "model": path, "ids": ids, "prompt": PROMPT_TOKENS, "sample": SAMPLE_TOKENS,
        "threads": threads, "check": CHECK_TOKENS, "extra_bufts": extra_bufts,
    });
    let what = format!("llama.cpp on {}", path.display());
    Figures::from_json(&super::reference_json(
        python,
        "llama_cpp_bench.py",
        &request,
        &what,
    )?)
}

/// MiB (as /proc's figures) of a GGUF file, or of a folder's model.safetensors.
fn size_mb(path: &Path) -> f64 {
    let one = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let bytes: u64 = if path.is_dir() {
        one(&path.join("model.safetensors"))
    } else {
        one(path)
    };
    bytes as f64 / (1024.0 * 1024.0)
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|x| x.1.trim().to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    // Other work on the machine slows both sides, llama.cpp's spinning threads most.
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    format!("{cores} cores, {cpu}, load average {load} at the start")
}

pub(super) fn run() -> Result<(), String> {
    if let Some(path) = std::env::var_os(CHILD) {
        return child(Path::new(&path));
    }
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let dir = cache_dir()?;
    let files = ensure_model(&dir)?;
    let ids = score_ids(spec().vocab);
    let python = llama_python();
    crate::outln!(
        "scale: a random llama of TinyLlama's shape ({:.2}B parameters, untied output layer)",
        (spec().parameters() + spec().vocab * spec().hidden) as f64 / 1e9
    );
    crate::outln!(
        "machine: {}; {threads} threads on both sides; score: one pass over {SCORE_TOKENS} ids, \
         logits of every position; sample: {SAMPLE_TOKENS} tokens after {PROMPT_TOKENS}",
        machine()
    );
    if python.is_none() {
        crate::outln!(
            "llama.cpp: skipped (no llama-cpp-python: set BEB_LLAMA_PYTHON, or install it in \
             ~/.cache/beb/llama-venv as .ci/run does)"
        );
    }
    crate::outln!(
        "\n{:<17} {:<10} {:>7} {:>8} {:>9} {:>8} {:>8} {:>6} {:>10} {:>10}",
        "format",
        "engine",
        "load s",
        "file MB",
        "RSS load",
        "RSS end",
        "peak",
        "end/f",
        "score t/s",
        "sample t/s"
    );
    let mut failures = Vec::new();
    let mut q8 = (None, None);
    let mut bf16_logprobs = Vec::new();
    for (name, path) in &files {
        let file_mb = size_mb(path);
        let gguf = path.extension().is_some_and(|e| e == "gguf");
        let q8_0 = name.ends_with("q8_0");
        let mut rows = vec![("beb", beb_side(path)?)];
        if let (true, Some(py)) = (gguf, &python) {
            let (f, plain) = llama_side(py, path, &ids, threads)?;
            rows.push((if plain { "llama.cpp*" } else { "llama.cpp" }, f));
        }
        for (engine, f) in &rows {
            crate::outln!(
                "{name:<17} {engine:<10} {:>7.1} {file_mb:>8.0} {:>9.0} {:>8.0} {:>8.0} {:>6.2} {:>10.1} {:>10.2}",
                f.load_s,
                f.rss_load_mb,
                f.rss_end_mb,
                f.hwm_mb,
                f.rss_end_mb / file_mb,
                f.score_tps,
                f.sample_tps
            );
        }
        let beb = &rows[0].1;
        if !gguf {
            bf16_logprobs = beb.logprobs.clone();
        }
        let ratio = beb.rss_end_mb / file_mb;
        if gguf && ratio > RSS_FLOOR {
            failures.push(format!(
                "beb on {name}: resident memory {ratio:.2}x its file (goal: at most {RSS_FLOOR}x)"
            ));
        }
        if gguf && !bf16_logprobs.is_empty() {
            let (max, mean) = compare(&bf16_logprobs, &beb.logprobs);
            crate::outln!(
                "{:<17} log-probs of the first {CHECK_TOKENS} scored tokens, beb {name} - beb bf16: max |diff| {max:.4}, mean {mean:.4}",
                ""
            );
        }
        if let Some((engine, theirs)) = rows.iter().find(|(e, _)| e.starts_with("llama")) {
            let (max, mean) = compare(&beb.logprobs, &theirs.logprobs);
            crate::outln!(
                "{:<17} log-probs of the first {CHECK_TOKENS} scored tokens, beb - {engine}: max |diff| {max:.4}, mean {mean:.4}",
                ""
            );
            if q8_0 {
                q8 = (Some(beb.clone()), Some(theirs.clone()));
            }
        }
    }
    crate::outln!(
        "\nMB: MiB. RSS load: resident after loading; RSS end: after scoring and sampling; \
         peak: VmHWM. Both sides' load includes a one-token forward (which pages llama.cpp's \
         mapped weights in). llama.cpp's RSS includes Python's. llama.cpp*: without its \
         repacked weight layouts (its default configuration crashed here)."
    );
    match q8 {
        (Some(beb), Some(theirs)) => {
            let ratio = theirs.score_tps / beb.score_tps;
            crate::outln!(
                "q8_0 scoring: llama.cpp / beb = {ratio:.2} (goal: at most {SCORE_FLOOR})"
            );
            if ratio > SCORE_FLOOR {
                failures.push(format!(
                    "beb's q8_0 scoring is {ratio:.2}x slower than llama.cpp's (at most {SCORE_FLOOR}x)"
                ));
            }
        }
        _ => crate::outln!("q8_0 scoring against llama.cpp: not measured (llama.cpp skipped)"),
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// (max, mean) absolute difference of the common prefix.
fn compare(a: &[f64], b: &[f64]) -> (f64, f64) {
    let n = a.len().min(b.len());
    let diffs: Vec<f64> = a.iter().zip(b).map(|(x, y)| (x - y).abs()).collect();
    let max = diffs.iter().copied().fold(0.0, f64::max);
    (max, diffs.iter().sum::<f64>() / n.max(1) as f64)
}
