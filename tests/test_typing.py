"""The typing files ship with the package and match the compiled modules: py.typed and
the .pyi stubs sit next to the modules (in the source tree and in an installed wheel),
the three kernel stubs are one file, and every stub names exactly what its module
defines, with the same parameters. (CI runs ``mypy --strict examples/typed_usage.py``.)"""

import ast
import importlib
import importlib.util
import inspect
import re
from pathlib import Path

import pytest

import fastoptim
from fastoptim import _dispatch, _kernels_baseline, reference, rules

from conftest import target_params

PKG = Path(fastoptim.__file__).resolve().parent
KERNEL_STUBS = ["_kernels_baseline", "_kernels_avx2", "_kernels_avx512"]
RULES = [r.name for r in rules.KERNEL_ROWS]
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "typed_usage.py"
SOURCE = Path(__file__).resolve().parent.parent / "kernels"


def stub(name):
    """{name: ast node} of the top-level functions and annotated names of a stub."""
    tree = ast.parse((PKG / f"{name}.pyi").read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = node
    return out


def stub_params(fn):
    """[(name, kind, has_default)] of a stub function, like inspect.Parameter."""
    a = fn.args
    P = inspect.Parameter
    pos = [(x.arg, P.POSITIONAL_OR_KEYWORD) for x in a.args]
    npos_default = len(a.defaults)
    out = [(n, k, i >= len(pos) - npos_default) for i, (n, k) in enumerate(pos)]
    out += [(x.arg, P.KEYWORD_ONLY, d is not None) for x, d in zip(a.kwonlyargs,
                                                                    a.kw_defaults)]
    return out


def runtime_params(fn):
    return [(p.name, p.kind, p.default is not inspect.Parameter.empty)
            for p in inspect.signature(fn).parameters.values()]


def public_names(module):
    """What a compiled module defines, less dunders and internal extension types."""
    return {n for n in dir(module)
            if not n.startswith("__") and not (isinstance(getattr(module, n), type)
                                               and n.startswith("_"))}


def test_py_typed_and_stubs_are_next_to_the_modules():
    assert (PKG / "py.typed").is_file()
    for name in KERNEL_STUBS + ["_clip"]:
        assert (PKG / f"{name}.pyi").is_file(), name


def test_the_three_kernel_stubs_are_one_file():
    texts = {name: (PKG / f"{name}.pyi").read_text() for name in KERNEL_STUBS}
    assert len(set(texts.values())) == 1


@pytest.mark.parametrize("target", target_params())
def test_kernel_stub_names_match_the_module(target):
    module = _dispatch.load(target)
    assert set(stub(f"_kernels_{target}")) == public_names(module)


def compiled_file(target):
    """The shared library of a built kernel module, found without importing it."""
    spec = importlib.util.find_spec(f"fastoptim._kernels_{target}")
    return Path(spec.origin)


def names_in_binary(path, names):
    """Those of ``names`` that the file holds as whole NUL-terminated C strings (as a
    compiled Cython module holds the name of each function it defines)."""
    data = path.read_bytes()
    return {n for n in names
            if re.search(rb"(?<![A-Za-z0-9_])" + re.escape(n.encode()) + rb"\0", data)}


@pytest.mark.parametrize("target", _dispatch.PREFERENCE)
def test_kernel_stub_matches_every_built_module_without_importing_it(target):
    """For the targets this CPU cannot run (or that FASTOPTIM_CPU caps away) too: the
    module is the baseline's source built with other flags, so its names are the
    baseline's; and every function the stub names is in its compiled file."""
    if target not in _dispatch.built():
        pytest.skip(f"{target}: not built")
    s = stub(f"_kernels_{target}")
    assert set(s) == public_names(_kernels_baseline)
    functions = {n for n, node in s.items() if isinstance(node, ast.FunctionDef)}
    assert functions and names_in_binary(compiled_file(target), functions) == functions
    if SOURCE.is_dir():     # in the source tree (not when testing an installed wheel)
        text = (SOURCE / f"_kernels_{target}.pyx").read_text()
        assert text.replace(f"'{target}'", "'baseline'").replace(
            f'"{target}"', '"baseline"') == (SOURCE / "_kernels_baseline.pyx").read_text()


def test_the_binary_name_check_can_fail():
    path = compiled_file("baseline")
    assert names_in_binary(path, {"update_many", "not_a_kernel"}) == {"update_many"}
    assert names_in_binary(path, {"adam"}) == {"adam"}     # not just a prefix of adamw
    assert names_in_binary(path, {"dam", "damw"}) == set()


def test_clip_stub_matches_the_module():
    module = importlib.import_module("fastoptim._clip")
    s = stub("_clip")
    assert set(s) == public_names(module)
    for name, node in s.items():
        if isinstance(node, ast.FunctionDef):
            assert stub_params(node) == runtime_params(getattr(module, name)), name


def test_kernel_stub_signatures():
    """Plain functions against the module; the rule kernels (Cython fused functions,
    whose run-time signatures are not introspectable) against fastoptim.reference,
    which has the kernels' signatures by design."""
    s = stub("_kernels_baseline")
    module = importlib.import_module("fastoptim._kernels_baseline")
    for name, node in s.items():
        if not isinstance(node, ast.FunctionDef) or name == "stream":
            continue      # stream: fused too, and not in the reference (bench only)
        source = getattr(reference, name) if name in RULES else getattr(module, name)
        assert stub_params(node) == runtime_params(source), name


def test_typed_example_runs(capsys):
    spec = importlib.util.spec_from_file_location("typed_usage", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main()
    out = capsys.readouterr().out
    assert "Adam" in out and fastoptim.__version__ in out
