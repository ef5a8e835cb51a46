//! Sparse views of a minibatch of X. MNIST pixels are ~81% zeros, so the
//! products with X skip them: a minibatch is scanned once into compressed
//! columns (CSC), which the kernels walk column by column, or into the same
//! non-zeros by rows within each chunk of 16 columns, or both. A zero
//! contributes nothing to a sum, so skipping it changes no result — except
//! that `0 · inf` and `0 · NaN` in the weights are not turned into NaN.

use std::ops::Range;

use crate::simd::{Isa, LANES};

/// Which views of the non-zeros [`Csc::fill`] builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Views {
    /// Column by column, each column's rows in ascending order.
    pub columns: bool,
    /// By rows within each chunk of 16 columns (from the range's start):
    /// for each chunk, the rows with a non-zero in it, ascending, each with
    /// its entries' columns (counted from the range's start), ascending.
    pub rows: bool,
}

impl Views {
    /// The column view alone (the epochs' default), the row view alone
    /// (the evaluation's), or both.
    pub(crate) const COLUMNS: Views = Views {
        columns: true,
        rows: false,
    };
    pub(crate) const ROWS: Views = Views {
        columns: false,
        rows: true,
    };
    pub(crate) const BOTH: Views = Views {
        columns: true,
        rows: true,
    };
}

/// The non-zero entries of some rows of X within a range of its columns,
/// in the [`Views`] asked for.
pub(crate) struct Csc {
    /// Columns in the range, and the views built of them.
    width: usize,
    views: Views,
    /// Column view: the entry index where each column starts, one extra at
    /// the end (empty without the view); room for every entry plus one
    /// vector of slack, of which only the first `start[cols]` are entries.
    start: Vec<usize>,
    row: Vec<u32>,
    val: Vec<f32>,
    /// 16 columns of the rows being scanned, column-major (see [`scan_chunk`]).
    columns: Vec<f32>,
    /// Row view: the first group of each chunk, one extra at the end (empty
    /// without the view); each group's row and first entry (room for one
    /// group per row and chunk plus one, whose first entry ends the last
    /// group); the entries' columns and values (room as in `row` and `val`).
    chunk_groups: Vec<usize>,
    group_row: Vec<u32>,
    group_first: Vec<usize>,
    by_row_col: Vec<u32>,
    by_row_val: Vec<f32>,
}

impl Csc {
    pub fn new() -> Self {
        Csc {
            width: 0,
            views: Views {
                columns: false,
                rows: false,
            },
            start: Vec::new(),
            row: Vec::new(),
            val: Vec::new(),
            columns: Vec::new(),
            chunk_groups: Vec::new(),
            group_row: Vec::new(),
            group_first: Vec::new(),
            by_row_col: Vec::new(),
            by_row_val: Vec::new(),
        }
    }

    /// Scans columns `cols` of the rows `x` (row-major, `n` columns each)
    /// into `views`, 16 columns at a time, so that each line of X is read
    /// from memory once (see [`Prefetcher`] for bringing it into cache
    /// first). A view not asked for is left empty.
    #[inline(always)]
    pub fn fill<I: Isa>(&mut self, x: &[f32], n: usize, cols: Range<usize>, views: Views) {
        let rows = x.len() / n;
        let need = rows * cols.len() + LANES;
        (self.width, self.views) = (cols.len(), views);
        self.start.clear();
        self.chunk_groups.clear();
        if views.columns {
            if self.row.len() < need {
                self.row.resize(need, 0);
                self.val.resize(need, 0.0);
            }
            self.columns
                .resize(LANES * rows.next_multiple_of(LANES), 0.0);
            self.start.push(0);
        }
        if views.rows {
            let groups = rows * cols.len().div_ceil(LANES) + 1;
            if self.by_row_col.len() < need {
                self.by_row_col.resize(need, 0);
                self.by_row_val.resize(need, 0.0);
            }
            if self.group_row.len() < groups {
                self.group_row.resize(groups, 0);
                self.group_first.resize(groups, 0);
            }
            self.chunk_groups.push(0);
        }
        let (mut pos, mut group, mut entry) = (0, 0, 0);
        for c0 in cols.clone().step_by(LANES) {
            let width = LANES.min(cols.end - c0);
            if views.columns {
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
            if views.rows {
                let out = RowGroupsOut {
                    row: &mut self.group_row[group..],
                    first: &mut self.group_first[group..],
                    col: &mut self.by_row_col[entry..],
                    val: &mut self.by_row_val[entry..],
                    entry0: entry,
                };
                let (g, e) = scan_rows::<I>((x, n, c0..c0 + width), (c0 - cols.start) as u32, out);
                (group, entry) = (group + g, entry + e);
                self.chunk_groups.push(group);
            }
        }
        if views.rows {
            self.group_first[group] = entry;
        }
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.width
    }

    /// The views the last [`Csc::fill`] built.
    pub fn views(&self) -> Views {
        self.views
    }

    /// Number of chunks of 16 columns in the row view (the last may be
    /// narrower); 0 without it.
    pub fn chunks(&self) -> usize {
        self.chunk_groups.len().saturating_sub(1)
    }

    /// The rows with a non-zero in chunk `c`, ascending, each with the
    /// columns (counted from the range's start) and values of its non-zeros
    /// there, ascending.
    #[inline(always)]
    pub fn row_groups(&self, c: usize) -> impl Iterator<Item = (usize, &[u32], &[f32])> {
        (self.chunk_groups[c]..self.chunk_groups[c + 1]).map(|g| {
            let (a, b) = (self.group_first[g], self.group_first[g + 1]);
            (
                self.group_row[g] as usize,
                &self.by_row_col[a..b],
                &self.by_row_val[a..b],
            )
        })
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

/// Where the row view of one chunk goes: the group and entry slices from
/// the next free ones on, and the index of that first free entry.
struct RowGroupsOut<'a> {
    row: &'a mut [u32],
    first: &'a mut [usize],
    col: &'a mut [u32],
    val: &'a mut [f32],
    entry0: usize,
}

/// Writes the non-zeros of columns `cols` (at most 16) of `x` (row-major,
/// `n` columns) by rows to `out`: a group (row, first entry) for each row
/// with a non-zero, ascending, and the row's entries, each its column
/// (`base` plus its place in `cols`) and value, ascending. Returns the
/// groups and entries written. `out`'s entries must hold the rows times the
/// columns plus 16, its groups the rows plus 1. NaN counts as non-zero.
#[inline(always)]
#[allow(unsafe_code)] // the AVX-512 scan, after detection
fn scan_rows<I: Isa>(
    (x, n, cols): (&[f32], usize, Range<usize>),
    base: u32,
    out: RowGroupsOut<'_>,
) -> (usize, usize) {
    let rows = x.len() / n;
    let width = cols.len();
    assert!(width <= LANES && cols.end <= n);
    assert!(out.col.len() >= rows * width + LANES && out.val.len() >= rows * width + LANES);
    assert!(out.row.len() > rows && out.first.len() > rows);
    #[cfg(target_arch = "x86_64")]
    if I::AVX512 {
        // SAFETY: as in `scan_chunk`; the lengths were checked above.
        return unsafe { scan_rows_avx512((x, n, cols), base, out) };
    }
    // Branch-free: every row's group and every value are written; the
    // positions move past them only if they hold a non-zero.
    let (mut group, mut entry) = (0, 0);
    for (i, r) in x.chunks_exact(n).enumerate() {
        out.row[group] = i as u32;
        out.first[group] = out.entry0 + entry;
        let first = entry;
        for (col, &v) in (base..).zip(&r[cols.clone()]) {
            out.col[entry] = col;
            out.val[entry] = v;
            entry += usize::from(v != 0.0);
        }
        group += usize::from(entry > first);
    }
    (group, entry)
}

/// `scan_rows` with AVX-512: each row's 16 columns are compared with zero
/// and its non-zeros and their columns compressed out; no branches on the
/// data.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,popcnt")]
#[allow(unsafe_code)] // raw loads and stores of 16 lanes, bounds checked by the caller
unsafe fn scan_rows_avx512(
    (x, n, cols): (&[f32], usize, Range<usize>),
    base: u32,
    out: RowGroupsOut<'_>,
) -> (usize, usize) {
    use std::arch::x86_64::*;
    let rows = x.len() / n;
    let in_row: __mmask16 = ((1u32 << cols.len()) - 1) as u16;
    let columns = _mm512_add_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(base as i32),
    );
    let (mut group, mut entry) = (0, 0);
    for i in 0..rows {
        // SAFETY: the masked load reads only the `width` floats of row i <
        // rows from column cols.start, inside the row; at most `width`
        // entries a row came before, so entry + 16 <= rows * width + 16,
        // which the entry slices hold; group <= i < rows, and the group
        // slices hold rows + 1.
        unsafe {
            let v = _mm512_maskz_loadu_ps(in_row, x.as_ptr().add(i * n + cols.start));
            let at = (
                out.val.as_mut_ptr().add(entry),
                out.col.as_mut_ptr().add(entry),
            );
            let mask = compress_non_zeros(v, columns, at);
            *out.row.as_mut_ptr().add(group) = i as u32;
            *out.first.as_mut_ptr().add(group) = out.entry0 + entry;
            group += usize::from(mask != 0);
            entry += mask.count_ones() as usize;
        }
    }
    (group, entry)
}

/// Writes the lanes of `v` that are not ±0 (NaN counts as non-zero) to the
/// front of the 16 floats at `at.0`, and the same lanes of `labels` (their
/// rows or columns) to the front of the 16 labels at `at.1`; returns the
/// mask of those lanes. The one step both AVX-512 scans take.
///
/// # Safety
///
/// The CPU has AVX-512F, and both pointers are valid for 16 writes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(unsafe_code)] // stores of 16 lanes through raw pointers
unsafe fn compress_non_zeros(
    v: std::arch::x86_64::__m512,
    labels: std::arch::x86_64::__m512i,
    at: (*mut f32, *mut u32),
) -> std::arch::x86_64::__mmask16 {
    use std::arch::x86_64::*;
    let mask = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(v, _mm512_setzero_ps());
    // SAFETY: the caller's pointers are valid for 16 writes each.
    unsafe {
        _mm512_storeu_ps(at.0, _mm512_maskz_compress_ps(mask, v));
        _mm512_storeu_si512(at.1.cast(), _mm512_maskz_compress_epi32(mask, labels));
    }
    mask
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
                let at = (val.as_mut_ptr().add(pos), row.as_mut_ptr().add(pos));
                pos += compress_non_zeros(v, index, at).count_ones() as usize;
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

    /// Each column's (row, value bits) and each chunk's rows with their
    /// (column, value bits), from scans on code path `I` into both views
    /// and into each alone.
    type ByRows = Vec<Vec<(usize, Vec<(u32, u32)>)>>;
    type Scanned = (Vec<Vec<(u32, u32)>>, ByRows);
    fn scan<I: Isa>(x: &[f32], n: usize, cols: Range<usize>) -> Scanned {
        let both = Views::BOTH;
        let mut csc = Csc::new();
        // Twice, so that a second scan into used buffers is checked too.
        csc.fill::<I>(&x[..x.len() / 2 / n * n], n, cols.clone(), both);
        csc.fill::<I>(x, n, cols.clone(), both);
        let columns: Vec<Vec<(u32, u32)>> = (0..csc.cols())
            .map(|j| {
                let (rows, vals) = csc.col(j);
                rows.iter()
                    .zip(vals)
                    .map(|(&r, v)| (r, v.to_bits()))
                    .collect()
            })
            .collect();
        let by_rows = |csc: &Csc| -> ByRows {
            (0..csc.chunks())
                .map(|c| {
                    csc.row_groups(c)
                        .map(|(i, js, vals)| {
                            (
                                i,
                                js.iter()
                                    .zip(vals)
                                    .map(|(&j, v)| (j, v.to_bits()))
                                    .collect(),
                            )
                        })
                        .collect()
                })
                .collect()
        };
        let rows = by_rows(&csc);
        let mut alone = Csc::new();
        alone.fill::<I>(x, n, cols.clone(), Views::ROWS);
        assert_eq!(by_rows(&alone), rows);
        assert_eq!(alone.chunks(), cols.len().div_ceil(LANES));
        alone.fill::<I>(x, n, cols.clone(), Views::COLUMNS);
        assert_eq!(alone.chunks(), 0);
        assert_eq!(
            (0..alone.cols())
                .map(|j| alone.col(j).0.len())
                .sum::<usize>(),
            columns.iter().map(Vec::len).sum()
        );
        (columns, rows)
    }

    #[test]
    fn csc_holds_every_non_zero_of_each_column_and_row_on_every_path() {
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
            let non_zero = |v: f32| v != 0.0 || v.is_nan();
            let columns: Vec<Vec<(u32, u32)>> = cols
                .clone()
                .map(|c| {
                    (0..rows)
                        .map(|r| (r as u32, x[r * n + c]))
                        .filter(|&(_, v)| non_zero(v))
                        .map(|(r, v)| (r, v.to_bits()))
                        .collect()
                })
                .collect();
            let by_rows: ByRows = (cols.start..cols.end)
                .step_by(LANES)
                .map(|c0| {
                    (0..rows)
                        .map(|r| {
                            let entries: Vec<(u32, u32)> = (c0..cols.end.min(c0 + LANES))
                                .filter(|&c| non_zero(x[r * n + c]))
                                .map(|c| ((c - cols.start) as u32, x[r * n + c].to_bits()))
                                .collect();
                            (r, entries)
                        })
                        .filter(|(_, entries)| !entries.is_empty())
                        .collect()
                })
                .collect();
            let expected = (columns, by_rows);
            assert_eq!(scan::<Portable>(&x, n, cols.clone()), expected);
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f") {
                // The AVX-512 scans check I::AVX512 only; the CPU has it.
                let avx512 = scan::<crate::simd::Avx512>(&x, n, cols.clone());
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
