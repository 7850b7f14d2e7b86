//! The sgemm rate of the batch-invariant matrix product (`lm/neural/kernels.rs`) against
//! candle's matmul, in GFLOP/s, for the shapes a forward pass multiplies: a square 512 product,
//! one row (sampling a token), and a batch of 64 rows through a 25M llama's MLP.

use std::time::Instant;

use candle_core::{Device, Tensor};

use crate::lm::neural::kernels::{describe, matmul_t};

/// Seconds of the fastest of enough repetitions to fill about half a second.
pub(super) fn time(mut f: impl FnMut() -> Result<(), String>) -> Result<f64, String> {
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

/// The invariant kernel's rate in GFLOP/s over `shapes` (m, n, k) multiplied one after
/// another, as a forward pass does: their FLOPs over the fastest time of the sequence.
pub(super) fn invariant_rate(shapes: &[(usize, usize, usize)]) -> Result<f64, String> {
    /// One product's shape and operands.
    type Operands = ((usize, usize, usize), Vec<f32>, Vec<f32>);
    let operands: Vec<Operands> = shapes
        .iter()
        .map(|&(m, n, k)| {
            let x = (0..m * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                .collect();
            let w = (0..n * k)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0)
                .collect();
            ((m, n, k), x, w)
        })
        .collect();
    let secs = time(|| {
        for ((m, n, k), x, w) in &operands {
            std::hint::black_box(matmul_t(x, *m, w, *n, *k));
        }
        Ok(())
    })?;
    let flops: f64 = shapes
        .iter()
        .map(|&(m, n, k)| 2.0 * (m * n * k) as f64)
        .sum();
    Ok(flops / secs / 1e9)
}

pub fn run() -> Result<(), String> {
    let threads = rayon::current_num_threads();
    crate::outln!(
        "kernels: y = x W^T in f32, {threads} threads; invariant kernel: {}",
        describe()
    );
    crate::outln!(
        "{:>6} {:>6} {:>6}  {:>12} {:>12}  {:>6}",
        "m",
        "n",
        "k",
        "invariant",
        "candle",
        "ratio"
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
        crate::outln!(
            "{m:>6} {n:>6} {k:>6}  {:>8.1} GF/s {:>8.1} GF/s  {:>5.2}x",
            flops / ours,
            flops / theirs,
            ours / theirs
        );
    }
    crate::outln!("ratio: the invariant kernel's time over candle's (above 1: slower)");
    Ok(())
}
