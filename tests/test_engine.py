"""The multi-array engine (one pass over every array of an update call) and the CPU
targets: bit-identical to the reference for every target this machine runs, for any
thread count, across array boundaries, mixed dtypes and steps, aliasing, and arrays that
change between calls."""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import _dispatch, rules

from conftest import assert_same

TARGETS = _dispatch.supported()


@pytest.mark.parametrize("num_threads", [1, 2])
def test_tied_parameters_are_updated_in_order(num_threads, parallel_everything):
    """The same array under two keys (tied weights) is updated twice, in key order, as
    by the reference: shared memory between parameters makes the call run serially."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal(5000)
    w_ref = w.copy()
    other, other_ref = rng.standard_normal(5000), None
    other_ref = other.copy()
    g1, g2, g3 = (rng.standard_normal(5000) for _ in range(3))
    fo.Momentum(lr=0.1, num_threads=num_threads).update(
        {"enc": w, "x": other, "dec": w}, {"enc": g1, "x": g2, "dec": g3})
    fo.Momentum(lr=0.1, backend="numpy").update(
        {"enc": w_ref, "x": other_ref, "dec": w_ref}, {"enc": g1, "x": g2, "dec": g3})
    assert_same(w, w_ref)
    assert_same(other, other_ref)


def test_gradient_sharing_memory_with_another_parameter(parallel_everything):
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal(3000), rng.standard_normal(3000)
    a2, b2 = a.copy(), b.copy()
    # b's gradient is the parameter a, which this call updates first
    fo.SGD(lr=0.5, num_threads=2).update({"a": a, "b": b}, {"a": np.ones(3000), "b": a})
    fo.SGD(lr=0.5, backend="numpy").update({"a": a2, "b": b2}, {"a": np.ones(3000), "b": a2})
    assert_same(a, a2)
    assert_same(b, b2)


def test_arrays_that_change_between_calls(parallel_everything):
    """Nothing is cached that could go stale: swapped, reshaped, re-flagged arrays."""
    rng = np.random.default_rng(5)
    params = {"a": rng.standard_normal((40, 50)), "b": rng.standard_normal(2000)}
    grads = {k: np.ones_like(v) for k, v in params.items()}
    opt = fo.Adam(num_threads=2)
    opt.update(params, grads)
    # swap in a new array of the same shape: it is the one updated, with the old state
    new_a = params["a"].copy()
    params["a"] = new_a
    before = new_a.copy()
    opt.update(params, grads)
    assert not np.array_equal(new_a, before) and opt.state["a"]["step"] == 2
    # reshape the parameter in place (the same object and memory, a new shape): state no
    # longer fits. ndarray.resize to the same size changes the shape of the array that
    # owns its memory without moving it (setting .shape is deprecated since NumPy 2.5).
    ptr = new_a.ctypes.data
    params["a"].resize((50, 40), refcheck=False)
    assert params["a"] is new_a and new_a.shape == (50, 40) and new_a.ctypes.data == ptr
    with pytest.raises(ValueError, match="state 'exp_avg' of parameter 'a' has shape "
                                         r"\(40, 50\)"):
        opt.update(params, {"a": np.ones((50, 40)), "b": grads["b"]})
    params["a"].resize((40, 50), refcheck=False)
    assert params["a"] is new_a and new_a.shape == (40, 50) and new_a.ctypes.data == ptr
    # make it read-only: refused, nothing changed
    params["b"].flags.writeable = False
    snap = {k: v.copy() for k, v in params.items()}
    with pytest.raises(ValueError, match="parameter 'b' is read-only"):
        opt.update(params, grads)
    for k in params:
        assert_same(params[k], snap[k])
    params["b"].flags.writeable = True
    # view it with another dtype: refused with the dtype error
    params["b"] = params["b"].view(np.float32)
    with pytest.raises(TypeError, match="gradient 'b' has dtype float64 but its "
                                        "parameter is float32"):
        opt.update(params, grads)


def test_overlap_cache_sees_new_aliasing(parallel_everything):
    """The pointer check is cached by the parameters' memory: a call whose parameters
    start sharing memory is detected even after calls that did not."""
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal(4000), rng.standard_normal(4000)
    opt, ref = fo.SGD(lr=0.1, num_threads=2), fo.SGD(lr=0.1, backend="numpy")
    a2, b2 = a.copy(), b.copy()
    for params, rparams in [({"a": a, "b": b}, {"a": a2, "b": b2}),
                            ({"a": a, "b": a}, {"a": a2, "b": a2}),
                            ({"a": a, "b": b}, {"a": a2, "b": b2})]:
        g = {"a": np.ones(4000), "b": np.full(4000, 2.0)}
        opt.update(params, g)
        ref.update(rparams, g)
        assert_same(a, a2)
        assert_same(b, b2)


def test_sequence_and_single_array_forms(target):
    rng = np.random.default_rng(7)
    ps = [rng.standard_normal(10), rng.standard_normal((3, 4))]
    qs = [p.copy() for p in ps]
    gs = (np.ones(10), np.ones((3, 4)))
    fo.Adam().update(ps, gs)           # a list and a tuple
    fo.Adam(backend="numpy").update(tuple(qs), list(gs))
    for p, q in zip(ps, qs):
        assert_same(p, q)
    w, w2 = rng.standard_normal(6), None
    w2 = w.copy()
    fo.Adam().update(w, np.ones(6))   # one array
    fo.Adam(backend="numpy").update(w2, np.ones(6))
    assert_same(w, w2)


def test_every_supported_target_is_reported():
    cfg = fo.get_config()
    assert cfg["cpu_target"] == TARGETS[0]
    assert cfg["cpu_targets"] == TARGETS == _dispatch.supported()
    assert cfg["cpu_targets"][-1] == "baseline"


def test_each_target_reports_its_own_build(target):
    assert target.build_info()["target"] == target.TARGET


@pytest.mark.parametrize("wanted", [*_dispatch.PREFERENCE, "nonsense"])
def test_fastoptim_cpu_override(wanted):
    # What a process started with FASTOPTIM_CPU=wanted runs: wanted if this CPU runs it,
    # else the best below it (anything, for an unknown name).
    expected = _dispatch._under_cap(_dispatch.runnable(),
                                    wanted if wanted in _dispatch.PREFERENCE else None)[0]
    if expected not in TARGETS:
        pytest.skip(f"the child would run {expected}, "
                    f"{_dispatch.unavailable_reason(expected)}")
    code = ("import warnings, fastoptim; warnings.simplefilter('always');"
            "print(fastoptim.get_config()['cpu_target'])")
    out = subprocess.run([sys.executable, "-W", "always", "-c", code],
                         env={**os.environ, "FASTOPTIM_CPU": wanted},
                         capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == expected
    if wanted == expected:
        assert "not available" not in out.stderr
    else:
        why = "unknown target" if wanted == "nonsense" else _dispatch.unavailable_reason(wanted)
        assert f"FASTOPTIM_CPU={wanted!r} is not available on this machine ({why};" \
            in out.stderr


def test_roofline_stream_kernel(target):
    r = np.arange(10, dtype=np.float32)
    a, b, c = (np.ones(10, np.float32) for _ in range(3))
    target.stream(r, a, b, c, num_threads=2)
    for x in (a, b, c):
        assert_same(x, 1 + r)
    with pytest.raises(ValueError, match="a state buffer has 9 elements"):
        target.stream(r, a, np.ones(9, np.float32))
    # four buffers (a variant such as adam_amsgrad: the parameter and three states)
    bufs = [np.ones(10, np.float32) for _ in range(4)]
    target.stream(r, *bufs, num_threads=2)
    for x in bufs:
        assert_same(x, 1 + r)
    with pytest.raises(ValueError, match="give c before d"):
        target.stream(r, a, b, d=c)
    # five (a variant with three state buffers and ema)
    bufs = [np.ones(10, np.float32) for _ in range(5)]
    target.stream(r, *bufs, num_threads=2)
    for x in bufs:
        assert_same(x, 1 + r)
    with pytest.raises(ValueError, match="give d before e"):
        target.stream(r, a, b, c, e=bufs[0])


def test_update_many_refuses_a_kernel_id_past_the_table(target):
    p, g = [np.ones(3)], [np.ones(3)]
    for bad in (len(rules.KERNEL_ROWS), -1, rules.EMA_FLAG | 63):
        with pytest.raises(ValueError, match="no kernel id"):
            target.update_many(bad, p, g, {}, (0.1, 0.0, 1.0), 1, [], [], [])


def test_slot_plan_follows_every_change_of_state(parallel_everything):
    """update_many remembers last call's key -> state pairing by identity; switching
    backend, loading a state_dict, or new and re-laid-out state must all be seen."""
    rng = np.random.default_rng(8)
    base = {"a": rng.standard_normal(50), "b": rng.standard_normal((6, 7))}
    fast = {k: v.copy() for k, v in base.items()}
    ref = {k: v.copy() for k, v in base.items()}
    of, orf = fo.Adam(num_threads=2), fo.Adam(backend="numpy")

    def step(params_f, params_r):
        g = {k: rng.standard_normal(v.shape) for k, v in params_f.items()}
        of.update(params_f, g)
        orf.update(params_r, g)

    step(fast, ref)
    step(fast, ref)
    of.backend = "numpy"                       # the reference path changes slots itself
    fast["c"], ref["c"] = np.ones(9), np.ones(9)
    step(fast, ref)
    of.backend = "compiled"
    step(fast, ref)
    snapshot = orf.state_dict()                # load state between calls
    of.load_state_dict(snapshot)
    step(fast, ref)
    fast["b"] = np.asfortranarray(fast["b"])   # state re-laid out for an F-ordered param
    step(fast, ref)
    for k in base:
        assert_same(np.ascontiguousarray(fast[k]), ref[k])
        assert of.state[k]["step"] == orf.state[k]["step"]
