"""Aliasing and odd arrays: each case is either handled exactly as the reference handles
it, or refused with a clear error and nothing changed. The table "Aliasing and odd arrays"
of the docs' page docs/arrays.rst lists the outcome of every case below, by the same name.

Handled cases run on both backends (the compiled one with 1 and with 2 threads, the
serial thresholds forced to 0 so that even these small arrays take the parallel path)
and must agree bit for bit on every array involved (including the bases that views come
from) and every state buffer; the cases marked "as at the call" must also equal a run
in which each gradient is replaced by a plain copy of what it held when ``update`` was
called. Refused cases must raise the same error on both backends and change nothing: no
parameter, state buffer, step count or gradient.
"""

import os
import re

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import _core
from fastoptim._dispatch import kernels as _kernels

from conftest import HYPER, OPTIMIZERS

pytestmark = pytest.mark.filterwarnings(
    "ignore:the matrix subclass:PendingDeprecationWarning")

ARRAYS_PAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "docs", "arrays.rst")
OTHER_ORDER = ">" if np.little_endian else "<"


def bits_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind != "f":
        return np.array_equal(a, b)
    # 1-d, and NaNs replaced by a zero of a's own dtype: with NumPy < 2's value-based
    # casting, np.where(mask, 0, x) of a 0-d float32 x is float64
    a, b = a.reshape(-1), b.reshape(-1)
    zero = np.zeros((), a.dtype)
    return (np.array_equal(np.isnan(a), np.isnan(b))
            and np.array_equal(np.where(np.isnan(a), zero, a).view(f"u{a.itemsize}"),
                               np.where(np.isnan(b), zero, b).view(f"u{b.itemsize}")))


@pytest.fixture
def parallel_everything():
    old = _kernels.set_parallel_thresholds(light=0, heavy=0)
    yield
    _kernels.set_parallel_thresholds(**old)


# ---------------------------------------------------------------------------------------
# Worlds: a fresh set of arrays per run. ``arrays`` are everything to compare afterwards;
# ``calls`` is a list of (params, grads) for successive update calls.
# ---------------------------------------------------------------------------------------

def values(n, dtype, seed):
    return np.random.default_rng(seed).standard_normal(n).astype(dtype)


def w_grad_is_param(dtype, tmp):
    a = values(64, dtype, 1)
    return {"a": a}, [({"w": a}, {"w": a})] * 3


def w_grad_overlaps_param_forward(dtype, tmp):
    a = values(65, dtype, 2)
    return {"a": a}, [({"w": a[:-1]}, {"w": a[1:]})] * 3


def w_grad_overlaps_param_backward(dtype, tmp):
    a = values(65, dtype, 3)
    return {"a": a}, [({"w": a[1:]}, {"w": a[:-1]})] * 3


def w_grad_overlaps_param_2d(dtype, tmp):
    a = values(9 * 8, dtype, 4).reshape(9, 8)
    return {"a": a}, [({"w": a[1:]}, {"w": a[:-1]})] * 3


def w_grad_is_param_transposed(dtype, tmp):
    a = values(64, dtype, 5).reshape(8, 8)
    return {"a": a}, [({"w": a}, {"w": a.T})] * 3


def w_grad_is_another_param(dtype, tmp):
    a, b = values(64, dtype, 6), values(64, dtype, 7)
    return {"a": a, "b": b}, [({"a": a, "b": b}, {"a": b, "b": a})] * 3


def w_params_overlap(dtype, tmp):
    a = values(65, dtype, 8)
    g1, g2 = values(64, dtype, 9), values(64, dtype, 10)
    return {"a": a}, [({"p": a[:-1], "q": a[1:]}, {"p": g1, "q": g2})] * 3


def w_tied_params(dtype, tmp):
    a = values(64, dtype, 11)
    g1, g2 = values(64, dtype, 12), values(64, dtype, 13)
    return {"a": a}, [({"enc": a, "dec": a}, {"enc": g1, "dec": g2})] * 3


def _readonly(x):
    x.flags.writeable = False
    return x


def w_readonly_grad(dtype, tmp):
    a, g = values(64, dtype, 14), _readonly(values(64, dtype, 15))
    return {"a": a, "g": g}, [({"w": a}, {"w": g})] * 3


def w_readonly_view_of_param(dtype, tmp):
    a = values(64, dtype, 16)
    return {"a": a}, [({"w": a}, {"w": _readonly(a.view())})] * 3


def w_strided_grads(dtype, tmp):
    a = values(48, dtype, 17).reshape(6, 8)
    big = values(6 * 16, dtype, 18).reshape(6, 16)
    return {"a": a, "big": big}, [({"w": a}, {"w": big[:, ::2]}),
                                  ({"w": a}, {"w": big[::-1, 1::2]}),
                                  ({"w": a}, {"w": np.asfortranarray(big[:, :8])})]


def w_broadcast_grad(dtype, tmp):
    a, row = values(6 * 8, dtype, 19).reshape(6, 8), values(8, dtype, 20)
    return {"a": a, "row": row}, [({"w": a}, {"w": np.broadcast_to(row, (6, 8))})] * 3


def w_unaligned_grad(dtype, tmp):
    a = values(64, dtype, 21)
    raw = bytearray(64 * np.dtype(dtype).itemsize + 1)
    g = np.frombuffer(raw, dtype=dtype, count=64, offset=1)
    g_fill = np.frombuffer(raw, dtype=np.uint8, count=g.nbytes, offset=1)
    g_fill[:] = values(64, dtype, 22).view(np.uint8)
    assert not g.flags.aligned
    return {"a": a}, [({"w": a}, {"w": g})] * 3


def w_numpy_scalar_grad(dtype, tmp):
    s = np.array(0.75, dtype=dtype)
    return {"s": s}, [({"s": s}, {"s": dtype(0.25)}), ({"s": s}, {"s": dtype(-0.5)})]


def w_memmap_param(dtype, tmp):
    m = np.memmap(os.path.join(tmp, "w.dat"), dtype=dtype, mode="w+", shape=(8, 8))
    m[:] = values(64, dtype, 23).reshape(8, 8)
    g = values(64, dtype, 24).reshape(8, 8)
    return {"m": m, "file": lambda: np.fromfile(os.path.join(tmp, "w.dat"), dtype)}, \
        [({"w": m}, {"w": g})] * 3


def w_memmap_grad(dtype, tmp):
    path = os.path.join(tmp, "g.dat")
    values(64, dtype, 25).tofile(path)
    g = np.memmap(path, dtype=dtype, mode="r", shape=(64,))
    a = values(64, dtype, 26)
    return {"a": a}, [({"w": a}, {"w": g})] * 3


def w_copy_on_write_memmap_param(dtype, tmp):
    path = os.path.join(tmp, "c.dat")
    values(64, dtype, 27).tofile(path)
    m = np.memmap(path, dtype=dtype, mode="c", shape=(64,))
    return {"m": m, "file": lambda: np.fromfile(path, dtype)}, \
        [({"w": m}, {"w": values(64, dtype, 28)})] * 3


def w_matrix_param(dtype, tmp):
    m = np.asmatrix(values(12, dtype, 29).reshape(3, 4))
    return {"m": m}, [({"w": m}, {"w": values(12, dtype, 30).reshape(3, 4)})] * 3


# name -> (world, "as at the call" applies)
HANDLED = {
    "gradient is its parameter": (w_grad_is_param, True),
    "gradient overlaps its parameter (p = a[:-1], g = a[1:])":
        (w_grad_overlaps_param_forward, True),
    "gradient overlaps its parameter (p = a[1:], g = a[:-1])":
        (w_grad_overlaps_param_backward, True),
    "gradient overlaps its parameter, 2-D rows": (w_grad_overlaps_param_2d, True),
    "gradient is its parameter transposed": (w_grad_is_param_transposed, True),
    "gradient is another parameter": (w_grad_is_another_param, False),
    "parameters overlap (p = a[:-1], q = a[1:])": (w_params_overlap, False),
    "one array under two keys (tied weights)": (w_tied_params, False),
    "read-only gradient": (w_readonly_grad, True),
    "read-only view of its parameter as gradient": (w_readonly_view_of_param, True),
    "strided, reversed or F-ordered gradient": (w_strided_grads, True),
    "broadcast gradient (zero strides)": (w_broadcast_grad, True),
    "unaligned gradient": (w_unaligned_grad, True),
    "NumPy scalar gradient for a 0-d parameter": (w_numpy_scalar_grad, True),
    "np.memmap parameter": (w_memmap_param, True),
    "np.memmap gradient": (w_memmap_grad, True),
    "copy-on-write np.memmap parameter (mode 'c')": (w_copy_on_write_memmap_param, True),
    "np.matrix parameter": (w_matrix_param, True),
}


def snapshot_world(arrays):
    out = {}
    for k, v in arrays.items():
        out[k] = np.array(v() if callable(v) else v, copy=True)
    return out


def run_world(make, cls, dtype, tmp, *, backend="compiled", num_threads=None,
              copy_grads=False):
    arrays, calls = make(dtype, tmp)
    types = {k: type(v) for k, v in arrays.items()}
    opt = cls(**HYPER[cls], backend=backend, num_threads=num_threads)
    with np.errstate(all="ignore"):
        for params, grads in calls:
            if copy_grads:  # what each gradient holds at the call, in a fresh array
                grads = {k: np.array(g, copy=True) for k, g in grads.items()}
            opt.update(params, grads)
    for k, v in arrays.items():
        assert type(v) is types[k]  # the caller's objects, not replaced
    if isinstance(arrays.get("m"), np.memmap):
        arrays["m"].flush()
    return snapshot_world(arrays), opt


def assert_runs_equal(run_a, run_b):
    (wa, oa), (wb, ob) = run_a, run_b
    assert wa.keys() == wb.keys()
    for k in wa:
        assert bits_equal(wa[k], wb[k]), k
    sa, sb = oa.state, ob.state
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].keys() == sb[key].keys()
        for n in sa[key]:
            assert bits_equal(sa[key][n], sb[key][n]), (key, n)


HANDLED_COMBOS = [(cls, case) for cls in OPTIMIZERS for case in HANDLED]


@pytest.mark.parametrize("cls, case", HANDLED_COMBOS,
                         ids=[f"{c.__name__}-{k}" for c, k in HANDLED_COMBOS])
def test_handled_as_the_reference(cls, case, tmp_path, parallel_everything):
    make, as_at_call = HANDLED[case]
    dtype = np.float32 if OPTIMIZERS.index(cls) % 2 else np.float64
    dirs = iter(tmp_path / f"run{i}" for i in range(5))

    def run(**kw):
        d = next(dirs)
        d.mkdir()
        return run_world(make, cls, dtype, str(d), **kw)

    reference = run(backend="numpy")
    for nt in (1, 2):
        assert_runs_equal(run(num_threads=nt), reference)
    if as_at_call:
        assert_runs_equal(run(backend="numpy", copy_grads=True), reference)
    # updated in place: the caller's own memory changed
    d = next(dirs)
    d.mkdir()
    original = snapshot_world(make(dtype, str(d))[0])
    assert any(not bits_equal(reference[0][k], original[k])
               for k in ("a", "m", "s") if k in original)


def test_memmap_parameter_reaches_its_file(tmp_path):
    for mode, reaches in (("w+", True), ("c", False)):
        path = tmp_path / f"{mode}.dat"
        np.arange(6, dtype=np.float32).tofile(path)
        m = np.memmap(path, dtype=np.float32, mode="r+" if mode == "w+" else mode,
                      shape=(6,))
        fo.SGD(lr=1.0).update([m], [np.ones(6, np.float32)])
        m.flush()
        on_disk = np.fromfile(path, dtype=np.float32)
        expected = np.arange(6, dtype=np.float32) - 1 if reaches else np.arange(6)
        assert np.array_equal(on_disk, expected)
        assert np.array_equal(m, np.arange(6, dtype=np.float32) - 1)


# ---------------------------------------------------------------------------------------
# Refused: a clear error, the same on both backends, and nothing changed
# ---------------------------------------------------------------------------------------

def _memmap_readonly(tmp):
    path = os.path.join(tmp, "ro.dat")
    np.ones(3).tofile(path)
    return np.memmap(path, dtype=np.float64, mode="r", shape=(3,))


def _unaligned_param(tmp):
    raw = bytearray(3 * 8 + 1)
    p = np.frombuffer(raw, dtype=np.float64, count=3, offset=1)
    return p


# name -> (bad parameter or None, bad gradient or None (then: ones like the param),
#          exception, message); makers take the temporary directory
REFUSED = {
    "parameter in non-native byte order": (
        lambda t: np.ones(3, OTHER_ORDER + "f8"), lambda t: np.ones(3), TypeError,
        r"parameter 'b' has dtype float64 in non-native byte order"),
    "gradient in non-native byte order": (
        None, lambda t: np.ones(3, OTHER_ORDER + "f8"), TypeError,
        r"gradient 'b' has dtype float64 in non-native byte order .* but its parameter "
        r"is float64; cast it with grad\.astype\(np\.float64\)"),
    "integer parameter": (
        lambda t: np.arange(3), lambda t: np.ones(3, np.int64), TypeError,
        r"parameter 'b' has dtype int64; fastoptim updates native float32 or float64"),
    "integer gradient": (
        None, lambda t: np.arange(3), TypeError,
        r"gradient 'b' has dtype int64 but its parameter is float64"),
    "object parameter": (
        lambda t: np.array([1.0, 2.0, 3.0], dtype=object), lambda t: np.ones(3),
        TypeError, r"parameter 'b' has dtype object"),
    "object gradient": (
        None, lambda t: np.array([1.0, 2.0, 3.0], dtype=object), TypeError,
        r"gradient 'b' has dtype object but its parameter is float64"),
    "bool, float16 or complex parameter": (
        lambda t: np.ones(3, np.complex128), lambda t: np.ones(3, np.complex128),
        TypeError, r"parameter 'b' has dtype complex128"),
    "masked-array parameter": (
        lambda t: np.ma.array(np.ones(3), mask=[0, 1, 0]), lambda t: np.ones(3),
        TypeError, r"parameter 'b' is a masked array"),
    "masked-array gradient": (
        None, lambda t: np.ma.array(np.ones(3), mask=[0, 1, 0]), TypeError,
        r"gradient 'b' is a masked array.*grad\.filled\(0\)"),
    "read-only np.memmap parameter (mode 'r')": (
        _memmap_readonly, lambda t: np.ones(3), ValueError,
        r"parameter 'b' is read-only"),
    "non-contiguous parameter": (
        lambda t: np.ones(6)[::2], lambda t: np.ones(3), TypeError,
        r"parameter 'b' is not contiguous.*will not update a copy"),
    "unaligned parameter": (
        _unaligned_param, lambda t: np.ones(3), TypeError,
        r"parameter 'b' is not aligned"),
    "Python list": (
        lambda t: [1.0, 2.0, 3.0], lambda t: np.ones(3), TypeError,
        r"parameter 'b' must be a NumPy array .*got list"),
}

REFUSED_COMBOS = [(cls, case) for cls in OPTIMIZERS for case in REFUSED]


@pytest.mark.parametrize("cls, case", REFUSED_COMBOS,
                         ids=[f"{c.__name__}-{k}" for c, k in REFUSED_COMBOS])
def test_refused_with_a_clear_error_and_nothing_changed(cls, case, tmp_path):
    make_p, make_g, exc, match = REFUSED[case]
    messages = []
    for backend in ("compiled", "numpy"):
        good = {"W": np.linspace(-1, 1, 6).reshape(2, 3), "b": np.linspace(0, 1, 3)}
        opt = cls(**HYPER[cls], backend=backend)
        opt.update(good, {k: np.full_like(v, 0.5) for k, v in good.items()})  # state
        d = tmp_path / backend
        d.mkdir()
        bad_p = make_p(str(d)) if make_p else good["b"]
        bad_g = make_g(str(d))
        params = {"W": good["W"], "b": bad_p}
        grads = {"W": np.full((2, 3), 0.25), "b": bad_g}
        before = {k: np.array(v, copy=True) for k, v in {**good, "bad_p": bad_p}.items()}
        grad_before = np.array(bad_g, copy=True)
        state_before = {k: {n: np.array(b, copy=True) for n, b in s.items()}
                        for k, s in opt.state.items()}
        with pytest.raises(exc, match=match) as info:
            opt.update(params, grads)
        messages.append((type(info.value), str(info.value).replace(str(d), "<dir>")))
        for k, v in {**good, "bad_p": bad_p}.items():
            assert np.array_equal(np.asarray(v), before[k]), k
        assert np.array_equal(np.asarray(bad_g), grad_before)
        assert opt.state.keys() == state_before.keys()
        for k, s in opt.state.items():
            for n, b in s.items():
                assert np.array_equal(b, state_before[k][n]), (k, n)
    assert messages[0] == messages[1]  # the same refusal on both backends


@pytest.mark.parametrize("bad", [np.ones(3, np.bool_), np.ones(3, np.float16)],
                         ids=["bool", "float16"])
def test_other_non_float_parameters(bad):
    with pytest.raises(TypeError, match=rf"parameter 0 has dtype {bad.dtype}"):
        fo.Adam().update([bad], [bad.copy()])


# ---------------------------------------------------------------------------------------
# A gradient that is an optimizer state buffer (``opt.state[key][name]`` is live)
# ---------------------------------------------------------------------------------------

OWN_STATE = [pytest.param(cls, n, id=f"{cls.__name__}-{n}")
             for cls in OPTIMIZERS for n in _core.RULES[cls._rule][0]]


@pytest.mark.parametrize("cls, name", OWN_STATE)
def test_gradient_is_its_own_state_buffer(cls, name, parallel_everything):
    """Both backends read such a gradient as it was at the call (like the functional
    API, which copies it), for any thread count."""
    hyper = {**HYPER[cls], "weight_decay": 0.0}  # decay would make a fresh gradient

    def run(backend, copy=False, num_threads=None):
        w = np.linspace(-1, 1, 50)
        opt = cls(**hyper, backend=backend, num_threads=num_threads)
        opt.update({"w": w}, {"w": np.linspace(0.5, 1.5, 50)})
        for _ in range(2):
            g = opt.state["w"][name]
            opt.update({"w": w}, {"w": g.copy() if copy else g})
        return {"w": w}, opt

    expected = run("numpy", copy=True)
    for nt in (1, 2):
        assert_runs_equal(run("compiled", num_threads=nt), expected)
    assert_runs_equal(run("numpy"), expected)


def _state_as_other_params_gradient(num_threads, backend, as_param=False):
    """Four parameters x, b, a, y (x and y large): b's gradient -- or b itself -- is a's
    velocity. With 2 threads, the first thread's range ends with b and the second's
    starts with a, so the second thread writes a's velocity long before the first reads
    it, while the reference, in key order, updates b first."""
    n_big, n = 4_000_000, 4096
    params = {"x": np.ones(n_big, np.float32), "b": np.ones(n, np.float32),
              "a": np.ones(n, np.float32), "y": np.ones(n_big, np.float32)}
    grads = {k: np.full_like(v, 0.5) for k, v in params.items()}
    opt = fo.Momentum(lr=0.1, momentum=0.5, num_threads=num_threads, backend=backend)
    opt.update(params, grads)
    if as_param:
        params["b"] = opt.state["a"]["velocity"]  # b's state (same shape) continues
    else:
        grads["b"] = opt.state["a"]["velocity"]
    opt.update(params, grads)
    return {k: v.copy() for k, v in params.items()}, opt


@pytest.mark.parametrize("as_param", [False, True], ids=["gradient", "parameter"])
def test_state_buffer_of_another_parameter_serial(as_param):
    ref = _state_as_other_params_gradient(None, "numpy", as_param)
    assert_runs_equal(_state_as_other_params_gradient(1, "compiled", as_param), ref)


@pytest.mark.skipif(not _kernels.openmp_enabled(), reason="serial build: no threads")
@pytest.mark.parametrize("as_param", [False, True], ids=["gradient", "parameter"])
def test_state_buffer_of_another_parameter_threads(as_param):
    ref = _state_as_other_params_gradient(None, "numpy", as_param)
    for _ in range(3):  # without the check of state buffers the race showed every time
        assert_runs_equal(_state_as_other_params_gradient(2, "compiled", as_param), ref)


# ---------------------------------------------------------------------------------------
# The docs' page docs/arrays.rst documents every case
# ---------------------------------------------------------------------------------------

def test_docs_table_lists_every_case():
    text = open(ARRAYS_PAGE, encoding="utf-8").read()
    section = text[text.index("\nAliasing and odd arrays\n"):]
    # up to the next section title (a line of "-" under it), if there is one
    end = re.search(r"\n\n[^\n]+\n-{3,}\n", section[1:])
    section = section[:end.start() + 1] if end else section
    # the first cell of each row of the list-table: "   * - case"
    rows = {m.group(1).strip() for m in re.finditer(r"^\s*\* - (.+)$", section, re.M)}
    rows = {r.replace("`", "") for r in rows}
    missing = [c for c in [*HANDLED, *REFUSED, "gradient is an optimizer state buffer"]
               if c not in rows]
    assert len(rows) > 30, "is this test still reading the table's rows?"
    assert not missing, f"the table in docs/arrays.rst lacks: {missing}"
