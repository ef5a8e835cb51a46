"""python -m simple_ml: the homework's __main__, on a data folder."""
import gzip
import io
import os
import struct
import subprocess
import sys
from contextlib import redirect_stdout

import numpy as np

import simple_ml

HEADER = "| Epoch | Train Loss | Train Err | Test Loss | Test Err |"


def write_mnist_like(folder, compress_train):
    """Small IDX files with MNIST's names: 300 training and 60 test images of
    4x4 pixels, labels 0..9 that depend on the pixels (so training learns)."""
    rng = np.random.default_rng(5)
    for prefix, count, compress in (("train", 300, compress_train), ("t10k", 60, False)):
        pixels = rng.integers(0, 256, size=(count, 16), dtype=np.uint8)
        labels = (pixels[:, :10].argmax(axis=1)).astype(np.uint8)
        image_bytes = struct.pack(">IIII", 0x803, count, 4, 4) + pixels.tobytes()
        label_bytes = struct.pack(">II", 0x801, count) + labels.tobytes()
        for name, content in (("%s-images-idx3-ubyte" % prefix, image_bytes), ("%s-labels-idx1-ubyte" % prefix, label_bytes)):
            if compress:
                with open(os.path.join(folder, name + ".gz"), "wb") as f:
                    f.write(gzip.compress(content))
            else:
                with open(os.path.join(folder, name), "wb") as f:
                    f.write(content)


def test_main_trains_both_models(tmp_path):
    write_mnist_like(str(tmp_path), compress_train=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(
        [sys.executable, "-m", "simple_ml", "--data", str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "Training softmax regression"
    assert lines[1] == HEADER
    assert lines[12] == ""
    assert lines[13] == "Training two layer neural network w/ 100 hidden units"
    assert lines[14] == HEADER
    assert len(lines) == 35
    assert [line.split("|")[1].strip() for line in lines[2:12]] == [str(i) for i in range(10)]
    assert [line.split("|")[1].strip() for line in lines[15:35]] == [str(i) for i in range(20)]

    # The same tables as the course's __main__ calls, made in this process.
    X_tr, y_tr = simple_ml.parse_mnist(tmp_path / "train-images-idx3-ubyte.gz", tmp_path / "train-labels-idx1-ubyte.gz")
    X_te, y_te = simple_ml.parse_mnist(tmp_path / "t10k-images-idx3-ubyte", tmp_path / "t10k-labels-idx1-ubyte")
    out = io.StringIO()
    with redirect_stdout(out):
        simple_ml.train_softmax(X_tr, y_tr, X_te, y_te, epochs=10, lr=0.1)
        simple_ml.train_nn(X_tr, y_tr, X_te, y_te, hidden_dim=100, epochs=20, lr=0.2)
    assert out.getvalue().splitlines() == lines[1:12] + lines[14:]
    # Training learned something.
    assert float(lines[34].split("|")[3]) < float(lines[15].split("|")[3])


def test_main_reports_a_missing_folder(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "simple_ml", "--data", str(tmp_path / "nowhere")],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 1
    assert "No such file or directory" in run.stderr and "train-images-idx3-ubyte.gz" in run.stderr
    assert "Traceback" not in run.stderr
