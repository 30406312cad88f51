"""The non-finite guard (skip_nonfinite=True): one pass over every gradient of a call;
any NaN or Inf skips the whole step -- nothing written, no step counted -- reported by
update()'s return value and the skipped_steps counter."""

import numpy as np
import pytest

import fastoptim as fo

from conftest import HYPER, OPTIMIZERS, assert_same, assert_snapshot_equal, snapshot


def model(rng):
    return {"W": rng.standard_normal((40, 30)).astype(np.float32),
            "b": rng.standard_normal(30).astype(np.float32),
            "V": np.asfortranarray(rng.standard_normal((7, 11))),
            "s": np.array(0.5)}


def grads_like(rng, params):
    return {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in params.items()}


BAD = [("W", (39, 29), np.nan), ("b", (0,), np.inf), ("V", (6, 10), -np.inf),
       ("s", (), np.nan)]


@pytest.mark.parametrize("num_threads", [1, 2, 3])
@pytest.mark.parametrize("low_threshold", [False, True])
@pytest.mark.parametrize("backend", ["compiled", "numpy"])
@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_nonfinite_step_is_skipped_whole(cls, backend, low_threshold, num_threads, target):
    old = target.set_parallel_thresholds(light=0, heavy=0) if low_threshold else None
    try:
        rng = np.random.default_rng(0)
        params = model(rng)
        ref_params = {k: v.copy(order="K") for k, v in params.items()}
        opt = cls(**HYPER[cls], backend=backend, num_threads=num_threads,
                  skip_nonfinite=True)
        ref = cls(**HYPER[cls], backend="numpy")  # never sees the bad steps
        g = grads_like(rng, params)
        assert opt.update(params, g) is True
        ref.update(ref_params, g)
        for key, index, value in BAD:
            bad = grads_like(rng, params)
            bad[key][index] = value
            before = snapshot(opt, params)
            g_before = {k: v.copy() for k, v in bad.items()}
            assert opt.update(params, bad) is False
            assert_snapshot_equal(snapshot(opt, params), before)
            for k in bad:
                assert_same(bad[k], g_before[k])
        assert opt.skipped_steps == len(BAD)
        g = grads_like(rng, params)
        assert opt.update(params, g) is True
        ref.update(ref_params, g)
        for k in params:
            assert_same(params[k], ref_params[k])
            assert opt.state[k]["step"] == ref.state[k]["step"] == 2
        assert opt.skipped_steps == len(BAD)
    finally:
        if old is not None:
            target.set_parallel_thresholds(**old)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("where", [0, 50_000, 100_002])
def test_large_arrays_on_the_parallel_path(dtype, where, target):
    """Above the default thresholds the check itself runs on all threads."""
    rng = np.random.default_rng(1)
    p = {"a": rng.standard_normal(100_003).astype(dtype), "b": np.zeros(7, dtype)}
    g = {"a": rng.standard_normal(100_003).astype(dtype), "b": np.ones(7, dtype)}
    g["a"][where] = np.nan
    opt = fo.Adam(skip_nonfinite=True)
    before = {k: v.copy() for k, v in p.items()}
    assert opt.update(p, g) is False
    for k in p:
        assert_same(p[k], before[k])
    assert opt.state == {}  # no state was created for a skipped first step
    g["a"][where] = 0.0
    assert opt.update(p, g) is True and opt.skipped_steps == 1


def test_special_but_finite_values_are_not_skipped(target):
    tiny = np.finfo(np.float32).smallest_subnormal
    big = np.finfo(np.float32).max
    g = np.array([0.0, -0.0, tiny, -tiny, big, -big], np.float32)
    p = np.zeros(6, np.float32)
    assert fo.SGD(lr=1e-3, skip_nonfinite=True).update([p], [g]) is True


def test_off_by_default_nan_flows():
    opt = fo.SGD(lr=0.1)
    p = np.zeros(3)
    assert opt.update([p], [np.array([np.nan, 1.0, 1.0])]) is True
    assert np.isnan(p[0]) and opt.skipped_steps == 0


def test_checkpoint_load_takes_the_guard_option(tmp_path):
    """skip_nonfinite describes how a run steps, not state: load() takes it, like
    num_threads and backend."""
    opt = fo.Adam()
    p = {"w": np.ones(3)}
    opt.update(p, {"w": np.ones(3)})
    fo.save(opt, tmp_path / "ckpt")
    again = fo.load(tmp_path / "ckpt", skip_nonfinite=True)
    before = p["w"].copy()
    assert again.update(p, {"w": np.array([1.0, np.nan, 1.0])}) is False
    assert_same(p["w"], before)
    assert again.state["w"]["step"] == 1 and again.skipped_steps == 1
