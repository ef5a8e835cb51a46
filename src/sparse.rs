//! Sparse views of a minibatch of X. MNIST pixels are ~81% zeros, so the
//! products with X skip them: a minibatch is scanned once into compressed
//! columns (CSC), which the kernels walk column by column. A zero
//! contributes nothing to a sum, so skipping it changes no result — except
//! that `0 · inf` and `0 · NaN` in the weights are not turned into NaN.

use std::ops::Range;

use crate::simd::{Isa, LANES};

/// The non-zero entries of some rows of X within a range of its columns,
/// column by column, each column's rows in ascending order.
pub(crate) struct Csc {
    /// Entry index where each column starts; one extra at the end.
    start: Vec<usize>,
    /// Room for every entry plus one vector of slack; only the first
    /// `start[cols]` are entries.
    row: Vec<u32>,
    val: Vec<f32>,
    /// 16 columns of the rows being scanned, column-major (see [`scan_chunk`]).
    columns: Vec<f32>,
}

impl Csc {
    pub fn new() -> Self {
        Csc {
            start: Vec::new(),
            row: Vec::new(),
            val: Vec::new(),
            columns: Vec::new(),
        }
    }

    /// Scans columns `cols` of the rows `x` (row-major, `n` columns each)
    /// into compressed columns, 16 columns at a time, so that each line of X
    /// is read once (see [`Prefetcher`] for bringing it into cache first).
    #[inline(always)]
    pub fn fill<I: Isa>(&mut self, x: &[f32], n: usize, cols: Range<usize>) {
        let rows = x.len() / n;
        let need = rows * cols.len() + LANES;
        if self.row.len() < need {
            self.row.resize(need, 0);
            self.val.resize(need, 0.0);
        }
        self.columns
            .resize(LANES * rows.next_multiple_of(LANES), 0.0);
        self.start.clear();
        self.start.push(0);
        let mut pos = 0;
        for c0 in cols.clone().step_by(LANES) {
            let width = LANES.min(cols.end - c0);
            let mut counts = [0; LANES];
            scan_chunk::<I>(
                (x, n, c0..c0 + width),
                &mut self.columns,
                &mut self.row[pos..],
                &mut self.val[pos..],
                &mut counts,
            );
            for &count in &counts[..width] {
                pos += count;
                self.start.push(pos);
            }
        }
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

/// Prefetches a block of X — columns `cols` of rows `rows` — into L2 cache
/// a few lines at a time, row after row, so that the loads can be spread
/// over the work on the previous block and X streams from memory while
/// the cores compute.
pub(crate) struct Prefetcher {
    n: usize,
    cols: Range<usize>,
    /// The next line: its row and its first column.
    row: usize,
    col: usize,
    end: usize,
    /// Lines per [`Prefetcher::step`].
    quota: usize,
}

impl Prefetcher {
    /// Nothing to prefetch.
    pub fn none() -> Self {
        Prefetcher {
            n: 1,
            cols: 0..0,
            row: 0,
            col: 0,
            end: 0,
            quota: 0,
        }
    }

    /// Starts on columns `cols` of rows `rows` of a row-major X of `n` columns.
    pub fn new(n: usize, rows: Range<usize>, cols: Range<usize>) -> Self {
        Prefetcher {
            n,
            col: cols.start,
            row: if cols.is_empty() {
                rows.end
            } else {
                rows.start
            },
            end: rows.end,
            cols,
            quota: 0,
        }
    }

    /// Sets the quota per [`Prefetcher::step`] so that `steps` steps
    /// prefetch every line.
    pub fn spread_over(&mut self, steps: usize) {
        self.quota = self.lines_left().div_ceil(steps.max(1));
    }

    /// Prefetches the quota of lines of `x` (the whole X).
    #[inline(always)]
    pub fn step(&mut self, x: &[f32]) {
        self.issue(x, self.quota);
    }

    /// How many lines are left (counting 16 floats as a line).
    pub fn lines_left(&self) -> usize {
        let per_row = self.cols.len().div_ceil(LANES);
        let this_row = (self.cols.end.saturating_sub(self.col)).div_ceil(LANES);
        match self.end.checked_sub(self.row) {
            None | Some(0) => 0,
            Some(rows) => this_row + (rows - 1) * per_row,
        }
    }

    /// Prefetches the next `lines` lines of `x` (the whole X).
    #[inline(always)]
    pub fn issue(&mut self, x: &[f32], lines: usize) {
        for _ in 0..lines {
            if self.row >= self.end {
                return;
            }
            if let Some(line) = x
                .get(self.row * self.n + self.col..)
                .filter(|l| !l.is_empty())
            {
                prefetch_line(line);
            }
            self.col += LANES;
            if self.col >= self.cols.end {
                self.col = self.cols.start;
                self.row += 1;
            }
        }
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

/// A prefetch of the line at the start of `line` with the given hint.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(unsafe_code)] // a prefetch hint: reads nothing, cannot fault
fn hint<const HINT: i32>(line: &[f32]) {
    // SAFETY: a prefetch is only a hint; the address is inside `line`.
    unsafe { std::arch::x86_64::_mm_prefetch::<HINT>(line.as_ptr().cast()) };
}

/// Writes the rows and values of the non-zeros of columns `cols` (at most
/// 16) of `x` (row-major, `n` columns) to the front of `row` and `val`,
/// column after column, each column's rows in ascending order, and each
/// column's count to `counts`. `row` and `val` must hold the rows times the
/// columns plus 16; `columns` 16 times the rows rounded up to 16. NaN counts
/// as non-zero.
#[inline(always)]
#[allow(unsafe_code)] // the AVX-512 scan, after detection
fn scan_chunk<I: Isa>(
    (x, n, cols): (&[f32], usize, Range<usize>),
    columns: &mut [f32],
    row: &mut [u32],
    val: &mut [f32],
    counts: &mut [usize; LANES],
) {
    let rows = x.len() / n;
    let width = cols.len();
    assert!(width <= LANES && cols.end <= n);
    assert!(row.len() >= rows * width + LANES && val.len() >= rows * width + LANES);
    assert!(columns.len() >= LANES * rows.next_multiple_of(LANES));
    #[cfg(target_arch = "x86_64")]
    if I::AVX512 {
        // SAFETY: I::AVX512 is true only for the `Avx512` instantiation,
        // which `multiversion!` runs only after detecting AVX-512 and
        // POPCNT (see `simd::detect`); the lengths were checked above.
        return unsafe { scan_chunk_avx512((x, n, cols), columns, row, val, counts) };
    }
    let _ = columns;
    // Branch-free: every value is written, and the position moves past it
    // only if it is not zero (the slot after the last entry is slack).
    let mut pos = 0;
    for (count, col) in counts.iter_mut().zip(cols) {
        let first = pos;
        for (i, r) in x.chunks_exact(n).enumerate() {
            let v = r[col];
            row[pos] = i as u32;
            val[pos] = v;
            pos += usize::from(v != 0.0);
        }
        *count = pos - first;
    }
}

/// `scan_chunk` with AVX-512: blocks of 16 rows are loaded and transposed
/// in registers into `columns` (column-major, rows padded with zeros to a
/// multiple of 16), then each column is compared with zero 16 rows a step
/// and its non-zeros compressed out; no branches on the data.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,popcnt")]
#[allow(unsafe_code)] // raw loads and stores of 16 lanes, bounds checked by the caller
unsafe fn scan_chunk_avx512(
    (x, n, cols): (&[f32], usize, Range<usize>),
    columns: &mut [f32],
    row: &mut [u32],
    val: &mut [f32],
    counts: &mut [usize; LANES],
) {
    use std::arch::x86_64::*;
    let rows = x.len() / n;
    let padded = rows.next_multiple_of(LANES);
    let width = cols.len();
    let in_row: __mmask16 = ((1u32 << width) - 1) as u16;
    let zero = _mm512_setzero_ps();
    for g in (0..rows).step_by(LANES) {
        // SAFETY: called below only for rows g + i < rows; the masked load
        // reads only its `width` floats from column cols.start, inside the
        // row.
        let load = |i: usize| unsafe {
            _mm512_maskz_loadu_ps(in_row, x.as_ptr().add((g + i) * n + cols.start))
        };
        // A whole block of 16 rows goes straight into registers; a loop that
        // could stop early kept the block on the stack (zeroed, stored and
        // reloaded): network epochs 3–4% slower on AMD Zen 4.
        let block: [__m512; LANES] = if g + LANES <= rows {
            std::array::from_fn(load)
        } else {
            std::array::from_fn(|i| if g + i < rows { load(i) } else { zero })
        };
        for (l, column) in transpose(block).into_iter().enumerate() {
            // SAFETY: l * padded + g + 16 <= 16 * padded <= columns.len().
            unsafe { _mm512_storeu_ps(columns.as_mut_ptr().add(l * padded + g), column) };
        }
    }
    let step = _mm512_set1_epi32(LANES as i32);
    let mut pos = 0usize;
    for (l, count) in counts.iter_mut().enumerate().take(width) {
        let first = pos;
        let mut index = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        for g in (0..rows).step_by(LANES) {
            // SAFETY: the load is inside `columns` as above; the stores
            // write 16 lanes at pos <= rows * l + g < rows * width, within
            // the rows * width + 16 that `row` and `val` hold. Rows past the
            // end were padded with zeros, so they are never selected.
            unsafe {
                let v = _mm512_loadu_ps(columns.as_ptr().add(l * padded + g));
                let mask = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(v, zero);
                _mm512_storeu_ps(val.as_mut_ptr().add(pos), _mm512_maskz_compress_ps(mask, v));
                _mm512_storeu_si512(
                    row.as_mut_ptr().add(pos).cast(),
                    _mm512_maskz_compress_epi32(mask, index),
                );
                pos += mask.count_ones() as usize;
            }
            index = _mm512_add_epi32(index, step);
        }
        *count = pos - first;
    }
}

/// The transpose of a 16 × 16 block held as 16 rows of 16 lanes: element
/// (i, j) of the result is element (j, i) of `r`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn transpose(r: [std::arch::x86_64::__m512; LANES]) -> [std::arch::x86_64::__m512; LANES] {
    use std::arch::x86_64::*;
    // Pairs of rows interleaved by 32 bits: t[2p] holds columns 4L and
    // 4L+1 of rows 2p, 2p+1 in 128-bit lane L; t[2p+1] columns 4L+2, 4L+3.
    let t: [__m512; LANES] = std::array::from_fn(|i| {
        let (a, b) = (r[i & !1], r[i | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    // Then by 64 bits: u[4q + j] holds column j + 4L of rows 4q..4q+4 in
    // 128-bit lane L.
    let u: [__m512; LANES] = std::array::from_fn(|i| {
        let (q, j) = (i / 4, i % 4);
        let a = _mm512_castps_pd(t[4 * q + j / 2]);
        let b = _mm512_castps_pd(t[4 * q + 2 + j / 2]);
        _mm512_castpd_ps(if j % 2 == 0 {
            _mm512_unpacklo_pd(a, b)
        } else {
            _mm512_unpackhi_pd(a, b)
        })
    });
    // Then 128-bit lanes, twice: first rows 0..8 and 8..16 of columns j,
    // j + 4, j + 8, j + 12, then whole columns.
    let mut out = [_mm512_setzero_ps(); LANES];
    for j in 0..4 {
        let v0 = _mm512_shuffle_f32x4::<0x88>(u[j], u[4 + j]);
        let v1 = _mm512_shuffle_f32x4::<0xdd>(u[j], u[4 + j]);
        let w0 = _mm512_shuffle_f32x4::<0x88>(u[8 + j], u[12 + j]);
        let w1 = _mm512_shuffle_f32x4::<0xdd>(u[8 + j], u[12 + j]);
        out[j] = _mm512_shuffle_f32x4::<0x88>(v0, w0);
        out[j + 8] = _mm512_shuffle_f32x4::<0xdd>(v0, w0);
        out[j + 4] = _mm512_shuffle_f32x4::<0x88>(v1, w1);
        out[j + 12] = _mm512_shuffle_f32x4::<0xdd>(v1, w1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numpy_rng::NumpyRandomState;
    use crate::simd::Portable;

    /// Each column's (row, value bits), from a scan on code path `I`.
    fn columns<I: Isa>(x: &[f32], n: usize, cols: Range<usize>) -> Vec<Vec<(u32, u32)>> {
        let mut csc = Csc::new();
        // Twice, so that a second scan into used buffers is checked too.
        csc.fill::<I>(&x[..x.len() / 2 / n * n], n, cols.clone());
        csc.fill::<I>(x, n, cols);
        (0..csc.cols())
            .map(|j| {
                let (rows, vals) = csc.col(j);
                rows.iter()
                    .zip(vals)
                    .map(|(&r, v)| (r, v.to_bits()))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn csc_holds_every_non_zero_of_each_column_on_every_path() {
        let mut rng = NumpyRandomState::new(3);
        // Rows and columns that are and are not multiples of 16.
        for (rows, n, cols) in [
            (100, 784, 0..784),
            (37, 50, 3..45),
            (16, 16, 0..16),
            (1, 5, 2..3),
            (33, 40, 17..40),
            (20, 7, 0..0),
        ] {
            let x: Vec<f32> = (0..rows * n)
                .map(|_| match rng.next_f64() {
                    u if u < 0.7 => 0.0,
                    u if u < 0.75 => -0.0,
                    u if u < 0.77 => f32::NAN,
                    u => u as f32 - 0.9,
                })
                .collect();
            let expected: Vec<Vec<(u32, u32)>> = cols
                .clone()
                .map(|c| {
                    (0..rows)
                        .map(|r| (r as u32, x[r * n + c]))
                        .filter(|&(_, v)| v != 0.0 || v.is_nan())
                        .map(|(r, v)| (r, v.to_bits()))
                        .collect()
                })
                .collect();
            assert_eq!(columns::<Portable>(&x, n, cols.clone()), expected);
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f") {
                // The AVX-512 scan checks I::AVX512 only; the CPU has it.
                let avx512 = columns::<crate::simd::Avx512>(&x, n, cols.clone());
                assert_eq!(avx512, expected, "{rows} x {n}, columns {cols:?}");
            }
        }
    }

    #[test]
    fn prefetcher_counts_and_walks_every_line_once() {
        let x = vec![0.0f32; 10 * 40];
        let mut pf = Prefetcher::new(40, 2..7, 5..38);
        // 33 columns: 3 lines a row, 5 rows.
        assert_eq!(pf.lines_left(), 15);
        pf.issue(&x, 4);
        assert_eq!(pf.lines_left(), 11);
        pf.spread_over(4);
        for _ in 0..3 {
            pf.step(&x);
        }
        assert_eq!(pf.lines_left(), 2);
        pf.issue(&x, 100);
        assert_eq!(pf.lines_left(), 0);
        assert_eq!(Prefetcher::none().lines_left(), 0);
        assert_eq!(Prefetcher::new(40, 2..7, 5..5).lines_left(), 0);
    }
}
