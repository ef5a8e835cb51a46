"""The course's numerical gradient checks: one full-batch SGD step with
lr = 1 must equal minus the gradient of softmax_loss, differenced by
numdifftools in float64 through the library's float64 loss kernel."""
import numdifftools as nd
import numpy as np
import pytest

import simple_ml_ext
from simple_ml import nn_epoch, softmax_loss, softmax_regression_epoch


def small_problem():
    np.random.seed(0)
    X = np.random.randn(50, 5).astype(np.float32)
    y = np.random.randint(3, size=(50,)).astype(np.uint8)
    return X, y


@pytest.mark.parametrize(
    "epoch",
    [softmax_regression_epoch, simple_ml_ext.softmax_regression_epoch_cpp],
    ids=["simple_ml", "simple_ml_ext"],
)
def test_softmax_regression_step_is_minus_gradient(epoch):
    X, y = small_problem()
    theta = np.zeros((5, 3), dtype=np.float32)
    d_theta = -nd.Gradient(lambda th: softmax_loss(X @ th.reshape(5, 3), y))(theta)
    epoch(X, y, theta, lr=1.0, batch=50)
    np.testing.assert_allclose(d_theta.reshape(5, 3), theta, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("as_float32", [False, True], ids=["course_dtype", "float32"])
def test_nn_step_is_minus_gradient(as_float32):
    """As the course writes it (float64 weights under numpy >= 2), and with
    the weights cast to float32."""
    X, y = small_problem()
    W1 = np.random.randn(5, 10).astype(np.float32) / np.sqrt(10)
    W2 = np.random.randn(10, 3).astype(np.float32) / np.sqrt(3)
    if as_float32:
        W1, W2 = W1.astype(np.float32), W2.astype(np.float32)
    d_W1 = nd.Gradient(lambda w1: softmax_loss(np.maximum(X @ w1.reshape(5, 10), 0) @ W2, y))(W1)
    d_W2 = nd.Gradient(lambda w2: softmax_loss(np.maximum(X @ W1, 0) @ w2.reshape(10, 3), y))(W2)
    W1_0, W2_0 = W1.copy(), W2.copy()
    nn_epoch(X, y, W1, W2, lr=1.0, batch=50)
    np.testing.assert_allclose(d_W1.reshape(5, 10), W1_0 - W1, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(d_W2.reshape(10, 3), W2_0 - W2, rtol=1e-4, atol=1e-4)


def test_nn_step_cpp_is_minus_gradient():
    X, y = small_problem()
    W1 = (np.random.randn(5, 10) / np.sqrt(10)).astype(np.float32)
    W2 = (np.random.randn(10, 3) / np.sqrt(3)).astype(np.float32)
    d_W1 = nd.Gradient(lambda w1: softmax_loss(np.maximum(X @ w1.reshape(5, 10), 0) @ W2, y))(W1)
    d_W2 = nd.Gradient(lambda w2: softmax_loss(np.maximum(X @ W1, 0) @ w2.reshape(10, 3), y))(W2)
    W1_0, W2_0 = W1.copy(), W2.copy()
    simple_ml_ext.nn_epoch_cpp(X, y, W1, W2, lr=1.0, batch=50)
    np.testing.assert_allclose(d_W1.reshape(5, 10), W1_0 - W1, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(d_W2.reshape(10, 3), W2_0 - W2, rtol=1e-4, atol=1e-4)


def test_float64_loss_resolves_tiny_steps():
    """Why softmax_loss must compute in float64 for float64 logits: a
    central difference at numdifftools' step sizes is lost in float32."""
    X, y = small_problem()
    Z = X.astype(np.float64) @ np.full((5, 3), 0.1)
    h = 1e-7
    E = np.zeros_like(Z)
    E[0, 0] = h
    slope = (softmax_loss(Z + E, y) - softmax_loss(Z - E, y)) / (2 * h)
    p = np.exp(Z[0]) / np.exp(Z[0]).sum()
    exact = (p[0] - (y[0] == 0)) / Z.shape[0]
    np.testing.assert_allclose(slope, exact, rtol=1e-6)
