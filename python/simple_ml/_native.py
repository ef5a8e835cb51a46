"""The native library: where it is loaded from, the ctypes declaration of
every function of include/simple_ml.h, and how its status codes become
Python exceptions.

The library is opened with ctypes.CDLL, so every call releases the GIL for
its duration. Its last-error message is per thread, and is read right after
the failing call on the same thread.
"""
import ctypes
import importlib.machinery
import os
import re
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char,
    c_char_p,
    c_double,
    c_float,
    c_int,
    c_size_t,
    c_ubyte,
    c_uint32,
    c_void_p,
)

LIBRARY_ENV = "SIMPLE_ML_LIB"
"""Environment variable naming another build of the library to load
(for example target/release/libsimple_ml.so while developing)."""

HEADER_NAME = "simple_ml.h"

# ---------------------------------------------------------------------------
# Types of the C API.
# ---------------------------------------------------------------------------

sml_status = c_int


class sml_dataset(Structure):
    """Opaque: an MNIST data set owned by the library."""


class sml_data(Structure):
    _fields_ = [
        ("X", POINTER(c_float)),
        ("y", POINTER(c_ubyte)),
        ("m", c_size_t),
        ("n", c_size_t),
    ]


class sml_epoch_report(Structure):
    _fields_ = [
        ("epoch", c_size_t),
        ("train_loss", c_double),
        ("train_err", c_double),
        ("test_loss", c_double),
        ("test_err", c_double),
    ]


sml_epoch_callback = CFUNCTYPE(None, POINTER(sml_epoch_report), c_void_p)
sml_epoch_control = CFUNCTYPE(c_int, POINTER(sml_epoch_report), c_void_p)

_f32p = POINTER(c_float)
_f64p = POINTER(c_double)
_u8p = POINTER(c_ubyte)
_u32p = POINTER(c_uint32)
_dsp = POINTER(sml_dataset)
_datap = POINTER(sml_data)
_sz = c_size_t

# name -> (restype, argtypes), in the header's order. tests/test_header.py
# parses the header and fails on any difference.
PROTOTYPES = {
    "softmax_regression_epoch_cpp": (None, [_f32p, _u8p, _f32p, _sz, _sz, _sz, c_float, _sz]),
    "nn_epoch_cpp": (None, [_f32p, _u8p, _f32p, _f32p, _sz, _sz, _sz, _sz, c_float, _sz]),
    "softmax_loss_cpp": (c_float, [_f32p, _u8p, _sz, _sz]),
    "sml_softmax_regression_epoch": (sml_status, [_f32p, _u8p, _f32p, _sz, _sz, _sz, c_float, _sz]),
    "sml_nn_epoch": (sml_status, [_f32p, _u8p, _f32p, _f32p, _sz, _sz, _sz, _sz, c_float, _sz]),
    "sml_softmax_loss_f32": (sml_status, [_f32p, _u8p, _sz, _sz, _f64p]),
    "sml_softmax_loss_f64": (sml_status, [_f64p, _u8p, _sz, _sz, _f64p]),
    "sml_loss_err_f32": (sml_status, [_f32p, _u8p, _sz, _sz, _f64p, _f64p]),
    "sml_loss_err_f64": (sml_status, [_f64p, _u8p, _sz, _sz, _f64p, _f64p]),
    "sml_softmax_regression_loss_err": (
        sml_status,
        [_f32p, _u8p, _f32p, _sz, _sz, _sz, _f64p, _f64p],
    ),
    "sml_nn_loss_err": (
        sml_status,
        [_f32p, _u8p, _f32p, _f32p, _sz, _sz, _sz, _sz, _f64p, _f64p],
    ),
    "sml_softmax_regression_predict": (sml_status, [_f32p, _f32p, _sz, _sz, _sz, _u32p]),
    "sml_nn_predict": (sml_status, [_f32p, _f32p, _f32p, _sz, _sz, _sz, _sz, _u32p]),
    "sml_nn_init_weights": (sml_status, [c_uint32, _sz, _sz, _sz, _f32p, _f32p]),
    "sml_train_softmax": (
        sml_status,
        [_datap, _datap, _sz, _sz, c_float, _sz, _f32p, sml_epoch_callback, c_void_p],
    ),
    "sml_train_nn": (
        sml_status,
        [_datap, _datap, _sz, _sz, _sz, c_float, _sz, c_uint32, _f32p, _f32p,
         sml_epoch_callback, c_void_p],
    ),
    "sml_train_softmax_stoppable": (
        sml_status,
        [_datap, _datap, _sz, _sz, c_float, _sz, _f32p, sml_epoch_control, c_void_p,
         POINTER(c_size_t)],
    ),
    "sml_train_nn_stoppable": (
        sml_status,
        [_datap, _datap, _sz, _sz, _sz, c_float, _sz, c_uint32, _f32p, _f32p,
         sml_epoch_control, c_void_p, POINTER(c_size_t)],
    ),
    "sml_mnist_read": (sml_status, [c_char_p, c_char_p, POINTER(_dsp)]),
    "sml_dataset_free": (None, [_dsp]),
    "sml_dataset_count": (_sz, [_dsp]),
    "sml_dataset_features": (_sz, [_dsp]),
    "sml_dataset_image_rows": (_sz, [_dsp]),
    "sml_dataset_image_cols": (_sz, [_dsp]),
    "sml_dataset_images": (_f32p, [_dsp]),
    "sml_dataset_labels": (_u8p, [_dsp]),
    "sml_dataset_images_mut": (_f32p, [_dsp]),
    "sml_dataset_labels_mut": (_u8p, [_dsp]),
    "sml_last_error_message": (sml_status, [POINTER(c_char), _sz, POINTER(c_size_t)]),
    "sml_status_str": (c_char_p, [sml_status]),
    "sml_version": (c_char_p, []),
    "sml_set_num_threads": (None, [_sz]),
    "sml_num_threads": (_sz, []),
    "sml_simd_level": (c_char_p, []),
    "sml_test_panic": (sml_status, []),
}

# The status numbers of the header (stable, never renumbered).
SML_OK = 0
SML_NULL_POINTER = 1
SML_INVALID_ARGUMENT = 2
SML_SIZE_OVERFLOW = 3
SML_LABEL_OUT_OF_RANGE = 4
SML_SHAPE_MISMATCH = 5
SML_IO = 6
SML_BAD_FORMAT = 7
SML_BUFFER_TOO_SMALL = 8
SML_PANIC = 9

STATUS_NAMES = {
    SML_OK: "SML_OK",
    SML_NULL_POINTER: "SML_NULL_POINTER",
    SML_INVALID_ARGUMENT: "SML_INVALID_ARGUMENT",
    SML_SIZE_OVERFLOW: "SML_SIZE_OVERFLOW",
    SML_LABEL_OUT_OF_RANGE: "SML_LABEL_OUT_OF_RANGE",
    SML_SHAPE_MISMATCH: "SML_SHAPE_MISMATCH",
    SML_IO: "SML_IO",
    SML_BAD_FORMAT: "SML_BAD_FORMAT",
    SML_BUFFER_TOO_SMALL: "SML_BUFFER_TOO_SMALL",
    SML_PANIC: "SML_PANIC",
}

# ---------------------------------------------------------------------------
# Loading.
# ---------------------------------------------------------------------------

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _bundled_library():
    """The library that `pip install` put next to this file. setuptools-rust
    names it like an extension module (libsimple_ml.cpython-311-...so)."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES + [".so", ".dylib", ".dll"]:
        candidate = os.path.join(_PACKAGE_DIR, "libsimple_ml" + suffix)
        if os.path.isfile(candidate):
            return candidate
    return None


def library_path():
    """Path of the library this process loads: $SIMPLE_ML_LIB if set, else
    the copy installed inside the package."""
    override = os.environ.get(LIBRARY_ENV)
    if override:
        return os.path.abspath(override)
    bundled = _bundled_library()
    if bundled is None:
        raise ImportError(
            "simple_ml: the native library is missing from %s; install the package "
            "with `pip install ./python` (which builds it with cargo) or point %s at "
            "a build such as target/release/libsimple_ml.so" % (_PACKAGE_DIR, LIBRARY_ENV)
        )
    return bundled


def header_path():
    """The copy of include/simple_ml.h installed with the package (None when
    running from a source tree that was never built)."""
    path = os.path.join(_PACKAGE_DIR, HEADER_NAME)
    return path if os.path.isfile(path) else None


def _load():
    path = library_path()
    try:
        # CDLL (not PyDLL): ctypes releases the GIL around every call.
        lib = ctypes.CDLL(path)
    except OSError as e:
        raise ImportError("simple_ml: cannot load the native library %s: %s" % (path, e)) from e
    for name, (restype, argtypes) in PROTOTYPES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            raise ImportError(
                "simple_ml: %s does not export %s; it is not a build of this version" % (path, name)
            ) from None
        fn.restype = restype
        fn.argtypes = argtypes
    return lib, path


lib, LIBRARY_PATH = _load()


def library_version():
    """The loaded library's version string ("MAJOR.MINOR.PATCH")."""
    return lib.sml_version().decode("ascii")


# ---------------------------------------------------------------------------
# Errors.
# ---------------------------------------------------------------------------


class SimpleMLError(Exception):
    """A failure inside the native library that is not about the caller's
    input: a caught panic (SML_PANIC), or a status the wrapper never expects
    (SML_NULL_POINTER, SML_BUFFER_TOO_SMALL, an unknown number).

    `status` is the library's status number, `status_name` its name, and the
    message is the library's own.
    """

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status
        self.status_name = STATUS_NAMES.get(status, "SML_UNKNOWN_STATUS") if status is not None else None


class IdxFormatError(SimpleMLError, ValueError):
    """A file is not a valid (optionally gzip-compressed) IDX file, or the
    image and label files disagree (SML_BAD_FORMAT)."""


# Statuses that are about the caller's arguments: ValueError, like numpy.
_VALUE_STATUSES = (SML_INVALID_ARGUMENT, SML_SIZE_OVERFLOW, SML_LABEL_OUT_OF_RANGE, SML_SHAPE_MISMATCH)
_OS_ERROR_NUMBER = re.compile(r"\(os error (\d+)\)")


def last_error_message():
    """The calling thread's last error message from the library."""
    needed = c_size_t(0)
    buf = ctypes.create_string_buffer(512)
    status = lib.sml_last_error_message(buf, len(buf), ctypes.byref(needed))
    if status == SML_BUFFER_TOO_SMALL:
        buf = ctypes.create_string_buffer(needed.value)
        status = lib.sml_last_error_message(buf, len(buf), ctypes.byref(needed))
    return buf.value.decode("utf-8", "replace")


def error_for(status, message, filename=None):
    """The exception for a library status: ValueError for refused arguments,
    OSError (FileNotFoundError, IsADirectoryError, ... by errno) for I/O,
    IdxFormatError for a damaged file, SimpleMLError for the rest."""
    name = STATUS_NAMES.get(status, "SML_UNKNOWN_STATUS")
    if status in _VALUE_STATUSES:
        exc = ValueError(message)
    elif status == SML_IO:
        found = _OS_ERROR_NUMBER.search(message)
        if found:
            # OSError(errno, ...) picks the matching subclass by itself.
            exc = OSError(int(found.group(1)), message, filename)
        else:
            exc = OSError(message)
    elif status == SML_BAD_FORMAT:
        return IdxFormatError(message, status)
    else:
        return SimpleMLError(message or name, status)
    exc.status = status
    exc.status_name = name
    return exc


def check(status, filename=None):
    """Raises the exception for a failed library call; call it right after
    the call, on the same thread (the message is per thread)."""
    if status != SML_OK:
        raise error_for(status, last_error_message(), filename)


__all__ = [
    "IdxFormatError",
    "SimpleMLError",
    "check",
    "header_path",
    "lib",
    "library_path",
    "library_version",
]
