"""Global-norm gradient clipping: ``clip_grad_norm(grads, max_norm)``.

The total norm is ``sqrt(sum of g**2 over every element of every gradient)``. When
``max_norm / (total_norm + 1e-6)`` is below 1 (as in ``torch.nn.utils.clip_grad_norm_``),
every gradient is multiplied in place by that factor; otherwise nothing is written.

The compiled path (``fastoptim._clip``) makes one parallel pass to sum the squares and, if
clipping is needed, one parallel pass to scale. Its result does not depend on the thread
count: the elements of all gradients, concatenated in order (each array in its memory
order), are split into fixed chunks of ``CHUNK`` elements; each chunk is summed by one
thread into ``LANES`` float64 accumulators (element ``i`` of a chunk into lane
``i % LANES``, each lane in index order), the lanes are added in order, and the chunk
sums are added in order. :func:`sum_of_squares_reference` does exactly that in NumPy,
and the tests check that both agree bit for bit.

>>> import numpy as np, fastoptim as fo
>>> grads = {"W": np.full((2, 2), 3.0), "b": np.full(2, 4.0)}   # norm sqrt(36 + 32)
>>> round(fo.clip_grad_norm(grads, max_norm=1.0), 4)
8.2462
>>> round(float(np.sqrt(sum((g ** 2).sum() for g in grads.values()))), 4)
1.0
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

import numpy as np

from . import _clip, _core, _threading, reference
from ._typing import Backend, Grads

__all__ = ["clip_grad_norm", "clip_grad_norm_reference", "sum_of_squares_reference",
           "CHUNK", "LANES"]

#: Elements per chunk and accumulators per chunk: fixed, whatever the thread count.
CHUNK = 4096
LANES = 8
#: Added to the norm in the scale factor, as torch.nn.utils.clip_grad_norm_ does.
NORM_EPS = 1e-6

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _named(grads):
    """[(name, array)] from a dict (keys), a list/tuple (indices) or one array."""
    if isinstance(grads, np.ndarray):
        return [("0", grads)]
    if isinstance(grads, Mapping):
        return [(repr(k), g) for k, g in grads.items()]
    if isinstance(grads, Sequence) and not isinstance(grads, (str, bytes)):
        return [(str(i), g) for i, g in enumerate(grads)]
    raise TypeError(f"grads must be a dict of arrays, a list/tuple of arrays or one array, "
                    f"got {type(grads).__name__}")


def _check_grads(grads):
    """Check every gradient before anything is written; return flat views of their
    memory, in order. Refuses what could only be scaled as a copy."""
    flats, bounds = [], []
    for name, g in _named(grads):
        what = f"gradient {name}"
        if not isinstance(g, np.ndarray) and hasattr(type(g), "__dlpack__"):
            g = _core.dlpack_view(what, g, writeable=True)  # e.g. a torch CPU tensor
        if not isinstance(g, np.ndarray):
            raise TypeError(f"{what} must be a NumPy array (float32 or float64), got "
                            f"{type(g).__name__}")
        if isinstance(g, np.ma.MaskedArray):
            raise TypeError(f"{what} is a masked array; pass plain gradients (e.g. "
                            f"g.filled(0)) so that every element is counted and scaled")
        if g.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{what} has dtype {g.dtype}; clip_grad_norm takes native "
                            f"float32 or float64 arrays (dtypes may differ between "
                            f"gradients)")
        if not g.flags.writeable:
            raise ValueError(f"{what} is read-only (flags.writeable is False); "
                             f"clip_grad_norm scales gradients in place: pass writeable "
                             f"arrays")
        if not g.flags.aligned:
            raise TypeError(f"{what} is not aligned to its dtype in memory (e.g. made with "
                            f"np.frombuffer at an odd offset); pass arrays NumPy allocated")
        if g.flags.c_contiguous:
            order = "C"
        elif g.flags.f_contiguous:
            order = "F"
        else:
            raise TypeError(f"{what} is not contiguous (strides {g.strides} for shape "
                            f"{g.shape}); clip_grad_norm scales gradients in place and "
                            f"will not scale a copy: pass C- or F-contiguous arrays "
                            f"(e.g. np.ascontiguousarray(g), and use that array)")
        if type(g) is not np.ndarray:
            g = g.view(np.ndarray)
        flat = g.reshape(-1, order=order)   # a view: the array's memory, in its order
        flats.append(flat)
        if flat.size:
            start = flat.__array_interface__["data"][0]
            bounds.append((start, start + flat.nbytes, name))
    bounds.sort()
    for (_s1, e1, n1), (s2, _e2, n2) in zip(bounds, bounds[1:]):
        if s2 < e1:
            raise ValueError(f"gradients {n1} and {n2} share memory, so they would be "
                             f"counted and scaled twice; pass each gradient once")
    return flats


def _check_max_norm(max_norm):
    if isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real):
        raise TypeError(f"max_norm must be a real number, got {max_norm!r}")
    max_norm = float(max_norm)
    if not max_norm >= 0.0:   # also rejects NaN
        raise ValueError(f"Invalid max_norm: {max_norm!r} (must be >= 0; inf never clips)")
    return max_norm


def sum_of_squares_reference(flats):
    """The sum of squares of every element of ``flats`` (1-D float32/float64 arrays), in
    float64, in the order of the compiled kernel: chunks of ``CHUNK`` elements of the
    concatenation, ``LANES`` lanes per chunk, every sum taken left to right
    (:func:`fastoptim.reference.sum_of_squares`, the same order as LAMB's norms)."""
    return reference.sum_of_squares(flats)


def clip_grad_norm(grads: Grads, max_norm: float, *, error_if_nonfinite: bool = False,
                   num_threads: int | None = None, backend: Backend = "compiled") -> float:
    """Scale gradients in place so that their global L2 norm is at most ``max_norm``.

    Parameters
    ----------
    grads : dict of ndarray, or sequence of ndarray, or ndarray
        The gradients (e.g. what ``net.gradient(x, t)`` returns). Each must be float32 or
        float64 (dtypes may differ between arrays), writeable and C- or F-contiguous:
        they are scaled in place, and an array that could only be scaled as a copy is
        refused with an error. No two may share memory. Objects NumPy can view through
        DLPack without a copy (CPU torch tensors, e.g. ``p.grad``) are scaled in place
        too.
    max_norm : float
        The largest allowed total norm, >= 0 (``inf``: compute the norm, never scale).
    error_if_nonfinite : bool, default False
        Raise ``FloatingPointError`` (and write nothing) if the total norm is NaN or
        infinite. Otherwise the rule below applies as it is: a NaN norm gives a NaN
        factor, which is not < 1, so nothing is scaled; an infinite norm gives factor 0
        (finite entries become 0, infinite ones NaN, as in PyTorch).
    num_threads : int or None, default None
        Threads for the compiled passes; None uses OpenMP's current maximum. Small inputs
        run on one thread. The result is the same, bit for bit, for any thread count.
    backend : {"compiled", "numpy"}, default "compiled"
        "numpy" runs :func:`clip_grad_norm_reference` (same result, bit for bit).

    Returns
    -------
    float
        The total norm of the gradients as they were before scaling:
        ``sqrt(sum of squares)``, the sum taken in float64 in the fixed order described
        in the module docstring.

    Notes
    -----
    The factor is ``max_norm / (total_norm + 1e-6)`` (as torch), computed in float64;
    when it is < 1 each gradient is multiplied by it converted to that gradient's dtype.
    The sum of squares of float64 gradients overflows to inf for entries above ~1e154.
    """
    max_norm = _check_max_norm(max_norm)
    nt = _core.check_num_threads(num_threads)
    backend = _core.backend_name(backend)
    if backend == "numpy":
        summer = sum_of_squares_reference
        scaler = _scale_reference
    else:
        paced = _threading.adaptive and nt == 0   # num_threads=None: the policy decides

        def summer(flats):
            return _clip.sum_of_squares(flats, num_threads=nt, adaptive=paced)

        def scaler(flats, factor):
            _clip.scale(flats, factor, num_threads=nt, adaptive=paced)
    flats = _check_grads(grads)
    total_norm = math.sqrt(summer(flats))
    if error_if_nonfinite and not math.isfinite(total_norm):
        raise FloatingPointError(
            f"the total norm of the gradients is {total_norm}, so they cannot be clipped; "
            f"no gradient was changed (error_if_nonfinite=True)")
    factor = max_norm / (total_norm + NORM_EPS)
    if factor < 1.0:
        scaler(flats, factor)
    return total_norm


def _scale_reference(flats, factor):
    with np.errstate(invalid="ignore"):        # inf * 0 -> NaN, silently, as the kernel
        for f in flats:
            f *= f.dtype.type(factor)


def clip_grad_norm_reference(grads: Grads, max_norm: float, *,
                             error_if_nonfinite: bool = False) -> float:
    """The pure-NumPy reference of :func:`clip_grad_norm`: the same checks, the same
    sums in the same order, the same scaling, bit for bit.

    Parameters
    ----------
    grads, max_norm, error_if_nonfinite
        As for :func:`clip_grad_norm`.

    Returns
    -------
    float
        The total norm before scaling, equal to :func:`clip_grad_norm`'s bit for bit.
    """
    return clip_grad_norm(grads, max_norm, error_if_nonfinite=error_if_nonfinite,
                          backend="numpy")
