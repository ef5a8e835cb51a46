"""Fails when the ctypes declarations drift from include/simple_ml.h.

The header is cbindgen output: one declaration per function (possibly over
several lines), structs as `typedef struct NAME { ... } NAME;`, status codes
as `#define SML_X N`. Every function it declares must be in
simple_ml._native.PROTOTYPES with the same return type and argument types,
and nothing else may be there; the structs, the callback types and the
status numbers must match too."""
import ctypes
import os
import re

import pytest

from simple_ml import _native
from simple_ml._version import __version__
from conftest import REPO

REPO_HEADER = os.path.join(REPO, "include", "simple_ml.h")


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def header_text():
    """The installed copy, which the package was built against."""
    path = _native.header_path()
    assert path is not None, "the installed package has no copy of simple_ml.h"
    with open(path, encoding="utf-8") as f:
        return f.read()


# C type spelling -> ctypes type, for the types the header uses.
BASE_TYPES = {
    "void": None,
    "char": ctypes.c_char,
    "unsigned char": ctypes.c_ubyte,
    "int": ctypes.c_int,
    "float": ctypes.c_float,
    "double": ctypes.c_double,
    "size_t": ctypes.c_size_t,
    "uint32_t": ctypes.c_uint32,
    "sml_status": _native.sml_status,
    "sml_epoch_callback": _native.sml_epoch_callback,
    "sml_epoch_control": _native.sml_epoch_control,
    "struct sml_data": _native.sml_data,
    "struct sml_dataset": _native.sml_dataset,
    "struct sml_epoch_report": _native.sml_epoch_report,
}


def to_ctypes(c_type):
    """`const float *` -> POINTER(c_float), `const char *` -> c_char_p,
    `char *` (a buffer the callee writes) -> POINTER(c_char), `void *` ->
    c_void_p."""
    c_type = " ".join(c_type.replace("*", " * ").split())
    stars = c_type.count("*")
    words = [w for w in c_type.replace("*", " ").split() if w != "const"]
    base = " ".join(words)
    assert base in BASE_TYPES, "the test does not know the C type %r; extend BASE_TYPES" % base
    t = BASE_TYPES[base]
    if stars == 0:
        return t
    if base == "void" and stars == 1:
        return ctypes.c_void_p
    if base == "char" and stars == 1 and c_type.startswith("const"):
        return ctypes.c_char_p
    for _ in range(stars):
        t = ctypes.POINTER(t)
    return t


def split_parameter(param):
    """'const float *X' -> ('const float *', 'X')."""
    m = re.fullmatch(r"(.*?)(\w+)", param.strip(), flags=re.S)
    return m.group(1).strip(), m.group(2)


def parse_functions(text):
    body = strip_comments(text)
    body = "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("#"))
    body = body.replace('extern "C" {', "")
    functions = {}
    for m in re.finditer(r"([A-Za-z_][\w \t\*]*?[\s\*])(\w+)\s*\(([^()]*)\)\s*;", body):
        ret, name, params = m.group(1).strip(), m.group(2), " ".join(m.group(3).split())
        if ret.startswith("typedef") or ret.startswith("}"):
            continue
        args = [] if params in ("", "void") else [split_parameter(p)[0] for p in params.split(",")]
        functions[name] = (ret, args)
    return functions


def parse_structs(text):
    body = strip_comments(text)
    structs = {}
    for m in re.finditer(r"typedef struct (\w+) \{(.*?)\} \1;", body, flags=re.S):
        fields = []
        for decl in m.group(2).split(";"):
            if decl.strip():
                c_type, name = split_parameter(decl)
                fields.append((name, to_ctypes(c_type)))
        structs[m.group(1)] = fields
    return structs


def test_parser_finds_every_declaration():
    """Guard against a parser that silently finds nothing: count the
    declarations another way (a name followed by '(' after a return type
    at the start of a line inside extern "C")."""
    text = strip_comments(header_text())
    inside = text.split('extern "C" {', 1)[1]
    starts = re.findall(r"^(?:const )?(?:void|float|size_t|sml_status|char|unsigned char)\s*\*?\s*(\w+)\(", inside, flags=re.M)
    functions = parse_functions(header_text())
    assert sorted(starts) == sorted(functions)
    assert len(functions) >= 28


def test_every_header_function_is_declared_in_python():
    functions = parse_functions(header_text())
    assert set(functions) == set(_native.PROTOTYPES), (
        "in the header only: %s; in Python only: %s"
        % (sorted(set(functions) - set(_native.PROTOTYPES)), sorted(set(_native.PROTOTYPES) - set(functions)))
    )


@pytest.mark.parametrize("name", sorted(parse_functions(header_text())))
def test_prototype_matches_header(name):
    ret, args = parse_functions(header_text())[name]
    restype, argtypes = _native.PROTOTYPES[name]
    assert restype is to_ctypes(ret), "%s returns %s" % (name, ret)
    assert len(argtypes) == len(args), "%s takes %d arguments: %s" % (name, len(args), args)
    for i, (c_type, py_type) in enumerate(zip(args, argtypes)):
        assert py_type is to_ctypes(c_type), "%s argument %d is %s" % (name, i, c_type)
    # And the loaded function carries that table.
    fn = getattr(_native.lib, name)
    assert fn.restype is restype and list(fn.argtypes) == list(argtypes)


def test_structs_match_header():
    structs = parse_structs(header_text())
    for name in ("sml_data", "sml_epoch_report"):
        expected = structs[name]
        actual = [(f, t) for f, t in getattr(_native, name)._fields_]
        assert actual == expected, name
    # sml_dataset stays opaque.
    assert "typedef struct sml_dataset sml_dataset;" in header_text()
    assert not hasattr(_native.sml_dataset, "_fields_")


@pytest.mark.parametrize("name", ["sml_epoch_callback", "sml_epoch_control"])
def test_callback_typedefs_match_header(name):
    text = strip_comments(header_text())
    m = re.search(r"typedef (\w+) \(\*" + name + r"\)\(([^)]*)\);", text)
    assert m, name
    ret, params = m.group(1), [split_parameter(p)[0] for p in m.group(2).split(",")]
    callback = getattr(_native, name)
    assert callback._restype_ is to_ctypes(ret)
    assert list(callback._argtypes_) == [to_ctypes(p) for p in params]


def test_status_typedef_matches_header():
    text = strip_comments(header_text())
    assert re.search(r"typedef int sml_status;", text)
    assert _native.sml_status is ctypes.c_int


def test_status_numbers_match_header():
    defines = dict(
        (name, int(value)) for name, value in re.findall(r"#define (SML_[A-Z_]+) (\d+)", header_text())
        if not name.startswith("SML_VERSION")
    )
    assert defines == {name: value for value, name in _native.STATUS_NAMES.items()}
    for name, value in defines.items():
        assert getattr(_native, name) == value
        assert _native.lib.sml_status_str(value).decode() == name


def test_versions_agree():
    """Package, loaded library, header macros and Cargo.toml carry one version."""
    macros = dict(re.findall(r"#define SML_VERSION_(MAJOR|MINOR|PATCH) (\d+)", header_text()))
    header_version = "%s.%s.%s" % (macros["MAJOR"], macros["MINOR"], macros["PATCH"])
    assert _native.library_version() == header_version == __version__
    cargo = os.path.join(REPO, "Cargo.toml")
    if os.path.exists(cargo):
        with open(cargo, encoding="utf-8") as f:
            assert re.search(r'^version = "([^"]+)"', f.read(), flags=re.M).group(1) == __version__


def test_installed_header_is_the_repository_header():
    if not os.path.exists(REPO_HEADER):
        pytest.skip("no repository checkout beside the tests")
    with open(REPO_HEADER, encoding="utf-8") as f:
        assert header_text() == f.read(), "the installed package is stale: pip install ./python again"
