"""Shared fixtures. The tests exercise the *installed* package (scripts/test-python
installs ./python into .venv first); importing the source tree by accident
would test files that pip never copied, so that is refused here."""
import os

import numpy as np
import pytest

import simple_ml
import simple_ml_ext

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(TESTS_DIR))
DATA = os.path.join(REPO, "data")
SOURCE_PACKAGE = os.path.join(REPO, "python")

# tests/course/ is the course's test file, run by test_course_layout.py from a
# course-shaped folder; pytest must not collect it from here.
collect_ignore = ["course"]

for module in (simple_ml, simple_ml_ext):
    if os.path.abspath(module.__file__).startswith(SOURCE_PACKAGE + os.sep):
        raise RuntimeError(
            "%s was imported from the source tree (%s), not from the installed package; "
            "run scripts/test-python, or `pip install ./python` and run pytest from "
            "outside python/" % (module.__name__, module.__file__)
        )


def mnist_path(name):
    return os.path.join(DATA, name)


@pytest.fixture(scope="session")
def mnist_train():
    return simple_ml.parse_mnist(
        mnist_path("train-images-idx3-ubyte.gz"), mnist_path("train-labels-idx1-ubyte.gz")
    )


@pytest.fixture(scope="session")
def mnist_test():
    return simple_ml.parse_mnist(
        mnist_path("t10k-images-idx3-ubyte.gz"), mnist_path("t10k-labels-idx1-ubyte.gz")
    )


def course_init(n, hidden, k, seed=0):
    """The course's initial weights, written as the course writes them: under
    numpy >= 2 `astype(np.float32) / np.sqrt(h)` is float64."""
    np.random.seed(seed)
    W1 = np.random.randn(n, hidden).astype(np.float32) / np.sqrt(hidden)
    W2 = np.random.randn(hidden, k).astype(np.float32) / np.sqrt(k)
    return W1, W2
