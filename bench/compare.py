#!/usr/bin/env python3
"""Side-by-side benchmark of simple_ml against numpy, naive C++ and (when
installed) PyTorch on the MNIST training set: issue 6.

    .venv/bin/python bench/compare.py                 # full data, 5 epochs each
    .venv/bin/python bench/compare.py --quick --repeat 2   # 6000 rows, for development
    .venv/bin/python bench/compare.py --full --json out.json --markdown out.md

Every configuration runs in its own subprocess (this script re-invoked with
--worker), because the settings that matter are read once per process: the
library's SML_NUM_THREADS, glibc's MALLOC_* tunables and OpenBLAS's
OPENBLAS_CORETYPE. Before any timing, each implementation's first epoch is
checked against the numpy reference; a disagreement exits non-zero. See
bench/README.md for what each row means and the caveats.
"""
import argparse
import ctypes
import gzip
import importlib
import json
import os
import platform
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "python", "tests"))


def import_package(name):
    """Module `name` of the Python package (simple_ml or simple_ml_ext):
    the installed one, or else the one in this checkout's python/ folder, so
    that the module rows need no `pip install` (either loads the library
    SIMPLE_ML_LIB names). Returns the module and a note saying which source
    tree was used, or None for the installed package."""
    try:
        return importlib.import_module(name), None
    except ImportError:
        source = os.path.join(REPO, "python")
        if source in sys.path:
            raise
        sys.path.insert(1, source)
        module = importlib.import_module(name)
        return module, "the Python package was imported from %s (not installed)" % source

try:
    import numpy as np
    import threadpoolctl
    import numpy_reference as ref
except ImportError as e:
    sys.exit(
        "bench/compare.py needs numpy and threadpoolctl (%s).\n"
        "Run it with the repository's virtual environment:\n"
        "    .venv/bin/python bench/compare.py\n"
        "or install them: python3 -m pip install numpy threadpoolctl" % e
    )

K = 10
LR = 0.1
BATCH = 100
HIDDEN = (100, 400)
WORKLOADS = ("softmax",) + tuple("nn%d" % h for h in HIDDEN)
# Correctness guard: relative difference of the weight norms after one epoch
# from the same start, against the numpy reference.
NORM_TOL = {"softmax": 1e-4, "nn": 1e-3}
# The default CLI job (src/main.rs): both tables at lr 0.2.
JOB = {"softmax_epochs": 10, "nn_epochs": 20, "hidden": 400, "lr": 0.2}
# High enough that no per-batch temporary is returned to the OS and faulted
# back in (glibc 2.36 accepts 1 GiB for the mmap threshold; see README).
TUNED_MALLOC = {
    "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
    "MALLOC_MMAP_THRESHOLD_": str(1 << 30),
    "MALLOC_TOP_PAD_": str(1 << 30),
}
# Removed from the numpy workers' environment: OpenBLAS then picks its own
# kernel, and threadpool_limits can raise the thread count up to the cores.
OPENBLAS_UNSET = (
    "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS", "GOTO_NUM_THREADS",
)
RESULT_MARK = "@@compare.py result@@ "


def workload_hidden(w):
    return None if w == "softmax" else int(w[2:])


# ---------------------------------------------------------------------------
# The library through ctypes (declared here from include/simple_ml.h rather
# than through the Python package, so that the C ABI itself is timed).
# ---------------------------------------------------------------------------

_f32p = ctypes.POINTER(ctypes.c_float)
_u8p = ctypes.POINTER(ctypes.c_ubyte)
_sz = ctypes.c_size_t


def load_library(path):
    lib = ctypes.CDLL(path)
    protos = {
        "sml_softmax_regression_epoch": (ctypes.c_int, [_f32p, _u8p, _f32p, _sz, _sz, _sz, ctypes.c_float, _sz]),
        "sml_nn_epoch": (ctypes.c_int, [_f32p, _u8p, _f32p, _f32p, _sz, _sz, _sz, _sz, ctypes.c_float, _sz]),
        "sml_mnist_read": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]),
        "sml_dataset_free": (None, [ctypes.c_void_p]),
        "sml_dataset_count": (_sz, [ctypes.c_void_p]),
        "sml_dataset_features": (_sz, [ctypes.c_void_p]),
        "sml_dataset_images": (_f32p, [ctypes.c_void_p]),
        "sml_dataset_labels": (_u8p, [ctypes.c_void_p]),
        "sml_last_error_message": (ctypes.c_int, [ctypes.c_char_p, _sz, ctypes.POINTER(_sz)]),
        "sml_version": (ctypes.c_char_p, []),
    }
    for name, (restype, argtypes) in protos.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


def check_status(lib, status, what):
    if status != 0:
        buf = ctypes.create_string_buffer(1024)
        lib.sml_last_error_message(buf, len(buf), None)
        raise RuntimeError("%s failed with status %d: %s" % (what, status, buf.value.decode(errors="replace")))


def library_simd(lib):
    """The library's SIMD level if the C API exposes one, else how it is chosen."""
    header = os.path.join(REPO, "include", "simple_ml.h")
    text = open(header).read() if os.path.exists(header) else ""
    for m in re.finditer(r"^(const char \*|int|sml_\w+|uint\w+) ?(sml_\w*simd\w*)\(void\);", text, re.M):
        restype, name = m.groups()
        if hasattr(lib, name):
            fn = getattr(lib, name)
            fn.argtypes = []
            if "char" in restype:
                fn.restype = ctypes.c_char_p
                return fn().decode()
            fn.restype = ctypes.c_int
            v = fn()
            return {1: "portable", 2: "avx2", 3: "avx512"}.get(v, str(v))
    return "runtime-detected"


def ptr(a, t):
    return a.ctypes.data_as(t)


def lib_softmax_epoch(lib):
    def run(X, y, theta, lr=LR, batch=BATCH):
        m, n = X.shape
        check_status(lib, lib.sml_softmax_regression_epoch(
            ptr(X, _f32p), ptr(y, _u8p), ptr(theta, _f32p), m, n, theta.shape[1], lr, batch),
            "sml_softmax_regression_epoch")
    return run


def lib_nn_epoch(lib):
    def run(X, y, W1, W2, lr=LR, batch=BATCH):
        m, n = X.shape
        check_status(lib, lib.sml_nn_epoch(
            ptr(X, _f32p), ptr(y, _u8p), ptr(W1, _f32p), ptr(W2, _f32p),
            m, n, W1.shape[1], W2.shape[1], lr, batch), "sml_nn_epoch")
    return run


def lib_read_free(lib, images, labels):
    """sml_mnist_read then sml_dataset_free: what a C caller pays to get X and y."""
    ds = ctypes.c_void_p()
    check_status(lib, lib.sml_mnist_read(images.encode(), labels.encode(), ctypes.byref(ds)), "sml_mnist_read")
    lib.sml_dataset_free(ds)


# ---------------------------------------------------------------------------
# Naive C++ (bench/naive_softmax.cpp) and PyTorch.
# ---------------------------------------------------------------------------

def load_naive(path):
    lib = ctypes.CDLL(path)
    lib.naive_softmax_regression_epoch.restype = None
    lib.naive_softmax_regression_epoch.argtypes = [_f32p, _u8p, _f32p, _sz, _sz, _sz, ctypes.c_float, _sz]
    lib.naive_nn_epoch.restype = None
    lib.naive_nn_epoch.argtypes = [_f32p, _u8p, _f32p, _f32p, _sz, _sz, _sz, _sz, ctypes.c_float, _sz]

    def softmax(X, y, theta, lr=LR, batch=BATCH):
        lib.naive_softmax_regression_epoch(ptr(X, _f32p), ptr(y, _u8p), ptr(theta, _f32p),
                                           X.shape[0], X.shape[1], theta.shape[1], lr, batch)

    def nn(X, y, W1, W2, lr=LR, batch=BATCH):
        lib.naive_nn_epoch(ptr(X, _f32p), ptr(y, _u8p), ptr(W1, _f32p), ptr(W2, _f32p),
                           X.shape[0], X.shape[1], W1.shape[1], W2.shape[1], lr, batch)
    return softmax, nn


def torch_epochs(torch):
    """The numpy reference's loops in PyTorch on the CPU, gradients by hand."""
    def softmax(X, y, theta, lr=LR, batch=BATCH):
        Xt, yt, th = torch.from_numpy(X), torch.from_numpy(y).long(), torch.from_numpy(theta)
        for s in range(0, X.shape[0], batch):
            Xb, yb = Xt[s:s + batch], yt[s:s + batch]
            Z = torch.exp(Xb @ th)
            Z /= Z.sum(dim=1, keepdim=True)
            Z[torch.arange(Xb.shape[0]), yb] -= 1
            th -= lr / Xb.shape[0] * (Xb.T @ Z)

    def nn(X, y, W1, W2, lr=LR, batch=BATCH):
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y).long()
        w1, w2 = torch.from_numpy(W1), torch.from_numpy(W2)
        for s in range(0, X.shape[0], batch):
            Xb, yb = Xt[s:s + batch], yt[s:s + batch]
            Z1 = torch.relu(Xb @ w1)
            G2 = torch.exp(Z1 @ w2)
            G2 /= G2.sum(dim=1, keepdim=True)
            G2[torch.arange(Xb.shape[0]), yb] -= 1
            G1 = (Z1 > 0) * (G2 @ w2.T)
            b = Xb.shape[0]
            w1 -= lr / b * (Xb.T @ G1)
            w2 -= lr / b * (Z1.T @ G2)
    return softmax, nn


# ---------------------------------------------------------------------------
# Worker side: time epochs in this process and print one JSON line.
# ---------------------------------------------------------------------------

def initial_weights(workload, n):
    if workload == "softmax":
        return [np.zeros((n, K), dtype=np.float32)]
    return list(ref.init_nn(n, workload_hidden(workload), K, seed=0))


def agreement(got, want):
    """Per array: relative difference of the norms, and ‖got − want‖ / ‖want‖."""
    out = []
    for g, w in zip(got, want):
        g64, w64 = g.astype(np.float64), w.astype(np.float64)
        nw = np.linalg.norm(w64)
        out.append({"norm_rel_diff": float(abs(np.linalg.norm(g64) - nw) / nw),
                    "diff_rel_norm": float(np.linalg.norm(g64 - w64) / nw)})
    return out


def guard(workload, got, want, label):
    """Exits the worker (status 3) if `got` disagrees with the numpy reference."""
    agree = agreement(got, want)
    tol = NORM_TOL["softmax" if workload == "softmax" else "nn"]
    worst = max(a["norm_rel_diff"] for a in agree)
    if not np.all([np.isfinite(g).all() for g in got]) or not worst < tol:
        sys.stderr.write("compare.py: %s %s disagrees with the numpy reference: %s (tolerance %g)\n"
                         % (label, workload, agree, tol))
        sys.exit(3)
    return agree


def minor_faults():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_epochs(epochs, X, y, workload, repeat, refs):
    """For each (label, epoch) in `epochs`: one checked warm-up epoch, then
    `repeat` timed epochs, each from the same initial weights so that every
    implementation does the same work. With several epochs (the library
    through its C ABI and through the Python module) the timed epochs take
    turns, so that the machine's drift over a run falls on both alike.
    Returns one (result, first weights) pair per entry of `epochs`."""
    init = initial_weights(workload, X.shape[1])
    firsts, agree = [], []
    for label, epoch in epochs:
        w = [a.copy() for a in init]
        epoch(X, y, *w)
        agree.append(guard(workload, w, refs[workload], label))
        firsts.append([a.copy() for a in w])
    samples = [{"wall": [], "cpu": [], "faults": [], "same": True} for _ in epochs]
    for i in range(repeat):
        order = list(range(len(epochs)))
        if i % 2:
            order.reverse()
        for e in order:
            w = [a.copy() for a in init]
            f0, c0, t0 = minor_faults(), time.process_time(), time.perf_counter()
            epochs[e][1](X, y, *w)
            t1, c1, f1 = time.perf_counter(), time.process_time(), minor_faults()
            got = samples[e]
            got["wall"].append(t1 - t0)
            got["cpu"].append(c1 - c0)
            got["faults"].append(f1 - f0)
            got["same"] = got["same"] and all(np.array_equal(a, b) for a, b in zip(firsts[e], w))
    return [({
        "median_ms": 1e3 * statistics.median(got["wall"]),
        "min_ms": 1e3 * min(got["wall"]),
        "samples_ms": [1e3 * t for t in got["wall"]],
        "cpu_ms_median": 1e3 * statistics.median(got["cpu"]),
        "minor_faults_median": statistics.median(got["faults"]),
        "agreement": a,
        "same_bits_every_run": got["same"],
        "result_file": None,
    }, first) for got, a, first in zip(samples, agree, firsts)]


def median_time(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def medians_in_turns(fns, repeat):
    """Median ms of each of `fns` (name -> function), timed in rotating turns."""
    names = list(fns)
    times = {name: [] for name in names}
    for r in range(repeat):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def blas_info():
    return [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "threading_layer", "filepath")}
            for d in threadpoolctl.threadpool_info() if d.get("user_api") == "blas"]


def worker(spec_path):
    spec = json.load(open(spec_path))
    kind, threads, repeat = spec["kind"], spec["threads"], spec["repeat"]
    out = {"kind": kind, "threads": threads, "pid": os.getpid(),
           "loadavg_before": os.getloadavg()[0], "notes": []}
    X, y = np.load(spec["X"]), np.load(spec["y"])
    refs = {}
    for w in WORKLOADS:
        z = np.load(spec["refs"][w])
        refs[w] = [z["W%d" % i] for i in range(len(z.files))]
    results = {}

    def run_all(epochs, label, side=None, side_workloads=()):
        """Times each workload of `epochs` (a softmax and a network epoch);
        for the workloads in `side_workloads`, `side` (label, epochs) takes
        turns with it epoch by epoch."""
        for w in spec["workloads"]:
            pick = lambda fns: fns[0] if w == "softmax" else fns[1]
            impls = [(label, pick(epochs))]
            if side is not None and w in side_workloads:
                impls.append((side[0], pick(side[1])))
            for (name, _), (r, first) in zip(impls, time_epochs(impls, X, y, w, repeat, refs)):
                path = os.path.join(spec["tmp"], "%s-%s-%s.npz" % (spec["name"], name, w))
                np.savez(path, **{"W%d" % i: a for i, a in enumerate(first)})
                r["result_file"] = path
                results.setdefault(name, {})[w] = r

    if kind == "lib":
        lib = load_library(spec["lib"])
        out["version"] = lib.sml_version().decode()
        out["simd"] = library_simd(lib)
        module = None
        try:
            simple_ml_ext, where = import_package("simple_ml_ext")
            from simple_ml import _native
            if where:
                out["notes"].append(where)
            out["module_file"] = simple_ml_ext.__file__
            out["module_library"] = _native.library_path()
            module = ("module", (
                lambda X, y, th, lr=LR, batch=BATCH: simple_ml_ext.softmax_regression_epoch_cpp(X, y, th, lr, batch),
                lambda X, y, W1, W2, lr=LR, batch=BATCH: simple_ml_ext.nn_epoch_cpp(X, y, W1, W2, lr, batch)))
        except ImportError as e:
            out["notes"].append("simple_ml_ext not importable (%s): Python-module rows skipped" % e)
        run_all((lib_softmax_epoch(lib), lib_nn_epoch(lib)), "lib", module, ("softmax", "nn100"))
    elif kind == "numpy":
        with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
            out["blas"] = blas_info()
            run_all((ref.softmax_regression_epoch, ref.nn_epoch), "numpy")
    elif kind == "naive":
        run_all(load_naive(spec["naive"]), "naive")
    elif kind == "torch":
        import torch
        torch.set_num_threads(threads)
        out["torch"] = {"version": torch.__version__, "threads": torch.get_num_threads()}
        run_all(torch_epochs(torch), "torch")
    elif kind == "parse":
        lib = load_library(spec["lib"])
        imgs, lbls = spec["train_files"]
        Xn, yn = ref.parse_mnist(imgs, lbls)
        try:
            # The package's parse_mnist, on the library just built
            # (SIMPLE_ML_LIB): X a numpy array over the library's memory.
            package, where = import_package("simple_ml")
            module_parse = package.parse_mnist
            if where:
                out["notes"].append(where)
        except ImportError as e:
            module_parse = None
            out["notes"].append("simple_ml not importable (%s): Python parse_mnist row skipped" % e)
        if module_parse is not None:
            Xl, yl = module_parse(imgs, lbls)
            if not (np.array_equal(Xl, Xn) and np.array_equal(yl, yn)):
                sys.stderr.write("compare.py: simple_ml and numpy parse_mnist disagree on %s\n" % imgs)
                sys.exit(3)
            del Xl, yl
        # Timed in turns, as the module's epochs are, so that the machine's
        # drift falls on every row alike (timed one after the other, the C
        # row once took 94 ms against 72 ms for the module's, which calls it).
        parsers = {"c_ms": lambda: lib_read_free(lib, imgs, lbls),
                   "numpy_ms": lambda: ref.parse_mnist(imgs, lbls)}
        if module_parse:
            parsers["lib_ms"] = lambda: module_parse(imgs, lbls)
        out["parse"] = dict(medians_in_turns(parsers, repeat), rows=int(Xn.shape[0]))
        out["parse"].setdefault("lib_ms", None)
    elif kind == "numpy_job":
        with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
            out["blas"] = blas_info()
            out["job"] = numpy_job(spec)
    out["results"] = results
    out["loadavg_after"] = os.getloadavg()[0]
    sys.stdout.write(RESULT_MARK + json.dumps(out) + "\n")


def numpy_job(spec):
    """The CLI's default work in numpy: parse train and test, softmax 10
    epochs and the hidden-400 net 20 epochs at lr 0.2, with loss and error
    on both sets after every epoch (as python/tests/course and src/main.rs do).
    Without --full only parsing and one evaluation of each model are timed;
    the epochs come from the measured per-epoch medians."""
    t_start = time.perf_counter()
    Xtr, ytr = ref.parse_mnist(*spec["train_files"])
    Xte, yte = ref.parse_mnist(*spec["test_files"])
    parse_s = time.perf_counter() - t_start
    n = Xtr.shape[1]
    theta = np.zeros((n, K), dtype=np.float32)
    W1, W2 = ref.init_nn(n, JOB["hidden"], K, seed=0)

    def eval_softmax():
        return ref.loss_err(Xtr @ theta, ytr), ref.loss_err(Xte @ theta, yte)

    def eval_nn():
        return (ref.loss_err(np.maximum(Xtr @ W1, 0) @ W2, ytr),
                ref.loss_err(np.maximum(Xte @ W1, 0) @ W2, yte))

    if not spec["full"]:
        reps = max(1, min(3, spec["repeat"]))
        return {"measured": False, "parse_s": parse_s,
                "eval_softmax_ms": median_time(eval_softmax, reps),
                "eval_nn_ms": median_time(eval_nn, reps)}
    for _ in range(JOB["softmax_epochs"]):
        ref.softmax_regression_epoch(Xtr, ytr, theta, lr=JOB["lr"], batch=BATCH)
        eval_softmax()
    t_softmax = time.perf_counter()
    for _ in range(JOB["nn_epochs"]):
        ref.nn_epoch(Xtr, ytr, W1, W2, lr=JOB["lr"], batch=BATCH)
        eval_nn()
    t_end = time.perf_counter()
    return {"measured": True, "parse_s": parse_s, "softmax_s": t_softmax - t_start - parse_s,
            "nn_s": t_end - t_softmax, "total_s": t_end - t_start}


# ---------------------------------------------------------------------------
# Driver side.
# ---------------------------------------------------------------------------

def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def run_worker(spec, env, tmp):
    path = os.path.join(tmp, "spec-%s.json" % spec["name"])
    json.dump(spec, open(path, "w"))
    log("  running %s ..." % spec["name"])
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", path],
                          env=env, stdout=subprocess.PIPE, text=True, cwd=REPO)
    if proc.returncode != 0:
        log("compare.py: worker %s failed (exit %d)" % (spec["name"], proc.returncode))
        sys.exit(1)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    log("compare.py: worker %s printed no result" % spec["name"])
    sys.exit(1)


def machine_description():
    cpu, flags = "unknown", set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith(("flags", "Features")) and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "simd_flags": sorted(f for f in flags if f in ("avx2", "fma", "avx512f", "avx512bw", "asimd", "sve")),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "threadpoolctl": threadpoolctl.__version__,
        "loadavg_start": os.getloadavg(),
    }


def ensure_built(lib_path, build, need_cli):
    """Runs cargo build --release (a no-op when the build is up to date, so
    that a changed source is never timed with a stale library) unless told
    not to, and then also if the CLI (when the whole job is compared) or
    (unless SIMPLE_ML_LIB names another build) the library is missing."""
    cli = os.path.join(REPO, "target", "release", "simple-ml")
    missing = (need_cli and not os.path.exists(cli)) or (
        "SIMPLE_ML_LIB" not in os.environ and not os.path.exists(lib_path))
    if build or missing:
        log("building: cargo build --release")
        if subprocess.run(["cargo", "build", "--release"], cwd=REPO).returncode != 0:
            sys.exit("compare.py: cargo build --release failed")
    for path in (lib_path, cli) if need_cli else (lib_path,):
        if not os.path.exists(path):
            sys.exit("compare.py: %s not found" % path)
    return cli


def write_idx_gz(path, array, magic):
    """Writes an IDX file (big-endian header, uint8 body), gzip level 1."""
    dims = array.shape
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims))
        f.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def prepare_data(args, tmp):
    """Returns (train files, test files, X, y): the real files, or for --rows
    a truncated copy of them so the CLI, parsing and epochs see the same rows."""
    names = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    full = [os.path.join(args.data, f) for f in names]
    for f in full:
        if not os.path.exists(f):
            sys.exit("compare.py: %s is missing (the MNIST files belong in %s)" % (f, args.data))
    Xtr, ytr = ref.parse_mnist(full[0], full[1])
    if args.rows and args.rows < Xtr.shape[0]:
        Xte, yte = ref.parse_mnist(full[2], full[3])
        rows_te = max(1, args.rows // 6)
        d = os.path.join(tmp, "data")
        os.makedirs(d)
        files = [os.path.join(d, f) for f in names]
        for (imgs, lbls), X, y in (((files[0], files[1]), Xtr[:args.rows], ytr[:args.rows]),
                                   ((files[2], files[3]), Xte[:rows_te], yte[:rows_te])):
            write_idx_gz(imgs, np.rint(X * 255).reshape(-1, 28, 28), 0x00000803)
            write_idx_gz(lbls, y, 0x00000801)
        Xtr, ytr = ref.parse_mnist(files[0], files[1])
        return files[:2], files[2:], d, Xtr, ytr
    return full[:2], full[2:], args.data, Xtr, ytr


def run_cli(cli, data_dir):
    """Runs the CLI's default job once; returns wall seconds and its own total."""
    t0 = time.perf_counter()
    proc = subprocess.run([cli, "--data", data_dir], stdout=subprocess.PIPE, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit("compare.py: %s failed (exit %d)" % (cli, proc.returncode))
    m = re.search(r"^total: ([0-9.]+) s", proc.stdout, re.M)
    return {"wall_s": wall, "reported_total_s": float(m.group(1)) if m else None,
            "last_lines": proc.stdout.strip().splitlines()[-4:]}


def fmt_ms(v):
    return "—" if v is None else ("%.1f" % v if v < 100 else "%.0f" % v)


def fmt_ratio(best, v):
    return "—" if v is None or best is None else "%.2f×" % (best / v)


def build_rows(res):
    """Table rows: (label, threads, {workload: result}) in display order."""
    rows = []
    for r in res["workers"]:
        for label, per in r["results"].items():
            rows.append({"name": r["display"] if label != "module" else r["display"].replace("C ABI", "Python module simple_ml_ext"),
                         "threads": r["threads"], "kind": label, "per": per})
    return rows


def render(res):
    """The report as markdown (printed as is; it reads fine in a terminal)."""
    m, best = res["machine"], res["best_numpy"]
    lines = ["## simple_ml vs numpy%s" % (" (quick mode: %d rows — not the real benchmark)" % res["rows"] if res["quick"] else ""), ""]
    lines.append("- CPU: %s, %d logical CPUs (%d usable); SIMD flags: %s" %
                 (m["cpu"], m["logical_cpus"], m["usable_cpus"], " ".join(m["simd_flags"]) or "none"))
    lines.append("- %s; Python %s, numpy %s, threadpoolctl %s" % (m["platform"], m["python"], m["numpy"], m["threadpoolctl"]))
    lines.append("- OpenBLAS in the numpy runs: %s" % res.get("openblas", "n/a"))
    lines.append("- simple_ml %s, SIMD: %s; library %s" % (res["lib_version"], res["lib_simd"], res["lib_path"]))
    lines.append("- Data: MNIST train, %d × 784, k = %d, batch %d, lr %g; median of %d epochs after one checked warm-up, each from the same initial weights"
                 % (res["rows"], K, BATCH, LR, res["repeat"]))
    lines.append("- Load average at start %.2f, at end %.2f (%d usable CPUs)%s" %
                 (m["loadavg_start"][0], res["loadavg_end"][0], m["usable_cpus"],
                  " — **the machine was busy: timings are noisy**" if max(m["loadavg_start"][0], res["loadavg_end"][0]) > 0.5 * m["usable_cpus"] else ""))
    lines += ["", "Epoch times in ms; ratio = best numpy time ÷ this time (above 1: faster than numpy).", ""]
    head = "| implementation | threads |" + "".join(" %s ms | ratio |" % w for w in WORKLOADS)
    lines += [head, "|---|---:|" + "---:|---:|" * len(WORKLOADS)]
    for row in build_rows(res):
        cells = []
        for w in WORKLOADS:
            v = row["per"].get(w, {}).get("median_ms")
            cells.append(" %s | %s |" % (fmt_ms(v), fmt_ratio(best[w]["median_ms"] if w in best else None, v)))
        lines.append("| %s | %d |%s" % (row["name"], row["threads"], "".join(cells)))
    lines.append("")
    for w in WORKLOADS:
        if w in best:
            lines.append("- best numpy for %s: %s, %d thread(s), %.1f ms" % (w, best[w]["name"], best[w]["threads"], best[w]["median_ms"]))
    lines += ["- %s" % n for n in res["notes"]]
    lines += ["", "Per epoch: process CPU time ÷ wall time (how many cores it kept busy) and minor page faults "
              "(memory returned to the OS and faulted back in):", "",
              "| implementation | threads |" + "".join(" %s CPU/wall | %s faults |" % (w, w) for w in WORKLOADS),
              "|---|---:|" + "---:|---:|" * len(WORKLOADS)]
    for row in build_rows(res):
        cells = []
        for w in WORKLOADS:
            v = row["per"].get(w)
            cells.append(" — | — |" if v is None else " %.2f | %d |" % (v["cpu_ms_median"] / v["median_ms"], v["minor_faults_median"]))
        lines.append("| %s | %d |%s" % (row["name"], row["threads"], "".join(cells)))
    p = res.get("parse")
    if p:
        lines += ["", "`parse_mnist` of the train files (%d rows), median of %d:" % (p["rows"], res["repeat"]), "",
                  "| implementation | ms | ratio |", "|---|---:|---:|",
                  "| Python gzip + numpy (numpy_reference.parse_mnist) | %s | 1.00× |" % fmt_ms(p["numpy_ms"]),
                  "| simple_ml C ABI: sml_mnist_read + sml_dataset_free (library-owned X, y) | %s | %s |" % (fmt_ms(p["c_ms"]), fmt_ratio(p["numpy_ms"], p["c_ms"])),
                  "| simple_ml.parse_mnist, the Python package (X over the library's memory, y copied) | %s | %s |" % (fmt_ms(p["lib_ms"]), fmt_ratio(p["numpy_ms"], p["lib_ms"]))]
    j = res.get("job")
    if j:
        lines += ["", "Whole default job (`target/release/simple-ml`: softmax 10 epochs + hidden-400 net 20 epochs, lr 0.2, evaluation after every epoch, %d training rows):" % res["rows"], "",
                  "| implementation | s | ratio |", "|---|---:|---:|"]
        lines.append("| numpy (%s, %d thread(s))%s | %.2f | 1.00× |" %
                     (j["numpy_config"], j["numpy_threads"], "" if j["numpy_measured"] else " **estimate**", j["numpy_s"]))
        lines.append("| simple-ml CLI (default threads; its own `total:` %.2f s) | %.2f | %.2f× |" %
                     (j["cli"]["reported_total_s"] or float("nan"), j["cli"]["wall_s"], j["numpy_s"] / j["cli"]["wall_s"]))
        if not j["numpy_measured"]:
            lines.append("")
            lines.append("numpy estimate = parse train+test + 10 × (softmax epoch + evaluation) + 20 × (hidden-400 epoch + evaluation), "
                         "from this run's medians; run with --full to measure it.")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="timed epochs per configuration (median reported; default 5)")
    ap.add_argument("--quick", action="store_true", help="development mode: the first 6000 training rows")
    ap.add_argument("--rows", type=int, default=0, help="use only the first ROWS training rows (and ROWS/6 test rows)")
    ap.add_argument("--full", action="store_true", help="measure the numpy version of the whole CLI job instead of estimating it (minutes)")
    ap.add_argument("--no-job", action="store_true", help="skip the whole-job comparison (CLI vs numpy)")
    ap.add_argument("--no-naive", action="store_true", help="skip the naive C++ rows")
    ap.add_argument("--threads", default="1,all", help="thread counts for the library, numpy and PyTorch (default: 1,all)")
    ap.add_argument("--data", default=os.path.join(REPO, "data"), help="folder with the four MNIST .gz files")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--markdown", metavar="PATH", help="also write the report as markdown (for the README)")
    ap.add_argument("--no-build", dest="build", action="store_false", help="do not run cargo build --release first (it still runs if target/release lacks the library, or the CLI unless --no-job)")
    ap.add_argument("--keep-temp", action="store_true", help="keep the temporary folder (data copies, worker results)")
    ap.add_argument("--worker", metavar="SPEC", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    if args.quick and not args.rows:
        args.rows = 6000
    cores = len(os.sched_getaffinity(0))
    threads = sorted({cores if t.strip() == "all" else int(t) for t in args.threads.split(",")})
    notes = []
    if args.repeat < 5:
        notes.append("fewer than 5 timed epochs per configuration (--repeat %d): for development only" % args.repeat)

    lib_path = os.path.abspath(os.environ.get("SIMPLE_ML_LIB") or os.path.join(REPO, "target", "release", "libsimple_ml.so"))
    cli = ensure_built(lib_path, args.build, need_cli=not args.no_job)
    machine = machine_description()
    tmp = tempfile.mkdtemp(prefix="sml-bench-")
    try:
        log("preparing data in %s" % tmp)
        train_files, test_files, data_dir, X, y = prepare_data(args, tmp)
        np.save(os.path.join(tmp, "X.npy"), X)
        np.save(os.path.join(tmp, "y.npy"), y)
        log("numpy reference epochs (correctness guard)")
        refs = {}
        for w in WORKLOADS:
            ws = initial_weights(w, X.shape[1])
            (ref.softmax_regression_epoch if w == "softmax" else ref.nn_epoch)(X, y, *ws)
            refs[w] = os.path.join(tmp, "ref-%s.npz" % w)
            np.savez(refs[w], **{"W%d" % i: a for i, a in enumerate(ws)})
        base = {"X": os.path.join(tmp, "X.npy"), "y": os.path.join(tmp, "y.npy"), "refs": refs,
                "tmp": tmp, "repeat": args.repeat, "workloads": list(WORKLOADS), "lib": lib_path,
                "train_files": train_files, "test_files": test_files, "full": args.full}

        # numpy is only a container in the other workers: one OpenBLAS thread,
        # so that no idle BLAS thread spins on a core the measured code needs.
        env_other = dict(os.environ, OPENBLAS_NUM_THREADS="1")
        env_lib = dict(env_other, SIMPLE_ML_LIB=lib_path)
        env_numpy = {k: v for k, v in os.environ.items() if k not in OPENBLAS_UNSET and not k.startswith("MALLOC_")}
        removed = sorted(k for k in os.environ if k in OPENBLAS_UNSET or k.startswith("MALLOC_"))
        if removed:
            notes.append("removed from the numpy runs' environment: %s" % ", ".join(removed))
        plans = []
        for t in threads:
            plans.append(({"kind": "lib", "threads": t, "name": "lib-t%d" % t},
                          dict(env_lib, SML_NUM_THREADS=str(t)), "simple_ml C ABI"))
        for t in threads:
            for tuned in (False, True):
                cfg = "tuned malloc" if tuned else "as users run it"
                plans.append(({"kind": "numpy", "threads": t, "name": "numpy-t%d-%s" % (t, "tuned" if tuned else "plain"), "config": cfg},
                              dict(env_numpy, **TUNED_MALLOC) if tuned else env_numpy, "numpy, %s" % cfg))

        naive_path = None
        if args.no_naive:
            notes.append("naive C++ skipped (--no-naive)")
        elif shutil.which("g++") is None:
            notes.append("naive C++ skipped: g++ not found")
        else:
            naive_path = os.path.join(tmp, "libnaive_softmax.so")
            cmd = ["g++", "-O3", "-march=native", "-shared", "-fPIC", "-o", naive_path,
                   os.path.join(REPO, "bench", "naive_softmax.cpp")]
            log(" ".join(cmd))
            if subprocess.run(cmd).returncode != 0:
                sys.exit("compare.py: compiling bench/naive_softmax.cpp failed")
            plans.append(({"kind": "naive", "threads": 1, "name": "naive", "naive": naive_path},
                          env_other, "naive C++ loops (g++ -O3 -march=native)"))
        try:
            import torch  # noqa: F401
            for t in threads:
                plans.append(({"kind": "torch", "threads": t, "name": "torch-t%d" % t},
                              env_other, "PyTorch CPU, manual gradients"))
        except ImportError:
            notes.append("PyTorch not installed: its rows are skipped (install torch to add them)")

        workers = []
        for spec, env, display in plans:
            r = run_worker(dict(base, **spec), env, tmp)
            r["display"] = display
            r["config"] = spec.get("config")
            workers.append(r)
            # Each worker of a kind says the same things: say them once.
            notes += [n for n in r["notes"] if n not in notes]

        lib_workers = [r for r in workers if r["kind"] == "lib"]
        if any("module" in r["results"] for r in lib_workers):
            notes.append("the Python-module rows time softmax and nn100 only: the wrapper's cost is per call, not per FLOP")
        res = {"machine": machine, "rows": int(X.shape[0]), "quick": bool(args.rows), "repeat": args.repeat,
               "threads": threads, "lib_path": lib_path, "lib_version": lib_workers[0]["version"],
               "lib_simd": lib_workers[0]["simd"], "tuned_malloc": TUNED_MALLOC, "workers": workers, "notes": notes}
        if lib_workers[0]["simd"] == "runtime-detected":
            res["lib_simd"] = "runtime-detected (not exposed by the C API%s)" % (
                "; SML_SIMD=%s" % os.environ["SML_SIMD"] if "SML_SIMD" in os.environ else "")
        blas = [b for r in workers if r["kind"] == "numpy" for b in r.get("blas", [])]
        if blas:
            res["openblas"] = "%s %s, kernel/architecture %s (threadpoolctl)" % (
                blas[0]["internal_api"], blas[0]["version"], blas[0]["architecture"])
        for r in workers:
            for b in r.get("blas", []):
                if b["num_threads"] != r["threads"]:
                    notes.append("%s asked for %d BLAS threads but threadpoolctl reports %d" % (r["display"], r["threads"], b["num_threads"]))

        # Honesty checks across implementations.
        best = {}
        for r in workers:
            if r["kind"] != "numpy":
                continue
            for w, v in r["results"]["numpy"].items():
                if w not in best or v["median_ms"] < best[w]["median_ms"]:
                    best[w] = {"name": r["display"], "threads": r["threads"], "median_ms": v["median_ms"]}
        res["best_numpy"] = best
        if len(lib_workers) > 1:
            for w in WORKLOADS:
                files = [np.load(r["results"]["lib"][w]["result_file"]) for r in lib_workers]
                same = all(np.array_equal(files[0][f], z[f]) for z in files[1:] for f in files[0].files)
                res.setdefault("lib_same_bits_across_threads", {})[w] = same
            notes.append("library results bit-identical across thread counts %s: %s" % (
                threads, ", ".join("%s %s" % (w, "yes" if s else "NO") for w, s in res["lib_same_bits_across_threads"].items())))
        notes.append("library results bit-identical from run to run: %s" % ("yes" if all(
            v["same_bits_every_run"] for r in lib_workers for per in r["results"].values() for v in per.values()) else "NO"))
        naive = [r for r in workers if r["kind"] == "naive"]
        if naive:
            for w in WORKLOADS:
                a = np.load(naive[0]["results"]["naive"][w]["result_file"])
                b = np.load(lib_workers[0]["results"]["lib"][w]["result_file"])
                diffs = agreement([a[f] for f in a.files], [b[f] for f in b.files])
                worst = max(d["norm_rel_diff"] for d in diffs)
                if not worst < 1e-4:
                    # The two-layer net amplifies float rounding; only the
                    # softmax comparison is held to 1e-4 (issue 6).
                    if w == "softmax" or not worst < NORM_TOL["nn"]:
                        log("compare.py: naive C++ %s disagrees with simple_ml: %s" % (w, diffs))
                        sys.exit(1)
                res.setdefault("naive_vs_lib", {})[w] = diffs
            notes.append("naive C++ vs simple_ml weight-norm relative difference: %s" % ", ".join(
                "%s %.1e" % (w, max(d["norm_rel_diff"] for d in v)) for w, v in res["naive_vs_lib"].items()))

        parse = run_worker(dict(base, kind="parse", threads=cores, name="parse"), env_lib, tmp)
        res["parse"] = parse["parse"]

        if not args.no_job:
            # One numpy process runs the whole job: take the configuration with
            # the least 10 softmax + 20 hidden-400 epochs.
            cfgs = [r for r in workers if r["kind"] == "numpy"]
            hw = "nn%d" % JOB["hidden"]
            pick = min(cfgs, key=lambda r: JOB["softmax_epochs"] * r["results"]["numpy"]["softmax"]["median_ms"]
                       + JOB["nn_epochs"] * r["results"]["numpy"][hw]["median_ms"])
            env = dict(env_numpy, **TUNED_MALLOC) if "tuned" in pick["config"] else env_numpy
            log("  running the CLI job ...")
            cli_run = run_cli(cli, data_dir)
            job = run_worker(dict(base, kind="numpy_job", threads=pick["threads"], name="numpy-job"), env, tmp)["job"]
            if job["measured"]:
                numpy_s = job["total_s"]
            else:
                per = pick["results"]["numpy"]
                numpy_s = job["parse_s"] + 1e-3 * (
                    JOB["softmax_epochs"] * (per["softmax"]["median_ms"] + job["eval_softmax_ms"])
                    + JOB["nn_epochs"] * (per[hw]["median_ms"] + job["eval_nn_ms"]))
            res["job"] = {"cli": cli_run, "numpy": job, "numpy_s": numpy_s, "numpy_measured": job["measured"],
                          "numpy_config": pick["config"], "numpy_threads": pick["threads"]}
        res["loadavg_end"] = os.getloadavg()
        report = render(res)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=1, default=str)
        if args.markdown:
            with open(args.markdown, "w") as f:
                f.write(report)
        sys.stdout.write(report)
        sys.stdout.flush()
    finally:
        if args.keep_temp:
            log("temporary files kept in %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
