//! The two-layer ReLU network `ReLU(X W1) W2` trained by minibatch SGD.
//!
//! The epoch kernel skips the zeros of X (see the crate's private `sparse`
//! module) and splits each minibatch between threads by fixed blocks of 16
//! hidden units. Each thread first scans its share of X's columns into its
//! piece of the minibatch's CSC, which all threads then read; each computes
//! its units of the hidden layer and their partial logits; the threads meet,
//! each takes the softmax of its share of the rows (the partials summed in
//! block order); then each updates its own columns of W1 and rows of W2.
//! The products with X walk it column by column (CSC) so that a tile of up
//! to 128 hidden units of the accumulating rows stays in L1 cache. While they do,
//! each thread prefetches its columns of the next minibatch a few lines per
//! column, so that X streams from memory under the arithmetic; the sums over
//! the rows of the minibatch (W2's gradient, the partial logits) run in
//! registers, several side by side.

use std::ops::{Deref, Range};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2};

use crate::aligned::{LineAligned, LineLanes};
use crate::chunked::{chunk_gradient, class_groups, with_class_group};
use crate::error::Result;
use crate::eval::{loss_err_of, predict_of, Logits};
use crate::loss::LossErr;
use crate::parallel::{run_team, split_blocks, team_or_alone, threads_for};
use crate::sgd::{check_labels, check_positive, check_rows, check_shape, Sgd};
use crate::simd::{axpy_n, mul_add, multiversion, with_const, Isa, Lanes, LANES};
use crate::softmax_rows::{
    drive_epoch, lane_groups, pack_lane_rows, sum_partials, unpack_lane_rows, EpochPart,
    EpochShared,
};
use crate::sparse::{Csc, Prefetcher, Views};

/// Hidden units processed together in the products with X: up to eight
/// lane groups, whose weights or accumulators stay in registers. A pass
/// over the minibatch's CSC costs about the same per entry whatever the
/// tile's width (measured for 32 to 112), so the fewer passes the better,
/// up to the point where a tile of the minibatch's rows no longer fits in
/// L1 (see [`tiles`]).
const TILE: usize = 8 * LANES;

/// The widest tile of the evaluation with AVX-512, whose 32 registers hold
/// its weights: hidden 400 then takes two passes over a chunk's X instead of
/// four. The loss and error over 60000 rows took 137.5–141.5 ms against
/// 153.4–156.4 ms with tiles of 128 (Intel, chunks of 32 to 64 rows,
/// medians of 5), and tiles of 256 were no faster. Over the evaluation's
/// chunks of 48 rows (see its `chunk_rows`) such a tile is 39 KiB. AVX2's
/// 16 registers cannot hold 208 weights (304 against 278 ms), so it keeps
/// [`TILE`].
const EVAL_TILE: usize = 13 * LANES;

/// The widest part, in blocks of 16 hidden units, that a thread stepping
/// every part alone merges narrower ones into (see [`NnPart::merge`]). With
/// the minibatch's X and its CSC, such a part's W1 (784 × 256 floats), hidden
/// layer and G1 still fit a 2 MiB L2. On one core, hidden-400 epochs
/// stepping 1, 2, 3 or 4 parts took about the same time (389, 378, 388 and
/// 374 ms), 7 parts 458 ms.
const MERGED_BLOCKS: usize = 16;

/// One epoch of minibatch SGD on the two-layer network, updating `w1` (n×d)
/// and `w2` (d×k) in place. For a batch of b rows:
///
/// ```text
/// Z1 = ReLU(Xb W1)            G2 = softmax(Z1 W2) − onehot(yb)
/// G1 = 1{Z1 > 0} ∘ (G2 W2ᵀ)
/// W1 ← W1 − lr/b · Xbᵀ G1     W2 ← W2 − lr/b · Z1ᵀ G2
/// ```
///
/// Both gradients are computed before either update. Batches are taken in
/// order without shuffling; a final partial batch is used and divided by its
/// own size. Every argument is checked before the weights are touched: on
/// error they are unchanged. An empty `x` (m = 0) is a no-op. The result is
/// the same for any number of threads. X's zero pixels are skipped, so a
/// non-finite weight met only by zero pixels gives no NaN (numpy's
/// `0 · inf` would).
pub fn nn_epoch(
    x: ArrayView2<'_, f32>,
    y: ArrayView1<'_, u8>,
    mut w1: ArrayViewMut2<'_, f32>,
    mut w2: ArrayViewMut2<'_, f32>,
    sgd: Sgd,
) -> Result<()> {
    check_arguments(x, y, w1.view(), w2.view(), sgd)?;
    let (m, n) = x.dim();
    if m == 0 {
        return Ok(());
    }
    let d = w2.nrows();
    let threads = threads_for(m * n * d / 4, d.div_ceil(LANES));
    checked_nn_epoch(x, y, (w1.view_mut(), w2.view_mut()), sgd, threads, |_| {});
    Ok(())
}

/// [`nn_epoch`] on checked, non-empty arguments with `threads` threads;
/// `watch` sees the state they share before they start and after they end.
fn checked_nn_epoch(
    x: ArrayView2<'_, f32>,
    y: ArrayView1<'_, u8>,
    (mut w1, mut w2): (ArrayViewMut2<'_, f32>, ArrayViewMut2<'_, f32>),
    sgd: Sgd,
    threads: usize,
    mut watch: impl FnMut(&EpochShared<'_>),
) {
    let (m, n) = x.dim();
    let (d, k) = w2.dim();
    let kg = lane_groups(k);
    let x = x.as_standard_layout();
    let y = y.as_standard_layout();
    let hidden_blocks = d.div_ceil(LANES);
    let parts = team_or_alone(threads, |threads| {
        let parts: Vec<Mutex<NnPart>> = split_blocks(hidden_blocks, threads)
            .into_iter()
            .enumerate()
            .map(|(p, owned)| {
                Mutex::new(NnPart::new(
                    w1.view(),
                    w2.view(),
                    (p, threads),
                    owned,
                    sgd.batch.min(m),
                ))
            })
            .collect();
        // The widest part's first tile of the hidden layer over a minibatch.
        let widest = hidden_blocks.div_ceil(threads) * LANES;
        let tile_bytes = sgd.batch.min(m) * widest.min(TILE) * std::mem::size_of::<f32>();
        let nn_shared = NnShared {
            csc: [0, 1].map(|_| (0..threads).map(|_| RwLock::new(Csc::new())).collect()),
            views: if tile_bytes >= ROW_VIEW_FROM {
                Views::BOTH
            } else {
                Views::COLUMNS
            },
        };
        let shared = EpochShared::new(
            x.as_slice().expect("standard layout"),
            y.as_slice().expect("standard layout"),
            n,
            k,
            sgd,
            hidden_blocks,
            threads,
        );
        watch(&shared);
        let team = run_team(threads, |me| nn_worker((&shared, &nn_shared, &parts, me)));
        watch(&shared);
        team.map(|()| parts)
    });
    for part in parts {
        let part = part.into_inner().expect("the workers finished");
        let h0 = part.blocks.start * LANES;
        let live = part.width.min(d - h0);
        for (j, row) in part.w1.chunks_exact(part.width).enumerate() {
            for (dst, &src) in w1.row_mut(j).iter_mut().skip(h0).zip(&row[..live]) {
                *dst = src;
            }
        }
        unpack_lane_rows(&part.w2[..live * kg], kg, w2.view_mut(), h0);
    }
}

fn check_arguments(
    x: ArrayView2<'_, f32>,
    y: ArrayView1<'_, u8>,
    w1: ArrayView2<'_, f32>,
    w2: ArrayView2<'_, f32>,
    sgd: Sgd,
) -> Result<()> {
    let (m, n) = x.dim();
    sgd.check()?;
    check_positive("n (columns of X)", n)?;
    check_positive("d (hidden units)", w1.ncols())?;
    check_positive("k (columns of W2)", w2.ncols())?;
    check_rows("X", m, y.len())?;
    check_shape("W1", w1.dim(), n, w1.ncols())?;
    check_shape("W2", w2.dim(), w1.ncols(), w2.ncols())?;
    check_labels(y, w2.ncols())
}

/// Columns `h0..h0+width` of W1 (zero beyond d), row-major n × width.
fn pack_w1(w1: ArrayView2<'_, f32>, h0: usize, width: usize) -> LineAligned {
    let mut packed = LineAligned::zeros(w1.nrows() * width);
    for (row, dst) in w1.rows().into_iter().zip(packed.chunks_exact_mut(width)) {
        for (d, &s) in dst.iter_mut().zip(row.iter().skip(h0)) {
            *d = s;
        }
    }
    packed
}

/// What the parts of an epoch share: the minibatch's X by columns (CSC),
/// built in pieces — part p scans its own range of columns — and
/// double-buffered by minibatch parity, so that a part can build the next
/// minibatch's piece while another still reads this one's.
struct NnShared {
    csc: [Vec<RwLock<Csc>>; 2],
    /// The views of the CSC built: columns for W1's update, and rows for
    /// the hidden layer where a tile of it outgrows L1 (see
    /// [`ROW_VIEW_FROM`]).
    views: Views,
}

/// The size of a tile of the hidden layer over a minibatch (rows × units ×
/// 4 bytes) from which the epochs build the CSC's row view too and walk it
/// for the hidden layer ([`hidden_tile_by_rows`]); the evaluation always
/// does, and builds no column view. Measured on AMD Zen 4 (32 KiB of L1d),
/// paired ratios of interleaved runs, same bits: hidden-400 epochs (tiles
/// of 128 units over 100 rows, 50 KiB) 0.90–0.93 on one thread and
/// 0.95–0.99 on two; hidden-100 epochs, in a trial that built both views
/// always, 1.01 on one thread (112 units, 44 KiB) and 1.25 on two (64
/// units, 25 KiB), where the row view's scan cost more than its walk
/// saved. The evaluation: hidden-400 loss and error 0.78 on two threads
/// and 0.79 on one, hidden 100 0.90.
const ROW_VIEW_FROM: usize = 48 * 1024;

/// The columns of X whose CSC part `p` of `parts` builds.
fn csc_columns(n: usize, parts: usize, p: usize) -> Range<usize> {
    n * p / parts..n * (p + 1) / parts
}

/// One thread's share: its blocks of hidden units, their columns of W1 and
/// rows of W2, and its work space.
struct NnPart {
    /// The pieces of the CSC it builds (see [`csc_columns`]): its own, or,
    /// merged, every part's; and how many there are.
    pieces: Range<usize>,
    of: usize,
    blocks: Range<usize>,
    width: usize,
    w1: LineAligned,
    w2: LineLanes,
    /// W2ᵀ for these units: k rows of `width`. Left where the allocator
    /// puts it: on a line (a `LineAligned`) the epochs were 2–10% slower on
    /// AMD Zen 4 (hidden 100 on 1 and 2 threads, hidden 400 on 1; paired
    /// ratios over 5–7 interleaved rounds), though each 16-unit load then
    /// lies in one line; not understood (4 KiB aliasing with G1's stores is
    /// a guess).
    w2t: Vec<f32>,
    /// Classes per group in the W2 gradient (see [`class_groups`]).
    group: usize,
    z1: LineAligned,
    g1: LineAligned,
    /// The next minibatch's block of X for this part's CSC piece, fetched
    /// into cache during the products with this one.
    prefetch: Prefetcher,
}

impl NnPart {
    fn new(
        w1: ArrayView2<'_, f32>,
        w2: ArrayView2<'_, f32>,
        (index, parts): (usize, usize),
        blocks: Range<usize>,
        batch: usize,
    ) -> Self {
        let k = w2.ncols();
        let width = blocks.len() * LANES;
        let h0 = blocks.start * LANES;
        let w1 = pack_w1(w1, h0, width);
        let w2 = pack_lane_rows(w2, h0..h0 + width, lane_groups(k));
        NnPart::assemble((index..index + 1, parts), blocks, (w1, w2), k, batch)
    }

    /// A part of blocks `blocks` with W1's and W2's packed columns and rows
    /// for them, for `k` classes and minibatches of up to `batch` rows.
    fn assemble(
        (pieces, of): (Range<usize>, usize),
        blocks: Range<usize>,
        (w1, w2): (LineAligned, LineLanes),
        k: usize,
        batch: usize,
    ) -> Self {
        let width = blocks.len() * LANES;
        let mut part = NnPart {
            pieces,
            of,
            blocks,
            width,
            w1,
            w2t: vec![0.0; k * width],
            w2,
            group: class_groups(k).0,
            z1: LineAligned::zeros(batch * width),
            g1: LineAligned::zeros(batch * width),
            prefetch: Prefetcher::none(),
        };
        part.transpose_w2(k, lane_groups(k));
        part
    }

    /// Classes, and rows of its largest minibatch.
    fn k_and_batch(&self) -> (usize, usize) {
        (self.w2t.len() / self.width, self.z1.len() / self.width)
    }

    /// One part for the consecutive `parts`.
    fn merged(parts: &[&NnPart]) -> Self {
        let (first, last) = (parts[0], parts[parts.len() - 1]);
        let (k, batch) = first.k_and_batch();
        let blocks = first.blocks.start..last.blocks.end;
        let width = blocks.len() * LANES;
        let n = first.w1.len() / first.width;
        let mut w1 = LineAligned::zeros(n * width);
        let kg = lane_groups(k);
        let mut w2 = LineLanes::zeros(width * kg);
        let mut h0 = 0;
        for part in parts {
            for (all, own) in w1
                .chunks_exact_mut(width)
                .zip(part.w1.chunks_exact(part.width))
            {
                all[h0..h0 + part.width].copy_from_slice(own);
            }
            w2[h0 * kg..(h0 + part.width) * kg].copy_from_slice(&part.w2);
            h0 += part.width;
        }
        let pieces = (first.pieces.start..last.pieces.end, first.of);
        NnPart::assemble(pieces, blocks, (w1, w2), k, batch)
    }

    /// W2 from W2ᵀ, after the update.
    fn untranspose_w2(&mut self, k: usize, kg: usize) {
        for (h, row) in self.w2.chunks_exact_mut(kg).enumerate() {
            for c in 0..k {
                row[c / LANES][c % LANES] = self.w2t[c * self.width + h];
            }
        }
    }

    fn transpose_w2(&mut self, k: usize, kg: usize) {
        for (h, row) in self.w2.chunks_exact(kg).enumerate() {
            for c in 0..k {
                self.w2t[c * self.width + h] = row[c / LANES][c % LANES];
            }
        }
    }
}

/// The tiles (start, width) that cover `w` hidden units: tiles of `tile`
/// ([`TILE`] in the epochs), the last one narrower. (One tile of 128 over
/// 100 rows is 50 KiB and still measured faster than two. For wider
/// layers, tiles of 80 were faster than 128 while the hidden layer's rows
/// straddled cache lines; with them aligned, hidden-400 epochs took 303.5
/// ms with tiles of 128 against 339.4 ms with tiles of 80, medians of 14
/// interleaved runs.)
fn tiles(w: usize, tile: usize) -> impl Iterator<Item = (usize, usize)> {
    let step = tile.min(w.max(1));
    (0..w).step_by(step).map(move |t0| (t0, step.min(w - t0)))
}

/// Runs `$body` with the const `$t` set to the tile width `$value` (one of
/// those [`tiles`] returns: a multiple of 16 up to 128, or, `wide`, up to
/// [`EVAL_TILE`]).
macro_rules! with_tile_width {
    ($value:expr, $t:ident => $body:expr) => {
        $crate::simd::with_const!($value, $t in [128 112 96 80 64 48 32; 16] => $body)
    };
    (wide $value:expr, $t:ident => $body:expr) => {
        $crate::simd::with_const!($value, $t in [208 192 176 160 144 128 112 96 80 64 48 32; 16] => $body)
    };
}

/// `z1 = ReLU(X W1)` for the rows of `csc` over hidden units of width `w`
/// (a multiple of 16), in tiles of up to `MAX` units ([`TILE`] or
/// [`EVAL_TILE`]).
#[inline(always)]
fn hidden_layer<I: Isa, const MAX: usize>(
    csc: &[impl Deref<Target = Csc>],
    n: usize,
    (w1, w): (&[f32], usize),
    z1: &mut [f32],
    (x, pf): (&[f32], &mut Prefetcher),
) {
    z1.fill(0.0);
    let by_rows = csc.iter().all(|piece| piece.views().rows);
    for (t0, width) in tiles(w, MAX) {
        let tile = (csc, n, w1, w, t0);
        if MAX > TILE {
            with_tile_width!(wide width, T => hidden_tile::<I, T>(tile, by_rows, z1, (x, pf)));
        } else {
            with_tile_width!(width, T => hidden_tile::<I, T>(tile, by_rows, z1, (x, pf)));
        }
    }
    for z in z1.iter_mut() {
        // `max` would turn NaN into 0; keep it visible as numpy does.
        if *z <= 0.0 {
            *z = 0.0;
        }
    }
}

/// Columns `t0..t0+T` of `z1 += X W1`, walking X by columns so that the
/// `T` weights of a pixel stay in registers.
#[inline(always)]
fn hidden_tile<I: Isa, const T: usize>(
    (csc, n, w1, w, t0): (&[impl Deref<Target = Csc>], usize, &[f32], usize, usize),
    by_rows: bool,
    z1: &mut [f32],
    (x, pf): (&[f32], &mut Prefetcher),
) {
    if by_rows {
        return hidden_tile_by_rows::<I, T>((csc, n, w1, w, t0), z1, (x, pf));
    }
    let mut w1_rows = w1.chunks_exact(w).take(n);
    for piece in csc {
        for (j, w1j) in (0..piece.cols()).zip(&mut w1_rows) {
            pf.step(x);
            let (rows, vals) = piece.col(j);
            let wv: [f32; T] = w1j[t0..t0 + T].try_into().expect("tile");
            for (&i, &v) in rows.iter().zip(vals) {
                let at = i as usize * w + t0;
                let z: &mut [f32; T] = (&mut z1[at..at + T]).try_into().expect("tile");
                axpy_n::<I, T>(z, v, &wv);
            }
        }
    }
}

/// [`hidden_tile`] from the CSC's row view: X walked by chunks of 16
/// columns and, in each, by rows, each row's `T` sums kept in registers
/// over its non-zeros in the chunk (5 on average in MNIST), so that its row
/// of `z1` is loaded and stored once a chunk instead of once a non-zero;
/// the weights of the chunk's 16 pixels stay in L1. Each sum still adds
/// the pixels in order, so the bits are those of the walk column by column.
/// It pays where a tile of `z1` outgrows L1 (see [`ROW_VIEW_FROM`]).
#[inline(always)]
fn hidden_tile_by_rows<I: Isa, const T: usize>(
    (csc, n, w1, w, t0): (&[impl Deref<Target = Csc>], usize, &[f32], usize, usize),
    z1: &mut [f32],
    (x, pf): (&[f32], &mut Prefetcher),
) {
    let mut col0 = 0;
    for piece in csc {
        let cols = piece.cols();
        assert!(col0 + cols <= n, "the pieces cover the columns of W1");
        for c in 0..piece.chunks() {
            for _ in c * LANES..cols.min((c + 1) * LANES) {
                pf.step(x);
            }
            for (i, js, vals) in piece.row_groups(c) {
                let at = i * w + t0;
                let z: &mut [f32; T] = (&mut z1[at..at + T]).try_into().expect("tile");
                let mut acc = *z;
                for (&j, &v) in js.iter().zip(vals) {
                    let p = (col0 + j as usize) * w + t0;
                    let w1j: &[f32; T] = w1[p..p + T].try_into().expect("tile");
                    axpy_n::<I, T>(&mut acc, v, w1j);
                }
                *z = acc;
            }
        }
        col0 += cols;
    }
}

/// Columns `t0..t0+T` of `W1 ← W1 + step · Xᵀ G1`, the gradient of each
/// pixel summed in registers before it is applied.
#[inline(always)]
fn w1_update_tile<I: Isa, const T: usize>(
    csc: &[impl Deref<Target = Csc>],
    (w1, w, t0): (&mut [f32], usize, usize),
    (g1, step): (&[f32], f32),
    (x, pf): (&[f32], &mut Prefetcher),
) {
    let mut w1_rows = w1.chunks_exact_mut(w);
    for piece in csc {
        for (j, w1j) in (0..piece.cols()).zip(&mut w1_rows) {
            pf.step(x);
            let (rows, vals) = piece.col(j);
            if rows.is_empty() {
                continue;
            }
            let mut acc = [0.0f32; T];
            for (&i, &v) in rows.iter().zip(vals) {
                let at = i as usize * w + t0;
                let g: &[f32; T] = g1[at..at + T].try_into().expect("tile");
                axpy_n::<I, T>(&mut acc, v, g);
            }
            let wj: &mut [f32; T] = (&mut w1j[t0..t0 + T]).try_into().expect("tile");
            axpy_n::<I, T>(wj, step, &acc);
        }
    }
}

/// Partial logits of hidden block `block` (16 units at `block * 16` within
/// rows of width `w`): `out[i] = Σ_h z1[i, h] W2[h]`, the units added in
/// order. Rows are taken four at a time, so that four chains of dependent
/// multiply-adds overlap.
#[inline(always)]
fn block_logits<I: Isa>(
    z1: &[f32],
    w: usize,
    w2: &[Lanes],
    kg: usize,
    block: usize,
    out: &mut [Lanes],
) {
    const R: usize = 4;
    let h0 = block * LANES;
    let w2b = &w2[h0 * kg..(h0 + LANES) * kg];
    let rows = out.len() / kg;
    let (z1, z1_rest) = z1[..rows * w].split_at(rows / R * R * w);
    let (out, out_rest) = out.split_at_mut(rows / R * R * kg);
    for (zs, os) in z1.chunks_exact(R * w).zip(out.chunks_exact_mut(R * kg)) {
        for g in 0..kg {
            let acc = rows_logits::<I, R>((zs, w, h0), w2b, kg, g);
            for (r, a) in acc.into_iter().enumerate() {
                os[r * kg + g] = a;
            }
        }
    }
    for (zi, oi) in z1_rest.chunks_exact(w).zip(out_rest.chunks_exact_mut(kg)) {
        for (g, o) in oi.iter_mut().enumerate() {
            *o = rows_logits::<I, 1>((zi, w, h0), w2b, kg, g)[0];
        }
    }
}

/// Lane group `g` of the partial logits of `R` rows of `zs` (width `w`)
/// over the 16 units from `h0`.
#[inline(always)]
fn rows_logits<I: Isa, const R: usize>(
    (zs, w, h0): (&[f32], usize, usize),
    w2b: &[Lanes],
    kg: usize,
    g: usize,
) -> [Lanes; R] {
    let mut acc = [[0.0f32; LANES]; R];
    for hh in 0..LANES {
        let w2h = &w2b[hh * kg + g];
        for (r, a) in acc.iter_mut().enumerate() {
            let z = zs[r * w + h0 + hh];
            for l in 0..LANES {
                a[l] = mul_add::<I>(z, w2h[l], a[l]);
            }
        }
    }
    acc
}

/// One row's `G1 = 1{Z1 > 0} ∘ (G2 W2ᵀ)` on the `NB` blocks of 16 hidden
/// units from block `b0`: `g1` and `z` are the row's G1 and Z1 (width `w`),
/// `g2` its logit gradients for `k` classes, `w2t` is W2ᵀ (k × w). Each
/// unit's sum runs over the classes in order; each class's gradient is
/// broadcast once for the `NB` blocks, whose sums are independent chains.
#[inline(always)]
fn hidden_gradients<I: Isa, const NB: usize>(
    (g1, z, g2, k): (&mut [f32], &[f32], &[Lanes], usize),
    (w2t, w): (&[f32], usize),
    b0: usize,
) {
    let units = b0 * LANES..(b0 + NB) * LANES;
    let mut acc = [[0.0f32; LANES]; NB];
    for c in 0..k {
        let gc = g2[c / LANES][c % LANES];
        let w2c = &w2t[c * w..][units.clone()];
        for (a, v) in acc.iter_mut().zip(w2c.chunks_exact(LANES)) {
            axpy_n::<I, LANES>(a, gc, v.try_into().expect("lanes"));
        }
    }
    for ((g, a), &z) in g1[units.clone()]
        .iter_mut()
        .zip(acc.as_flattened())
        .zip(&z[units])
    {
        // Not `z <= 0.0` alone: numpy's `Z1 > 0` is false for NaN.
        *g = if z <= 0.0 || z.is_nan() { 0.0 } else { *a };
    }
}

/// `W2ᵀ ← W2ᵀ + step · G2ᵀ Z1` (k × w), for class groups of `CG`: the
/// gradient of 16 units for `CG` classes is summed over the rows (in order)
/// in registers, then applied.
#[inline(always)]
fn update_w2t<I: Isa, const CG: usize>(
    (z1, w): (&[f32], usize),
    (g2, kg): (&[Lanes], usize),
    w2t: &mut [f32],
    (k, step): (usize, f32),
) {
    for block in 0..w / LANES {
        for q in 0..k.div_ceil(CG) {
            let [acc] = chunk_gradient::<I, 1, CG, false>((z1, w), block, (g2, kg), q, &[]);
            for (c, a) in (q * CG..k).zip(&acc) {
                let at = c * w + block * LANES;
                let w2c: &mut Lanes = (&mut w2t[at..at + LANES]).try_into().expect("lanes");
                for l in 0..LANES {
                    w2c[l] = mul_add::<I>(step, a[l], w2c[l]);
                }
            }
        }
    }
}

/// A worker's arguments: the shared state, every part, which thread this is.
type NnArgs<'s, 'a> = (
    &'s EpochShared<'a>,
    &'s NnShared,
    &'s [Mutex<NnPart>],
    usize,
);

multiversion! {
    fn nn_worker(args: NnArgs<'_, '_>) -> () => nn_worker_generic
}

#[inline(always)]
fn nn_worker_generic<I: Isa>((sh, shared, parts, me): NnArgs<'_, '_>) {
    drive_epoch::<I, NnPart>(sh, shared, parts, me);
}

/// Read access to every piece of the minibatch's CSC.
fn csc_pieces(shared: &NnShared, parity: usize) -> Vec<RwLockReadGuard<'_, Csc>> {
    shared.csc[parity]
        .iter()
        .map(|c| c.read().expect("no thread panicked"))
        .collect()
}

impl EpochPart for NnPart {
    type Extra = NnShared;
    const SHARES_PREPARED: bool = true;

    /// This part's piece of the minibatch's CSC: its columns of X.
    #[inline(always)]
    fn prepare<I: Isa>(
        &mut self,
        sh: &EpochShared<'_>,
        shared: &NnShared,
        rows: Range<usize>,
        parity: usize,
    ) {
        let n = sh.n;
        // Whatever of this block is not in cache yet, then the block.
        let left = self.prefetch.lines_left();
        self.prefetch.issue(sh.x, left);
        for piece in self.pieces.clone() {
            shared.csc[parity][piece]
                .write()
                .expect("no thread panicked")
                .fill::<I>(
                    &sh.x[rows.start * n..rows.end * n],
                    n,
                    csc_columns(n, self.of, piece),
                    shared.views,
                );
        }
        // The next block, spread over this minibatch's passes over the
        // columns of X: one per tile in each of the two products.
        let next = rows.end..(rows.end + sh.batch).min(sh.m);
        let columns = csc_columns(n, self.of, self.pieces.start).start
            ..csc_columns(n, self.of, self.pieces.end - 1).end;
        self.prefetch = Prefetcher::new(n, next, columns);
        self.prefetch
            .spread_over(2 * tiles(self.width, TILE).count() * n);
    }

    /// This part's hidden units of the minibatch and their partial logits.
    #[inline(always)]
    fn forward<I: Isa>(
        &mut self,
        sh: &EpochShared<'_>,
        shared: &NnShared,
        rows: Range<usize>,
        parity: usize,
    ) {
        let (n, kg, w, b) = (sh.n, sh.kg, self.width, rows.len());
        let csc = csc_pieces(shared, parity);
        let z1 = &mut self.z1[..b * w];
        hidden_layer::<I, TILE>(&csc, n, (&self.w1, w), z1, (sh.x, &mut self.prefetch));
        for (local, block) in self.blocks.clone().enumerate() {
            let mut partial = sh.partials[parity][block]
                .write()
                .expect("no thread panicked");
            block_logits::<I>(z1, w, &self.w2, kg, local, &mut partial[..b * kg]);
        }
    }

    /// The updates of this part's columns of W1 and rows of W2, from the
    /// minibatch's logit gradients `g2`.
    #[inline(always)]
    fn backward<I: Isa>(
        &mut self,
        sh: &EpochShared<'_>,
        shared: &NnShared,
        rows: Range<usize>,
        parity: usize,
        g2: &[Lanes],
    ) {
        let (k, kg, w, b) = (sh.k, sh.kg, self.width, rows.len());
        let csc = csc_pieces(shared, parity);
        let z1 = &self.z1[..b * w];
        // G1 = 1{Z1 > 0} ∘ (G2 W2ᵀ), with W2 from before this batch's
        // update, up to 4 blocks of 16 units at a time summed over the
        // classes in registers.
        let blocks = w / LANES;
        for ((g1, z), g2) in self
            .g1
            .chunks_exact_mut(w)
            .zip(z1.chunks_exact(w))
            .zip(g2.chunks_exact(kg))
        {
            let mut b0 = 0;
            while b0 < blocks {
                let row = (&mut *g1, z, g2, k);
                b0 += with_const!(blocks - b0, NB in [1 2 3; 4] => {
                    hidden_gradients::<I, NB>(row, (&self.w2t, w), b0);
                    NB
                });
            }
        }
        let step = -(sh.lr / b as f32);
        // W2 ← W2 − lr/b · Z1ᵀ G2, 16 units at a time: each class's
        // gradient summed over the rows in registers, applied to W2ᵀ.
        let (group, w2t) = (self.group, &mut self.w2t);
        with_class_group!(group, CG => update_w2t::<I, CG>((z1, w), (g2, kg), w2t, (k, step)));
        self.untranspose_w2(k, kg);
        // W1 ← W1 − lr/b · Xbᵀ G1, column of X by column.
        let g1 = (&self.g1[..b * w], step);
        let pf = &mut self.prefetch;
        for (t0, width) in tiles(w, TILE) {
            let w1 = (&mut self.w1[..], w, t0);
            with_tile_width!(width, T => w1_update_tile::<I, T>(&csc, w1, g1, (sh.x, pf)));
        }
    }

    /// The parts merged into groups of up to [`MERGED_BLOCKS`] blocks, so
    /// that each product walks the minibatch's X once per tile of 128 units
    /// of a group instead of once per tile of each part. The products, the
    /// logits and the updates are summed unit by unit in the same order
    /// however the units are split, so the bits are the same.
    fn merge<'p>(parts: impl Iterator<Item = &'p Self>) -> Vec<Self> {
        let parts: Vec<&NnPart> = parts.collect();
        if parts.len() < 2 {
            return Vec::new();
        }
        // Consecutive parts, each group closed before the part that would
        // make it wider than MERGED_BLOCKS.
        let mut groups = Vec::new();
        let mut first = 0;
        for end in 1..=parts.len() {
            let too_wide =
                |next: &&NnPart| next.blocks.end - parts[first].blocks.start > MERGED_BLOCKS;
            if parts.get(end).is_none_or(too_wide) {
                groups.push(&parts[first..end]);
                first = end;
            }
        }
        if groups.len() == parts.len() {
            return Vec::new();
        }
        groups.into_iter().map(NnPart::merged).collect()
    }

    fn split<'p>(merged: Vec<Self>, mut parts: impl Iterator<Item = &'p mut Self>) {
        for whole in merged {
            let (k, _) = whole.k_and_batch();
            let kg = lane_groups(k);
            let mut h0 = 0;
            while h0 < whole.width {
                let part = parts.next().expect("the parts merged");
                for (all, own) in whole
                    .w1
                    .chunks_exact(whole.width)
                    .zip(part.w1.chunks_exact_mut(part.width))
                {
                    own.copy_from_slice(&all[h0..h0 + part.width]);
                }
                part.w2
                    .copy_from_slice(&whole.w2[h0 * kg..(h0 + part.width) * kg]);
                part.transpose_w2(k, kg);
                part.prefetch = Prefetcher::none();
                h0 += part.width;
            }
        }
    }
}

/// Logits `ReLU(X W1) W2` of the network, for evaluation.
pub(crate) struct TwoLayerLogits {
    n: usize,
    d: usize,
    k: usize,
    kg: usize,
    width: usize,
    w1: LineAligned,
    w2: LineLanes,
}

impl TwoLayerLogits {
    pub fn new(w1: ArrayView2<'_, f32>, w2: ArrayView2<'_, f32>) -> Self {
        let (d, k) = w2.dim();
        let kg = lane_groups(k);
        let width = d.div_ceil(LANES) * LANES;
        TwoLayerLogits {
            n: w1.nrows(),
            d,
            k,
            kg,
            width,
            w1: pack_w1(w1, 0, width),
            w2: pack_lane_rows(w2, 0..width, kg),
        }
    }
}

pub(crate) struct TwoLayerScratch {
    csc: Csc,
    z1: LineAligned,
    partials: Vec<LineLanes>,
}

multiversion! {
    fn two_layer_logits(args: (&TwoLayerLogits, &[f32], &mut TwoLayerScratch, &mut [Lanes])) -> () => two_layer_logits_generic
}

#[inline(always)]
fn two_layer_logits_generic<I: Isa>(
    (model, x, scratch, out): (&TwoLayerLogits, &[f32], &mut TwoLayerScratch, &mut [Lanes]),
) {
    let (n, w, kg) = (model.n, model.width, model.kg);
    let rows = x.len() / n;
    scratch.csc.fill::<I>(x, n, 0..n, Views::ROWS);
    scratch.z1.resize(rows * w);
    let (csc, w1, z1) = (&[&scratch.csc], (&model.w1[..], w), &mut scratch.z1[..]);
    let pf = (x, &mut Prefetcher::none());
    if I::AVX512 {
        hidden_layer::<I, EVAL_TILE>(csc, n, w1, z1, pf);
    } else {
        hidden_layer::<I, TILE>(csc, n, w1, z1, pf);
    }
    scratch.partials.resize_with(w / LANES, LineLanes::default);
    for (block, partial) in scratch.partials.iter_mut().enumerate() {
        partial.resize(rows * kg);
        block_logits::<I>(&scratch.z1, w, &model.w2, kg, block, partial);
    }
    for (i, o) in out.chunks_exact_mut(kg).take(rows).enumerate() {
        sum_partials(o, scratch.partials.iter().map(|p| &p[i * kg..(i + 1) * kg]));
    }
}

impl Logits for TwoLayerLogits {
    type Scratch = TwoLayerScratch;
    fn classes(&self) -> usize {
        self.k
    }
    fn features(&self) -> usize {
        self.n
    }
    fn work_per_row(&self) -> usize {
        self.n * self.d / 8
    }
    /// A tile of the hidden layer (see [`tiles`]) over 48 rows, 24 KiB (39
    /// with AVX-512's [`EVAL_TILE`]), stays in or near L1 while the chunk's
    /// columns of X are added into it. (Hidden-400 loss and error over
    /// 60000 rows on the Intel machine, tiles of 128: 167.9 ms in chunks of
    /// 64, 168.4 of 48, 179.4 of 96, 183.5 of 32; medians of 12. On AMD Zen
    /// 4, whose L1 holds 32 KiB, 48 rows against 64 with tiles of 208, same
    /// results: paired ratios 0.937 / 0.884 at 2 / 1 threads, hidden 100
    /// 0.954 at both, 13 interleaved rounds; 32 rows 0.950 / 0.982.)
    fn chunk_rows(&self) -> usize {
        48
    }
    fn scratch(&self, _rows: usize) -> TwoLayerScratch {
        TwoLayerScratch {
            csc: Csc::new(),
            z1: LineAligned::default(),
            partials: Vec::new(),
        }
    }
    fn logits(&self, x: &[f32], scratch: &mut TwoLayerScratch, out: &mut [Lanes]) {
        two_layer_logits((self, x, scratch, out));
    }
}

fn check_model(
    x: ArrayView2<'_, f32>,
    w1: ArrayView2<'_, f32>,
    w2: ArrayView2<'_, f32>,
) -> Result<()> {
    check_positive("n (columns of X)", x.ncols())?;
    check_positive("d (hidden units)", w1.ncols())?;
    check_positive("k (columns of W2)", w2.ncols())?;
    check_shape("W1", w1.dim(), x.ncols(), w1.ncols())?;
    check_shape("W2", w2.dim(), w1.ncols(), w2.ncols())
}

/// Mean loss and error rate of the network (W1, W2) on (X, y). As in
/// [`nn_epoch`], X's zero pixels are skipped, `0 · inf` included.
pub fn nn_loss_err(
    x: ArrayView2<'_, f32>,
    y: ArrayView1<'_, u8>,
    w1: ArrayView2<'_, f32>,
    w2: ArrayView2<'_, f32>,
) -> Result<LossErr> {
    check_model(x, w1, w2)?;
    loss_err_of(&TwoLayerLogits::new(w1, w2), x, y)
}

/// Predicted class (argmax of `ReLU(X W1) W2`) for every row of `x`.
pub fn nn_predict(
    x: ArrayView2<'_, f32>,
    w1: ArrayView2<'_, f32>,
    w2: ArrayView2<'_, f32>,
) -> Result<Vec<u32>> {
    check_model(x, w1, w2)?;
    predict_of(&TwoLayerLogits::new(w1, w2), x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::softmax_rows::MAX_SOLO_LEVEL;
    use ndarray::{Array1, Array2};

    /// `m` rows of `n` pixels (about 70% zeros), labels below `k`, and
    /// weights for `d` hidden units, from a fixed seed.
    fn problem(
        (m, n, d, k): (usize, usize, usize, usize),
    ) -> (Array2<f32>, Array1<u8>, Array2<f32>, Array2<f32>) {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let x = Array2::from_shape_fn((m, n), |_| Some(next()).filter(|&v| v > 0.7).unwrap_or(0.0));
        let y = Array1::from_shape_fn(m, |_| ((next() * k as f32) as usize).min(k - 1) as u8);
        let w1 = Array2::from_shape_fn((n, d), |_| (next() - 0.5) * 0.2);
        let w2 = Array2::from_shape_fn((d, k), |_| (next() - 0.5) * 0.5);
        (x, y, w1, w2)
    }

    #[test]
    fn a_team_whose_third_thread_cannot_start_leaves_the_epoch_to_one() {
        let (m, n, d, k) = (300, 64, 48, 10);
        let (x, y, w1, w2) = problem((m, n, d, k));
        let sgd = Sgd { lr: 0.1, batch: 50 };
        let run = |threads: usize, starts: Option<usize>| {
            let (mut a, mut b) = (w1.clone(), w2.clone());
            let mut epoch = || {
                checked_nn_epoch(
                    x.view(),
                    y.view(),
                    (a.view_mut(), b.view_mut()),
                    sgd,
                    threads,
                    |_| {},
                )
            };
            let refused = match starts {
                Some(starts) => crate::parallel::with_spawn_limit(starts, epoch).1,
                None => {
                    epoch();
                    0
                }
            };
            (a, b, refused)
        };
        let (a1, b1, _) = run(1, None);
        let (a3, b3, refused) = run(3, Some(1));
        assert_eq!(refused, 1);
        assert_ne!(a1, w1);
        let bits = |a: &Array2<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!((bits(&a3), bits(&b3)), (bits(&a1), bits(&b1)));
    }

    /// z1 = ReLU(X W1) from two CSC pieces of X built with `views`, on
    /// code path `I`, in tiles of up to [`TILE`] units.
    fn hidden<I: Isa>(x: &Array2<f32>, w1: &Array2<f32>, views: Views) -> Vec<u32> {
        let (rows, n) = x.dim();
        let w = w1.ncols();
        let x = x.as_slice().unwrap();
        let pieces: Vec<Csc> = (0..2)
            .map(|p| {
                let mut csc = Csc::new();
                csc.fill::<I>(x, n, csc_columns(n, 2, p), views);
                csc
            })
            .collect();
        let pieces: Vec<&Csc> = pieces.iter().collect();
        let mut z1 = vec![0.0; rows * w];
        let pf = (x, &mut Prefetcher::none());
        hidden_layer::<I, TILE>(&pieces, n, (w1.as_slice().unwrap(), w), &mut z1, pf);
        z1.iter().map(|z| z.to_bits()).collect()
    }

    #[test]
    fn the_hidden_layer_by_rows_has_the_bits_of_the_walk_by_columns() {
        let (columns, rows) = (Views::COLUMNS, Views::ROWS);
        // Tiles of 128 and 80 units over 100 rows; pieces of columns with
        // partial chunks (25 and 24 columns, 9 and 8); one row.
        for (m, n, w) in [(100, 784, 208), (37, 49, 48), (1, 17, 16)] {
            let (mut x, _, w1, _) = problem((m, n, w, 2));
            x[[0, n - 1]] = f32::NAN;
            x[[m - 1, 0]] = -0.0;
            let by_columns = hidden::<crate::simd::Portable>(&x, &w1, columns);
            assert!(by_columns.iter().any(|&z| z != 0), "{m} x {n}, {w} units");
            assert_eq!(hidden::<crate::simd::Portable>(&x, &w1, rows), by_columns);
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f") {
                // The AVX-512 paths check I::AVX512 only; the CPU has it.
                // (Its multiply-adds are fused, so its bits are its own.)
                let by_columns = hidden::<crate::simd::Avx512>(&x, &w1, columns);
                for views in [rows, Views::BOTH] {
                    let bits = hidden::<crate::simd::Avx512>(&x, &w1, views);
                    assert_eq!(bits, by_columns, "{m} x {n}, {w} units, {views:?}");
                }
            }
        }
    }

    /// The weights after an epoch of `problem(shape)` with minibatches of 50
    /// on `threads` threads, the team disbanding at minibatch 3 with thread
    /// 0 alone at solo level `level` (with `Some`), and how many times
    /// thread 0 woke the others.
    fn epoch(
        shape: (usize, usize, usize, usize),
        threads: usize,
        level: Option<u32>,
    ) -> (Array2<f32>, Array2<f32>, u64) {
        let (x, y, mut w1, mut w2) = problem(shape);
        let sgd = Sgd { lr: 0.1, batch: 50 };
        let (mut started, mut calls) = (false, 0);
        // Before the epoch: the disband; after it: the count.
        let watch = |sh: &EpochShared<'_>| {
            if started {
                calls = sh.calls();
            } else if let Some(level) = level {
                sh.disband_from(3, level);
            }
            started = true;
        };
        checked_nn_epoch(
            x.view(),
            y.view(),
            (w1.view_mut(), w2.view_mut()),
            sgd,
            threads,
            watch,
        );
        (w1, w2, calls)
    }

    /// Asserts that an epoch of `problem(shape)` on `threads` threads, the
    /// team disbanding at minibatch 3 at solo level `level`, gives the
    /// weights of one thread, bit for bit; returns how many times thread 0
    /// woke the others.
    fn same_bits_as_one_thread(
        shape: (usize, usize, usize, usize),
        threads: usize,
        level: u32,
    ) -> u64 {
        let (w1, w2, _) = epoch(shape, 1, None);
        let (t1, t2, calls) = epoch(shape, threads, Some(level));
        assert_eq!(t1, w1, "W1");
        assert_eq!(t2, w2, "W2");
        calls
    }

    #[test]
    fn a_team_that_disbands_and_comes_back_keeps_the_bits_of_one_thread() {
        // 400 minibatches: thread 0 merges the four parts at minibatch 3, is
        // alone for 8 ms (solo level 1: part of the epoch), then splits them
        // and calls the team back.
        let calls = same_bits_as_one_thread((20000, 784, 100, 10), 4, 1);
        assert!(calls >= 1, "thread 0 called the team back");
    }

    #[test]
    fn a_team_that_disbands_to_the_end_keeps_the_bits_of_one_thread() {
        // Uneven parts (5 blocks on 3 threads, the last one padded), k = 3:
        // alone from minibatch 3 to the end, split when the epoch ends.
        let calls = same_bits_as_one_thread((1000, 200, 70, 3), 3, MAX_SOLO_LEVEL);
        assert_eq!(calls, 1, "the others sent home at the end");
    }

    #[test]
    fn parts_merged_into_groups_keep_the_bits_of_one_thread() {
        // 25 blocks on 8 threads (3 or 4 blocks a part): alone, thread 0
        // steps two groups, of 15 and 10 blocks.
        same_bits_as_one_thread((1500, 300, 400, 10), 8, MAX_SOLO_LEVEL);
    }

    #[test]
    fn parts_merge_into_groups_of_at_most_merged_blocks() {
        let (_, _, w1, w2) = problem((1, 40, 400, 10));
        let parts_of = |threads| -> Vec<NnPart> {
            split_blocks(25, threads)
                .into_iter()
                .enumerate()
                .map(|(p, owned)| NnPart::new(w1.view(), w2.view(), (p, threads), owned, 7))
                .collect()
        };
        let blocks = |parts: &[NnPart]| -> Vec<Range<usize>> {
            parts.iter().map(|p| p.blocks.clone()).collect()
        };
        // Two parts of 12 and 13 blocks are each wide enough already.
        assert!(NnPart::merge(parts_of(2).iter()).is_empty());
        let mut parts = parts_of(8);
        let merged = NnPart::merge(parts.iter());
        assert_eq!(blocks(&merged), [0..15, 15..25]);
        assert_eq!(
            merged.iter().map(|p| p.pieces.clone()).collect::<Vec<_>>(),
            [0..5, 5..8]
        );
        let before: Vec<Vec<f32>> = parts.iter().map(|p| p.w1.to_vec()).collect();
        for part in parts.iter_mut() {
            part.w1.fill(0.0);
            part.w2.fill([0.0; LANES]);
        }
        NnPart::split(merged, parts.iter_mut());
        for (part, w1) in parts.iter().zip(&before) {
            assert_eq!(&part.w1[..], &w1[..], "blocks {:?}", part.blocks);
        }
        let fresh = parts_of(8);
        for (part, fresh) in parts.iter().zip(&fresh) {
            assert_eq!(part.w2[..], fresh.w2[..]);
            assert_eq!(part.w2t, fresh.w2t);
        }
        // A group may be exactly MERGED_BLOCKS wide: 32 blocks of 4 a part.
        let (_, _, w1, w2) = problem((1, 40, 512, 10));
        let parts: Vec<NnPart> = split_blocks(32, 8)
            .into_iter()
            .enumerate()
            .map(|(p, owned)| NnPart::new(w1.view(), w2.view(), (p, 8), owned, 7))
            .collect();
        assert_eq!(blocks(&NnPart::merge(parts.iter())), [0..16, 16..32]);
    }
}
