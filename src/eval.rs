//! Evaluation of a trained model over a whole data set: logits are computed
//! in chunks of rows (so no m×hidden matrix is ever allocated), chunks are
//! shared out between threads, and per-chunk results are combined in chunk
//! order so that the result does not depend on the number of threads.

use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::{s, ArrayView1, ArrayView2};

use crate::aligned::LineLanes;
use crate::error::Result;
use crate::loss::{argmax, loss_err_sums, LossErr, LossErrSums};
use crate::parallel::{run_parts, threads_for};
use crate::sgd::{check_labels, check_nonempty, check_rows};
use crate::simd::{Lanes, LANES};
use crate::softmax_rows::lane_groups;

/// A model that maps rows of `X` to logits.
pub(crate) trait Logits: Sync {
    type Scratch: Send;
    /// Number of output classes (columns of the logits).
    fn classes(&self) -> usize;
    /// Number of input features (columns of X).
    fn features(&self) -> usize;
    /// Multiply-adds per row, to decide whether threads are worth it.
    fn work_per_row(&self) -> usize;
    /// Rows evaluated at a time: big enough for efficient products, small
    /// enough that a chunk's work space stays in cache.
    fn chunk_rows(&self) -> usize {
        256
    }
    /// Work space for chunks of up to `rows` rows.
    fn scratch(&self, rows: usize) -> Self::Scratch;
    /// Writes the logits of the rows of `x` (row-major) into `out`, one row
    /// of `lane_groups(classes)` lane groups per row of `x`.
    fn logits(&self, x: &[f32], scratch: &mut Self::Scratch, out: &mut [Lanes]);
}

/// `per_chunk(first_row, logits)` for every chunk of rows, in chunk order.
fn map_chunks<M: Logits, R: Send>(
    model: &M,
    x: ArrayView2<'_, f32>,
    per_chunk: impl Fn(usize, &[Lanes]) -> R + Sync,
) -> Vec<R> {
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let (m, n) = (x.nrows(), model.features());
    let kg = lane_groups(model.classes());
    let chunk_rows = model.chunk_rows();
    let chunks = m.div_ceil(chunk_rows);
    let threads = threads_for(m * model.work_per_row(), chunks);
    let next_chunk = AtomicUsize::new(0);
    let mut parts: Vec<Vec<(usize, R)>> = (0..threads).map(|_| Vec::new()).collect();
    run_parts(&mut parts, |results| {
        let mut scratch = model.scratch(chunk_rows);
        let mut out = LineLanes::zeros(chunk_rows * kg);
        // Chunks are claimed as threads get to them, so a thread that the
        // OS does not run for a while delays nobody.
        loop {
            let c = next_chunk.fetch_add(1, Ordering::Relaxed);
            if c >= chunks {
                break;
            }
            let (r0, r1) = (c * chunk_rows, m.min((c + 1) * chunk_rows));
            let logits = &mut out[..(r1 - r0) * kg];
            model.logits(&xs[r0 * n..r1 * n], &mut scratch, logits);
            results.push((c, per_chunk(r0, logits)));
        }
    });
    let mut all: Vec<(usize, R)> = parts.into_iter().flatten().collect();
    all.sort_by_key(|(c, _)| *c);
    all.into_iter().map(|(_, r)| r).collect()
}

/// The first `k` columns of logits stored as rows of `kg` lane groups.
fn live_logits(logits: &[Lanes], kg: usize, k: usize) -> ArrayView2<'_, f32> {
    let rows = logits.len() / kg;
    ArrayView2::from_shape((rows, kg * LANES), logits.as_flattened())
        .expect("rows of kg lane groups")
        .slice_move(s![.., ..k])
}

/// Mean softmax loss and error rate of `model` on (x, y).
pub(crate) fn loss_err_of(
    model: &impl Logits,
    x: ArrayView2<'_, f32>,
    y: ArrayView1<'_, u8>,
) -> Result<LossErr> {
    check_rows("X", x.nrows(), y.len())?;
    check_nonempty("X", x.nrows())?;
    check_labels(y, model.classes())?;
    let k = model.classes();
    let kg = lane_groups(k);
    let sums = map_chunks(model, x, |r0, logits| {
        let z = live_logits(logits, kg, k);
        loss_err_sums(z, y.slice(s![r0..r0 + z.nrows()]))
    });
    let mut total = LossErrSums::default();
    for s in sums {
        total.add(s);
    }
    Ok(total.mean())
}

/// The argmax class of `model` for every row of `x`.
pub(crate) fn predict_of(model: &impl Logits, x: ArrayView2<'_, f32>) -> Result<Vec<u32>> {
    let k = model.classes();
    let kg = lane_groups(k);
    let chunks = map_chunks(model, x, |_, logits| {
        let z = live_logits(logits, kg, k);
        z.rows()
            .into_iter()
            .map(|row| argmax(row) as u32)
            .collect::<Vec<u32>>()
    });
    Ok(chunks.concat())
}
