"""LAMB's two-phase engine (rules with a trust ratio): compiled kernels == NumPy
reference, bit for bit, for arrays around the 4096-element chunk boundaries, many arrays
per call, any thread count and every CPU target; the reference's sum of squares against
the compiled sum it stands for; functional form, groups and maximize."""

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import _clip, reference, rules
from fastoptim import functional as F
from fastoptim._dispatch import kernels as _kernels

from conftest import DTYPES, HYPER, assert_same

CHUNK = reference.SUM_CHUNK
SIZES = [0, 1, 7, 8, 9, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5, 50_001]


def test_the_sum_order_is_one_constant_everywhere():
    assert (reference.SUM_CHUNK, reference.SUM_LANES) == (_kernels.SUM_CHUNK,
                                                          _kernels.SUM_LANES)
    assert (reference.SUM_CHUNK, reference.SUM_LANES) == (_clip.CHUNK, _clip.LANES)
    assert rules.get("lamb").trust_ratio and not rules.get("adam").trust_ratio


@pytest.mark.parametrize("dtype", DTYPES)
def test_reference_sum_of_squares_is_the_compiled_sum(dtype):
    """reference.sum_of_squares adds in the compiled order: against the compiled global
    norm's sum (fastoptim.clip), bit for bit, and not np.sum's pairwise order."""
    rng = np.random.default_rng(0)
    differs = False
    for n in SIZES:
        scale = 10.0 ** rng.integers(-3, 4, n) if n < CHUNK else 1.0  # and wide ranges
        x = (rng.standard_normal(n) * scale).astype(dtype)
        ours = reference.sum_of_squares([x])
        assert ours == _clip.sum_of_squares([x], num_threads=1)
        assert ours == _clip.sum_of_squares([x], num_threads=2)
        differs |= ours != float(np.sum(x.astype(np.float64) ** 2))
    assert differs  # the order matters at these sizes: the test can tell


def model(rng, dtype):
    return {f"p{n}": rng.standard_normal(n).astype(dtype) for n in SIZES}


def run(dtype, num_threads, steps=5, **hyper):
    rng = np.random.default_rng(3)
    p = model(rng, dtype)
    q = {k: v.copy() for k, v in p.items()}
    kw = {**HYPER[fo.LAMB], **hyper}
    fast, ref = fo.LAMB(**kw, num_threads=num_threads), fo.LAMB(**kw, backend="numpy")
    for _ in range(steps):
        g = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in p.items()}
        fast.update(p, g)
        ref.update(q, g)
    return p, q, fast, ref


def assert_runs_equal(p, q, fast, ref):
    for k in p:
        assert_same(p[k], q[k])
        for n in ("exp_avg", "exp_avg_sq"):
            assert_same(fast.state[k][n], ref.state[k][n])


@pytest.mark.parametrize("num_threads", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_array_size_and_thread_count(dtype, num_threads, parallel_everything):
    p, q, fast, ref = run(dtype, num_threads)
    assert_runs_equal(p, q, fast, ref)
    assert not np.array_equal(p["p50001"], model(np.random.default_rng(3), dtype)["p50001"])


def test_thread_counts_give_the_same_bits(no_serial_threshold):
    results = [run(np.float32, nt)[0] for nt in (1, 2, 3, 4)]
    for other in results[1:]:
        for k in results[0]:
            assert_same(results[0][k], other[k])


@pytest.mark.parametrize("dtype", DTYPES)
def test_mixed_dtypes_and_options_in_one_call(dtype, no_serial_threshold):
    """Both dtypes in one call, with maximize, ema and float64 next to float32: still
    the reference's bits (the ratio per array, each in its dtype)."""
    rng = np.random.default_rng(8)
    p = {"a": rng.standard_normal(9000).astype(dtype), "b": rng.standard_normal(5000),
         "c": rng.standard_normal((70, 70)).astype(np.float32)}
    q = {k: v.copy() for k, v in p.items()}
    kw = dict(HYPER[fo.LAMB], maximize=True, ema=0.9)
    fast, ref = fo.LAMB(**kw, num_threads=2), fo.LAMB(**kw, backend="numpy")
    for _ in range(4):
        g = {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in p.items()}
        fast.update(p, g)
        ref.update(q, g)
    for k in p:
        assert_same(p[k], q[k])
        assert_same(fast.state[k]["ema"], ref.state[k]["ema"])


def test_maximize_is_the_rule_on_minus_g():
    rng = np.random.default_rng(7)
    p0 = rng.standard_normal(9001)
    grads = [rng.standard_normal(9001) for _ in range(4)]
    out = []
    for maximize, sign in ((True, 1), (False, -1)):
        p = p0.copy()
        opt = fo.LAMB(**HYPER[fo.LAMB], maximize=maximize)
        for g in grads:
            opt.update([p], [sign * g])
        out.append(p)
    assert_same(out[0], out[1])


@pytest.mark.parametrize("backend", ["compiled", "numpy"])
def test_functional_matches_the_class(backend):
    rng = np.random.default_rng(4)
    p_cls = {"w": rng.standard_normal(10_000)}
    p_fun = p_cls["w"].copy()
    m, v = np.zeros_like(p_fun), np.zeros_like(p_fun)
    opt = fo.LAMB(**HYPER[fo.LAMB], backend=backend)
    for step in range(1, 6):
        g = rng.standard_normal(10_000)
        opt.update(p_cls, {"w": g})
        F.lamb(p_fun, g, m, v, step=step, **HYPER[fo.LAMB], backend=backend)
    assert_same(p_cls["w"], p_fun)
    assert_same(opt.state["w"]["exp_avg"], m)


def test_groups_are_one_optimizer_per_group():
    """Per-group lr and weight decay in one call: each array as with its group's own
    optimizer (the ratio stays per array)."""
    rng = np.random.default_rng(6)
    p = {"w": rng.standard_normal((60, 80)), "b": rng.standard_normal(80)}
    q = {k: v.copy() for k, v in p.items()}
    opt = fo.LAMB(lr=0.02, weight_decay=0.01, groups=[fo.groups.no_decay_1d(lr=0.05)])
    solo = {"w": fo.LAMB(lr=0.02, weight_decay=0.01),
            "b": fo.LAMB(lr=0.05, weight_decay=0.0)}
    for _ in range(4):
        g = {k: rng.standard_normal(v.shape) for k, v in p.items()}
        opt.update(p, g)
        for k in q:
            solo[k].update({k: q[k]}, {k: g[k]})
    for k in p:
        assert_same(p[k], q[k])
