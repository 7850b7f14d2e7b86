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
    by_columns(
        m,
        n,
        TILE_COLS,
        m * n * k >= PARALLEL_WORK,
        |c0, c1, out, stride| columns(x, m, w, k, c0, c1, out, stride),
    )
}

/// y [m, n] row-major, its columns c0..c1 computed by `columns(c0, c1, out, stride)` into
/// `out` (row stride `stride`, column c at c - c0). With `parallel` (and more than one
/// thread) the columns are split into blocks of a multiple of `tile` columns, a few per
/// thread for balance; each element is computed by exactly one task, so the thread count
/// never changes a result.
pub(super) fn by_columns(
    m: usize,
    n: usize,
    tile: usize,
    parallel: bool,
    columns: impl Fn(usize, usize, &mut [f32], usize) + Sync,
) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    if m == 0 || n == 0 {
        return y;
    }
    let threads = rayon::current_num_threads();
    if !parallel || threads == 1 {
        columns(0, n, &mut y, n);
        return y;
    }
    let per = n.div_ceil(threads * 4).div_ceil(tile) * tile;
    let blocks: Vec<(usize, Vec<f32>)> = (0..n.div_ceil(per))
        .into_par_iter()
        .map(|b| {
            let c0 = b * per;
            let c1 = (c0 + per).min(n);
            let mut out = vec![0f32; m * (c1 - c0)];
            columns(c0, c1, &mut out, c1 - c0);
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
            // SAFETY: `fused()` checked that the CPU has AVX2 and FMA, and each arm's
            // block count times 8 is `self.d`.
            unsafe {
                match self.d {
                    8 => avx::query_blocks::<1>(self, row, i, head, scores, out),
                    16 => avx::query_blocks::<2>(self, row, i, head, scores, out),
                    32 => avx::query_blocks::<4>(self, row, i, head, scores, out),
                    64 => avx::query_blocks::<8>(self, row, i, head, scores, out),
                    128 => avx::query_blocks::<16>(self, row, i, head, scores, out),
                    _ => avx::query(self, row, i, head, scores, out),
                }
            }
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

    /// The horizontal sums of 8 vectors at once, each in the order of [`hsum`] (float
    /// addition commutes, so only which pairs are added matters): lane u is `hsum(v[u])`.
    #[target_feature(enable = "avx2,fma")]
    fn hsum8(v: &[__m256; 8]) -> __m256 {
        // [v_a: l_i + l_{i+4} for i < 4 | v_b: the same]
        let halves = |a: __m256, b: __m256| {
            _mm256_add_ps(
                _mm256_permute2f128_ps::<0x20>(a, b),
                _mm256_permute2f128_ps::<0x31>(a, b),
            )
        };
        let s04 = halves(v[0], v[4]);
        let s15 = halves(v[1], v[5]);
        let s26 = halves(v[2], v[6]);
        let s37 = halves(v[3], v[7]);
        // [(s0 + s2), (s1 + s3)] of two vectors per half.
        let pairs = |x: __m256, y: __m256| {
            _mm256_add_ps(
                _mm256_shuffle_ps::<0b01_00_01_00>(x, y),
                _mm256_shuffle_ps::<0b11_10_11_10>(x, y),
            )
        };
        let u = pairs(s04, s15);
        let w = pairs(s26, s37);
        // (s0 + s2) + (s1 + s3), lanes in the order v0..v3 | v4..v7.
        _mm256_add_ps(
            _mm256_shuffle_ps::<0b10_00_10_00>(u, w),
            _mm256_shuffle_ps::<0b11_01_11_01>(u, w),
        )
    }

    /// `Attention::query` for a head dimension of 8·B, the same operations in the same order
    /// as [`query`] (so the same bits), arranged for short heads: 8 keys' scores at a time
    /// with one batched horizontal sum, and the output accumulated in registers rather than
    /// loaded and stored once per key.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn query_blocks<const B: usize>(
        att: &super::Attention,
        row: usize,
        i: usize,
        head: usize,
        scores: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        let d = att.d;
        debug_assert_eq!(d, B * LANES);
        let kv = head / (att.heads / att.kv_heads).max(1);
        let at = ((head * att.batch + row) * att.t + i) * d;
        let q = &att.q[at..at + d];
        let qv: [__m256; B] = std::array::from_fn(|b| {
            // SAFETY: (b + 1) * 8 <= d, the length of `q`.
            unsafe { _mm256_loadu_ps(q.as_ptr().add(b * LANES)) }
        });
        let dot = |key: &[f32]| -> __m256 {
            debug_assert!(key.len() >= d);
            let mut acc = _mm256_setzero_ps();
            for (b, qb) in qv.iter().enumerate() {
                // SAFETY: (b + 1) * 8 <= d, the length of `key`.
                acc = _mm256_fmadd_ps(
                    *qb,
                    unsafe { _mm256_loadu_ps(key.as_ptr().add(b * LANES)) },
                    acc,
                );
            }
            acc
        };
        let pos = att.shared_len + att.rows_len - att.t + i;
        let first = att.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        let n = pos + 1 - first;
        scores.clear();
        scores.resize(n, 0.0);
        let scale = _mm256_set1_ps(att.scale);
        let mut maxv = _mm256_set1_ps(f32::NEG_INFINITY);
        let whole = n / LANES * LANES;
        let mut j = 0;
        while j < whole {
            let v: [__m256; 8] =
                std::array::from_fn(|u| dot(att.key(att.shared_k, att.k, kv, row, first + j + u)));
            let s = _mm256_mul_ps(hsum8(&v), scale);
            // A NaN score is not a maximum (`max_ps` returns its second operand when either
            // is NaN), as in `query_with`.
            maxv = _mm256_max_ps(s, maxv);
            // SAFETY: j + 8 <= whole <= n, the length of `scores`.
            unsafe { _mm256_storeu_ps(scores.as_mut_ptr().add(j), s) };
            j += LANES;
        }
        let mut lanes = [0f32; LANES];
        // SAFETY: `lanes` holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), maxv) };
        let mut max = f32::NEG_INFINITY;
        for l in lanes {
            if l > max {
                max = l;
            }
        }
        for (jj, slot) in scores.iter_mut().enumerate().skip(whole) {
            let s = hsum(dot(att.key(att.shared_k, att.k, kv, row, first + jj))) * att.scale;
            if s > max {
                max = s;
            }
            *slot = s;
        }
        let mut sum = 0f32;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        let mut acc = [_mm256_setzero_ps(); B];
        for (jj, e) in scores.iter().enumerate() {
            let pv = _mm256_set1_ps(e / sum);
            let value = att.key(att.shared_v, att.v, kv, row, first + jj);
            debug_assert!(value.len() >= d);
            for (b, ab) in acc.iter_mut().enumerate() {
                // SAFETY: (b + 1) * 8 <= d, the length of `value`.
                let x = _mm256_mul_ps(pv, unsafe {
                    _mm256_loadu_ps(value.as_ptr().add(b * LANES))
                });
                *ab = _mm256_add_ps(*ab, x);
            }
        }
        for (b, ab) in acc.iter().enumerate() {
            // SAFETY: (b + 1) * 8 <= d, the length of `out`.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(b * LANES), *ab) };
        }
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

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The head-dimension-specialised attention computes the same bits as the general one,
    /// with and without a shared prefix, a window, and a NaN among the keys.
    #[test]
    fn blocked_attention_matches_the_general_kernel_bit_for_bit() {
        if !fused() {
            eprintln!("skipped: this CPU has no AVX2+FMA, so only the portable kernel runs");
            return;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for &d in &[8usize, 16, 32, 64, 128] {
            for &(shared_len, rows_len, window, nan) in &[
                (0usize, 5usize, None, false),
                (37, 11, None, false),
                (3, 29, Some(9usize), false),
                (20, 4, None, true),
            ] {
                let (heads, kv_heads, batch, t) = (4, 2, 3, 3.min(rows_len));
                let mut fill = |n: usize| -> Vec<f32> {
                    (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect()
                };
                let q = fill(heads * batch * t * d);
                let shared_k = fill(kv_heads * shared_len * d);
                let shared_v = fill(kv_heads * shared_len * d);
                let mut k = fill(kv_heads * batch * rows_len * d);
                let v = fill(kv_heads * batch * rows_len * d);
                if nan {
                    k[d + 1] = f32::NAN;
                }
                let att = Attention {
                    q: &q,
                    shared_k: &shared_k,
                    shared_v: &shared_v,
                    shared_len,
                    k: &k,
                    v: &v,
                    rows_len,
                    heads,
                    kv_heads,
                    batch,
                    t,
                    d,
                    scale: 1.0 / (d as f32).sqrt(),
                    window,
                };
                let (mut s1, mut s2) = (Vec::new(), Vec::new());
                for row in 0..batch {
                    for i in 0..t {
                        for head in 0..heads {
                            let (mut a, mut b) = (vec![0f32; d], vec![0f32; d]);
                            // SAFETY: `fused()` is checked above.
                            unsafe { avx::query(&att, row, i, head, &mut s1, &mut a) };
                            att.query(row, i, head, &mut s2, &mut b);
                            let bits =
                                |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                            assert_eq!(
                                bits(&a),
                                bits(&b),
                                "d {d}, shared {shared_len}, own {rows_len}, window {window:?}, row {row}, query {i}, head {head}"
                            );
                        }
                    }
                }
            }
        }
    }
}
