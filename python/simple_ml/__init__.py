"""The CMU 10-414/714 hw0 API (`simple_ml.py`) with every kernel served by
the native simple_ml library.

Lenient like the numpy code it replaces: X may be any real dtype or layout
(it is converted to C-contiguous float32), y any integer dtype (converted to
uint8), logits float32 or float64 (the loss is computed in that precision),
and the weights an epoch updates may be float32 or float64, C- or
Fortran-ordered: the step is computed in float32 by the library and written
back into the caller's array. See docs/PYTHON.md.
"""
import contextlib
import ctypes
import os
import signal
import threading

import numpy as np

from . import _arrays
from ._ext import run_nn_epoch, run_softmax_regression_epoch, softmax_regression_epoch_cpp
from ._native import (
    SML_OK,
    IdxFormatError,
    SimpleMLError,
    check,
    error_for,
    last_error_message,
    lib,
    library_path,
    library_version,
    sml_data,
    sml_dataset,
    sml_epoch_control,
)
from ._version import __version__

__all__ = [
    "add",
    "parse_mnist",
    "softmax_loss",
    "softmax_regression_epoch",
    "nn_epoch",
    "loss_err",
    "train_softmax",
    "train_nn",
    "softmax_regression_epoch_cpp",
    "SimpleMLError",
    "IdxFormatError",
]

TABLE_HEADER = "| Epoch | Train Loss | Train Err | Test Loss | Test Err |"
TABLE_ROW = "|  {:>4} |    {:.5f} |   {:.5f} |   {:.5f} |  {:.5f} |"


def add(x, y):
    """x + y, as the homework's warm-up defines it."""
    return x + y


def _fs_path(path, name):
    path = os.fsencode(path)  # str (surrogateescape), bytes or os.PathLike
    if b"\0" in path:
        raise ValueError("%s contains a NUL byte" % name)
    return path


class _LibraryDataset:
    """A data set from sml_mnist_read, freed once no numpy array over its
    memory is left: the buffer under each such array holds a reference."""

    __slots__ = ("_ds", "_free", "__weakref__")

    def __init__(self, ds):
        self._ds = ds
        self._free = lib.sml_dataset_free  # still reachable at shutdown

    def __del__(self):
        self._free(self._ds)


def _array_over(address, ctype, dtype, shape, owner):
    """A writable numpy array over `shape` items of `ctype` at `address`,
    keeping `owner` alive as long as it (or any view of it) lives."""
    size = int(np.prod(shape))
    if size == 0:
        return np.empty(shape, dtype=dtype)
    buffer = (ctype * size).from_address(ctypes.cast(address, ctypes.c_void_p).value)
    buffer.owner = owner
    return np.ndarray(shape, dtype=dtype, buffer=buffer)


def parse_mnist(image_filename, label_filename):
    """Reads an MNIST image file and its label file (IDX, gzip-compressed or
    not). Returns X, a (count, rows*cols) float32 array of pixels scaled to
    [0, 1], and y, a (count,) uint8 array, both writable and C-contiguous.
    X is a numpy array over the memory the library read the images into (no
    copy), freed once neither X nor any view of it is left; y is a copy of
    the labels, so that it does not keep that memory.

    Raises FileNotFoundError / IsADirectoryError / OSError when a file cannot
    be read, IdxFormatError (a ValueError) when a file is damaged or the two
    files disagree.
    """
    image_path = _fs_path(image_filename, "image_filename")
    label_path = _fs_path(label_filename, "label_filename")
    dataset = ctypes.POINTER(sml_dataset)()
    status = lib.sml_mnist_read(image_path, label_path, ctypes.byref(dataset))
    if status != SML_OK:
        # The library's message starts with the failing file's path (shown
        # lossily as UTF-8); an OSError also carries that path as `filename`.
        message = last_error_message()
        shown = label_path.decode("utf-8", "replace") + ":"
        failing = label_path if message.startswith(shown) else image_path
        raise error_for(status, message, os.fsdecode(failing))
    owner = _LibraryDataset(dataset)
    count = lib.sml_dataset_count(dataset)
    n = lib.sml_dataset_features(dataset)
    X = _array_over(lib.sml_dataset_images_mut(dataset), ctypes.c_float, np.float32, (count, n), owner)
    # The labels (a byte per image) are copied, so that keeping y alone does
    # not keep the images' memory.
    y = np.empty(count, dtype=np.uint8)
    if count:
        ctypes.memmove(y.ctypes.data, lib.sml_dataset_labels(dataset), count)
    return X, y


def softmax_loss(Z, y):
    """Mean softmax (cross-entropy) loss of logits Z (m x k) against labels y.

    float64 logits are computed in float64 (the course's gradient checks
    difference this loss at tiny steps), float32 in float32 per row; other
    real dtypes are converted to float64. Returns a numpy.float64.
    """
    Z = _arrays.logits(Z)
    y = _arrays.labels(y)
    _arrays.require_rows(y, Z.shape[0], "Z")
    m, k = Z.shape
    loss = ctypes.c_double()
    fn = lib.sml_softmax_loss_f64 if Z.dtype == np.float64 else lib.sml_softmax_loss_f32
    check(fn(_arrays.pointer(Z), _arrays.pointer(y), m, k, ctypes.byref(loss)))
    return np.float64(loss.value)


def loss_err(h, y):
    """(softmax loss, error rate) of logits h against labels y, each a
    numpy.float64; the error rate is the fraction of rows whose argmax is not
    the label."""
    h = _arrays.logits(h, "h")
    y = _arrays.labels(y)
    _arrays.require_rows(y, h.shape[0], "h")
    m, k = h.shape
    loss, err = ctypes.c_double(), ctypes.c_double()
    fn = lib.sml_loss_err_f64 if h.dtype == np.float64 else lib.sml_loss_err_f32
    check(fn(_arrays.pointer(h), _arrays.pointer(y), m, k, ctypes.byref(loss), ctypes.byref(err)))
    return np.float64(loss.value), np.float64(err.value)


def softmax_regression_epoch(X, y, theta, lr=0.1, batch=100):
    """One epoch of minibatch SGD for softmax regression, updating theta
    (n x k) in place. Minibatches are taken in order; a final partial batch
    is used. Returns None.

    theta may be float32 or float64 in any layout; a float64 theta is
    rounded to float32, stepped by the library in float32 and written back.
    """
    X = _arrays.features(X)
    y = _arrays.labels(y)
    theta = _arrays.Weights(theta, "theta")
    run_softmax_regression_epoch(X, y, theta.shape, theta.pointer(), lr, batch)
    theta.write_back()


def nn_epoch(X, y, W1, W2, lr=0.1, batch=100):
    """One epoch of minibatch SGD for the two-layer network
    logits = ReLU(X W1) W2, updating W1 (n x d) and W2 (d x k) in place.
    Returns None. Float64 weights are handled as in softmax_regression_epoch.
    """
    X = _arrays.features(X)
    y = _arrays.labels(y)
    W1 = _arrays.Weights(W1, "W1")
    W2 = _arrays.Weights(W2, "W2")
    if np.may_share_memory(W1.target, W2.target) and np.shares_memory(W1.target, W2.target):
        # Both are outputs; through float32 copies one write-back would
        # silently overwrite the other.
        raise ValueError("W1 and W2 share memory; they must be separate arrays")
    run_nn_epoch(X, y, (W1.shape, W1.pointer()), (W2.shape, W2.pointer()), lr, batch)
    W1.write_back()
    W2.write_back()


# ---------------------------------------------------------------------------
# Whole training runs: the library's own loops, reporting through a callback.
# ---------------------------------------------------------------------------


def _data(X, y, name):
    X = _arrays.features(X, "X_" + name)
    y = _arrays.labels(y, "y_" + name)
    _arrays.require_rows(y, X.shape[0], "X_" + name)
    # Keep the arrays referenced by the struct alive with it.
    return (X, y), sml_data(_arrays.pointer(X), _arrays.pointer(y), X.shape[0], X.shape[1])


def _classes(y_tr):
    if y_tr.size == 0:
        raise ValueError("y_tr is empty: the number of classes (y_tr.max() + 1) is undefined")
    return int(y_tr.max()) + 1


class _TablePrinter:
    """The epoch callback: prints one row of the course's table per epoch,
    and ends the run early on Ctrl-C.

    An exception cannot cross the library's C frames: one raised while
    printing (a closed stdout) is kept, the callback tells the library to
    stop after this epoch, and the exception is re-raised when the library
    returns. Ctrl-C needs more: Python raises KeyboardInterrupt at the first
    line of Python it runs after the signal, which during training is the
    callback's own entry, outside any try; ctypes could only print and
    ignore it there. So while the library trains, a SIGINT handler (on the
    main thread, in place of Python's default one) only records the signal;
    the callback then stops the run, and KeyboardInterrupt is raised once
    the library has returned.
    """

    def __init__(self):
        self.error = None
        self.interrupted = False
        self.callback = sml_epoch_control(self._on_epoch)

    def _on_epoch(self, report, _user):
        try:
            r = report.contents
            print(TABLE_ROW.format(r.epoch, r.train_loss, r.train_err, r.test_loss, r.test_err), flush=True)
        except BaseException as e:  # re-raised after the native call returns
            self.error = e
            return 1
        return 1 if self.interrupted else 0

    def _on_sigint(self, _signum, _frame):
        self.interrupted = True

    @contextlib.contextmanager
    def stopping_on_ctrl_c(self):
        ours = (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        )
        previous = signal.signal(signal.SIGINT, self._on_sigint) if ours else None
        try:
            yield
        finally:
            if ours:
                signal.signal(signal.SIGINT, previous)
        if self.interrupted:
            raise KeyboardInterrupt

    def reraise(self):
        if self.error is not None:
            raise self.error


def train_softmax(X_tr, y_tr, X_te, y_te, epochs=10, lr=0.5, batch=100, cpp=False):
    """Trains softmax regression from theta = 0 (n x (y_tr.max()+1), float32)
    for `epochs` epochs and prints the course's table (loss and error on the
    training and test sets after each epoch).

    `cpp` is accepted for compatibility: both paths are the native library.
    Returns the trained theta (the course's version returns None).
    """
    del cpp
    (Xa, ya), train = _data(X_tr, y_tr, "tr")
    (Xb, yb), test = _data(X_te, y_te, "te")
    k = _classes(ya)
    epochs = _arrays.count(epochs, "epochs")
    lr = _arrays.learning_rate(lr)
    batch = _arrays.batch_size(batch)
    theta = np.zeros((Xa.shape[1], k), dtype=np.float32)
    printer = _TablePrinter()

    def run(epochs):
        return lib.sml_train_softmax_stoppable(
            ctypes.byref(train), ctypes.byref(test), k, epochs, lr, batch,
            _arrays.pointer(theta), printer.callback, None, None,
        )

    # A run of 0 epochs checks every argument (and writes the initial
    # theta): a bad one is refused before the table's header is printed.
    check(run(0))
    print(TABLE_HEADER, flush=True)
    with printer.stopping_on_ctrl_c():
        status = run(epochs)
    check(status)
    printer.reraise()
    return theta


def train_nn(X_tr, y_tr, X_te, y_te, hidden_dim=500, epochs=10, lr=0.5, batch=100):
    """Trains the two-layer network with `hidden_dim` hidden units from the
    course's initial weights (numpy seed 0, reproduced bit for bit by the
    library without touching numpy's global generator) and prints the
    course's table. Returns (W1, W2) (the course's version returns None).
    """
    (Xa, ya), train = _data(X_tr, y_tr, "tr")
    (Xb, yb), test = _data(X_te, y_te, "te")
    k = _classes(ya)
    hidden_dim = _arrays.count(hidden_dim, "hidden_dim")
    if hidden_dim == 0:
        raise ValueError("hidden_dim must be positive")
    epochs = _arrays.count(epochs, "epochs")
    lr = _arrays.learning_rate(lr)
    batch = _arrays.batch_size(batch)
    n = Xa.shape[1]
    W1 = np.zeros((n, hidden_dim), dtype=np.float32)
    W2 = np.zeros((hidden_dim, k), dtype=np.float32)
    printer = _TablePrinter()

    def run(epochs):
        return lib.sml_train_nn_stoppable(
            ctypes.byref(train), ctypes.byref(test), k, hidden_dim, epochs, lr, batch, 0,
            _arrays.pointer(W1), _arrays.pointer(W2), printer.callback, None, None,
        )

    # As in train_softmax: every argument checked before the header.
    check(run(0))
    print(TABLE_HEADER, flush=True)
    with printer.stopping_on_ctrl_c():
        status = run(epochs)
    check(status)
    printer.reraise()
    return W1, W2

