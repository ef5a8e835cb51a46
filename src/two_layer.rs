//! The two-layer ReLU network `ReLU(X W1) W2` trained by minibatch SGD.

use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array2, ArrayView1, ArrayView2, ArrayViewMut2, Zip};

use crate::error::Result;
use crate::eval::{loss_err_of, predict_of, Logits};
use crate::loss::{softmax_minus_onehot, LossErr};
use crate::sgd::{check_labels, check_positive, check_rows, check_shape, minibatches, Sgd};

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
/// error they are unchanged. An empty `x` (m = 0) is a no-op.
pub fn nn_epoch(
    x: ArrayView2<'_, f32>,
    y: ArrayView1<'_, u8>,
    mut w1: ArrayViewMut2<'_, f32>,
    mut w2: ArrayViewMut2<'_, f32>,
    sgd: Sgd,
) -> Result<()> {
    check_arguments(x, y, w1.view(), w2.view(), sgd)?;
    let m = x.nrows();
    if m == 0 {
        return Ok(());
    }
    let (d, k) = w2.dim();
    let rows = sgd.batch.min(m);
    let mut z1_buf = Array2::<f32>::zeros((rows, d));
    let mut g1_buf = Array2::<f32>::zeros((rows, d));
    let mut g2_buf = Array2::<f32>::zeros((rows, k));
    for batch in minibatches(m, sgd.batch) {
        let b = batch.len();
        let xb = x.slice(s![batch.clone(), ..]);
        let mut z1 = z1_buf.slice_mut(s![..b, ..]);
        let mut g1 = g1_buf.slice_mut(s![..b, ..]);
        let mut g2 = g2_buf.slice_mut(s![..b, ..]);
        general_mat_mul(1.0, &xb, &w1, 0.0, &mut z1);
        z1.mapv_inplace(relu);
        general_mat_mul(1.0, &z1, &w2, 0.0, &mut g2);
        for (row, &label) in g2.rows_mut().into_iter().zip(y.slice(s![batch]).iter()) {
            softmax_minus_onehot(row, label);
        }
        general_mat_mul(1.0, &g2, &w2.t(), 0.0, &mut g1);
        Zip::from(&mut g1).and(&z1).for_each(|g, &z| {
            if !(z > 0.0) {
                *g = 0.0;
            }
        });
        let step = -sgd.lr / b as f32;
        general_mat_mul(step, &xb.t(), &g1, 1.0, &mut w1);
        general_mat_mul(step, &z1.t(), &g2, 1.0, &mut w2);
    }
    Ok(())
}

fn relu(v: f32) -> f32 {
    // `max` would turn NaN into 0; keep NaN visible instead.
    if v > 0.0 || v.is_nan() {
        v
    } else {
        0.0
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
    let (d, k) = w2.dim();
    sgd.check()?;
    check_positive("n (columns of X)", n)?;
    check_positive("d (hidden units)", w1.ncols())?;
    check_positive("k (columns of W2)", k)?;
    check_rows("X", m, y.len())?;
    check_shape("W1", w1.dim(), n, w1.ncols())?;
    check_shape("W2", w2.dim(), w1.ncols(), k)?;
    debug_assert_eq!(d, w1.ncols());
    check_labels(y, k)
}

/// Logits `ReLU(X W1) W2` of the network.
pub(crate) struct TwoLayerLogits<'a> {
    pub w1: ArrayView2<'a, f32>,
    pub w2: ArrayView2<'a, f32>,
}

impl Logits for TwoLayerLogits<'_> {
    fn classes(&self) -> usize {
        self.w2.ncols()
    }
    fn logits(&self, x: ArrayView2<'_, f32>, mut out: ArrayViewMut2<'_, f32>) {
        let mut hidden = Array2::<f32>::zeros((x.nrows(), self.w1.ncols()));
        general_mat_mul(1.0, &x, &self.w1, 0.0, &mut hidden);
        hidden.mapv_inplace(relu);
        general_mat_mul(1.0, &hidden, &self.w2, 0.0, &mut out);
    }
}

fn check_model(
    x: ArrayView2<'_, f32>,
    w1: ArrayView2<'_, f32>,
    w2: ArrayView2<'_, f32>,
) -> Result<()> {
    check_shape("W1", w1.dim(), x.ncols(), w1.ncols())?;
    check_shape("W2", w2.dim(), w1.ncols(), w2.ncols())
}

/// Mean loss and error rate of the network (W1, W2) on (X, y).
pub fn nn_loss_err(
    x: ArrayView2<'_, f32>,
    y: ArrayView1<'_, u8>,
    w1: ArrayView2<'_, f32>,
    w2: ArrayView2<'_, f32>,
) -> Result<LossErr> {
    check_model(x, w1, w2)?;
    loss_err_of(&TwoLayerLogits { w1, w2 }, x, y)
}

/// Predicted class (argmax of `ReLU(X W1) W2`) for every row of `x`.
pub fn nn_predict(
    x: ArrayView2<'_, f32>,
    w1: ArrayView2<'_, f32>,
    w2: ArrayView2<'_, f32>,
) -> Result<Vec<u32>> {
    check_model(x, w1, w2)?;
    predict_of(&TwoLayerLogits { w1, w2 }, x)
}
