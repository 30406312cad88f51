"""Lazy state, per-parameter step counts, state_dict / load_state_dict."""

import numpy as np
import pytest

import fastoptim as fo

from conftest import HYPER, OPTIMIZERS, assert_same


def model(rng, dtype=np.float32):
    return {"W1": rng.standard_normal((8, 5)).astype(dtype),
            "b1": rng.standard_normal(5).astype(dtype),
            "W2": np.asfortranarray(rng.standard_normal((5, 3)).astype(dtype)),
            "s": np.array(0.5, dtype=dtype)}


def grads(rng, params):
    return {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in params.items()}


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_state_is_lazy_and_matches_the_parameter(cls):
    rng = np.random.default_rng(0)
    params = model(rng)
    opt = cls()
    assert opt.state == {}
    opt.update(params, grads(rng, params))
    names = fo._core.RULES[cls._rule][0]
    for k, p in params.items():
        st = opt.state[k]
        assert set(st) == {"step", *names} and st["step"] == 1
        for n in names:
            assert st[n].shape == p.shape and st[n].dtype == p.dtype
            assert st[n].flags.c_contiguous == p.flags.c_contiguous
            assert st[n].flags.f_contiguous == p.flags.f_contiguous
            assert not np.shares_memory(st[n], p)


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_resume_from_state_dict_is_bit_identical(cls):
    rng = np.random.default_rng(1)
    params = model(rng)
    gs = [grads(rng, params) for _ in range(10)]

    straight = {k: v.copy(order="K") for k, v in params.items()}
    opt = cls(**HYPER[cls])
    for g in gs:
        opt.update(straight, g)

    resumed = {k: v.copy(order="K") for k, v in params.items()}
    first = cls(**HYPER[cls])
    for g in gs[:5]:
        first.update(resumed, g)
    sd = first.state_dict()
    sd_copy = {k: {n: np.array(b, copy=True) if isinstance(b, np.ndarray) else b
                   for n, b in s.items()} for k, s in sd["state"].items()}
    first.update(resumed, gs[5])  # later updates must not reach the saved dict ...
    for k, s in sd["state"].items():
        for n, b in s.items():
            if isinstance(b, np.ndarray):
                assert_same(b, sd_copy[k][n])
            else:
                assert b == sd_copy[k][n]
    # ... and a fresh optimizer (default hyper-parameters!) restores hyper-parameters and
    # state; the parameters as they were after five steps come from a replay.
    resumed = {k: v.copy(order="K") for k, v in params.items()}
    replay = cls(**HYPER[cls])
    for g in gs[:5]:
        replay.update(resumed, g)
    second = cls()
    second.load_state_dict(sd)
    assert second.hyperparams == opt.hyperparams
    for g in gs[5:]:
        second.update(resumed, g)
    for k in params:
        assert_same(resumed[k], straight[k])
        for n, b in opt.state[k].items():
            if isinstance(b, np.ndarray):
                assert_same(second.state[k][n], b)
            else:
                assert second.state[k][n] == b


def test_state_dict_holds_plain_values_and_copies():
    rng = np.random.default_rng(2)
    params = model(rng)
    opt = fo.Adam()
    opt.update(params, grads(rng, params))
    sd = opt.state_dict()
    assert sd["optimizer"] == "Adam"
    assert sd["hyperparams"] == {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8,
                                 "weight_decay": 0.0, "amsgrad": False, "ema": 0.0,
                                 "state_dtype": None, "maximize": False}
    for k, st in sd["state"].items():
        assert type(st["step"]) is int
        for n in ("exp_avg", "exp_avg_sq"):
            assert type(st[n]) is np.ndarray
            assert not np.shares_memory(st[n], opt.state[k][n])
    # loading copies too: changing the dict afterwards does not reach the optimizer
    other = fo.Adam()
    other.load_state_dict(sd)
    sd["state"]["W1"]["exp_avg"][...] = 7.0
    assert not np.any(other.state["W1"]["exp_avg"] == 7.0)


def test_load_state_dict_errors_change_nothing():
    rng = np.random.default_rng(3)
    params = model(rng)
    opt = fo.Adam(lr=0.01)
    opt.update(params, grads(rng, params))
    before = opt.state_dict()

    def check_unchanged():
        now = opt.state_dict()
        assert now["hyperparams"] == before["hyperparams"]
        for k in before["state"]:
            for n, b in before["state"][k].items():
                if isinstance(b, np.ndarray):
                    assert_same(now["state"][k][n], b)
                else:
                    assert now["state"][k][n] == b

    other = fo.Momentum()
    other.update(params, grads(rng, params))
    bad = [
        (other.state_dict(), ValueError, "belongs to a Momentum optimizer, not Adam"),
        ({"state": {}}, ValueError, "must be a dict with keys"),
        ({**before, "hyperparams": {**before["hyperparams"], "lr": -1}}, ValueError,
         "Invalid lr"),
        ({**before, "hyperparams": {"lr": 0.1}}, ValueError, "hyperparams must have"),
        ({**before, "state": {"W1": {"step": 1, "exp_avg": np.zeros(2)}}}, ValueError,
         "must have the keys"),
        ({**before, "state": {"W1": {"step": -1, "exp_avg": np.zeros(2),
                                      "exp_avg_sq": np.zeros(2)}}}, ValueError, "step must"),
        ({**before, "state": {"W1": {"step": 1, "exp_avg": np.zeros(2, int),
                                      "exp_avg_sq": np.zeros(2)}}}, TypeError,
         "must be a float32, float64 or bfloat16 array"),
        ({**before, "state": {"W1": {"step": 1, "exp_avg": np.zeros(2),
                                      "exp_avg_sq": np.zeros(3)}}}, ValueError,
         "differ in shape"),
    ]
    for sd, exc, match in bad:
        with pytest.raises(exc, match=match):
            opt.load_state_dict(sd)
        check_unchanged()


def test_loaded_state_must_fit_the_parameters():
    rng = np.random.default_rng(4)
    params = model(rng)
    opt = fo.Adam()
    opt.update(params, grads(rng, params))
    sd = opt.state_dict()
    new = fo.Adam()
    new.load_state_dict(sd)
    wrong = {**params, "b1": np.zeros(6, np.float32)}
    with pytest.raises(ValueError, match="state 'exp_avg' of parameter 'b1' has shape"):
        new.update(wrong, {**grads(rng, params), "b1": np.zeros(6, np.float32)})
    assert all(st["step"] == 1 for st in new.state.values())


def test_loaded_state_in_another_memory_order_is_relaid_not_lost():
    """A state_dict written for a C-ordered parameter, loaded for an F-ordered one:
    the optimizer re-lays its own state (never the user's parameter) and continues
    exactly as the reference does."""
    rng = np.random.default_rng(5)
    p = rng.standard_normal((6, 4))
    g = rng.standard_normal((6, 4))
    opt = fo.Adam()
    opt.update({"w": p}, {"w": g})
    sd = opt.state_dict()
    pf = np.asfortranarray(p)
    a, b = fo.Adam(), fo.Adam(backend="numpy")
    a.load_state_dict(sd)
    b.load_state_dict(sd)
    pc = p.copy()
    a.update({"w": pf}, {"w": g})
    b.update({"w": pc}, {"w": g})
    assert_same(np.ascontiguousarray(pf), pc)
    assert a.state["w"]["step"] == 2 and a.state["w"]["exp_avg"].flags.f_contiguous


def test_step_is_counted_per_parameter():
    """A parameter that joins later starts at step 1 (Adam's bias correction)."""
    rng = np.random.default_rng(6)
    a, c = rng.standard_normal(10), rng.standard_normal(10)
    opt = fo.Adam(lr=0.1)
    for _ in range(3):
        opt.update({"a": a}, {"a": np.ones(10)})
    c_alone = c.copy()
    opt.update({"a": a, "c": c}, {"a": np.ones(10), "c": np.ones(10)})
    fo.Adam(lr=0.1).update({"c": c_alone}, {"c": np.ones(10)})
    assert opt.state["a"]["step"] == 4 and opt.state["c"]["step"] == 1
    assert_same(c, c_alone)
