//! Issue 5, item 6: logits of ±1e4 give finite losses and gradients, and a
//! learning rate far too large diverges to a reported state (a huge or NaN
//! loss in the epoch report), never to an error, a panic or undefined
//! behaviour.

use ndarray::{array, Array1, Array2};
use simple_ml::{
    nn_epoch, softmax_regression_epoch, softmax_regression_loss_err, train_softmax, Data,
    EpochReport, NumpyRandomState, Sgd, SoftmaxConfig,
};

#[test]
fn logits_of_plus_minus_1e4_give_finite_gradient_steps() {
    // X θ = [[1e4, -1e4], [-1e4, 1e4]]: the softmax saturates at exactly 0 and 1.
    let x = array![[100.0f32, 0.0], [0.0, 100.0]];
    let y = array![1u8, 1];
    let mut theta = array![[100.0f32, -100.0], [-100.0, 100.0]];
    let before = theta.clone();
    let le = softmax_regression_loss_err(x.view(), y.view(), theta.view()).unwrap();
    assert!(le.loss.is_finite());
    assert!((le.loss - 1e4).abs() < 1.0, "loss {}", le.loss); // row 0: 2e4, row 1: 0
    softmax_regression_epoch(
        x.view(),
        y.view(),
        theta.view_mut(),
        Sgd { lr: 0.1, batch: 2 },
    )
    .unwrap();
    assert!(theta.iter().all(|v| v.is_finite()), "{theta}");
    // Row 0 has softmax (1, 0) against label 1: gradient (1, -1) · x0 / 2;
    // row 1 is already right: gradient 0. θ -= 0.1 · that.
    let expected = &before - &array![[5.0f32, -5.0], [0.0, 0.0]];
    assert_eq!(theta, expected);

    // The network with weights that make its logits about ±1e4.
    let mut w1 = array![[10.0f32, 0.0], [0.0, 10.0]];
    let mut w2 = array![[10.0f32, -10.0], [-10.0, 10.0]];
    nn_epoch(
        x.view(),
        y.view(),
        w1.view_mut(),
        w2.view_mut(),
        Sgd { lr: 0.1, batch: 2 },
    )
    .unwrap();
    assert!(
        w1.iter().chain(w2.iter()).all(|v| v.is_finite()),
        "{w1} {w2}"
    );
}

#[test]
fn a_huge_learning_rate_diverges_to_a_reported_huge_loss() {
    let mut rng = NumpyRandomState::new(5);
    let x = rng.randn(200, 8).mapv(|v| v as f32);
    let y = Array1::from_shape_fn(200, |i| (i % 3) as u8);
    let data = Data {
        x: x.view(),
        y: y.view(),
    };
    let mut reports: Vec<EpochReport> = Vec::new();
    let config = SoftmaxConfig {
        epochs: 4,
        sgd: Sgd {
            lr: 1e30,
            batch: 20,
        },
    };
    let theta: Array2<f32> = train_softmax(data, data, &config, |r| reports.push(*r)).unwrap();
    assert_eq!(reports.len(), 4);
    let last = reports.last().unwrap();
    // Diverged: the loss is astronomically large or NaN, never quietly small.
    assert!(
        diverged(last.train_loss) && diverged(last.test_loss),
        "{last:?}"
    );
    assert!((0.0..=1.0).contains(&last.train_err), "{last:?}");
    assert!(
        theta.iter().any(|v| v.is_nan() || v.abs() >= 1e20),
        "the weights blew up"
    );
}

/// Astronomically large or NaN.
fn diverged(loss: f64) -> bool {
    loss.is_nan() || loss >= 1e6
}
