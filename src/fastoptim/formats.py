"""The formats of optimizer state (``state_dtype``): what a state buffer is in memory
and how a step reads and writes it. A property of the engine, not of any rule: every
rule's kernel and reference function see float values; the format decides how they are
stored between steps (docs/state.rst).

* ``None``: the parameter's dtype (float32 or float64), read and written as is.
* ``"bfloat16"``: the rule's state buffers are ``ml_dtypes.bfloat16`` arrays, for
  float32 parameters. Each step widens them to float32 (exact), runs the rule in
  float32, and rounds the new state to the nearest bfloat16, ties to even
  (:func:`fastoptim.reference.to_bfloat16`); the compiled engine does this block by
  block in its one pass over memory (kernels/_body.pxi, ``_bf16_range``), with the same
  bits. The moving average of ``ema`` stays in the parameter's dtype: it is a copy of
  the parameters, not the rule's statistics.

* ``"int8"``: 8-bit block-wise state (Dettmers et al. 2021) for the rules of
  ``rules.INT8_RULES``, float32 parameters: each of the rule's buffers is a uint8 code
  per element and a float32 absmax per block of ``rules.INT8_BLOCK`` elements; the
  value is ``dynamic_map[code] * absmax`` (:func:`fastoptim.reference.dynamic_map`:
  the signed map for first moments, the unsigned one for second moments). Each step
  dequantises, runs the rule in float32 and quantises back
  (:func:`fastoptim.reference.with_int8_state`); the compiled engine chunk by chunk in
  its one pass. Arrays under ``rules.INT8_MIN_SIZE`` elements keep float32 state.
  A record of an 8-bit array is ``[step, codes..., absmax..., (ema)]``: the codes of
  the rule's buffers, then their absmax arrays, then the moving average.

``ml_dtypes`` (the bfloat16 NumPy dtype JAX and others share) is imported the first time
a bfloat16 format is used, so fastoptim's import does not pay for it.
"""

import numpy as np

from . import reference, rules
from ._dispatch import kernels as _kernels

__all__ = ["bfloat16", "flag", "of_id", "buffer_dtype", "itemsize", "is_bfloat16",
           "encoding_table", "is_int8_record", "int8_names", "quantized", "dequantized"]

_BF16 = []  # [np.dtype(ml_dtypes.bfloat16)] once imported and registered


def bfloat16():
    """NumPy's dtype of ``ml_dtypes.bfloat16``, registered with the kernels."""
    if not _BF16:
        try:
            import ml_dtypes
        except ImportError:  # pragma: no cover -- ml_dtypes is a dependency
            raise ImportError("state_dtype='bfloat16' needs the ml_dtypes package (the "
                              "bfloat16 NumPy dtype): pip install ml_dtypes") from None
        dt = np.dtype(ml_dtypes.bfloat16)
        _kernels.set_bfloat16_typenum(dt.num)
        _BF16.append(dt)
    return _BF16[0]


_INT8 = []  # [True] once the 8-bit tables are registered with the kernels


def encoding_table(signed):
    """The kernels' table for finding the code of ``y`` (|y| <= 1) with one lookup and one
    comparison (the kernels' ``fo_q8_encode``): the number of
    ``reference.map_boundaries(signed)`` below ``y``. Entry ``(sign*NE + e)*128 + m``
    covers the float32 values with that sign, exponent ``E0 + e`` and top 7 mantissa bits
    ``m`` (``e = 0``: every smaller exponent too, zero aside: the kernels give ``y = 0``
    the code of 0 on their own). Its low 8 bits are the code of the smallest value it
    covers, its top 16 bits the low 16 bits of the one boundary among them (counted
    from the smallest value up), 0xffff for none. Raises if an entry covers two
    boundaries, or the smallest exponents one -- then one comparison would not do."""
    e0, ne, size = _kernels.INT8_TABLE
    bounds = reference.map_boundaries(signed)
    sign = np.repeat(np.array([0, 1], np.uint32), ne * 128)
    ex = np.tile(np.repeat(np.arange(e0, e0 + ne, dtype=np.uint32), 128), 2)
    man = np.tile(np.arange(128, dtype=np.uint32), 2 * ne)
    base = (sign << 31) | (ex << 23) | (man << 16)
    lo, hi = base.view(np.float32), (base | np.uint32(0xFFFF)).view(np.float32)
    neg = sign == 1
    small, big = np.where(neg, hi, lo), np.where(neg, lo, hi)  # by value
    clamped = ex == e0  # every smaller exponent too, down to (not including) zero
    tiny = np.float32(np.finfo(np.float32).smallest_subnormal)
    small = np.where(clamped & ~neg, tiny, small)
    big = np.where(clamped & neg, -tiny, big)
    first = np.searchsorted(bounds, small, side="left")
    after = np.searchsorted(bounds, big, side="right")
    if np.any(after - first > 1) or np.any((after > first) & clamped):
        raise ValueError("internal error: an 8-bit encoding entry covers two boundaries")
    has = after > first
    low = np.where(has, bounds[np.minimum(first, bounds.size - 1)].view(np.uint32) & 0xFFFF,
                   0)
    thr = np.where(has, np.where(neg, 0xFFFF - low, low), 0xFFFF).astype(np.uint32)
    return first.astype(np.uint32) | (thr << 8)


def zero_code(signed):
    """The code of ``y = 0`` (and of a block whose absmax is 0)."""
    return int(np.searchsorted(reference.map_boundaries(signed), np.float32(0.0)))


def _int8_tables():
    if not _INT8:
        _kernels.set_int8_tables(reference.dynamic_map(True), reference.dynamic_map(False),
                                 encoding_table(True), encoding_table(False),
                                 zero_code(True), zero_code(False))
        _INT8.append(True)


def flag(state_dtype):
    """The kernel id's bits for a ``state_dtype`` (0 for the parameter's dtype)."""
    if state_dtype is None:
        return 0
    if state_dtype == "bfloat16":
        bfloat16()  # registered before any update can need it
        return rules.BF16_FLAG
    if state_dtype == "int8":
        _int8_tables()
        return rules.INT8_FLAG
    raise ValueError(f"internal error: no state format {state_dtype!r}")


def of_id(rule_id):
    """The ``state_dtype`` of a kernel id."""
    if rule_id & rules.INT8_FLAG:
        return "int8"
    return "bfloat16" if rule_id & rules.BF16_FLAG else None


def int8_applies(state_dtype, param):
    """Whether ``param`` keeps 8-bit state under ``state_dtype`` (else float32 state
    for an array under rules.INT8_MIN_SIZE)."""
    return state_dtype == "int8" and param.size >= rules.INT8_MIN_SIZE


def is_int8_record(record, names):
    """Whether a state record (of a row with state buffers ``names``) is 8-bit: it has
    an absmax array per own buffer."""
    own = len(names) - ("ema" in names)
    return own > 0 and len(record) == 1 + len(names) + own


def int8_names(names):
    """The state names of an 8-bit record's arrays after the step, in order: the codes
    (the buffers' names), their absmax arrays (``<name>_absmax``), the average."""
    own = [n for n in names if n != "ema"]
    return [*own, *(f"{n}_absmax" for n in own), *(["ema"] if "ema" in names else [])]


def quantized(x, sign):
    """(codes, absmax) of float32 ``x`` (any shape; codes in x's shape and memory
    order, absmax 1-D) with the map ``sign`` ("signed" or "unsigned")."""
    x = np.asarray(x, dtype=np.float32)
    order = "F" if x.flags.f_contiguous and not x.flags.c_contiguous else "C"
    flat = x.reshape(-1, order=order)
    codes = np.empty(x.shape, np.uint8, order=order)
    absmax = np.empty((flat.size + rules.INT8_BLOCK - 1) // rules.INT8_BLOCK, np.float32)
    reference.quantize_blockwise(np.ascontiguousarray(flat), codes.reshape(-1, order=order),
                                 absmax, signed=sign == "signed")
    return codes, absmax


def dequantized(codes, absmax, sign):
    """The float32 values of 8-bit state (codes in any shape, absmax of its blocks, in
    the codes' memory order)."""
    order = "F" if codes.flags.f_contiguous and not codes.flags.c_contiguous else "C"
    out = np.empty(codes.shape, np.float32, order=order)
    reference.dequantize_blockwise(codes.reshape(-1, order=order), absmax,
                                   out.reshape(-1, order=order), signed=sign == "signed")
    return out


def buffer_dtype(state_dtype, param_dtype):
    """The dtype of a rule's state buffer for a parameter of ``param_dtype``."""
    return np.dtype(param_dtype) if state_dtype is None else bfloat16()


def itemsize(state_dtype, param_itemsize):
    """Bytes per element of a rule's state buffer (8-bit: the code, not the absmax)."""
    return {None: param_itemsize, "bfloat16": 2, "int8": 1}[state_dtype]


def is_bfloat16(arr):
    """Whether ``arr`` is an array of bfloat16 (``ml_dtypes.bfloat16``)."""
    return arr.dtype.name == "bfloat16" and arr.dtype.itemsize == 2
