"""Arrays that are not ndarrays: objects with ``__dlpack__`` (torch CPU tensors, ...) are
viewed with ``np.from_dlpack`` and updated in place, or refused with an error; never is a
copy updated. These tests need only NumPy: small producer classes stand in for other
libraries (tests/test_torch_interop.py does it with torch when it is installed)."""

import ctypes
import gc
import weakref

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import _dlpack
from fastoptim import functional as F

from conftest import HYPER, OPTIMIZERS, assert_same

# NumPy < 2.1: ndarray.__dlpack__ has no max_version (legacy capsules only, and none of a
# read-only array), and np.from_dlpack makes read-only views; fastoptim reads DLPack 1.0
# capsules itself there (fastoptim._dlpack)
OLD_NUMPY = not _dlpack.NUMPY_HAS_DLPACK_1

_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.restype = ctypes.py_object
_capsule_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
# raw-pointer forms, for the capsule destructor (which gets the dying capsule's address)
_name_of = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.c_void_p)(
    ("PyCapsule_GetName", ctypes.pythonapi))
_pointer_of = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi))
_VERSIONED = b"dltensor_versioned"  # a capsule keeps a pointer to its name: keep it alive
_LIVE = {}  # address of a DLManagedTensorVersioned -> its VersionedExport


def _release(address):
    _LIVE.pop(address, None)


# DLPack's rules: a consumer renames the capsule and calls the deleter when done; the
# capsule's destructor calls it only for a capsule nobody consumed
_DELETER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(_release)


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _DESTRUCTOR(capsule):
    name = _name_of(capsule)
    if name == _VERSIONED:
        _release(_pointer_of(capsule, name))


_CODES = {"i": 0, "u": 1, "f": 2, "c": 5, "b": 6}


class VersionedExport:
    """A DLManagedTensorVersioned over a NumPy array, built by hand: what a DLPack 1.0
    producer (torch, NumPy >= 2.1) exports, on any NumPy. It (and the array) lives until
    the consumer calls its deleter or, unconsumed, its capsule is destroyed."""

    def __init__(self, array, flags=None):
        self.array = array
        n = array.ndim
        self.shape = (ctypes.c_int64 * max(n, 1))(*array.shape)
        self.strides = (ctypes.c_int64 * max(n, 1))(*(s // array.itemsize
                                                      for s in array.strides))
        m = _dlpack._DLManagedTensorVersioned()
        m.version.major, m.version.minor = 1, 0
        m.deleter = ctypes.cast(_DELETER, ctypes.c_void_p)
        m.flags = (0 if array.flags.writeable else 1) if flags is None else flags
        t = m.dl_tensor
        t.data = array.__array_interface__["data"][0]
        t.device.device_type, t.device.device_id = 1, 0  # kDLCPU
        t.ndim = n
        t.dtype.code, t.dtype.bits, t.dtype.lanes = (_CODES[array.dtype.kind],
                                                     8 * array.itemsize, 1)
        t.shape = ctypes.cast(self.shape, ctypes.POINTER(ctypes.c_int64))
        t.strides = ctypes.cast(self.strides, ctypes.POINTER(ctypes.c_int64))
        self.managed = m
        _LIVE[ctypes.addressof(m)] = self
        self.capsule = _capsule_new(ctypes.addressof(m), _VERSIONED,
                                    ctypes.cast(_DESTRUCTOR, ctypes.c_void_p))


class Producer:
    """A DLPack producer over a NumPy array (as a torch CPU tensor is over its storage),
    with torch's ``data_ptr()``. Asked for a DLPack 1.0 capsule it exports one: NumPy's
    own (NumPy >= 2.1) or, with ``versioned_by_hand`` (the default on older NumPy, whose
    arrays cannot), a :class:`VersionedExport`."""

    def __init__(self, array, versioned_by_hand=OLD_NUMPY):
        self.array = array
        self.by_hand = versioned_by_hand

    def exported(self):
        return self.array

    def __dlpack__(self, **kwargs):
        if self.by_hand and kwargs.get("max_version"):
            e = VersionedExport(self.exported())
            capsule, e.capsule = e.capsule, None  # the capsule's owner is the consumer
            return capsule
        if OLD_NUMPY:  # NumPy < 2.1 arrays take only stream=
            kwargs = {k: v for k, v in kwargs.items() if k == "stream"}
        return self.exported().__dlpack__(**kwargs)

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

    def exported(self):
        return self.array.copy()


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


@pytest.fixture(params=["numpy", "fastoptim"])
def reader(request, monkeypatch):
    """Who reads DLPack 1.0 capsules: NumPy itself where it can (>= 2.1), or
    fastoptim._dlpack (what NumPy < 2.1 gets; forced on newer NumPy too)."""
    if request.param == "numpy" and OLD_NUMPY:
        pytest.skip(f"NumPy {np.__version__} cannot read DLPack 1.0 capsules")
    if request.param == "fastoptim":
        monkeypatch.setattr(_dlpack, "NUMPY_HAS_DLPACK_1", False)
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("backend", ["compiled", "numpy"])
def test_update_through_dlpack_is_in_place_and_bit_identical(cls, dtype, backend, reader):
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


@pytest.mark.parametrize("backend", ["compiled", "numpy"])
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


@pytest.mark.parametrize("backend", ["compiled", "numpy"])
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


# -- fastoptim._dlpack: DLPack 1.0 capsules read without NumPy (for NumPy < 2.1) ---------

LAYOUTS = {
    "C 2-d float32": lambda: np.arange(12, dtype=np.float32).reshape(3, 4),
    "F 2-d float64": lambda: np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    "strided": lambda: np.arange(24.0).reshape(4, 6)[:, ::2],
    "offset view": lambda: np.arange(10.0)[3:],
    "0-d": lambda: np.array(2.5),
    "empty": lambda: np.zeros((0, 3), np.float32),
    "int16": lambda: np.arange(5, dtype=np.int16),
    "uint8": lambda: np.arange(5, dtype=np.uint8),
    "complex64": lambda: np.arange(3, dtype=np.complex64),
    "bool": lambda: np.array([True, False, True]),
    "float16": lambda: np.ones(4, np.float16),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("read_only", [False, True])
@pytest.mark.parametrize("by_hand", [True, False])
def test_versioned_capsule_view_is_the_producers_memory(layout, read_only, by_hand,
                                                        monkeypatch):
    if not by_hand and OLD_NUMPY:
        pytest.skip(f"NumPy {np.__version__} arrays export no DLPack 1.0 capsules")
    monkeypatch.setattr(_dlpack, "NUMPY_HAS_DLPACK_1", False)
    a = LAYOUTS[layout]()
    a.flags.writeable = not read_only
    v = _dlpack.view(Producer(a, versioned_by_hand=by_hand), copy=False)
    assert type(v) is np.ndarray and v.dtype == a.dtype and v.shape == a.shape
    assert v.flags.writeable == (not read_only)
    assert np.array_equal(v, a)
    if a.size:
        assert v.strides == a.strides and np.shares_memory(v, a)
        assert v.__array_interface__["data"][0] == a.__array_interface__["data"][0]
        if not read_only:  # writing through the view writes the producer's memory
            v.flat[-1] = v.flat[0] if a.dtype.kind == "b" else 7
            assert a.flat[-1] == v.flat[-1]
    if not OLD_NUMPY:  # NumPy's own reading of the same capsules agrees
        monkeypatch.setattr(_dlpack, "NUMPY_HAS_DLPACK_1", True)
        n = np.from_dlpack(Producer(a, versioned_by_hand=by_hand), copy=False)
        assert n.dtype == v.dtype and n.shape == v.shape and n.strides == v.strides
        assert n.flags.writeable == v.flags.writeable
        if a.size:
            assert n.__array_interface__["data"][0] == v.__array_interface__["data"][0]


@pytest.mark.parametrize("by_hand", [True, False])
def test_versioned_view_keeps_the_producer_alive_and_then_lets_it_go(by_hand, monkeypatch):
    if not by_hand and OLD_NUMPY:
        pytest.skip(f"NumPy {np.__version__} arrays export no DLPack 1.0 capsules")
    monkeypatch.setattr(_dlpack, "NUMPY_HAS_DLPACK_1", False)
    a = np.arange(1000.0)
    gone = weakref.ref(a)
    producer = Producer(a, versioned_by_hand=by_hand)
    v = _dlpack.view(producer, copy=False)
    del a, producer
    gc.collect()
    assert gone() is not None and v[999] == 999.0  # the capsule holds the memory
    del v
    gc.collect()
    assert gone() is None  # ... and releases it with the view


def test_versioned_capsules_that_are_refused(monkeypatch):
    monkeypatch.setattr(_dlpack, "NUMPY_HAS_DLPACK_1", False)
    a = np.ones(3)

    def producer(edit):
        class P:
            def __dlpack__(self, **kwargs):
                e = VersionedExport(a)
                edit(e.managed)
                capsule, e.capsule = e.capsule, None
                return capsule
        return P()

    def device(m):
        m.dl_tensor.device.device_type = 2  # kDLCUDA

    def bfloat(m):
        m.dl_tensor.dtype.code, m.dl_tensor.dtype.bits = 4, 16

    def version(m):
        m.version.major = 2

    def copied(m):
        m.flags = 2

    for edit, match in ((device, "device type 2, not in host memory"),
                        (bfloat, "dtype bfloat of 16 bits"),
                        (version, r"DLPack 2\.0 tensor"),
                        (copied, "exported a copy")):
        with pytest.raises(BufferError, match=match):
            _dlpack.view(producer(edit), copy=False)
        with pytest.raises(TypeError, match="that NumPy cannot view in host memory"):
            fo.SGD().update({"w": producer(edit)}, {"w": np.ones(3)})
    assert_same(a, np.ones(3))
    # a copy is refused only where none was asked for: a gradient (only read) may be one
    w = np.zeros(3)
    fo.SGD(lr=0.5).update({"w": w}, {"w": producer(copied)})
    assert_same(w, np.full(3, -0.5))


def test_legacy_producers_are_read_only_on_every_numpy(monkeypatch):
    monkeypatch.setattr(_dlpack, "NUMPY_HAS_DLPACK_1", False)
    a = np.ones(3)
    v = _dlpack.view(LegacyProducer(a), copy=False)
    assert not v.flags.writeable and np.shares_memory(v, a)


def test_exports_by_hand_are_released():
    """The stand-in producer frees what it exported, consumed (by NumPy >= 2.1) or not."""
    gc.collect()
    before = len(_LIVE)
    views = [_dlpack.view(Producer(np.ones(3), versioned_by_hand=True), copy=False)
             for _ in range(5)]
    assert len(_LIVE) == before + 5
    del views
    gc.collect()
    assert len(_LIVE) == before
