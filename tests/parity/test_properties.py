"""Property-based equivalence (hypothesis): the compiled kernels and the NumPy reference
agree bit for bit on random inputs -- every parameter, every state buffer, every step.

Drawn: shapes (0-d, empty, 1-D to 3-D, up to ~1e5 elements), float32/float64, C or F
order, gradient layouts (C, F, strided, read-only, broadcast, NumPy scalars), values
(mostly finite normals over several magnitudes, sometimes inf, -inf, NaN, 0, -0,
subnormals or the largest float), hyper-parameters across their valid ranges including
the edges (momentum 0, alpha 0 and 1, rho 0 and 1, betas 0, eps 0, weight decay 0 and
> 0), 1-5 steps, 1-3 threads or None, serial thresholds left as built or forced low so
that the parallel split runs on small arrays, multi-parameter calls with parameters that
join late (different steps in one call) and tied parameters (one array under two keys).

"Bit for bit" is checked on the bit patterns: -0.0 differs from 0.0, and NaN is equal
to NaN (``np.array_equal(..., equal_nan=True)`` alone would let a sign of zero slip).

Reproducible by default: the profile ``fastoptim-ci`` is derandomized with a bounded
number of examples and no example database. ``FASTOPTIM_HYPOTHESIS=thorough`` runs many
more, randomized examples.
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastoptim import _core
from fastoptim import functional as F
from fastoptim._dispatch import kernels as _kernels

from conftest import OPTIMIZERS

# the thresholds fixture is set afresh by every example, so sharing it is fine
_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large,
           HealthCheck.function_scoped_fixture]
settings.register_profile("fastoptim-ci", max_examples=60, deadline=None,
                          derandomize=True, database=None, print_blob=True,
                          suppress_health_check=_HEALTH)
settings.register_profile("fastoptim-thorough", max_examples=1000, deadline=None,
                          print_blob=True, suppress_health_check=_HEALTH)
settings.load_profile("fastoptim-" + os.environ.get("FASTOPTIM_HYPOTHESIS", "ci"))

DTYPES = [np.float32, np.float64]

# -- hyper-parameters across their valid ranges, edges often -----------------------------

_unit_open = st.one_of(st.sampled_from([0.0, 0.5, 0.9, 0.999]),
                       st.floats(0.0, 1.0, exclude_max=True))
_unit_closed = st.one_of(st.sampled_from([0.0, 1.0, 0.9, 0.99]), st.floats(0.0, 1.0))
HYPER = {
    "lr": st.one_of(st.sampled_from([1e-3, 0.1, 0.0, 1.0]), st.floats(0.0, 10.0)),
    "weight_decay": st.one_of(st.sampled_from([0.0, 1e-4, 0.1]), st.floats(0.0, 1.0)),
    "momentum": _unit_open,
    "alpha": _unit_closed,
    "rho": _unit_closed,
    "eps": st.one_of(st.sampled_from([1e-8, 0.0, 1e-6]), st.floats(0.0, 1.0)),
    "betas": st.tuples(_unit_open, _unit_open),
    "momentum_decay": st.one_of(st.sampled_from([4e-3, 0.0, 1.0]), st.floats(0.0, 100.0)),
    "dampening": _unit_closed,
    "maximize": st.booleans(),
    "amsgrad": st.booleans(),
    "centered": st.booleans(),
    # bfloat16 state (float32 parameters; both backends refuse float64 ones alike); 8-bit
    # state for the rules that have it (hyper_for)
    "state_dtype": st.sampled_from([None, "bfloat16"]),
    "ema": st.one_of(st.sampled_from([0.0, 0.9, 0.999]), st.floats(0.0, 1.0, exclude_max=True)),
    "lr_decay": st.one_of(st.sampled_from([0.0, 0.01, 1.0]), st.floats(0.0, 10.0)),
    "initial_accumulator_value": st.one_of(st.sampled_from([0.0, 0.1, 1.0]),
                                           st.floats(0.0, 10.0)),
    "warmup_steps": st.one_of(st.sampled_from([0, 1, 3]), st.integers(0, 1000)),
    "r": st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(0.0, 8.0)),
    "weight_lr_power": st.one_of(st.sampled_from([2.0, 0.0, 1.0]), st.floats(0.0, 8.0)),
}
# where a rule's range differs from the name's usual one: Schedule-Free needs beta1 > 0
_unit_open_positive = st.one_of(st.sampled_from([0.5, 0.9, 0.999]),
                                st.floats(0.0, 1.0, exclude_min=True, exclude_max=True))
HYPER_OF_RULE = {
    ("schedulefree_adamw", "betas"): st.tuples(_unit_open_positive, _unit_open),
}


def hyper_for(cls):
    own = dict(HYPER)
    if cls.rule.int8_maps is not None:  # arrays of 4096 elements or more: 8-bit
        own["state_dtype"] = st.sampled_from([None, "bfloat16", "int8"])
    return st.fixed_dictionaries({n: HYPER_OF_RULE.get((cls._rule, n), own[n])
                                  for n in cls._hyper_names})


# -- arrays ------------------------------------------------------------------------------

@st.composite
def shapes(draw):
    """0-d, or 1-3 dims holding about a drawn budget of elements (a quarter of it to all
    of it, so that large sizes really occur), sometimes with a zero-length dimension."""
    ndim = draw(st.integers(0, 3))
    if ndim == 0:
        return ()
    budget = draw(st.sampled_from([8, 600, 20_000, 100_000]))
    dims, left = [], budget
    for i in range(ndim - 1):
        d = draw(st.integers(1, max(1, 2 * round(left ** (1.0 / (ndim - i))))))
        dims.append(d)
        left = max(1, left // d)
    dims.append(draw(st.integers(max(1, left // 4), left)))
    if draw(st.integers(0, 9)) == 0:
        dims[draw(st.integers(0, ndim - 1))] = 0
    return tuple(draw(st.permutations(dims)))


SPECIALS = ["inf", "-inf", "nan", "0", "-0", "subnormal", "-subnormal", "max"]


def _special(name, dtype):
    fi = np.finfo(dtype)
    return {"inf": np.inf, "-inf": -np.inf, "nan": np.nan, "0": 0.0, "-0": -0.0,
            "subnormal": fi.smallest_subnormal, "-subnormal": -fi.smallest_subnormal,
            "max": fi.max}[name]


@st.composite
def values(draw, shape, dtype):
    """Finite normals of one magnitude from a drawn seed (cheap at 1e5 elements); in
    about one array in four, one to three drawn special values at drawn positions."""
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([1.0, 1e-3, 1e3, 1e-30, 1e20]))
    a = (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)
    a = np.asarray(a)
    size = a.size
    if size and draw(st.integers(0, 99)) < 15:
        for idx, name in draw(st.lists(st.tuples(st.integers(0, size - 1),
                                                 st.sampled_from(SPECIALS)),
                                       min_size=1, max_size=3)):
            a.reshape(-1)[idx] = _special(name, dtype)
    return a


GRAD_LAYOUTS = ["same", "C", "F", "strided", "readonly", "broadcast", "scalar"]


def lay_out(values_, layout, order):
    """The gradient values in a given memory layout (same values, other strides)."""
    g = values_
    if layout == "same":
        return np.array(g, order=order)
    if layout in ("C", "F"):
        return np.array(g, order=layout)  # (np.ascontiguousarray would make 0-d 1-d)
    if layout == "strided":
        big = np.zeros(g.shape[:-1] + (2 * g.shape[-1] + 1,) if g.ndim else (3,), g.dtype)
        if g.ndim == 0:
            big[1] = g
            return big[1:2].reshape(())  # a view of a larger buffer
        view = big[..., 1::2]
        view[...] = g
        return view
    if layout == "readonly":
        r = np.array(g, order=order)
        r.flags.writeable = False
        return r
    if layout == "broadcast":  # zero strides: every row is the first one
        if g.ndim == 0 or g.shape[0] == 0:
            return g.copy()
        return np.broadcast_to(g[:1], g.shape)
    if layout == "scalar":     # a NumPy scalar for a 0-d parameter (as np.sum returns)
        return g[()] if g.ndim == 0 else g.copy()
    raise AssertionError(layout)


# -- the comparison ----------------------------------------------------------------------

def assert_bits(a, b, what, layout=True):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, what
    if layout:
        assert a.flags.c_contiguous == b.flags.c_contiguous, what
        assert a.flags.f_contiguous == b.flags.f_contiguous, what
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    assert np.array_equal(nan_a, nan_b), f"{what}: NaN positions differ"
    ints = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize]
    ua, ub = a.view(ints)[~nan_a], b.view(ints)[~nan_b]
    if not np.array_equal(ua, ub):
        i = np.flatnonzero(ua != ub)[0]
        raise AssertionError(f"{what}: differs first at non-NaN element {i}: "
                             f"{a[~nan_a][i]!r} vs {b[~nan_b][i]!r}")


def assert_same_state(opt_a, opt_b):
    assert opt_a.state.keys() == opt_b.state.keys()
    for key, st_a in opt_a.state.items():
        st_b = opt_b.state[key]
        assert st_a.keys() == st_b.keys()
        assert st_a["step"] == st_b["step"]
        for n in st_a:
            if n != "step":
                assert_bits(st_a[n], st_b[n], f"state {n!r} of {key!r}")


@pytest.fixture
def thresholds():
    """Set the serial thresholds inside a test; the built values come back afterwards."""
    old = _kernels.get_parallel_thresholds()
    yield lambda light, heavy: _kernels.set_parallel_thresholds(light=light, heavy=heavy)
    _kernels.set_parallel_thresholds(**old)


THRESHOLDS = st.sampled_from([None, None, 0, 1, 7, 1000])
THREADS = st.one_of(st.none(), st.integers(1, 3))


def run_both(cls, hyper, num_threads, params_fast, params_ref, grads_per_step):
    """The same calls on both backends; outcomes (success, or the same error) must
    match, and so must every parameter and state buffer after each call."""
    fast = cls(**hyper, num_threads=num_threads)
    ref = cls(**hyper, backend="numpy")
    for grads_fast, grads_ref, keys in grads_per_step:
        pf = {k: params_fast[k] for k in keys}
        pr = {k: params_ref[k] for k in keys}
        errors = []
        given = {k: np.array(g, copy=True) for k, g in grads_fast.items()}
        for opt, p, g in ((fast, pf, grads_fast), (ref, pr, grads_ref)):
            try:
                with np.errstate(all="ignore"):
                    opt.update(p, g)
                errors.append(None)
            except Exception as exc:  # both must refuse alike, or neither
                errors.append((type(exc), str(exc)))
        assert errors[0] == errors[1]
        for k, g in grads_fast.items():  # gradients are only ever read
            assert_bits(g, given[k], f"gradient {k!r}", layout=False)
        for k in params_fast:
            assert_bits(params_fast[k], params_ref[k], f"parameter {k!r}")
        assert_same_state(fast, ref)
        if errors[0] is not None:
            return fast, False
    return fast, True


# -- one parameter, every optimizer ------------------------------------------------------

@st.composite
def single_case(draw, cls):
    hyper = draw(hyper_for(cls))
    shape = draw(shapes())
    dtype = draw(st.sampled_from(DTYPES))
    order = draw(st.sampled_from("CF"))
    param = np.array(draw(values(shape, dtype)), order=order)
    steps = []
    for _ in range(draw(st.integers(1, 5))):
        g = draw(values(shape, dtype))
        steps.append(lay_out(g, draw(st.sampled_from(GRAD_LAYOUTS)), order))
    return (cls, hyper, param, steps, draw(THREADS), draw(THRESHOLDS), draw(THRESHOLDS))


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
@given(data=st.data())
def test_one_parameter_compiled_equals_reference(cls, data, thresholds):
    cls, hyper, param, steps, num_threads, light, heavy = data.draw(single_case(cls))
    thresholds(light, heavy)
    p_fast, p_ref = param.copy(order="K"), param.copy(order="K")
    grads = [({"w": g}, {"w": g}, ["w"]) for g in steps]
    fast, ok = run_both(cls, hyper, num_threads, {"w": p_fast}, {"w": p_ref}, grads)
    if ok:
        assert fast.state["w"]["step"] == len(steps)


# -- several parameters: mixed dtypes, orders, late joiners, tied weights ----------------

@st.composite
def multi_case(draw, cls):
    hyper = draw(hyper_for(cls))
    n = draw(st.integers(1, 4))
    specs = [(draw(shapes()), draw(st.sampled_from(DTYPES)), draw(st.sampled_from("CF")))
             for _ in range(n)]
    arrays = [np.array(draw(values(s, d)), order=o) for s, d, o in specs]
    # key -> array index: one array may appear under two keys (tied weights)
    owner = list(range(n))
    if n >= 2 and draw(st.booleans()):
        i, j = draw(st.permutations(range(n)))[:2]
        owner[j] = i
    keys = [f"p{i}" for i in range(n)]
    steps = []
    for _ in range(draw(st.integers(1, 5))):
        present = draw(st.lists(st.sampled_from(keys), unique=True, min_size=1))
        present = [k for k in keys if k in present]  # in a stable order
        grads = {}
        for k in present:
            shape, dtype, order = specs[owner[keys.index(k)]]
            g = draw(values(shape, dtype))
            grads[k] = lay_out(g, draw(st.sampled_from(GRAD_LAYOUTS)), order)
        steps.append((grads, present))
    return (cls, hyper, arrays, owner, keys, steps, draw(THREADS), draw(THRESHOLDS),
            draw(THRESHOLDS))


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
@given(data=st.data())
def test_many_parameters_compiled_equals_reference(cls, data, thresholds):
    (cls, hyper, arrays, owner, keys, steps, num_threads, light,
     heavy) = data.draw(multi_case(cls))
    thresholds(light, heavy)
    fast_arrays = [a.copy(order="K") for a in arrays]
    ref_arrays = [a.copy(order="K") for a in arrays]
    p_fast = {k: fast_arrays[owner[i]] for i, k in enumerate(keys)}
    p_ref = {k: ref_arrays[owner[i]] for i, k in enumerate(keys)}
    grads = [(g, g, present) for g, present in steps]
    run_both(cls, hyper, num_threads, p_fast, p_ref, grads)


# -- the functional layer: any step number ------------------------------------------------

@st.composite
def functional_case(draw, cls):
    hyper = draw(hyper_for(cls))
    shape = draw(shapes())
    dtype = draw(st.sampled_from(DTYPES))
    order = draw(st.sampled_from("CF"))
    param = np.array(draw(values(shape, dtype)), order=order)
    state = [np.array(np.abs(draw(values(shape, dtype))), order=order)
             for _ in _core.RULES[cls._rule][0]]  # any non-negative state
    grad = lay_out(draw(values(shape, dtype)), draw(st.sampled_from(GRAD_LAYOUTS)), order)
    # Schedule-Free's functional works its averaging weights out from step 1 (O(step):
    # they depend on every step's learning rate), so its steps go up to 10**5 only
    top = 10**5 if cls.rule.schedule_free else 10**9
    step = draw(st.one_of(st.integers(1, 10), st.integers(1, top)))
    return cls, hyper, param, state, grad, step, draw(THREADS), draw(THRESHOLDS)


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
@given(data=st.data())
def test_functional_compiled_equals_reference(cls, data, thresholds):
    cls, hyper, param, state, grad, step, num_threads, light = data.draw(functional_case(cls))
    thresholds(light, light)
    fn = getattr(F, cls._rule)
    names = [h.name for h in cls.rule.functional_hyper]  # not the state's initial values
    kwargs = {n: v for n, v in hyper.items() if n in names}
    if cls.rule.stepped or cls.rule.stepped_by:
        kwargs["step"] = step
    results = []
    for backend in ("compiled", "numpy"):
        p = param.copy(order="K")
        bufs = [b.copy(order="K") for b in state]
        with np.errstate(all="ignore"):
            fn(p, grad, *bufs, **kwargs, num_threads=num_threads, backend=backend)
        results.append([p, *bufs])
    for a, b in zip(*results):
        assert_bits(a, b, cls._rule)
