//! Batch-invariant CPU kernels: a matrix product and causal attention whose every output
//! element is computed with one fixed reduction order, whatever the number of rows in the
//! call, where a prefix boundary falls, and how many threads run it.
//!
//! candle's CPU matmul (the `gemm` crate) chooses kernels and K-blocking from the matrix
//! sizes and has a special path for one row, so the same row scored alone or in a batch of 64
//! can differ in the last bits, and a sampled token can flip. Here a dot product of length k
//! always runs the same way: 8 lane accumulators over k in order (lane l takes the indices
//! i ≡ l mod 8 of the whole blocks of 8, the tail's index k8 + j goes to lane j), combined as
//! ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)). Register tiling over rows and columns
//! and the split of columns over rayon's threads only choose *which* elements are computed
//! together, never the order within one.
//!
//! The lane update is a fused multiply-add on x86-64 CPUs with AVX2 and FMA (detected at run
//! time) and a multiply then an add elsewhere, so results are bit-identical on one machine
//! (and on machines with the same features) but may differ in the last bits between a
//! machine with FMA and one without.

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

/// The opt-out (`--fast-kernels`): candle's matmul and attention, whose results depend in
/// their last bits on the batch size and the prefix cache.
static FAST: AtomicBool = AtomicBool::new(false);

/// Use candle's kernels instead of these for every model of the process (set at startup).
pub fn set_fast(on: bool) {
    FAST.store(on, Ordering::Relaxed);
}

/// Whether `--fast-kernels` opted out of the invariant kernels.
pub fn fast() -> bool {
    FAST.load(Ordering::Relaxed)
}

/// Lanes of the per-element reduction.
const LANES: usize = 8;
/// Rows and columns of one register tile.
const TILE_ROWS: usize = 4;
const TILE_COLS: usize = 3;
/// Bytes of activation rows kept in cache while the column tiles pass over them.
const ROW_BLOCK_BYTES: usize = 512 << 10;
/// Multiply-adds below which a product runs on the calling thread.
const PARALLEL_WORK: usize = 1 << 18;

/// Whether the fused (AVX2 + FMA) kernel runs on this machine.
pub fn fused() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static FUSED: OnceLock<bool> = OnceLock::new();
        *FUSED.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Which kernel runs, in words (for benchmarks and docs).
pub fn describe() -> &'static str {
    if fused() {
        "AVX2+FMA"
    } else {
        "portable (no FMA)"
    }
}

/// y = x W^T for x [m, k] and w [n, k], both row-major: y [m, n] row-major, each element
/// `dot(x[r], w[c])` computed in the fixed order described in the module doc.
pub fn matmul_t(x: &[f32], m: usize, w: &[f32], n: usize, k: usize) -> Vec<f32> {
    debug_assert!(x.len() >= m * k && w.len() >= n * k);
    let mut y = vec![0f32; m * n];
    if m == 0 || n == 0 {
        return y;
    }
    let work = m * n * k;
    let threads = rayon::current_num_threads();
    if work < PARALLEL_WORK || threads == 1 {
        columns(x, m, w, k, 0, n, &mut y, n);
        return y;
    }
    // Column blocks, a multiple of the tile width, a few per thread for balance. Each
    // element is computed by exactly one task, so the thread count never changes a result.
    let per = n.div_ceil(threads * 4).div_ceil(TILE_COLS) * TILE_COLS;
    let blocks: Vec<(usize, Vec<f32>)> = (0..n.div_ceil(per))
        .into_par_iter()
        .map(|b| {
            let c0 = b * per;
            let c1 = (c0 + per).min(n);
            let mut out = vec![0f32; m * (c1 - c0)];
            columns(x, m, w, k, c0, c1, &mut out, c1 - c0);
            (c0, out)
        })
        .collect();
    for (c0, out) in blocks {
        let width = out.len() / m;
        for r in 0..m {
            y[r * n + c0..r * n + c0 + width].copy_from_slice(&out[r * width..(r + 1) * width]);
        }
    }
    y
}

/// Columns c0..c1 of x W^T into `out` (row stride `stride`, column c at c - c0).
#[allow(clippy::too_many_arguments)]
fn columns(
    x: &[f32],
    m: usize,
    w: &[f32],
    k: usize,
    c0: usize,
    c1: usize,
    out: &mut [f32],
    stride: usize,
) {
    // Rows in blocks that stay in cache while every column tile passes over them; a column
    // tile's weights stay in L1 across the block's row tiles.
    let block = (ROW_BLOCK_BYTES / (k * 4).max(1)).clamp(TILE_ROWS, 256) / TILE_ROWS * TILE_ROWS;
    let mut r0 = 0;
    while r0 < m {
        let r1 = (r0 + block).min(m);
        let mut c = c0;
        while c < c1 {
            let nc = TILE_COLS.min(c1 - c);
            let mut r = r0;
            while r < r1 {
                let nr = TILE_ROWS.min(r1 - r);
                let mut acc = [[0f32; TILE_COLS]; TILE_ROWS];
                tile(x, r, nr, w, c, nc, k, &mut acc);
                for (i, row) in acc.iter().enumerate().take(nr) {
                    for (j, v) in row.iter().enumerate().take(nc) {
                        out[(r + i) * stride + (c - c0 + j)] = *v;
                    }
                }
                r += nr;
            }
            c += nc;
        }
        r0 = r1;
    }
}

/// The dot products of rows r..r+nr of x with rows c..c+nc of w.
#[allow(clippy::too_many_arguments)]
fn tile(
    x: &[f32],
    r: usize,
    nr: usize,
    w: &[f32],
    c: usize,
    nc: usize,
    k: usize,
    acc: &mut [[f32; TILE_COLS]; TILE_ROWS],
) {
    #[cfg(target_arch = "x86_64")]
    if fused() {
        // SAFETY: `fused()` checked that the CPU has AVX2 and FMA.
        unsafe { avx::tile(x, r, nr, w, c, nc, k, acc) };
        return;
    }
    for i in 0..nr {
        for j in 0..nc {
            acc[i][j] = dot_portable(
                &x[(r + i) * k..(r + i + 1) * k],
                &w[(c + j) * k..(c + j + 1) * k],
            );
        }
    }
}

/// The lane reduction with a separate multiply and add.
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let k = a.len().min(b.len());
    let k8 = k / LANES * LANES;
    let mut lanes = [0f32; LANES];
    for (ca, cb) in a[..k8].chunks_exact(LANES).zip(b[..k8].chunks_exact(LANES)) {
        for l in 0..LANES {
            lanes[l] += ca[l] * cb[l];
        }
    }
    for (l, i) in (k8..k).enumerate() {
        lanes[l] += a[i] * b[i];
    }
    combine(&lanes)
}

/// The fixed combination of the 8 lanes (the order AVX's halving reduction gives).
fn combine(l: &[f32; LANES]) -> f32 {
    ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))
}

/// One dot product in the fixed order (the same function `matmul_t` computes per element).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let k = a.len().min(b.len());
    #[cfg(target_arch = "x86_64")]
    if fused() {
        // SAFETY: `fused()` checked that the CPU has AVX2 and FMA.
        return unsafe { avx::dot(&a[..k], &b[..k]) };
    }
    dot_portable(&a[..k], &b[..k])
}

/// Causal attention over keys that may be split into a prefix shared by every row and each
/// row's own positions (see `transformer::KvState`), computed per query in one fixed order:
/// the scores `dot(q, k_j) * scale` for the keys j it sees (0..=its position, or the last
/// `window` of them) in order, their maximum, `exp(s_j - max)` summed in order, and the
/// weighted sum of values in order. Where the prefix boundary falls, how many rows and
/// queries share the call and the thread count never change a result.
pub struct Attention<'a> {
    /// Queries, [heads, batch, t, d].
    pub q: &'a [f32],
    /// Shared keys and values, [kv_heads, shared_len, d].
    pub shared_k: &'a [f32],
    pub shared_v: &'a [f32],
    pub shared_len: usize,
    /// Each row's own keys and values, [kv_heads, batch, rows_len, d]; the last t of them
    /// are the queries' own positions.
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub rows_len: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub batch: usize,
    pub t: usize,
    pub d: usize,
    pub scale: f32,
    pub window: Option<usize>,
}

impl Attention<'_> {
    /// The attention output, [batch, t, heads * d] row-major.
    pub fn run(&self) -> Vec<f32> {
        let (h, d, t) = (self.heads, self.d, self.t);
        let mut y = vec![0f32; self.batch * t * h * d];
        if y.is_empty() {
            return y;
        }
        let keys = self.shared_len + self.rows_len;
        let work = y.len() * keys;
        let one = |(index, out): (usize, &mut [f32])| {
            let mut scores = Vec::with_capacity(keys);
            for head in 0..h {
                self.query(
                    index / t,
                    index % t,
                    head,
                    &mut scores,
                    &mut out[head * d..(head + 1) * d],
                );
            }
        };
        if work < PARALLEL_WORK || rayon::current_num_threads() == 1 {
            y.chunks_mut(h * d).enumerate().for_each(one);
        } else {
            y.par_chunks_mut(h * d).enumerate().for_each(one);
        }
        y
    }

    /// Key (or value) `j` of row `row` under key head `kv`, in position order: the shared
    /// prefix's, then the row's own.
    #[inline(always)]
    fn key<'s>(
        &self,
        shared: &'s [f32],
        own: &'s [f32],
        kv: usize,
        row: usize,
        j: usize,
    ) -> &'s [f32] {
        let d = self.d;
        if j < self.shared_len {
            let at = (kv * self.shared_len + j) * d;
            &shared[at..at + d]
        } else {
            let at = ((kv * self.batch + row) * self.rows_len + j - self.shared_len) * d;
            &own[at..at + d]
        }
    }

    fn query(&self, row: usize, i: usize, head: usize, scores: &mut Vec<f32>, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if fused() {
            // SAFETY: `fused()` checked that the CPU has AVX2 and FMA.
            unsafe { avx::query(self, row, i, head, scores, out) };
            return;
        }
        self.query_with(row, i, head, scores, out, dot_portable, |p, v, out| {
            for (o, x) in out.iter_mut().zip(v) {
                *o += p * x;
            }
        });
    }

    /// One query's attention output; `dot` is the fixed-order dot product and `axpy` adds
    /// p * v to the output element by element (a multiply then an add, never fused), so every
    /// instantiation computes the same bits.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn query_with(
        &self,
        row: usize,
        i: usize,
        head: usize,
        scores: &mut Vec<f32>,
        out: &mut [f32],
        dot: impl Fn(&[f32], &[f32]) -> f32,
        axpy: impl Fn(f32, &[f32], &mut [f32]),
    ) {
        let d = self.d;
        let kv = head / (self.heads / self.kv_heads).max(1);
        let at = ((head * self.batch + row) * self.t + i) * d;
        let q = &self.q[at..at + d];
        let pos = self.shared_len + self.rows_len - self.t + i;
        let first = self.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        scores.clear();
        let mut max = f32::NEG_INFINITY;
        for j in first..=pos {
            let s = dot(q, self.key(self.shared_k, self.k, kv, row, j)) * self.scale;
            // A NaN score is not a maximum; it still reaches the sum and the output, where
            // the caller's finiteness check reports it.
            if s > max {
                max = s;
            }
            scores.push(s);
        }
        let mut sum = 0f32;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        out.fill(0.0);
        for (j, e) in (first..=pos).zip(scores.iter()) {
            axpy(e / sum, self.key(self.shared_v, self.v, kv, row, j), out);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use super::{LANES, TILE_COLS, TILE_ROWS};
    use std::arch::x86_64::*;

    /// The horizontal sum in the order of `super::combine`.
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        // [l0+l4, l1+l5, l2+l6, l3+l7]
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        // [(l0+l4)+(l2+l6), (l1+l5)+(l3+l7), ..]
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        // lane 0 + lane 1
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// 8 lanes of `v` from `p` (the first `n` of them, zeros after).
    #[target_feature(enable = "avx2,fma")]
    fn load_tail(p: &[f32], n: usize) -> __m256 {
        let mut buf = [0f32; LANES];
        buf[..n].copy_from_slice(&p[..n]);
        // SAFETY: `buf` holds 8 floats.
        unsafe { _mm256_loadu_ps(buf.as_ptr()) }
    }

    /// One dot product: the same sequence of operations as one element of `tile` (fused
    /// multiply-adds from zero in order, the zero-padded tail, `hsum`), without the tile's
    /// setup (attention takes many short ones).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        let k = a.len().min(b.len());
        let k8 = k / LANES * LANES;
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i < k8 {
            // SAFETY: i + 8 <= k8 <= k, the length of both slices.
            unsafe {
                acc = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr().add(i)),
                    _mm256_loadu_ps(b.as_ptr().add(i)),
                    acc,
                );
            }
            i += LANES;
        }
        if k > k8 {
            acc = _mm256_fmadd_ps(
                load_tail(&a[k8..], k - k8),
                load_tail(&b[k8..], k - k8),
                acc,
            );
        }
        hsum(acc)
    }

    /// `Attention::query` with the fused dot product inlined.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn query(
        att: &super::Attention,
        row: usize,
        i: usize,
        head: usize,
        scores: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        att.query_with(
            row,
            i,
            head,
            scores,
            out,
            |a, b| dot(a, b),
            |p, v, out| axpy(p, v, out),
        );
    }

    /// out += p * v, a multiply then an add per element (as the portable loop).
    #[target_feature(enable = "avx2,fma")]
    fn axpy(p: f32, v: &[f32], out: &mut [f32]) {
        let n = v.len().min(out.len());
        let n8 = n / LANES * LANES;
        let pv = _mm256_set1_ps(p);
        let mut i = 0;
        while i < n8 {
            // SAFETY: i + 8 <= n8 <= n, the length of both slices.
            unsafe {
                let o = out.as_mut_ptr().add(i);
                let x = _mm256_mul_ps(pv, _mm256_loadu_ps(v.as_ptr().add(i)));
                _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), x));
            }
            i += LANES;
        }
        for j in n8..n {
            out[j] += p * v[j];
        }
    }

    /// The whole blocks of 8 for the first `R` rows against `TILE_COLS` full columns.
    #[target_feature(enable = "avx2,fma")]
    fn full<const R: usize>(
        xs: &[&[f32]; TILE_ROWS],
        ws: &[&[f32]; TILE_COLS],
        k8: usize,
        acc: &mut [[__m256; TILE_COLS]; TILE_ROWS],
    ) {
        let mut a: [[__m256; TILE_COLS]; R] = [[_mm256_setzero_ps(); TILE_COLS]; R];
        let mut i = 0;
        while i < k8 {
            // SAFETY: i + 8 <= k8 <= k, the length of every row slice in use (R <= nr rows,
            // TILE_COLS = nc columns).
            unsafe {
                let w0 = _mm256_loadu_ps(ws[0].as_ptr().add(i));
                let w1 = _mm256_loadu_ps(ws[1].as_ptr().add(i));
                let w2 = _mm256_loadu_ps(ws[2].as_ptr().add(i));
                for (ar, xr) in a.iter_mut().zip(xs) {
                    let xv = _mm256_loadu_ps(xr.as_ptr().add(i));
                    ar[0] = _mm256_fmadd_ps(xv, w0, ar[0]);
                    ar[1] = _mm256_fmadd_ps(xv, w1, ar[1]);
                    ar[2] = _mm256_fmadd_ps(xv, w2, ar[2]);
                }
            }
            i += LANES;
        }
        acc[..R].copy_from_slice(&a);
    }

    /// `super::tile` with fused multiply-adds: a full tile keeps its 12 accumulators in
    /// registers; a partial one (edges) runs the same per-element sequence.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn tile(
        x: &[f32],
        r: usize,
        nr: usize,
        w: &[f32],
        c: usize,
        nc: usize,
        k: usize,
        out: &mut [[f32; TILE_COLS]; TILE_ROWS],
    ) {
        let k8 = k / LANES * LANES;
        let xs: [&[f32]; TILE_ROWS] = std::array::from_fn(|i| {
            if i < nr {
                &x[(r + i) * k..(r + i + 1) * k]
            } else {
                &[]
            }
        });
        let ws: [&[f32]; TILE_COLS] = std::array::from_fn(|j| {
            if j < nc {
                &w[(c + j) * k..(c + j + 1) * k]
            } else {
                &[]
            }
        });
        let mut acc = [[_mm256_setzero_ps(); TILE_COLS]; TILE_ROWS];
        if nc == TILE_COLS && nr >= 1 {
            // Full-width tiles with a row count known at compile time keep their
            // accumulators in registers.
            match nr {
                1 => full::<1>(&xs, &ws, k8, &mut acc),
                2 => full::<2>(&xs, &ws, k8, &mut acc),
                3 => full::<3>(&xs, &ws, k8, &mut acc),
                _ => full::<TILE_ROWS>(&xs, &ws, k8, &mut acc),
            }
        } else {
            let mut i = 0;
            while i < k8 {
                for (a, xr) in acc.iter_mut().zip(&xs).take(nr) {
                    // SAFETY: i + 8 <= k8 <= k, the length of every row slice in use.
                    let xv = unsafe { _mm256_loadu_ps(xr.as_ptr().add(i)) };
                    for (aj, wr) in a.iter_mut().zip(&ws).take(nc) {
                        // SAFETY: as above.
                        let wv = unsafe { _mm256_loadu_ps(wr.as_ptr().add(i)) };
                        *aj = _mm256_fmadd_ps(xv, wv, *aj);
                    }
                }
                i += LANES;
            }
        }
        let tail = k - k8;
        for (i, (a, xr)) in acc.iter_mut().zip(&xs).take(nr).enumerate() {
            let xv = if tail > 0 {
                Some(load_tail(&xr[k8..], tail))
            } else {
                None
            };
            for (j, (aj, wr)) in a.iter_mut().zip(&ws).take(nc).enumerate() {
                if let Some(xv) = xv {
                    *aj = _mm256_fmadd_ps(xv, load_tail(&wr[k8..], tail), *aj);
                }
                out[i][j] = hsum(*aj);
            }
        }
    }
}
