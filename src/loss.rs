//! The softmax (cross-entropy) loss, the error rate, and row-wise softmax.
//!
//! Generic over [`Real`] (f32 and f64): the course's gradient checks
//! difference the loss at tiny steps in float64, which an f32 loss cannot
//! resolve, while training runs in f32.

use ndarray::{ArrayView1, ArrayView2};

use crate::error::Result;
use crate::sgd::{check_labels, check_nonempty, check_rows};

/// The floating-point types the loss is computed in.
pub trait Real:
    ndarray::LinalgScalar + PartialOrd + Default + Send + Sync + std::fmt::Debug + 'static
{
    const NEG_INFINITY: Self;
    fn is_nan(self) -> bool;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn to_f64(self) -> f64;
}

impl Real for f32 {
    const NEG_INFINITY: Self = f32::NEG_INFINITY;
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    fn exp(self) -> Self {
        f32::exp(self)
    }
    fn ln(self) -> Self {
        f32::ln(self)
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Real for f64 {
    const NEG_INFINITY: Self = f64::NEG_INFINITY;
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn ln(self) -> Self {
        f64::ln(self)
    }
    fn to_f64(self) -> f64 {
        self
    }
}

/// Mean softmax loss and error rate of a set of logits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossErr {
    /// Mean over rows of `log Σ exp z − z_y`.
    pub loss: f64,
    /// Fraction of rows whose argmax is not the label.
    pub err: f64,
}

/// Position of the first largest value (numpy's `argmax`: the first on ties;
/// a NaN counts as largest, as in numpy).
pub fn argmax<F: Real>(row: ArrayView1<'_, F>) -> usize {
    let mut best = 0;
    let mut best_value = row[0];
    for (j, &v) in row.iter().enumerate().skip(1) {
        // numpy's argmax stops at the first NaN.
        if best_value.is_nan() {
            break;
        }
        if v > best_value || v.is_nan() {
            best = j;
            best_value = v;
        }
    }
    best
}

/// `log Σ_j exp z_j`, computed after subtracting the row maximum so that
/// logits in the thousands stay finite.
pub fn log_sum_exp<F: Real>(row: ArrayView1<'_, F>) -> F {
    let max = row
        .iter()
        .fold(F::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    if max == F::NEG_INFINITY {
        // Every logit is -inf (or the row is NaN): nothing to stabilise.
        return row.iter().fold(F::zero(), |s, &v| s + v.exp()).ln();
    }
    let sum = row.iter().fold(F::zero(), |s, &v| s + (v - max).exp());
    sum.ln() + max
}

/// Loss of one row: `log Σ exp z − z_y`.
pub fn row_loss<F: Real>(row: ArrayView1<'_, F>, label: u8) -> F {
    log_sum_exp(row) - row[usize::from(label)]
}

/// Mean softmax loss of logits `z` (m×k) against labels `y` (m).
///
/// Each row is computed in `F`; the mean is accumulated in f64.
pub fn softmax_loss<F: Real>(z: ArrayView2<'_, F>, y: ArrayView1<'_, u8>) -> Result<f64> {
    Ok(loss_err(z, y)?.loss)
}

/// Mean softmax loss and error rate of logits `z` (m×k) against labels `y`.
pub fn loss_err<F: Real>(z: ArrayView2<'_, F>, y: ArrayView1<'_, u8>) -> Result<LossErr> {
    check_rows("logits", z.nrows(), y.len())?;
    check_nonempty("logits", z.nrows())?;
    check_labels(y, z.ncols())?;
    let totals = loss_err_sums(z, y);
    Ok(totals.mean())
}

/// Running sums of loss and misclassifications, so that evaluation can be
/// done in chunks and combined.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LossErrSums {
    pub loss: f64,
    pub wrong: usize,
    pub rows: usize,
}

impl LossErrSums {
    pub fn add(&mut self, other: LossErrSums) {
        self.loss += other.loss;
        self.wrong += other.wrong;
        self.rows += other.rows;
    }

    pub fn mean(&self) -> LossErr {
        LossErr {
            loss: self.loss / self.rows as f64,
            err: self.wrong as f64 / self.rows as f64,
        }
    }
}

/// Sums over rows without checks; callers have validated shapes and labels.
pub(crate) fn loss_err_sums<F: Real>(z: ArrayView2<'_, F>, y: ArrayView1<'_, u8>) -> LossErrSums {
    let mut sums = LossErrSums {
        rows: z.nrows(),
        ..LossErrSums::default()
    };
    for (row, &label) in z.rows().into_iter().zip(y.iter()) {
        sums.loss += row_loss(row, label).to_f64();
        sums.wrong += usize::from(argmax(row) != usize::from(label));
    }
    sums
}
