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
@pytest.mark.parametrize("cls", [c for c in OPTIMIZERS if c not in (fo.AdamW, fo.Lion)],
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


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
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
