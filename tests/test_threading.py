"""The threading policy (fastoptim._threading, kernels/_pacer.pxi): the adaptive
decision against a simulated clock, which calls it paces, the FASTOPTIM_THREADING knob
and what get_config() reports about it (checked against what the OpenMP runtime itself
says it read)."""

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import _clip, _threading
from fastoptim._dispatch import kernels as _kernels

BIG = 1 << 20          # far above every serial threshold
PACERS = [pytest.param(_kernels.pacer_simulate, id="kernels"),
          pytest.param(_clip.pacer_simulate, id="clip")]


def run(code, env=None, timeout=60):
    """Run ``code`` in a fresh interpreter; return its stdout and stderr."""
    full = {k: v for k, v in os.environ.items()
            if k not in ("FASTOPTIM_THREADING",) + _threading.USER_WAIT_VARS}
    full.update(env or {})
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout, out.stderr


# -- the decision, on a simulated clock -------------------------------------------------

@pytest.mark.parametrize("simulate", PACERS)
def test_parallel_that_slows_the_loop_is_dropped(simulate):
    modes = simulate([(1.0, 2.0)] * 2000)
    # one parallel trial (a warm-up call and three), then each re-check of parallel
    # costs two calls, at intervals that double from 16 to 1024
    assert modes.startswith("PPPPSSSS")
    assert modes.count("P") <= 4 + 2 * 8
    assert "P" not in modes[-1000:-2] or modes[-1000:].count("P") <= 2


@pytest.mark.parametrize("simulate", PACERS)
def test_parallel_that_speeds_the_loop_up_is_kept(simulate):
    modes = simulate([(2.0, 1.0)] * 2000)
    assert modes.startswith("PPPPSS")          # serial's trial stops at its first period
    assert modes.count("S") <= 2 + 2 * 8
    assert modes[-1000:].count("S") <= 2


@pytest.mark.parametrize("simulate", PACERS)
@pytest.mark.parametrize("parallel, starts", [
    # lost by more than 1.5x: each check is two calls, the interval grows 4x
    (2.0, [0, 8 + 16, 26 + 64, 92 + 256, 350 + 1024, 1376 + 1024]),   # capped at 1024
    # lost by less: each check is a full trial (four calls), the interval grows 2x
    (1.2, [0, 8 + 16, 28 + 32, 64 + 64, 132 + 128, 264 + 256, 524 + 512, 1040 + 1024]),
])
def test_the_checks_come_at_growing_intervals(simulate, parallel, starts):
    modes = simulate([(1.0, parallel)] * 2500)
    assert [m.start() for m in re.finditer("P+", modes)] == starts


@pytest.mark.parametrize("simulate", PACERS)
def test_a_change_in_the_loop_is_followed(simulate):
    # serial wins for 300 calls, then parallel does (another load came or went)
    modes = simulate([(1.0, 2.0)] * 300 + [(2.0, 1.0)] * 700)
    assert modes[:300].count("P") <= 4 + 2 * 5
    # found within one re-check interval (at most 1024, here far less), then kept
    switch = modes.index("PPPP", 300)
    assert switch < 300 + 300
    assert modes[switch + 50:].count("S") <= 2 * 4


@pytest.mark.parametrize("simulate", PACERS)
def test_a_small_difference_does_not_flip_the_mode(simulate):
    # within SWITCH_GAIN (3%): the incumbent stays
    modes = simulate([(1.0, 1.01)] * 1000)
    assert modes[:8] == "PPPPSSSS"             # serial measured cheaper: it is used
    # each re-check of parallel is a full trial (not clearly worse), and loses
    runs = re.findall("P+", modes[8:])
    assert runs and all(r == "PPPP" for r in runs)
    assert modes.endswith("S")


# -- which calls are paced ----------------------------------------------------------------

@pytest.mark.skipif(not _kernels.openmp_enabled(), reason="serial build: nothing to pace")
def test_only_large_default_calls_are_paced():
    old = fo.set_threading("adaptive")
    try:
        big = [np.zeros(BIG, np.float32)]
        g = [np.ones(BIG, np.float32)]
        paced = fo.Adam(lr=0.1)
        for _ in range(5):
            paced.update(big, g)
        info = _kernels.pacer_info(paced._pacer)
        assert info is not None and info["calls"] == 5 and info["work"] == BIG
        fixed = fo.Adam(lr=0.1, num_threads=2)      # an explicit count is kept
        small = fo.Adam(lr=0.1)                     # below the threshold: serial anyway
        for _ in range(3):
            fixed.update(big, g)
            small.update([np.zeros(100, np.float32)], [np.ones(100, np.float32)])
        assert _kernels.pacer_info(fixed._pacer) is None
        assert _kernels.pacer_info(small._pacer) is None
        fo.set_threading("spin")                    # every large step on all threads
        spun = fo.Adam(lr=0.1)
        spun.update(big, g)
        assert _kernels.pacer_info(spun._pacer) is None
    finally:
        fo.set_threading(old)


@pytest.mark.skipif(not _kernels.openmp_enabled(), reason="serial build: nothing to pace")
def test_clip_grad_norm_is_paced_by_default_only():
    old = fo.set_threading("adaptive")
    try:
        g = [np.full(BIG, 1e-3, np.float32)]
        before = _clip.pacer_state()
        calls = 0 if before is None or before["work"] != BIG else before["calls"]
        fo.clip_grad_norm(g, 1.0)
        fo.clip_grad_norm(g, 1.0, num_threads=2)
        after = _clip.pacer_state()
        assert after["work"] == BIG and after["calls"] == calls + 1
    finally:
        fo.set_threading(old)


@pytest.mark.skipif(not _kernels.openmp_enabled(), reason="serial build: nothing to pace")
def test_functional_calls_are_paced_per_parameter():
    from fastoptim import functional as F

    old = fo.set_threading("adaptive")
    try:
        ps = [np.zeros(BIG, np.float32) for _ in range(2)]
        g = np.ones(BIG, np.float32)
        bufs = [(np.zeros(BIG, np.float32), np.zeros(BIG, np.float32)) for _ in ps]
        for step in range(1, 4):
            for p, (m, v) in zip(ps, bufs):
                F.adam(p, g, m, v, step=step, lr=0.1)
        for p in ps:
            info = _kernels.keyed_pacer_info(p.ctypes.data)
            assert info is not None and info["calls"] == 3 and info["work"] == BIG
        q = np.zeros(BIG, np.float32)
        F.sgd(q, g, lr=0.1, num_threads=2)         # an explicit count is kept
        assert _kernels.keyed_pacer_info(q.ctypes.data) is None
    finally:
        fo.set_threading(old)


def test_set_threading_checks_and_returns_the_old_policy():
    old = fo.set_threading("yield")
    try:
        assert fo.get_config()["threading"] == "yield"
        assert fo.set_threading("spin") == "yield"
        with pytest.raises(ValueError, match="threading policy must be one of 'adaptive'"):
            fo.set_threading("fast")
        assert fo.get_config()["threading"] == "spin"
    finally:
        fo.set_threading(old)


def test_a_paced_update_is_bit_identical_to_the_reference():
    # whatever the pacer chooses call by call (serial or parallel), the numbers are the
    # reference's
    rng = np.random.default_rng(3)
    p = rng.standard_normal(BIG).astype(np.float32)
    q = p.copy()
    fast, ref = fo.Adam(lr=1e-2), fo.Adam(lr=1e-2, backend="numpy")
    for _ in range(12):
        g = rng.standard_normal(BIG).astype(np.float32)
        fast.update([p], [g])
        ref.update([q], [g])
    assert np.array_equal(p, q)


# -- the knob and what get_config says ------------------------------------------------------

DISPLAY_ENV = """
    import ctypes, json, sys
    import fastoptim as fo
    from fastoptim import _threading
    cfg = fo.get_config()
    new = _threading._start["new"]
    if new:     # what the runtime itself says it read (OpenMP 5.0 omp_display_env)
        sys.stderr.flush()
        ctypes.CDLL(new[0]).omp_display_env(1)
    print(json.dumps({k: cfg[k] for k in ("threading", "wait", "wait_applied",
                                          "wait_note")}))
    print(json.dumps({k: k in __import__("os").environ
                      for k in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "KMP_BLOCKTIME")}))
"""


def _config_in(env):
    out, err = run(DISPLAY_ENV, env)
    lines = out.strip().splitlines()
    return json.loads(lines[-2]), json.loads(lines[-1]), err


needs_gomp = pytest.mark.skipif(
    not _kernels.openmp_enabled() or _kernels.build_info()["compiler"] != "gcc",
    reason="checks what GNU libgomp read")


@needs_gomp
@pytest.mark.parametrize("policy, expect", [
    (None, ("adaptive", "GOMP_SPINCOUNT = '40000'")),
    ("adaptive", ("adaptive", "GOMP_SPINCOUNT = '40000'")),
    ("spin", ("spin", "OMP_WAIT_POLICY = 'ACTIVE'")),
    ("yield", ("yield", "OMP_WAIT_POLICY = 'PASSIVE'")),
])
def test_the_policy_reaches_fastoptims_openmp_runtime(policy, expect):
    cfg, leaked, err = _config_in({} if policy is None else {"FASTOPTIM_THREADING": policy})
    assert cfg["threading"] == expect[0]
    assert cfg["wait_applied"] is True and cfg["wait_note"] == ""
    assert expect[1] in err, err
    assert not any(leaked.values()), "fastoptim left its wait setting in os.environ"


@needs_gomp
def test_the_users_own_wait_setting_wins():
    cfg, leaked, err = _config_in({"OMP_WAIT_POLICY": "passive"})
    assert cfg["wait"] == "OMP_WAIT_POLICY=passive (set by the user)"
    assert "GOMP_SPINCOUNT = '40000'" not in err
    assert leaked["OMP_WAIT_POLICY"]      # the user's own variable is left alone


def test_an_unknown_policy_warns_and_is_adaptive():
    out, err = run("""
        import fastoptim as fo
        print(fo.get_config()["threading"])
    """, {"FASTOPTIM_THREADING": "turbo"})
    assert out.strip() == "adaptive"
    assert "FASTOPTIM_THREADING must be one of" in err and "'turbo'" in err


@needs_gomp
def test_a_runtime_loaded_before_fastoptim_is_reported():
    out, _ = run("""
        import fastoptim
        from fastoptim import _threading
        print(_threading._start["new"][0])
    """)
    runtime = out.strip()
    # (without the preload, the same code reports the setting applied: see above)
    out, _ = run(f"""
        import ctypes, json
        ctypes.CDLL({runtime!r})
        import fastoptim as fo
        cfg = fo.get_config()
        print(json.dumps([cfg["wait_applied"], cfg["wait_note"]]))
    """)
    applied, note = json.loads(out.strip().splitlines()[-1])
    assert applied is False
    assert "loaded before fastoptim" in note and runtime in note
