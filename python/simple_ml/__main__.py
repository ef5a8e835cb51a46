"""python -m simple_ml [--data DIR]: the homework's __main__ — train softmax
regression (10 epochs, lr 0.1) and then the two-layer network (100 hidden
units, 20 epochs, lr 0.2) on the MNIST files in DIR, printing the course's
tables."""
import argparse
import os
import sys

from . import parse_mnist, train_nn, train_softmax

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def data_file(folder, name):
    """The course's file name in `folder`, or its uncompressed form
    (without .gz) when only that exists."""
    path = os.path.join(folder, name)
    plain = path[: -len(".gz")]
    if not os.path.exists(path) and os.path.exists(plain):
        return plain
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m simple_ml",
        description="Train the hw0 models on MNIST and print the course's tables.",
    )
    parser.add_argument(
        "--data",
        default="data",
        metavar="DIR",
        help="folder holding the four MNIST files, gzip-compressed or not (default: ./data)",
    )
    args = parser.parse_args(argv)
    files = {key: data_file(args.data, name) for key, name in FILES.items()}
    try:
        X_tr, y_tr = parse_mnist(files["train_images"], files["train_labels"])
        X_te, y_te = parse_mnist(files["test_images"], files["test_labels"])
    except (OSError, ValueError) as e:
        print("python -m simple_ml: %s" % e, file=sys.stderr)
        return 1
    print("Training softmax regression")
    train_softmax(X_tr, y_tr, X_te, y_te, epochs=10, lr=0.1)
    print("\nTraining two layer neural network w/ 100 hidden units")
    train_nn(X_tr, y_tr, X_te, y_te, hidden_dim=100, epochs=20, lr=0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
