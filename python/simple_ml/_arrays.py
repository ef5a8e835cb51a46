"""Checks and conversions between numpy arrays and the library's pointers.

Inputs (X, y, Z) may be converted or copied freely. Outputs (the weights an
epoch updates) are never silently copied: either the caller's own memory is
passed to the library, or the caller asked for a conversion (the lenient
`simple_ml` module) and the result is written back into the caller's array.
"""
import ctypes
import numbers
import operator

import numpy as np

_SIZE_MAX = 2 ** (8 * ctypes.sizeof(ctypes.c_size_t)) - 1

_CTYPE_OF = {
    np.dtype(np.float32): ctypes.c_float,
    np.dtype(np.float64): ctypes.c_double,
    np.dtype(np.uint8): ctypes.c_ubyte,
}


def pointer(a):
    """A typed pointer to the first element of a C-contiguous array."""
    assert a.flags.c_contiguous, "internal error: pointer to a non-contiguous array"
    return a.ctypes.data_as(ctypes.POINTER(_CTYPE_OF[a.dtype]))


def require_ndarray(a, name, why):
    if not isinstance(a, np.ndarray):
        raise TypeError("%s must be a numpy.ndarray (%s), got %s" % (name, why, type(a).__name__))


def require_ndim(a, ndim, name):
    if a.ndim != ndim:
        raise ValueError("%s must be %d-dimensional, got shape %s" % (name, ndim, a.shape))


def require_writeable(a, name):
    if not a.flags.writeable:
        raise ValueError("%s is read-only; it is updated in place" % name)


def require_rows(y, m, X_name="X"):
    if y.shape[0] != m:
        raise ValueError("y has %d labels but %s has %d rows" % (y.shape[0], X_name, m))


def require_weight_rows(shape, rows, name, what):
    """A weight matrix must have one row per `what` (the columns of X, ...)."""
    if shape[0] != rows:
        raise ValueError("%s must have %d rows (%s), got shape %s" % (name, rows, what, shape))


def batch_size(batch):
    """A positive Python int for the `batch` argument; bool is refused (True
    is not a batch size), and a batch beyond size_t is clamped to it, which
    means the same (one batch of all rows)."""
    if isinstance(batch, (bool, np.bool_)):
        raise TypeError("batch must be an integer, got bool")
    try:
        batch = operator.index(batch)
    except TypeError:
        raise TypeError("batch must be an integer, got %s" % type(batch).__name__) from None
    if batch <= 0:
        raise ValueError("batch must be positive, got %d" % batch)
    return min(batch, _SIZE_MAX)


def learning_rate(lr):
    """A float for `lr`; the library refuses NaN and infinities itself."""
    if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, numbers.Real):
        raise TypeError("lr must be a real number, got %s" % type(lr).__name__)
    return float(lr)


def count(value, name):
    """A non-negative int (epochs, hidden units)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError("%s must be an integer, got bool" % name)
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError("%s must be an integer, got %s" % (name, type(value).__name__)) from None
    if value < 0 or value > _SIZE_MAX:
        raise ValueError("%s must be a non-negative integer, got %d" % (name, value))
    return value


# ---------------------------------------------------------------------------
# Lenient conversions, for the numpy-style `simple_ml` module.
# ---------------------------------------------------------------------------


def c_aligned(a, dtype=None):
    """`a` (of `dtype`, if given) as a C-contiguous base-class ndarray whose
    elements are aligned, as the library requires: a copy when it is not
    one already (a misaligned array comes from a buffer at an odd offset,
    such as a np.memmap past a file header)."""
    return np.require(a, dtype=dtype, requirements=["C", "A", "E"])


def _is_real_numeric(dtype):
    return dtype.kind in "fiu"


def features(X, name="X"):
    """X as a C-contiguous float32 matrix (a copy when it is not one)."""
    X = np.asarray(X)
    if not _is_real_numeric(X.dtype):
        raise TypeError("%s must hold real numbers, got dtype %s" % (name, X.dtype))
    require_ndim(X, 2, name)
    return c_aligned(X, np.float32)


def logits(Z, name="Z"):
    """Z as a C-contiguous float32 or float64 matrix: float32 stays float32,
    every other real dtype becomes float64 (so the loss is computed in the
    input's precision, or better)."""
    Z = np.asarray(Z)
    if not _is_real_numeric(Z.dtype):
        raise TypeError("%s must hold real numbers, got dtype %s" % (name, Z.dtype))
    require_ndim(Z, 2, name)
    dtype = np.float32 if Z.dtype == np.float32 else np.float64
    return c_aligned(Z, dtype)


def labels(y, name="y"):
    """y as a C-contiguous uint8 vector. Any integer dtype is accepted; the
    library's labels are bytes, so values outside 0..255 are refused here
    (labels >= the number of classes are refused by the library)."""
    y = np.asarray(y)
    if y.dtype.kind not in "iu":
        raise TypeError("%s must hold integer labels, got dtype %s" % (name, y.dtype))
    require_ndim(y, 1, name)
    if y.dtype != np.uint8 and y.size:
        low, high = y.min(), y.max()
        if low < 0:
            raise ValueError("%s holds a negative label (%d)" % (name, low))
        if high > 255:
            raise ValueError(
                "%s holds label %d; the library's labels are bytes (at most 256 classes)" % (name, high)
            )
    return c_aligned(y, np.uint8)


class Weights:
    """A weight matrix that an epoch updates in place, lenient form.

    A C-contiguous, aligned float32 array is handed to the library as it is.
    Anything else of a float dtype (float64 under numpy >= 2, Fortran order,
    a strided view) is copied to a float32 working array, the library updates
    that, and `write_back()` stores the result into the caller's array, so the
    update always lands where the caller looks.
    """

    def __init__(self, a, name):
        require_ndarray(a, name, "it is updated in place")
        if a.dtype.kind != "f":
            raise TypeError("%s must be a float array, got dtype %s" % (name, a.dtype))
        require_ndim(a, 2, name)
        require_writeable(a, name)
        self.target = a
        direct = a.dtype == np.float32 and a.flags.c_contiguous and a.flags.aligned
        self.work = a if direct else np.array(a, dtype=np.float32, order="C")

    @property
    def shape(self):
        return self.target.shape

    def pointer(self):
        return pointer(self.work)

    def write_back(self):
        if self.work is not self.target:
            np.copyto(self.target, self.work, casting="unsafe")
