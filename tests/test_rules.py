"""Each rule against values worked out by hand from docs/rules.rst (the spec), the
Nesterov look-ahead equivalence, and coupled vs decoupled weight decay."""

import math

import numpy as np
import pytest

import fastoptim as fo

from conftest import DTYPES, OPTIMIZERS, assert_same

BACKENDS = ["compiled", "numpy"]


# Values chosen so that every operation is exact in binary floating point: the first
# (and second) step can be written down and compared with ==.
#   p0 = 1, g = 0.5, lr = 0.5
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_first_steps_exact(dtype, backend):
    def run(opt, steps=1):
        p = np.array([1.0], dtype=dtype)
        for _ in range(steps):
            opt.update([p], [np.array([0.5], dtype=dtype)])
        return p[0], opt.state[0]

    # SGD: p = 1 - 0.5*0.5
    p, _ = run(fo.SGD(lr=0.5, backend=backend))
    assert p == 0.75
    # Momentum: v = 0.5*0 + 0.5*0.5 = 0.25, p = 1 - 0.25; second step
    # v = 0.5*0.25 + 0.25 = 0.375, p = 0.75 - 0.375
    p, st = run(fo.Momentum(lr=0.5, momentum=0.5, backend=backend))
    assert (p, st["velocity"][0]) == (0.75, 0.25)
    p, st = run(fo.Momentum(lr=0.5, momentum=0.5, backend=backend), steps=2)
    assert (p, st["velocity"][0]) == (0.375, 0.375)
    # Nesterov: v = 0.25, p = 1 - (0.5*0.25 + 0.25) = 0.625; second step
    # v = 0.375, p = 0.625 - (0.5*0.375 + 0.25) = 0.1875
    p, st = run(fo.Nesterov(lr=0.5, momentum=0.5, backend=backend))
    assert (p, st["velocity"][0]) == (0.625, 0.25)
    p, st = run(fo.Nesterov(lr=0.5, momentum=0.5, backend=backend), steps=2)
    assert (p, st["velocity"][0]) == (0.1875, 0.375)
    # AdaGrad (eps=0): G = 0.25, p = 1 - 0.5*(0.5/sqrt(0.25)) = 0.5
    p, st = run(fo.AdaGrad(lr=0.5, eps=0.0, backend=backend))
    assert (p, st["sum_sq"][0]) == (0.5, 0.25)
    # RMSprop (alpha=0.75, eps=0): E = 0.25*0.25 = 0.0625, p = 1 - 0.5*(0.5/0.25) = 0
    p, st = run(fo.RMSprop(lr=0.5, alpha=0.75, eps=0.0, backend=backend))
    assert (p, st["square_avg"][0]) == (0.0, 0.0625)
    # Adam (betas 0.5, 0.75, eps=0): m = 0.25, v = 0.0625, step_size = 0.5/0.5 = 1,
    # sqrt(1 - 0.75) = 0.5, denom = 0.25/0.5 = 0.5, p = 1 - 1*(0.25/0.5) = 0.5: the
    # first Adam step moves every element by lr against the sign of its gradient.
    p, st = run(fo.Adam(lr=0.5, betas=(0.5, 0.75), eps=0.0, backend=backend))
    assert (p, st["exp_avg"][0], st["exp_avg_sq"][0], st["step"]) == (0.5, 0.25, 0.0625, 1)
    # AdamW (weight_decay=0.5): p = 1*(1 - 0.5*0.5) = 0.75, then the Adam step: 0.25
    p, _ = run(fo.AdamW(lr=0.5, betas=(0.5, 0.75), eps=0.0, weight_decay=0.5,
                        backend=backend))
    assert p == 0.25
    # SGD with coupled decay 0.5: g = 0.5 + 0.5*1 = 1, p = 1 - 0.5*1
    p, _ = run(fo.SGD(lr=0.5, weight_decay=0.5, backend=backend))
    assert p == 0.5


@pytest.mark.parametrize("backend", BACKENDS)
def test_adadelta_first_step_by_hand(backend):
    # G = (1-rho)*g^2, delta = sqrt(0 + eps)/sqrt(G + eps)*g, S = (1-rho)*delta^2,
    # p = p - lr*delta. sqrt does not give exact values here; write it out in float64.
    lr, rho, eps, g = 1.0, 0.9, 1e-6, 0.5
    G = (1 - rho) * g * g
    delta = math.sqrt(eps) / math.sqrt(G + eps) * g
    S = (1 - rho) * delta * delta
    p = np.array([1.0])
    opt = fo.AdaDelta(lr=lr, rho=rho, eps=eps, backend=backend)
    opt.update([p], [np.array([g])])
    assert p[0] == pytest.approx(1.0 - lr * delta, rel=1e-15, abs=0)
    assert opt.state[0]["square_avg"][0] == pytest.approx(G, rel=1e-15)
    assert opt.state[0]["acc_delta"][0] == pytest.approx(S, rel=1e-15)
    # the famous AdaDelta warm-up: the first step is ~ sqrt(eps/(1-rho)) = 3.2e-3
    assert 1.0 - p[0] == pytest.approx(math.sqrt(eps / (1 - rho)), rel=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_adam_bias_correction_later_steps(backend):
    """With a constant gradient, m_hat = g and v_hat = g^2 at every step, so each step
    moves by lr*g/(|g| + eps): the bias corrections are right at t = 1..20."""
    lr, eps, g = 0.01, 1e-8, -0.3
    p = np.array([2.0])
    opt = fo.Adam(lr=lr, eps=eps, backend=backend)
    expected = 2.0
    for t in range(1, 21):
        opt.update([p], [np.array([g])])
        expected -= lr * g / (abs(g) + eps)
        assert p[0] == pytest.approx(expected, rel=1e-12)
        assert opt.state[0]["step"] == t


def test_nesterov_lookahead_equivalence():
    """docs/rules.rst: running the lecture notes' look-ahead recurrence
        v_t = gamma*v_{t-1} + lr*grad(theta_{t-1} - gamma*v_{t-1});  theta_t = theta_{t-1} - v_t
    and fastoptim's rule on phi = theta - gamma*v side by side gives
    phi_t = theta_t - gamma*v_t (and the same v) at every step, on a quadratic."""
    A = np.array([[3.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.1]])  # SPD

    def grad(x):
        return A @ x

    gamma, lr = 0.9, 0.05
    theta = np.array([1.0, -2.0, 3.0])
    v = np.zeros(3)
    phi = theta.copy()  # phi_0 = theta_0 - gamma*v_0 with v_0 = 0
    opt = fo.Nesterov(lr=lr, momentum=gamma)
    for _ in range(60):
        v = gamma * v + lr * grad(theta - gamma * v)
        theta = theta - v
        opt.update([phi], [grad(phi)])
        np.testing.assert_allclose(phi, theta - gamma * v, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(opt.state[0]["velocity"], v, rtol=1e-12, atol=1e-14)
    # the trajectory moved towards the minimum at 0 (the comparison above is not of a
    # standing point)
    assert np.linalg.norm(phi) < 0.25 * np.linalg.norm([1.0, -2.0, 3.0])


def test_nesterov_equals_sequel_form_and_not_the_early_book_form():
    """docs/rules.rst: the table's rule equals p -= mu^2*v_old + (1+mu)*lr*g; the early book
    class (v updated before use) gives p += mu^3*v_old - (1+mu+mu^2)*lr*g instead."""
    rng = np.random.default_rng(0)
    mu, lr = 0.9, 0.1
    p = rng.standard_normal(50)
    v_old = rng.standard_normal(50)
    g = rng.standard_normal(50)
    p_fast, v = p.copy(), v_old.copy()
    fo.functional.nesterov(p_fast, g, v, lr=lr, momentum=mu)
    np.testing.assert_allclose(p_fast, p - (mu**2 * v_old + (1 + mu) * lr * g), rtol=1e-12)
    early = p + mu**3 * v_old - (1 + mu + mu**2) * lr * g
    assert not np.allclose(p_fast, early)


@pytest.mark.parametrize("backend", BACKENDS)
# (AdamW and Lion decay the parameter; Schedule-Free AdamW adds weight_decay*y to the
# normalised gradient, LAMB to its direction u: tested with their other hand-worked
# values below)
@pytest.mark.parametrize("cls", [c for c in OPTIMIZERS
                                 if c not in (fo.AdamW, fo.Lion, fo.ScheduleFreeAdamW,
                                              fo.LAMB)],
                         ids=lambda c: c.__name__)
def test_coupled_decay_is_gradient_plus_decay_times_param(cls, backend):
    """weight_decay=wd is exactly the rule fed with g + wd*p (computed in the dtype)."""
    rng = np.random.default_rng(5)
    wd = 0.05
    p0 = rng.standard_normal(257).astype(np.float32)
    a, b = p0.copy(), p0.copy()
    oa, ob = cls(weight_decay=wd, backend=backend), cls(backend=backend)
    for _ in range(5):
        g = rng.standard_normal(257).astype(np.float32)
        g_before = g.copy()
        ob.update([b], [g + np.float32(wd) * b])
        oa.update([a], [g])
        assert_same(g, g_before)  # the user's gradient is not modified
    assert_same(a, b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_decoupled_decay_adamw_vs_coupled_adam(backend):
    rng = np.random.default_rng(6)
    p0 = rng.standard_normal(100)
    # With a zero gradient, AdamW only shrinks: p <- p*(1 - lr*wd) exactly (m = v = 0);
    # coupled Adam instead turns the decay into a gradient and takes a full Adam step.
    pw, pa = p0.copy(), p0.copy()
    fo.AdamW(lr=0.1, weight_decay=0.5, backend=backend).update([pw], [np.zeros(100)])
    fo.Adam(lr=0.1, weight_decay=0.5, backend=backend).update([pa], [np.zeros(100)])
    assert_same(pw, p0 * (1 - 0.1 * 0.5))
    # (each element moves by lr*|g|/(|g| + eps): lr to within eps/|g|)
    np.testing.assert_allclose(pa, p0 - 0.1 * np.sign(p0), rtol=0, atol=1e-6)
    # AdamW with weight_decay=0 is Adam with weight_decay=0, bit for bit
    a, b = p0.copy(), p0.copy()
    oa, ob = fo.AdamW(weight_decay=0.0, backend=backend), fo.Adam(backend=backend)
    for _ in range(5):
        g = rng.standard_normal(100)
        oa.update([a], [g])
        ob.update([b], [g])
    assert_same(a, b)
    # and with decay they differ
    fo.AdamW(weight_decay=0.1, backend=backend).update([a], [g])
    fo.Adam(weight_decay=0.1, backend=backend).update([b], [g])
    assert not np.array_equal(a, b)


# (not Schedule-Free AdamW: its y + ckp1*(z - y) turns an Inf parameter into NaN through
# Inf - Inf, as the authors' torch lerp does, whatever weight_decay is; its decay term is
# tested below)
@pytest.mark.parametrize("cls", [c for c in OPTIMIZERS if c is not fo.ScheduleFreeAdamW],
                         ids=lambda c: c.__name__)
def test_zero_weight_decay_leaves_special_values_alone(cls):
    """weight_decay=0 adds no 0*p term: -0.0 stays -0.0 and an Inf parameter with a zero
    gradient does not turn into NaN through 0*Inf."""
    kw = {"weight_decay": 0.0}
    p = np.array([np.inf, -0.0, 1.0])
    ref = p.copy()
    cls(**kw).update([p], [np.zeros(3)])
    cls(**kw, backend="numpy").update([ref], [np.zeros(3)])
    assert_same(p, ref)
    assert np.isinf(p[0]) and not np.isnan(p[0])


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_momentum_state_keeps_old_learning_rates(cls):
    """Changing lr between updates is allowed and validated; it affects later steps only."""
    opt = cls()
    p = np.ones(4)
    opt.update([p], [np.ones(4)])
    opt.lr = opt.lr / 10
    opt.update([p], [np.ones(4)])
    ref = cls(backend="numpy")
    q = np.ones(4)
    ref.update([q], [np.ones(4)])
    ref.lr = ref.lr / 10
    ref.update([q], [np.ones(4)])
    assert_same(p, q)
    with pytest.raises(ValueError, match="Invalid lr: -1.0"):
        opt.lr = -1


# -- Lion, Adamax, NAdam, RAdam (docs/rules.rst) ------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_lion_steps_by_hand(dtype, backend):
    # lr = 0.5, betas (0.5, 0.75), wd = 0.5: decay factor 1 - 0.25 = 0.75; exact values
    def opt():
        return fo.Lion(lr=0.5, betas=(0.5, 0.75), weight_decay=0.5, backend=backend)

    p, o = np.array([1.0, 1.0, 1.0], dtype=dtype), opt()
    o.update([p], [np.array([0.5, -0.5, 0.0], dtype=dtype)])
    # c = 0.5*0 + 0.5*g = (0.25, -0.25, 0): p = 0.75 - 0.5*sign(c) = (0.25, 1.25, 0.75);
    # m = 0.75*0 + 0.25*g = (0.125, -0.125, 0)
    assert p.tolist() == [0.25, 1.25, 0.75]
    assert o.state[0]["exp_avg"].tolist() == [0.125, -0.125, 0.0]
    # second step, g = -0.1 on the first element: c = 0.5*0.125 + 0.5*(-0.1) = 0.0125 > 0,
    # so the parameter still steps down (the direction is c's, not g's):
    # p = 0.25*0.75 - 0.5 = -0.3125; m = 0.75*0.125 + 0.25*(-0.1) = 0.06875. The others,
    # same g: c = -0.0625 - 0.25 < 0, p = 1.25*0.75 + 0.5; c = 0, p = 0.75*0.75
    o.update([p], [np.array([-0.1, -0.5, 0.0], dtype=dtype)])
    assert p.tolist() == [-0.3125, 1.4375, 0.5625]
    assert o.state[0]["exp_avg"][0] == pytest.approx(0.06875, rel=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lion_sign_of_zero_and_nan(backend):
    """sign(+-0) is the zero itself (no step), sign(NaN) is NaN; with no decay a zero
    direction leaves the parameter bit for bit as it was."""
    p = np.array([2.0, -0.0, 3.0, 1.0])
    g = np.array([0.0, -0.0, np.nan, np.inf])
    opt = fo.Lion(lr=0.1, backend=backend)
    with np.errstate(invalid="ignore"):
        opt.update([p], [g])
    assert_same(p[:2], np.array([2.0, -0.0]))
    assert np.isnan(p[2]) and p[3] == 1.0 - 0.1
    m = opt.state[0]["exp_avg"]
    assert np.isnan(m[2]) and m[3] == np.inf


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_adamax_steps_by_hand(dtype, backend):
    # lr = 0.5, betas (0.5, 0.75), eps = 0, g = 0.5: m = 0.25, u = max(0, 0.5) = 0.5,
    # step_size = 0.5/(1 - 0.5) = 1, p = 1 - 0.25/0.5 = 0.5 (exact)
    p = np.array([1.0], dtype=dtype)
    opt = fo.Adamax(lr=0.5, betas=(0.5, 0.75), eps=0.0, backend=backend)
    opt.update([p], [np.array([0.5], dtype=dtype)])
    assert (p[0], opt.state[0]["exp_avg"][0], opt.state[0]["exp_inf"][0]) == (0.5, 0.25, 0.5)
    # g = 0.1: u = max(0.75*0.5, 0.1) = 0.375 (the decayed norm wins),
    # m = 0.125 + 0.05 = 0.175, p = 0.5 - 0.5/(1 - 0.25) * 0.175/0.375
    opt.update([p], [np.array([0.1], dtype=dtype)])
    assert opt.state[0]["exp_inf"][0] == 0.375
    assert p[0] == pytest.approx(0.5 - 0.5 / 0.75 * 0.175 / 0.375, rel=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_adamax_eps_inside_the_max_and_nan_propagates(backend):
    # u = max(b2*u, |g| + eps): a zero gradient gives u = eps (no division by zero)
    p = np.array([1.0, 1.0])
    opt = fo.Adamax(eps=1e-3, backend=backend)
    opt.update([p], [np.array([0.0, -2.0])])
    assert opt.state[0]["exp_inf"].tolist() == [1e-3, 2.0 + 1e-3]
    # NaN from the gradient stays in u through the max (as torch.maximum), also after a
    # finite gradient: b2*NaN is NaN
    with np.errstate(invalid="ignore"):
        opt.update([p], [np.array([np.nan, 1.0])])
        opt.update([p], [np.array([1.0, 1.0])])
    u = opt.state[0]["exp_inf"]
    assert np.isnan(u[0]) and np.isnan(p[0]) and np.isfinite(u[1]) and np.isfinite(p[1])


def _nadam_torch_form(p, grads, lr, b1, b2, eps, wd, psi):
    """NAdam as torch.optim.NAdam writes it, in float64, the product multiplied up."""
    m = v = 0.0
    prod = 1.0
    out = []
    for t, g in enumerate(grads, 1):
        g = g + wd * p
        mu = b1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        prod *= mu
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        denom = math.sqrt(v / (1 - b2 ** t)) + eps
        p = p - lr * (1 - mu) / (1 - prod) * g / denom
        p = p - lr * mu_next / (1 - prod * mu_next) * m / denom
        out.append(p)
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_nadam_against_torch_form(backend):
    lr, b1, b2, eps, wd, psi = 0.01, 0.8, 0.99, 1e-6, 0.01, 0.01
    grads = [0.5, -0.3, 0.2, 0.7, -1.0, 0.05]
    expected = _nadam_torch_form(1.0, grads, lr, b1, b2, eps, wd, psi)
    p = np.array([1.0])
    opt = fo.NAdam(lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, momentum_decay=psi,
                   backend=backend)
    for g, e in zip(grads, expected):
        opt.update([p], [np.array([g])])
        assert p[0] == pytest.approx(e, rel=1e-13)


def test_nadam_product_closed_form():
    """rules._nadam_prod against the step-by-step product, and bounded cost for any step."""
    from fastoptim import rules

    for b1, psi in [(0.9, 4e-3), (0.99, 0.0), (0.5, 1.0), (0.999999, 1e-9), (0.9, 10.0)]:
        prod_of = rules._nadam_prod(b1, psi)
        prod = 1.0
        for t in range(1, 3001):
            prod *= rules._nadam_mu(b1, psi, t)
            if prod > 1e-300:
                assert prod_of(t) == pytest.approx(prod, rel=1e-12), (b1, psi, t)
    assert rules._nadam_prod(0.0, 4e-3)(5) == 0.0
    # the step scalars at a step of 10**9 are those of a vanished product, 1 - prod_t = 1
    scalars = rules.get("nadam").scalars(10**9, **rules.get("nadam").defaults)
    b1, lr = 0.9, 2e-3
    assert scalars[-1] == pytest.approx(lr * b1, rel=1e-12)
    assert scalars[-2] == pytest.approx(lr * (1 - b1), rel=1e-12)


def _radam_torch_form(p, grads, lr, b1, b2, eps, wd):
    """RAdam as torch.optim.RAdam writes it, in float64."""
    m = v = 0.0
    rho_inf = 2 / (1 - b2) - 1
    out = []
    for t, g in enumerate(grads, 1):
        g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1 ** t)
        rho_t = rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)
        if rho_t > 5:
            rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf
                             / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            p = p - m_hat * lr * math.sqrt(1 - b2 ** t) / (math.sqrt(v) + eps) * rect
        else:
            p = p - m_hat * lr
        out.append((p, rho_t > 5))
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_radam_against_torch_form_both_branches(backend):
    lr, b1, b2, eps, wd = 0.01, 0.9, 0.999, 1e-8, 0.01
    grads = [0.5, -0.3, 0.2, 0.7, -1.0, 0.05, 0.4, -0.2, 0.3, 0.1]
    expected = _radam_torch_form(1.0, grads, lr, b1, b2, eps, wd)
    # torch's switch: the first five steps are SGD with momentum, rectified from step 6
    assert [r for _, r in expected] == [False] * 5 + [True] * 5
    p = np.array([1.0])
    opt = fo.RAdam(lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, backend=backend)
    for g, (e, _) in zip(grads, expected):
        opt.update([p], [np.array([g])])
        assert p[0] == pytest.approx(e, rel=1e-13)


def test_radam_switch_from_the_step_scalars():
    from fastoptim import rules

    rule = rules.get("radam")
    flags = [rule.scalars(t, **rule.defaults)[-1] for t in range(1, 11)]
    assert flags == [0.0] * 5 + [1.0] * 5
    # beta2 = 0.5: rho_inf = 3 <= 5, never rectified (and no division by rho_inf - 4)
    hyper = dict(rule.defaults, betas=(0.9, 0.5))
    assert {rule.scalars(t, **hyper)[-1] for t in (1, 10, 10**6)} == {0.0}
    # unrectified: step_size is lr/(1 - b1**t), the SGD-with-momentum step on m_hat
    assert rule.scalars(3, **rule.defaults)[-2] == pytest.approx(1e-3 / (1 - 0.9 ** 3))


# -- torch.optim's options: Momentum's dampening, AdaGrad's lr_decay and
# initial_accumulator_value (docs/rules.rst) ----------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_momentum_dampening_by_hand(dtype, backend):
    # lr = 0.5, momentum = 0.5, dampening = 0.5, g = 1 then 1: torch's buf is g on the
    # first step (no dampening) and 0.5*buf + 0.5*g after; v = lr*buf
    o = fo.Momentum(lr=0.5, momentum=0.5, dampening=0.5, backend=backend)
    p = np.array([1.0, 2.0], dtype=dtype)
    o.update([p], [np.ones(2, dtype=dtype)])
    # v = 0.5*1 = 0.5; p = 1 - 0.5, 2 - 0.5
    assert o.state[0]["velocity"].tolist() == [0.5, 0.5]
    assert p.tolist() == [0.5, 1.5]
    o.update([p], [np.ones(2, dtype=dtype)])
    # v = 0.5*0.5 + 0.5*0.5*1 = 0.5 (buf = 0.5*1 + 0.5*1 = 1, times lr)
    assert o.state[0]["velocity"].tolist() == [0.5, 0.5]
    assert p.tolist() == [0.0, 1.0]
    o.update([p], [np.full(2, 3.0, dtype=dtype)])
    # v = 0.5*0.5 + 0.25*3 = 1.0
    assert o.state[0]["velocity"].tolist() == [1.0, 1.0]
    # dampening 0 is plain momentum, and its scalars do not depend on the step
    assert not fo.Momentum().rule.is_stepped(fo.Momentum().hyperparams)
    assert fo.Momentum(dampening=0.5).rule.is_stepped(dict(fo.Momentum().hyperparams,
                                                           dampening=0.5))


# -- the structural options: Adam's and AdamW's amsgrad, RMSprop's centered and momentum
# (a state buffer more: the rule's variant row, rules.VARIANTS) -----------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_amsgrad_by_hand(dtype, backend):
    # betas (0.5, 0.5), eps 0, lr 1; g = 2 then 0. Step 1: m = 1, v = 2, w = max(0, 2) = 2.
    # Step 2: m = 0.5, v = 1 < w = 2: the step divides by sqrt(w_hat), w_hat = 2/0.75,
    # m_hat = 0.5/0.75 (without amsgrad: sqrt(v_hat), v_hat = 1/0.75).
    for cls in (fo.Adam, fo.AdamW):
        o = cls(lr=1.0, betas=(0.5, 0.5), eps=0.0, weight_decay=0.0, amsgrad=True,
                backend=backend)
        p = np.array([10.0], dtype=dtype)
        o.update([p], [np.full(1, 2.0, dtype=dtype)])
        p1 = float(p[0])
        assert p1 == pytest.approx(10.0 - 1.0, rel=1e-6)  # m_hat/sqrt(v_hat) = 2/2
        o.update([p], [np.zeros(1, dtype=dtype)])
        st = o.state[0]
        assert st["exp_avg_sq"].tolist() == [1.0] and st["max_exp_avg_sq"].tolist() == [2.0]
        m_hat, w_hat, v_hat = 0.5 / 0.75, 2.0 / 0.75, 1.0 / 0.75
        assert float(p[0]) == pytest.approx(p1 - m_hat / math.sqrt(w_hat), rel=1e-6)
        assert float(p[0]) != pytest.approx(p1 - m_hat / math.sqrt(v_hat), rel=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_centered_and_momentum_rmsprop_by_hand(dtype, backend):
    def run(grads, **kw):
        o = fo.RMSprop(lr=1.0, eps=0.0, backend=backend, **kw)
        p = np.array([10.0], dtype=dtype)
        out = []
        for g in grads:
            o.update([p], [np.full(1, g, dtype=dtype)])
            out.append(float(p[0]))
        return out, o.state[0]

    # centered, alpha 0.5, g = 2: E = 2, a = 1, E - a*a = 1: p = 10 - 2/1 = 8
    out, st = run([2.0], alpha=0.5, centered=True)
    assert out == [8.0] and st["grad_avg"].tolist() == [1.0]
    # momentum 0.5, alpha 0.75, g = 2 then 0: E = 1, b = 2/1 = 2, p = 8; then E = 0.75,
    # b = 0.5*2 + 0 = 1, p = 7 (the velocity carries on without a gradient)
    out, st = run([2.0, 0.0], alpha=0.75, momentum=0.5)
    assert out == [8.0, 7.0] and st["momentum_buffer"].tolist() == [1.0]
    # both, alpha 0.5: E = 2, a = 1, b = 2/sqrt(1) = 2, p = 8; then g = 0: b = 1, p = 7
    out, st = run([2.0, 0.0], alpha=0.5, momentum=0.5, centered=True)
    assert out == [8.0, 7.0]
    assert st["grad_avg"].tolist() == [0.5] and st["square_avg"].tolist() == [1.0]


def test_a_structural_option_changes_only_without_state():
    """Before the first update a structural option picks another row (another kernel,
    other buffers); once there is state, changing it raises and changes nothing."""
    opt = fo.Adam()
    opt.amsgrad = True
    assert opt.rule.name == "adam_amsgrad" and type(opt).rule.name == "adam"
    opt.amsgrad = False
    assert opt.rule is fo.Adam.rule
    opt.update([np.ones(3)], [np.ones(3)])
    before = opt.state_dict()
    with pytest.raises(ValueError, match=r"amsgrad=True changes Adam's state buffers "
                                         r"\(exp_avg, exp_avg_sq -> exp_avg, exp_avg_sq, "
                                         r"max_exp_avg_sq\), which cannot change while it "
                                         r"holds state"):
        opt.amsgrad = True
    assert opt.amsgrad is False and opt.rule is fo.Adam.rule
    assert_same(opt.state[0]["exp_avg"], before["state"][0]["exp_avg"])
    # a value that keeps the row is a plain change: RMSprop's momentum 0.9 -> 0.5
    r = fo.RMSprop(momentum=0.9)
    r.update([np.ones(3)], [np.ones(3)])
    r.momentum = 0.5
    assert r.rule.name == "rmsprop_momentum"
    with pytest.raises(ValueError, match="momentum=0.0 changes RMSprop's state buffers"):
        r.momentum = 0.0
    with pytest.raises(ValueError, match="centered=True changes RMSprop's state buffers"):
        r.centered = True


def test_load_state_dict_takes_the_structural_options_along():
    """A state_dict of an amsgrad optimizer loads into one made without it (the row
    follows the loaded hyper-parameters), and continuing is bit-identical."""
    rng = np.random.default_rng(3)
    p = rng.standard_normal(50)
    gs = [rng.standard_normal(50) for _ in range(6)]
    a = fo.Adam(lr=0.1, amsgrad=True)
    q = p.copy()
    for g in gs[:3]:
        a.update([q], [g])
    b = fo.Adam(lr=0.5)
    b.update([np.ones(2)], [np.ones(2)])  # state of its own, replaced by the load
    b.load_state_dict(a.state_dict())
    assert b.rule.name == "adam_amsgrad" and b.amsgrad is True
    q2 = q.copy()
    for g in gs[3:]:
        a.update([q], [g])
        b.update([q2], [g])
    assert_same(q, q2)
    # and back: a state_dict without the buffer loads into the amsgrad optimizer
    c = fo.Adam()
    c.update([np.ones(2)], [np.ones(2)])
    b.load_state_dict(c.state_dict())
    assert b.rule is fo.Adam.rule and list(b.state[0]) == ["step", "exp_avg", "exp_avg_sq"]
    # a state_dict whose buffers do not match its own hyper-parameters is refused
    sd = a.state_dict()
    sd["hyperparams"]["amsgrad"] = False
    with pytest.raises(ValueError, match="must have the keys"):
        fo.Adam().load_state_dict(sd)


def test_variant_functions_in_the_functional_form():
    from fastoptim import functional as F

    p, m, v, w = np.ones(3), np.zeros(3), np.zeros(3), np.zeros(3)
    F.adam_amsgrad(p, np.ones(3), m, v, w, step=1, lr=0.1)
    assert w.tolist() == v.tolist() and v[0] > 0
    with pytest.raises(TypeError, match="amsgrad"):  # the rule's own function has no option
        F.adam(p, np.ones(3), m, v, step=2, amsgrad=True)


# -- LAMB (docs/rules.rst) ----------------------------------------------------------------

def _lamb_by_hand(p, grads, lr, b1, b2, eps, wd):
    """LAMB as the paper's Algorithm 2 writes it, in float64: explicit bias corrections,
    np.linalg.norm, the ratio ||p||/||u|| (1 where a norm is 0)."""
    p = np.array(p, dtype=np.float64)
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, 1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        u = (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps) + wd * p
        wn, un = np.linalg.norm(p), np.linalg.norm(u)
        p = p - lr * (wn / un if wn > 0 and un > 0 else 1.0) * u
    return p


@pytest.mark.parametrize("backend", BACKENDS)
def test_lamb_is_the_papers_algorithm(backend):
    rng = np.random.default_rng(11)
    lr, b1, b2, eps, wd = 0.05, 0.8, 0.95, 1e-3, 0.1
    ps = [rng.standard_normal(300), rng.standard_normal((9, 4)), np.zeros(10)]
    grads = [[rng.standard_normal(p.shape) for _ in range(6)] for p in ps]
    expected = [_lamb_by_hand(p, gs, lr, b1, b2, eps, wd) for p, gs in zip(ps, grads)]
    opt = fo.LAMB(lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, backend=backend)
    for step in range(6):
        opt.update(ps, [gs[step] for gs in grads])
    for p, e in zip(ps, expected):
        np.testing.assert_allclose(p, e, rtol=1e-12, atol=1e-15)
    # each array is its own layer: with one trust ratio for all three (the norms of
    # their concatenation) the result would differ
    flat = _lamb_by_hand(np.concatenate([q.ravel() for q in ps]),
                         [np.concatenate([gs[s].ravel() for gs in grads]) for s in range(6)],
                         lr, b1, b2, eps, wd)
    assert not np.allclose(np.concatenate([p.ravel() for p in ps]), flat, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lamb_zero_gradient_shrinks_by_lr(dtype):
    """g = 0 on the first step: m = v = 0, so u = wd*p, ||p||/||u|| = 1/wd and the step
    is p <- p - lr*(1/wd)*wd*p = p*(1 - lr): the decay sits inside the normalised
    direction (a decay outside it, AdamW's, would shrink by 1 - lr*wd)."""
    p = np.linspace(-2, 3, 1001).astype(dtype)
    p0 = p.copy()
    fo.LAMB(lr=0.1, weight_decay=0.01).update([p], [np.zeros_like(p)])
    np.testing.assert_allclose(p, p0 * (1 - 0.1), rtol=20 * np.finfo(dtype).eps)


def test_lamb_ratio_is_one_where_a_norm_is_zero():
    """A zero parameter (||p|| = 0) takes the plain step lr*u (apex's and timm's
    convention, not 0 * u); a zero direction (g = 0, wd = 0) leaves it as it is."""
    rng = np.random.default_rng(2)
    g = rng.standard_normal(500)
    p = np.zeros(500)
    fo.LAMB(lr=0.01, eps=1e-6).update([p], [g])
    # step 1: m_hat = g, v_hat = g*g, so u = g/(|g| + eps)
    np.testing.assert_allclose(p, -0.01 * g / (np.abs(g) + 1e-6), rtol=1e-12)
    q = rng.standard_normal(500)
    q0 = q.copy()
    fo.LAMB(lr=0.01).update([q], [np.zeros(500)])
    assert_same(q, q0)


# -- Schedule-Free AdamW (docs/rules.rst) -------------------------------------------------
# lr = 0.5, betas (0.5, 0.75), eps = 0, g = 0.5 at every step: v/(1 - b2**t) = g*g
# exactly, so the normalised gradient u is exactly 1 and every value below is exact.

def _sf(backend, **kw):
    return fo.ScheduleFreeAdamW(**{"lr": 0.5, "betas": (0.5, 0.75), "eps": 0.0, **kw},
                                backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_adagrad_lr_decay_and_initial_accumulator_by_hand(dtype, backend):
    # lr = 1, lr_decay = 1, eps = 0, G starts at 3: step 1 rate 1/(1+0) = 1, step 2
    # rate 1/(1+1) = 0.5
    o = fo.AdaGrad(lr=1.0, eps=0.0, lr_decay=1.0, initial_accumulator_value=3.0,
                   backend=backend)
    p = np.array([10.0], dtype=dtype)
    o.update([p], [np.ones(1, dtype=dtype)])
    # G = 3 + 1 = 4, p = 10 - 1*1/2
    assert o.state[0]["sum_sq"].tolist() == [4.0]
    assert p.tolist() == [9.5]
    o.update([p], [np.full(1, 3.0, dtype=dtype)])
    # G = 4 + 9 = 13, p = 9.5 - 0.5*3/sqrt(13)
    expected = dtype(9.5) - dtype(0.5) * (dtype(3.0) / np.sqrt(dtype(13.0)))
    assert p[0] == expected
    # the initial value is where a parameter's state starts, whenever it first steps: a
    # new one in a later call starts at 3 too (and at its own step 1, rate 1)
    q = np.array([10.0], dtype=dtype)
    o.update([p, q], [np.ones(1, dtype=dtype)] * 2)
    assert o.state[1]["sum_sq"].tolist() == [4.0] and q.tolist() == [9.5]


def test_options_that_need_the_step_in_the_functional_form():
    from fastoptim import functional as F

    p, v = np.ones(3), np.zeros(3)
    with pytest.raises(TypeError, match=r"momentum\(\) with dampening=0\.5 depends on the "
                                        r"step number: pass step=t"):
        F.momentum(p, np.ones(3), v, lr=0.1, dampening=0.5)
    assert p.tolist() == [1.0] * 3 and v.tolist() == [0.0] * 3
    F.momentum(p, np.ones(3), v, lr=0.5, dampening=0.5, step=2)  # lr*(1-d)*g = 0.25
    assert v.tolist() == [0.25] * 3
    F.momentum(p, np.ones(3), v, lr=0.5)  # no dampening: no step needed
    with pytest.raises(TypeError, match=r"adagrad\(\) with lr_decay=0\.1 depends"):
        F.adagrad(p, np.ones(3), np.zeros(3), lr_decay=0.1)
    with pytest.raises(TypeError, match="initial_accumulator_value"):  # the caller's state
        F.adagrad(p, np.ones(3), np.zeros(3), initial_accumulator_value=0.1)


def test_maximize_by_hand_and_its_checks():
    from fastoptim import functional as F

    # SGD, lr 0.5, g = 1, weight decay 0.5 at p = 2: torch's maximize negates g before
    # the decay is added: g' = -1 + 0.5*2 = 0, so p stays
    p = np.array([2.0])
    fo.SGD(lr=0.5, weight_decay=0.5, maximize=True).update([p], [np.ones(1)])
    assert p.tolist() == [2.0]
    p = np.array([2.0])
    fo.SGD(lr=0.5, maximize=True).update([p], [np.ones(1)])
    assert p.tolist() == [2.5]
    for backend in BACKENDS:  # the functional form has it too
        q = np.array([2.0])
        F.sgd(q, np.ones(1), lr=0.5, maximize=True, backend=backend)
        assert q.tolist() == [2.5]
    with pytest.raises(TypeError, match=r"maximize must be True or False, got 1"):
        fo.Adam(maximize=1)
    opt = fo.Adam()
    opt.maximize = np.bool_(True)
    assert opt.maximize is True


def test_state_dicts_from_before_the_options_load_with_them_off():
    """A state_dict without torch's options (maximize, dampening, lr_decay,
    initial_accumulator_value: added to the rules later) loads with their defaults; a
    state_dict missing a hyper-parameter of the rule itself is still refused."""
    for cls, options in ((fo.Momentum, ("maximize", "dampening")),
                         (fo.AdaGrad, ("maximize", "lr_decay", "initial_accumulator_value")),
                         (fo.Adam, ("maximize", "amsgrad")),
                         (fo.RMSprop, ("maximize", "momentum", "centered"))):
        opt = cls(lr=0.05)
        opt.update([np.ones(3)], [np.ones(3)])
        sd = opt.state_dict()
        for name in options:
            del sd["hyperparams"][name]
        other = cls(maximize=True)
        other.load_state_dict(sd)
        assert other.lr == 0.05 and other.maximize is False
        del sd["hyperparams"]["lr"]
        with pytest.raises(ValueError, match=r"hyperparams must have exactly the keys"):
            cls().load_state_dict(sd)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_schedulefree_adamw_steps_by_hand(dtype, backend):
    p, g = np.array([1.0], dtype=dtype), np.array([0.5], dtype=dtype)
    opt = _sf(backend)
    # step 1: lr_max = 0.5, weight = 0.5**2, ckp1 = 1; z starts as p = 1, v = 0.25*0.25;
    # u = 0.5/sqrt(0.0625/0.25) = 1; y = 1 + 1*(1 - 1) + 0.5*(0.5*0 - 1)*1 = 0.5;
    # z = 1 - 0.5*1 = 0.5
    opt.update([p], [g])
    st = opt.state[0]
    assert (p[0], st["z"][0], st["exp_avg_sq"][0]) == (0.5, 0.5, 0.0625)
    # step 2: weight_sum = 0.5, ckp1 = 0.5; v = 0.75*0.0625 + 0.0625 = 0.109375,
    # 1 - b2**2 = 0.4375, u = 1; y = 0.5 + 0.5*0 + 0.5*(0.5*0.5 - 1) = 0.125; z = 0
    opt.update([p], [g])
    assert (p[0], st["z"][0], st["exp_avg_sq"][0]) == (0.125, 0.0, 0.109375)
    assert opt.optimizer_state == {"step": 2, "lr_max": 0.5, "weight_sum": 0.5,
                                   "train_mode": True}
    # the average: x = y + (1 - 1/b1)*(z - y) = 0.125 + 0.125 = 0.25, which is also
    # x2 = (1 - ckp1)*x1 + ckp1*z2 = 0.5*0.5 + 0.5*0 (x1 = z1); and back to y
    opt.eval([p])
    assert p[0] == 0.25 and not opt.train_mode
    opt.train([p])
    assert p[0] == 0.125 and opt.train_mode


@pytest.mark.parametrize("backend", BACKENDS)
def test_schedulefree_adamw_decay_is_at_y_in_the_normalised_gradient(backend):
    # wd = 0.5: u = 1 + 0.5*y = 1.5 at y = 1; y = 1 - 0.5*1.5 = 0.25, z = 1 - 0.75
    p = np.array([1.0])
    opt = _sf(backend, weight_decay=0.5)
    opt.update([p], [np.array([0.5])])
    assert (p[0], opt.state[0]["z"][0]) == (0.25, 0.25)


def test_schedulefree_adamw_scalars_warmup_weighting_and_lr_history():
    """The optimizer-level recurrence (rules.schedulefree_step) by hand."""
    step = fo.rules.schedulefree_step
    hyper = dict(lr=0.5, betas=(0.5, 0.75), eps=1e-8, weight_decay=0.0, warmup_steps=2,
                 r=1.0, weight_lr_power=2.0)
    # k = 0: lr_0 = 0.5*1/2, lr_max = 0.25, weight = 1*0.25**2, ckp1 = 1
    s, lr_max, wsum = step(0, -1.0, 0.0, **hyper)
    assert (lr_max, wsum) == (0.25, 0.0625)
    assert s == (0.75, 0.25, 0.25, 1e-8, 0.0, 1.0, 0.25 * (0.5 * 0.0 - 1.0), 0.25)
    # k = 1: lr_1 = 0.5, weight = 2*0.25 = 0.5, weight_sum = 0.5625, ckp1 = 8/9
    s, lr_max, wsum = step(1, lr_max, wsum, **hyper)
    assert (lr_max, wsum, s[5], s[7]) == (0.5, 0.5625, 0.5 / 0.5625, 0.5)
    assert s[2] == 1.0 - 0.75 ** 2
    # a lower lr later: lr_max stays 0.5, so the weight is still (k+1)*0.5**2
    s, lr_max, wsum = step(2, lr_max, 0.5625, **dict(hyper, lr=0.1))
    assert (lr_max, wsum, s[7]) == (0.5, 0.5625 + 0.75, 0.1)
    # lr = 0: no weight at all, ckp1 = 0 (the authors' ZeroDivisionError case)
    s, _, wsum = step(0, -1.0, 0.0, **dict(hyper, lr=0.0))
    assert (wsum, s[5], s[6], s[7]) == (0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_schedulefree_adamw_keeps_the_learning_rate_history(backend):
    """ckp1 depends on every step's lr: raising lr mid-run (lr_max goes up, so do the
    weights) is the recurrence's, not a fresh run's at the new lr (which is what the
    functional API assumes)."""
    rng = np.random.default_rng(7)
    p = rng.standard_normal(20)
    q, f = p.copy(), p.copy()
    opt = fo.ScheduleFreeAdamW(lr=0.01, backend=backend)
    grads = [rng.standard_normal(20) for _ in range(4)]
    for g in grads[:2]:
        opt.update([p], [g])
    opt.lr = 0.1
    for g in grads[2:]:
        opt.update([p], [g])
    # the same by hand: the reference with the scalars of rules.schedulefree_step from
    # the optimizer's (k, lr_max, weight_sum), lr 0.01 then 0.1
    z, v = q.copy(), np.zeros_like(q)
    hyper = dict(fo.ScheduleFreeAdamW().hyperparams, lr=0.01)
    state = fo.rules.SCHEDULE_FREE_START
    for k, g in enumerate(grads):
        if k == 2:
            hyper["lr"] = 0.1
        scalars, lr_max, wsum = fo.rules.schedulefree_step(*state, **hyper)
        state = (k + 1, lr_max, wsum)
        fo.reference.schedulefree_adamw(q, g, z, v, **dict(zip(
            fo.ScheduleFreeAdamW.rule.scalar_names, scalars)))
    assert_same(p, q)
    assert opt.optimizer_state == {"step": 4, "lr_max": 0.1, "weight_sum": wsum,
                                   "train_mode": True}
    assert wsum == pytest.approx(2 * 0.01 ** 2 + 2 * 0.1 ** 2, rel=1e-15)
    # the functional's steps 3 and 4 (a run at lr 0.1 from step 1: ckp1 = 1/3, 1/4)
    # differ from the class's (ckp1 = 0.01/0.0102, ...)
    zf, vf = f.copy(), np.zeros_like(f)
    for k, g in enumerate(grads):
        fo.functional.schedulefree_adamw(f, g, zf, vf, step=k + 1,
                                         lr=0.01 if k < 2 else 0.1, backend=backend)
    assert not np.allclose(f, p, rtol=1e-3, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_schedulefree_adamw_eval_train_round_trip(dtype, backend):
    """eval() then train() gives y back to rounding: measured here as at most 4 units in
    the last place of max(|y|, |z|) per element (x = y + (1 - 1/b1)*(z - y) and back
    is exact in real arithmetic; two roundings of each of three operations)."""
    rng = np.random.default_rng(8)
    p = {"w": rng.standard_normal((30, 7)).astype(dtype),
         "b": np.asfortranarray(rng.standard_normal((5, 3)).astype(dtype))}
    opt = fo.ScheduleFreeAdamW(lr=0.05, backend=backend)
    for _ in range(6):
        opt.update(p, {k: rng.standard_normal(v.shape).astype(dtype) for k, v in p.items()})
    y = {k: v.copy() for k, v in p.items()}
    views = dict(p)
    opt.eval(p)
    assert all(p[k] is views[k] for k in p)  # in place
    beta1 = opt.betas[0]
    for k in p:
        z = opt.state[k]["z"]
        np.testing.assert_allclose(p[k], y[k] + (1 - 1 / beta1) * (z - y[k]),
                                   rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    opt.eval(p)  # already in eval mode: nothing happens
    x = {k: v.copy() for k, v in p.items()}
    opt.eval(p)
    assert all(np.array_equal(p[k], x[k]) for k in p)
    # eval mode: update is refused, nothing written, no step counted
    with pytest.raises(RuntimeError, match=r"eval mode.*opt\.train\(params\)"):
        opt.update(p, {k: np.ones_like(v) for k, v in p.items()})
    assert all(np.array_equal(p[k], x[k]) for k in p)
    assert opt.optimizer_state["step"] == 6 and opt.state["w"]["step"] == 6
    opt.train(p)
    ulp = np.finfo(dtype).eps
    for k in p:
        scale = np.maximum(np.abs(y[k]), np.abs(opt.state[k]["z"]))
        assert np.all(np.abs(p[k] - y[k]) <= 4 * ulp * scale), k
    assert opt.update(p, {k: np.ones_like(v) for k, v in p.items()})


def test_schedulefree_adamw_eval_train_errors_change_nothing():
    opt = fo.ScheduleFreeAdamW()
    w, b = np.ones(3), np.ones(2)
    opt.eval({"w": w})  # no state yet: nothing to move, the mode changes
    assert not opt.train_mode and w.tolist() == [1.0, 1.0, 1.0]
    opt.train({"w": w})
    opt.update({"w": w, "b": b}, {"w": np.ones(3), "b": np.ones(2)})
    before = w.copy()
    with pytest.raises(ValueError, match="missing 'b'"):
        opt.eval({"w": w})
    with pytest.raises(ValueError, match="shape"):
        opt.eval({"w": w, "b": np.ones(3)})
    assert opt.train_mode and np.array_equal(w, before)
    # numbers in a dict are rebound, as update does
    params = {"w": w, "b": b, "s": 2.0}
    opt.update(params, {"w": np.ones(3), "b": np.ones(2), "s": 1.0})
    s = params["s"]
    opt.eval(params)
    assert type(params["s"]) is float and params["s"] != s


def test_schedulefree_adamw_checkpoint_keeps_the_optimizer_state(tmp_path):
    """state_dict() and fastoptim.save/load carry (step, lr_max, weight_sum, train_mode),
    so that a resumed run with a changed lr is bit-identical."""
    rng = np.random.default_rng(9)
    grads = [rng.standard_normal(8) for _ in range(6)]
    p = rng.standard_normal(8)
    start = p.copy()

    def run(opt, p, gs):
        for g in gs:
            opt.update({"w": p}, {"w": g})
            opt.lr = opt.lr * 0.5  # a schedule on top: the history matters

    whole = fo.ScheduleFreeAdamW(lr=0.1, warmup_steps=2)
    run(whole, p, grads)
    q = start.copy()
    first = fo.ScheduleFreeAdamW(lr=0.1, warmup_steps=2)
    run(first, q, grads[:3])
    first.eval({"w": q})  # checkpoint at x, as the authors advise
    sd = first.state_dict()
    assert sd["optimizer_state"]["step"] == 3 and sd["optimizer_state"]["train_mode"] is False
    fo.save(first, tmp_path / "sf.ckpt")
    for second in (fo.load(tmp_path / "sf.ckpt"), fo.ScheduleFreeAdamW()):
        if not second.state:
            second.load_state_dict(sd)
        assert second.optimizer_state == first.optimizer_state
        r = q.copy()
        second.train({"w": r})
        run(second, r, grads[3:])
        assert_same(r, p)
    # a state_dict without it, or with a bad one, is refused and changes nothing
    fresh = fo.ScheduleFreeAdamW()
    with pytest.raises(ValueError, match="optimizer_state"):
        fresh.load_state_dict({k: v for k, v in sd.items() if k != "optimizer_state"})
    with pytest.raises(ValueError, match="weight_sum"):
        fresh.load_state_dict({**sd, "optimizer_state": {**sd["optimizer_state"],
                                                         "weight_sum": float("nan")}})
    assert fresh.optimizer_state["step"] == 0 and not fresh.state
    # another class's state_dict with the key is refused as usual (its keys do not fit)
    with pytest.raises(ValueError, match="keys"):
        fo.AdamW().load_state_dict({**fo.AdamW().state_dict(),
                                    "optimizer_state": sd["optimizer_state"]})


@pytest.mark.parametrize("backend", BACKENDS)
def test_schedulefree_adamw_late_parameter_takes_the_optimizers_step(backend):
    """Per-parameter steps differ: a parameter first updated at the optimizer's third
    update starts with z = itself, v = 0, and takes step 3's scalars (bias correction
    included), as the authors' per-group k."""
    rng = np.random.default_rng(10)
    a, b = rng.standard_normal(6), rng.standard_normal(6)
    b0 = b.copy()
    opt = fo.ScheduleFreeAdamW(lr=0.1, warmup_steps=5, backend=backend)
    for _ in range(2):
        opt.update({"a": a}, {"a": rng.standard_normal(6)})
    g = rng.standard_normal(6)
    opt.update({"a": a, "b": b}, {"a": rng.standard_normal(6), "b": g})
    assert (opt.state["a"]["step"], opt.state["b"]["step"]) == (3, 1)
    assert opt.optimizer_state["step"] == 3
    state = fo.rules.SCHEDULE_FREE_START
    for k in range(3):
        scalars, lr_max, wsum = fo.rules.schedulefree_step(*state, **opt.hyperparams)
        state = (k + 1, lr_max, wsum)
    z, v = b0.copy(), np.zeros(6)
    fo.reference.schedulefree_adamw(b0, g, z, v, **dict(zip(
        fo.ScheduleFreeAdamW.rule.scalar_names, scalars)))
    assert_same(b, b0)
    assert_same(opt.state["b"]["z"], z)


def test_schedulefree_adamw_skipped_or_refused_updates_leave_the_optimizer_state():
    opt = fo.ScheduleFreeAdamW(skip_nonfinite=True)
    w = np.ones(3)
    opt.update({"w": w}, {"w": np.ones(3)})
    before = opt.optimizer_state
    assert opt.update({"w": w}, {"w": np.array([1.0, np.nan, 1.0])}) is False
    assert opt.optimizer_state == before
    with pytest.raises(ValueError):
        opt.update({"w": w}, {"w": np.ones(4)})
    assert opt.optimizer_state == before and opt.state["w"]["step"] == 1
