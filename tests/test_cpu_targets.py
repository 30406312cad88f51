"""CPU targets are tested where they run and never touched where they cannot:
FASTOPTIM_CPU caps which targets count as supported, nothing imports a kernel module
outside that list, and the session guard in conftest.py fails a run that does."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fastoptim import _dispatch

from conftest import forbidden_kernel_modules

HERE = Path(__file__).resolve().parent

# Imports the package and every module of it, uses the main paths (update, guard, clip,
# config), then prints the kernel modules loaded and what get_config reports.
USE_EVERYTHING = """
import sys, numpy as np, fastoptim as fo
import fastoptim.cli, fastoptim._bench, fastoptim.checkpoint
import fastoptim.demo.nn, fastoptim.demo.datasets, fastoptim.demo.train
import fastoptim.demo.paths, fastoptim.demo.e2e
p = {"w": np.ones(100_000, np.float32), "b": np.ones(7)}
g = {"w": np.full(100_000, 1e-3, np.float32), "b": np.full(7, 1e-3)}
fo.Adam(skip_nonfinite=True).update(p, g)
fo.SGD().update(p, g)
fo.clip_grad_norm(g, 1e-4)
cfg = fo.get_config()
print(sorted(m for m in sys.modules if m.startswith("fastoptim._kernels_")))
print(cfg["cpu_target"], cfg["cpu_targets"])
"""


def run_python(code, cpu, **kw):
    return subprocess.run([sys.executable, "-c", code],
                          env={**os.environ, "FASTOPTIM_CPU": cpu},
                          capture_output=True, text=True, timeout=120, **kw)


def test_the_cap_drops_the_wider_targets():
    everything = list(_dispatch.PREFERENCE)
    assert _dispatch._under_cap(everything, None) == everything
    assert _dispatch._under_cap(everything, "avx512") == everything
    assert _dispatch._under_cap(everything, "avx2") == ["avx2", "baseline"]
    assert _dispatch._under_cap(everything, "baseline") == ["baseline"]
    assert _dispatch._under_cap(["avx2", "baseline"], "avx512") == ["avx2", "baseline"]


def test_supported_is_the_capped_runnable_list():
    assert _dispatch.supported() == _dispatch._under_cap(_dispatch.runnable(),
                                                         _dispatch.cap)
    assert _dispatch.target == _dispatch.supported()[0]
    for t in _dispatch.PREFERENCE:
        assert (_dispatch.unavailable_reason(t) is None) == (t in _dispatch.supported())


def test_an_unknown_target_is_named():
    with pytest.raises(ValueError, match="unknown CPU target 'sse4'"):
        _dispatch.unavailable_reason("sse4")
    with pytest.raises(ValueError, match="unknown CPU target 'sse4'"):
        _dispatch.load("sse4")


@pytest.mark.parametrize("target", [t for t in _dispatch.PREFERENCE if t != "baseline"])
def test_capped_targets_are_refused_and_not_imported(target):
    code = (f"import sys, fastoptim\n"
            f"from fastoptim import _dispatch\n"
            f"print(_dispatch.unavailable_reason({target!r}))\n"
            f"try:\n    _dispatch.load({target!r})\nexcept ValueError as e:\n    print(e)\n"
            f"print('fastoptim._kernels_{target}' in sys.modules)\n")
    out = run_python(code, "baseline", check=True)
    reason = _dispatch.unavailable_reason(target)
    if reason is None or reason.startswith("capped"):
        reason = "capped by FASTOPTIM_CPU=baseline"
    assert out.stdout.splitlines() == [
        reason,
        f"CPU target {target!r} is not available here ({reason}); supported: baseline",
        "False"]


@pytest.mark.parametrize("cpu", _dispatch.PREFERENCE)
def test_a_process_imports_only_baseline_and_its_target(cpu):
    if cpu not in _dispatch.supported():
        pytest.skip(f"{cpu}: {_dispatch.unavailable_reason(cpu)}")
    out = run_python(USE_EVERYTHING, cpu, check=True)
    loaded = sorted({"fastoptim._kernels_baseline", f"fastoptim._kernels_{cpu}"})
    targets = _dispatch._under_cap(_dispatch.runnable(), cpu)
    assert out.stdout.splitlines() == [str(loaded), f"{cpu} {targets}"]
    assert "not available" not in out.stderr


def test_baseline_alone_under_fastoptim_cpu_baseline():
    out = run_python(USE_EVERYTHING, "baseline", check=True)
    assert out.stdout.splitlines() == ["['fastoptim._kernels_baseline']",
                                       "baseline ['baseline']"]


def test_forbidden_kernel_modules():
    mods = {"fastoptim._kernels_baseline": 1, "fastoptim._kernels_avx512": 1, "numpy": 1}
    assert forbidden_kernel_modules(mods, ["baseline"]) == ["fastoptim._kernels_avx512"]
    assert forbidden_kernel_modules(mods, ["avx512", "avx2", "baseline"]) == []
    assert forbidden_kernel_modules({}, ["baseline"]) == []


@pytest.mark.parametrize("touch", [False, True])
def test_the_session_guard_fails_a_run_that_touches_a_capped_target(tmp_path, touch):
    """A pytest run under FASTOPTIM_CPU=baseline with this conftest passes, and fails if
    a test leaves fastoptim._kernels_avx2 in sys.modules (a stand-in module here, so
    nothing runs that the CPU might lack)."""
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    body = ("import sys, types\n"
            "def test_it():\n"
            f"    if {touch!r}:\n"
            "        sys.modules['fastoptim._kernels_avx2'] = types.ModuleType('x')\n")
    (tmp_path / "test_touch.py").write_text(body)
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(tmp_path)], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "FASTOPTIM_CPU": "baseline"}, timeout=120)
    message = "kernel modules for unsupported CPU targets were imported: " \
              "fastoptim._kernels_avx2 (supported: baseline)"
    assert "1 passed" in out.stdout, out.stdout + out.stderr
    if touch:
        assert out.returncode == 1 and message in out.stdout, out.stdout + out.stderr
    else:
        assert out.returncode == 0 and message not in out.stdout, out.stdout + out.stderr
