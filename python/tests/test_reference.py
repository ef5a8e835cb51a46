"""Agreement with the plain numpy implementation (numpy_reference.py) on
random problems, at stated tolerances.

The library and numpy sum in different orders, so float32 weights agree to
a few float32 ulps, not bit for bit (the largest difference seen on these
problems is 1.2e-7 on weights of size ~0.1-1; the bound is 5e-7 + 1e-6
relative); float64 losses agree to 1e-12 relative."""
import numpy as np
import pytest

import numpy_reference as ref
import simple_ml_ext
from simple_ml import loss_err, nn_epoch, softmax_loss, softmax_regression_epoch

# (m, n, k, batch): m divisible by batch, not divisible, batch > m, batch = m,
# k = 2, n = 1, batch = 1.
SHAPES = [
    (60, 8, 4, 10),
    (53, 7, 5, 10),
    (20, 6, 3, 100),
    (32, 6, 3, 32),
    (41, 9, 2, 8),
    (37, 1, 3, 5),
    (12, 4, 3, 1),
    (300, 30, 10, 64),
]
IDS = ["m%d-n%d-k%d-b%d" % s for s in SHAPES]


def problem(m, n, k, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, n)).astype(np.float32)
    y = rng.integers(0, k, size=m).astype(np.uint8)
    return X, y, rng


@pytest.mark.parametrize("m,n,k,batch", SHAPES, ids=IDS)
def test_softmax_regression_epoch(m, n, k, batch):
    X, y, rng = problem(m, n, k, seed=m * n)
    theta0 = (0.1 * rng.standard_normal((n, k))).astype(np.float32)
    expected = theta0.copy()
    ref.softmax_regression_epoch(X, y, expected, lr=0.3, batch=batch)
    for epoch in (softmax_regression_epoch, simple_ml_ext.softmax_regression_epoch_cpp):
        theta = theta0.copy()
        epoch(X, y, theta, lr=0.3, batch=batch)
        np.testing.assert_allclose(theta, expected, rtol=1e-6, atol=5e-7)


@pytest.mark.parametrize("m,n,k,batch", SHAPES, ids=IDS)
def test_nn_epoch(m, n, k, batch):
    X, y, rng = problem(m, n, k, seed=m + n)
    d = 7
    W1_0 = (rng.standard_normal((n, d)) / np.sqrt(d)).astype(np.float32)
    W2_0 = (rng.standard_normal((d, k)) / np.sqrt(k)).astype(np.float32)
    W1_ref, W2_ref = W1_0.copy(), W2_0.copy()
    ref.nn_epoch(X, y, W1_ref, W2_ref, lr=0.2, batch=batch)
    for epoch in (nn_epoch, simple_ml_ext.nn_epoch_cpp):
        W1, W2 = W1_0.copy(), W2_0.copy()
        epoch(X, y, W1, W2, lr=0.2, batch=batch)
        np.testing.assert_allclose(W1, W1_ref, rtol=1e-6, atol=5e-7)
        np.testing.assert_allclose(W2, W2_ref, rtol=1e-6, atol=5e-7)


@pytest.mark.parametrize("m,n,k,batch", SHAPES, ids=IDS)
def test_float64_weights_are_stepped_in_float32_and_written_back(m, n, k, batch):
    """simple_ml's documented f64 handling: the result is exactly the float32
    step applied to the weights rounded to float32, stored as float64."""
    X, y, rng = problem(m, n, k, seed=7 * m)
    theta64 = 0.1 * rng.standard_normal((n, k))
    theta32 = theta64.astype(np.float32)
    softmax_regression_epoch(X, y, theta64, lr=0.3, batch=batch)
    simple_ml_ext.softmax_regression_epoch_cpp(X, y, theta32, lr=0.3, batch=batch)
    assert theta64.dtype == np.float64
    np.testing.assert_array_equal(theta64, theta32.astype(np.float64))


@pytest.mark.parametrize("m,k", [(1, 2), (50, 3), (1000, 10), (77, 2)])
def test_softmax_loss_and_loss_err(m, k):
    rng = np.random.default_rng(m * k)
    Z = 3 * rng.standard_normal((m, k))
    y = rng.integers(0, k, size=m).astype(np.uint8)
    np.testing.assert_allclose(softmax_loss(Z, y), ref.softmax_loss(Z, y), rtol=1e-12)
    loss, err = loss_err(Z, y)
    ref_loss, ref_err = ref.loss_err(Z, y)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    assert err == ref_err
    Z32 = Z.astype(np.float32)
    np.testing.assert_allclose(softmax_loss(Z32, y), ref.softmax_loss(Z32.astype(np.float64), y), rtol=1e-6)
    np.testing.assert_allclose(
        simple_ml_ext.softmax_loss_cpp(Z32, y), ref.softmax_loss(Z32.astype(np.float64), y), rtol=1e-6
    )
    loss32, err32 = loss_err(Z32, y)
    np.testing.assert_allclose(loss32, ref_loss, rtol=1e-5)
    assert err32 == ref.loss_err(Z32, y)[1]


def test_lenient_dtypes_give_the_float32_result():
    """simple_ml converts X of another dtype and y of another integer dtype
    to float32 / uint8 and gives what those would give."""
    X, y, rng = problem(40, 6, 4, seed=3)
    theta0 = (0.1 * rng.standard_normal((6, 4))).astype(np.float32)
    expected = theta0.copy()
    softmax_regression_epoch(X, y, expected, lr=0.5, batch=16)
    theta = theta0.copy()
    softmax_regression_epoch(X.astype(np.float64), y.astype(np.int64), theta, lr=0.5, batch=16)
    np.testing.assert_array_equal(theta, expected)
    theta = theta0.copy()
    softmax_regression_epoch(np.asfortranarray(X), list(y), theta, lr=0.5, batch=np.int32(16))
    np.testing.assert_array_equal(theta, expected)
    # Integer logits are losses in float64.
    Zi = rng.integers(-3, 3, size=(40, 4))
    np.testing.assert_allclose(softmax_loss(Zi, y), ref.softmax_loss(Zi.astype(np.float64), y), rtol=1e-12)
