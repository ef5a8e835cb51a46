"""bench/compare.py, the benchmark the README's Performance section runs,
works on this checkout: a quick run (the first 6000 training rows, one timed
epoch per configuration) of the installed package's library beside numpy and
the naive C++ loops.

compare.py itself exits non-zero when any implementation's weights disagree
with the numpy reference, when the naive C++ loops disagree with the
library, or when the library's and numpy's parse_mnist differ; this test
also checks that every row of the report was measured and that the
library's results were bit-identical across thread counts and runs."""
import json
import math
import os
import shutil
import subprocess
import sys

import simple_ml
from conftest import REPO

COMPARE = os.path.join(REPO, "bench", "compare.py")
WORKLOADS = ("softmax", "nn100", "nn400")


def test_compare_py_quick_run_measures_every_row(tmp_path):
    out = tmp_path / "bench.json"
    library = simple_ml._native.library_path()
    # compare.py reads SIMPLE_ML_LIB to time the library this suite tests
    # (and passes it to the Python module it imports in its workers).
    env = dict(os.environ, SIMPLE_ML_LIB=library)
    env.pop("PYTHONPATH", None)
    run = subprocess.run(
        [sys.executable, COMPARE, "--quick", "--repeat", "1", "--threads", "1,2",
         "--no-build", "--no-job", "--json", str(out)],
        capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "| implementation | threads | softmax ms |" in run.stdout

    res = json.loads(out.read_text())
    assert res["rows"] == 6000
    assert res["lib_path"] == os.path.abspath(library)
    assert res["threads"] == [1, 2]

    def positive(ms):
        return isinstance(ms, float) and math.isfinite(ms) and ms > 0

    workers = {(w["kind"], w["threads"], w.get("config")): w for w in res["workers"]}
    for t in (1, 2):
        lib = workers[("lib", t, None)]
        for w in WORKLOADS:
            entry = lib["results"]["lib"][w]
            assert positive(entry["median_ms"]), (t, w, entry)
            assert entry["same_bits_every_run"], (t, w)
            assert max(a["norm_rel_diff"] for a in entry["agreement"]) < 1e-4, (t, w, entry)
        # The course module's rows: simple_ml_ext imported from the installed
        # package, over the same library.
        assert lib["module_file"].startswith(os.path.dirname(os.path.dirname(simple_ml.__file__)))
        for w in ("softmax", "nn100"):
            assert positive(lib["results"]["module"][w]["median_ms"]), (t, w)
        for config in ("as users run it", "tuned malloc"):
            numpy_row = workers[("numpy", t, config)]["results"]["numpy"]
            assert all(positive(numpy_row[w]["median_ms"]) for w in WORKLOADS), (t, config)

    assert res["lib_same_bits_across_threads"] == {w: True for w in WORKLOADS}
    assert set(res["best_numpy"]) == set(WORKLOADS)
    if shutil.which("g++"):
        naive = workers[("naive", 1, None)]["results"]["naive"]
        assert all(positive(naive[w]["median_ms"]) for w in WORKLOADS)
        assert set(res["naive_vs_lib"]) == set(WORKLOADS)
    assert all(positive(res["parse"][key]) for key in ("lib_ms", "c_ms", "numpy_ms"))
    assert res["parse"]["rows"] == 6000
