//! 4-bit "fast-scan" product-quantisation codes: packing, u8 lookup tables and the SIMD scanners.
//!
//! With 16 centroids per sub-space a whole sub-space lookup table fits in one 128-bit register, so
//! one byte shuffle (`pshufb`) looks up a sub-space's code for 16 vectors at once — 32 per AVX2
//! instruction, 64 per AVX-512BW instruction — instead of one gather per code as with 8-bit codes.
//! This is the idea of FAISS' `IndexPQFastScan` (André et al., "Cache locality is not enough");
//! the layout below is our own, simpler one.
//!
//! # Layout
//! Vectors are grouped in blocks of [`BLOCK`] = 32. The number of sub-spaces `m` is padded to
//! `m_pad`, a multiple of 4 (padding sub-spaces hold code 0 and a table of zeros, so they add
//! nothing). A block is `m_pad * 16` bytes: for each sub-space `j` in order, 16 bytes where byte `i`
//! holds the code of vector `i` in the low nibble and the code of vector `i + 16` in the high
//! nibble. A quantised table is `m_pad * 16` bytes, sub-space after sub-space.
//!
//! Because sub-space `j` occupies bytes `16 j .. 16 j + 16` of both the block and the table, a
//! 256-bit load covers two sub-spaces and a 512-bit load four, with the table lanes lined up with
//! the code lanes: `shuffle(table, codes & 15)` gives vectors 0..15 and
//! `shuffle(table, codes >> 4)` vectors 16..31, one sub-space per 128-bit lane. The lanes are summed
//! at the end of the block.
//!
//! # Accumulation
//! Entries are u8 and sums are kept in u16 lanes. Adding the shuffled bytes as u16 lanes sums
//! `even + 256 * odd` (wrapping); a second accumulator sums `odd` alone (`>> 8`), and
//! `even = total - (odd << 8)` recovers the even lanes exactly modulo 2^16. Every true sum is at
//! most `m_pad * 255`, so with `m_pad <= 256` ([`MAX_SUBSPACES`]) nothing overflows and every
//! SIMD level gives bit-for-bit the result of the scalar reference.

/// Vectors per packed block.
pub const BLOCK: usize = 32;

/// Largest (padded) number of sub-spaces whose u8 table entries cannot overflow a u16 sum.
pub const MAX_SUBSPACES: usize = 256;

/// Sub-space count rounded up to what the kernels consume (a multiple of 4).
pub fn padded_m(m: usize) -> usize {
    m.div_ceil(4) * 4
}

/// Bytes of one packed block of [`BLOCK`] vectors.
pub fn block_bytes(m: usize) -> usize {
    padded_m(m) * 16
}

/// Number of blocks needed for `len` vectors.
pub fn blocks_for(len: usize) -> usize {
    len.div_ceil(BLOCK)
}

/// Appends `n = codes.len() / m` vectors' codes (one 4-bit code per byte, `m` per vector,
/// row-major) to `out` in the packed layout. The last block is padded with code 0.
pub fn pack_codes(codes: &[u8], m: usize, out: &mut Vec<u8>) {
    debug_assert!(m > 0 && codes.len().is_multiple_of(m));
    let n = codes.len() / m;
    let m_pad = padded_m(m);
    for b in 0..blocks_for(n) {
        let start = out.len();
        out.resize(start + m_pad * 16, 0);
        let block = &mut out[start..];
        for i in 0..BLOCK {
            let v = b * BLOCK + i;
            if v >= n {
                break;
            }
            let (byte, shift) = if i < 16 { (i, 0) } else { (i - 16, 4) };
            for (j, &c) in codes[v * m..(v + 1) * m].iter().enumerate() {
                block[j * 16 + byte] |= (c & 15) << shift;
            }
        }
    }
}

/// The 4-bit code of vector `i` (0..32) for sub-space `j` in a packed block.
#[inline]
pub fn unpack_code(block: &[u8], i: usize, j: usize) -> u8 {
    if i < 16 {
        block[j * 16 + i] & 15
    } else {
        block[j * 16 + i - 16] >> 4
    }
}

/// Quantises a float table (`m` sub-spaces × 16 entries, smaller is closer) to u8 entries in
/// `out` (`m_pad * 16` bytes). Returns `(scale, bias)` such that the float sum over sub-spaces is
/// approximately `bias + scale * u16_sum`.
///
/// Each sub-space is shifted by its minimum, and one scale is shared by all sub-spaces so that
/// sums stay comparable; the widest sub-space uses the full 0..=255 range.
pub fn quantize_lut(lut: &[f32], m: usize, out: &mut [u8]) -> (f32, f32) {
    quantize_lut_with(SimdLevel::detect(), lut, m, out)
}

/// [`quantize_lut`] with a chosen kernel level; every level gives bit-identical output (same
/// IEEE operations in the same order, min/max being exact).
pub fn quantize_lut_with(level: SimdLevel, lut: &[f32], m: usize, out: &mut [u8]) -> (f32, f32) {
    check_lut_sizes(lut, m, out);
    #[cfg(target_arch = "x86_64")]
    if level == SimdLevel::Avx512
        && std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
    {
        // SAFETY: features checked; sizes asserted above.
        return unsafe { avx512::quantize_lut(lut, m, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if level == SimdLevel::Avx2 && std::is_x86_feature_detected!("avx2") {
        // SAFETY: feature checked; sizes asserted above.
        return unsafe { avx2::quantize_lut(lut, m, out) };
    }
    let _ = level;
    quantize_lut_scalar(lut, m, out)
}

/// Checks the sizes the quantisers rely on (the AVX-512 one's loads are unchecked).
#[inline]
fn check_lut_sizes(lut: &[f32], m: usize, out: &[u8]) {
    assert_eq!(lut.len(), m * 16, "table size");
    assert_eq!(out.len(), padded_m(m) * 16, "quantised table size");
    assert!(m <= MAX_SUBSPACES, "too many sub-spaces");
}

/// What every quantiser gathers in its first pass: each sub-space's minimum, their sum (the
/// quantised table's bias) and the widest sub-space's range (which sets the shared scale).
struct RowRanges {
    mins: [f32; MAX_SUBSPACES],
    bias: f32,
    max_range: f32,
}

impl RowRanges {
    #[inline(always)]
    fn new() -> Self {
        RowRanges {
            mins: [0.0; MAX_SUBSPACES],
            bias: 0.0,
            max_range: 0.0,
        }
    }

    /// Records sub-space `j`'s minimum `lo` and maximum `hi` (sub-spaces in order).
    #[inline(always)]
    fn push(&mut self, j: usize, lo: f32, hi: f32) {
        self.mins[j] = lo;
        self.bias += lo;
        self.max_range = self.max_range.max(hi - lo);
    }

    /// Records the first `rows` sub-spaces, whose minima a vector quantiser stored into
    /// `mins` itself, `widest` their widest range; before any [`push`](Self::push). The bias sums
    /// the minima in row order, as `push` does, so every level's tables are bit-identical.
    #[inline(always)]
    fn record_stored(&mut self, rows: usize, widest: f32) {
        self.max_range = widest;
        for &lo in &self.mins[..rows] {
            self.bias += lo;
        }
    }

    /// The step of one u8 unit: the widest sub-space spans 0..=255.
    #[inline(always)]
    fn scale(&self) -> f32 {
        if self.max_range > 0.0 && self.max_range.is_finite() {
            self.max_range / 255.0
        } else {
            1.0
        }
    }
}

fn quantize_lut_scalar(lut: &[f32], m: usize, out: &mut [u8]) -> (f32, f32) {
    debug_assert_eq!(lut.len(), m * 16);
    debug_assert_eq!(out.len(), padded_m(m) * 16);
    let mut ranges = RowRanges::new();
    for j in 0..m {
        let row = &lut[j * 16..j * 16 + 16];
        let (lo, hi) = row
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        ranges.push(j, lo, hi);
    }
    let scale = ranges.scale();
    let inv = 1.0 / scale;
    for j in 0..m {
        let min = ranges.mins[j];
        for (o, &v) in out[j * 16..j * 16 + 16]
            .iter_mut()
            .zip(&lut[j * 16..j * 16 + 16])
        {
            // Values are >= 0 here, so `+ 0.5` then truncation rounds to nearest without a libm
            // call (this loop vectorises); `as u8` saturates.
            *o = ((v - min) * inv + 0.5).min(255.0) as u8;
        }
    }
    out[m * 16..].fill(0);
    (scale, ranges.bias)
}

/// The u16 bound that an accumulated sum must not exceed to possibly beat float `threshold`.
/// Conservative: every sum whose float value is below the threshold passes.
#[inline]
pub fn u16_threshold(threshold: f32, scale: f32, bias: f32) -> u16 {
    if !threshold.is_finite() {
        return u16::MAX;
    }
    let t = (threshold - bias) / scale;
    if t >= u16::MAX as f32 {
        u16::MAX
    } else if t > 0.0 {
        // ceil without a libm call (the baseline x86-64 target has no rounding instruction):
        // truncate, then step up if anything was cut off.
        let i = t as u16;
        if (i as f32) < t { i + 1 } else { i }
    } else {
        0
    }
}

/// Which kernel implementation a scan uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimdLevel {
    /// Portable code; also the reference the others are tested against.
    Scalar,
    /// 256-bit byte shuffles (x86-64 AVX2 + BMI2).
    Avx2,
    /// 512-bit byte shuffles (x86-64 AVX-512F + AVX-512BW).
    Avx512,
}

impl SimdLevel {
    /// The fastest level this CPU supports (checked once per call; cheap).
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw")
            {
                return SimdLevel::Avx512;
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("bmi2") {
                return SimdLevel::Avx2;
            }
        }
        SimdLevel::Scalar
    }

    /// Every level this CPU can run, slowest first (for tests and benchmarks).
    pub fn available() -> Vec<Self> {
        let best = Self::detect();
        let mut out = vec![SimdLevel::Scalar];
        if matches!(best, SimdLevel::Avx2 | SimdLevel::Avx512) {
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("bmi2") {
                out.push(SimdLevel::Avx2);
            }
        }
        if best == SimdLevel::Avx512 {
            out.push(SimdLevel::Avx512);
        }
        out
    }
}

/// Scans the packed codes of one inverted list (`len` vectors, `blocks_for(len)` blocks) against
/// quantised table `lut`.
///
/// For every vector `i` whose sum is `<= threshold`, calls `on_candidate(i, sum)`, which returns the
/// (possibly lowered) threshold for the rest of the scan. Vectors past `len` in the last block are
/// never reported.
///
/// # Panics
/// If `codes` or `lut` are shorter than the layout requires for `m` (a caller bug: sizes are
/// validated when an index is built or loaded), or `level` is not supported by this CPU.
pub fn scan_list<F>(
    level: SimdLevel,
    codes: &[u8],
    len: usize,
    m: usize,
    lut: &[u8],
    threshold: u16,
    on_candidate: F,
) where
    F: FnMut(usize, u16) -> u16,
{
    match level {
        SimdLevel::Scalar => ScalarKernel.scan_list(codes, len, m, lut, threshold, on_candidate),
        SimdLevel::Avx2 => Avx2Kernel::new()
            .expect("AVX2 and BMI2 are not supported by this CPU")
            .scan_list(codes, len, m, lut, threshold, on_candidate),
        SimdLevel::Avx512 => Avx512Kernel::new()
            .expect("AVX-512F and AVX-512BW are not supported by this CPU")
            .scan_list(codes, len, m, lut, threshold, on_candidate),
    }
}

/// The fast-scan kernels of one SIMD level, as a type.
///
/// A scan that goes through [`scan_list`] matches on a [`SimdLevel`] and checks the CPU on every
/// call; a value of a `Kernel` type is proof that the CPU runs it (the SIMD ones are only made by
/// constructors that check), so a caller picks one once — per query, say — and calls it per list
/// with nothing left to test, and code generic over `K: Kernel` gets the kernel inlined.
/// Every kernel gives bit-identical results (see the module doc).
pub trait Kernel: Copy {
    /// [`quantize_lut`] at this level.
    fn quantize_lut(self, lut: &[f32], m: usize, out: &mut [u8]) -> (f32, f32);

    /// [`scan_list`] at this level.
    ///
    /// # Panics
    /// If `codes` or `lut` are shorter than the layout requires for `m`.
    fn scan_list<F: FnMut(usize, u16) -> u16>(
        self,
        codes: &[u8],
        len: usize,
        m: usize,
        lut: &[u8],
        threshold: u16,
        on_candidate: F,
    );
}

/// Checks the sizes every kernel relies on (its loads are unchecked); returns `m_pad`.
#[inline]
fn check_scan_sizes(codes: &[u8], len: usize, m: usize, lut: &[u8]) -> usize {
    let m_pad = padded_m(m);
    assert!(
        m_pad <= MAX_SUBSPACES,
        "too many sub-spaces for u16 accumulators"
    );
    assert!(
        codes.len() >= blocks_for(len) * m_pad * 16,
        "codes shorter than the list"
    );
    assert!(lut.len() >= m_pad * 16, "table shorter than the sub-spaces");
    m_pad
}

/// The portable kernels (the reference the others are tested against).
#[derive(Debug, Clone, Copy, Default)]
pub struct ScalarKernel;

impl Kernel for ScalarKernel {
    fn quantize_lut(self, lut: &[f32], m: usize, out: &mut [u8]) -> (f32, f32) {
        check_lut_sizes(lut, m, out);
        quantize_lut_scalar(lut, m, out)
    }

    #[inline]
    fn scan_list<F: FnMut(usize, u16) -> u16>(
        self,
        codes: &[u8],
        len: usize,
        m: usize,
        lut: &[u8],
        threshold: u16,
        on_candidate: F,
    ) {
        let m_pad = check_scan_sizes(codes, len, m, lut);
        scalar::scan_list(codes, len, m_pad, lut, threshold, on_candidate)
    }
}

/// The 256-bit kernels (x86-64 AVX2 + BMI2), table quantisation included.
#[derive(Debug, Clone, Copy)]
pub struct Avx2Kernel(());

impl Avx2Kernel {
    /// The AVX2 kernels, if this CPU runs them.
    pub fn new() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("bmi2") {
            return Some(Avx2Kernel(()));
        }
        None
    }
}

impl Kernel for Avx2Kernel {
    fn quantize_lut(self, lut: &[f32], m: usize, out: &mut [u8]) -> (f32, f32) {
        check_lut_sizes(lut, m, out);
        // SAFETY: a value of this type exists only if the CPU has AVX2 (`new`); sizes checked
        // above.
        #[cfg(target_arch = "x86_64")]
        let scale_bias = unsafe { avx2::quantize_lut(lut, m, out) };
        #[cfg(not(target_arch = "x86_64"))]
        let scale_bias = quantize_lut_scalar(lut, m, out);
        scale_bias
    }

    #[inline]
    fn scan_list<F: FnMut(usize, u16) -> u16>(
        self,
        codes: &[u8],
        len: usize,
        m: usize,
        lut: &[u8],
        threshold: u16,
        on_candidate: F,
    ) {
        let m_pad = check_scan_sizes(codes, len, m, lut);
        // SAFETY: a value of this type exists only if the CPU has AVX2 and BMI2 (`new`); sizes
        // checked above.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            avx2::scan_list(codes, len, m_pad, lut, threshold, on_candidate);
        }
        #[cfg(not(target_arch = "x86_64"))]
        scalar::scan_list(codes, len, m_pad, lut, threshold, on_candidate);
    }
}

/// The 512-bit kernels (x86-64 AVX-512F + AVX-512BW), table quantisation included.
#[derive(Debug, Clone, Copy)]
pub struct Avx512Kernel(());

impl Avx512Kernel {
    /// The AVX-512 kernels, if this CPU runs them.
    pub fn new() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw") {
            return Some(Avx512Kernel(()));
        }
        None
    }
}

impl Kernel for Avx512Kernel {
    fn quantize_lut(self, lut: &[f32], m: usize, out: &mut [u8]) -> (f32, f32) {
        check_lut_sizes(lut, m, out);
        // SAFETY: a value of this type exists only if the CPU has AVX-512F and AVX-512BW
        // (`new`); sizes checked above.
        #[cfg(target_arch = "x86_64")]
        let scale_bias = unsafe { avx512::quantize_lut(lut, m, out) };
        #[cfg(not(target_arch = "x86_64"))]
        let scale_bias = quantize_lut_scalar(lut, m, out);
        scale_bias
    }

    #[inline]
    fn scan_list<F: FnMut(usize, u16) -> u16>(
        self,
        codes: &[u8],
        len: usize,
        m: usize,
        lut: &[u8],
        threshold: u16,
        on_candidate: F,
    ) {
        let m_pad = check_scan_sizes(codes, len, m, lut);
        // SAFETY: a value of this type exists only if the CPU has AVX-512F and AVX-512BW
        // (`new`); sizes checked above.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            avx512::scan_list(codes, len, m_pad, lut, threshold, on_candidate);
        }
        #[cfg(not(target_arch = "x86_64"))]
        scalar::scan_list(codes, len, m_pad, lut, threshold, on_candidate);
    }
}

/// Calls `on_candidate` for each set bit of `mask` (block-relative lanes), keeping the threshold
/// it returns; returns the final threshold.
#[inline(always)]
fn emit<F: FnMut(usize, u16) -> u16>(
    mut mask: u32,
    base: usize,
    sums: &[u16; BLOCK],
    mut threshold: u16,
    on_candidate: &mut F,
) -> u16 {
    while mask != 0 {
        let lane = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        let s = sums[lane];
        if s <= threshold {
            threshold = on_candidate(base + lane, s);
        }
    }
    threshold
}

#[inline(always)]
fn valid_mask(len: usize, base: usize) -> u32 {
    let rem = len - base;
    if rem >= BLOCK {
        u32::MAX
    } else {
        (1u32 << rem) - 1
    }
}

/// Portable reference kernel.
pub mod scalar {
    use super::*;

    /// Sums for the 32 vectors of one block.
    pub fn block_sums(block: &[u8], m_pad: usize, lut: &[u8], out: &mut [u16; BLOCK]) {
        for (i, o) in out.iter_mut().enumerate() {
            let mut s = 0u16;
            for j in 0..m_pad {
                s = s.wrapping_add(lut[j * 16 + unpack_code(block, i, j) as usize] as u16);
            }
            *o = s;
        }
    }

    pub(super) fn scan_list<F: FnMut(usize, u16) -> u16>(
        codes: &[u8],
        len: usize,
        m_pad: usize,
        lut: &[u8],
        mut threshold: u16,
        mut on_candidate: F,
    ) {
        let bb = m_pad * 16;
        let mut sums = [0u16; BLOCK];
        for b in 0..blocks_for(len) {
            block_sums(&codes[b * bb..(b + 1) * bb], m_pad, lut, &mut sums);
            let base = b * BLOCK;
            let mut mask = 0u32;
            for (i, &s) in sums.iter().enumerate() {
                mask |= ((s <= threshold) as u32) << i;
            }
            threshold = emit(
                mask & valid_mask(len, base),
                base,
                &sums,
                threshold,
                &mut on_candidate,
            );
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    /// One 16-entry sub-space table per pair of 256-bit registers; the same operations in the
    /// same order as the scalar quantiser (min and max are exact, so the reductions' order does
    /// not matter), hence the same bytes.
    ///
    /// On hosts without AVX-512 this ran as scalar code, 16–20% of a query's time at nlist 4096
    /// (one table per probed list): the min/max folds do not vectorise.
    ///
    /// # Safety
    /// AVX2 available; `lut.len() == m * 16`, `out.len() == padded_m(m) * 16`, `m <= 256`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn quantize_lut(lut: &[f32], m: usize, out: &mut [u8]) -> (f32, f32) {
        let mut ranges = RowRanges::new();
        let p = lut.as_ptr();
        // SAFETY: every load reads 16 floats of row j < m, inside `lut`; every store writes the
        // 16 bytes of row j < m, inside `out`, or 8 of `ranges.mins`, whose `MAX_SUBSPACES >= m`
        // rows hold them.
        unsafe {
            // Eight rows at a time, their minima and maxima reduced together (as the AVX-512
            // quantiser does sixteen); the bias sums the minima in row order (bit-identical).
            let grouped = m - m % 8;
            let mut widest = _mm256_setzero_ps();
            for g in (0..grouped).step_by(8) {
                let (lo, hi) = min_max_of_8_rows(p.add(g * 16));
                _mm256_storeu_ps(ranges.mins.as_mut_ptr().add(g), lo);
                widest = _mm256_max_ps(widest, _mm256_sub_ps(hi, lo));
            }
            let w4 = _mm_max_ps(
                _mm256_castps256_ps128(widest),
                _mm256_extractf128_ps(widest, 1),
            );
            let w2 = _mm_max_ps(w4, _mm_movehl_ps(w4, w4));
            let widest = _mm_cvtss_f32(_mm_max_ss(w2, _mm_shuffle_ps(w2, w2, 1)));
            ranges.record_stored(grouped, widest);
            for j in grouped..m {
                let a = _mm256_loadu_ps(p.add(j * 16));
                let b = _mm256_loadu_ps(p.add(j * 16 + 8));
                let lo8 = _mm256_min_ps(a, b);
                let hi8 = _mm256_max_ps(a, b);
                let lo4 = _mm_min_ps(_mm256_castps256_ps128(lo8), _mm256_extractf128_ps(lo8, 1));
                let hi4 = _mm_max_ps(_mm256_castps256_ps128(hi8), _mm256_extractf128_ps(hi8, 1));
                let lo2 = _mm_min_ps(lo4, _mm_movehl_ps(lo4, lo4));
                let hi2 = _mm_max_ps(hi4, _mm_movehl_ps(hi4, hi4));
                let lo = _mm_cvtss_f32(_mm_min_ss(lo2, _mm_shuffle_ps(lo2, lo2, 1)));
                let hi = _mm_cvtss_f32(_mm_max_ss(hi2, _mm_shuffle_ps(hi2, hi2, 1)));
                ranges.push(j, lo, hi);
            }
            let scale = ranges.scale();
            let inv = _mm256_set1_ps(1.0 / scale);
            let half = _mm256_set1_ps(0.5);
            let top = _mm256_set1_ps(255.0);
            let o = out.as_mut_ptr();
            for (j, &min) in ranges.mins.iter().enumerate().take(m) {
                let min = _mm256_set1_ps(min);
                // Values are in 0..=255 after the clamp, so the signed conversion is exact and
                // the saturating packs below never saturate. (A macro, not a closure: closures
                // do not inherit `target_feature`, and the intrinsics would become calls.)
                macro_rules! quantize8 {
                    ($row:expr) => {
                        _mm256_cvttps_epi32(_mm256_min_ps(
                            _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps($row, min), inv), half),
                            top,
                        ))
                    };
                }
                let a = quantize8!(_mm256_loadu_ps(p.add(j * 16)));
                let b = quantize8!(_mm256_loadu_ps(p.add(j * 16 + 8)));
                // packus_epi32 interleaves 128-bit lanes: [a0..3 b0..3 | a4..7 b4..7]; put the
                // 64-bit quarters back in order, then narrow to bytes.
                let words = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0b11_01_10_00);
                let bytes = _mm_packus_epi16(
                    _mm256_castsi256_si128(words),
                    _mm256_extracti128_si256(words, 1),
                );
                _mm_storeu_si128(o.add(j * 16) as *mut __m128i, bytes);
            }
            out[m * 16..].fill(0);
            (scale, ranges.bias)
        }
    }

    /// The minimum and the maximum of each of the 8 rows of 16 floats at `p`, row `i` in lane
    /// `i`: each row's halves compared, then pairs of rows merged by 128-bit halves, pairs and
    /// single floats within them, which leaves rows 0, 2, 4, 6 in the low half and 1, 3, 5, 7 in
    /// the high one; one permutation puts them in order.
    ///
    /// # Safety
    /// AVX2 available; `p` points at 128 readable floats.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn min_max_of_8_rows(p: *const f32) -> (__m256, __m256) {
        // SAFETY: the caller guarantees 8 rows of 16 floats at `p`.
        unsafe {
            let mut lo8 = [_mm256_setzero_ps(); 8];
            let mut hi8 = [_mm256_setzero_ps(); 8];
            for r in 0..8 {
                let a = _mm256_loadu_ps(p.add(r * 16));
                let b = _mm256_loadu_ps(p.add(r * 16 + 8));
                lo8[r] = _mm256_min_ps(a, b);
                hi8[r] = _mm256_max_ps(a, b);
            }
            macro_rules! tree {
                ($v:expr, $op:ident) => {{
                    let v = $v;
                    // Rows 2k and 2k + 1, four floats each, in the two halves.
                    let mut pairs = [_mm256_setzero_ps(); 4];
                    for k in 0..4 {
                        pairs[k] = $op(
                            _mm256_permute2f128_ps::<0x20>(v[2 * k], v[2 * k + 1]),
                            _mm256_permute2f128_ps::<0x31>(v[2 * k], v[2 * k + 1]),
                        );
                    }
                    let c = $op(
                        _mm256_shuffle_ps::<0b01_00_01_00>(pairs[0], pairs[1]),
                        _mm256_shuffle_ps::<0b11_10_11_10>(pairs[0], pairs[1]),
                    );
                    let d = $op(
                        _mm256_shuffle_ps::<0b01_00_01_00>(pairs[2], pairs[3]),
                        _mm256_shuffle_ps::<0b11_10_11_10>(pairs[2], pairs[3]),
                    );
                    $op(
                        _mm256_shuffle_ps::<0b10_00_10_00>(c, d),
                        _mm256_shuffle_ps::<0b11_01_11_01>(c, d),
                    )
                }};
            }
            // Row r sits in half r % 2, place r / 2.
            let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
            (
                _mm256_permutevar8x32_ps(tree!(lo8, _mm256_min_ps), order),
                _mm256_permutevar8x32_ps(tree!(hi8, _mm256_max_ps), order),
            )
        }
    }

    /// Sums of one block into `out`; returns the lanes whose sum is `<= threshold`.
    ///
    /// # Safety
    /// AVX2 and BMI2 available; `block` and `lut` hold `m_pad * 16` bytes, `m_pad % 4 == 0`.
    #[target_feature(enable = "avx2,bmi2")]
    #[inline]
    pub unsafe fn block(
        block: *const u8,
        m_pad: usize,
        lut: *const u8,
        threshold: u16,
        out: &mut [u16; BLOCK],
    ) -> u32 {
        unsafe {
            let low = _mm256_set1_epi8(0x0f);
            let mut a = _mm256_setzero_si256();
            let mut ao = _mm256_setzero_si256();
            let mut b = _mm256_setzero_si256();
            let mut bo = _mm256_setzero_si256();
            let mut p = 0;
            while p < m_pad * 16 {
                let c = _mm256_loadu_si256(block.add(p) as *const __m256i);
                let l = _mm256_loadu_si256(lut.add(p) as *const __m256i);
                let ra = _mm256_shuffle_epi8(l, _mm256_and_si256(c, low));
                let rb = _mm256_shuffle_epi8(l, _mm256_and_si256(_mm256_srli_epi16(c, 4), low));
                a = _mm256_add_epi16(a, ra);
                ao = _mm256_add_epi16(ao, _mm256_srli_epi16(ra, 8));
                b = _mm256_add_epi16(b, rb);
                bo = _mm256_add_epi16(bo, _mm256_srli_epi16(rb, 8));
                p += 32;
            }
            let t = _mm256_set1_epi16(threshold as i16);
            let mut mask = 0u32;
            for (half, (acc, odd)) in [(a, ao), (b, bo)].into_iter().enumerate() {
                let even = _mm256_sub_epi16(acc, _mm256_slli_epi16(odd, 8));
                let e = _mm_add_epi16(
                    _mm256_castsi256_si128(even),
                    _mm256_extracti128_si256(even, 1),
                );
                let o = _mm_add_epi16(
                    _mm256_castsi256_si128(odd),
                    _mm256_extracti128_si256(odd, 1),
                );
                let lo = _mm_unpacklo_epi16(e, o);
                let hi = _mm_unpackhi_epi16(e, o);
                let v = _mm256_set_m128i(hi, lo);
                _mm256_storeu_si256(out.as_mut_ptr().add(half * 16) as *mut __m256i, v);
                let le = _mm256_cmpeq_epi16(_mm256_min_epu16(v, t), v);
                let bits = _pext_u32(_mm256_movemask_epi8(le) as u32, 0x5555_5555);
                mask |= bits << (half * 16);
            }
            mask
        }
    }

    /// # Safety
    /// AVX2 and BMI2 available; sizes as checked by [`super::scan_list`].
    #[target_feature(enable = "avx2,bmi2")]
    pub unsafe fn scan_list<F: FnMut(usize, u16) -> u16>(
        codes: &[u8],
        len: usize,
        m_pad: usize,
        lut: &[u8],
        mut threshold: u16,
        mut on_candidate: F,
    ) {
        let bb = m_pad * 16;
        let mut sums = [0u16; BLOCK];
        for b in 0..blocks_for(len) {
            // SAFETY: block b lies inside `codes` (checked by the caller).
            let mask = unsafe {
                block(
                    codes.as_ptr().add(b * bb),
                    m_pad,
                    lut.as_ptr(),
                    threshold,
                    &mut sums,
                )
            };
            let base = b * BLOCK;
            let mask = mask & valid_mask(len, base);
            if mask != 0 {
                threshold = emit(mask, base, &sums, threshold, &mut on_candidate);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::*;
    use std::arch::x86_64::*;

    /// One 16-entry sub-space table per 512-bit register.
    ///
    /// # Safety
    /// AVX-512F/BW available; `lut.len() == m * 16`, `out.len() == padded_m(m) * 16`, `m <= 256`.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn quantize_lut(lut: &[f32], m: usize, out: &mut [u8]) -> (f32, f32) {
        let mut ranges = RowRanges::new();
        let p = lut.as_ptr();
        // SAFETY: every load reads 16 floats of row j < m, inside `lut`; every store of minima
        // writes 16 of `ranges.mins`, whose `MAX_SUBSPACES >= m` rows hold them.
        unsafe {
            // Sixteen rows at a time, each row's minimum and maximum reduced together with the
            // others' (four shuffle-and-compare levels for sixteen rows instead of four per row:
            // one reduction per row was most of this function, itself up to a quarter of an L2
            // query at nprobe 64, where every probed list quantises its own table).
            let grouped = m - m % 16;
            let mut widest = _mm512_setzero_ps();
            for g in (0..grouped).step_by(16) {
                let (lo, hi) = min_max_of_16_rows(p.add(g * 16));
                _mm512_storeu_ps(ranges.mins.as_mut_ptr().add(g), lo);
                widest = _mm512_max_ps(widest, _mm512_sub_ps(hi, lo));
            }
            ranges.record_stored(grouped, _mm512_reduce_max_ps(widest));
            for j in grouped..m {
                let row = _mm512_loadu_ps(p.add(j * 16));
                ranges.push(j, _mm512_reduce_min_ps(row), _mm512_reduce_max_ps(row));
            }
            let scale = ranges.scale();
            let inv = _mm512_set1_ps(1.0 / scale);
            let half = _mm512_set1_ps(0.5);
            let top = _mm512_set1_ps(255.0);
            for (j, &min) in ranges.mins.iter().enumerate().take(m) {
                let row = _mm512_loadu_ps(p.add(j * 16));
                let v = _mm512_min_ps(
                    _mm512_add_ps(
                        _mm512_mul_ps(_mm512_sub_ps(row, _mm512_set1_ps(min)), inv),
                        half,
                    ),
                    top,
                );
                let bytes = _mm512_cvtepi32_epi8(_mm512_cvttps_epu32(v));
                _mm_storeu_si128(out.as_mut_ptr().add(j * 16) as *mut __m128i, bytes);
            }
            out[m * 16..].fill(0);
            (scale, ranges.bias)
        }
    }

    /// The minimum and the maximum of each of the 16 rows of 16 floats at `p`, row `i` in lane
    /// `i`: pairs of rows merged by halves, then quarters, then pairs and single floats within
    /// 128-bit lanes, which leaves rows `i`, `i + 4`, `i + 8` and `i + 12` in lane `i`; one
    /// permutation puts them in order.
    ///
    /// # Safety
    /// AVX-512F available; `p` points at 256 readable floats.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn min_max_of_16_rows(p: *const f32) -> (__m512, __m512) {
        // SAFETY: the caller guarantees 16 rows of 16 floats at `p`.
        unsafe {
            macro_rules! row {
                ($i:expr) => {
                    _mm512_loadu_ps(p.add($i * 16))
                };
            }
            // Level 1: rows 2k and 2k + 1 in one vector, each row's 16 floats folded to 8
            // (its 128-bit quarters 0-1 against 2-3).
            let mut lo8 = [_mm512_setzero_ps(); 8];
            let mut hi8 = [_mm512_setzero_ps(); 8];
            for k in 0..8 {
                let (a, b) = (row!(2 * k), row!(2 * k + 1));
                let x = _mm512_shuffle_f32x4::<0b01_00_01_00>(a, b);
                let y = _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b);
                lo8[k] = _mm512_min_ps(x, y);
                hi8[k] = _mm512_max_ps(x, y);
            }
            // Level 2: four rows in one vector, one 128-bit lane (4 floats) each.
            macro_rules! level2 {
                ($v:expr, $op:ident) => {{
                    let v = $v;
                    let mut out = [_mm512_setzero_ps(); 4];
                    for k in 0..4 {
                        let x = _mm512_shuffle_f32x4::<0b10_00_10_00>(v[2 * k], v[2 * k + 1]);
                        let y = _mm512_shuffle_f32x4::<0b11_01_11_01>(v[2 * k], v[2 * k + 1]);
                        out[k] = $op(x, y);
                    }
                    out
                }};
            }
            // Levels 3 and 4 within 128-bit lanes: lane i ends with rows i, i + 4, i + 8 and
            // i + 12.
            macro_rules! levels34 {
                ($v:expr, $op:ident) => {{
                    let v = $v;
                    let c = $op(
                        _mm512_shuffle_ps::<0b01_00_01_00>(v[0], v[1]),
                        _mm512_shuffle_ps::<0b11_10_11_10>(v[0], v[1]),
                    );
                    let d = $op(
                        _mm512_shuffle_ps::<0b01_00_01_00>(v[2], v[3]),
                        _mm512_shuffle_ps::<0b11_10_11_10>(v[2], v[3]),
                    );
                    $op(
                        _mm512_shuffle_ps::<0b10_00_10_00>(c, d),
                        _mm512_shuffle_ps::<0b11_01_11_01>(c, d),
                    )
                }};
            }
            let lo = levels34!(level2!(lo8, _mm512_min_ps), _mm512_min_ps);
            let hi = levels34!(level2!(hi8, _mm512_max_ps), _mm512_max_ps);
            // Row r sits at lane r % 4, place r / 4.
            let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
            (
                _mm512_permutexvar_ps(order, lo),
                _mm512_permutexvar_ps(order, hi),
            )
        }
    }

    /// Sums of one block into `out`; returns the lanes whose sum is `<= threshold`.
    ///
    /// # Safety
    /// AVX-512F/BW available; `block` and `lut` hold `m_pad * 16` bytes, `m_pad % 4 == 0`.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    pub unsafe fn block(
        block: *const u8,
        m_pad: usize,
        lut: *const u8,
        threshold: u16,
        out: &mut [u16; BLOCK],
    ) -> u32 {
        unsafe {
            let low = _mm512_set1_epi8(0x0f);
            let mut a = _mm512_setzero_si512();
            let mut ao = _mm512_setzero_si512();
            let mut b = _mm512_setzero_si512();
            let mut bo = _mm512_setzero_si512();
            let mut p = 0;
            while p < m_pad * 16 {
                let c = _mm512_loadu_si512(block.add(p) as *const __m512i);
                let l = _mm512_loadu_si512(lut.add(p) as *const __m512i);
                let ra = _mm512_shuffle_epi8(l, _mm512_and_si512(c, low));
                let rb = _mm512_shuffle_epi8(l, _mm512_and_si512(_mm512_srli_epi16(c, 4), low));
                a = _mm512_add_epi16(a, ra);
                ao = _mm512_add_epi16(ao, _mm512_srli_epi16(ra, 8));
                b = _mm512_add_epi16(b, rb);
                bo = _mm512_add_epi16(bo, _mm512_srli_epi16(rb, 8));
                p += 64;
            }
            let mut parts = [_mm_setzero_si128(); 4];
            for (half, (acc, odd)) in [(a, ao), (b, bo)].into_iter().enumerate() {
                let even = _mm512_sub_epi16(acc, _mm512_slli_epi16(odd, 8));
                let e = _mm_add_epi16(
                    _mm_add_epi16(
                        _mm512_extracti32x4_epi32(even, 0),
                        _mm512_extracti32x4_epi32(even, 1),
                    ),
                    _mm_add_epi16(
                        _mm512_extracti32x4_epi32(even, 2),
                        _mm512_extracti32x4_epi32(even, 3),
                    ),
                );
                let o = _mm_add_epi16(
                    _mm_add_epi16(
                        _mm512_extracti32x4_epi32(odd, 0),
                        _mm512_extracti32x4_epi32(odd, 1),
                    ),
                    _mm_add_epi16(
                        _mm512_extracti32x4_epi32(odd, 2),
                        _mm512_extracti32x4_epi32(odd, 3),
                    ),
                );
                parts[half * 2] = _mm_unpacklo_epi16(e, o);
                parts[half * 2 + 1] = _mm_unpackhi_epi16(e, o);
            }
            let v = _mm512_inserti32x4(
                _mm512_inserti32x4(
                    _mm512_inserti32x4(_mm512_castsi128_si512(parts[0]), parts[1], 1),
                    parts[2],
                    2,
                ),
                parts[3],
                3,
            );
            _mm512_storeu_si512(out.as_mut_ptr() as *mut __m512i, v);
            _mm512_cmple_epu16_mask(v, _mm512_set1_epi16(threshold as i16))
        }
    }

    /// # Safety
    /// AVX-512F/BW available; sizes as checked by [`super::scan_list`].
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn scan_list<F: FnMut(usize, u16) -> u16>(
        codes: &[u8],
        len: usize,
        m_pad: usize,
        lut: &[u8],
        mut threshold: u16,
        mut on_candidate: F,
    ) {
        let bb = m_pad * 16;
        let mut sums = [0u16; BLOCK];
        for b in 0..blocks_for(len) {
            // SAFETY: block b lies inside `codes` (checked by the caller).
            let mask = unsafe {
                block(
                    codes.as_ptr().add(b * bb),
                    m_pad,
                    lut.as_ptr(),
                    threshold,
                    &mut sums,
                )
            };
            let base = b * BLOCK;
            let mask = mask & valid_mask(len, base);
            if mask != 0 {
                threshold = emit(mask, base, &sums, threshold, &mut on_candidate);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_codes(rng: &mut ChaCha8Rng, n: usize, m: usize) -> Vec<u8> {
        (0..n * m).map(|_| rng.random_range(0..16u8)).collect()
    }

    /// Every (vector, sum) pair reported with an unreachable threshold, in order.
    fn all_sums(
        level: SimdLevel,
        packed: &[u8],
        n: usize,
        m: usize,
        lut: &[u8],
    ) -> Vec<(usize, u16)> {
        let mut got = Vec::new();
        scan_list(level, packed, n, m, lut, u16::MAX, |i, s| {
            got.push((i, s));
            u16::MAX
        });
        got
    }

    #[test]
    fn pack_then_unpack_round_trips() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for (n, m) in [(1, 1), (31, 3), (32, 4), (33, 7), (100, 16)] {
            let codes = random_codes(&mut rng, n, m);
            let mut packed = Vec::new();
            pack_codes(&codes, m, &mut packed);
            assert_eq!(packed.len(), blocks_for(n) * block_bytes(m));
            for v in 0..n {
                let block = &packed[(v / BLOCK) * block_bytes(m)..];
                for j in 0..m {
                    assert_eq!(unpack_code(block, v % BLOCK, j), codes[v * m + j]);
                }
            }
        }
    }

    #[test]
    fn every_level_matches_the_direct_sum() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for &m in &[1usize, 4, 8, 13, 16, 32, 64, 96, 192, 256] {
            for &n in &[0usize, 1, 5, 31, 32, 33, 64, 95, 200] {
                let codes = random_codes(&mut rng, n, m);
                let mut packed = Vec::new();
                pack_codes(&codes, m, &mut packed);
                let mut lut = vec![0u8; padded_m(m) * 16];
                for (j, e) in lut.iter_mut().enumerate() {
                    // Mostly random, with saturated sub-spaces to exercise the top of the range.
                    // Padding sub-spaces keep a zero table, as `quantize_lut` leaves them.
                    *e = if j >= m * 16 {
                        0
                    } else if j / 16 % 5 == 0 {
                        255
                    } else {
                        rng.random()
                    };
                }
                let expect: Vec<(usize, u16)> = (0..n)
                    .map(|v| {
                        (
                            v,
                            (0..m)
                                .map(|j| lut[j * 16 + codes[v * m + j] as usize] as u16)
                                .sum::<u16>(),
                        )
                    })
                    .collect();
                for level in SimdLevel::available() {
                    assert_eq!(
                        all_sums(level, &packed, n, m, &lut),
                        expect,
                        "level {level:?} m {m} n {n}"
                    );
                }
            }
        }
    }

    #[test]
    fn threshold_prunes_identically_on_every_level() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (n, m) = (1000, 32);
        let codes = random_codes(&mut rng, n, m);
        let mut packed = Vec::new();
        pack_codes(&codes, m, &mut packed);
        let lut: Vec<u8> = (0..padded_m(m) * 16).map(|_| rng.random()).collect();
        let mut reference = None;
        for level in SimdLevel::available() {
            // Keep the 10 smallest sums, lowering the threshold as a top-k would.
            let mut best: Vec<u16> = Vec::new();
            let mut seen = Vec::new();
            scan_list(level, &packed, n, m, &lut, 5000, |i, s| {
                seen.push((i, s));
                best.push(s);
                best.sort_unstable();
                best.truncate(10);
                if best.len() == 10 { best[9] } else { 5000 }
            });
            assert!(seen.iter().all(|&(_, s)| s <= 5000));
            match &reference {
                None => reference = Some(seen),
                Some(r) => assert_eq!(r, &seen, "level {level:?}"),
            }
        }
    }

    #[test]
    fn quantized_lut_approximates_float_sums() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let m = 16;
        let lut: Vec<f32> = (0..m * 16)
            .map(|_| rng.random_range(-3.0..5.0f32))
            .collect();
        let mut q = vec![0u8; padded_m(m) * 16];
        let (scale, bias) = quantize_lut(&lut, m, &mut q);
        for _ in 0..100 {
            let code: Vec<usize> = (0..m).map(|_| rng.random_range(0..16)).collect();
            let exact: f32 = (0..m).map(|j| lut[j * 16 + code[j]]).sum();
            let acc: u16 = (0..m).map(|j| q[j * 16 + code[j]] as u16).sum();
            let approx = bias + scale * acc as f32;
            // Each entry is off by at most half a step.
            assert!(
                (approx - exact).abs() <= scale * 0.5 * m as f32 + 1e-4,
                "{approx} vs {exact}"
            );
            assert!(acc <= u16_threshold(exact + scale * 0.5 * m as f32 + 1e-3, scale, bias));
        }
        assert_eq!(u16_threshold(f32::INFINITY, scale, bias), u16::MAX);
        for level in SimdLevel::available() {
            for m in [1usize, 5, 8, 16, 37, 64, 192] {
                let lut: Vec<f32> = (0..m * 16)
                    .map(|_| rng.random_range(-30.0..50.0f32))
                    .collect();
                let mut a = vec![0u8; padded_m(m) * 16];
                let mut b = vec![1u8; padded_m(m) * 16];
                let ra = quantize_lut_scalar(&lut, m, &mut a);
                let rb = quantize_lut_with(level, &lut, m, &mut b);
                assert_eq!((ra, &a), (rb, &b), "{level:?} m {m}");
            }
        }
        assert_eq!(u16_threshold(bias - 1.0, scale, bias), 0);
    }

    #[test]
    fn empty_list_reports_nothing() {
        for level in SimdLevel::available() {
            assert!(all_sums(level, &[], 0, 8, &[0u8; 128]).is_empty());
        }
    }
}
