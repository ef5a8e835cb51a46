//! Test data shared by the integration tests.

use ndarray::{Array1, Array2};
use simple_ml::NumpyRandomState;

/// MNIST-like data from numpy's generator seeded with `seed`: m×n pixels,
/// ~80% exact zeros and the rest positive (no NaN), and m labels below k.
pub fn sparse_problem(seed: u32, m: usize, n: usize, k: usize) -> (Array2<f32>, Array1<u8>) {
    let mut rng = NumpyRandomState::new(seed);
    let x = Array2::from_shape_simple_fn((m, n), || {
        let u = rng.next_f64();
        if u < 0.8 {
            0.0
        } else {
            (u - 0.8) as f32 * 5.0
        }
    });
    let y = Array1::from_shape_simple_fn(m, || (rng.next_u32() % k as u32) as u8);
    (x, y)
}
