//! The code paths of the kernels agree: AVX2 and AVX-512 give identical
//! bits, the portable path agrees within rounding, and every thread count
//! gives identical bits. One test function, because the SIMD level and the
//! thread count are process-wide settings.

mod common;

use common::sparse_problem;
use ndarray::{Array1, Array2};
use simple_ml::{
    course_init_weights, nn_epoch, nn_loss_err, set_num_threads, set_simd_level,
    softmax_regression_epoch, softmax_regression_predict, supported_simd_level, Sgd, SimdLevel,
};

struct Outcome {
    theta: Array2<f32>,
    w1: Array2<f32>,
    w2: Array2<f32>,
    predictions: Vec<u32>,
    nn_loss: f64,
}

fn run(x: &Array2<f32>, y: &Array1<u8>, k: usize, hidden: usize) -> Outcome {
    let n = x.ncols();
    let mut theta = Array2::<f32>::zeros((n, k));
    softmax_regression_epoch(
        x.view(),
        y.view(),
        theta.view_mut(),
        Sgd { lr: 0.5, batch: 64 },
    )
    .unwrap();
    let (mut w1, mut w2) = course_init_weights(3, n, hidden, k);
    nn_epoch(
        x.view(),
        y.view(),
        w1.view_mut(),
        w2.view_mut(),
        Sgd { lr: 0.2, batch: 50 },
    )
    .unwrap();
    Outcome {
        predictions: softmax_regression_predict(x.view(), theta.view()).unwrap(),
        nn_loss: nn_loss_err(x.view(), y.view(), w1.view(), w2.view())
            .unwrap()
            .loss,
        theta,
        w1,
        w2,
    }
}

fn max_rel_diff(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1e-3 + y.abs()))
        .fold(0.0, f32::max)
}

#[test]
fn simd_levels_and_thread_counts_agree() {
    // k = 10 (one lane group) with 100 hidden units (6.25 groups), k = 20
    // (two lane groups) with an odd hidden size, wide rows: 66 chunks of
    // 16 pixels per softmax part, the second ending in a partial chunk that
    // the gradient takes alone after its pairs of whole chunks; and 300
    // hidden units, which the evaluation takes in tiles of 208 and 96 units
    // with AVX-512, of 128, 128 and 48 otherwise.
    for (m, n, k, hidden) in [
        (6000, 784, 10, 100),
        (3001, 300, 20, 37),
        (3000, 2100, 10, 20),
        (2000, 784, 10, 300),
    ] {
        let (x, y) = sparse_problem(11, m, n, k);
        let best = supported_simd_level();
        set_simd_level(best);
        set_num_threads(1);
        let reference = run(&x, &y, k, hidden);
        for threads in [2, 3, 4] {
            set_num_threads(threads);
            let o = run(&x, &y, k, hidden);
            assert_eq!(o.theta, reference.theta, "theta, {threads} threads");
            assert_eq!(o.w1, reference.w1, "W1, {threads} threads");
            assert_eq!(o.w2, reference.w2, "W2, {threads} threads");
            assert_eq!(o.predictions, reference.predictions);
            assert_eq!(o.nn_loss.to_bits(), reference.nn_loss.to_bits());
        }
        set_num_threads(2);
        if best >= SimdLevel::Avx2 {
            assert_eq!(set_simd_level(SimdLevel::Avx2), SimdLevel::Avx2);
            let o = run(&x, &y, k, hidden);
            assert_eq!(o.theta, reference.theta, "AVX2 vs {best:?}");
            assert_eq!(o.w1, reference.w1, "AVX2 vs {best:?}");
            assert_eq!(o.w2, reference.w2, "AVX2 vs {best:?}");
            assert_eq!(o.predictions, reference.predictions, "AVX2 vs {best:?}");
            let loss = (o.nn_loss.to_bits(), reference.nn_loss.to_bits());
            assert_eq!(loss.0, loss.1, "AVX2 vs {best:?}");
        }
        assert_eq!(set_simd_level(SimdLevel::Portable), SimdLevel::Portable);
        let o = run(&x, &y, k, hidden);
        assert!(max_rel_diff(&o.theta, &reference.theta) < 1e-4);
        assert!(max_rel_diff(&o.w1, &reference.w1) < 1e-4);
        assert!(max_rel_diff(&o.w2, &reference.w2) < 1e-4);
        assert!((o.nn_loss - reference.nn_loss).abs() < 1e-5);
        set_simd_level(best);
        set_num_threads(0);
    }
}
