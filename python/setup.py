"""Builds the Rust library (the repository's Cargo.toml) with cargo and ships
it, with a copy of its C header, inside the `simple_ml` package.

The library is a bare C-ABI cdylib (Binding.NoBinding): Python loads it with
ctypes from the package directory, so the Rust side needs no Python bindings
and the same .so serves C programs too. See docs/PYTHON.md for the choice.
"""
import os
import re
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools_rust import Binding, RustExtension

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(HERE, "..", "include", "simple_ml.h")
CARGO_TOML = os.path.join(HERE, "..", "Cargo.toml")


def crate_types():
    """The [lib] crate-type list of Cargo.toml. setuptools-rust would build
    with `--crate-type cdylib` alone, which cargo counts as another build of
    this crate (and, were LTO on, of every dependency too), so the library
    would be rebuilt next to `cargo build --release`. Asking for Cargo.toml's
    own list lets pip's build and cargo's share target/ with nothing
    rebuilt."""
    with open(CARGO_TOML, encoding="utf-8") as f:
        found = re.search(r"^crate-type\s*=\s*\[([^\]]*)\]", f.read(), flags=re.M)
    types = re.findall(r'"([^"]+)"', found.group(1)) if found else []
    return ",".join(types) if "cdylib" in types else "cdylib"


class build_py_with_header(build_py):
    """Copies include/simple_ml.h into the package, so the installed package
    carries the exact C declarations its ctypes table was written against."""

    def run(self):
        super().run()
        if not self.dry_run:
            target = os.path.join(self.build_lib, "simple_ml", "simple_ml.h")
            self.mkpath(os.path.dirname(target))
            shutil.copyfile(HEADER, target)


setup(
    rust_extensions=[
        RustExtension(
            # Installed as simple_ml/libsimple_ml<EXT_SUFFIX>; nothing imports
            # it as a module, simple_ml/_native.py opens it with ctypes.
            "simple_ml.libsimple_ml",
            path="../Cargo.toml",
            binding=Binding.NoBinding,
            py_limited_api=False,
            args=["--crate-type", crate_types()],
        )
    ],
    cmdclass={"build_py": build_py_with_header},
)
