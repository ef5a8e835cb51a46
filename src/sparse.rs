//! Sparse views of a minibatch of X. MNIST pixels are ~81% zeros, so the
//! products with X skip them: a minibatch is scanned once into compressed
//! rows (CSR) and, where a kernel walks X by columns, compressed columns
//! (CSC). A zero contributes nothing to a sum, so skipping it changes no
//! result — except that `0 · inf` and `0 · NaN` in the weights are not
//! turned into NaN.

use crate::simd::{Isa, LANES};

/// Non-zero entries of some rows of X within consecutive column ranges
/// (segments), row by row and segment by segment. Column indices are
/// relative to the segment's start.
pub(crate) struct Csr {
    /// Entry index where (row, segment) starts, row-major; one extra at the end.
    start: Vec<usize>,
    segments: usize,
    col: Vec<u32>,
    val: Vec<f32>,
}

impl Csr {
    /// Room for `rows` rows of `cols` columns.
    pub fn new(rows: usize, cols: usize) -> Self {
        let room = rows * cols + LANES;
        Csr {
            start: Vec::with_capacity(rows + 1),
            segments: 1,
            col: vec![0; room],
            val: vec![0.0; room],
        }
    }

    /// Scans rows `x` (row-major, `n` columns each) over the consecutive
    /// column ranges `segments`, reading each row front to back so that
    /// memory is streamed.
    ///
    /// `next` (the rows the following call will scan, possibly empty) is
    /// prefetched row by row meanwhile, so that reading X from memory
    /// overlaps the work on this minibatch.
    #[inline(always)]
    pub fn fill<I: Isa>(
        &mut self,
        x: &[f32],
        next: &[f32],
        n: usize,
        segments: &[std::ops::Range<usize>],
    ) {
        let rows = x.len() / n;
        let width: usize = segments.iter().map(|s| s.len()).sum();
        let need = rows * width + LANES;
        if self.col.len() < need {
            self.col.resize(need, 0);
            self.val.resize(need, 0.0);
        }
        self.segments = segments.len();
        self.start.clear();
        let mut pos = 0;
        let mut upcoming = next.chunks_exact(n);
        for row in x.chunks_exact(n) {
            if let Some(next_row) = upcoming.next() {
                for seg in segments {
                    prefetch(&next_row[seg.clone()]);
                }
            }
            for seg in segments {
                self.start.push(pos);
                pos += scan::<I>(
                    &row[seg.clone()],
                    &mut self.col[pos..],
                    &mut self.val[pos..],
                );
            }
        }
        self.start.push(pos);
    }

    pub fn rows(&self) -> usize {
        (self.start.len() - 1) / self.segments
    }

    /// Columns and values of row `i` in segment `s`.
    #[inline(always)]
    pub fn segment(&self, i: usize, s: usize) -> (&[u32], &[f32]) {
        let at = i * self.segments + s;
        let (a, b) = (self.start[at], self.start[at + 1]);
        (&self.col[a..b], &self.val[a..b])
    }

    /// Columns and values of row `i` (of a one-segment scan).
    #[inline(always)]
    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        debug_assert_eq!(self.segments, 1);
        self.segment(i, 0)
    }
}

/// The same entries column by column.
pub(crate) struct Csc {
    start: Vec<usize>,
    row: Vec<u32>,
    val: Vec<f32>,
}

impl Csc {
    pub fn new() -> Self {
        Csc {
            start: Vec::new(),
            row: Vec::new(),
            val: Vec::new(),
        }
    }

    /// Transposes `csr` (whose column range is `cols` wide).
    #[inline(always)]
    pub fn fill_from(&mut self, csr: &Csr, cols: usize) {
        let nnz = *csr.start.last().expect("filled");
        self.start.clear();
        self.start.resize(cols + 1, 0);
        for &c in &csr.col[..nnz] {
            self.start[c as usize + 1] += 1;
        }
        for c in 0..cols {
            self.start[c + 1] += self.start[c];
        }
        self.row.resize(nnz, 0);
        self.val.resize(nnz, 0.0);
        // `start[c]` serves as the insertion point of column c while filling,
        // and is restored afterwards.
        for i in 0..csr.rows() {
            let (cols_i, vals_i) = csr.row(i);
            for (&c, &v) in cols_i.iter().zip(vals_i) {
                let slot = &mut self.start[c as usize];
                self.row[*slot] = i as u32;
                self.val[*slot] = v;
                *slot += 1;
            }
        }
        for c in (1..=cols).rev() {
            self.start[c] = self.start[c - 1];
        }
        self.start[0] = 0;
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.start.len().saturating_sub(1)
    }

    /// Rows and values of column `j`.
    #[inline(always)]
    pub fn col(&self, j: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.start[j], self.start[j + 1]);
        (&self.row[a..b], &self.val[a..b])
    }
}

/// Asks the CPU to start loading the cache line at the start of `data`
/// (which must not be empty) into L2 cache.
#[inline(always)]
pub(crate) fn prefetch_line(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    hint::<{ std::arch::x86_64::_MM_HINT_T1 }>(data);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// Asks the CPU to start loading `data` into L1 cache.
#[inline(always)]
pub(crate) fn prefetch(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in data.chunks(LANES) {
        hint::<{ std::arch::x86_64::_MM_HINT_T0 }>(line);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// A prefetch of the line at the start of `line` with the given hint.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(unsafe_code)] // a prefetch hint: reads nothing, cannot fault
fn hint<const HINT: i32>(line: &[f32]) {
    // SAFETY: a prefetch is only a hint; the address is inside `line`.
    unsafe { std::arch::x86_64::_mm_prefetch::<HINT>(line.as_ptr().cast()) };
}

/// Writes the positions and values of the non-zeros of `row` to the front
/// of `col` and `val` (each at least `row.len() + LANES` long); returns how
/// many there are. NaN counts as non-zero.
#[inline(always)]
#[allow(unsafe_code)] // the AVX-512 scan, after detection
fn scan<I: Isa>(row: &[f32], col: &mut [u32], val: &mut [f32]) -> usize {
    assert!(col.len() >= row.len() + LANES && val.len() >= row.len() + LANES);
    #[cfg(target_arch = "x86_64")]
    if I::AVX512 {
        // SAFETY: I::AVX512 is true only for the `Avx512` instantiation,
        // which `multiversion!` runs only after detecting AVX-512; the
        // lengths were checked above.
        return unsafe { scan_avx512(row, col, val) };
    }
    let mut pos = 0;
    for (c, chunk) in row.chunks(LANES).enumerate() {
        let mut mask = 0u32;
        for (l, &v) in chunk.iter().enumerate() {
            mask |= u32::from(v != 0.0) << l;
        }
        while mask != 0 {
            let l = mask.trailing_zeros() as usize;
            col[pos] = (c * LANES + l) as u32;
            val[pos] = chunk[l];
            pos += 1;
            mask &= mask - 1;
        }
    }
    pos
}

/// `scan` with AVX-512 compress: 16 pixels a step, no branches on the data.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(unsafe_code)] // raw loads and stores of 16 lanes, bounds checked by the caller
unsafe fn scan_avx512(row: &[f32], col: &mut [u32], val: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let zero = _mm512_setzero_ps();
    let step = _mm512_set1_epi32(LANES as i32);
    let mut index = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let mut pos = 0usize;
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        // SAFETY: `chunk` holds 16 floats; pos + 16 <= row.len() + LANES
        // <= col.len(), val.len() because pos never exceeds the pixels read.
        unsafe {
            let v = _mm512_loadu_ps(chunk.as_ptr());
            let mask = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(v, zero);
            _mm512_storeu_ps(val.as_mut_ptr().add(pos), _mm512_maskz_compress_ps(mask, v));
            _mm512_storeu_si512(
                col.as_mut_ptr().add(pos).cast(),
                _mm512_maskz_compress_epi32(mask, index),
            );
            pos += mask.count_ones() as usize;
        }
        index = _mm512_add_epi32(index, step);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let live: __mmask16 = (1u32 << tail.len()) as u16 - 1;
        // SAFETY: the masked load reads only the `tail.len()` floats of the
        // tail; the stores stay within pos + 16 as above.
        unsafe {
            let v = _mm512_maskz_loadu_ps(live, tail.as_ptr());
            let mask = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(v, zero) & live;
            _mm512_storeu_ps(val.as_mut_ptr().add(pos), _mm512_maskz_compress_ps(mask, v));
            _mm512_storeu_si512(
                col.as_mut_ptr().add(pos).cast(),
                _mm512_maskz_compress_epi32(mask, index),
            );
            pos += mask.count_ones() as usize;
        }
    }
    pos
}
