"""The course's published hw0 numbers on the real MNIST files, through the
installed Python package."""
import gc
import weakref

import numpy as np
import pytest

import numpy_reference
import simple_ml_ext
from simple_ml import (
    loss_err,
    nn_epoch,
    parse_mnist,
    softmax_loss,
    softmax_regression_epoch,
    train_nn,
    train_softmax,
)
from conftest import mnist_path


def test_parse_mnist(mnist_train, mnist_test):
    X, y = mnist_train
    assert X.dtype == np.float32 and y.dtype == np.uint8
    assert X.shape == (60000, 784) and y.shape == (60000,)
    assert X.flags.c_contiguous and X.flags.writeable and X.flags.aligned
    assert X.ctypes.data % 64 == 0  # whole cache lines for the kernels
    assert y.flags.c_contiguous and y.flags.writeable
    np.testing.assert_allclose(np.linalg.norm(X[:10]), 27.892084, rtol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(X[:1000]), 293.0717, rtol=1e-6)
    np.testing.assert_equal(y[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    X_te, y_te = mnist_test
    assert X_te.shape == (10000, 784) and y_te.shape == (10000,)


def test_parse_mnist_matches_numpy_reference():
    X, y = parse_mnist(mnist_path("t10k-images-idx3-ubyte.gz"), mnist_path("t10k-labels-idx1-ubyte.gz"))
    X_ref, y_ref = numpy_reference.parse_mnist(
        mnist_path("t10k-images-idx3-ubyte.gz"), mnist_path("t10k-labels-idx1-ubyte.gz")
    )
    # Pixels are byte / 255 exactly, as numpy computes them.
    np.testing.assert_array_equal(X, X_ref)
    np.testing.assert_array_equal(y, y_ref)


def test_parse_mnist_x_holds_the_library_memory_until_the_last_view_goes():
    images, labels = mnist_path("t10k-images-idx3-ubyte.gz"), mnist_path("t10k-labels-idx1-ubyte.gz")
    X_ref, y_ref = numpy_reference.parse_mnist(images, labels)
    X, y = parse_mnist(images, labels)
    dataset = weakref.ref(X.base.owner)
    # The labels are numpy's own, so they do not keep the images alive.
    assert y.flags.owndata
    # Each call reads into its own memory.
    X2, _ = parse_mnist(images, labels)
    X2[0, :] = 7.0
    np.testing.assert_array_equal(X, X_ref)
    del X2
    # A view of X keeps the data set alive.
    view = X[5:10]
    del X
    gc.collect()
    assert dataset() is not None
    np.testing.assert_array_equal(view, X_ref[5:10])
    view[0, 0] = 0.5
    assert view[0, 0] == 0.5
    del view
    gc.collect()
    # Freed with the last view, while y lives on.
    assert dataset() is None
    np.testing.assert_array_equal(y, y_ref)


def test_softmax_loss(mnist_train):
    _, y = mnist_train
    np.testing.assert_allclose(softmax_loss(np.zeros((y.shape[0], 10)), y), 2.3025850)
    np.random.seed(0)
    Z = np.random.randn(y.shape[0], 10)
    assert Z.dtype == np.float64
    np.testing.assert_allclose(softmax_loss(Z, y), 2.7291998)


def test_softmax_regression_epoch(mnist_train):
    X, y = mnist_train
    theta = np.zeros((X.shape[1], y.max() + 1), dtype=np.float32)
    softmax_regression_epoch(X[:100], y[:100], theta, lr=0.1, batch=10)
    np.testing.assert_allclose(np.linalg.norm(theta), 1.0947356, rtol=1e-5, atol=1e-5)


def test_softmax_regression_epoch_cpp(mnist_train):
    X, y = mnist_train
    theta = np.zeros((X.shape[1], y.max() + 1), dtype=np.float32)
    assert simple_ml_ext.softmax_regression_epoch_cpp(X[:100], y[:100], theta, lr=0.1, batch=10) is None
    np.testing.assert_allclose(np.linalg.norm(theta), 1.0947356, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("float64_weights", [False, True], ids=["float32", "float64"])
def test_nn_epoch(mnist_train, float64_weights):
    X, y = mnist_train
    W1, W2 = numpy_reference.init_nn(X.shape[1], 100, 10, seed=0, float64_weights=float64_weights)
    expected_dtype = np.float64 if float64_weights else np.float32
    assert W1.dtype == W2.dtype == expected_dtype
    W1_id, W2_id = id(W1), id(W2)
    nn_epoch(X, y, W1, W2, lr=0.2, batch=100)
    # Updated in place, dtype kept.
    assert (id(W1), id(W2)) == (W1_id, W2_id) and W1.dtype == W2.dtype == expected_dtype
    np.testing.assert_allclose(np.linalg.norm(W1), 28.437788, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(W2), 10.455095, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        loss_err(np.maximum(X @ W1, 0) @ W2, y), (0.19770025, 0.06006667), rtol=1e-4, atol=1e-4
    )


def test_nn_epoch_cpp(mnist_train):
    X, y = mnist_train
    W1, W2 = numpy_reference.init_nn(X.shape[1], 100, 10, seed=0)
    simple_ml_ext.nn_epoch_cpp(X, y, W1, W2, lr=0.2, batch=100)
    np.testing.assert_allclose(np.linalg.norm(W1), 28.437788, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(W2), 10.455095, rtol=1e-5, atol=1e-5)


def test_train_softmax_prints_published_rows(mnist_train, mnist_test, capsys):
    X_tr, y_tr = mnist_train
    X_te, y_te = mnist_test
    theta = train_softmax(X_tr, y_tr, X_te, y_te, epochs=2, lr=0.2, batch=100, cpp=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "| Epoch | Train Loss | Train Err | Test Loss | Test Err |",
        "|     0 |    0.35134 |   0.10182 |   0.33588 |  0.09400 |",
        "|     1 |    0.32142 |   0.09268 |   0.31086 |  0.08730 |",
    ]
    # The returned theta is the one the table describes.
    assert theta.shape == (784, 10) and theta.dtype == np.float32
    np.testing.assert_allclose(loss_err(X_te @ theta, y_te), (0.31086, 0.0873), atol=5e-6)


def test_train_softmax_equals_epoch_loop(mnist_train, mnist_test, capsys):
    """cpp=False gives the same table as the course's own loop over
    softmax_regression_epoch and loss_err."""
    X_tr, y_tr = mnist_train[0][:5000], mnist_train[1][:5000]
    X_te, y_te = mnist_test[0][:1000], mnist_test[1][:1000]
    train_softmax(X_tr, y_tr, X_te, y_te, epochs=3, lr=0.5, batch=50)
    table = capsys.readouterr().out.splitlines()
    theta = np.zeros((784, 10), dtype=np.float32)
    expected = ["| Epoch | Train Loss | Train Err | Test Loss | Test Err |"]
    for epoch in range(3):
        softmax_regression_epoch(X_tr, y_tr, theta, lr=0.5, batch=50)
        expected.append(
            "|  {:>4} |    {:.5f} |   {:.5f} |   {:.5f} |  {:.5f} |".format(
                epoch, *loss_err(X_tr @ theta, y_tr), *loss_err(X_te @ theta, y_te)
            )
        )
    assert table == expected


def test_train_nn_equals_epoch_loop(mnist_train, mnist_test, capsys):
    """train_nn starts from the course's seed-0 weights and prints the
    course's table for its loop."""
    X_tr, y_tr = mnist_train[0][:3000], mnist_train[1][:3000]
    X_te, y_te = mnist_test[0][:500], mnist_test[1][:500]
    W1_trained, W2_trained = train_nn(X_tr, y_tr, X_te, y_te, hidden_dim=20, epochs=2, lr=0.2, batch=100)
    table = capsys.readouterr().out.splitlines()
    W1, W2 = numpy_reference.init_nn(784, 20, 10, seed=0)
    expected = ["| Epoch | Train Loss | Train Err | Test Loss | Test Err |"]
    for epoch in range(2):
        nn_epoch(X_tr, y_tr, W1, W2, lr=0.2, batch=100)
        expected.append(
            "|  {:>4} |    {:.5f} |   {:.5f} |   {:.5f} |  {:.5f} |".format(
                epoch,
                *loss_err(np.maximum(X_tr @ W1, 0) @ W2, y_tr),
                *loss_err(np.maximum(X_te @ W1, 0) @ W2, y_te),
            )
        )
    assert table == expected
    np.testing.assert_array_equal(W1_trained, W1)
    np.testing.assert_array_equal(W2_trained, W2)


@pytest.mark.parametrize("how", ["signal", "exception"])
@pytest.mark.parametrize("model", ["softmax", "nn"])
def test_ctrl_c_ends_training_after_that_epoch(mnist_train, mnist_test, monkeypatch, model, how):
    """Ctrl-C while the library trains (a real SIGINT to this process, or a
    KeyboardInterrupt raised while a row is printed): the epoch callback
    tells the library to stop, and train_* raises KeyboardInterrupt as soon
    as it returns, instead of running the remaining epochs."""
    import os
    import signal

    import simple_ml

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    X_tr, y_tr = mnist_train[0][:2000], mnist_train[1][:2000]
    X_te, y_te = mnist_test[0][:200], mnist_test[1][:200]
    rows = []

    def print_then_interrupt(text, **kwargs):
        if not text.startswith("| Epoch"):
            rows.append(text)
            if len(rows) == 2:
                if how == "signal":
                    os.kill(os.getpid(), signal.SIGINT)
                else:
                    raise KeyboardInterrupt
    monkeypatch.setattr(simple_ml, "print", print_then_interrupt, raising=False)
    with pytest.raises(KeyboardInterrupt):
        if model == "softmax":
            train_softmax(X_tr, y_tr, X_te, y_te, epochs=8, lr=0.5, batch=100)
        else:
            train_nn(X_tr, y_tr, X_te, y_te, hidden_dim=10, epochs=8, lr=0.2, batch=100)
    assert [row[:8] for row in rows] == ["|     0 ", "|     1 "]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigint_while_the_library_computes_stops_training(mnist_train, mnist_test, monkeypatch):
    """A SIGINT that arrives while the native loop computes (where Ctrl-C
    almost always lands) would make Python raise KeyboardInterrupt at the
    entry of the next epoch callback, where ctypes ignores it and training
    goes on; the package's handler turns it into a stop instead."""
    import os
    import signal
    import threading

    import simple_ml

    X_tr, y_tr = mnist_train[0][:10000], mnist_train[1][:10000]
    X_te, y_te = mnist_test[0][:1000], mnist_test[1][:1000]
    rows = []
    timer = threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT))

    def record(text, **kwargs):
        if not text.startswith("| Epoch"):
            rows.append(text)
            if len(rows) == 1:
                timer.start()
    monkeypatch.setattr(simple_ml, "print", record, raising=False)
    with pytest.raises(KeyboardInterrupt):
        train_nn(X_tr, y_tr, X_te, y_te, hidden_dim=64, epochs=200, lr=0.2, batch=100)
    timer.join()
    assert 2 <= len(rows) < 200
    assert [int(row.split("|")[1]) for row in rows] == list(range(len(rows)))
