"""Arrays that are not ndarrays: objects with ``__dlpack__`` (torch CPU tensors, ...) are
viewed with ``np.from_dlpack`` and updated in place, or refused with an error; never is a
copy updated. These tests need only NumPy: small producer classes stand in for other
libraries (tests/test_torch_interop.py does it with torch when it is installed)."""

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import functional as F

from conftest import HYPER, OPTIMIZERS, assert_same


class Producer:
    """A DLPack producer over a NumPy array (as a torch CPU tensor is over its storage),
    with torch's ``data_ptr()``."""

    def __init__(self, array):
        self.array = array

    def __dlpack__(self, **kwargs):
        return self.array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()

    def data_ptr(self):
        return self.array.__array_interface__["data"][0]


class LegacyProducer(Producer):
    """A producer from before DLPack 1.0: no copy/max_version keywords, no read-only
    flag, so NumPy views it read-only."""

    def __dlpack__(self, stream=None):
        return self.array.__dlpack__(stream=stream)


class CopyingProducer(Producer):
    """Exports a copy of its memory (what a producer that must convert would do)."""

    def __dlpack__(self, **kwargs):
        return self.array.copy().__dlpack__(**kwargs)


class RefusingProducer(Producer):
    """Refuses to export, as torch does for a tensor that requires grad."""

    def __dlpack__(self, **kwargs):
        raise RuntimeError("Can't export tensors that require gradient, use tensor.detach()")


def make(dtype, seed=0):
    rng = np.random.default_rng(seed)
    params = {"W": rng.standard_normal((5, 7)).astype(dtype),
              "F": np.asfortranarray(rng.standard_normal((6, 3)).astype(dtype)),
              "b": rng.standard_normal(7).astype(dtype),
              "big": rng.standard_normal(50_000).astype(dtype)}   # parallel above threshold
    grads = [{k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}
             for _ in range(3)]
    return params, grads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_update_through_dlpack_is_in_place_and_bit_identical(cls, dtype, backend):
    ref_params, grads = make(dtype)
    params = {k: v.copy(order="K") for k, v in ref_params.items()}
    wrapped = {k: Producer(v) for k, v in params.items()}
    ref_opt = cls(**HYPER[cls], backend=backend)
    opt = cls(**HYPER[cls], backend=backend)
    for i, g in enumerate(grads):
        ref_opt.update(ref_params, g)
        # gradients as producers too, on every other step
        opt.update(wrapped, {k: Producer(v) for k, v in g.items()} if i % 2 else g)
    for k in params:
        assert_same(params[k], ref_params[k])      # the producers' own memory changed
        assert wrapped[k].array is params[k]
    for k, st in ref_opt.state.items():
        assert opt.state[k]["step"] == st["step"] == len(grads)
        for n, buf in st.items():
            if n != "step":
                assert_same(opt.state[k][n], buf)


def test_list_of_producers():
    params, grads = make(np.float32)
    ref = [v.copy() for v in params.values()]
    fo.SGD(lr=0.1).update([Producer(v) for v in params.values()], list(grads[0].values()))
    fo.SGD(lr=0.1).update(ref, list(grads[0].values()))
    for a, b in zip(params.values(), ref):
        assert_same(a, b)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_functional_with_producers(backend):
    p = np.linspace(-1, 1, 11, dtype=np.float32)
    g = np.full(11, 0.25, dtype=np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    p2, m2, v2 = p.copy(), m.copy(), v.copy()
    for step in (1, 2):
        F.adam(Producer(p), Producer(g), Producer(m), Producer(v), step=step, lr=0.1,
               backend=backend)
        F.adam(p2, g, m2, v2, step=step, lr=0.1, backend=backend)
    for a, b in ((p, p2), (m, m2), (v, v2)):
        assert_same(a, b)
    with pytest.raises(ValueError, match="read-only"):
        F.momentum(p, g, LegacyProducer(np.zeros_like(p)), backend=backend)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_clip_grad_norm_with_producers(backend):
    g = {"a": np.full(4, 3.0), "b": np.full(2, 4.0, dtype=np.float32)}
    ref = {k: v.copy() for k, v in g.items()}
    norm = fo.clip_grad_norm({k: Producer(v) for k, v in g.items()}, 1.0, backend=backend)
    assert norm == fo.clip_grad_norm(ref, 1.0, backend=backend)
    for k in g:
        assert_same(g[k], ref[k])
        assert not np.array_equal(g[k], np.full_like(g[k], 3.0 if k == "a" else 4.0))


def good_and(bad_param):
    rng = np.random.default_rng(1)
    params = {"a": rng.standard_normal(8), "b": bad_param}
    grads = {"a": rng.standard_normal(8), "b": np.ones(np.shape(bad_param.array))}
    return params, grads


@pytest.mark.parametrize("bad, exc, match", [
    (LegacyProducer(np.ones(4)), ValueError,
     r"parameter 'b' is a .*LegacyProducer that NumPy sees as read-only through DLPack"),
    (CopyingProducer(np.ones(4)), TypeError,
     r"parameter 'b' is a .*CopyingProducer whose NumPy view through DLPack is a copy"),
    (RefusingProducer(np.ones(4)), TypeError,
     r"parameter 'b' is a .*RefusingProducer that NumPy cannot view in host memory "
     r"\(RuntimeError: Can't export tensors that require gradient.*p\.detach\(\)"),
    (Producer(np.ones((4, 6))[:, ::2]), TypeError, r"parameter 'b' is not contiguous"),
    (Producer(np.ones(4, dtype=np.float16)), TypeError, r"parameter 'b' has dtype float16"),
])
def test_refused_producers_change_nothing(bad, exc, match):
    params, grads = good_and(bad)
    before = {"a": params["a"].copy(), "b": bad.array.copy()}
    opt = fo.Adam()
    with pytest.raises(exc, match=match):
        opt.update(params, grads)
    assert_same(params["a"], before["a"])
    assert_same(bad.array, before["b"])
    assert opt.state == {}


def test_read_only_producer_refused_as_parameter():
    a = np.ones(4)
    a.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fo.SGD().update({"b": Producer(a)}, {"b": np.ones(4)})


def test_gradients_may_be_read_only_or_legacy_producers():
    ro = np.full(4, 2.0)
    ro.flags.writeable = False
    p, q = np.zeros(4), np.zeros(4)
    fo.SGD(lr=0.5).update([p, q], [Producer(ro), LegacyProducer(np.full(4, 2.0))])
    assert_same(p, np.full(4, -1.0))
    assert_same(q, np.full(4, -1.0))


def test_refusing_gradient_names_itself():
    with pytest.raises(TypeError, match=r"gradient 'w' is a .*RefusingProducer.*detach"):
        fo.SGD().update({"w": np.zeros(3)}, {"w": RefusingProducer(np.ones(3))})


def test_objects_without_dlpack_keep_their_error():
    with pytest.raises(TypeError, match=r"parameter 'b' must be a NumPy array.*got list"):
        fo.SGD().update({"b": [1.0, 2.0]}, {"b": np.ones(2)})


def test_one_producer_as_params():
    """Like one ndarray, one DLPack producer (e.g. a single torch tensor) is a
    parameter list of one; its memory is what changes."""
    w = np.ones(4)
    fo.SGD(lr=0.5).update(Producer(w), np.ones(4))
    assert_same(w, np.full(4, 0.5))
