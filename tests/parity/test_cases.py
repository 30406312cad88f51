"""Compiled kernels == NumPy reference, bit for bit, for every parameter and state buffer,
over optimizer x dtype x layout x thread count, for 10+ steps; and the multi-array engine
on every CPU target this machine runs, across array boundaries, mixed dtypes and steps.
(The random-input counterpart is test_properties.py beside this file.)"""

import numpy as np
import pytest

import fastoptim as fo
from fastoptim._dispatch import kernels as _kernels

from conftest import DTYPES, HYPER, OPTIMIZERS, assert_same

# name -> (shape, order); sizes 1, 7, 1031 leave SIMD tails; 100_003 is above both serial
# thresholds, so the default build takes the parallel loop for it.
LAYOUTS = {
    "0d": ((), "C"),
    "empty": ((0,), "C"),
    "empty2d": ((3, 0), "C"),
    "n1": ((1,), "C"),
    "n7": ((7,), "C"),
    "n1031": ((1031,), "C"),
    "C2d": ((37, 29), "C"),
    "F2d": ((29, 37), "F"),
    "F3d": ((5, 7, 11), "F"),
    "large": ((100_003,), "C"),
}
STEPS = 12


def make(shape, order, dtype, rng):
    return np.asarray(rng.standard_normal(shape), dtype=dtype, order=order)


def run_pair(cls, dtype, shape, order, num_threads, seed=0, steps=STEPS):
    rng = np.random.default_rng(seed)
    p0 = make(shape, order, dtype, rng)
    fast = {"w": p0.copy(order="K")}
    ref = {"w": p0.copy(order="K")}
    opt_fast = cls(**HYPER[cls], num_threads=num_threads)
    opt_ref = cls(**HYPER[cls], backend="numpy")
    for _ in range(steps):
        g = make(shape, order, dtype, rng)
        opt_fast.update(fast, {"w": g})
        opt_ref.update(ref, {"w": g})
    return fast, ref, opt_fast, opt_ref


def assert_equivalent(fast, ref, opt_fast, opt_ref):
    assert_same(fast["w"], ref["w"])
    assert opt_fast.state.keys() == opt_ref.state.keys()
    for name, buf in opt_fast.state["w"].items():
        if name == "step":
            assert buf == opt_ref.state["w"]["step"] == STEPS
        else:
            assert_same(buf, opt_ref.state["w"][name])


@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_compiled_equals_reference(cls, dtype, layout, num_threads):
    shape, order = LAYOUTS[layout]
    fast, ref, of, orf = run_pair(cls, dtype, shape, order, num_threads)
    assert_equivalent(fast, ref, of, orf)
    # the parameter really moved (the comparison above is not between two no-ops)
    if fast["w"].size:
        rng = np.random.default_rng(0)
        assert not np.array_equal(fast["w"], make(shape, order, dtype, rng))


@pytest.mark.parametrize("layout", ["n1", "n7", "n1031", "F2d"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_parallel_loop_on_small_arrays(cls, dtype, layout, no_serial_threshold):
    """With the serial threshold at 0, even 1- and 7-element arrays go through prange."""
    shape, order = LAYOUTS[layout]
    assert_equivalent(*run_pair(cls, dtype, shape, order, num_threads=2))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_default_hyperparameters(cls, dtype):
    rng = np.random.default_rng(1)
    p0 = rng.standard_normal(1031).astype(dtype)
    a, b = [p0.copy()], [p0.copy()]
    fa, fb = cls(), cls(backend="numpy")
    for _ in range(STEPS):
        g = rng.standard_normal(1031).astype(dtype)
        fa.update(a, [g])
        fb.update(b, [g])
    assert_same(a[0], b[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_many_parameters_in_one_call(cls, dtype):
    """A model-like dict of mixed shapes and layouts, one update call per step."""
    rng = np.random.default_rng(2)
    shapes = {"W1": ((64, 33), "C"), "b1": ((33,), "C"), "W2": ((33, 10), "F"),
              "b2": ((10,), "C"), "s": ((), "C")}
    fast = {k: make(s, o, dtype, rng) for k, (s, o) in shapes.items()}
    ref = {k: v.copy(order="K") for k, v in fast.items()}
    of, orf = cls(**HYPER[cls]), cls(**HYPER[cls], backend="numpy")
    for _ in range(STEPS):
        grads = {k: make(s, o, dtype, rng) for k, (s, o) in shapes.items()}
        of.update(fast, grads)
        orf.update(ref, grads)
    for k in shapes:
        assert_same(fast[k], ref[k])
        for n in of.state[k]:
            if n != "step":
                assert_same(of.state[k][n], orf.state[k][n])


@pytest.mark.parametrize("grad_layout", ["F", "strided", "negative", "broadcast",
                                         "readonly"])
@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_gradient_in_any_layout(cls, grad_layout):
    """Gradients are read correctly whatever their layout, and never written."""
    rng = np.random.default_rng(3)
    p0 = rng.standard_normal((13, 9)).astype(np.float32)
    dense = rng.standard_normal((13, 9)).astype(np.float32)
    if grad_layout == "F":
        g = np.asfortranarray(dense)
    elif grad_layout == "strided":
        big = np.zeros((26, 18), np.float32)
        big[::2, ::2] = dense
        g = big[::2, ::2]
    elif grad_layout == "negative":
        g = dense[::-1, ::-1].copy()[::-1, ::-1]
    elif grad_layout == "broadcast":
        g = np.broadcast_to(dense[0], (13, 9))
        dense = np.array(g)
    else:
        g = dense.copy()
        g.flags.writeable = False
    g_before = np.array(g, copy=True)
    fast, ref = {"w": p0.copy()}, {"w": p0.copy()}
    cls(**HYPER[cls]).update(fast, {"w": g})
    cls(**HYPER[cls], backend="numpy").update(ref, {"w": dense})
    assert_same(fast["w"], ref["w"])
    assert_same(np.asarray(g), g_before)


@pytest.mark.parametrize("num_threads", [1, 2, 3, 4])
@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_thread_count_invariance(cls, num_threads, no_serial_threshold):
    """Bit-identical results for any thread count (here more threads than cores too)."""
    fast, ref, of, orf = run_pair(cls, np.float32, (10_007,), "C", num_threads, steps=STEPS)
    assert_equivalent(fast, ref, of, orf)


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_functional_api_matches_classes(cls):
    """fastoptim.functional on user-owned state gives what the class gives."""
    from fastoptim import functional as F

    rule = cls._rule
    hyper = dict(HYPER[cls])
    rng = np.random.default_rng(4)
    p_cls = {"w": rng.standard_normal(100).astype(np.float64)}
    p_fun = p_cls["w"].copy()
    names = fo._core.RULES[rule][0]
    # the caller makes the state, as the class starts it (rules.Rule.initial_values):
    # zeros, a hyper-parameter's value, or a copy of the parameter
    state = [p_fun.copy() if isinstance(v, str) else np.full_like(p_fun, v)
             for v in cls.rule.initial_values(cls.rule.check(**hyper))]
    taken = [h.name for h in cls.rule.functional_hyper]
    opt = cls(**hyper)
    for step in range(1, STEPS + 1):
        g = rng.standard_normal(100)
        opt.update(p_cls, {"w": g})
        kw = {n: v for n, v in hyper.items() if n in taken}
        if cls.rule.stepped or cls.rule.stepped_by:
            kw["step"] = step
        getattr(F, rule)(p_fun, g, *state, **kw)
    assert_same(p_fun, p_cls["w"])
    for n, buf in zip(names, state):
        assert_same(buf, opt.state["w"][n])


def test_kernel_refuses_mismatched_lengths():
    """The compiled layer itself never reads past a buffer, even if called directly."""
    p = np.zeros(5)
    with pytest.raises(ValueError, match="grad has 4 elements but the parameter has 5"):
        _kernels.sgd(p, np.zeros(4), lr=0.1, weight_decay=0.0)
    with pytest.raises(ValueError, match="a state buffer has 6 elements"):
        _kernels.adam(p, np.zeros(5), np.zeros(5), np.zeros(6), beta1=0.9,
                      one_minus_beta1=0.1, beta2=0.99, one_minus_beta2=0.01,
                      eps_hat=1e-8, weight_decay=0.0, step_size=0.1)


# -- the multi-array engine on every CPU target ------------------------------------------

def model(rng, dtypes=(np.float32, np.float64)):
    """Arrays of awkward sizes (SIMD tails, 0-d, empty), both dtypes, C and F order."""
    shapes = [(), (1,), (7,), (0,), (31, 33), (1031,), (5, 0), (17, 3, 5), (4099,)]
    params = {}
    for i, shape in enumerate(shapes):
        a = rng.standard_normal(shape).astype(dtypes[i % len(dtypes)])
        params[f"p{i}"] = np.asfortranarray(a) if i % 3 == 1 and a.ndim > 1 else a
    return params


def run_model(cls, params, grads_seq, **kw):
    opt = cls(**HYPER[cls], **kw)
    for grads in grads_seq:
        opt.update(params, grads)
    return opt


@pytest.mark.parametrize("num_threads", [1, 2, 3])
@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_every_target_matches_reference_across_arrays(cls, num_threads, parallel_everything):
    rng = np.random.default_rng(0)
    p_fast = model(rng)
    p_ref = {k: v.copy(order="K") for k, v in p_fast.items()}
    grads_seq = [{k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in p_fast.items()}
                 for _ in range(10)]
    of = run_model(cls, p_fast, grads_seq, num_threads=num_threads)
    orf = run_model(cls, p_ref, grads_seq, backend="numpy")
    for k in p_fast:
        assert_same(p_fast[k], p_ref[k])
        for n, b in of.state[k].items():
            if n == "step":
                assert b == orf.state[k]["step"] == 10
            else:
                assert_same(b, orf.state[k][n])


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_large_arrays_every_target(cls, target):
    """Above the default thresholds: the real parallel split of the default build."""
    rng = np.random.default_rng(1)
    p = {"a": rng.standard_normal(70_001).astype(np.float32),
         "b": rng.standard_normal((300, 101)),
         "c": rng.standard_normal(5).astype(np.float32)}
    q = {k: v.copy() for k, v in p.items()}
    gs = [{k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in p.items()}
          for _ in range(4)]
    run_model(cls, p, gs)
    run_model(cls, q, gs, backend="numpy")
    for k in p:
        assert_same(p[k], q[k])


def test_steps_differ_within_one_call(parallel_everything):
    """Parameters at different steps in one call get their own Adam bias corrections."""
    rng = np.random.default_rng(2)
    base = {f"w{i}": rng.standard_normal(100) for i in range(4)}
    fast = {k: v.copy() for k, v in base.items()}
    ref = {k: v.copy() for k, v in base.items()}
    of, orf = fo.Adam(lr=0.1, num_threads=2), fo.Adam(lr=0.1, backend="numpy")
    for i in range(4):  # parameter w{i} joins at call i: steps 4, 3, 2, 1 at the end
        keys = [f"w{j}" for j in range(i + 1)]
        g = {k: rng.standard_normal(100) for k in keys}
        of.update({k: fast[k] for k in keys}, g)
        orf.update({k: ref[k] for k in keys}, g)
    assert [of.state[f"w{i}"]["step"] for i in range(4)] == [4, 3, 2, 1]
    for k in base:
        assert_same(fast[k], ref[k])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_maximize_is_the_rule_on_minus_g(cls, dtype, no_serial_threshold):
    """maximize=True steps exactly as the same rule given -g (negation is exact), on the
    kernels (serial and parallel) and on the reference; the state is the same too."""
    rng = np.random.default_rng(7)
    p0 = rng.standard_normal(5003).astype(dtype)
    grads = [rng.standard_normal(5003).astype(dtype) for _ in range(STEPS)]
    runs = {}
    for name, maximize, sign in (("max", True, 1), ("neg", False, -1)):
        for backend, nt in (("compiled", 1), ("compiled", 2), ("numpy", None)):
            p = p0.copy()
            opt = cls(**HYPER[cls], maximize=maximize, backend=backend, num_threads=nt)
            for g in grads:
                opt.update([p], [g if sign == 1 else -g])
            runs[name, backend, nt] = (p, opt.state[0])
    first = runs["max", "compiled", 1]
    assert not np.array_equal(first[0], p0)
    for p, state in runs.values():
        assert_same(p, first[0])
        for n in cls.rule.state:
            assert_same(state[n], first[1][n])
