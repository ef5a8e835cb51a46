//! The course's published numbers on the real MNIST files in `data/`.
//!
//! Run in release mode (`cargo test --release`): the network epochs do ~30
//! GFLOP of work.

#[path = "common/mnist.rs"]
mod mnist;

use mnist::{test_set, train, SOFTMAX_TABLE};
use ndarray::{s, Array2};
use simple_ml::{
    course_init_weights, loss_err, nn_epoch, nn_loss_err, softmax_loss, softmax_regression_epoch,
    train_nn, train_softmax, Data, EpochReport, NnConfig, Sgd, SoftmaxConfig,
};

fn norm(a: &Array2<f32>) -> f64 {
    a.iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt()
}

fn rel_close(actual: f64, expected: f64, rtol: f64) -> bool {
    (actual - expected).abs() <= rtol * expected.abs()
}

#[test]
fn parse_mnist_matches_course() {
    let (x, y) = train();
    assert_eq!(x.dim(), (60000, 784));
    assert_eq!(y.len(), 60000);
    let n10 = norm(&x.slice(s![..10, ..]).to_owned());
    let n1000 = norm(&x.slice(s![..1000, ..]).to_owned());
    assert!(rel_close(n10, 27.892084, 1e-7), "|X[:10]| = {n10}");
    assert!(rel_close(n1000, 293.0717, 1e-6), "|X[:1000]| = {n1000}");
    assert_eq!(
        y.slice(s![..10]).to_vec(),
        vec![5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    );
    // Every pixel is byte / 255.0 exactly (division, not a reciprocal product).
    for &v in x.iter().take(784 * 50) {
        let byte = (v * 255.0).round();
        assert_eq!(v, byte / 255.0);
    }
    let (xt, yt) = test_set();
    assert_eq!((xt.nrows(), yt.len()), (10000, 10000));
}

#[test]
#[allow(clippy::approx_constant)] // 2.3025850 is the course's published value
fn softmax_loss_of_zeros_is_ln_10() {
    let (_, y) = train();
    let z32 = Array2::<f32>::zeros((60000, 10));
    let z64 = Array2::<f64>::zeros((60000, 10));
    assert!(rel_close(
        softmax_loss(z32.view(), y.view()).unwrap(),
        2.3025850,
        1e-7
    ));
    assert!(rel_close(
        softmax_loss(z64.view(), y.view()).unwrap(),
        2.3025850,
        1e-7
    ));
}

#[test]
fn softmax_regression_epoch_matches_course() {
    let (x, y) = train();
    let mut theta = Array2::<f32>::zeros((784, 10));
    softmax_regression_epoch(
        x.slice(s![..100, ..]),
        y.slice(s![..100]),
        theta.view_mut(),
        Sgd { lr: 0.1, batch: 10 },
    )
    .unwrap();
    let n = norm(&theta);
    assert!((n - 1.0947356).abs() <= 1e-5, "|theta| = {n}");
}

#[test]
fn nn_epoch_matches_course() {
    let (x, y) = train();
    let (mut w1, mut w2) = course_init_weights(0, 784, 100, 10);
    nn_epoch(
        x.view(),
        y.view(),
        w1.view_mut(),
        w2.view_mut(),
        Sgd {
            lr: 0.2,
            batch: 100,
        },
    )
    .unwrap();
    let (n1, n2) = (norm(&w1), norm(&w2));
    assert!(rel_close(n1, 28.437788, 1e-5), "|W1| = {n1}");
    assert!(rel_close(n2, 10.455095, 1e-5), "|W2| = {n2}");
    let le = nn_loss_err(x.view(), y.view(), w1.view(), w2.view()).unwrap();
    assert!((le.loss - 0.19770025).abs() <= 1e-4, "loss {}", le.loss);
    assert!((le.err - 0.06006667).abs() <= 1e-4, "err {}", le.err);
    // The same through loss_err on materialised logits.
    let logits = x.dot(&w1).mapv(|v| v.max(0.0)).dot(&w2);
    let le2 = loss_err(logits.view(), y.view()).unwrap();
    assert!((le2.loss - le.loss).abs() < 1e-5 && le2.err == le.err);
}

#[test]
fn train_softmax_prints_course_table() {
    let (x, y) = train();
    let (xt, yt) = test_set();
    let mut rows = Vec::new();
    let config = SoftmaxConfig {
        epochs: 10,
        sgd: Sgd {
            lr: 0.2,
            batch: 100,
        },
    };
    train_softmax(
        Data {
            x: x.view(),
            y: y.view(),
        },
        Data {
            x: xt.view(),
            y: yt.view(),
        },
        &config,
        |r: &EpochReport| rows.push(r.table_row()),
    )
    .unwrap();
    assert_eq!(rows, SOFTMAX_TABLE);
}

#[test]
fn train_nn_reproduces_course_table() {
    let (x, y) = train();
    let (xt, yt) = test_set();
    let mut reports = Vec::new();
    let config = NnConfig {
        hidden: 400,
        epochs: 20,
        sgd: Sgd {
            lr: 0.2,
            batch: 100,
        },
        seed: 0,
    };
    train_nn(
        Data {
            x: x.view(),
            y: y.view(),
        },
        Data {
            x: xt.view(),
            y: yt.view(),
        },
        &config,
        |r: &EpochReport| reports.push(*r),
    )
    .unwrap();
    assert_eq!(reports.len(), 20);
    assert_eq!(
        reports[0].table_row(),
        "|     0 |    0.15324 |   0.04697 |   0.16305 |  0.04920 |"
    );
    // Later rows depend on rounding details; the published final row is
    // 0.00911 0.00097 0.06450 0.01890.
    let last = reports[19];
    assert!(
        last.test_err <= 0.0200,
        "final test error {}",
        last.test_err
    );
    assert!(
        (last.test_loss - 0.0645).abs() <= 0.002,
        "final test loss {}",
        last.test_loss
    );
    assert!(
        last.train_loss < 0.012 && last.train_err < 0.002,
        "final train {last:?}"
    );
}
