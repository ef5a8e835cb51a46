//! # simple_ml
//!
//! The work of homework 0 of CMU 10-414/714 *Deep Learning Systems* as a
//! Rust library with a C ABI: reading MNIST, the softmax loss, SGD epochs of
//! softmax regression and of a two-layer ReLU network, and the training
//! loops. The numeric core (every module but [`ffi`]) is safe Rust on
//! ndarray views; the C ABI in [`ffi`] only validates, converts and maps
//! errors.
//!
//! ```no_run
//! use simple_ml::{parse_mnist, softmax_regression_epoch, Sgd};
//! let (x, y) = parse_mnist("data/train-images-idx3-ubyte.gz", "data/train-labels-idx1-ubyte.gz")?;
//! let mut theta = ndarray::Array2::<f32>::zeros((784, 10));
//! softmax_regression_epoch(x.view(), y.view(), theta.view_mut(), Sgd { lr: 0.1, batch: 100 })?;
//! # Ok::<(), simple_ml::Error>(())
//! ```

#![deny(unsafe_code)]

mod aligned;
mod chunked;
pub mod error;
mod eval;
pub mod ffi;
pub mod loss;
pub mod mnist;
pub mod numpy_rng;
pub mod parallel;
pub mod sgd;
pub mod simd;
pub mod softmax_regression;
mod softmax_rows;
mod sparse;
pub mod train;
pub mod two_layer;

pub use error::{Error, IdxError, IdxErrorKind, Result};
pub use loss::{loss_err, softmax_loss, LossErr, Real};
pub use mnist::{parse_mnist, read_images, read_labels, Images, MnistPaths};
pub use numpy_rng::{course_init_weights, NumpyRandomState};
pub use parallel::{num_threads, set_num_threads};
pub use sgd::{minibatches, Sgd};
pub use simd::{set_simd_level, simd_level, supported_simd_level, SimdLevel};
pub use softmax_regression::{
    softmax_regression_epoch, softmax_regression_loss_err, softmax_regression_predict,
};
pub use train::{
    fit_nn, fit_softmax, train_nn, train_softmax, Data, EpochControl, EpochReport, NnConfig,
    SoftmaxConfig,
};
pub use two_layer::{nn_epoch, nn_loss_err, nn_predict};
