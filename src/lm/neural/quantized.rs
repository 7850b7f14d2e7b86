//! GGUF q8_0 and q4_0 weights multiplied where they lie: in the memory-mapped file, never
//! copied, so a process holds a quantized model in about the file's size (and processes on one
//! machine share its pages), and with one fixed reduction order per output element, so a
//! row's result is the same bits in any batch and on any number of threads.
//!
//! As in llama.cpp, each activation row is quantized to q8_0 blocks (32 values, an f16 scale
//! `amax / 127`, values rounded to the nearest integer) and multiplied by a weight block in
//! integers. An output element is then
//!
//! ```text
//! lanes[b % 2][l] += (isum_l as f32) * (dw_b * dx_b)   for each block b in order, l in 0..8
//! l_i = lanes[0][i] + lanes[1][i]
//! y = ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))
//! ```
//!
//! where `isum_l` is the exact integer sum of the four products 4l..4l+3 of the block: the
//! same lanes whether the integers come from AVX-512 VNNI (`dpbusd` on two blocks at once, on
//! the weights offset to unsigned and corrected per lane; even blocks in the low half, odd in
//! the high) or AVX2 (`maddubs` with the sign trick, even blocks then odd), so both give the
//! same bits. The lane update is a fused multiply-add where AVX2 and FMA run (detected at run
//! time) and a multiply then an add elsewhere, as in `kernels.rs`.

use std::sync::Arc;

use memmap2::Mmap;

/// Values per block (both formats).
const BLOCK: usize = 32;
/// Lanes of the per-element reduction.
const LANES: usize = 8;
/// Register tile: activation rows by weight rows.
const TILE_ROWS: usize = 4;
const TILE_COLS: usize = 3;
/// Bytes of quantized activation rows kept in cache while the column tiles pass over them.
const ROW_BLOCK_BYTES: usize = 1 << 20;
/// Multiply-adds below which a product runs on the calling thread.
const PARALLEL_WORK: usize = 1 << 20;

/// The block formats multiplied in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockFormat {
    /// An f16 scale and 32 signed bytes.
    Q8_0,
    /// An f16 scale and 32 nibbles (value - 8), low nibbles first.
    Q4_0,
}

impl BlockFormat {
    /// Bytes of one block in the file.
    pub fn block_bytes(self) -> usize {
        match self {
            BlockFormat::Q8_0 => 2 + BLOCK,
            BlockFormat::Q4_0 => 2 + BLOCK / 2,
        }
    }

    /// What is added to a weight value to make it unsigned for `dpbusd`, as a power of two.
    fn offset_shift(self) -> u32 {
        match self {
            BlockFormat::Q8_0 => 7,
            BlockFormat::Q4_0 => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BlockFormat::Q8_0 => "q8_0",
            BlockFormat::Q4_0 => "q4_0",
        }
    }
}

/// A weight matrix [n, k] of quantized blocks inside a mapped file, row-major (row c is
/// blocks c·k/32 .. (c+1)·k/32).
pub struct MappedBlocks {
    map: Arc<Mmap>,
    start: usize,
    n: usize,
    k: usize,
    format: BlockFormat,
}

impl std::fmt::Debug for MappedBlocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MappedBlocks({} [{}, {}])",
            self.format.name(),
            self.n,
            self.k
        )
    }
}

impl MappedBlocks {
    /// The matrix [n, k] at byte `start` of `map`; refused when k is not a whole number of
    /// blocks or the matrix runs past the file.
    pub fn new(
        map: Arc<Mmap>,
        start: usize,
        n: usize,
        k: usize,
        format: BlockFormat,
    ) -> Result<MappedBlocks, String> {
        if k == 0 || !k.is_multiple_of(BLOCK) {
            return Err(format!(
                "a {} matrix needs rows of a multiple of {BLOCK} values, not {k}",
                format.name()
            ));
        }
        let bytes = n
            .checked_mul(k / BLOCK)
            .and_then(|b| b.checked_mul(format.block_bytes()))
            .ok_or("the matrix's size overflows")?;
        if start.checked_add(bytes).is_none_or(|end| end > map.len()) {
            return Err(format!(
                "a {} matrix of [{n}, {k}] at byte {start} runs past the file's {} bytes",
                format.name(),
                map.len()
            ));
        }
        Ok(MappedBlocks {
            map,
            start,
            n,
            k,
            format,
        })
    }

    /// [n, k].
    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    pub fn format(&self) -> BlockFormat {
        self.format
    }

    fn row_bytes(&self) -> usize {
        self.k / BLOCK * self.format.block_bytes()
    }

    /// Row c's blocks.
    fn row(&self, c: usize) -> &[u8] {
        let at = self.start + c * self.row_bytes();
        &self.map[at..at + self.row_bytes()]
    }

    /// Row c as f32 values (`scale * value` per element), the bits ggml's dequantization
    /// gives.
    pub fn dequantize_row(&self, c: usize, out: &mut [f32]) {
        let bb = self.format.block_bytes();
        for (block, values) in self
            .row(c)
            .chunks_exact(bb)
            .zip(out.chunks_exact_mut(BLOCK))
        {
            let d = f16_bits_to_f32(u16::from_le_bytes([block[0], block[1]]));
            let w = weight_values(self.format, &block[2..]);
            for (o, v) in values.iter_mut().zip(w) {
                *o = v as f32 * d;
            }
        }
    }

    /// y = x W^T for x [m, k] row-major: y [m, n] row-major, each element computed in the
    /// fixed order of the module doc.
    pub fn matmul_t(&self, x: &[f32], m: usize) -> Vec<f32> {
        let (n, k) = (self.n, self.k);
        debug_assert!(x.len() >= m * k);
        if m == 0 || n == 0 {
            return vec![0f32; m * n];
        }
        let act = Activations::quantize(x, m, k, self.format);
        super::kernels::by_columns(
            m,
            n,
            TILE_COLS,
            m * n * k >= PARALLEL_WORK,
            |c0, c1, out, stride| self.columns(&act, c0, c1, out, stride),
        )
    }

    /// Columns c0..c1 into `out` (row stride `stride`, column c at c - c0).
    fn columns(&self, act: &Activations, c0: usize, c1: usize, out: &mut [f32], stride: usize) {
        let kb = self.k / BLOCK;
        let block = (ROW_BLOCK_BYTES / (kb * (BLOCK + 36)).max(1)).clamp(TILE_ROWS, 512)
            / TILE_ROWS
            * TILE_ROWS;
        let kernel = Kernel::detect();
        let mut r0 = 0;
        while r0 < act.m {
            let r1 = (r0 + block).min(act.m);
            let mut c = c0;
            while c < c1 {
                let nc = TILE_COLS.min(c1 - c);
                let ws: [&[u8]; TILE_COLS] =
                    std::array::from_fn(|j| if j < nc { self.row(c + j) } else { &[] });
                let mut r = r0;
                while r < r1 {
                    let nr = TILE_ROWS.min(r1 - r);
                    let mut acc = [[0f32; TILE_COLS]; TILE_ROWS];
                    kernel.tile(self.format, act, r, nr, &ws, nc, kb, &mut acc);
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
}

/// The 32 signed values of a weight block's payload.
fn weight_values(format: BlockFormat, payload: &[u8]) -> [i32; BLOCK] {
    match format {
        BlockFormat::Q8_0 => std::array::from_fn(|j| payload[j] as i8 as i32),
        BlockFormat::Q4_0 => std::array::from_fn(|j| {
            let b = payload[j % (BLOCK / 2)];
            let nibble = if j < BLOCK / 2 { b & 0x0F } else { b >> 4 };
            nibble as i32 - 8
        }),
    }
}

fn f16_bits_to_f32(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// Activation rows quantized to q8_0 blocks, with what the kernels need per block.
struct Activations {
    m: usize,
    kb: usize,
    /// [m, kb, 32] values.
    q: Vec<i8>,
    /// [m, kb, 8] per-lane corrections for `dpbusd` on offset weights: -(offset) times the
    /// sum of the lane's four values.
    correction: Vec<i32>,
    /// [m, kb, 8]: each block's scale (the f16-rounded `amax / 127`, as f32; NaN for a block
    /// with a non-finite value, so the output carries it) repeated per lane, so that two
    /// blocks fill a 512-bit load.
    d_lanes: Vec<f32>,
}

impl Activations {
    fn quantize(x: &[f32], m: usize, k: usize, format: BlockFormat) -> Activations {
        let kb = k / BLOCK;
        let mut q = vec![0i8; m * k];
        let mut correction = vec![0i32; m * kb * LANES];
        let mut d_lanes = vec![0f32; m * kb * LANES];
        let shift = format.offset_shift();
        for ((xs, qs), (d, corr)) in x[..m * k]
            .chunks_exact(BLOCK)
            .zip(q.chunks_exact_mut(BLOCK))
            .zip(
                d_lanes
                    .chunks_exact_mut(LANES)
                    .zip(correction.chunks_exact_mut(LANES)),
            )
        {
            let mut amax = 0f32;
            let mut finite = true;
            for &v in xs {
                finite &= v.is_finite();
                amax = amax.max(v.abs());
            }
            let scale = amax / 127.0;
            let inverse = if scale != 0.0 { 1.0 / scale } else { 0.0 };
            for (qv, &v) in qs.iter_mut().zip(xs) {
                *qv = (v * inverse).round() as i8;
            }
            d.fill(if finite {
                half::f16::from_f32(scale).to_f32()
            } else {
                f32::NAN
            });
            for (l, c) in corr.iter_mut().enumerate() {
                let sum: i32 = qs[4 * l..4 * l + 4].iter().map(|&v| v as i32).sum();
                *c = -(sum << shift);
            }
        }
        Activations {
            m,
            kb,
            q,
            correction,
            d_lanes,
        }
    }

    /// Block b's scale in row r.
    fn scale(&self, r: usize, b: usize) -> f32 {
        self.d_lanes[(r * self.kb + b) * LANES]
    }

    fn block(&self, r: usize, b: usize) -> &[i8] {
        let at = (r * self.kb + b) * BLOCK;
        &self.q[at..at + BLOCK]
    }
}

/// Which inner loop runs on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Vnni,
}

impl Kernel {
    fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            use std::sync::OnceLock;
            static KERNEL: OnceLock<Kernel> = OnceLock::new();
            *KERNEL.get_or_init(|| {
                if !super::kernels::fused() || !std::arch::is_x86_feature_detected!("f16c") {
                    Kernel::Portable
                } else if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
                {
                    Kernel::Vnni
                } else {
                    Kernel::Avx2
                }
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Kernel::Portable
        }
    }

    /// Rows r..r+nr of the activations against the weight rows `ws[..nc]`.
    #[allow(clippy::too_many_arguments)]
    fn tile(
        self,
        format: BlockFormat,
        act: &Activations,
        r: usize,
        nr: usize,
        ws: &[&[u8]; TILE_COLS],
        nc: usize,
        kb: usize,
        out: &mut [[f32; TILE_COLS]; TILE_ROWS],
    ) {
        match self {
            Kernel::Portable => portable_tile(format, act, r, nr, ws, nc, kb, out),
            // SAFETY: `detect` chose these only where the CPU has their features.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { x86::tile_avx2(format, act, r, nr, ws, nc, kb, out) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni => unsafe { x86::tile_vnni(format, act, r, nr, ws, nc, kb, out) },
        }
    }
}

/// The module doc's sequence with a multiply then an add.
#[allow(clippy::too_many_arguments)]
fn portable_tile(
    format: BlockFormat,
    act: &Activations,
    r: usize,
    nr: usize,
    ws: &[&[u8]; TILE_COLS],
    nc: usize,
    kb: usize,
    out: &mut [[f32; TILE_COLS]; TILE_ROWS],
) {
    let bb = format.block_bytes();
    for (i, out_row) in out.iter_mut().enumerate().take(nr) {
        for (w, o) in ws.iter().zip(out_row.iter_mut()).take(nc) {
            let mut halves = [[0f32; LANES]; 2];
            for b in 0..kb {
                let block = &w[b * bb..(b + 1) * bb];
                let dw = f16_bits_to_f32(u16::from_le_bytes([block[0], block[1]]));
                let values = weight_values(format, &block[2..]);
                let xs = act.block(r + i, b);
                let s = dw * act.scale(r + i, b);
                for (l, lane) in halves[b % 2].iter_mut().enumerate() {
                    let isum: i32 = (4 * l..4 * l + 4).map(|e| values[e] * xs[e] as i32).sum();
                    *lane += isum as f32 * s;
                }
            }
            let lanes: [f32; LANES] = std::array::from_fn(|l| halves[0][l] + halves[1][l]);
            *o = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6]))
                + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The helpers are `#[inline(always)] unsafe fn`s without features of their own: they
    //! compile inline into `tile_vnni` / `tile_avx2`, which enable the features, and may only
    //! be called where the CPU has them (AVX2, FMA and F16C; AVX-512 F, BW, DQ, VL and VNNI
    //! for `body_vnni` and `lanes_vnni`).

    use super::{Activations, BLOCK, BlockFormat, LANES, TILE_COLS, TILE_ROWS};
    use std::arch::x86_64::*;

    /// The horizontal sum in the order of the module doc.
    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        unsafe {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
            _mm_cvtss_f32(s)
        }
    }

    /// The scale and 32 values of the weight block at `block`: signed (`UNSIGNED` false) or
    /// offset to unsigned (value + 2^shift, for `dpbusd`). `block` points at 2 + 32 (q8_0)
    /// or 2 + 16 (q4_0) readable bytes.
    #[inline(always)]
    unsafe fn weights<const UNSIGNED: bool>(
        format: BlockFormat,
        block: *const u8,
    ) -> (f32, __m256i) {
        unsafe {
            let bits = u16::from_le_bytes([*block, *block.add(1)]);
            let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)));
            let values = match format {
                BlockFormat::Q8_0 => {
                    let v = _mm256_loadu_si256(block.add(2) as *const __m256i);
                    if UNSIGNED {
                        _mm256_xor_si256(v, _mm256_set1_epi8(-128))
                    } else {
                        v
                    }
                }
                BlockFormat::Q4_0 => {
                    let packed = _mm_loadu_si128(block.add(2) as *const __m128i);
                    let low = _mm_and_si128(packed, _mm_set1_epi8(0x0F));
                    let high = _mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0F));
                    let v = _mm256_set_m128i(high, low);
                    if UNSIGNED {
                        v
                    } else {
                        _mm256_sub_epi8(v, _mm256_set1_epi8(8))
                    }
                }
            };
            (d, values)
        }
    }

    /// The 8 exact lane sums of a block product: `dpbusd` on offset weights from the
    /// activation's correction.
    #[inline(always)]
    unsafe fn lanes_vnni(w_unsigned: __m256i, x: __m256i, correction: __m256i) -> __m256i {
        unsafe { _mm256_dpbusd_epi32(correction, w_unsigned, x) }
    }

    /// The same lanes with `maddubs` and the sign trick.
    #[inline(always)]
    unsafe fn lanes_avx2(w_signed: __m256i, x: __m256i, x_abs: __m256i) -> __m256i {
        unsafe {
            let products = _mm256_maddubs_epi16(x_abs, _mm256_sign_epi8(w_signed, x));
            _mm256_madd_epi16(products, _mm256_set1_epi16(1))
        }
    }

    /// Dispatches a tile of `nr` x `nc` to the body compiled for that size, so a tile's
    /// accumulators stay in registers.
    macro_rules! sized {
        ($body:ident, $nr:expr, $nc:expr, $args:tt) => {
            match ($nr, $nc) {
                (1, 1) => sized!(@call $body, 1, 1, $args),
                (1, 2) => sized!(@call $body, 1, 2, $args),
                (1, _) => sized!(@call $body, 1, 3, $args),
                (2, 1) => sized!(@call $body, 2, 1, $args),
                (2, 2) => sized!(@call $body, 2, 2, $args),
                (2, _) => sized!(@call $body, 2, 3, $args),
                (3, 1) => sized!(@call $body, 3, 1, $args),
                (3, 2) => sized!(@call $body, 3, 2, $args),
                (3, _) => sized!(@call $body, 3, 3, $args),
                (_, 1) => sized!(@call $body, 4, 1, $args),
                (_, 2) => sized!(@call $body, 4, 2, $args),
                (_, _) => sized!(@call $body, 4, 3, $args),
            }
        };
        (@call $body:ident, $r:literal, $c:literal, ($format:expr, $act:expr, $row:expr, $ws:expr, $kb:expr, $out:expr)) => {
            $body::<$r, $c>($format, $act, $row, $ws, $kb, $out)
        };
    }

    /// [`body_vnni`] where the CPU has AVX-512 (F, BW, DQ, VL) and VNNI.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn tile_vnni(
        format: BlockFormat,
        act: &Activations,
        r: usize,
        nr: usize,
        ws: &[&[u8]; TILE_COLS],
        nc: usize,
        kb: usize,
        out: &mut [[f32; TILE_COLS]; TILE_ROWS],
    ) {
        // SAFETY: this function enables every feature the body uses.
        unsafe { sized!(body_vnni, nr, nc, (format, act, r, ws, kb, out)) }
    }

    /// Two blocks per 512-bit operation, even blocks in the low half and odd in the high; a
    /// last block without a partner (an odd count) joins the even lanes.
    #[inline(always)]
    unsafe fn body_vnni<const R: usize, const C: usize>(
        format: BlockFormat,
        act: &Activations,
        r: usize,
        ws: &[&[u8]; TILE_COLS],
        kb: usize,
        out: &mut [[f32; TILE_COLS]; TILE_ROWS],
    ) {
        let bb = format.block_bytes();
        // SAFETY: the caller's features; every load reads whole blocks (64 values, 16
        // corrections or scales for a pair; one weight block as `weights` documents).
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); C]; R];
            let kbs = act.kb;
            debug_assert!(act.q.len() >= (r + R) * kbs * BLOCK);
            debug_assert!(ws.iter().take(C).all(|w| w.len() >= kb * bb));
            let wrow: [*const u8; C] = std::array::from_fn(|j| ws[j].as_ptr());
            let q: [*const i8; R] =
                std::array::from_fn(|i| act.q.as_ptr().add((r + i) * kbs * BLOCK));
            let corr: [*const i32; R] =
                std::array::from_fn(|i| act.correction.as_ptr().add((r + i) * kbs * LANES));
            let dxs: [*const f32; R] =
                std::array::from_fn(|i| act.d_lanes.as_ptr().add((r + i) * kbs * LANES));
            let mut b = 0;
            while b + 2 <= kb {
                let mut dw = [_mm512_setzero_ps(); C];
                let mut wv = [_mm512_setzero_si512(); C];
                for j in 0..C {
                    let (d0, w0) = weights::<true>(format, wrow[j].add(b * bb));
                    let (d1, w1) = weights::<true>(format, wrow[j].add((b + 1) * bb));
                    wv[j] = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(w0), w1);
                    dw[j] = _mm512_insertf32x8::<1>(
                        _mm512_castps256_ps512(_mm256_set1_ps(d0)),
                        _mm256_set1_ps(d1),
                    );
                }
                for (i, acc_row) in acc.iter_mut().enumerate() {
                    let x = _mm512_loadu_si512(q[i].add(b * BLOCK) as *const __m512i);
                    let c = _mm512_loadu_si512(corr[i].add(b * LANES) as *const __m512i);
                    let dx = _mm512_loadu_ps(dxs[i].add(b * LANES));
                    for (j, a) in acc_row.iter_mut().enumerate() {
                        let lanes = _mm512_dpbusd_epi32(c, wv[j], x);
                        // dw * dx lane by lane: the bits of the scalar product.
                        let s = _mm512_mul_ps(dw[j], dx);
                        *a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes), s, *a);
                    }
                }
                b += 2;
            }
            let mut even = [[_mm256_setzero_ps(); C]; R];
            for (e, a) in even.iter_mut().zip(&mut acc) {
                for (ej, aj) in e.iter_mut().zip(a.iter()) {
                    *ej = _mm512_castps512_ps256(*aj);
                }
            }
            if b < kb {
                pass::<true, R, C>(format, act, r, ws, kb, b, &mut even);
            }
            for (i, o) in out.iter_mut().enumerate().take(R) {
                for (j, oj) in o.iter_mut().enumerate().take(C) {
                    let odd = _mm512_extractf32x8_ps::<1>(acc[i][j]);
                    *oj = hsum(_mm256_add_ps(even[i][j], odd));
                }
            }
        }
    }

    /// [`body`] where the CPU has AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn tile_avx2(
        format: BlockFormat,
        act: &Activations,
        r: usize,
        nr: usize,
        ws: &[&[u8]; TILE_COLS],
        nc: usize,
        kb: usize,
        out: &mut [[f32; TILE_COLS]; TILE_ROWS],
    ) {
        // SAFETY: this function enables every feature the body uses.
        unsafe { sized!(body_avx2, nr, nc, (format, act, r, ws, kb, out)) }
    }

    /// Blocks `first`, `first + 2`, ... of a tile of `R` rows by `C` columns added in order
    /// to `acc`; `VNNI` chooses how the integer lanes are formed (the same values either way).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn pass<const VNNI: bool, const R: usize, const C: usize>(
        format: BlockFormat,
        act: &Activations,
        r: usize,
        ws: &[&[u8]; TILE_COLS],
        kb: usize,
        first: usize,
        acc: &mut [[__m256; C]; R],
    ) {
        let bb = format.block_bytes();
        // SAFETY: the caller's features; every load reads a whole block (32 values, 8
        // corrections, or the weight block `weights` documents).
        unsafe {
            for b in (first..kb).step_by(2) {
                let mut dw = [_mm256_setzero_ps(); C];
                let mut wv = [_mm256_setzero_si256(); C];
                for j in 0..C {
                    let (d, v) = weights::<VNNI>(format, ws[j][b * bb..(b + 1) * bb].as_ptr());
                    dw[j] = _mm256_set1_ps(d);
                    wv[j] = v;
                }
                for (i, acc_row) in acc.iter_mut().enumerate() {
                    let row = r + i;
                    let xs = act.block(row, b);
                    debug_assert_eq!(xs.len(), BLOCK);
                    let x = _mm256_loadu_si256(xs.as_ptr() as *const __m256i);
                    let extra = if VNNI {
                        let at = (row * kb + b) * LANES;
                        _mm256_loadu_si256(act.correction[at..at + LANES].as_ptr() as *const __m256i)
                    } else {
                        _mm256_sign_epi8(x, x)
                    };
                    let dx = _mm256_set1_ps(act.scale(row, b));
                    for (j, a) in acc_row.iter_mut().enumerate() {
                        let lanes = if VNNI {
                            lanes_vnni(wv[j], x, extra)
                        } else {
                            lanes_avx2(wv[j], x, extra)
                        };
                        // dw * dx lane by lane: the bits of the scalar product.
                        let s = _mm256_mul_ps(dw[j], dx);
                        *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), s, *a);
                    }
                }
            }
        }
    }

    /// The even blocks, then the odd ones, each in order.
    #[inline(always)]
    unsafe fn body_avx2<const R: usize, const C: usize>(
        format: BlockFormat,
        act: &Activations,
        r: usize,
        ws: &[&[u8]; TILE_COLS],
        kb: usize,
        out: &mut [[f32; TILE_COLS]; TILE_ROWS],
    ) {
        // SAFETY: the caller's features.
        unsafe {
            let mut even = [[_mm256_setzero_ps(); C]; R];
            pass::<false, R, C>(format, act, r, ws, kb, 0, &mut even);
            let mut odd = [[_mm256_setzero_ps(); C]; R];
            pass::<false, R, C>(format, act, r, ws, kb, 1, &mut odd);
            for (i, o) in out.iter_mut().enumerate().take(R) {
                for (j, oj) in o.iter_mut().enumerate().take(C) {
                    *oj = hsum(_mm256_add_ps(even[i][j], odd[i][j]));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A mapped temporary file holding `n` rows of random blocks of `format`.
    fn random_matrix(n: usize, k: usize, format: BlockFormat, seed: u64) -> MappedBlocks {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut bytes = vec![0u8; 7];
        for _ in 0..n * k / BLOCK {
            let d = half::f16::from_f32(rng.random_range(0.001f32..0.05)).to_bits();
            bytes.extend(d.to_le_bytes());
            for _ in 0..format.block_bytes() - 2 {
                bytes.push(match format {
                    BlockFormat::Q8_0 => rng.random_range(-127i8..=127) as u8,
                    BlockFormat::Q4_0 => rng.random(),
                });
            }
        }
        let path = std::env::temp_dir().join(format!(
            "beb-quantized-test-{}-{seed}-{}",
            std::process::id(),
            format.name()
        ));
        std::fs::write(&path, &bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: the file is this test's own and is not changed while mapped.
        let map = unsafe { Mmap::map(&file) }.unwrap();
        let _ = std::fs::remove_file(&path);
        MappedBlocks::new(Arc::new(map), 7, n, k, format).unwrap()
    }

    fn activations(m: usize, k: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..m * k).map(|_| rng.random_range(-3.0f32..3.0)).collect()
    }

    fn bits(x: &[f32]) -> Vec<u32> {
        x.iter().map(|v| v.to_bits()).collect()
    }

    /// The product against the dequantized weights and q8_0-rounded activations in f64.
    fn reference(w: &MappedBlocks, x: &[f32], m: usize) -> Vec<f64> {
        let (n, k) = w.dims();
        let act = Activations::quantize(x, m, k, w.format());
        let mut row = vec![0f32; k];
        let mut y = vec![0f64; m * n];
        for c in 0..n {
            w.dequantize_row(c, &mut row);
            for r in 0..m {
                y[r * n + c] = (0..k)
                    .map(|e| {
                        row[e] as f64 * act.q[r * k + e] as f64 * act.scale(r, e / BLOCK) as f64
                    })
                    .sum();
            }
        }
        y
    }

    #[test]
    fn products_match_the_dequantized_reference_for_both_formats() {
        for format in [BlockFormat::Q8_0, BlockFormat::Q4_0] {
            let (m, n, k) = (9, 13, 96);
            let w = random_matrix(n, k, format, 3);
            let x = activations(m, k, 4);
            let y = w.matmul_t(&x, m);
            for (got, want) in y.iter().zip(reference(&w, &x, m)) {
                assert!(
                    (*got as f64 - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "{}: {got} vs {want}",
                    format.name()
                );
            }
        }
    }

    #[test]
    fn every_kernel_this_machine_has_gives_the_same_lanes() {
        let (m, n, k) = (6, 11, 160);
        for format in [BlockFormat::Q8_0, BlockFormat::Q4_0] {
            let w = random_matrix(n, k, format, 5);
            let x = activations(m, k, 6);
            let act = Activations::quantize(&x, m, k, format);
            let ws: [&[u8]; TILE_COLS] = std::array::from_fn(|j| w.row(j));
            let run = |kernel: Kernel| {
                let mut out = [[0f32; TILE_COLS]; TILE_ROWS];
                kernel.tile(
                    format,
                    &act,
                    1,
                    TILE_ROWS,
                    &ws,
                    TILE_COLS,
                    k / BLOCK,
                    &mut out,
                );
                out
            };
            let portable = run(Kernel::Portable);
            #[cfg(target_arch = "x86_64")]
            {
                let fused =
                    super::super::kernels::fused() && std::arch::is_x86_feature_detected!("f16c");
                if fused {
                    let avx2 = run(Kernel::Avx2);
                    for (a, p) in avx2.iter().flatten().zip(portable.iter().flatten()) {
                        assert!((a - p).abs() <= 1e-5 * p.abs().max(1.0), "{a} vs {p}");
                    }
                    if Kernel::detect() == Kernel::Vnni {
                        let vnni = run(Kernel::Vnni);
                        assert_eq!(
                            bits(vnni.as_flattened()),
                            bits(avx2.as_flattened()),
                            "{}: VNNI and AVX2 differ",
                            format.name()
                        );
                    } else {
                        eprintln!("VNNI not compared: this CPU has no AVX-512 VNNI");
                    }
                } else {
                    eprintln!("AVX2 not compared: this CPU lacks AVX2, FMA or F16C");
                }
            }
        }
    }

    #[test]
    fn a_row_is_the_same_bits_alone_in_a_batch_and_on_any_thread_count() {
        // m·n·k over PARALLEL_WORK, so more than one thread splits the columns.
        let (m, n, k) = (37, 67, 512);
        for format in [BlockFormat::Q8_0, BlockFormat::Q4_0] {
            let w = random_matrix(n, k, format, 8);
            let x = activations(m, k, 9);
            let batch = w.matmul_t(&x, m);
            for r in [0, 17, 36] {
                let alone = w.matmul_t(&x[r * k..(r + 1) * k], 1);
                assert_eq!(bits(&alone), bits(&batch[r * n..(r + 1) * n]));
            }
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                assert_eq!(bits(&pool.install(|| w.matmul_t(&x, m))), bits(&batch));
            }
        }
    }

    #[test]
    fn a_non_finite_activation_makes_its_rows_outputs_nan() {
        let (n, k) = (5, 64);
        let w = random_matrix(n, k, BlockFormat::Q8_0, 10);
        let mut x = activations(2, k, 11);
        x[k + 3] = f32::INFINITY;
        let y = w.matmul_t(&x, 2);
        assert!(y[..n].iter().all(|v| v.is_finite()));
        assert!(y[n..].iter().all(|v| v.is_nan()));
    }

    #[test]
    fn a_matrix_past_the_end_of_its_file_is_refused() {
        let w = random_matrix(2, 32, BlockFormat::Q8_0, 12);
        let map = w.map.clone();
        assert!(MappedBlocks::new(map.clone(), 7, 3, 32, BlockFormat::Q8_0).is_err());
        assert!(MappedBlocks::new(map, 7, 2, 48, BlockFormat::Q8_0).is_err());
    }
}
