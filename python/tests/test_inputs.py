"""Inputs a numpy user can hand the package that the checks once got wrong:
misaligned arrays (a buffer at an odd offset, such as a np.memmap past a
file header), weights that are views of one array without overlapping, and
training runs whose arguments are refused before the table is printed."""
import numpy as np
import pytest

import simple_ml
import simple_ml_ext


def misaligned(a):
    """A writeable copy of `a` whose elements are not aligned."""
    buf = np.zeros(a.nbytes + 1, dtype=np.uint8)
    out = np.ndarray(a.shape, dtype=a.dtype, buffer=buf, offset=1)
    out[...] = a
    assert out.flags.c_contiguous
    assert out.dtype.alignment == 1 or not out.flags.aligned
    return out


@pytest.fixture
def problem():
    rng = np.random.default_rng(5)
    X = rng.random((60, 12), dtype=np.float32)
    y = rng.integers(0, 4, 60).astype(np.uint8)
    return X, y


def test_misaligned_inputs_are_copied_not_refused(problem):
    X, y = problem
    Xm, ym = misaligned(X), misaligned(y)

    def epoch(fn, X, y):
        theta = np.zeros((12, 4), np.float32)
        fn(X, y, theta, lr=0.1, batch=10)
        return theta

    for fn in (simple_ml.softmax_regression_epoch, simple_ml_ext.softmax_regression_epoch_cpp):
        want = epoch(fn, X, y)
        assert np.abs(want).max() > 0
        np.testing.assert_array_equal(epoch(fn, Xm, ym), want)

    W1 = np.full((12, 5), 0.1, np.float32)
    W2 = np.full((5, 4), 0.1, np.float32)
    want = [W1.copy(), W2.copy()]
    simple_ml.nn_epoch(X, y, *want, lr=0.1, batch=10)
    got = [W1.copy(), W2.copy()]
    simple_ml.nn_epoch(Xm, ym, *got, lr=0.1, batch=10)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)

    Z = X[:, :4].copy()
    assert simple_ml.softmax_loss(misaligned(Z), y) == simple_ml.softmax_loss(Z, y)
    assert simple_ml_ext.softmax_loss_cpp(misaligned(Z), ym) == simple_ml_ext.softmax_loss_cpp(Z, y)
    assert simple_ml.loss_err(misaligned(Z), y) == simple_ml.loss_err(Z, y)


def test_weights_that_are_disjoint_views_of_one_array_are_trained(problem):
    X, y = problem
    both = np.full((12, 9), 0.05, np.float32)
    W1, W2 = both[:, :5], both[:5, 5:]
    assert np.may_share_memory(W1, W2) and not np.shares_memory(W1, W2)
    A, B = W1.copy(), W2.copy()
    simple_ml.nn_epoch(X, y, W1, W2, lr=0.1, batch=10)
    simple_ml.nn_epoch(X, y, A, B, lr=0.1, batch=10)
    np.testing.assert_array_equal(W1, A)
    np.testing.assert_array_equal(W2, B)
    assert not np.array_equal(A, np.full_like(A, 0.05))
    # Views that do overlap are still refused.
    with pytest.raises(ValueError, match="share memory"):
        simple_ml.nn_epoch(X, y, both[:, :5], both[:5, 4:8], lr=0.1, batch=10)


@pytest.mark.parametrize(
    "train, change, error, message",
    [
        ("softmax", {"y_te": "label 9"}, ValueError, "label 9 at row 3 is out of range"),
        ("softmax", {"X_te": "empty"}, ValueError, "the test set has no rows"),
        ("nn", {"y_te": "label 9"}, ValueError, "label 9 at row 3 is out of range"),
        ("nn", {"hidden_dim": 0}, ValueError, "hidden_dim must be positive"),
    ],
)
def test_a_refused_run_prints_no_table(problem, capsys, train, change, error, message):
    X, y = problem
    args = {"X_tr": X, "y_tr": y, "X_te": X[:20].copy(), "y_te": y[:20].copy(), "epochs": 2}
    if change.get("y_te") == "label 9":
        args["y_te"][3] = 9
    if change.get("X_te") == "empty":
        args["X_te"], args["y_te"] = X[:0], y[:0]
    if "hidden_dim" in change:
        args["hidden_dim"] = change["hidden_dim"]
    fn = simple_ml.train_softmax if train == "softmax" else simple_ml.train_nn
    with pytest.raises(error, match=message):
        fn(**args)
    assert capsys.readouterr().out == ""
    # The same run with good arguments prints the header and a row an epoch.
    args.update(X_te=X[:20], y_te=y[:20], **({"hidden_dim": 8} if train == "nn" else {}))
    fn(**args)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == simple_ml.TABLE_HEADER and len(lines) == 3
