"""The ``ema`` option's behaviour: swapping the average in and out, what is refused while
it is swapped in, its checks, state_dict and checkpoints, and how it meets the rest
(groups, skip_nonfinite, bad input, NaN, Accumulate). Parity with the reference is
tests/parity/test_ema.py; the oracle (torch's AveragedModel) is in
test_torch_interop.py."""

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import rules

from conftest import assert_same


def trained(opt, steps=4, seed=0):
    rng = np.random.default_rng(seed)
    p = {"w": rng.standard_normal((30, 7)), "b": rng.standard_normal(7).astype(np.float32),
         "x": 1.5}
    for _ in range(steps):
        g = {"w": rng.standard_normal((30, 7)),
             "b": rng.standard_normal(7).astype(np.float32), "x": float(rng.standard_normal())}
        opt.update(p, g)
    return p


def test_swap_is_exact_both_ways():
    opt = fo.AdamW(lr=0.05, ema=0.8)
    p = trained(opt)
    kept = {k: np.array(v, copy=True) for k, v in p.items()}
    avgs = {k: opt.state[k]["ema"].copy() for k in p}
    opt.swap_ema(p)
    assert opt.ema_swapped
    for k in p:  # the averages are in the parameters (a number is rebound, as a float)
        assert_same(np.asarray(p[k]), avgs[k])
        assert_same(opt.state[k]["ema"], np.asarray(kept[k]))
    assert type(p["x"]) is float
    opt.swap_ema(p)
    assert not opt.ema_swapped
    for k in p:
        assert_same(np.asarray(p[k]), np.asarray(kept[k]))
        assert_same(opt.state[k]["ema"], avgs[k])
    assert not np.array_equal(avgs["w"], kept["w"])


def test_ema_applied_swaps_back_after_an_error():
    opt = fo.Adam(lr=0.05, ema=0.8)
    p = trained(opt)
    kept = p["w"].copy()
    with pytest.raises(ZeroDivisionError):
        with opt.ema_applied(p) as inside:
            assert inside is p and opt.ema_swapped
            assert not np.array_equal(p["w"], kept)
            raise ZeroDivisionError("the evaluation failed")
    assert not opt.ema_swapped
    assert_same(p["w"], kept)


def test_update_state_dict_and_save_refuse_while_swapped(tmp_path):
    opt = fo.Adam(lr=0.05, ema=0.8)
    p = trained(opt)
    opt.swap_ema(p)
    before = {k: np.array(v, copy=True) for k, v in p.items()}
    state = {k: {n: b.copy() for n, b in s.items() if n != "step"} for k, s in opt.state.items()}
    g = {k: np.ones_like(np.asarray(v)) if k != "x" else 1.0 for k, v in p.items()}
    for call in (lambda: opt.update(p, g), opt.state_dict,
                 lambda: fo.save(opt, tmp_path / "c.ckpt")):
        with pytest.raises(RuntimeError, match=r"call opt.swap_ema\(params\) again"):
            call()
    assert not (tmp_path / "c.ckpt").exists()
    for k in p:  # nothing was written
        assert_same(np.asarray(p[k]), np.asarray(before[k]))
        for n, b in state[k].items():
            assert_same(opt.state[k][n], b)
    opt.swap_ema(p)
    assert opt.update(p, g) and opt.state["w"]["step"] == 5


def test_accumulate_refuses_every_call_while_swapped():
    acc = fo.Accumulate(fo.Adam(lr=0.05, ema=0.8), steps=2)
    p = {"w": np.ones(5)}
    for _ in range(2):
        acc.update(p, {"w": np.full(5, 0.5)})
    acc.update(p, {"w": np.full(5, 0.25)})  # the next cycle's first call
    acc.optimizer.swap_ema(p)
    with pytest.raises(RuntimeError, match="call opt.swap_ema"):
        acc.update(p, {"w": np.ones(5)})
    assert acc.count == 1  # the cycle is intact
    acc.optimizer.swap_ema(p)
    assert acc.update(p, {"w": np.ones(5)}) and acc.count == 0


def test_swap_needs_every_parameter_with_state():
    opt = fo.Adam(ema=0.9)
    p = trained(opt)
    kept = p["w"].copy()
    with pytest.raises(ValueError, match=r"needs every parameter .* missing 'x'"):
        opt.swap_ema({"w": p["w"], "b": p["b"]})
    assert_same(p["w"], kept) and not opt.ema_swapped
    with pytest.raises(ValueError, match=r"parameter 'w' has shape \(3,\)"):
        opt.swap_ema({"w": np.zeros(3), "b": p["b"], "x": p["x"]})
    assert not opt.ema_swapped
    opt.swap_ema({**p, "new": np.zeros(2)})  # a parameter with no state yet: left alone
    assert opt.ema_swapped
    listed = fo.SGD(lr=0.1, ema=0.5)
    q = [np.ones(3), 2.0]
    listed.update(q, [np.ones(3), 1.0])
    with pytest.raises(TypeError, match=r"parameter 1 is a number in a tuple, which cannot "
                                        r"be rebound"):
        listed.swap_ema(tuple(q))
    assert not listed.ema_swapped


def test_without_ema_swap_says_how():
    with pytest.raises(ValueError, match=r"keeps no moving average: make it with ema=0.999"):
        fo.SGD().swap_ema([np.ones(3)])
    with pytest.raises(ValueError, match=r"average x is what opt.eval\(params\) swaps in"):
        fo.ScheduleFreeAdamW().swap_ema([np.ones(3)])
    with pytest.raises(TypeError, match="has no ema option: its evaluation point x"):
        fo.ScheduleFreeAdamW(ema=0.99)


@pytest.mark.parametrize("bad, err, match", [
    (1.0, ValueError, r"Invalid ema: 1.0 \(must satisfy 0 <= ema < 1\)"),
    (-0.1, ValueError, "Invalid ema"), (True, TypeError, "ema must be a real number"),
    (float("nan"), ValueError, "must be finite")])
def test_bad_decays_are_refused(bad, err, match):
    with pytest.raises(err, match=match):
        fo.Adam(ema=bad)
    opt = fo.Adam(ema=0.9)
    with pytest.raises(err, match=match):
        opt.ema = bad
    assert opt.ema == 0.9


def test_turning_it_on_or_off_needs_no_state():
    opt = fo.Adam()
    opt.ema = 0.99  # no state yet: the next update keeps the average
    p = trained(opt, steps=1)
    assert "ema" in opt.state["w"]
    opt.ema = 0.5  # the same buffers: a plain change
    with pytest.raises(ValueError, match=r"changes Adam's state buffers \(exp_avg, "
                                         r"exp_avg_sq, ema -> exp_avg, exp_avg_sq\)"):
        opt.ema = 0.0
    assert opt.ema == 0.5 and opt.update(p, {k: np.asarray(v) * 0 + 1 if k != "x" else 1.0
                                             for k, v in p.items()})


def test_groups_may_change_the_decay_not_turn_it_off():
    with pytest.raises(ValueError, match=r"groups\[0\] sets ema=0.0, which would need "
                                         r"other state buffers"):
        fo.Adam(ema=0.9, groups=[{"match": "b", "ema": 0.0}])
    with pytest.raises(ValueError, match=r"groups\[0\] sets ema=0.5"):
        fo.Adam(groups=[{"match": "b", "ema": 0.5}])


def test_state_dict_and_checkpoint_resume_bit_identically(tmp_path):
    rng = np.random.default_rng(9)
    grads = [{"w": rng.standard_normal((30, 7)), "b": rng.standard_normal(7).astype(np.float32),
              "x": float(rng.standard_normal())} for _ in range(6)]
    straight = fo.RMSprop(lr=0.01, momentum=0.5, ema=0.9)
    p = trained(straight, steps=3)
    q = {k: np.array(v, copy=True) if k != "x" else v for k, v in p.items()}
    sd = straight.state_dict()
    assert set(sd["state"]["w"]) == {"step", "square_avg", "momentum_buffer", "ema"}
    fo.save(straight, tmp_path / "c.ckpt")
    for g in grads:
        straight.update(p, g)
    for resumed in (fo.RMSprop(), fo.load(tmp_path / "c.ckpt")):
        if not resumed.state:
            resumed.load_state_dict(sd)
        assert resumed.ema == 0.9 and resumed.rule.state[-1] == "ema"
        r = {k: np.array(v, copy=True) if k != "x" else v for k, v in q.items()}
        for g in grads:
            resumed.update(r, g)
        for k in p:
            assert_same(np.asarray(r[k]), np.asarray(p[k]))
            assert_same(resumed.state[k]["ema"], straight.state[k]["ema"])


def test_an_old_state_dict_without_ema_loads_with_it_off():
    opt = fo.Adam()
    p = trained(opt, steps=2)
    sd = opt.state_dict()
    del sd["hyperparams"]["ema"]
    other = fo.Adam(ema=0.9)
    other.load_state_dict(sd)
    assert other.ema == 0.0 and "ema" not in other.rule.state
    assert other.update(p, {k: np.ones_like(np.asarray(v)) if k != "x" else 1.0
                            for k, v in p.items()})


def test_bad_input_writes_no_average():
    opt = fo.Adam(ema=0.9)
    p = trained(opt)
    before = {k: opt.state[k]["ema"].copy() for k in ("w", "b")}
    with pytest.raises(ValueError, match="gradient 'b'"):
        opt.update(p, {"w": np.ones((30, 7)), "b": np.ones(3, np.float32), "x": 1.0})
    for k, b in before.items():
        assert_same(opt.state[k]["ema"], b)


def test_a_skipped_step_leaves_the_average_and_nan_propagates():
    opt = fo.Adam(ema=0.9, skip_nonfinite=True)
    p = {"w": np.ones(100_000, np.float32)}
    opt.update(p, {"w": np.ones(100_000, np.float32)})
    before = opt.state["w"]["ema"].copy()
    g = np.ones(100_000, np.float32)
    g[77] = np.nan
    assert opt.update(p, {"w": g}) is False
    assert_same(opt.state["w"]["ema"], before)
    opt.skip_nonfinite = False
    assert opt.update(p, {"w": g})
    avg = opt.state["w"]["ema"]
    assert np.isnan(avg[77]) and np.isnan(p["w"][77]) and np.isfinite(np.delete(avg, 77)).all()


def test_accumulate_steps_the_average_on_the_kth_call():
    rng = np.random.default_rng(2)
    p = {"w": rng.standard_normal(500)}
    q = {"w": p["w"].copy()}
    acc, direct = fo.Accumulate(fo.Adam(lr=0.01, ema=0.9), steps=2), fo.Adam(lr=0.01, ema=0.9)
    for _ in range(3):
        g1, g2 = rng.standard_normal(500), rng.standard_normal(500)
        acc.update(p, {"w": g1})
        acc.update(p, {"w": g2})
        direct.update(q, {"w": (g1 + g2) / 2})
    assert_same(p["w"], q["w"])
    assert_same(acc.optimizer.state["w"]["ema"], direct.state["w"]["ema"])


def test_every_rule_but_schedule_free_has_it():
    for r in rules.RULES:
        assert ("ema" in r.hyper_names) != r.schedule_free, r.name
        if not r.schedule_free:
            opt = getattr(fo, r.class_name)(ema=0.5)
            assert opt.rule.state == (*r.state, "ema") and opt.rule.with_ema() is opt.rule
            assert opt.rule.id == r.id | rules.EMA_FLAG and "ema=0.5" in repr(opt)
