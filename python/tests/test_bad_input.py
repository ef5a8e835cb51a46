"""The bad-input matrix through Python (issue 5): each case names its
expected exception, or its documented outcome, and checks that every array
it passed (outputs and inputs) is untouched unless the outcome is an update.

docs/PYTHON.md carries the same matrix as a table; test_docs_table_matches
regenerates the table from CASES and fails when the two differ
(SML_WRITE_DOCS_TABLE=1 prints the table to paste).
"""
import gzip
import os
import struct
import sys
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import pytest

import simple_ml
import simple_ml_ext
from simple_ml import IdxFormatError, SimpleMLError

EXT = "simple_ml_ext"
ML = "simple_ml"


def arrays(m=24, n=6, d=5, k=3, seed=0):
    """A small, valid problem; every case starts from a fresh one."""
    rng = np.random.default_rng(seed)
    return {
        "X": rng.standard_normal((m, n)).astype(np.float32),
        "y": rng.integers(0, k, size=m).astype(np.uint8),
        "theta": (0.1 * rng.standard_normal((n, k))).astype(np.float32),
        "W1": (rng.standard_normal((n, d)) / np.sqrt(d)).astype(np.float32),
        "W2": (rng.standard_normal((d, k)) / np.sqrt(k)).astype(np.float32),
    }


def sre_ext(a, lr=0.1, batch=5):
    simple_ml_ext.softmax_regression_epoch_cpp(a["X"], a["y"], a["theta"], lr, batch)


def sre_ml(a, lr=0.1, batch=5):
    simple_ml.softmax_regression_epoch(a["X"], a["y"], a["theta"], lr=lr, batch=batch)


def nn_ext(a, lr=0.1, batch=5):
    simple_ml_ext.nn_epoch_cpp(a["X"], a["y"], a["W1"], a["W2"], lr, batch)


def nn_ml(a, lr=0.1, batch=5):
    simple_ml.nn_epoch(a["X"], a["y"], a["W1"], a["W2"], lr=lr, batch=batch)


def read_only(x):
    x.setflags(write=False)
    return x


def with_(**changes):
    """A setup that replaces some arrays of the fresh problem. A change is a
    function of the problem's dict; a `_parent` entry keeps the base array
    of a view so that its other elements are checked too."""

    def setup():
        a = arrays()
        for name, change in changes.items():
            a[name] = change(a)
        return a

    return setup


def strided(name):
    """A (rows, cols) view that takes every other column of a wider array."""

    def change(a):
        rows, cols = a[name].shape
        parent = np.zeros((rows, 2 * cols), dtype=np.float32)
        parent[:, ::2] = a[name]
        a[name + "_parent"] = parent
        return parent[:, ::2]

    return change


@dataclass
class Case:
    api: str  # module
    call: str  # function, as the table shows it
    bad: str  # what is wrong, as the table shows it
    setup: Callable[[], dict]
    run: Callable[[dict], object]
    expected: Optional[type] = None  # an exception class, or None: see `outcome`
    outcome: str = ""  # the table's wording when no exception is expected
    message: str = ""  # a fragment the exception's message must contain
    check: Optional[Callable[[dict, dict], None]] = field(default=None, repr=False)


# ---------------------------------------------------------------------------
# Outcome checks for the cases that do not raise.
# ---------------------------------------------------------------------------


def unchanged(before, after):
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)


def same_as_full_batch(before, after):
    theta = before["theta"].copy()
    simple_ml_ext.softmax_regression_epoch_cpp(before["X"], before["y"], theta, 0.1, before["X"].shape[0])
    np.testing.assert_array_equal(after["theta"], theta)


def nan_propagates(before, after):
    # Row 0 holds a NaN; its batch's gradient is NaN in every entry, so all of
    # theta becomes NaN -- exactly where the numpy reference puts NaN.
    import numpy_reference

    theta = before["theta"].copy()
    with np.errstate(invalid="ignore"):
        numpy_reference.softmax_regression_epoch(before["X"], before["y"], theta, lr=0.1, batch=5)
    assert np.isnan(after["theta"]).all()
    np.testing.assert_array_equal(np.isnan(after["theta"]), np.isnan(theta))


def updated_in_place_like_contiguous(before, after):
    theta = np.array(before["theta"], dtype=np.float32, order="C")  # a copy
    simple_ml_ext.softmax_regression_epoch_cpp(before["X"], before["y"], theta, 0.1, 5)
    assert not np.array_equal(after["theta"], before["theta"])
    np.testing.assert_array_equal(after["theta"], theta.astype(after["theta"].dtype))
    if "theta_parent" in after:  # the columns between the view's are untouched
        np.testing.assert_array_equal(after["theta_parent"][:, 1::2], before["theta_parent"][:, 1::2])


def nan_first(X):
    X = X.copy()
    X[0, 0] = np.nan
    return X


def _same_weights():
    a = arrays(n=3, d=3, k=3)
    a["W1"] = a["W2"] = np.eye(3)
    return a


def empty():
    def setup():
        a = arrays()
        a["X"] = a["X"][:0]
        a["y"] = a["y"][:0]
        return a

    return setup


CASES = [
    # ---- simple_ml_ext: strict dtypes --------------------------------------
    Case(EXT, "softmax_regression_epoch_cpp", "X float64", with_(X=lambda a: a["X"].astype(np.float64)), sre_ext, TypeError, message="X must be float32"),
    Case(EXT, "softmax_regression_epoch_cpp", "y int64", with_(y=lambda a: a["y"].astype(np.int64)), sre_ext, TypeError, message="y must be uint8"),
    Case(EXT, "softmax_regression_epoch_cpp", "theta float64", with_(theta=lambda a: a["theta"].astype(np.float64)), sre_ext, TypeError, message="theta must be float32"),
    Case(EXT, "softmax_regression_epoch_cpp", "X a list, not an array", with_(X=lambda a: a["X"].tolist()), sre_ext, TypeError),
    Case(EXT, "nn_epoch_cpp", "W1 float64", with_(W1=lambda a: a["W1"].astype(np.float64)), nn_ext, TypeError, message="W1 must be float32"),
    Case(EXT, "softmax_loss_cpp", "Z int64", lambda: {"Z": np.zeros((4, 3), np.int64), "y": np.zeros(4, np.uint8)}, lambda a: simple_ml_ext.softmax_loss_cpp(a["Z"], a["y"]), TypeError),
    # ---- simple_ml_ext: outputs that cannot be updated in place -------------
    Case(EXT, "softmax_regression_epoch_cpp", "theta not C-contiguous (strided view)", with_(theta=strided("theta")), sre_ext, ValueError, message="C-contiguous"),
    Case(EXT, "softmax_regression_epoch_cpp", "theta Fortran-ordered", with_(theta=lambda a: np.asfortranarray(a["theta"])), sre_ext, ValueError, message="C-contiguous"),
    Case(EXT, "softmax_regression_epoch_cpp", "theta read-only", with_(theta=lambda a: read_only(a["theta"])), sre_ext, ValueError, message="read-only"),
    Case(EXT, "nn_epoch_cpp", "W1 not C-contiguous", with_(W1=strided("W1")), nn_ext, ValueError, message="W1 must be C-contiguous"),
    Case(EXT, "nn_epoch_cpp", "W2 read-only (W1 fine)", with_(W2=lambda a: read_only(a["W2"])), nn_ext, ValueError, message="W2 is read-only"),
    Case(EXT, "softmax_regression_epoch_cpp", "theta overlaps X in memory", with_(theta=lambda a: a["X"].reshape(-1)[: 6 * 3].reshape(6, 3)), sre_ext, ValueError, message="overlaps"),
    # ---- shapes ---------------------------------------------------------------
    Case(EXT, "softmax_regression_epoch_cpp", "theta (n+1) x k", with_(theta=lambda a: np.zeros((7, 3), np.float32)), sre_ext, ValueError, message="6 rows"),
    Case(EXT, "softmax_regression_epoch_cpp", "len(y) != m", with_(y=lambda a: a["y"][:-1]), sre_ext, ValueError, message="23 labels"),
    Case(EXT, "softmax_regression_epoch_cpp", "X 1-dimensional", with_(X=lambda a: a["X"].reshape(-1)), sre_ext, ValueError, message="2-dimensional"),
    Case(EXT, "nn_epoch_cpp", "W2 (d+1) x k", with_(W2=lambda a: np.zeros((6, 3), np.float32)), nn_ext, ValueError, message="W2 must have 5 rows"),
    Case(ML, "nn_epoch", "W2 is W1 (one float64 array, n = d = k)", lambda: _same_weights(), nn_ml, ValueError, message="share memory"),
    Case(ML, "nn_epoch", "W1 rows != columns of X", with_(W1=lambda a: np.zeros((5, 5), np.float32)), nn_ml, ValueError, message="W1 must have 6 rows"),
    Case(ML, "softmax_regression_epoch", "theta 3-dimensional", with_(theta=lambda a: a["theta"][None]), sre_ml, ValueError, message="2-dimensional"),
    Case(ML, "softmax_loss", "len(y) != rows of Z", lambda: {"Z": np.zeros((4, 3)), "y": np.zeros(5, np.uint8)}, lambda a: simple_ml.softmax_loss(a["Z"], a["y"]), ValueError),
    # ---- batch ----------------------------------------------------------------
    Case(EXT, "softmax_regression_epoch_cpp", "batch 0", arrays, lambda a: sre_ext(a, batch=0), ValueError, message="batch must be positive"),
    Case(EXT, "softmax_regression_epoch_cpp", "batch -1", arrays, lambda a: sre_ext(a, batch=-1), ValueError, message="batch must be positive"),
    Case(EXT, "softmax_regression_epoch_cpp", "batch 5.0 (float)", arrays, lambda a: sre_ext(a, batch=5.0), TypeError),
    Case(ML, "softmax_regression_epoch", "batch True (bool)", arrays, lambda a: sre_ml(a, batch=True), TypeError, message="bool"),
    Case(ML, "nn_epoch", "batch 0", arrays, lambda a: nn_ml(a, batch=0), ValueError, message="batch must be positive"),
    Case(ML, "softmax_regression_epoch", "batch > m (100 > 24)", arrays, lambda a: sre_ml(a, batch=100), None, "one batch of all m rows, as batch = m", check=same_as_full_batch),
    # ---- labels ---------------------------------------------------------------
    Case(EXT, "softmax_regression_epoch_cpp", "label 3 with k = 3", with_(y=lambda a: np.where(np.arange(24) == 17, 3, a["y"]).astype(np.uint8)), sre_ext, ValueError, message="label 3 at row 17 is out of range for 3 classes"),
    Case(EXT, "nn_epoch_cpp", "label 255 with k = 3", with_(y=lambda a: np.where(np.arange(24) == 23, 255, a["y"]).astype(np.uint8)), nn_ext, ValueError, message="out of range"),
    Case(ML, "softmax_regression_epoch", "label >= k, float64 theta (copied path)", with_(y=lambda a: np.full(24, 9, np.int64), theta=lambda a: a["theta"].astype(np.float64)), sre_ml, ValueError, message="out of range"),
    Case(ML, "softmax_regression_epoch", "label -1 (int64 y)", with_(y=lambda a: np.concatenate([[-1], a["y"][1:]]).astype(np.int64)), sre_ml, ValueError, message="negative"),
    Case(ML, "loss_err", "label 256 (int64 y)", lambda: {"h": np.zeros((2, 300)), "y": np.array([1, 256])}, lambda a: simple_ml.loss_err(a["h"], a["y"]), ValueError, message="bytes"),
    Case(ML, "softmax_loss", "y float64", lambda: {"Z": np.zeros((2, 3)), "y": np.array([0.0, 1.0])}, lambda a: simple_ml.softmax_loss(a["Z"], a["y"]), TypeError),
    # ---- learning rate ----------------------------------------------------------
    Case(EXT, "softmax_regression_epoch_cpp", "lr NaN", arrays, lambda a: sre_ext(a, lr=float("nan")), ValueError, message="learning rate must be finite"),
    Case(EXT, "softmax_regression_epoch_cpp", "lr +inf", arrays, lambda a: sre_ext(a, lr=float("inf")), ValueError, message="learning rate must be finite"),
    Case(ML, "nn_epoch", "lr -inf, float64 weights (copied path)", with_(W1=lambda a: a["W1"].astype(np.float64), W2=lambda a: a["W2"].astype(np.float64)), lambda a: nn_ml(a, lr=-float("inf")), ValueError, message="learning rate must be finite"),
    Case(ML, "softmax_regression_epoch", "lr 1e39 (inf as float32)", arrays, lambda a: sre_ml(a, lr=1e39), ValueError, message="learning rate must be finite"),
    Case(ML, "softmax_regression_epoch", "lr '0.1' (a string)", arrays, lambda a: sre_ml(a, lr="0.1"), TypeError),
    # ---- simple_ml: what numpy code may pass --------------------------------------
    Case(ML, "softmax_regression_epoch", "theta read-only float64", with_(theta=lambda a: read_only(a["theta"].astype(np.float64))), sre_ml, ValueError, message="read-only"),
    Case(ML, "softmax_regression_epoch", "theta int64", with_(theta=lambda a: np.zeros((6, 3), np.int64)), sre_ml, TypeError, message="float"),
    Case(ML, "softmax_regression_epoch", "theta a list", with_(theta=lambda a: a["theta"].tolist()), sre_ml, TypeError, message="numpy.ndarray"),
    Case(ML, "softmax_regression_epoch", "X complex64", with_(X=lambda a: a["X"].astype(np.complex64)), sre_ml, TypeError),
    Case(ML, "softmax_regression_epoch", "theta Fortran-ordered", with_(theta=lambda a: np.asfortranarray(a["theta"])), sre_ml, None, "updated in place (computed on a float32 copy, written back)", check=updated_in_place_like_contiguous),
    Case(ML, "softmax_regression_epoch", "theta a strided float32 view", with_(theta=strided("theta")), sre_ml, None, "updated in place through the view; other columns untouched", check=updated_in_place_like_contiguous),
    Case(ML, "softmax_regression_epoch", "theta float64", with_(theta=lambda a: a["theta"].astype(np.float64)), sre_ml, None, "updated in place: float32 step written back", check=updated_in_place_like_contiguous),
    # ---- empty and non-finite data ------------------------------------------------
    Case(EXT, "softmax_regression_epoch_cpp", "m = 0 (no rows)", empty(), sre_ext, None, "no-op: theta unchanged", check=unchanged),
    Case(ML, "nn_epoch", "m = 0 (no rows)", empty(), nn_ml, None, "no-op: W1, W2 unchanged", check=unchanged),
    Case(ML, "softmax_loss", "m = 0 (no rows)", lambda: {"Z": np.zeros((0, 3)), "y": np.zeros(0, np.uint8)}, lambda a: simple_ml.softmax_loss(a["Z"], a["y"]), ValueError, message="no rows"),
    Case(EXT, "softmax_regression_epoch_cpp", "n = 0 (X has no columns)", lambda: {"X": np.zeros((4, 0), np.float32), "y": np.zeros(4, np.uint8), "theta": np.zeros((0, 3), np.float32)}, sre_ext, ValueError, message="must be positive"),
    Case(ML, "softmax_regression_epoch", "k = 0 (theta has no columns)", with_(theta=lambda a: np.zeros((6, 0), np.float32)), sre_ml, ValueError),
    Case(ML, "softmax_regression_epoch", "NaN in X[0, 0]", with_(X=lambda a: nan_first(a["X"])), sre_ml, None, "no error: NaN propagates into theta (no crash)", check=nan_propagates),
]


# ---------------------------------------------------------------------------
# Damaged files for parse_mnist.
# ---------------------------------------------------------------------------


def images(count=3, rows=2, cols=2, magic=0x803):
    return struct.pack(">IIII", magic, count, rows, cols) + bytes(range(count * rows * cols))


def labels(count=3, magic=0x801):
    return struct.pack(">II", magic, count) + bytes(i % 10 for i in range(count))


FILE_CASES = [
    # (bad, image bytes or a special, label bytes or a special, exception, message fragment)
    ("image file missing", "missing", labels(), FileNotFoundError, "No such file"),
    ("label file missing", images(), "missing", FileNotFoundError, "No such file"),
    ("image path is a directory", "directory", labels(), IsADirectoryError, "Is a directory"),
    ("empty image file", b"", labels(), IdxFormatError, "truncated IDX header"),
    ("header truncated (10 of 16 bytes)", images()[:10], labels(), IdxFormatError, "truncated IDX header"),
    ("pixels truncated (one byte short)", images()[:-1], labels(), IdxFormatError, "truncated IDX data"),
    ("header claims 2^30 images over 12 bytes", struct.pack(">IIII", 0x803, 2 ** 30, 28, 28) + bytes(12), labels(), IdxFormatError, "truncated IDX data"),
    ("trailing byte after the pixels", images() + b"\0", labels(), IdxFormatError, "trailing bytes"),
    ("trailing byte after the labels", images(), labels() + b"\0", IdxFormatError, "trailing bytes"),
    ("label magic in the image file", images(magic=0x801), labels(), IdxFormatError, "magic"),
    ("image magic in the label file", images(), images(), IdxFormatError, "magic"),
    ("3 images, 4 labels", images(), labels(4), IdxFormatError, "3 images but label file holds 4"),
    ("zero dimension (0 rows per image)", images(rows=0), labels(), IdxFormatError, "zero dimension"),
    ("corrupt gzip stream", b"\x1f\x8b\x08\x00" + b"garbage" * 4, labels(), IdxFormatError, "gzip"),
    ("gzip stream cut short", gzip.compress(images())[:-8], labels(), IdxFormatError, "gzip"),
    ("non-UTF-8 image path that does not exist", "missing-non-utf8", labels(), FileNotFoundError, "No such file"),
    ("non-UTF-8 label path that does not exist", images(), "missing-non-utf8", FileNotFoundError, "No such file"),
    ("path with a NUL byte", "nul", labels(), ValueError, "NUL"),
]

VALID_FILE_CASES = [
    # (what, image bytes, label bytes, file name suffix) -> read like the gzip originals
    ("uncompressed IDX", images(), labels(), ""),
    ("gzip IDX", gzip.compress(images()), gzip.compress(labels()), ".gz"),
    ("multi-member gzip", gzip.compress(images()[:7]) + gzip.compress(images()[7:]), labels(), ".gz"),
    ("non-UTF-8 file name", images(), labels(), b"-\xff\xfe"),
]


def write_pair(tmp_path, image, label, suffix=""):
    folder = os.fsencode(str(tmp_path))
    if isinstance(suffix, str):
        suffix = suffix.encode()

    def place(name, content):
        path = os.path.join(folder, name + suffix)
        if content == "missing":
            return path
        if content == "missing-non-utf8":
            return os.path.join(folder, b"gone-\xff")
        if content == "directory":
            os.mkdir(path)
            return path
        if content == "nul":
            return os.path.join(folder, b"bad\0name")
        with open(path, "wb") as f:
            f.write(content)
        return path

    return place(b"images", image), place(b"labels", label)


# ---------------------------------------------------------------------------
# The tests.
# ---------------------------------------------------------------------------


def snapshot(a):
    return {name: np.array(value, copy=True) for name, value in a.items() if isinstance(value, np.ndarray)}


@pytest.mark.parametrize("case", CASES, ids=["%s.%s: %s" % (c.api, c.call, c.bad) for c in CASES])
def test_bad_input(case):
    a = case.setup()
    before = snapshot(a)
    if case.expected is not None:
        with pytest.raises(case.expected) as info:
            case.run(a)
        assert case.message in str(info.value)
        if case.expected in (ValueError, TypeError):
            # Never the package's catch-all: these are the caller's mistakes.
            assert not isinstance(info.value, SimpleMLError)
        unchanged(before, snapshot(a))
    else:
        assert case.run(a) is None
        case.check(before, snapshot(a))


def test_there_are_at_least_30_cases():
    assert len(CASES) + len(FILE_CASES) >= 30
    assert sum(c.expected is not None for c in CASES) >= 30


@pytest.mark.parametrize("bad,image,label,expected,message", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_damaged_file(tmp_path, bad, image, label, expected, message):
    image_path, label_path = write_pair(tmp_path, image, label)
    with pytest.raises(expected) as info:
        simple_ml.parse_mnist(image_path, label_path)
    assert message in str(info.value)
    if isinstance(info.value, OSError):
        assert info.value.status_name == "SML_IO"
        failing = image_path if isinstance(image, str) else label_path
        assert info.value.filename == os.fsdecode(failing)
    if isinstance(info.value, IdxFormatError):
        assert info.value.status_name == "SML_BAD_FORMAT" and isinstance(info.value, ValueError)


@pytest.mark.parametrize("what,image,label,suffix", VALID_FILE_CASES, ids=[c[0] for c in VALID_FILE_CASES])
def test_valid_file_forms(tmp_path, what, image, label, suffix):
    image_path, label_path = write_pair(tmp_path, image, label, suffix)
    for paths in [(image_path, label_path), (os.fsdecode(image_path), os.fsdecode(label_path))]:
        X, y = simple_ml.parse_mnist(*paths)
        np.testing.assert_array_equal(X, np.arange(12, dtype=np.float32).reshape(3, 4) / np.float32(255))
        np.testing.assert_array_equal(y, [0, 1, 2])


def test_pathlike_paths(tmp_path):
    image_path, label_path = write_pair(tmp_path, images(), labels())
    import pathlib

    X, y = simple_ml.parse_mnist(pathlib.Path(os.fsdecode(image_path)), pathlib.Path(os.fsdecode(label_path)))
    assert X.shape == (3, 4) and y.shape == (3,)


# ---------------------------------------------------------------------------
# The table in docs/PYTHON.md.
# ---------------------------------------------------------------------------

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "docs", "PYTHON.md")


def render_table():
    rows = ["| # | call | bad input | result |", "|---|---|---|---|"]
    number = 0
    for c in CASES:
        number += 1
        result = c.expected.__name__ if c.expected is not None else c.outcome
        if c.expected is not None and c.message:
            result += ' ("%s")' % c.message
        rows.append("| %d | `%s.%s` | %s | %s |" % (number, c.api, c.call, c.bad, result))
    for bad, _image, _label, expected, message in FILE_CASES:
        number += 1
        rows.append('| %d | `simple_ml.parse_mnist` | %s | %s ("%s") |' % (number, bad, expected.__name__, message))
    for what, _image, _label, _suffix in VALID_FILE_CASES:
        number += 1
        rows.append("| %d | `simple_ml.parse_mnist` | %s | read like the gzip originals |" % (number, what))
    return "\n".join(rows) + "\n"


def test_docs_table_matches():
    table = render_table()
    if os.environ.get("SML_WRITE_DOCS_TABLE"):
        sys.stdout.write(table)
    if not os.path.exists(DOCS):
        pytest.skip("docs/PYTHON.md is not beside this test (installed elsewhere)")
    with open(DOCS, encoding="utf-8") as f:
        docs = f.read()
    assert table in docs, "docs/PYTHON.md's bad-input table differs from the tests; run with SML_WRITE_DOCS_TABLE=1 -s to print it"
