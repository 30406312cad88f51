"""The package's layers: ``import fastoptim`` loads the optimizers and nothing of the
demos, the command or the benchmarks; the moved modules' old paths still work, with a
DeprecationWarning naming the new one."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastoptim as fo
from fastoptim.demo import datasets, nn

NOT_AT_IMPORT = ("fastoptim.demo", "fastoptim.nn", "fastoptim.datasets", "fastoptim.cli",
                 "fastoptim._bench")


def _env():
    env = dict(os.environ)
    src = str(Path(fo.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _python(code, *flags):
    return subprocess.run([sys.executable, *flags, "-c", code], capture_output=True,
                          text=True, env=_env(), timeout=120)


def test_import_fastoptim_imports_no_demo_cli_or_bench():
    out = _python(f"import sys, fastoptim; print(sorted(m for m in sys.modules for x in "
                  f"{NOT_AT_IMPORT!r} if m == x or m.startswith(x + '.')))", "-W", "error")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("old, new", [("nn", nn), ("datasets", datasets)])
def test_old_paths_warn_and_are_the_moved_module(old, new, monkeypatch):
    def forget():
        monkeypatch.delitem(sys.modules, f"fastoptim.{old}", raising=False)
        monkeypatch.delitem(fo.__dict__, old, raising=False)

    message = f"fastoptim.{old} is deprecated; use fastoptim.demo.{old}"
    forget()
    with pytest.warns(DeprecationWarning, match=message) as record:
        assert getattr(fo, old) is new                      # attribute after import fastoptim
    assert record[0].filename == __file__                   # points at the caller
    forget()
    with pytest.warns(DeprecationWarning, match=message) as record:
        exec(f"from fastoptim import {old} as mod; assert mod is new", {"new": new})
    forget()
    with pytest.warns(DeprecationWarning, match=message) as record:
        assert importlib.import_module(f"fastoptim.{old}") is new
    # once imported, the old path is the very module (one class, one warning)
    assert sys.modules[f"fastoptim.{old}"] is new and getattr(fo, old) is new


def test_old_paths_in_a_fresh_process():
    """Each form warns once, naming the new path, and then works: the statement forms
    run as a user's script would (warnings as errors make the first one fail)."""
    for stmt in ("import fastoptim.nn as m; m.MLP([2, 3, 2])",
                 "from fastoptim import nn; nn.MLP([2, 3, 2])",
                 "import fastoptim; fastoptim.nn.MLP([2, 3, 2])",
                 "import fastoptim; fastoptim.datasets.load_apartment()",
                 "import fastoptim.datasets as d; d.load_apartment()"):
        out = _python(stmt, "-W", "error::DeprecationWarning")
        assert out.returncode != 0 and "DeprecationWarning" in out.stderr, stmt
        assert "use fastoptim.demo." in out.stderr, stmt
        out = _python(stmt, "-W", "always::DeprecationWarning")
        assert out.returncode == 0, (stmt, out.stderr)
        assert out.stderr.count("is deprecated; use fastoptim.demo.") == 1, (stmt, out.stderr)
        assert "<string>:1: DeprecationWarning" in out.stderr, (stmt, out.stderr)


def test_unknown_attribute_is_still_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        fo.nope  # noqa: B018
    # ``from fastoptim import *`` warns about nothing
    assert "nn" not in fo.__all__ and "datasets" not in fo.__all__
