"""The straightforward numpy implementation of hw0 that the library is checked
and benchmarked against. Plain numpy, as a student would write it."""
import gzip
import struct

import numpy as np


def parse_mnist(image_filename, label_filename):
    with gzip.open(image_filename, "rb") as f:
        _, count, rows, cols = struct.unpack(">IIII", f.read(16))
        X = np.frombuffer(f.read(), dtype=np.uint8).reshape(count, rows * cols)
    with gzip.open(label_filename, "rb") as f:
        struct.unpack(">II", f.read(8))
        y = np.frombuffer(f.read(), dtype=np.uint8)
    return X.astype(np.float32) / np.float32(255.0), y.copy()


def softmax_loss(Z, y):
    return np.mean(np.log(np.exp(Z).sum(axis=1)) - Z[np.arange(Z.shape[0]), y])


def softmax_regression_epoch(X, y, theta, lr=0.1, batch=100):
    m = X.shape[0]
    for start in range(0, m, batch):
        Xb, yb = X[start:start + batch], y[start:start + batch]
        Z = np.exp(Xb @ theta)
        Z /= Z.sum(axis=1, keepdims=True)
        Z[np.arange(Xb.shape[0]), yb] -= 1
        theta -= lr / Xb.shape[0] * (Xb.T @ Z)


def nn_epoch(X, y, W1, W2, lr=0.1, batch=100):
    m = X.shape[0]
    for start in range(0, m, batch):
        Xb, yb = X[start:start + batch], y[start:start + batch]
        Z1 = np.maximum(Xb @ W1, 0)
        G2 = np.exp(Z1 @ W2)
        G2 /= G2.sum(axis=1, keepdims=True)
        G2[np.arange(Xb.shape[0]), yb] -= 1
        G1 = (Z1 > 0) * (G2 @ W2.T)
        b = Xb.shape[0]
        W1 -= lr / b * (Xb.T @ G1)
        W2 -= lr / b * (Z1.T @ G2)


def loss_err(h, y):
    return softmax_loss(h, y), np.mean(h.argmax(axis=1) != y)


def init_nn(n, hidden, k, seed=0, float64_weights=False):
    """The course's initial weights; float64_weights=True gives what numpy >= 2
    makes of `randn(...).astype(np.float32) / np.sqrt(h)`."""
    np.random.seed(seed)
    W1 = np.random.randn(n, hidden).astype(np.float32)
    W2 = np.random.randn(hidden, k).astype(np.float32)
    if float64_weights:
        return W1 / np.sqrt(np.float64(hidden)), W2 / np.sqrt(np.float64(k))
    return W1 / np.float32(np.sqrt(hidden)), W2 / np.float32(np.sqrt(k))
