//! `beb bench`: speed measured against a baseline on the same machine, reported as ratios.
//!
//! `loop`: a 1,000,000-iteration arithmetic loop in beb against the same loop compiled
//! natively (the interpreter's overhead factor).
//!
//! `figure2`: the paper's Figure 2 procedure on neural models (10 prompts × 15 lengths × 64
//! samples × 8 tokens: Monte Carlo KL and prompt log-ratios), through the cached, batched
//! path against the naive one (no cache reuse, one sample at a time), on stories260K and on a
//! randomly initialised llama of about 25M parameters written by the benchmark; continuation
//! tokens/s against the roofline of the measured sgemm rate, and against Hugging Face
//! transformers on the same weights when a Python with it is found.

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

/// A benchmark's entry point: it prints its figures, or says why it could not run or failed.
type Bench = fn() -> Result<(), String>;

/// The benchmarks that live in their own module.
const MODULES: &[(&str, Bench)] = &[
    ("figure2", figure2::run),
    ("kernels", kernels::run),
    ("scale", scale::run),
    ("server", server::run),
];

/// Run the named benchmark (or `loop`); returns the exit code.
pub fn run(name: Option<&str>) -> i32 {
    if let Some((name, bench)) = MODULES.iter().find(|(n, _)| Some(*n) == name) {
        return match bench() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("beb bench {name}: {e}");
                2
            }
        };
    }
    match name {
        None | Some("loop") => match (best_of(5, interpreted_loop), best_of(5, native_loop)) {
            (Ok(beb), Ok(native)) => {
                crate::outln!("loop: 1,000,000 iterations of `total += i * 2 - 1`, best of 5");
                crate::outln!("  beb interpreter  {:>10.1} ms", beb.as_secs_f64() * 1e3);
                crate::outln!("  native Rust      {:>10.3} ms", native.as_secs_f64() * 1e3);
                crate::outln!(
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
            let names: Vec<&str> = MODULES.iter().map(|(n, _)| *n).collect();
            eprintln!(
                "beb bench: no benchmark `{other}` (benchmarks: loop, {})",
                names.join(", ")
            );
            2
        }
    }
}

mod figure2;
mod kernels;
mod scale;
mod server;

/// Runs the reference `script` (under `scripts/`) with `python`, the JSON `request` on its
/// standard input, and returns the last JSON object it printed; `what` names it in errors.
fn reference_json(
    python: &std::path::Path,
    script: &str,
    request: &serde_json::Value,
    what: &str,
) -> Result<serde_json::Value, String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(script);
    let mut child = Command::new(python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", python.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(request.to_string().as_bytes())
            .map_err(|e| format!("cannot write to {what}: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("{what}: {e}"))?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(format!("{what} failed ({}): {last}", output.status));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(line).map_err(|e| format!("{what} printed no result ({e}): {text}"))
}
