"""The typing files ship with the package and match the compiled modules: py.typed and
the .pyi stubs sit next to the modules (in the source tree and in an installed wheel),
the three kernel stubs are one file, and every stub names exactly what its module
defines, with the same parameters. (CI runs ``mypy --strict examples/typed_usage.py``.)"""

import ast
import importlib
import importlib.util
import inspect
from pathlib import Path

import pytest

import fastoptim
from fastoptim import _dispatch, reference

PKG = Path(fastoptim.__file__).resolve().parent
KERNEL_STUBS = ["_kernels_baseline", "_kernels_avx2", "_kernels_avx512"]
RULES = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam", "adamw"]
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "typed_usage.py"


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


@pytest.mark.parametrize("target", _dispatch.built())
def test_kernel_stub_names_match_the_module(target):
    module = importlib.import_module(f"fastoptim._kernels_{target}")
    assert set(stub(f"_kernels_{target}")) == public_names(module)


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
