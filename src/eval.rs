//! Evaluation of a trained model over a whole data set, in chunks of rows so
//! that no m×hidden matrix is ever allocated.

use ndarray::{s, Array2, ArrayView1, ArrayView2, ArrayViewMut2};

use crate::error::Result;
use crate::loss::{argmax, loss_err_sums, LossErr, LossErrSums};
use crate::sgd::{check_labels, check_nonempty, check_positive, check_rows};

/// Rows evaluated at a time: big enough for efficient matrix products, small
/// enough that a chunk's hidden layer stays in cache.
const CHUNK_ROWS: usize = 512;

/// A model that maps rows of `X` to logits.
pub(crate) trait Logits {
    /// Number of output classes (columns of the logits).
    fn classes(&self) -> usize;
    /// Writes the logits of the rows of `x` into `out` (rows × classes).
    fn logits(&self, x: ArrayView2<'_, f32>, out: ArrayViewMut2<'_, f32>);
}

/// Calls `f(first_row, logits)` for consecutive chunks of rows of `x`.
fn for_each_chunk(
    model: &impl Logits,
    x: ArrayView2<'_, f32>,
    mut f: impl FnMut(usize, ArrayView2<'_, f32>),
) {
    let m = x.nrows();
    let mut out = Array2::<f32>::zeros((CHUNK_ROWS.min(m), model.classes()));
    for start in (0..m).step_by(CHUNK_ROWS) {
        let end = m.min(start + CHUNK_ROWS);
        let mut chunk = out.slice_mut(s![..end - start, ..]);
        model.logits(x.slice(s![start..end, ..]), chunk.view_mut());
        f(start, chunk.view());
    }
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
    let mut sums = LossErrSums::default();
    for_each_chunk(model, x, |start, logits| {
        sums.add(loss_err_sums(
            logits,
            y.slice(s![start..start + logits.nrows()]),
        ))
    });
    Ok(sums.mean())
}

/// The argmax class of `model` for every row of `x`.
pub(crate) fn predict_of(model: &impl Logits, x: ArrayView2<'_, f32>) -> Result<Vec<u32>> {
    check_positive("the number of classes", model.classes())?;
    let mut predictions = Vec::with_capacity(x.nrows());
    for_each_chunk(model, x, |_, logits| {
        predictions.extend(logits.rows().into_iter().map(|r| argmax(r) as u32))
    });
    Ok(predictions)
}
