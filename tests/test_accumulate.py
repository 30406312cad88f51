"""Gradient accumulation (``fastoptim.Accumulate``): bit-identical to the optimizer run on
the means its documented arithmetic makes; optax's MultiSteps semantics; every call
checked before anything is written; NaN, skip_nonfinite, state_dicts, schedules."""

import ast
import os
import re

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import accumulate, schedules

from conftest import HYPER, OPTIMIZERS, assert_same

SHAPES = {"W": (4, 5), "F": (3, 6), "b": (7,)}  # "F" is made Fortran-ordered


def make_params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    out = {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}
    out["F"] = np.asfortranarray(out["F"])
    return out


def make_grads(dtype, n, seed=1):
    rng = np.random.default_rng(seed)
    return [{k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}
            for _ in range(n)]


def means_of(chunk):
    """The documented arithmetic, in NumPy: copy, add in call order, divide once."""
    k = len(chunk)
    out = {}
    for key in chunk[0]:
        m = chunk[0][key].copy()
        for g in chunk[1:]:
            np.add(m, g[key], out=m)
        np.divide(m, k, out=m)
        out[key] = m
    return out


def as_kind(d, kind):
    return d if kind == "dict" else [d[k] for k in SHAPES]


def snapshot(acc, params):
    """Copies of the parameters and of the wrapper's whole state_dict."""
    ps = {k: np.array(v, copy=True) for k, v in dict(params).items()}
    return ps, acc.state_dict()


def assert_tree_same(a, b):
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray)
        assert_same(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            assert_tree_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_tree_same(x, y)
    else:
        assert a == b


# ---------------------------------------------------------------------------------------
# The arithmetic
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["dict", "list"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_equals_the_optimizer_on_the_means(cls, k, dtype, kind):
    cycles = 3
    grads = make_grads(dtype, k * cycles)
    params = make_params(dtype)
    ref_params = make_params(dtype)
    acc = fo.Accumulate(cls(**HYPER[cls]), steps=k)
    ref = cls(**HYPER[cls])
    for c in range(cycles):
        chunk = grads[c * k:(c + 1) * k]
        for i, g in enumerate(chunk):
            before = {key: v.copy() for key, v in params.items()}
            stepped = acc.update(as_kind(params, kind), as_kind(g, kind))
            assert stepped is (i == k - 1)
            assert acc.count == (i + 1) % k
            if not stepped:  # accumulating calls write no parameter
                for key in params:
                    assert_same(params[key], before[key])
        assert ref.update(as_kind(ref_params, kind), as_kind(means_of(chunk), kind))
        for key in params:
            assert_same(params[key], ref_params[key])
    assert_tree_same(acc.optimizer.state_dict(), ref.state_dict())
    assert params["F"].flags.f_contiguous  # updated in place, in its layout


def _never_computed(monkeypatch):
    """Make the NumPy means fail: the stepping call must take the fused path."""
    def refuse(self, like=None):
        raise AssertionError("the means were computed in NumPy, not in the fused pass")
    monkeypatch.setattr(accumulate._Mean, "computed", refuse)


@pytest.mark.parametrize("num_threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_the_stepping_call_is_fused(cls, dtype, num_threads, monkeypatch, target):
    """The compiled engine makes the means inside the optimizer's pass once the optimizer
    has state (the accumulators are read, not written: they still hold the first k-1
    sums), on every CPU target and
    at any thread count (9000 and 5000 elements: several blocks, split between threads),
    bit-identical to the optimizer on the means -- with ema too, and LAMB's two phases."""
    _kernels = fo._dispatch.kernels
    old = _kernels.set_parallel_thresholds(light=0, heavy=0)
    try:
        rng = np.random.default_rng(4)
        p = {"a": rng.standard_normal(9000).astype(dtype),
             "b": np.asfortranarray(rng.standard_normal((50, 100)).astype(dtype))}
        q = {k: v.copy(order="K") for k, v in p.items()}
        extra = {} if cls is fo.ScheduleFreeAdamW else {"ema": 0.9}
        acc = fo.Accumulate(cls(**HYPER[cls], **extra, num_threads=num_threads), steps=3)
        ref = cls(**HYPER[cls], **extra)
        for cycle in range(3):
            if cycle == 1:  # the first made the state (the Python path): fused from now
                _never_computed(monkeypatch)
            gs = [{k: np.array(rng.standard_normal(v.shape), dtype, order="K" if k == "a"
                               else "F") for k, v in p.items()} for _ in range(3)]
            for g in gs:
                acc.update(p, g)
            ref.update(q, means_of(gs))
            for k in p:  # fused: the accumulators still hold the first two's sum
                if cycle:
                    assert_same(acc._acc[k], np.add(gs[0][k], gs[1][k]))
        for k in p:
            assert_same(p[k], q[k])
        assert_tree_same(acc.optimizer.state_dict(), ref.state_dict())
    finally:
        _kernels.set_parallel_thresholds(**old)


@pytest.mark.parametrize("how", ["numpy backend", "skip_nonfinite", "strided gradient",
                                 "gradient is its parameter"])
def test_the_other_paths_compute_the_means_first(how, monkeypatch):
    """Where the fast path cannot fuse the mean, the means are made in NumPy (into the
    accumulators) and the optimizer runs on them: the same bits."""
    rng = np.random.default_rng(6)
    p, q = {"w": rng.standard_normal(300)}, None
    q = {"w": p["w"].copy()}
    opt_kw = {"backend": "numpy"} if how == "numpy backend" else (
        {"skip_nonfinite": True} if how == "skip_nonfinite" else {})
    acc, ref = fo.Accumulate(fo.Adam(lr=0.01, **opt_kw), steps=2), fo.Adam(lr=0.01)
    calls = []
    real = accumulate._Mean.computed

    def counted(self, like=None):
        calls.append(how)
        return real(self, like)
    monkeypatch.setattr(accumulate._Mean, "computed", counted)
    g1 = rng.standard_normal(300)
    if how == "strided gradient":
        g2 = rng.standard_normal(600)[::2]
    elif how == "gradient is its parameter":
        g2 = p["w"]
    else:
        g2 = rng.standard_normal(300)
    expected = means_of([{"w": g1}, {"w": np.array(g2)}])
    acc.update(p, {"w": g1})
    assert acc.update(p, {"w": g2})
    ref.update(q, expected)
    assert calls == [how]
    assert_same(p["w"], q["w"])


@pytest.mark.parametrize("backend", ["compiled", "numpy"])
@pytest.mark.parametrize("cls", [fo.AdamW, fo.ScheduleFreeAdamW], ids=lambda c: c.__name__)
def test_groups_and_backends(cls, backend):
    k, dtype = 4, np.float32
    params, ref_params = make_params(dtype), make_params(dtype)
    groups = [fo.groups.no_decay_1d(lr=0.003), {"params": [params["W"]], "lr": 0.02}]
    ref_groups = [fo.groups.no_decay_1d(lr=0.003), {"params": [ref_params["W"]], "lr": 0.02}]
    acc = fo.Accumulate(cls(**HYPER[cls], groups=groups, backend=backend), steps=k)
    ref = cls(**HYPER[cls], groups=ref_groups, backend=backend)
    grads = make_grads(dtype, 2 * k)
    for c in range(2):
        chunk = grads[c * k:(c + 1) * k]
        for g in chunk:
            acc.update(params, g)
        ref.update(ref_params, means_of(chunk))
    for key in params:
        assert_same(params[key], ref_params[key])
    assert_tree_same(acc.optimizer.state_dict(), ref.state_dict())
    assert acc.optimizer.state["W"]["group"] == 2  # the "params" group: by identity


def test_sgd_steps_with_the_mean_as_optax_multisteps():
    # optax.MultiSteps(sgd(lr), every_k_schedule=2): p - lr * (g1 + g2) / 2 every 2 calls
    lr = 0.1
    rng = np.random.default_rng(5)
    p0 = rng.standard_normal(10)
    g = [rng.standard_normal(10) for _ in range(4)]
    w = p0.copy()
    acc = fo.Accumulate(fo.SGD(lr=lr), steps=2)
    assert acc.update([w], [g[0]]) is False
    np.testing.assert_array_equal(w, p0)
    assert acc.update([w], [g[1]]) is True
    p1 = p0 - lr * (g[0] + g[1]) / 2
    np.testing.assert_allclose(w, p1, rtol=1e-15, atol=1e-16)
    acc.update([w], [g[2]])
    acc.update([w], [g[3]])
    np.testing.assert_allclose(w, p1 - lr * (g[2] + g[3]) / 2, rtol=1e-15, atol=1e-16)
    # and not the sum: a step of lr*(g1+g2) would be this far off
    assert np.abs(p1 - (p0 - lr * (g[0] + g[1]))).max() > 1e-3


def test_steps_1_is_the_optimizer_itself():
    grads = make_grads(np.float64, 3)
    params, ref_params = make_params(np.float64), make_params(np.float64)
    acc, ref = fo.Accumulate(fo.Adam(lr=0.01), steps=1), fo.Adam(lr=0.01)
    for g in grads:
        assert acc.update(params, g) is True
        ref.update(ref_params, g)
    for key in params:
        assert_same(params[key], ref_params[key])
    assert acc.state_dict()["accumulators"] == {} and acc.count == 0


def test_single_array_tuple_and_numbers():
    # one array each
    w, w_ref = np.arange(4.0), np.arange(4.0)
    acc, ref = fo.Accumulate(fo.Momentum(lr=0.1), steps=2), fo.Momentum(lr=0.1)
    gs = [np.full(4, 0.5), np.array([1.0, -1.0, 2.0, 0.0])]
    for g in gs:
        acc.update(w, g)
    ref.update(w_ref, means_of([{0: g} for g in gs])[0])
    assert_same(w, w_ref)
    # a tuple of arrays
    t, t_ref = (np.ones(3, np.float32),), (np.ones(3, np.float32),)
    acc = fo.Accumulate(fo.Lion(lr=0.1), steps=3)
    gs = [np.array([1, -2, 3], np.float32), np.array([-4, 1, 0], np.float32),
          np.array([2, 2, -2], np.float32)]
    for g in gs:
        acc.update(t, (g,))
    fo.Lion(lr=0.1).update(t_ref, (means_of([{0: g} for g in gs])[0],))
    assert_same(t[0], t_ref[0])


def test_torch_tensors():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    p0 = rng.standard_normal((3, 4)).astype(np.float32)
    gs = [rng.standard_normal((3, 4)).astype(np.float32) for _ in range(3)]
    t = torch.from_numpy(p0.copy())
    acc = fo.Accumulate(fo.Adam(lr=0.1), steps=3)
    for g in gs:
        acc.update([t], [torch.from_numpy(g)])
    ref = p0.copy()
    fo.Adam(lr=0.1).update([ref], [means_of([{0: g} for g in gs])[0]])
    assert_same(t.numpy(), ref)  # the tensor's own memory, updated in place


@pytest.mark.parametrize("number", [float, np.float32])
def test_numbers_in_a_params_dict(number):
    start = {"x": number(-7.0), "y": number(2.0)}
    params, ref_params = dict(start), dict(start)
    acc, ref = fo.Accumulate(fo.Adam(lr=0.5), steps=2), fo.Adam(lr=0.5)
    grads = [{"x": number(1.5), "y": number(-0.25)}, {"x": number(0.5), "y": number(3.0)}]
    assert acc.update(params, grads[0]) is False
    assert params == start  # not rebound yet
    assert acc.update(params, grads[1]) is True
    dt = np.float64 if number is float else np.float32
    chunk = [{k: np.array(v, dtype=dt) for k, v in g.items()} for g in grads]
    ref.update(ref_params, means_of(chunk))
    for key in params:
        assert type(params[key]) is number
        assert params[key] == ref_params[key] and params[key] != start[key]


def test_numbers_in_a_tuple_are_refused_as_update_refuses_them():
    with pytest.raises(TypeError) as direct:
        fo.SGD().update((1.0,), (0.5,))
    acc = fo.Accumulate(fo.SGD(), steps=2)
    with pytest.raises(TypeError, match=re.escape(str(direct.value))):
        acc.update((1.0,), (0.5,))
    assert acc.count == 0


def test_accumulators_are_one_buffer_per_parameter_kept_across_cycles():
    params = make_params(np.float32)
    acc = fo.Accumulate(fo.SGD(lr=0.01), steps=2)
    grads = make_grads(np.float32, 4)
    acc.update(params, grads[0])
    bufs = dict(acc._acc)
    assert bufs["F"].flags.f_contiguous and bufs["W"].flags.c_contiguous
    for g in grads[1:]:
        acc.update(params, g)
    assert all(acc._acc[k] is bufs[k] for k in SHAPES)  # no new allocation per cycle
    acc.reset()
    assert acc._acc == {} and acc.count == 0


# ---------------------------------------------------------------------------------------
# Checks: nothing written on error
# ---------------------------------------------------------------------------------------

def _bad_cases(dtype):
    """(name, bad param, bad grad) for parameter 'b' -- the last key, so that the
    others would have been written already by a wrapper that checks as it goes."""
    ok_b = np.zeros(7, dtype)
    ro = np.zeros(7, dtype)
    ro.flags.writeable = False
    return [
        ("grad dtype", ok_b, np.zeros(7, np.float16)),
        ("grad shape", ok_b, np.zeros(8, dtype)),
        ("grad type", ok_b, [0.0] * 7),
        ("param dtype", np.zeros(7, np.int32), np.zeros(7, dtype)),
        ("param read-only", ro, np.zeros(7, dtype)),
        ("param strided", np.zeros(14, dtype)[::2], np.zeros(7, dtype)),
        ("param list", [0.0] * 7, np.zeros(7, dtype)),
    ]


@pytest.mark.parametrize("position", [0, 1, 2])  # first, middle and last call of 3
@pytest.mark.parametrize("case", range(7))
def test_bad_call_raises_the_update_error_and_changes_nothing(case, position):
    dtype, k = np.float32, 3
    name, bad_p, bad_g = _bad_cases(dtype)[case]
    params = make_params(dtype)
    grads = make_grads(dtype, 2 * k)
    acc = fo.Accumulate(fo.Adam(lr=0.01), steps=k)
    for g in grads[:k + position]:  # one full cycle, then `position` calls
        acc.update(params, g)
    before = snapshot(acc, params)
    bad_params = {**params, "b": bad_p}
    bad_grads = {**grads[k + position], "b": bad_g}
    # the error Optimizer.update gives for this call, on a copy
    direct = fo.Adam(lr=0.01)
    direct.load_state_dict(acc.optimizer.state_dict())
    with pytest.raises((TypeError, ValueError)) as expected:
        direct.update({k_: (v.copy() if k_ != "b" else v) for k_, v in bad_params.items()},
                      bad_grads)
    with pytest.raises(type(expected.value), match=re.escape(str(expected.value))):
        acc.update(bad_params, bad_grads)
    assert "'b'" in str(expected.value), name
    after = snapshot(acc, params)
    assert_tree_same(after, before)
    # and the cycle goes on as if the bad call had not been made
    ref_params, ref = make_params(dtype), fo.Accumulate(fo.Adam(lr=0.01), steps=k)
    for g in grads:
        ref.update(ref_params, g)
    for g in grads[k + position:]:
        acc.update(params, g)
    for key in params:
        assert_same(params[key], ref_params[key])


def test_keys_and_kinds_errors_are_update_s():
    acc = fo.Accumulate(fo.SGD(), steps=2)
    p = {"a": np.zeros(2), "b": np.zeros(2)}
    with pytest.raises(ValueError, match="no gradient for parameter.*'b'"):
        acc.update(p, {"a": np.zeros(2)})
    with pytest.raises(TypeError, match="grads must be a dict"):
        acc.update(p, [np.zeros(2), np.zeros(2)])
    with pytest.raises(ValueError, match="params has 2 arrays but grads has 1"):
        acc.update([np.zeros(2), np.zeros(2)], [np.zeros(2)])
    assert acc.count == 0 and acc._acc == {}


@pytest.mark.parametrize("position", [1, 3])  # a middle and the last call of 4
def test_other_parameters_than_the_cycle_s_are_refused(position):
    k = 4
    params = make_params(np.float64)
    grads = make_grads(np.float64, k)
    acc = fo.Accumulate(fo.RMSprop(lr=0.01), steps=k)
    for g in grads[:position]:
        acc.update(params, g)
    before = snapshot(acc, params)
    fewer = {key: v for key, v in params.items() if key != "b"}
    with pytest.raises(ValueError, match=r"missing 'b'.*finish it\), or call acc.reset"):
        acc.update(fewer, {key: grads[position][key] for key in fewer})
    with pytest.raises(ValueError, match=r"new 'c'"):
        acc.update({**params, "c": np.zeros(1)}, {**grads[position], "c": np.zeros(1)})
    other = {**params, "b": np.zeros(8)}
    with pytest.raises(ValueError, match=r"parameter 'b' has shape \(8,\).*had shape \(7,\)"):
        acc.update(other, {**grads[position], "b": np.zeros(8)})
    as32 = {key: v.astype(np.float32) for key, v in params.items()}
    with pytest.raises(ValueError, match=r"dtype float32.*dtype float64"):
        acc.update(as32, {key: v.astype(np.float32) for key, v in grads[position].items()})
    assert_tree_same(snapshot(acc, params), before)
    # reset() discards the cycle: the next call starts one with the new parameters
    acc.reset()
    assert acc.update(fewer, {key: grads[0][key] for key in fewer}) is False
    assert acc.count == 1


def test_parameters_that_no_longer_fit_the_optimizer_state_are_refused_at_once():
    w = {"w": np.ones(3)}
    acc = fo.Accumulate(fo.Adam(), steps=2)
    acc.update(w, {"w": np.ones(3)})
    acc.update(w, {"w": np.ones(3)})  # the optimizer has state of shape (3,)
    with pytest.raises(ValueError, match="optimizer state 'exp_avg' of parameter 'w'"):
        acc.update({"w": np.ones(4)}, {"w": np.ones(4)})  # the first call of a cycle
    assert acc.count == 0


def test_schedule_free_eval_mode_is_refused_on_every_call():
    params = make_params(np.float64)
    grads = make_grads(np.float64, 3)
    acc = fo.Accumulate(fo.ScheduleFreeAdamW(lr=0.01), steps=2)
    acc.update(params, grads[0])
    acc.update(params, grads[1])
    acc.update(params, grads[2])
    before = acc.state_dict()
    acc.optimizer.eval(params)
    with pytest.raises(RuntimeError, match="eval mode.*train"):
        acc.update(params, grads[0])  # the cycle's last call: nothing added or divided
    assert_tree_same(acc.state_dict()["accumulators"], before["accumulators"])
    assert acc.count == 1


def test_a_refusal_only_the_optimizer_finds_discards_the_cycle():
    def where(key, p):
        raise LookupError(f"no group for {key}")
    w = np.ones(3)
    acc = fo.Accumulate(fo.SGD(groups=[{"where": where, "lr": 0.1}]), steps=2)
    assert acc.update([w], [np.ones(3)]) is False
    with pytest.raises(LookupError, match="no group for 0"):
        acc.update([w], [np.ones(3)])
    assert acc.count == 0 and acc.state_dict()["accumulators"] == {}
    assert_same(w, np.ones(3))


def test_steps_and_optimizer_are_checked():
    for bad in (0, -2):
        with pytest.raises(ValueError, match="Invalid steps"):
            fo.Accumulate(fo.SGD(), steps=bad)
    for bad in (True, 2.0, "2", None):
        with pytest.raises(TypeError, match="steps must be an int >= 1"):
            fo.Accumulate(fo.SGD(), steps=bad)
    assert fo.Accumulate(fo.SGD(), steps=np.int64(3)).steps == 3
    with pytest.raises(TypeError, match="optimizer must be a fastoptim optimizer"):
        fo.Accumulate("adam", steps=2)
    with pytest.raises(TypeError, match="wrap the optimizer once with steps=a\\*b"):
        fo.Accumulate(fo.Accumulate(fo.SGD(), steps=2), steps=2)
    acc = fo.Accumulate(fo.book.Adam(), steps=2)  # the book's classes too
    assert repr(acc) == f"Accumulate({acc.optimizer!r}, steps=2)"
    grads = [np.full(3, 0.5), np.full(3, 1.5)]
    w, w_ref = np.ones(3), np.ones(3)
    for g in grads:
        acc.update([w], [g])
    fo.book.Adam().update([w_ref], [means_of([{0: g} for g in grads])[0]])
    assert_same(w, w_ref)


# ---------------------------------------------------------------------------------------
# Non-finite gradients
# ---------------------------------------------------------------------------------------

def test_nan_in_nan_out():
    w = np.zeros(3)
    acc = fo.Accumulate(fo.Adam(lr=0.1), steps=2)
    acc.update([w], [np.array([np.nan, 1.0, 1.0])])
    assert acc.update([w], [np.array([1.0, np.inf, 1.0])]) is True
    assert np.isnan(w[0]) and not np.isfinite(w[1]) and np.isfinite(w[2]) and w[2] != 0


def test_skip_nonfinite_skips_the_step_and_ends_the_cycle():
    params, ref_params = make_params(np.float32), make_params(np.float32)
    grads = make_grads(np.float32, 4)
    grads[1]["W"][2, 3] = np.nan
    acc = fo.Accumulate(fo.AdamW(lr=0.01, skip_nonfinite=True), steps=2)
    before = snapshot(acc, params)[0]
    assert acc.update(params, grads[0]) is False
    assert acc.update(params, grads[1]) is False  # the mean holds NaN: skipped
    assert acc.count == 0 and acc.optimizer.skipped_steps == 1
    assert acc.optimizer.state == {}
    for key in params:
        assert_same(params[key], before[key])
    acc.update(params, grads[2])
    assert acc.update(params, grads[3]) is True
    fo.AdamW(lr=0.01).update(ref_params, means_of(grads[2:]))
    for key in params:
        assert_same(params[key], ref_params[key])


# ---------------------------------------------------------------------------------------
# state_dict, checkpoints
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("stop", [3, 4, 5, 6])  # mid-cycle and at cycle boundaries
@pytest.mark.parametrize("cls", [fo.Adam, fo.ScheduleFreeAdamW, fo.AdaGrad],
                         ids=lambda c: c.__name__)
def test_resuming_from_a_state_dict_is_bit_identical(cls, stop):
    k, n = 3, 10
    grads = make_grads(np.float32, n)
    params = make_params(np.float32)
    acc = fo.Accumulate(cls(**HYPER[cls]), steps=k)
    for g in grads:
        acc.update(params, g)
    resumed = make_params(np.float32)
    first = fo.Accumulate(cls(**HYPER[cls]), steps=k)
    for g in grads[:stop]:
        first.update(resumed, g)
    sd = first.state_dict()
    assert sd["count"] == stop % k and len(sd["accumulators"]) == (3 if stop % k else 0)
    at_stop = {key: v.copy(order="K") for key, v in resumed.items()}
    sd_copy = snapshot(first, resumed)[1]
    first.update(resumed, grads[stop])  # later calls do not change the state_dict
    assert_tree_same(sd, sd_copy)
    resumed = at_stop
    second = fo.Accumulate(cls(**HYPER[cls]), steps=k)
    second.load_state_dict(sd)
    assert second.count == stop % k
    for g in grads[stop:]:
        second.update(resumed, g)
    for key in params:
        assert_same(resumed[key], params[key])
    assert_tree_same(second.state_dict(), acc.state_dict())


def test_bad_state_dicts_change_nothing():
    params = make_params(np.float64)
    grads = make_grads(np.float64, 2)
    acc = fo.Accumulate(fo.Adam(), steps=3)
    for g in grads:
        acc.update(params, g)
    good = acc.state_dict()
    before = acc.state_dict()
    bad = [
        ({**good, "steps": 4}, "steps=4"),
        ({**good, "steps": 3.0}, "steps=3.0"),
        ({**good, "count": 3}, "count must be"),
        ({**good, "count": -1}, "count must be"),
        ({**good, "count": True}, "count must be"),
        ({**good, "count": 0}, "empty when count is 0"),
        ({**good, "wrapper": "MultiSteps"}, "belongs to 'MultiSteps'"),
        ({k: v for k, v in good.items() if k != "count"}, "must be a dict with the keys"),
        (good["optimizer"], "must be a dict with the keys"),
        ({**good, "accumulators": {"W": [1.0]}}, "float32 or float64 array"),
        ({**good, "optimizer": fo.SGD().state_dict()}, "belongs to a SGD optimizer"),
    ]
    for sd, match in bad:
        with pytest.raises((TypeError, ValueError), match=re.escape(match)):
            acc.load_state_dict(sd)
        assert_tree_same(acc.state_dict(), before)


def test_checkpoint_of_the_optimizer_at_a_cycle_boundary(tmp_path):
    # fo.save takes optimizers: save acc.optimizer between cycles (count == 0)
    k = 2
    grads = make_grads(np.float32, 6)
    params, resumed = make_params(np.float32), make_params(np.float32)
    acc = fo.Accumulate(fo.NAdam(lr=0.01), steps=k)
    for g in grads:
        acc.update(params, g)
    first = fo.Accumulate(fo.NAdam(lr=0.01), steps=k)
    for g in grads[:4]:
        first.update(resumed, g)
    with pytest.raises(TypeError, match="save expects a fastoptim optimizer"):
        fo.save(first, os.path.join(tmp_path, "acc.ckpt"))
    assert first.count == 0
    path = os.path.join(tmp_path, "opt.ckpt")
    fo.save(first.optimizer, path)
    second = fo.Accumulate(fo.load(path), steps=k)
    for g in grads[4:]:
        second.update(resumed, g)
    for key in params:
        assert_same(resumed[key], params[key])


# ---------------------------------------------------------------------------------------
# Attributes and schedules
# ---------------------------------------------------------------------------------------

def test_hyperparameters_through_the_wrapper():
    acc = fo.Accumulate(fo.Adam(lr=0.01), steps=2)
    assert acc.lr == 0.01 and acc.betas == acc.optimizer.betas
    acc.lr = 0.5
    assert acc.optimizer.lr == 0.5
    with pytest.raises(ValueError, match="Invalid lr"):
        acc.lr = -1.0
    assert acc.optimizer.lr == 0.5
    acc.skip_nonfinite = True
    assert acc.optimizer.skip_nonfinite is True
    with pytest.raises(AttributeError, match="no setting 'lrr'"):
        acc.lrr = 0.1
    with pytest.raises(AttributeError, match="cannot be set"):
        acc.steps = 3
    with pytest.raises(AttributeError):
        _ = acc.no_such_attribute
    assert "lrr" not in vars(acc) and "lrr" not in vars(acc.optimizer)


@pytest.mark.parametrize("on_wrapper", [False, True])
def test_a_schedule_steps_per_optimizer_step(on_wrapper):
    k, real_steps = 3, 5
    grads = make_grads(np.float64, k * real_steps)
    params, ref_params = make_params(np.float64), make_params(np.float64)
    own = [{"keys": ["b"], "lr": 0.02}]
    acc = fo.Accumulate(fo.Momentum(lr=0.1, groups=own), steps=k)
    ref = fo.Momentum(lr=0.1, groups=own)
    sched = schedules.StepLR(acc if on_wrapper else acc.optimizer, step_size=2, gamma=0.5)
    ref_sched = schedules.StepLR(ref, step_size=2, gamma=0.5)
    lrs = []
    for c in range(real_steps):
        chunk = grads[c * k:(c + 1) * k]
        for g in chunk:
            if acc.update(params, g):
                sched.step()
        ref.update(ref_params, means_of(chunk))
        ref_sched.step()
        lrs.append((acc.optimizer.lr, acc.optimizer.param_groups[1].lr))
        assert lrs[-1] == (ref.lr, ref.param_groups[1].lr)
    assert lrs[-1] == (0.1 * 0.5 ** 2, 0.02 * 0.5 ** 2)
    for key in params:
        assert_same(params[key], ref_params[key])


def test_lower_layers_do_not_import_the_wrapper():
    src = os.path.dirname(fo.__file__)
    for name in os.listdir(src):
        if name.endswith(".py") and name not in ("accumulate.py", "__init__.py"):
            with open(os.path.join(src, name), encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    names = [node.module or ""] + [a.name for a in node.names]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                else:
                    continue
                assert not any("accumulate" in n for n in names), name
