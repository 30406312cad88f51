"""fastoptim.demo.plain, the plain NumPy optimizers ``fastoptim demo`` measures fastoptim
against: one for every rule of the table, with the fastoptim class's keywords and
defaults, and the same rule -- equal to the NumPy reference (and so to fastoptim) to
rounding over several steps, for float32 and float64, with the defaults and with other
values of every hyper-parameter. The library never imports them."""

import ast
import inspect
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import rules
from fastoptim.demo import loop, plain

# Values other than every default, each large enough to matter in every rule's result
# (eps 1e-3 against gradients of about 1, for one: a misplaced eps shows): a rule with a
# hyper-parameter not named here fails test_every_hyper_parameter_has_a_test_value.
OTHER = {"lr": 0.03, "momentum": 0.5, "eps": 1e-3, "alpha": 0.9, "rho": 0.8,
         "betas": (0.8, 0.95), "weight_decay": 0.1, "momentum_decay": 0.01,
         "dampening": 0.3, "lr_decay": 0.05, "initial_accumulator_value": 0.2,
         "maximize": True, "warmup_steps": 3, "r": 0.5, "weight_lr_power": 1.0,
         "amsgrad": True, "centered": True, "ema": 0.7}
STEPS = 8   # RAdam's first five steps are unrectified, the next three rectified

# The tolerance, in units of the dtype's machine epsilon, relative to max(|p|, 1): the
# plain versions compute the same rule in another order of operations (Adam's bias
# corrections on m and v rather than folded into two scalars, AdaDelta's two square
# roots, NAdam's running product...), so each step may round differently, by an ulp or
# so of the parameter; over these 8 steps the largest difference measured was 4 ulps
# (NAdam). 32 ulps (float32 3.8e-6, float64 7.1e-15) leaves room for that and still fails
# any other rule: the steps here move every parameter by about 1e-2 to 1e-1.
ULPS = 32


def _names(rule):
    """The rule's hyper-parameters but ``state_dtype``: how fastoptim's engine stores the
    state, not the rule's math; the plain classes, written as a user writes them, keep
    float state (plain_optimizer refuses another format)."""
    return tuple(n for n in rule.hyper_names if n != "state_dtype")


def test_plain_optimizer_keeps_float_state():
    assert isinstance(plain.plain_optimizer("adam", state_dtype=None), plain.Adam)
    with pytest.raises(ValueError, match="keep float state"):
        plain.plain_optimizer("adam", state_dtype="bfloat16")


def test_every_rule_has_a_plain_version():
    assert sorted(plain.PLAIN) == sorted(r.class_name for r in rules.RULES)
    for rule in rules.RULES:
        cls = plain.PLAIN[rule.class_name]
        assert cls.__name__ == rule.class_name and callable(cls.update)
        assert isinstance(plain.plain_optimizer(rule.name), cls)
        assert isinstance(plain.plain_optimizer(rule.class_name), cls)


@pytest.mark.parametrize("rule", rules.RULES, ids=lambda r: r.class_name)
def test_keywords_and_defaults_are_the_rules(rule):
    sig = inspect.signature(plain.PLAIN[rule.class_name])
    assert tuple(sig.parameters) == _names(rule)
    assert {k: p.default for k, p in sig.parameters.items()} == {
        n: rule.defaults[n] for n in _names(rule)}


def test_every_hyper_parameter_has_a_test_value():
    for rule in rules.RULES:
        for h in rule.hyper:
            if h.name not in _names(rule):
                continue
            assert h.name in OTHER, (rule.class_name, h.name)
            assert OTHER[h.name] != h.default, (rule.class_name, h.name)
            h.check(h.name, OTHER[h.name])   # a valid value


def _run(rule, hyper, dtype, seed=0, count_state=True):
    """STEPS updates of two parameters (a matrix and a vector) with the plain optimizer
    and with the NumPy reference, on the same gradients; returns both parameter dicts
    and the initial ones. ``count_state``: the plain optimizer keeps as many state
    arrays as the row ``hyper`` picks (amsgrad's third, ...)."""
    rng = np.random.default_rng(seed)
    p0 = {"W": rng.standard_normal((6, 9)).astype(dtype),
          "b": rng.standard_normal(9).astype(dtype)}
    ours = {k: v.copy() for k, v in p0.items()}
    theirs = {k: v.copy() for k, v in p0.items()}
    opt = plain.plain_optimizer(rule.class_name, **hyper)
    ref = loop.PlainReference(getattr(fo, rule.class_name)(**hyper))
    for _ in range(STEPS):
        grads = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in p0.items()}
        copies = {k: g.copy() for k, g in grads.items()}
        opt.update(ours, grads)
        ref.update(theirs, grads)
        for k, g in grads.items():
            assert np.array_equal(g, copies[k]), "the plain update wrote to a gradient"
    # float32 stays float32: parameters (updated in place) and every state array
    state = [a for d in vars(opt).values() if isinstance(d, dict) for a in d.values()]
    if count_state:
        assert len(state) == 2 * len(rule.row_for(hyper).state)
    assert all(a.dtype == dtype for a in [*ours.values(), *state])
    if hyper.get("ema"):  # the moving averages are compared too
        ours.update({f"ema of {k}": a for k, a in (opt.average or {}).items()})
        theirs.update({f"ema of {k}": rec[-1] for k, rec in ref.state.items()})
    return ours, theirs, p0


def _close(ours, theirs, dtype):
    """Every parameter within ULPS ulps of the reference's, relative to max(|p|, 1)."""
    tol = ULPS * np.finfo(dtype).eps
    if set(ours) != set(theirs):  # a moving average not kept
        return False
    return all(np.allclose(ours[k] / np.maximum(np.abs(theirs[k]), 1),
                           theirs[k] / np.maximum(np.abs(theirs[k]), 1), rtol=0, atol=tol)
               for k in theirs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("which", ["defaults", "other values"])
@pytest.mark.parametrize("rule", rules.RULES, ids=lambda r: r.class_name)
def test_plain_agrees_with_the_reference(rule, which, dtype):
    hyper = {} if which == "defaults" else {h: OTHER[h] for h in _names(rule)}
    ours, theirs, p0 = _run(rule, hyper, dtype)
    for k in p0:
        assert not np.array_equal(theirs[k], p0[k])
    assert _close(ours, theirs, dtype), (
        rule.class_name, {k: np.abs(ours[k] - theirs[k]).max() for k in p0})


def test_the_tolerance_catches_a_wrong_rule(monkeypatch):
    """A slip a user might make fails the comparison: eps added to sqrt(v) rather than
    sqrt(v_hat) in Adam, Nesterov with the old velocity, AdaDelta's eps outside the
    root."""
    rule = rules.get("adam")
    hyper = {h: OTHER[h] for h in _names(rule) if h not in ("amsgrad", "ema")}

    def adam_eps_outside(self, params, grads):
        if self.m is None:
            self.m = {k: np.zeros_like(v) for k, v in params.items()}
            self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t += 1
        lr_t = self.lr * np.sqrt(1 - self.beta2 ** self.t) / (1 - self.beta1 ** self.t)
        for key in params:
            g = grads[key] + self.weight_decay * params[key]
            self.m[key] = self.beta1 * self.m[key] + (1 - self.beta1) * g
            self.v[key] = self.beta2 * self.v[key] + (1 - self.beta2) * g * g
            params[key] -= lr_t * self.m[key] / (np.sqrt(self.v[key]) + self.eps)

    monkeypatch.setattr(plain.Adam, "update", adam_eps_outside)
    ours, theirs, _ = _run(rule, hyper, np.float64)
    assert not _close(ours, theirs, np.float64)
    monkeypatch.undo()

    def nesterov_old_velocity(self, params, grads):
        if self.v is None:
            self.v = {k: np.zeros_like(v) for k, v in params.items()}
        for key in params:
            g = grads[key] + self.weight_decay * params[key]
            old = self.v[key]
            self.v[key] = self.momentum * old + self.lr * g
            params[key] -= self.momentum * old + self.lr * g

    rule = rules.get("nesterov")
    monkeypatch.setattr(plain.Nesterov, "update", nesterov_old_velocity)
    ours, theirs, _ = _run(rule, {h: OTHER[h] for h in _names(rule) if h != "ema"},
                           np.float32)
    assert not _close(ours, theirs, np.float32)


def test_nadam_running_product_is_the_tables_closed_form():
    """NAdam keeps the running product of its momentum schedule, as torch does;
    fastoptim computes it from the step number. Over 500 steps the two stay within
    1e-12 relative."""
    beta1, psi = 0.9, 4e-3
    prod = rules._nadam_prod(beta1, psi)
    opt = plain.NAdam(betas=(beta1, 0.999), momentum_decay=psi)
    p, g = {"w": np.zeros(1)}, {"w": np.ones(1)}
    for step in range(1, 501):
        opt.update(p, g)
        if step in (1, 2, 10, 100, 500):
            assert opt.mu_product == pytest.approx(prod(step), rel=1e-12, abs=0)


def test_a_rule_without_a_plain_version_is_an_error(monkeypatch):
    monkeypatch.delitem(plain.PLAIN, "RAdam")
    with pytest.raises(NotImplementedError, match="no plain NumPy version of RAdam"):
        plain.plain_optimizer("radam")
    with pytest.raises(KeyError, match="no rule 'lbfgs'"):
        plain.plain_optimizer("lbfgs")


def test_the_library_never_imports_the_plain_versions():
    src = Path(fo.__file__).resolve().parent
    for path in src.rglob("*.py"):
        part = path.relative_to(src).parts[0]
        if part in ("demo", "cli"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [f"{node.module or ''}.{a.name}" for a in node.names]
            else:
                continue
            assert not any("plain" in n.split(".") for n in names), (path, node.lineno)
    code = ("import sys, numpy as np, fastoptim as fo\n"
            "from fastoptim import rules\n"
            "for r in rules.RULES:\n"
            "    getattr(fo, r.class_name)().update([np.ones(3)], [np.ones(3)])\n"
            "print('fastoptim.demo.plain' in sys.modules)")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(src.parent) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_every_hyper_parameter_matters_at_this_tolerance(dtype):
    """With one hyper-parameter of the plain optimizer left at its default (as if its
    class ignored it), the comparison fails: the test values and the tolerance are such
    that every hyper-parameter of every rule is checked."""
    for rule in rules.RULES:
        hyper = {h: OTHER[h] for h in _names(rule)}
        for name in _names(rule):
            real = plain.PLAIN[rule.class_name]

            def ignoring(real=real, name=name, default=rule.defaults[name], **kw):
                return real(**{**kw, name: default})

            plain.PLAIN[rule.class_name] = ignoring
            try:
                ours, theirs, _ = _run(rule, hyper, dtype, count_state=False)
            finally:
                plain.PLAIN[rule.class_name] = real
            assert not _close(ours, theirs, dtype), (rule.class_name, name)
