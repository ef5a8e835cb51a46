//! Softmax regression's products with X on 16-pixel chunks, for few classes.
//!
//! With k ≈ 10 classes the products `X θ` and `Xᵀ G` are too skinny for a
//! GEMM, and a sparse walk over single pixels spends its time finding them
//! and missing cache. Here θ is held transposed, `θᵀ[chunk][class]` = the
//! 16 weights of one class for 16 consecutive pixels, so one multiply-add
//! takes 16 pixels of one class: a row costs `classes` multiply-adds per
//! chunk that has a non-zero pixel (MNIST rows have ~29 such chunks of 49).
//!
//! * forward: per row, a lane-wise accumulator per class over the chunks of
//!   a block of pixels, then the 16 lanes of each summed by halving;
//! * backward: per chunk, `Σ_rows g[row][class] · x[row][chunk]` summed over
//!   the rows in order in registers (a gradient buffer would not fit in L1
//!   next to θ), then `θᵀ += −lr/b · sum` — the gradient summed first, as
//!   numpy does.
//!
//! Classes go through the kernels in groups of `CG` (const generic), so the
//! accumulators of a group live in registers.

use std::ops::Range;

use crate::simd::{mul_add, Isa, Lanes, LANES};
use crate::sparse::prefetch_line;

/// Classes per group and the padded class count for `k` classes: a group
/// is compiled for 2, 4, 6, 8, 10 or 12 classes; more classes go in groups
/// of 8. The padded count never exceeds `lane_groups(k) · 16`.
pub(crate) fn class_groups(k: usize) -> (usize, usize) {
    if k <= 12 {
        let g = k.max(2).next_multiple_of(2);
        (g, g)
    } else {
        (8, k.next_multiple_of(8))
    }
}

/// Chunks of 16 pixels in a row of `n`.
pub(crate) fn chunks(n: usize) -> usize {
    n.div_ceil(LANES)
}

/// Pixels `16·s ..` of `row`, zero-padded past its end.
#[inline(always)]
pub(crate) fn load_chunk(row: &[f32], s: usize) -> Lanes {
    let a = s * LANES;
    match row.get(a..a + LANES) {
        Some(full) => full.try_into().expect("16 pixels"),
        None => {
            let mut t = [0.0; LANES];
            let tail = &row[a..];
            t[..tail.len()].copy_from_slice(tail);
            t
        }
    }
}

/// Whether any pixel of the chunk is non-zero (NaN counts as non-zero).
#[inline(always)]
pub(crate) fn any_nonzero(x: &Lanes) -> bool {
    let mut mask = 0u16;
    for (l, &v) in x.iter().enumerate() {
        mask |= u16::from(v != 0.0) << l;
    }
    mask != 0
}

/// Packs rows `pixels` of θ (n×k) into `θᵀ[chunk][class]` lane groups,
/// `kpad` per chunk; lanes past the pixels and classes past k are zero.
pub(crate) fn pack_transposed(
    theta: ndarray::ArrayView2<'_, f32>,
    pixels: Range<usize>,
    kpad: usize,
) -> Vec<Lanes> {
    let mut packed = vec![[0.0; LANES]; chunks(pixels.len()) * kpad];
    for (p, row) in theta
        .rows()
        .into_iter()
        .skip(pixels.start)
        .take(pixels.len())
        .enumerate()
    {
        for (c, &v) in row.iter().enumerate() {
            packed[p / LANES * kpad + c][p % LANES] = v;
        }
    }
    packed
}

/// Writes `θᵀ` packed by [`pack_transposed`] back into rows `first..` of θ.
pub(crate) fn unpack_transposed(
    packed: &[Lanes],
    kpad: usize,
    mut theta: ndarray::ArrayViewMut2<'_, f32>,
    pixels: Range<usize>,
) {
    for (p, mut row) in theta
        .rows_mut()
        .into_iter()
        .skip(pixels.start)
        .take(pixels.len())
        .enumerate()
    {
        for (c, v) in row.iter_mut().enumerate() {
            *v = packed[p / LANES * kpad + c][p % LANES];
        }
    }
}

/// One halving step of [`lane_sums`] on two vectors: within each segment
/// of `2·HALF` lanes, the first half of the result folds `a`'s segment in
/// two and the second half folds `b`'s.
#[inline(always)]
fn fold<const HALF: usize>(a: &Lanes, b: &Lanes) -> Lanes {
    let mut out = [0.0; LANES];
    let mut seg = 0;
    while seg < LANES {
        for o in 0..HALF {
            out[seg + o] = a[seg + o] + a[seg + o + HALF];
            out[seg + HALF + o] = b[seg + o] + b[seg + o + HALF];
        }
        seg += 2 * HALF;
    }
    out
}

/// The sum of the 16 lanes of each vector of `acc`, each summed by halving
/// (lanes l and l+8, then l and l+4, l+2, l+1), several vectors per
/// instruction: after four steps, vector c's sum is in lane
/// `reverse_bits4(c)`.
#[inline(always)]
#[allow(unsafe_code)] // the AVX-512 permutes, after detection
pub(crate) fn lane_sums<I: Isa, const CG: usize>(acc: &[Lanes; CG]) -> [f32; CG] {
    #[cfg(target_arch = "x86_64")]
    if I::AVX512 {
        // SAFETY: I::AVX512 is true only for the `Avx512` instantiation,
        // which `multiversion!` runs only after detecting AVX-512.
        return unsafe { lane_sums_avx512(acc) };
    }
    let zero = [0.0f32; LANES];
    let v = |c: usize| if c < CG { &acc[c] } else { &zero };
    let b0 = fold::<8>(v(0), v(1));
    let b1 = fold::<8>(v(2), v(3));
    let b2 = fold::<8>(v(4), v(5));
    let b3 = fold::<8>(v(6), v(7));
    let b4 = fold::<8>(v(8), v(9));
    let b5 = fold::<8>(v(10), v(11));
    let b6 = fold::<8>(v(12), v(13));
    let b7 = fold::<8>(v(14), v(15));
    let c0 = fold::<4>(&b0, &b1);
    let c1 = fold::<4>(&b2, &b3);
    let c2 = fold::<4>(&b4, &b5);
    let c3 = fold::<4>(&b6, &b7);
    let d0 = fold::<2>(&c0, &c1);
    let d1 = fold::<2>(&c2, &c3);
    let e = fold::<1>(&d0, &d1);
    let mut out = [0.0; CG];
    for (c, o) in out.iter_mut().enumerate() {
        *o = e[(c as u8).reverse_bits() as usize >> 4];
    }
    out
}

/// Lane `l` of `fold::<half>(a, b)` adds lanes `lo[l]` and `lo[l] + half`
/// of the pair `a ++ b` (32 lanes).
#[cfg(target_arch = "x86_64")]
const fn fold_index(half: usize) -> [i32; LANES] {
    let mut lo = [0i32; LANES];
    let mut l = 0;
    while l < LANES {
        let seg = l / (2 * half) * (2 * half);
        let off = l % (2 * half);
        lo[l] = if off < half {
            seg + off
        } else {
            LANES + seg + off - half
        } as i32;
        l += 1;
    }
    lo
}

/// [`lane_sums`] with two-source permutes: the same additions of the same
/// lanes, so the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(unsafe_code)] // 512-bit loads of whole lane groups
unsafe fn lane_sums_avx512<const CG: usize>(acc: &[Lanes; CG]) -> [f32; CG] {
    use std::arch::x86_64::*;
    const LO: [[i32; LANES]; 4] = [fold_index(8), fold_index(4), fold_index(2), fold_index(1)];
    const HALVES: [i32; 4] = [8, 4, 2, 1];
    let mut v = [_mm512_setzero_ps(); LANES];
    for (v, a) in v.iter_mut().zip(acc) {
        // SAFETY: `a` holds 16 floats.
        *v = unsafe { _mm512_loadu_ps(a.as_ptr()) };
    }
    let mut count = CG;
    for (lo, half) in LO.iter().zip(HALVES) {
        // SAFETY: `lo` holds 16 indices.
        let lo = unsafe { _mm512_loadu_si512(lo.as_ptr().cast()) };
        let hi = _mm512_add_epi32(lo, _mm512_set1_epi32(half));
        if count % 2 == 1 {
            v[count] = _mm512_setzero_ps();
        }
        let pairs = count.div_ceil(2);
        for p in 0..pairs {
            let (a, b) = (v[2 * p], v[2 * p + 1]);
            v[p] = _mm512_add_ps(
                _mm512_permutex2var_ps(a, lo, b),
                _mm512_permutex2var_ps(a, hi, b),
            );
        }
        count = pairs;
    }
    let mut e = [0.0f32; LANES];
    // SAFETY: `e` holds 16 floats.
    unsafe { _mm512_storeu_ps(e.as_mut_ptr(), v[0]) };
    let mut out = [0.0; CG];
    for (c, o) in out.iter_mut().enumerate() {
        *o = e[(c as u8).reverse_bits() as usize >> 4];
    }
    out
}

/// Lane-wise logits of class group `q` for one row over `chunk_range`:
/// `acc[c] = Σ_chunks θᵀ[chunk][q·CG + c] ⊙ x[chunk]`. `theta_t` starts
/// at chunk `first`. Chunks without a non-zero pixel are skipped; the
/// others' positions are passed to `on_mask` once per window of up to 64
/// chunks, as (first chunk of the window, bit b set if chunk first + b is
/// non-zero). The same chunks of `prefetch_row`
/// (possibly empty) are prefetched meanwhile, one cache line per chunk.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn row_logits<I: Isa, const CG: usize>(
    row: &[f32],
    chunk_range: Range<usize>,
    theta_t: &[Lanes],
    first: usize,
    kpad: usize,
    q: usize,
    on_mask: &mut impl FnMut(usize, u64),
    prefetch_row: &[f32],
) -> [Lanes; CG] {
    let mut acc = [[0.0f32; LANES]; CG];
    // Windows of up to 64 chunks: first which are non-zero, then those
    // alone, so that no branch depends on the pixels.
    for window in chunk_range.clone().step_by(64) {
        let end = (window + 64).min(chunk_range.end);
        let mut mask = 0u64;
        for s in window..end {
            if let Some(line) = prefetch_row.get(s * LANES..) {
                prefetch_line(line);
            }
            mask |= u64::from(any_nonzero(&load_chunk(row, s))) << (s - window);
        }
        acc = add_chunks::<I, CG>(acc, row, window, mask, theta_t, first, kpad, q);
        on_mask(window, mask);
    }
    acc
}

/// `acc[c] += θᵀ[chunk][q·CG + c] ⊙ x[chunk]` for the chunks `window + b`
/// for the set bits b of `mask`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn add_chunks<I: Isa, const CG: usize>(
    mut acc: [Lanes; CG],
    row: &[f32],
    window: usize,
    mut mask: u64,
    theta_t: &[Lanes],
    first: usize,
    kpad: usize,
    q: usize,
) -> [Lanes; CG] {
    while mask != 0 {
        let s = window + mask.trailing_zeros() as usize;
        mask &= mask - 1;
        let x = load_chunk(row, s);
        let at = (s - first) * kpad + q * CG;
        let th: &[Lanes; CG] = theta_t[at..at + CG].try_into().expect("CG classes");
        for c in 0..CG {
            for l in 0..LANES {
                acc[c][l] = mul_add::<I>(x[l], th[c][l], acc[c][l]);
            }
        }
    }
    acc
}

/// Writes to the front of `out` the indices i (ascending) of the entries
/// of `masks` with bit `bit` set; returns how many there are. `out` must
/// hold `masks.len() + 16`.
#[inline(always)]
#[allow(unsafe_code)] // the AVX-512 version, after detection
pub(crate) fn rows_with_bit<I: Isa>(masks: &[u64], bit: u32, out: &mut [u32]) -> usize {
    assert!(bit < 64 && out.len() >= masks.len() + LANES);
    #[cfg(target_arch = "x86_64")]
    if I::AVX512 {
        // SAFETY: I::AVX512 is true only for the `Avx512` instantiation,
        // which `multiversion!` runs only after detecting AVX-512; the
        // lengths were checked above.
        return unsafe { rows_with_bit_avx512(masks, bit, out) };
    }
    // Branch-free: every index is written, and the position moves past it
    // only if the bit is set.
    let mut pos = 0;
    for (i, &m) in masks.iter().enumerate() {
        out[pos] = i as u32;
        pos += ((m >> bit) & 1) as usize;
    }
    pos
}

/// `rows_with_bit` 16 masks a step: two 8-lane bit tests, the row indices
/// compressed out; no branches on the data.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(unsafe_code)] // raw loads and stores, bounds checked by the caller
unsafe fn rows_with_bit_avx512(masks: &[u64], bit: u32, out: &mut [u32]) -> usize {
    use std::arch::x86_64::*;
    let probe = _mm512_set1_epi64(1i64 << bit);
    let step = _mm512_set1_epi32(LANES as i32);
    let mut index = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let mut pos = 0usize;
    for group in masks.chunks(LANES) {
        let live = group.len();
        let (lo, hi) = (live.min(8), live.saturating_sub(8));
        // SAFETY: the masked loads read only the `live` masks of the group;
        // the store writes 16 lanes at pos, at most the number of masks
        // before this group, and `out` holds masks.len() + 16.
        unsafe {
            let a = _mm512_maskz_loadu_epi64(((1u32 << lo) - 1) as u8, group.as_ptr().cast());
            let b =
                _mm512_maskz_loadu_epi64(((1u32 << hi) - 1) as u8, group.as_ptr().add(lo).cast());
            let set = u16::from(_mm512_test_epi64_mask(a, probe))
                | (u16::from(_mm512_test_epi64_mask(b, probe)) << 8);
            _mm512_storeu_si512(
                out.as_mut_ptr().add(pos).cast(),
                _mm512_maskz_compress_epi32(set, index),
            );
            pos += set.count_ones() as usize;
        }
        index = _mm512_add_epi32(index, step);
    }
    pos
}

/// `Σ_{i in rows} g[i][q·CG + c] · x[i][chunk s]` for the class group `q`,
/// summed over `rows` in order. `x_rows(i)` is row i of the minibatch and
/// `g` holds `kg` lane groups per row.
#[inline(always)]
pub(crate) fn chunk_gradient<'x, I: Isa, const CG: usize>(
    rows: &[u32],
    x_rows: impl Fn(usize) -> &'x [f32],
    s: usize,
    g: &[Lanes],
    kg: usize,
    q: usize,
) -> [Lanes; CG] {
    let mut acc = [[0.0f32; LANES]; CG];
    for &i in rows {
        let i = i as usize;
        let x = load_chunk(x_rows(i), s);
        let gi: &[f32; CG] = g[i * kg..(i + 1) * kg].as_flattened()[q * CG..(q + 1) * CG]
            .try_into()
            .expect("CG classes");
        for (a, &gc) in acc.iter_mut().zip(gi) {
            for l in 0..LANES {
                a[l] = mul_add::<I>(gc, x[l], a[l]);
            }
        }
    }
    acc
}

/// Runs `$body` with the const `$cg` set to the class-group size `$value`
/// (one of those [`class_groups`] returns).
macro_rules! with_class_group {
    ($value:expr, $cg:ident => $body:expr) => {
        $crate::simd::with_const!($value, $cg in [2 4 6 8 10; 12] => $body)
    };
}
pub(crate) use with_class_group;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_sums_sum_each_vector_by_halving() {
        let mut acc = [[0.0f32; LANES]; 10];
        for (c, v) in acc.iter_mut().enumerate() {
            for (l, x) in v.iter_mut().enumerate() {
                // Values whose sums depend on the order of addition.
                *x = ((c * 16 + l) as f32 * 0.37).sin() * 10f32.powi((l % 5) as i32 - 2);
            }
        }
        let got = lane_sums::<crate::simd::Portable, 10>(&acc);
        for (c, v) in acc.iter().enumerate() {
            let mut w = *v;
            let mut half = LANES / 2;
            while half >= 1 {
                for l in 0..half {
                    w[l] += w[l + half];
                }
                half /= 2;
            }
            assert_eq!(got[c].to_bits(), w[0].to_bits(), "vector {c}");
        }
    }

    #[test]
    fn rows_with_bit_lists_the_rows_in_order_on_every_path() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for rows in [0, 1, 7, 8, 9, 16, 17, 100] {
            let masks: Vec<u64> = (0..rows)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state
                })
                .collect();
            for bit in [0, 5, 31, 63] {
                let expected: Vec<u32> = (0..rows as u32)
                    .filter(|&i| masks[i as usize] >> bit & 1 == 1)
                    .collect();
                let mut out = vec![u32::MAX; rows + LANES];
                let count = rows_with_bit::<crate::simd::Portable>(&masks, bit, &mut out);
                assert_eq!(out[..count], expected, "{rows} rows, bit {bit}");
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // The AVX-512 version checks I::AVX512 only; the CPU has it.
                    let mut out = vec![u32::MAX; rows + LANES];
                    let count = rows_with_bit::<crate::simd::Avx512>(&masks, bit, &mut out);
                    assert_eq!(out[..count], expected, "AVX-512, {rows} rows, bit {bit}");
                }
            }
        }
    }

    #[test]
    fn class_groups_cover_k_within_its_lane_groups() {
        for k in 1..100 {
            let (g, kpad) = class_groups(k);
            assert!(kpad >= k && kpad % g == 0, "k {k}");
            assert!(kpad <= k.div_ceil(LANES) * LANES, "k {k}");
        }
    }
}
