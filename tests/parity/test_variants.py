"""The structural options' variants (``fastoptim.rules.VARIANTS``: Adam's and AdamW's
amsgrad, RMSprop's centered and momentum): compiled kernels == NumPy reference, bit for
bit, for every parameter and state buffer, over dtype x layout x thread count x CPU
target, as test_cases.py checks the rules themselves; and the functional forms of the
variants against the classes."""

import numpy as np
import pytest
from test_cases import LAYOUTS, STEPS, make, model

import fastoptim as fo
from fastoptim import functional as F
from fastoptim import rules

from conftest import DTYPES, HYPER, assert_same

# kernel row name -> (class, keywords that pick it), on top of the class's HYPER
VARIANT_CASES = {
    "adam_amsgrad": (fo.Adam, dict(amsgrad=True)),
    "adamw_amsgrad": (fo.AdamW, dict(amsgrad=True)),
    "rmsprop_centered": (fo.RMSprop, dict(centered=True)),
    "rmsprop_momentum": (fo.RMSprop, dict(momentum=0.7)),
    "rmsprop_centered_momentum": (fo.RMSprop, dict(momentum=0.7, centered=True)),
}


def test_every_variant_has_a_case():
    assert set(VARIANT_CASES) == {r.name for r in rules.VARIANTS}


def make_pair(name, **kw):
    cls, options = VARIANT_CASES[name]
    hyper = {**HYPER[cls], **options}
    fast, ref = cls(**hyper, **kw), cls(**hyper, backend="numpy")
    assert fast.rule.name == ref.rule.name == name  # the variant's kernel runs
    return fast, ref


def run(name, dtype, shape, order, num_threads, steps=STEPS, seed=0):
    rng = np.random.default_rng(seed)
    p0 = make(shape, order, dtype, rng)
    fast, ref = {"w": p0.copy(order="K")}, {"w": p0.copy(order="K")}
    of, orf = make_pair(name, num_threads=num_threads)
    for _ in range(steps):
        g = make(shape, order, dtype, rng)
        of.update(fast, {"w": g})
        orf.update(ref, {"w": g})
    return p0, fast, ref, of, orf


def assert_equivalent(fast, ref, of, orf, steps=STEPS):
    for k in fast:
        assert_same(fast[k], ref[k])
        assert list(of.state[k]) == list(orf.state[k]) == ["step", *of.rule.state]
        for n, b in of.state[k].items():
            if n == "step":
                assert b == orf.state[k]["step"] == steps
            else:
                assert_same(b, orf.state[k][n])


@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(VARIANT_CASES))
def test_variant_compiled_equals_reference(name, dtype, layout, num_threads):
    shape, order = LAYOUTS[layout]
    p0, fast, ref, of, orf = run(name, dtype, shape, order, num_threads)
    assert_equivalent(fast, ref, of, orf)
    if p0.size:
        assert not np.array_equal(fast["w"], p0)


@pytest.mark.parametrize("num_threads", [1, 2, 3, 4])
@pytest.mark.parametrize("name", list(VARIANT_CASES))
def test_variant_thread_count_invariance(name, num_threads, no_serial_threshold):
    assert_equivalent(*run(name, np.float32, (10_007,), "C", num_threads)[1:])


@pytest.mark.parametrize("num_threads", [1, 3])
@pytest.mark.parametrize("name", list(VARIANT_CASES))
def test_variant_every_target_across_arrays(name, num_threads, parallel_everything):
    rng = np.random.default_rng(0)
    p_fast = model(rng)
    p_ref = {k: v.copy(order="K") for k, v in p_fast.items()}
    of, orf = make_pair(name, num_threads=num_threads)
    for _ in range(10):
        grads = {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in p_fast.items()}
        of.update(p_fast, grads)
        orf.update(p_ref, grads)
    assert_equivalent(p_fast, p_ref, of, orf, steps=10)


@pytest.mark.parametrize("name", list(VARIANT_CASES))
def test_variant_large_arrays_every_target(name, target):
    rng = np.random.default_rng(1)
    p = {"a": rng.standard_normal(70_001).astype(np.float32),
         "b": rng.standard_normal((300, 101))}
    q = {k: v.copy() for k, v in p.items()}
    of, orf = make_pair(name)
    for _ in range(4):
        gs = {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in p.items()}
        of.update(p, gs)
        orf.update(q, gs)
    assert_equivalent(p, q, of, orf, steps=4)


@pytest.mark.parametrize("name", list(VARIANT_CASES))
def test_variant_maximize_is_the_rule_on_minus_g(name):
    rng = np.random.default_rng(7)
    p0 = rng.standard_normal(5003)
    grads = [rng.standard_normal(5003) for _ in range(STEPS)]
    cls, options = VARIANT_CASES[name]
    out = []
    for maximize, sign in ((True, 1), (False, -1)):
        p = p0.copy()
        opt = cls(**{**HYPER[cls], **options}, maximize=maximize)
        for g in grads:
            opt.update([p], [sign * g])
        out.append(p)
    assert_same(out[0], out[1])
    assert not np.array_equal(out[0], p0)


@pytest.mark.parametrize("backend", ["compiled", "numpy"])
@pytest.mark.parametrize("name", list(VARIANT_CASES))
def test_variant_functional_matches_class(name, backend):
    """fastoptim.functional.<variant> on caller-made state gives what the class gives."""
    cls, options = VARIANT_CASES[name]
    row = rules.BY_KERNEL[name]
    hyper = {**HYPER[cls], **options}
    rng = np.random.default_rng(4)
    p_cls = {"w": rng.standard_normal(100)}
    p_fun = p_cls["w"].copy()
    state = [np.zeros_like(p_fun) for _ in row.state]
    taken = {h.name for h in row.functional_hyper}
    assert not set(row.structural) - set(row.takes) & taken  # amsgrad, centered: not taken
    opt = cls(**hyper, backend=backend)
    for step in range(1, STEPS + 1):
        g = rng.standard_normal(100)
        opt.update(p_cls, {"w": g})
        kw = {n: v for n, v in hyper.items() if n in taken}
        if row.stepped:
            kw["step"] = step
        getattr(F, name)(p_fun, g, *state, backend=backend, **kw)
    assert_same(p_fun, p_cls["w"])
    for n, buf in zip(row.state, state):
        assert_same(buf, opt.state["w"][n])
