//! Whole training runs, as the course's `train_softmax` and `train_nn`:
//! epochs of SGD, each followed by an evaluation on the train and test sets
//! that is handed to the caller's callback, which may end the run there.

use std::ops::ControlFlow;

use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut2};

use crate::error::Result;
use crate::numpy_rng::course_init_weights;
use crate::sgd::{check_positive, Sgd};
use crate::softmax_regression::{softmax_regression_epoch, softmax_regression_loss_err};
use crate::two_layer::{nn_epoch, nn_loss_err};

/// A labelled data set: `x` is m×n, `y` has m labels.
#[derive(Debug, Clone, Copy)]
pub struct Data<'a> {
    pub x: ArrayView2<'a, f32>,
    pub y: ArrayView1<'a, u8>,
}

/// What one epoch of training achieved, measured after the epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochReport {
    /// Zero-based epoch number.
    pub epoch: usize,
    pub train_loss: f64,
    pub train_err: f64,
    pub test_loss: f64,
    pub test_err: f64,
}

impl EpochReport {
    /// The header of the course's table.
    pub const TABLE_HEADER: &'static str =
        "| Epoch | Train Loss | Train Err | Test Loss | Test Err |";

    /// This report as a row of the course's table, formatted like Python's
    /// `"|  {:>4} |    {:.5f} |   {:.5f} |   {:.5f} |  {:.5f} |"`.
    pub fn table_row(&self) -> String {
        format!(
            "|  {:>4} |    {:.5} |   {:.5} |   {:.5} |  {:.5} |",
            self.epoch, self.train_loss, self.train_err, self.test_loss, self.test_err
        )
    }
}

/// What a training callback returns: `()` or `ControlFlow::Continue(())`
/// to go on, `ControlFlow::Break(())` to end the run after the epoch just
/// reported (early stopping, a user's interrupt). The weights then hold
/// that epoch's result.
pub trait EpochControl {
    /// Whether training ends after this epoch.
    fn stops(self) -> bool;
}

impl EpochControl for () {
    fn stops(self) -> bool {
        false
    }
}

impl EpochControl for ControlFlow<()> {
    fn stops(self) -> bool {
        self.is_break()
    }
}

/// Settings of softmax regression training (the course's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoftmaxConfig {
    pub epochs: usize,
    pub sgd: Sgd,
}

impl Default for SoftmaxConfig {
    fn default() -> Self {
        SoftmaxConfig {
            epochs: 10,
            sgd: Sgd {
                lr: 0.5,
                batch: 100,
            },
        }
    }
}

/// Settings of two-layer network training (the course's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NnConfig {
    pub hidden: usize,
    pub epochs: usize,
    pub sgd: Sgd,
    /// Seed of numpy's legacy generator for the initial weights.
    pub seed: u32,
}

impl Default for NnConfig {
    fn default() -> Self {
        NnConfig {
            hidden: 500,
            epochs: 10,
            sgd: Sgd {
                lr: 0.5,
                batch: 100,
            },
            seed: 0,
        }
    }
}

/// Number of classes the course uses for a label vector: `y.max() + 1`.
pub fn classes_of(y: ArrayView1<'_, u8>) -> usize {
    usize::from(y.iter().copied().max().unwrap_or(0)) + 1
}

/// Trains softmax regression from θ = 0 (n × (max label + 1)), reporting
/// every epoch to `on_epoch` (which may end the run, see [`EpochControl`]);
/// returns θ.
pub fn train_softmax<C: EpochControl>(
    train: Data<'_>,
    test: Data<'_>,
    config: &SoftmaxConfig,
    on_epoch: impl FnMut(&EpochReport) -> C,
) -> Result<Array2<f32>> {
    let mut theta = Array2::<f32>::zeros((train.x.ncols(), classes_of(train.y)));
    fit_softmax(train, test, theta.view_mut(), config, on_epoch)?;
    Ok(theta)
}

/// Trains softmax regression starting from the given `theta` (n×k),
/// reporting every epoch to `on_epoch` (which may end the run, see
/// [`EpochControl`]); returns the number of epochs run.
pub fn fit_softmax<C: EpochControl>(
    train: Data<'_>,
    test: Data<'_>,
    mut theta: ArrayViewMut2<'_, f32>,
    config: &SoftmaxConfig,
    mut on_epoch: impl FnMut(&EpochReport) -> C,
) -> Result<usize> {
    config.sgd.check()?;
    check_test_set(train, test)?;
    for epoch in 0..config.epochs {
        softmax_regression_epoch(train.x, train.y, theta.view_mut(), config.sgd)?;
        let tr = softmax_regression_loss_err(train.x, train.y, theta.view())?;
        let te = softmax_regression_loss_err(test.x, test.y, theta.view())?;
        if on_epoch(&report(epoch, tr, te)).stops() {
            return Ok(epoch + 1);
        }
    }
    Ok(config.epochs)
}

fn check_test_set(train: Data<'_>, test: Data<'_>) -> Result<()> {
    if train.x.ncols() != test.x.ncols() {
        return Err(crate::Error::ShapeMismatch(format!(
            "the training set has {} features but the test set {}",
            train.x.ncols(),
            test.x.ncols()
        )));
    }
    Ok(())
}

/// Trains the two-layer network from the course's seeded initial weights,
/// reporting every epoch to `on_epoch` (which may end the run, see
/// [`EpochControl`]); returns (W1, W2).
pub fn train_nn<C: EpochControl>(
    train: Data<'_>,
    test: Data<'_>,
    config: &NnConfig,
    on_epoch: impl FnMut(&EpochReport) -> C,
) -> Result<(Array2<f32>, Array2<f32>)> {
    check_positive("hidden", config.hidden)?;
    let (mut w1, mut w2) = course_init_weights(
        config.seed,
        train.x.ncols(),
        config.hidden,
        classes_of(train.y),
    );
    fit_nn(train, test, w1.view_mut(), w2.view_mut(), config, on_epoch)?;
    Ok((w1, w2))
}

/// Trains the two-layer network starting from the given weights (W1 n×d,
/// W2 d×k), reporting every epoch to `on_epoch` (which may end the run, see
/// [`EpochControl`]); returns the number of epochs run. `config.hidden` and
/// `config.seed` are not used: the weights' shapes say what d is.
pub fn fit_nn<C: EpochControl>(
    train: Data<'_>,
    test: Data<'_>,
    mut w1: ArrayViewMut2<'_, f32>,
    mut w2: ArrayViewMut2<'_, f32>,
    config: &NnConfig,
    mut on_epoch: impl FnMut(&EpochReport) -> C,
) -> Result<usize> {
    config.sgd.check()?;
    check_test_set(train, test)?;
    for epoch in 0..config.epochs {
        nn_epoch(train.x, train.y, w1.view_mut(), w2.view_mut(), config.sgd)?;
        let tr = nn_loss_err(train.x, train.y, w1.view(), w2.view())?;
        let te = nn_loss_err(test.x, test.y, w1.view(), w2.view())?;
        if on_epoch(&report(epoch, tr, te)).stops() {
            return Ok(epoch + 1);
        }
    }
    Ok(config.epochs)
}

fn report(epoch: usize, train: crate::LossErr, test: crate::LossErr) -> EpochReport {
    EpochReport {
        epoch,
        train_loss: train.loss,
        train_err: train.err,
        test_loss: test.loss,
        test_err: test.err,
    }
}
