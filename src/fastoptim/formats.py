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

``ml_dtypes`` (the bfloat16 NumPy dtype JAX and others share) is imported the first time
a bfloat16 format is used, so fastoptim's import does not pay for it.
"""

import numpy as np

from . import rules
from ._dispatch import kernels as _kernels

__all__ = ["bfloat16", "flag", "of_id", "buffer_dtype", "itemsize", "is_bfloat16"]

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


def flag(state_dtype):
    """The kernel id's bits for a ``state_dtype`` (0 for the parameter's dtype)."""
    if state_dtype is None:
        return 0
    if state_dtype == "bfloat16":
        bfloat16()  # registered before any update can need it
        return rules.BF16_FLAG
    raise ValueError(f"internal error: no state format {state_dtype!r}")


def of_id(rule_id):
    """The ``state_dtype`` of a kernel id."""
    return "bfloat16" if rule_id & rules.BF16_FLAG else None


def buffer_dtype(state_dtype, param_dtype):
    """The dtype of a rule's state buffer for a parameter of ``param_dtype``."""
    return np.dtype(param_dtype) if state_dtype is None else bfloat16()


def itemsize(state_dtype, param_itemsize):
    """Bytes per element of a rule's state buffer."""
    return param_itemsize if state_dtype is None else 2


def is_bfloat16(arr):
    """Whether ``arr`` is an array of bfloat16 (``ml_dtypes.bfloat16``)."""
    return arr.dtype.name == "bfloat16" and arr.dtype.itemsize == 2
