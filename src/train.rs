//! Whole training runs, as the course's `train_softmax` and `train_nn`:
//! epochs of SGD, each followed by an evaluation on the train and test sets
//! that is handed to the caller's callback, which may end the run there.

use std::ops::ControlFlow;

use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut2};

use crate::error::Result;
use crate::numpy_rng::course_init_weights;
use crate::sgd::{check_labels, check_nonempty, check_positive, check_rows, check_shape, Sgd};
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
    check_sets(train, test, theta.ncols())?;
    check_shape("theta", theta.dim(), train.x.ncols(), theta.ncols())?;
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

/// Refuses, before any epoch, what an epoch or an evaluation of the run
/// would refuse later (so that a run of 0 epochs refuses it too, and a
/// bad test set is not found only after an epoch's work): sets of other
/// widths, rows without a label each, empty sets (their mean loss is
/// undefined), labels not below `classes`.
fn check_sets(train: Data<'_>, test: Data<'_>, classes: usize) -> Result<()> {
    if train.x.ncols() != test.x.ncols() {
        return Err(crate::Error::ShapeMismatch(format!(
            "the training set has {} features but the test set {}",
            train.x.ncols(),
            test.x.ncols()
        )));
    }
    check_set("the training set", train, classes)?;
    check_set("the test set", test, classes)
}

fn check_set(what: &str, set: Data<'_>, classes: usize) -> Result<()> {
    check_nonempty(what, set.x.nrows())?;
    check_rows(&format!("X of {what}"), set.x.nrows(), set.y.len())?;
    check_labels(set.y, classes)
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
    check_weights_fit(train.x.ncols(), config.hidden, classes_of(train.y))?;
    let (mut w1, mut w2) = course_init_weights(
        config.seed,
        train.x.ncols(),
        config.hidden,
        classes_of(train.y),
    );
    fit_nn(train, test, w1.view_mut(), w2.view_mut(), config, on_epoch)?;
    Ok((w1, w2))
}

/// Refuses a network whose initial weights (n×hidden and hidden×k, drawn
/// as f64 and kept as f32: 12 bytes a weight at the peak) cannot be
/// allocated, before they are: ndarray panics on a shape whose size
/// overflows, and a failed allocation aborts the process.
fn check_weights_fit(n: usize, hidden: usize, k: usize) -> Result<()> {
    let bytes = n
        .checked_mul(hidden)
        .zip(hidden.checked_mul(k))
        .and_then(|(a, b)| a.checked_add(b))
        .and_then(|weights| weights.checked_mul(12))
        .filter(|&bytes| bytes <= isize::MAX as usize);
    let fits = bytes.is_some_and(|bytes| Vec::<u8>::new().try_reserve_exact(bytes).is_ok());
    if !fits {
        return Err(crate::Error::InvalidArgument(format!(
            "hidden = {hidden} is too large: the weights ({n} x {hidden} and {hidden} x {k}) \
             cannot be allocated"
        )));
    }
    Ok(())
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
    check_sets(train, test, w2.ncols())?;
    check_positive("d (hidden units)", w1.ncols())?;
    check_shape("W1", w1.dim(), train.x.ncols(), w1.ncols())?;
    check_shape("W2", w2.dim(), w1.ncols(), w2.ncols())?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use ndarray::{Array1, Array2};

    fn set(m: usize, n: usize, k: u8) -> (Array2<f32>, Array1<u8>) {
        let x = Array2::from_shape_fn((m, n), |(i, j)| ((i * 7 + j * 3) % 11) as f32 / 11.0);
        let y = Array1::from_shape_fn(m, |i| i as u8 % k);
        (x, y)
    }

    fn data<'a>(x: &'a Array2<f32>, y: &'a Array1<u8>) -> Data<'a> {
        Data {
            x: x.view(),
            y: y.view(),
        }
    }

    #[test]
    fn every_set_is_checked_before_the_first_epoch_even_for_none() {
        let (x, y) = set(50, 8, 3);
        let (xt, mut yt) = set(20, 8, 3);
        yt[7] = 200;
        let (train, test) = (data(&x, &y), data(&xt, &yt));
        for epochs in [0, 2] {
            let config = SoftmaxConfig {
                epochs,
                ..SoftmaxConfig::default()
            };
            let mut theta = Array2::<f32>::ones((8, 3));
            let mut reports = 0;
            let fit = fit_softmax(train, test, theta.view_mut(), &config, |_| reports += 1);
            assert!(
                matches!(
                    fit,
                    Err(Error::LabelOutOfRange {
                        index: 7,
                        label: 200,
                        classes: 3
                    })
                ),
                "{epochs} epochs: {fit:?}"
            );
            assert_eq!(reports, 0, "no epoch ran");
            assert!(theta.iter().all(|&v| v == 1.0), "theta untouched");
            let config = NnConfig {
                epochs,
                hidden: 4,
                ..NnConfig::default()
            };
            let (mut w1, mut w2) = (Array2::<f32>::ones((8, 4)), Array2::<f32>::ones((4, 3)));
            let fit = fit_nn(train, test, w1.view_mut(), w2.view_mut(), &config, |_| {
                reports += 1
            });
            assert!(
                matches!(fit, Err(Error::LabelOutOfRange { index: 7, .. })),
                "{fit:?}"
            );
            assert_eq!(reports, 0);
            assert!(w1.iter().chain(&w2).all(|&v| v == 1.0), "weights untouched");
        }
    }

    #[test]
    fn a_network_too_large_to_allocate_is_refused_before_it_is() {
        let (x, y) = set(50, 8, 3);
        let train = data(&x, &y);
        for hidden in [usize::MAX / 2, 1 << 50] {
            let config = NnConfig {
                hidden,
                epochs: 1,
                ..NnConfig::default()
            };
            match train_nn(train, train, &config, |_| ()) {
                Err(Error::InvalidArgument(message)) => {
                    assert!(message.contains("too large"), "{message}")
                }
                other => panic!("hidden {hidden}: {:?}", other.map(|_| ())),
            }
        }
        let config = NnConfig {
            hidden: 4,
            epochs: 1,
            ..NnConfig::default()
        };
        train_nn(train, train, &config, |_| ()).expect("a small network trains");
    }

    #[test]
    fn an_empty_test_set_is_refused_by_name_before_any_epoch() {
        let (x, y) = set(50, 8, 3);
        let (xt, yt) = set(0, 8, 3);
        let (train, test) = (data(&x, &y), data(&xt, &yt));
        let mut reports = 0;
        let fit = train_softmax(train, test, &SoftmaxConfig::default(), |_| reports += 1);
        match fit {
            Err(Error::InvalidArgument(message)) => {
                assert!(message.starts_with("the test set has no rows"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(reports, 0);
        // And a run of good sets still reports every epoch.
        let config = SoftmaxConfig {
            epochs: 2,
            ..SoftmaxConfig::default()
        };
        let (xt, yt) = set(20, 8, 3);
        train_softmax(train, data(&xt, &yt), &config, |_| reports += 1).expect("valid sets");
        assert_eq!(reports, 2);
    }
}
