"""The course's own way of running hw0's tests, against this package: a
course-shaped folder (src/, data/, tests/test_simple_ml.py), pytest run from
its root, the test file importing with `sys.path.append("./src")`.

Two ways a student uses the package:
- installed (pip install ./python): src/ still holds the unfinished
  homework -- here stubs that raise -- and the installed modules win,
  because site-packages comes before the appended ./src;
- copied: the installed `simple_ml` package and `simple_ml_ext.py` are
  copied into src/ and nothing is installed for that interpreter's path
  order to prefer (PYTHONPATH=src puts the copies first).
"""
import os
import shutil
import subprocess
import sys

import pytest

import simple_ml
import simple_ml_ext
from conftest import DATA, TESTS_DIR

STUB_HOMEWORK = '''
import numpy as np
def add(x, y):
    raise NotImplementedError("the student's unfinished simple_ml.py was imported")
def parse_mnist(image_filename, label_filename):
    raise NotImplementedError("the student's unfinished simple_ml.py was imported")
def softmax_loss(Z, y):
    raise NotImplementedError("the student's unfinished simple_ml.py was imported")
def softmax_regression_epoch(X, y, theta, lr=0.1, batch=100):
    raise NotImplementedError("the student's unfinished simple_ml.py was imported")
def nn_epoch(X, y, W1, W2, lr=0.1, batch=100):
    raise NotImplementedError("the student's unfinished simple_ml.py was imported")
def loss_err(h, y):
    raise NotImplementedError("the student's unfinished simple_ml.py was imported")
'''


def course_folder(root, how):
    src = root / "src"
    src.mkdir()
    (root / "tests").mkdir()
    os.symlink(DATA, root / "data")
    shutil.copy(os.path.join(TESTS_DIR, "course", "test_simple_ml.py"), root / "tests" / "test_simple_ml.py")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SIMPLE_ML_LIB", "LD_LIBRARY_PATH")}
    if how == "installed":
        (src / "simple_ml.py").write_text(STUB_HOMEWORK)
        (src / "simple_ml_ext.cpp").write_text("// the course's unbuilt pybind11 extension\n")
    else:
        package_dir = os.path.dirname(os.path.abspath(simple_ml.__file__))
        shutil.copytree(package_dir, src / "simple_ml", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(simple_ml_ext.__file__, src / "simple_ml_ext.py")
        env["PYTHONPATH"] = str(src)
    return env


@pytest.mark.parametrize("how", ["installed", "copied"])
def test_course_tests_pass(tmp_path, how):
    env = course_folder(tmp_path, how)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_simple_ml.py"],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "6 passed" in run.stdout
    # Which modules served the run.
    where = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.append('./src'); import simple_ml, simple_ml_ext, simple_ml._native as n; "
         "print(simple_ml.__file__); print(simple_ml_ext.__file__); print(n.LIBRARY_PATH)"],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=60,
    )
    assert where.returncode == 0, where.stderr
    expected_root = os.path.dirname(os.path.dirname(simple_ml.__file__)) if how == "installed" else str(tmp_path / "src")
    for line in where.stdout.splitlines():
        assert line.startswith(expected_root + os.sep), (how, line)
