#!/usr/bin/env python3
"""Writes the seed corpus for the idx_decode fuzz target.

    seed_corpus.py CORPUS_DIR DATA_DIR

Seeds: small valid IDX image and label files, plain, gzip-compressed and
split into several gzip members; the real MNIST headers from DATA_DIR (the
first bytes of each file, decompressed, and recompressed truncated, so the
header still claims 60000 items); the first bytes of each real .gz file as
it is (a truncated gzip stream); and one real image and ten real labels with
the count rewritten so that they form valid files. Each seed stays small
(< 4 KiB) so that libFuzzer's default input length and speed are kept.
"""

import gzip
import os
import struct
import sys

IMAGE_MAGIC = 0x00000803
LABEL_MAGIC = 0x00000801


def idx(magic, dims, body):
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + body


def gz(data, level=9):
    # mtime=0: the same seeds on every run.
    return gzip.compress(data, compresslevel=level, mtime=0)


def main():
    corpus, data_dir = sys.argv[1], sys.argv[2]
    os.makedirs(corpus, exist_ok=True)
    seeds = {}

    images = idx(IMAGE_MAGIC, [2, 3, 3], bytes((i * 37) % 256 for i in range(18)))
    labels = idx(LABEL_MAGIC, [10], bytes(range(10)))
    for name, plain in [("images-2x3x3", images), ("labels-10", labels)]:
        seeds[name] = plain
        seeds[name + ".gz"] = gz(plain)
        seeds[name + "-stored.gz"] = gz(plain, level=0)
        seeds[name + "-2members.gz"] = gz(plain[:10]) + gz(plain[10:])

    for fname in sorted(os.listdir(data_dir)):
        if not fname.endswith(".gz"):
            continue
        path = os.path.join(data_dir, fname)
        is_images = "images" in fname
        with gzip.open(path, "rb") as f:
            head = f.read(16 + 2 * 784 if is_images else 8 + 64)
        stem = fname[: -len(".gz")]
        # The real header over a truncated body.
        seeds[stem + "-head"] = head
        seeds[stem + "-head.gz"] = gz(head)
        # The real compressed stream, cut.
        with open(path, "rb") as f:
            seeds[stem + "-cut.gz"] = f.read(1024)
        # Valid: the real header with the count rewritten to match the body.
        if is_images:
            one = head[:4] + struct.pack(">I", 1) + head[8:16] + head[16 : 16 + 784]
            seeds[stem + "-1image"] = one
            seeds[stem + "-1image.gz"] = gz(one)
        else:
            ten = head[:4] + struct.pack(">I", 10) + head[8:18]
            seeds[stem + "-10labels"] = ten
            seeds[stem + "-10labels.gz"] = gz(ten)

    for name, content in seeds.items():
        assert len(content) < 4096, name
        with open(os.path.join(corpus, "seed-" + name), "wb") as f:
            f.write(content)
    print(f"{len(seeds)} seeds in {corpus}")


if __name__ == "__main__":
    main()
