//! The per-row softmax that both epochs and the evaluation share, on logits
//! held in lane groups (k classes padded to a multiple of 16 lanes).

use crate::simd::{Lanes, LANES};

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
