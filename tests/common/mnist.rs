//! The real MNIST files in `data/` and the course's published softmax
//! table, shared by the tests that check published numbers (`mod mnist;`
//! with `#[path]`, so that the other test crates do not compile it).

use ndarray::{Array1, Array2};
use simple_ml::{parse_mnist, MnistPaths};

/// The training set in `data/`.
pub fn train() -> (Array2<f32>, Array1<u8>) {
    let p = MnistPaths::in_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data"));
    parse_mnist(p.train_images, p.train_labels).expect("data/ holds the MNIST training files")
}

/// The test set in `data/`.
pub fn test_set() -> (Array2<f32>, Array1<u8>) {
    let p = MnistPaths::in_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data"));
    parse_mnist(p.test_images, p.test_labels).expect("data/ holds the MNIST test files")
}

/// The course's table for `train_softmax(..., epochs=10, lr=0.2, batch=100)`.
/// Rows 0 and 9 are the published ones; the straightforward numpy
/// implementation (python/tests/numpy_reference.py) prints all ten rows
/// exactly as here.
pub const SOFTMAX_TABLE: [&str; 10] = [
    "|     0 |    0.35134 |   0.10182 |   0.33588 |  0.09400 |",
    "|     1 |    0.32142 |   0.09268 |   0.31086 |  0.08730 |",
    "|     2 |    0.30802 |   0.08795 |   0.30097 |  0.08550 |",
    "|     3 |    0.29987 |   0.08532 |   0.29558 |  0.08370 |",
    "|     4 |    0.29415 |   0.08323 |   0.29215 |  0.08230 |",
    "|     5 |    0.28981 |   0.08182 |   0.28973 |  0.08090 |",
    "|     6 |    0.28633 |   0.08085 |   0.28793 |  0.08080 |",
    "|     7 |    0.28345 |   0.07997 |   0.28651 |  0.08040 |",
    "|     8 |    0.28100 |   0.07923 |   0.28537 |  0.08010 |",
    "|     9 |    0.27887 |   0.07847 |   0.28442 |  0.07970 |",
];
