//! Softmax regression's products with X on 16-pixel chunks, for few classes.
//!
//! With k ≈ 10 classes the products `X θ` and `Xᵀ G` are too skinny for a
//! GEMM. Here θ is held transposed, `θᵀ[chunk][class]` = the 16 weights of
//! one class for 16 consecutive pixels, so one multiply-add takes 16 pixels
//! of one class: a row costs `classes` multiply-adds per chunk.
//!
//! * forward: per row, a lane-wise accumulator per class over the chunks of
//!   a block of pixels, then the 16 lanes of each summed by halving; two
//!   rows go side by side, so each chunk of θ is loaded once for both;
//! * backward: per chunk, `Σ_rows g[row][class] · x[row][chunk]` summed over
//!   the rows in order in registers (a gradient buffer would not fit in L1
//!   next to θ), then `θᵀ += −lr/b · sum` — the gradient summed first, as
//!   numpy does.
//!
//! The epochs multiply every chunk, zero or not. MNIST rows have ~29
//! non-zero chunks of 49, but finding them (a test per chunk, then a loop
//! over the set bits or a list of rows per chunk) cost the epochs as much
//! as the multiply-adds it saved or more, on Intel and on AMD alike. The
//! evaluation skips the chunks that are zero in both rows of a pair (31% of
//! them): 31–40% faster on AMD Zen 4. A zero chunk adds ±0 to each sum, which
//! leaves it as it was, so the bits are those of a sum over the non-zero
//! chunks alone (unless θ or the gradients are not finite, where the dense
//! product gives NaN, as numpy's does: the evaluation then multiplies every
//! chunk).
//!
//! Classes go through the kernels in groups of `CG` (const generic), so the
//! accumulators of a group live in registers.

use std::ops::Range;

use crate::aligned::LineLanes;
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

/// Packs rows `pixels` of θ (n×k) into `θᵀ[chunk][class]` lane groups,
/// `kpad` per chunk; lanes past the pixels and classes past k are zero.
pub(crate) fn pack_transposed(
    theta: ndarray::ArrayView2<'_, f32>,
    pixels: Range<usize>,
    kpad: usize,
) -> LineLanes {
    let mut packed = LineLanes::zeros(chunks(pixels.len()) * kpad);
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

/// The lane of [`lane_sums_avx512`]'s result that holds vector `c`'s sum:
/// the first two steps keep each vector's partial sums in whole quarters
/// (vector c in quarter c % 4 after the second), the last two fold within
/// quarters, leaving vector c at position c / 4 of its quarter.
#[cfg(target_arch = "x86_64")]
const fn shuffled_lane(c: usize) -> usize {
    4 * (c % 4) + c / 4
}

/// [`lane_sums`] with shuffles whose selectors are immediates: the same
/// additions of the same lanes, so the same bits, with the partial sums in
/// other lanes. Each step adds the pairs `(2p, 2p + 1)` of vectors:
///
/// 1. lanes `l` and `l + 8` (`vshuff32x4`): quarters 0, 1 of the result
///    hold the sums of vector 2p, quarters 2, 3 those of vector 2p + 1;
/// 2. lanes `l` and `l + 4` (`vshuff32x4`): quarter j of result p holds
///    vector 4p + j's;
/// 3. lanes `l` and `l + 2` (`vshufps`, within each quarter);
/// 4. lanes `l` and `l + 1` (`vshufps`): see [`shuffled_lane`].
///
/// On AMD Zen 4 a model of the 2-thread forward loop ran at 92% of the
/// multiply-add peak with these, 89% with two-source permutes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(unsafe_code)] // 512-bit loads and stores of whole lane groups
unsafe fn lane_sums_avx512<const CG: usize>(acc: &[Lanes; CG]) -> [f32; CG] {
    use std::arch::x86_64::*;
    let mut v = [_mm512_setzero_ps(); LANES];
    for (v, a) in v.iter_mut().zip(acc) {
        // SAFETY: `a` holds 16 floats.
        *v = unsafe { _mm512_loadu_ps(a.as_ptr()) };
    }
    /// One step: `v[p] = lo(v[2p], v[2p + 1]) + hi(v[2p], v[2p + 1])`.
    macro_rules! step {
        ($count:ident, $lo:expr, $hi:expr) => {{
            if $count % 2 == 1 {
                v[$count] = _mm512_setzero_ps();
            }
            let pairs = $count.div_ceil(2);
            for p in 0..pairs {
                let (a, b) = (v[2 * p], v[2 * p + 1]);
                v[p] = _mm512_add_ps($lo(a, b), $hi(a, b));
            }
            pairs
        }};
    }
    let count = CG;
    let count = step!(
        count,
        _mm512_shuffle_f32x4::<0x44>,
        _mm512_shuffle_f32x4::<0xEE>
    );
    let count = step!(
        count,
        _mm512_shuffle_f32x4::<0x88>,
        _mm512_shuffle_f32x4::<0xDD>
    );
    let count = step!(count, _mm512_shuffle_ps::<0x44>, _mm512_shuffle_ps::<0xEE>);
    step!(count, _mm512_shuffle_ps::<0x88>, _mm512_shuffle_ps::<0xDD>);
    let mut e = [0.0f32; LANES];
    // SAFETY: `e` holds 16 floats.
    unsafe { _mm512_storeu_ps(e.as_mut_ptr(), v[0]) };
    std::array::from_fn(|c| e[shuffled_lane(c)])
}

/// Lane-wise logits of class group `q` for `R` rows side by side (each
/// chunk of θ loaded once for all of them) over every chunk of
/// `chunk_range`: `acc[r][c] = Σ_chunks θᵀ[chunk][q·CG + c] ⊙ x_r[chunk]`,
/// summed over the chunks in order. `theta_t` starts at chunk `first` and
/// holds `kpad` lane groups per chunk. Each chunk's line of `ahead[r]` (the
/// same row of the next minibatch, possibly empty) is prefetched meanwhile.
///
/// With `SKIP`, the chunks that are zero in every row are left out, which
/// gives the same sums as long as θ is finite: each window of up to 64
/// chunks is first tested, then only its non-zero chunks are multiplied.
/// The evaluation does (31–40% faster on AMD Zen 4); the epochs' forward
/// pass does not (4–5% slower that way: the tests' loads stall where they
/// had overlapped the multiply-adds).
#[inline(always)]
pub(crate) fn rows_logits<I: Isa, const R: usize, const CG: usize, const SKIP: bool>(
    rows: [&[f32]; R],
    chunk_range: Range<usize>,
    (theta_t, first, kpad, q): (&[Lanes], usize, usize, usize),
    ahead: [&[f32]; R],
) -> [[Lanes; CG]; R] {
    let mut acc = [[[0.0f32; LANES]; CG]; R];
    // Chunks that lie whole in every row first, with no copy on their path
    // (a call there would make LLVM keep the accumulators on the stack),
    // and with slices cut to the chunks so that no index is checked.
    let whole = rows.iter().map(|r| r.len() / LANES).min().unwrap_or(0);
    let split = whole.clamp(chunk_range.start, chunk_range.end);
    let (a, b) = (chunk_range.start * LANES, split * LANES);
    let xs = rows.map(|row| &row[a..b]);
    let ahead = ahead.map(|row| row.get(a..b).unwrap_or(&[]));
    let at = (chunk_range.start - first) * kpad;
    let th = &theta_t[at..at + (split - chunk_range.start) * kpad];
    let chunk = |r: usize, j: usize| -> Lanes {
        xs[r][j * LANES..(j + 1) * LANES]
            .try_into()
            .expect("a whole chunk")
    };
    let prefetch = |r: usize, j: usize| {
        if let Some(line) = ahead[r].get(j * LANES..j * LANES + 1) {
            prefetch_line(line);
        }
    };
    if SKIP {
        let count = split - chunk_range.start;
        for w in (0..count).step_by(64) {
            let end = count.min(w + 64);
            let mut nonzero = 0u64;
            for j in w..end {
                let x: [Lanes; R] = std::array::from_fn(|r| {
                    prefetch(r, j);
                    chunk(r, j)
                });
                nonzero |= u64::from(!all_zero(&x)) << (j - w);
            }
            while nonzero != 0 {
                let j = w + nonzero.trailing_zeros() as usize;
                nonzero &= nonzero - 1;
                let x = std::array::from_fn(|r| chunk(r, j));
                fma_rows::<I, R, CG>(&mut acc, &x, &th[j * kpad + q * CG..][..CG]);
            }
        }
    } else {
        for (j, th) in th.chunks_exact(kpad).enumerate() {
            let x = std::array::from_fn(|r| {
                prefetch(r, j);
                chunk(r, j)
            });
            fma_rows::<I, R, CG>(&mut acc, &x, &th[q * CG..(q + 1) * CG]);
        }
    }
    for s in split..chunk_range.end {
        let x = rows.map(|row| load_chunk(row, s));
        let at = (s - first) * kpad + q * CG;
        fma_rows::<I, R, CG>(&mut acc, &x, &theta_t[at..at + CG]);
    }
    acc
}

/// Whether every lane of every vector is ±0 (a NaN lane is not).
#[inline(always)]
fn all_zero<const R: usize>(x: &[Lanes; R]) -> bool {
    // Each lane's bits but the sign, or-ed over the rows.
    let mut bits = [0u32; LANES];
    for v in x {
        for (b, &e) in bits.iter_mut().zip(v) {
            *b |= e.to_bits() << 1;
        }
    }
    bits.into_iter().fold(0, |a, b| a | b) == 0
}

/// `acc[r][c] += x[r] ⊙ θ[c]` for the `CG` lane groups of θ in `th`.
#[inline(always)]
fn fma_rows<I: Isa, const R: usize, const CG: usize>(
    acc: &mut [[Lanes; CG]; R],
    x: &[Lanes; R],
    th: &[Lanes],
) {
    let th: &[Lanes; CG] = th.try_into().expect("CG classes");
    for c in 0..CG {
        for r in 0..R {
            for l in 0..LANES {
                acc[r][c][l] = mul_add::<I>(x[r][l], th[c][l], acc[r][c][l]);
            }
        }
    }
}

/// `Σ_i g[i][q·CG + c] · x[i][chunk s + j]` for the `S` chunks `s + j`
/// over every row i of `x` (rows of `n`), in row order; `g` holds the
/// rows' gradients, `kg` lane groups per row, laid out by rows or, with
/// `TILED`, in tiles (see [`row_grads`]). With S = 2 each row's gradients
/// are broadcast once for both chunks, which must then lie whole in the
/// rows. Rows whose chunk is zero add ±0, which changes no sum (as long as
/// g is finite). The chunks of each row of `ahead` (laid out as `x`,
/// possibly shorter or empty) are prefetched meanwhile.
#[inline(always)]
pub(crate) fn chunk_gradient<I: Isa, const S: usize, const CG: usize, const TILED: bool>(
    (x, n): (&[f32], usize),
    s: usize,
    (g, kg): (&[Lanes], usize),
    q: usize,
    ahead: &[f32],
) -> [[Lanes; CG]; S] {
    let mut acc = [[[0.0f32; LANES]; CG]; S];
    // Whole chunks are loaded in place; the zero-padded copy of a partial
    // one stays out of the whole chunks' loop (see rows_logits).
    if (s + S) * LANES <= n {
        let (a, b) = (s * LANES, (s + S) * LANES);
        for (i, row) in x.chunks_exact(n).enumerate() {
            for j in 0..S {
                let at = i * n + a + j * LANES;
                if let Some(line) = ahead.get(at..at + 1) {
                    prefetch_line(line);
                }
            }
            let row = &row[a..b];
            let xs: [Lanes; S] =
                std::array::from_fn(|j| row[j * LANES..(j + 1) * LANES].try_into().expect("whole"));
            let gi = row_grads::<CG, TILED>(g, kg, i, q);
            gradient_step::<I, S, CG>(&mut acc, &xs, &gi);
        }
    } else {
        assert!(S == 1, "two chunks must lie whole in the rows");
        for (i, row) in x.chunks_exact(n).enumerate() {
            let xs: [Lanes; S] = std::array::from_fn(|j| load_chunk(row, s + j));
            let gi = row_grads::<CG, TILED>(g, kg, i, q);
            gradient_step::<I, S, CG>(&mut acc, &xs, &gi);
        }
    }
    acc
}

/// Row `i`'s gradients of classes `q·CG ..` from `g`, which holds `kg` lane
/// groups per row: row after row, or, with `TILED`, in tiles of 16 rows
/// (see `tiled_gradients`), where class c of row i is lane `i % 16` of
/// vector `(i / 16) · 16·kg + c`.
#[inline(always)]
pub(crate) fn row_grads<const CG: usize, const TILED: bool>(
    g: &[Lanes],
    kg: usize,
    i: usize,
    q: usize,
) -> [f32; CG] {
    if TILED {
        let tile = &g[i / LANES * kg * LANES + q * CG..][..CG];
        std::array::from_fn(|c| tile[c][i % LANES])
    } else {
        let row = &g[i * kg..(i + 1) * kg];
        row.as_flattened()[q * CG..(q + 1) * CG]
            .try_into()
            .expect("CG classes")
    }
}

/// `acc[j][c] += gi[c] · x[j]` for one row's gradients `gi`: the forward
/// pass's [`fma_rows`] with each gradient broadcast to 16 lanes.
#[inline(always)]
fn gradient_step<I: Isa, const S: usize, const CG: usize>(
    acc: &mut [[Lanes; CG]; S],
    x: &[Lanes; S],
    gi: &[f32; CG],
) {
    let broadcast: [Lanes; CG] = std::array::from_fn(|c| [gi[c]; LANES]);
    fma_rows::<I, S, CG>(acc, x, &broadcast);
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

    /// Values whose sums depend on the order of addition.
    fn uneven<const CG: usize>() -> [Lanes; CG] {
        std::array::from_fn(|c| {
            std::array::from_fn(|l| {
                ((c * 16 + l) as f32 * 0.37).sin() * 10f32.powi((l % 5) as i32 - 2)
            })
        })
    }

    #[test]
    fn lane_sums_sum_each_vector_by_halving() {
        let acc = uneven::<10>();
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

    /// The shuffles of the AVX-512 path add the lanes the portable folds do.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_lane_sums_have_the_bits_of_the_portable_ones() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("no AVX-512 here: nothing to compare");
            return;
        }
        fn check<const CG: usize>() {
            let acc = uneven::<CG>();
            let portable = lane_sums::<crate::simd::Portable, CG>(&acc).map(f32::to_bits);
            let simd = lane_sums::<crate::simd::Avx512, CG>(&acc).map(f32::to_bits);
            assert_eq!(simd, portable, "CG {CG}");
        }
        check::<2>();
        check::<4>();
        check::<6>();
        check::<8>();
        check::<10>();
        check::<12>();
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
