"""Every rule's ``ema`` option (the parameters' moving average, fastoptim.rules.EMA_FLAG):
compiled kernels == NumPy reference, bit for bit, for every parameter, state buffer and
average, over every kernel row (rules and variants) x dtype x layout x thread count x CPU
target; and the average against its definition, computed here from the parameters the
optimizer produced, step by step."""

import numpy as np
import pytest
from test_cases import LAYOUTS, STEPS, make, model
from test_variants import VARIANT_CASES, assert_equivalent

import fastoptim as fo
from fastoptim import rules

from conftest import DTYPES, HYPER, assert_same

# every kernel row but Schedule-Free's (which has no ema): (class, keywords picking it)
CASES = {r.name: (getattr(fo, r.class_name), {}) for r in rules.RULES if not r.schedule_free}
CASES.update(VARIANT_CASES)
DECAY = 0.9  # far from 1, so a slip in the average shows within a few steps


def test_every_row_but_schedule_free_has_a_case():
    assert set(CASES) == {r.name for r in rules.KERNEL_ROWS if not r.schedule_free}
    assert "ema" not in rules.get("ScheduleFreeAdamW").hyper_names


def make_pair(name, ema=DECAY, **kw):
    cls, options = CASES[name]
    hyper = {**HYPER[cls], **options, "ema": ema}
    fast, ref = cls(**hyper, **kw), cls(**hyper, backend="numpy")
    assert fast.rule.name == ref.rule.name == name  # the row's own kernel runs...
    assert fast.rule.state[-1] == "ema" and fast._rule_id & rules.EMA_FLAG  # ...with ema
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
    return fast, ref, of, orf


@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CASES))
def test_ema_compiled_equals_reference(name, dtype, layout, num_threads):
    shape, order = LAYOUTS[layout]
    assert_equivalent(*run(name, dtype, shape, order, num_threads), STEPS)


@pytest.mark.parametrize("num_threads", [1, 2, 3, 4])
@pytest.mark.parametrize("name", ["sgd", "adam", "lion", "rmsprop_centered_momentum"])
def test_ema_thread_count_invariance(name, num_threads, no_serial_threshold):
    # 10_007 elements: several of the engine's 2048-element blocks, split mid-block
    # between threads
    fast, ref, of, orf = run(name, np.float32, (10_007,), "C", num_threads)
    assert_equivalent(fast, ref, of, orf, STEPS)


@pytest.mark.parametrize("num_threads", [1, 3])
@pytest.mark.parametrize("name", list(CASES))
def test_ema_every_target_across_arrays(name, num_threads, parallel_everything):
    rng = np.random.default_rng(0)
    p_fast = model(rng)
    p_ref = {k: v.copy(order="K") for k, v in p_fast.items()}
    of, orf = make_pair(name, num_threads=num_threads)
    for _ in range(6):
        grads = {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in p_fast.items()}
        of.update(p_fast, grads)
        orf.update(p_ref, grads)
    assert_equivalent(p_fast, p_ref, of, orf, 6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["momentum", "adam", "adamw_amsgrad", "adagrad"])
def test_the_average_is_its_definition(name, dtype, target):
    """a_1 = p_1, a_t = d*a_{t-1} + (1-d)*p_t, computed here in the parameter's dtype
    from the parameters after each step (5000 elements: blocks and a tail), equals the
    state ``ema`` bit for bit; and the parameters are those of the same optimizer
    without ema (the option does not touch the step)."""
    rng = np.random.default_rng(3)
    p = {"w": rng.standard_normal(5000).astype(dtype)}
    plain = {"w": p["w"].copy()}
    of, _ = make_pair(name)
    cls, options = CASES[name]
    without = cls(**{**HYPER[cls], **options})
    t = np.dtype(dtype).type
    d, omd = t(DECAY), t(1.0 - DECAY)
    avg = None
    for _ in range(7):
        g = {"w": rng.standard_normal(5000).astype(dtype)}
        of.update(p, g)
        without.update(plain, g)
        avg = p["w"].copy() if avg is None else d * avg + omd * p["w"]
        assert_same(of.state["w"]["ema"], avg)
    assert_same(p["w"], plain["w"])
    assert not np.array_equal(avg, p["w"])


def test_group_decays_differ_in_one_pass():
    """A group with its own decay: each parameter's average follows its group's."""
    rng = np.random.default_rng(5)
    p = {"a": rng.standard_normal(3000), "b": rng.standard_normal(3000)}
    opt = fo.Adam(lr=0.01, ema=0.9, groups=[{"keys": ["b"], "ema": 0.5}])
    solo = {k: fo.Adam(lr=0.01, ema=e) for k, e in (("a", 0.9), ("b", 0.5))}
    q = {k: v.copy() for k, v in p.items()}
    for _ in range(5):
        g = {k: rng.standard_normal(3000) for k in p}
        opt.update(p, g)
        for k in q:
            solo[k].update({k: q[k]}, {k: g[k]})
    for k in p:
        assert_same(p[k], q[k])
        assert_same(opt.state[k]["ema"], solo[k].state[k]["ema"])
