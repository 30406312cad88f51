"""Zero-copy NumPy views of DLPack producers on NumPy < 2.1.

NumPy 2.1 learned DLPack 1.0: ``np.from_dlpack(x, copy=False)`` asks the producer for a
versioned capsule (``"dltensor_versioned"``), whose flags say whether the memory is
read-only, and the view is writeable unless the producer says so. Older NumPy (1.25 -
2.0) takes no keywords, asks for a legacy capsule (``"dltensor"``), which cannot say
whether the memory may be written, and so makes every view read-only (and
``setflags(write=True)`` is refused: the view's base is a capsule, not a buffer). The
same memory is still what the producer exported; only the flag is missing.

:func:`view` is DLPack 1.0's consumer side for those NumPy versions: it asks the
producer for a versioned capsule (``x.__dlpack__(max_version=(1, 0), copy=...)``), reads
the ``DLManagedTensorVersioned`` struct it points to (data, device, dtype, shape,
strides, byte offset, flags) and returns an ndarray over the same memory, writeable
unless the producer flagged it read-only -- what NumPy >= 2.1 returns. The capsule is
not consumed: the array keeps it alive (through its base), and the producer's capsule
destructor releases the tensor when the array goes, as DLPack specifies for a capsule
nobody consumed. A producer that predates DLPack 1.0 (no ``max_version`` keyword, or a
legacy capsule returned anyway) gets ``np.from_dlpack(x)``: read-only, as on every
NumPy.
"""

import ctypes

import numpy as np

__all__ = ["NUMPY_HAS_DLPACK_1", "view"]

NUMPY_HAS_DLPACK_1 = tuple(int(v) for v in np.__version__.split(".")[:2]) >= (2, 1)

_VERSIONED = b"dltensor_versioned"
_LEGACY = b"dltensor"
_FLAG_READ_ONLY = 1 << 0
_FLAG_IS_COPIED = 1 << 1
# device types whose memory the CPU addresses (the ones np.from_dlpack accepts)
_HOST_DEVICES = {1: "CPU", 3: "CUDA host", 11: "ROCm host", 13: "CUDA managed"}
# DLDataTypeCode -> NumPy kind (bool: 1 byte)
_KINDS = {0: "i", 1: "u", 2: "f", 5: "c", 6: "b"}
_CODE_NAMES = {3: "opaque handle", 4: "bfloat"}


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8),
                ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


class _DLPackVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32)]


class _DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [("version", _DLPackVersion), ("manager_ctx", ctypes.c_void_p),
                ("deleter", ctypes.c_void_p), ("flags", ctypes.c_uint64),
                ("dl_tensor", _DLTensor)]


_capsule_is_valid = ctypes.pythonapi.PyCapsule_IsValid
_capsule_is_valid.restype = ctypes.c_int
_capsule_is_valid.argtypes = [ctypes.py_object, ctypes.c_char_p]
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


class _Exported:
    """The base of a view: holds the capsule (so the producer keeps the memory) and
    describes the memory to NumPy through the array interface."""

    __slots__ = ("capsule", "__array_interface__")

    def __init__(self, capsule, interface):
        self.capsule = capsule
        self.__array_interface__ = interface


def _dtype(dt):
    kind = _KINDS.get(dt.code)
    if kind is None or dt.lanes != 1 or dt.bits % 8 or (kind == "b" and dt.bits != 8):
        name = _CODE_NAMES.get(dt.code, f"type code {dt.code}")
        raise BufferError(f"DLPack dtype {name} of {dt.bits} bits x {dt.lanes} lanes has "
                          f"no NumPy dtype")
    return np.dtype("?" if kind == "b" else f"{kind}{dt.bits // 8}")


def _from_versioned(capsule, copy):
    managed = _DLManagedTensorVersioned.from_address(_capsule_pointer(capsule, _VERSIONED))
    if managed.version.major != 1:
        raise BufferError(f"DLPack {managed.version.major}.{managed.version.minor} tensor: "
                          f"this reader knows version 1")
    if managed.flags & _FLAG_IS_COPIED and copy is False:
        raise BufferError("the producer exported a copy although it was asked for none")
    t = managed.dl_tensor
    if t.device.device_type not in _HOST_DEVICES:
        raise BufferError(f"the tensor is on DLPack device type {t.device.device_type}, "
                          f"not in host memory")
    dtype = _dtype(t.dtype)
    shape = tuple(t.shape[i] for i in range(t.ndim))
    strides = None  # DLPack: no strides means compact row-major
    if t.strides and t.ndim:
        strides = tuple(t.strides[i] * dtype.itemsize for i in range(t.ndim))
    read_only = bool(managed.flags & _FLAG_READ_ONLY)
    if 0 in shape:  # no memory to share (the data pointer may be NULL)
        arr = np.empty(shape, dtype)
        arr.flags.writeable = not read_only
        return arr
    interface = {"version": 3, "shape": shape, "typestr": dtype.str,
                 "data": ((t.data or 0) + t.byte_offset, read_only), "strides": strides}
    return np.asarray(_Exported(capsule, interface))


def view(x, copy=None):
    """``np.from_dlpack(x, copy=copy)`` as NumPy >= 2.1 does it, on any NumPy: a view of
    the producer's memory, writeable unless the producer said read-only; a producer that
    predates DLPack 1.0 gets ``np.from_dlpack(x)`` (read-only on NumPy < 2.1)."""
    if NUMPY_HAS_DLPACK_1:
        return np.from_dlpack(x) if copy is None else np.from_dlpack(x, copy=copy)
    try:
        kwargs = {"max_version": (1, 0)}
        if copy is not None:
            kwargs["copy"] = copy
        capsule = x.__dlpack__(**kwargs)
    except TypeError:  # no DLPack 1.0 keywords: a legacy producer
        return np.from_dlpack(x)
    if _capsule_is_valid(capsule, _VERSIONED):
        return _from_versioned(capsule, copy)
    if _capsule_is_valid(capsule, _LEGACY):  # the producer offers only DLPack < 1.0
        del capsule  # unconsumed: its destructor frees it; export again for NumPy
        return np.from_dlpack(x)
    raise BufferError(f"__dlpack__ returned {capsule!r}, not a DLPack capsule")
