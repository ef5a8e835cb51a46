//! Softmax regression: one linear layer `X θ` trained by minibatch SGD.

use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array2, ArrayView1, ArrayView2, ArrayViewMut2};

use crate::error::Result;
use crate::eval::{loss_err_of, predict_of, Logits};
use crate::loss::{softmax_minus_onehot, LossErr};
use crate::sgd::{check_labels, check_positive, check_rows, check_shape, minibatches, Sgd};

/// One epoch of minibatch SGD on softmax regression, updating `theta` (n×k)
/// in place. For a batch of b rows:
/// `θ ← θ − lr/b · Xbᵀ (softmax(Xb θ) − onehot(yb))`.
///
/// Batches are taken in order without shuffling; a final partial batch is
/// used and divided by its own size. Every argument is checked before
/// `theta` is touched: on error it is unchanged. An empty `x` (m = 0) is a
/// no-op.
pub fn softmax_regression_epoch(
    x: ArrayView2<'_, f32>,
    y: ArrayView1<'_, u8>,
    mut theta: ArrayViewMut2<'_, f32>,
    sgd: Sgd,
) -> Result<()> {
    let (m, n) = x.dim();
    let k = theta.ncols();
    check_arguments(x, y, theta.view(), sgd)?;
    if m == 0 {
        return Ok(());
    }
    let mut grad_logits = Array2::<f32>::zeros((sgd.batch.min(m), k));
    for rows in minibatches(m, sgd.batch) {
        let b = rows.len();
        let xb = x.slice(s![rows.clone(), ..]);
        let mut g = grad_logits.slice_mut(s![..b, ..]);
        general_mat_mul(1.0, &xb, &theta, 0.0, &mut g);
        for (row, &label) in g.rows_mut().into_iter().zip(y.slice(s![rows]).iter()) {
            softmax_minus_onehot(row, label);
        }
        general_mat_mul(-sgd.lr / b as f32, &xb.t(), &g, 1.0, &mut theta);
    }
    debug_assert_eq!(theta.dim(), (n, k));
    Ok(())
}

fn check_arguments(
    x: ArrayView2<'_, f32>,
    y: ArrayView1<'_, u8>,
    theta: ArrayView2<'_, f32>,
    sgd: Sgd,
) -> Result<()> {
    let (m, n) = x.dim();
    sgd.check()?;
    check_positive("n (columns of X)", n)?;
    check_positive("k (columns of theta)", theta.ncols())?;
    check_rows("X", m, y.len())?;
    check_shape("theta", theta.dim(), n, theta.ncols())?;
    check_labels(y, theta.ncols())
}

/// Logits `X θ` of softmax regression, computed into `out` for the rows of `x`.
pub(crate) struct LinearLogits<'a> {
    pub theta: ArrayView2<'a, f32>,
}

impl Logits for LinearLogits<'_> {
    fn classes(&self) -> usize {
        self.theta.ncols()
    }
    fn logits(&self, x: ArrayView2<'_, f32>, mut out: ArrayViewMut2<'_, f32>) {
        general_mat_mul(1.0, &x, &self.theta, 0.0, &mut out);
    }
}

/// Mean loss and error rate of softmax regression with weights `theta` on (X, y).
pub fn softmax_regression_loss_err(
    x: ArrayView2<'_, f32>,
    y: ArrayView1<'_, u8>,
    theta: ArrayView2<'_, f32>,
) -> Result<LossErr> {
    check_shape("theta", theta.dim(), x.ncols(), theta.ncols())?;
    loss_err_of(&LinearLogits { theta }, x, y)
}

/// Predicted class (argmax of `X θ`) for every row of `x`.
pub fn softmax_regression_predict(
    x: ArrayView2<'_, f32>,
    theta: ArrayView2<'_, f32>,
) -> Result<Vec<u32>> {
    check_shape("theta", theta.dim(), x.ncols(), theta.ncols())?;
    predict_of(&LinearLogits { theta }, x)
}
