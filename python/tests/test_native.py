"""The package's contact with the native library: where it is loaded from,
panics, status mapping, the GIL and threads."""
import os
import shutil
import subprocess
import sys
import sysconfig
import threading
import time

import numpy as np
import pytest

import simple_ml
import simple_ml_ext
from simple_ml import IdxFormatError, SimpleMLError, _native


def test_library_is_inside_the_installed_package():
    package_dir = os.path.dirname(os.path.abspath(simple_ml.__file__))
    if os.environ.get(_native.LIBRARY_ENV):
        assert _native.LIBRARY_PATH == os.path.abspath(os.environ[_native.LIBRARY_ENV])
    else:
        assert os.path.dirname(_native.LIBRARY_PATH) == package_dir
    assert os.path.dirname(os.path.abspath(simple_ml_ext.__file__)) == os.path.dirname(package_dir)
    # Installed into site-packages (or another install scheme), not the source tree.
    assert os.path.isfile(os.path.join(package_dir, "simple_ml.h"))


def test_all_exports_only_the_api():
    assert simple_ml_ext.__all__ == ["softmax_regression_epoch_cpp", "nn_epoch_cpp", "softmax_loss_cpp"]
    namespace = {}
    exec("from simple_ml_ext import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(simple_ml_ext.__all__)
    namespace = {}
    exec("from simple_ml import *", namespace)
    for name in ["add", "parse_mnist", "softmax_loss", "softmax_regression_epoch", "nn_epoch",
                 "loss_err", "train_softmax", "train_nn"]:
        assert callable(namespace[name])
    assert "np" not in namespace and "ctypes" not in namespace


def test_add():
    assert simple_ml.add(5, 6) == 11
    assert simple_ml.add(3.2, 1.0) == 4.2
    np.testing.assert_array_equal(simple_ml.add(np.array([1, 2]), np.array([3, 4])), [4, 6])


PANIC_SCRIPT = r"""
import numpy as np, simple_ml
from simple_ml import _native
try:
    _native.check(_native.lib.sml_test_panic())
except simple_ml.SimpleMLError as e:
    print("caught", type(e).__name__, e.status_name, "|", e)
# The interpreter and the library carry on.
print("after", float(simple_ml.softmax_loss(np.zeros((2, 10)), np.array([1, 2]))))
"""


def test_panic_becomes_exception_and_process_lives_on():
    env = dict(os.environ, RUST_BACKTRACE="0")
    run = subprocess.run([sys.executable, "-c", PANIC_SCRIPT], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "caught SimpleMLError SML_PANIC | panic inside simple_ml: sml_test_panic was called"
    assert lines[1].startswith("after 2.302585")


def test_panic_in_process():
    status = _native.lib.sml_test_panic()
    assert status == _native.SML_PANIC
    with pytest.raises(SimpleMLError, match="panic inside simple_ml: sml_test_panic was called") as info:
        _native.check(status)
    assert info.value.status == _native.SML_PANIC and not isinstance(info.value, ValueError)
    # A later call succeeds and clears the message.
    simple_ml.softmax_loss(np.zeros((1, 2)), np.array([0]))
    assert _native.last_error_message() == ""


@pytest.mark.parametrize(
    "status,expected",
    [
        (_native.SML_INVALID_ARGUMENT, ValueError),
        (_native.SML_SIZE_OVERFLOW, ValueError),
        (_native.SML_LABEL_OUT_OF_RANGE, ValueError),
        (_native.SML_SHAPE_MISMATCH, ValueError),
        (_native.SML_IO, OSError),
        (_native.SML_BAD_FORMAT, IdxFormatError),
        (_native.SML_NULL_POINTER, SimpleMLError),
        (_native.SML_BUFFER_TOO_SMALL, SimpleMLError),
        (_native.SML_PANIC, SimpleMLError),
        (77, SimpleMLError),
    ],
)
def test_every_status_maps_to_an_exception(status, expected):
    exc = _native.error_for(status, "the library's message")
    assert type(exc) is expected
    assert str(exc) == "the library's message"
    assert exc.status == status
    assert exc.status_name == (_native.STATUS_NAMES.get(status, "SML_UNKNOWN_STATUS"))


def test_io_errors_pick_the_errno_subclass():
    exc = _native.error_for(_native.SML_IO, "x: cannot read file: No such file or directory (os error 2)", "x")
    assert type(exc) is FileNotFoundError and exc.filename == "x" and exc.errno == 2
    exc = _native.error_for(_native.SML_IO, "x: cannot read file: Is a directory (os error 21)", "x")
    assert type(exc) is IsADirectoryError


def test_long_error_messages_are_read_whole(tmp_path):
    """sml_last_error_message is asked again with a bigger buffer when the
    first is too small."""
    long_dir = tmp_path / ("d" * 200) / ("e" * 200) / ("f" * 200)
    long_dir.mkdir(parents=True)
    missing = str(long_dir / "missing-images")
    with pytest.raises(FileNotFoundError) as info:
        simple_ml.parse_mnist(missing, missing)
    assert missing in str(info.value) and len(str(info.value)) > 600


# ---------------------------------------------------------------------------
# The GIL and threads.
# ---------------------------------------------------------------------------


def big_problem(m=20000, n=784, d=100, k=10):
    rng = np.random.default_rng(1)
    X = rng.random((m, n), dtype=np.float32)
    y = rng.integers(0, k, size=m).astype(np.uint8)
    W1 = (rng.standard_normal((n, d)) / 10).astype(np.float32)
    W2 = (rng.standard_normal((d, k)) / 3).astype(np.float32)
    return X, y, W1, W2


def test_native_calls_release_the_gil():
    """While one thread is inside nn_epoch, this thread keeps running Python
    code: ctypes.CDLL releases the GIL for the whole native call. (Through
    ctypes.PyDLL, which keeps the GIL, this thread would stall for the whole
    call.)"""
    X, y, W1, W2 = big_problem()
    call = {}

    def work():
        call["start"] = time.perf_counter()
        simple_ml_ext.nn_epoch_cpp(X, y, W1, W2, 0.1, 100)
        call["end"] = time.perf_counter()

    t = threading.Thread(target=work)
    stamps = []
    t.start()
    while t.is_alive():
        stamps.append(time.perf_counter())
    t.join()
    during = [s for s in stamps if call["start"] <= s <= call["end"]]
    duration = call["end"] - call["start"]
    assert duration > 0.05, "the native call was too quick to measure (%.4f s)" % duration
    # This thread ran all through the call, never stalled for a large part of it.
    assert len(during) > 100
    gaps = np.diff([call["start"]] + during + [call["end"]])
    assert gaps.max() < duration / 4, "stalled %.3f s of a %.3f s call" % (gaps.max(), duration)


def test_concurrent_calls_give_sequential_bits():
    X, y, W1_0, W2_0 = big_problem(m=6000)
    expected = []
    for lr in (0.05, 0.1, 0.2, 0.4):
        W1, W2 = W1_0.copy(), W2_0.copy()
        simple_ml.nn_epoch(X, y, W1, W2, lr=lr, batch=50)
        expected.append((W1, W2))
    results = [None] * 4
    errors = []

    def work(i, lr):
        try:
            W1, W2 = W1_0.copy(), W2_0.copy()
            simple_ml.nn_epoch(X, y, W1, W2, lr=lr, batch=50)
            # The last error is per thread: each thread reads its own message.
            for _ in range(20):
                with pytest.raises(ValueError, match="out of range for %d classes" % (i + 1)):
                    simple_ml_ext.softmax_regression_epoch_cpp(X, y, np.zeros((784, i + 1), np.float32), lr, 10)
            results[i] = (W1, W2)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i, lr)) for i, lr in enumerate((0.05, 0.1, 0.2, 0.4))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for (W1, W2), (E1, E2) in zip(results, expected):
        np.testing.assert_array_equal(W1, E1)
        np.testing.assert_array_equal(W2, E2)


# ---------------------------------------------------------------------------
# Where the library comes from.
# ---------------------------------------------------------------------------


def test_copied_package_loads_its_own_library(tmp_path):
    """The library is found relative to the module: a copy of the installed
    package elsewhere loads the copy's library, with no LD_LIBRARY_PATH."""
    package_dir = os.path.dirname(os.path.abspath(simple_ml.__file__))
    shutil.copytree(package_dir, tmp_path / "simple_ml", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(simple_ml_ext.__file__, tmp_path / "simple_ml_ext.py")
    env = {k: v for k, v in os.environ.items() if k not in (_native.LIBRARY_ENV, "LD_LIBRARY_PATH")}
    env["PYTHONPATH"] = str(tmp_path)
    script = (
        "import numpy as np, simple_ml, simple_ml_ext\n"
        "from simple_ml import _native\n"
        "print(simple_ml.__file__); print(simple_ml_ext.__file__); print(_native.LIBRARY_PATH)\n"
        "t = np.zeros((2, 2), np.float32)\n"
        "simple_ml_ext.softmax_regression_epoch_cpp(np.eye(2, dtype=np.float32), np.array([0, 1], np.uint8), t, 1.0, 2)\n"
        "print(t.tolist())\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=60)
    assert run.returncode == 0, run.stderr
    module, ext_module, library, theta = run.stdout.splitlines()
    assert module.startswith(str(tmp_path)) and ext_module.startswith(str(tmp_path))
    assert library.startswith(str(tmp_path / "simple_ml"))
    assert theta == "[[0.25, -0.25], [-0.25, 0.25]]"


def test_simple_ml_lib_selects_another_build(tmp_path):
    """$SIMPLE_ML_LIB points the package at another build of the library."""
    other = tmp_path / "libsimple_ml_other.so"
    shutil.copy(_native.LIBRARY_PATH, other)
    env = dict(os.environ, **{_native.LIBRARY_ENV: str(other)})
    run = subprocess.run(
        [sys.executable, "-c", "from simple_ml import _native; print(_native.LIBRARY_PATH)"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(other)
    env[_native.LIBRARY_ENV] = str(tmp_path / "nothing-here.so")
    run = subprocess.run([sys.executable, "-c", "import simple_ml"], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode != 0 and "ImportError" in run.stderr and "nothing-here.so" in run.stderr


def test_wheel_tag_matches_interpreter():
    """The installed library is named with this interpreter's extension
    suffix (setuptools-rust's naming for a bare cdylib)."""
    if os.environ.get(_native.LIBRARY_ENV):
        pytest.skip("a development build is selected")
    assert os.path.basename(_native.LIBRARY_PATH) == "libsimple_ml" + sysconfig.get_config_var("EXT_SUFFIX")
