"""The package's layers: ``import fastoptim`` loads the optimizers and nothing of the
demos, the command or the benchmarks; the moved modules' old paths still work, with a
DeprecationWarning naming the new one; the command's and the benchmark's lists of
optimizers come from the rule table, and the demos' settings fall back to a rule's
defaults."""

import importlib
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import _bench, cli, rules
from fastoptim.cli import _common
from fastoptim.demo import datasets, nn, paths, settings

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


def test_the_lists_come_from_the_rule_table():
    classes = [r.class_name for r in rules.RULES]
    assert list(cli.OPTIMIZER_NAMES) == classes == settings.names()
    assert _bench.RULES == [r.name for r in rules.RULES]
    for r in rules.RULES:
        assert _bench.bytes_per_element(r.name, np.float64) == r.state_bytes(8)
    assert settings.path_names() == [n for n in classes if n in (
        "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "AdaDelta", "Adam")]
    assert _common.count_word(12) == "twelve" and _common.count_word(len(classes)) == "14"


# What `fastoptim bench` ran in torch before the lists came from the rule table.
TORCH_BEFORE = {
    "sgd": ("SGD", dict(lr=1e-3, fused=True)),
    "momentum": ("SGD", dict(lr=1e-3, momentum=0.9, fused=True)),
    "nesterov": ("SGD", dict(lr=1e-3, momentum=0.9, nesterov=True, fused=True)),
    "adagrad": ("Adagrad", dict(lr=1e-2, fused=True)),
    "rmsprop": ("RMSprop", dict(lr=1e-2, foreach=True)),
    "adadelta": ("Adadelta", dict(lr=1.0, foreach=True)),
    "adam": ("Adam", dict(lr=1e-3, fused=True)),
    "adamw": ("AdamW", dict(lr=1e-3, fused=True)),
}
# ... and for the rules added since (torch 2.13's Adamax, NAdam and RAdam have no
# ``fused``); Lion, which torch.optim does not have, gets no torch step
TORCH_NEW = {
    "adamax": ("Adamax", dict(lr=2e-3, foreach=True)),
    "nadam": ("NAdam", dict(lr=2e-3, foreach=True)),
    "radam": ("RAdam", dict(lr=1e-3, foreach=True)),
}


def test_torch_optimizers_come_from_the_rule_table(monkeypatch):
    """A stand-in torch.optim whose classes have a ``fused`` keyword where torch 2.13's
    have one: the benchmark builds what it built before."""
    made = []

    def fake(name, fused):
        def init(self, params, lr=None, momentum=0, nesterov=False, foreach=None,
                 **kw):
            made.append((name, {"lr": lr, **({"momentum": momentum} if momentum else {}),
                                **({"nesterov": True} if nesterov else {}),
                                **({"foreach": foreach} if foreach else {}), **kw}))
        if fused:
            def init_fused(self, params, lr=None, momentum=0, nesterov=False, foreach=None,
                           fused=None):
                init(self, params, lr, momentum, nesterov, foreach,
                     **({"fused": fused} if fused else {}))
            return type(name, (), {"__init__": init_fused})
        return type(name, (), {"__init__": init})

    optim = types.SimpleNamespace(**{n: fake(n, n in ("SGD", "Adagrad", "Adam", "AdamW"))
                                     for n in ("SGD", "Adagrad", "RMSprop", "Adadelta",
                                               "Adam", "AdamW", "Adamax", "NAdam",
                                               "RAdam")})
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(optim=optim))
    expected = {**TORCH_BEFORE, **TORCH_NEW}
    for name in _bench.RULES:
        if not rules.get(name).torch:  # Lion, Schedule-Free AdamW: not in torch.optim
            assert _bench.torch_step(name, 10, np.float32, 1) is None
            continue
        made.clear()
        _bench.torch_optimizer(name, [])
        assert made == [expected[name]], name


def test_a_rule_without_settings_runs_with_its_defaults(monkeypatch):
    """What a new rule gets in the demos: its defaults, no edit to a demo module."""
    for problem in settings.HYPER:
        monkeypatch.delitem(settings.HYPER[problem], "Adam")
        assert settings.hyper(problem, "Adam") == rules.get("adam").defaults
    assert settings.hyper("paths/book", "adamw") == settings.HYPER["paths/book"]["AdamW"]
    path = paths.optimizer_path("Adam", "book", steps=3)
    opt, p = fo.Adam(), np.array([-7.0, 2.0])
    for _ in range(3):
        opt.update([p], [np.array([p[0] / 10, 2 * p[1]])])
    assert np.array_equal(path[-1], p)
    assert paths._fmt((0.9, 0.999)) == "(0.9, 0.999)" and paths._fmt(0.1) == "0.1"
    # a colour and a line style for every rule, dashed for the variants
    assert settings.color("AdamW") == "#17becf" and settings.line_style("AdamW") == "--"
    assert settings.line_style("Adam") == "-"
    monkeypatch.delitem(settings.COLORS, "Adam")
    assert settings.color("Adam").startswith("#")


def test_the_command_runs_as_a_module_too():
    """``python -m fastoptim.cli`` (as the single-module cli.py allowed) and ``python -m
    fastoptim._bench`` (the bench command's old home) still run the command."""
    for argv in (["-m", "fastoptim.cli", "info"], ["-m", "fastoptim._bench", "--help"]):
        out = subprocess.run([sys.executable, *argv], capture_output=True, text=True,
                             env=_env(), timeout=120)
        assert out.returncode == 0, (argv, out.stderr)
        assert ("openmp" if "info" in argv else "usage: fastoptim bench") in out.stdout
