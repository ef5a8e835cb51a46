"""The course's C++ extension API, strict like the pybind11 binding it
replaces but never silent. Served as the top-level module `simple_ml_ext`.

- X (and Z) must be float32 and y uint8 numpy arrays: another dtype is a
  TypeError, not a conversion. An input that is not C-contiguous, or not
  aligned, is copied.
- The weights an epoch updates (theta, W1, W2) must be float32, C-contiguous,
  writeable and of the right shape; otherwise the call raises before anything
  is computed. They are passed to the library as they are, so the update is
  always applied to the caller's array, never to a hidden copy.
"""
import ctypes

import numpy as np

from . import _arrays
from ._native import check, lib


def _input(a, dtype, ndim, name):
    _arrays.require_ndarray(a, name, "the strict simple_ml_ext API converts nothing")
    if a.dtype != dtype:
        raise TypeError("%s must be %s, got %s" % (name, np.dtype(dtype).name, a.dtype))
    _arrays.require_ndim(a, ndim, name)
    return _arrays.c_aligned(a)


def _output(a, name):
    _arrays.require_ndarray(a, name, "it is updated in place")
    if a.dtype != np.float32:
        raise TypeError("%s must be float32, got %s" % (name, a.dtype))
    _arrays.require_ndim(a, 2, name)
    if not a.flags.c_contiguous:
        raise ValueError(
            "%s must be C-contiguous: it is updated in place, and an update to a "
            "contiguous copy would be lost (use np.ascontiguousarray and keep the result)" % name
        )
    _arrays.require_writeable(a, name)
    return a


def softmax_regression_epoch_cpp(X, y, theta, lr, batch):
    """One epoch of softmax regression SGD on X (m x n float32) and y (m
    uint8), updating theta (n x k float32, C-contiguous) in place. Returns
    None."""
    X = _input(X, np.float32, 2, "X")
    y = _input(y, np.uint8, 1, "y")
    theta = _output(theta, "theta")
    run_softmax_regression_epoch(X, y, theta.shape, _arrays.pointer(theta), lr, batch)


def run_softmax_regression_epoch(X, y, theta_shape, theta_pointer, lr, batch):
    """The checks and the library call that the strict and the lenient
    softmax epochs share, on converted X (float32) and y (uint8)."""
    m, n = X.shape
    _arrays.require_rows(y, m)
    _arrays.require_weight_rows(theta_shape, n, "theta", "the columns of X")
    k = theta_shape[1]
    lr = _arrays.learning_rate(lr)
    batch = _arrays.batch_size(batch)
    check(
        lib.sml_softmax_regression_epoch(
            _arrays.pointer(X), _arrays.pointer(y), theta_pointer, m, n, k, lr, batch
        )
    )


def nn_epoch_cpp(X, y, W1, W2, lr, batch):
    """One epoch of SGD for the network ReLU(X W1) W2 on X (m x n float32)
    and y (m uint8), updating W1 (n x d) and W2 (d x k), both float32 and
    C-contiguous, in place. Returns None."""
    X = _input(X, np.float32, 2, "X")
    y = _input(y, np.uint8, 1, "y")
    W1 = _output(W1, "W1")
    W2 = _output(W2, "W2")
    run_nn_epoch(X, y, (W1.shape, _arrays.pointer(W1)), (W2.shape, _arrays.pointer(W2)), lr, batch)


def run_nn_epoch(X, y, W1, W2, lr, batch):
    """The checks and the library call that the strict and the lenient
    network epochs share; W1 and W2 are (shape, pointer) pairs."""
    m, n = X.shape
    (W1_shape, W1_pointer), (W2_shape, W2_pointer) = W1, W2
    _arrays.require_rows(y, m)
    _arrays.require_weight_rows(W1_shape, n, "W1", "the columns of X")
    d = W1_shape[1]
    _arrays.require_weight_rows(W2_shape, d, "W2", "the columns of W1")
    k = W2_shape[1]
    lr = _arrays.learning_rate(lr)
    batch = _arrays.batch_size(batch)
    check(lib.sml_nn_epoch(_arrays.pointer(X), _arrays.pointer(y), W1_pointer, W2_pointer, m, n, d, k, lr, batch))


def softmax_loss_cpp(Z, y):
    """Mean softmax loss of the logits Z (m x k, float32 or float64: each
    has its own kernel, nothing is converted) against y (m uint8), as a
    Python float."""
    _arrays.require_ndarray(Z, "Z", "the strict simple_ml_ext API converts nothing")
    if Z.dtype not in (np.float32, np.float64):
        raise TypeError("Z must be float32 or float64, got %s" % Z.dtype)
    Z = _input(Z, Z.dtype, 2, "Z")
    y = _input(y, np.uint8, 1, "y")
    _arrays.require_rows(y, Z.shape[0], "Z")
    m, k = Z.shape
    loss = ctypes.c_double()
    fn = lib.sml_softmax_loss_f64 if Z.dtype == np.float64 else lib.sml_softmax_loss_f32
    check(fn(_arrays.pointer(Z), _arrays.pointer(y), m, k, ctypes.byref(loss)))
    return loss.value
