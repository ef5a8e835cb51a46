//! What both epoch kernels and the evaluation share: the per-row softmax on
//! logits held in lane groups (k classes padded to a multiple of 16 lanes),
//! the packing of weights into lane groups, and the state the threads of an
//! epoch share.

use std::ops::Range;
use std::sync::RwLock;

use ndarray::{ArrayView2, ArrayViewMut2};

use crate::parallel::Barrier;
use crate::sgd::Sgd;
use crate::simd::{Lanes, LANES};

/// What the threads of one epoch share: the data, the SGD settings, the
/// partial logits each block publishes, and the barrier they meet at.
pub(crate) struct EpochShared<'a> {
    pub x: &'a [f32],
    pub y: &'a [u8],
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub kg: usize,
    pub batch: usize,
    pub lr: f32,
    /// Partial logits of each block, `batch × kg` lane groups,
    /// double-buffered by minibatch parity so that the next minibatch can
    /// start while other threads still read this one.
    pub partials: [Vec<RwLock<Vec<Lanes>>>; 2],
    pub barrier: Barrier,
}

impl<'a> EpochShared<'a> {
    /// `x` is m×n row-major, `y` holds m labels below `k`; `blocks` partial
    /// sums are published per minibatch by `threads` threads.
    pub fn new(
        x: &'a [f32],
        y: &'a [u8],
        n: usize,
        k: usize,
        sgd: Sgd,
        blocks: usize,
        threads: usize,
    ) -> Self {
        let m = y.len();
        let kg = lane_groups(k);
        let rows = sgd.batch.min(m);
        EpochShared {
            x,
            y,
            m,
            n,
            k,
            kg,
            batch: sgd.batch,
            lr: sgd.lr,
            partials: [0, 1].map(|_| {
                (0..blocks)
                    .map(|_| RwLock::new(vec![[0.0; LANES]; rows * kg]))
                    .collect()
            }),
            barrier: Barrier::new(threads),
        }
    }
}

/// Rows `rows` of `a` packed in lane groups: each row becomes `kg` groups of
/// 16 lanes, zero beyond `a`'s columns; rows past `a`'s last are zero.
pub(crate) fn pack_lane_rows(a: ArrayView2<'_, f32>, rows: Range<usize>, kg: usize) -> Vec<Lanes> {
    let mut packed = vec![[0.0; LANES]; rows.len() * kg];
    for (row, dst) in a
        .rows()
        .into_iter()
        .skip(rows.start)
        .zip(packed.chunks_exact_mut(kg))
    {
        for (c, &v) in row.iter().enumerate() {
            dst[c / LANES][c % LANES] = v;
        }
    }
    packed
}

/// Writes lane-group rows back into rows `first..` of `a` (as many as both hold).
pub(crate) fn unpack_lane_rows(
    packed: &[Lanes],
    kg: usize,
    mut a: ArrayViewMut2<'_, f32>,
    first: usize,
) {
    for (src, mut row) in packed
        .chunks_exact(kg)
        .zip(a.rows_mut().into_iter().skip(first))
    {
        for (c, dst) in row.iter_mut().enumerate() {
            *dst = src[c / LANES][c % LANES];
        }
    }
}

/// Lane groups needed for `k` classes.
pub(crate) fn lane_groups(k: usize) -> usize {
    k.div_ceil(LANES)
}

/// Replaces the first `k` logits of `row` by `softmax(z) − onehot(label)`
/// and zeroes the padding lanes: the gradient of the row's loss with
/// respect to its logits. The maximum is subtracted first so that large
/// logits stay finite.
#[inline(always)]
pub(crate) fn softmax_minus_onehot(row: &mut [Lanes], k: usize, label: u8) {
    let z = row.as_flattened_mut();
    let (live, pad) = z.split_at_mut(k);
    pad.fill(0.0);
    let max = live
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    let mut sum = 0.0f32;
    for v in live.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in live.iter_mut() {
        *v /= sum;
    }
    live[usize::from(label)] -= 1.0;
}

/// Adds one block's partial logits into `out` (or copies them, for the
/// first block), so that blocks are summed in block order.
#[inline(always)]
pub(crate) fn add_partial(out: &mut [Lanes], partial: &[Lanes], first: bool) {
    if first {
        out.copy_from_slice(partial);
    } else {
        for (o, p) in out.iter_mut().zip(partial) {
            for (o, p) in o.iter_mut().zip(p) {
                *o += *p;
            }
        }
    }
}

/// Sums per-block partial logits of one row, in block order, into `out`.
#[inline(always)]
pub(crate) fn sum_partials<'a>(out: &mut [Lanes], partials: impl Iterator<Item = &'a [Lanes]>) {
    let mut first = true;
    for p in partials {
        if first {
            out.copy_from_slice(p);
            first = false;
        } else {
            for (o, p) in out.iter_mut().zip(p) {
                for (o, p) in o.iter_mut().zip(p) {
                    *o += *p;
                }
            }
        }
    }
    if first {
        out.fill([0.0; LANES]);
    }
}

/// The minibatch's logit gradients `softmax(z) − onehot(y)` into `g` (rows
/// of `kg` lane groups), where z is the sum, in block order, of the blocks'
/// partial logits that the threads published.
#[inline(always)]
pub(crate) fn minibatch_gradients(
    partials: &[std::sync::RwLock<Vec<Lanes>>],
    g: &mut [Lanes],
    k: usize,
    labels: &[u8],
) {
    let kg = lane_groups(k);
    let g = &mut g[..labels.len() * kg];
    for (index, partial) in partials.iter().enumerate() {
        let partial = partial.read().expect("no kernel thread panicked");
        for (out, p) in g.chunks_exact_mut(kg).zip(partial.chunks_exact(kg)) {
            add_partial(out, p, index == 0);
        }
    }
    for (row, &label) in g.chunks_exact_mut(kg).zip(labels) {
        softmax_minus_onehot(row, k, label);
    }
}
