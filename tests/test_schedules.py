"""Learning-rate schedules: values from their formulas, every optimizer, state dicts, and
what an lr change means for Momentum's stored velocity."""

import math

import numpy as np
import pytest

import fastoptim as fo
from fastoptim.schedules import CosineWithWarmup, ExponentialLR, ReduceLROnPlateau, StepLR

from conftest import HYPER, OPTIMIZERS


def lrs_over(sched, n):
    """optimizer.lr after construction and after each of n step() calls."""
    out = [sched.optimizer.lr]
    for _ in range(n):
        sched.step()
        out.append(sched.optimizer.lr)
    return out


def test_step_lr_values():
    base, gamma, k = 0.3, 0.5, 3
    sched = StepLR(fo.SGD(lr=base), step_size=k, gamma=gamma)
    got = lrs_over(sched, 10)
    assert got == [pytest.approx(base * gamma ** (t // k), rel=1e-15) for t in range(11)]
    assert got[:3] == [base] * 3 and got[3] == base * gamma
    assert sched.last_lr == got[-1] == sched.get_lr() and sched.last_step == 10


def test_exponential_lr_values():
    base, gamma = 0.1, 0.9
    got = lrs_over(ExponentialLR(fo.Adam(lr=base), gamma=gamma), 8)
    assert got == [pytest.approx(base * gamma ** t, rel=1e-15) for t in range(9)]


@pytest.mark.parametrize("warmup, total, min_lr", [(4, 12, 0.01), (0, 5, 0.0), (1, 2, 0.5)])
def test_cosine_with_warmup_values(warmup, total, min_lr):
    base = 2.0
    got = lrs_over(CosineWithWarmup(fo.AdaDelta(lr=base), warmup, total, min_lr), total + 3)
    expected = []
    for t in range(total + 4):
        if t < warmup:
            expected.append(base * (t + 1) / (warmup + 1))
        elif t <= total:
            s = (t - warmup) / (total - warmup)
            expected.append(min_lr + (base - min_lr) * 0.5 * (1 + math.cos(math.pi * s)))
        else:
            expected.append(min_lr)
    assert got == [pytest.approx(e, rel=1e-14, abs=1e-15) for e in expected]
    # shape: rising during warm-up, the peak at t = warmup, falling to min_lr at the end
    assert got[warmup] == base
    assert all(a < b for a, b in zip(got[:warmup], got[1:warmup + 1]))
    assert all(a >= b for a, b in zip(got[warmup:total], got[warmup + 1:total + 1]))
    assert got[total] == pytest.approx(min_lr, abs=1e-15) and got[-1] == min_lr


def test_cosine_midpoint_is_the_mean():
    sched = CosineWithWarmup(fo.SGD(lr=1.0), warmup_steps=2, total_steps=12, min_lr=0.2)
    assert sched.lr_at(7) == pytest.approx((1.0 + 0.2) / 2, rel=1e-15)


def plateau_reference(metrics, lr, factor, patience, threshold, cooldown, min_lr):
    """The rule of the docstring, written out for mode='min', threshold_mode='rel'."""
    best, bad, cool, out = math.inf, 0, 0, []
    for m in metrics:
        if m < best * (1 - threshold):
            best, bad = m, 0
        else:
            bad += 1
        if cool > 0:
            cool, bad = cool - 1, 0
        if bad > patience:
            lr, cool, bad = max(lr * factor, min_lr), cooldown, 0
        out.append(lr)
    return out


@pytest.mark.parametrize("patience, cooldown", [(0, 0), (2, 0), (1, 2)])
def test_reduce_on_plateau_values(patience, cooldown):
    metrics = [1.0, 0.9, 0.9, 0.95, 0.9, 0.89999, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.7,
               0.8, 0.1, 0.2, 0.2, 0.2]
    opt = fo.Momentum(lr=1.0)
    sched = ReduceLROnPlateau(opt, factor=0.5, patience=patience, threshold=1e-3,
                              cooldown=cooldown, min_lr=0.1)
    got = [sched.step(m) for m in metrics]
    assert got == plateau_reference(metrics, 1.0, 0.5, patience, 1e-3, cooldown, 0.1)
    assert opt.lr == got[-1] and min(got) >= 0.1 and got[-1] < 1.0


def test_reduce_on_plateau_modes_and_nan():
    opt = fo.SGD(lr=1.0)
    sched = ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=1, threshold=0.1,
                              threshold_mode="abs")
    assert [sched.step(m) for m in [1.0, 1.05, 1.2, 1.25, 1.29]] == [1.0, 1.0, 1.0, 1.0, 0.5]
    opt = fo.SGD(lr=1.0)
    sched = ReduceLROnPlateau(opt, patience=0)
    assert sched.step(np.float32(2.0)) == 1.0           # NumPy scalars are accepted
    assert sched.step(float("nan")) == pytest.approx(0.1)  # NaN never improves
    with pytest.raises(TypeError, match="metric"):
        sched.step("low")


def test_reduce_on_plateau_respects_eps():
    opt = fo.SGD(lr=1e-9)
    sched = ReduceLROnPlateau(opt, patience=0, eps=1e-8)
    for m in [1.0, 2.0, 3.0]:
        assert sched.step(m) == 1e-9                    # a change below eps is skipped


def make_schedules(opt):
    return [StepLR(opt, step_size=2, gamma=0.5), ExponentialLR(opt, gamma=0.8),
            CosineWithWarmup(opt, warmup_steps=2, total_steps=6, min_lr=1e-4)]


@pytest.mark.parametrize("opt_cls", OPTIMIZERS)
@pytest.mark.parametrize("which", [0, 1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_optimizer_follows_its_schedule(opt_cls, which, dtype):
    """The schedule's lr is the lr each update uses: the compiled optimizer and the
    reference, scheduled alike, stay bit-identical, and each equals a run where lr is
    set by hand to the schedule's values."""
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(40).astype(dtype)
    grads = [rng.standard_normal(40).astype(dtype) for _ in range(8)]

    def run(backend, hand=None):
        opt = opt_cls(**HYPER[opt_cls], backend=backend)
        p = p0.copy()
        sched = None
        if hand is None:
            sched = (make_schedules(opt)[which] if which < 3 else
                     ReduceLROnPlateau(opt, factor=0.5, patience=0))
        lrs = []
        for i, g in enumerate(grads):
            if hand is not None:
                opt.lr = hand[i]
            lrs.append(opt.lr)
            opt.update([p], [g])
            if sched is not None:
                sched.step(float(i % 3)) if which == 3 else sched.step()
        return p, lrs

    p_fast, lrs = run("compiled")
    p_ref, lrs_ref = run("numpy")
    p_hand, _ = run("compiled", hand=lrs)
    assert lrs == lrs_ref and len(set(lrs)) > 1
    assert np.array_equal(p_fast, p_ref) and np.array_equal(p_fast, p_hand)


def test_sgd_step_uses_the_new_lr():
    opt = fo.SGD(lr=0.5)
    sched = StepLR(opt, step_size=1, gamma=0.1)
    p = np.zeros(1)
    opt.update(p, np.ones(1))
    sched.step()
    opt.update(p, np.ones(1))
    assert p[0] == -0.5 - 0.5 * 0.1


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_velocity_keeps_old_steps_at_their_old_lr(nesterov):
    """v_t = mu*v_{t-1} + lr_t*g_t and p_t = p_{t-1} - v_t (Nesterov: p_t = p_{t-1} -
    (mu*v_t + lr_t*g_t)), written out by hand with the schedule's lr_t: an lr change
    scales only the new gradient. PyTorch's form, lr_t * sum(mu**(t-k) g_k), would
    rescale the old steps too; it differs as soon as lr changes."""
    mu = 0.9
    lr0 = 0.1
    gs = [np.array([1.0, -2.0]), np.array([0.5, 0.25]), np.array([-1.0, 3.0]),
          np.array([2.0, 2.0]), np.array([0.0, -1.0])]
    opt = (fo.Nesterov if nesterov else fo.Momentum)(lr=lr0, momentum=mu)
    sched = StepLR(opt, step_size=2, gamma=0.1)
    p = np.array([1.0, 1.0])
    lrs = []
    for g in gs:
        lrs.append(opt.lr)
        opt.update([p], [g])
        sched.step()
    assert lrs == [lr0, lr0, lr0 * 0.1, lr0 * 0.1, lr0 * 0.1 ** 2]

    # The hand-derived sequence, element by element in Python floats (the same IEEE
    # operations as the kernel, which uses no fused multiply-add): bit-identical.
    for i in range(2):
        v, q = 0.0, 1.0
        for lr, g in zip(lrs, gs):
            v = mu * v + lr * g[i]
            q = q - ((mu * v + lr * g[i]) if nesterov else v)
        assert opt.state[0]["velocity"][i] == v
        assert p[i] == q
        # Closed form of the stored velocity: each gradient at the lr of its own step.
        t = len(gs)
        closed = sum(mu ** (t - 1 - k) * lrs[k] * gs[k][i] for k in range(t))
        assert v == pytest.approx(closed, rel=1e-12, abs=1e-15)
        torch_style = lrs[-1] * sum(mu ** (t - 1 - k) * gs[k][i] for k in range(t))
        assert v != pytest.approx(torch_style, rel=1e-3)


@pytest.mark.parametrize("factory", [
    lambda o: StepLR(o, step_size=3, gamma=0.5),
    lambda o: ExponentialLR(o, gamma=0.95),
    lambda o: CosineWithWarmup(o, warmup_steps=3, total_steps=10, min_lr=0.001),
    lambda o: ReduceLROnPlateau(o, factor=0.5, patience=1, cooldown=1),
])
def test_state_dict_round_trip(factory):
    metrics = [3.0, 2.0, 2.5, 2.5, 2.5, 1.0, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5]

    def advance(s, i):
        return s.step(metrics[i]) if isinstance(s, ReduceLROnPlateau) else s.step()

    opt = fo.Adam(lr=0.1)
    sched = factory(opt)
    straight = [advance(sched, i) for i in range(len(metrics))]

    opt1 = fo.Adam(lr=0.1)
    s1 = factory(opt1)
    first = [advance(s1, i) for i in range(5)]
    sd, osd = s1.state_dict(), opt1.state_dict()
    opt2 = fo.Adam(lr=0.7)                     # a different lr: the state dict decides
    s2 = factory(opt2)
    s2.load_state_dict(sd)
    assert opt2.lr == s1.last_lr
    opt2.load_state_dict(osd)
    rest = [advance(s2, i) for i in range(5, len(metrics))]
    assert first + rest == straight
    assert s2.state_dict() == sched.state_dict()


def test_load_state_dict_checks():
    s = StepLR(fo.SGD(lr=0.1), step_size=2)
    with pytest.raises(ValueError, match="belongs to 'ExponentialLR'"):
        s.load_state_dict(ExponentialLR(fo.SGD(lr=0.1), gamma=0.5).state_dict())
    sd = s.state_dict()
    sd["extra"] = 1
    with pytest.raises(ValueError, match="exactly the keys"):
        s.load_state_dict(sd)
    sd = s.state_dict()
    sd["step_size"] = 0
    with pytest.raises(ValueError, match="step_size"):
        s.load_state_dict(sd)


@pytest.mark.parametrize("make, match", [
    (lambda o: StepLR(o, step_size=0), "step_size"),
    (lambda o: StepLR(o, step_size=2.0), "step_size"),
    (lambda o: StepLR(o, step_size=2, gamma=0.0), "gamma"),
    (lambda o: ExponentialLR(o, gamma=-0.5), "gamma"),
    (lambda o: ExponentialLR(o, gamma=math.inf), "gamma"),
    (lambda o: CosineWithWarmup(o, warmup_steps=5, total_steps=5), "total_steps"),
    (lambda o: CosineWithWarmup(o, warmup_steps=-1, total_steps=5), "warmup_steps"),
    (lambda o: CosineWithWarmup(o, 1, 5, min_lr=-1.0), "min_lr"),
    (lambda o: ReduceLROnPlateau(o, factor=1.0), "factor"),
    (lambda o: ReduceLROnPlateau(o, mode="up"), "mode"),
    (lambda o: ReduceLROnPlateau(o, threshold_mode="pct"), "threshold_mode"),
    (lambda o: ReduceLROnPlateau(o, patience=-1), "patience"),
    (lambda o: ReduceLROnPlateau(o, cooldown=1.5), "cooldown"),
])
def test_bad_settings(make, match):
    opt = fo.SGD(lr=0.1)
    with pytest.raises((ValueError, TypeError), match=match):
        make(opt)
    assert opt.lr == 0.1


def test_needs_an_optimizer():
    with pytest.raises(TypeError, match="fastoptim optimizer"):
        StepLR(object(), step_size=1)


def test_an_invalid_lr_is_refused_by_the_optimizer():
    opt = fo.SGD(lr=1e308)
    sched = ExponentialLR(opt, gamma=10.0)
    with pytest.raises(ValueError, match="lr"):
        sched.step()                                    # 1e309 is not finite
