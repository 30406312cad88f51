"""Pick the compiled kernels for this CPU, once, at import.

The same kernel source is built for several vector targets (``baseline``: the compiler's
portable x86-64 / arm64 default; ``avx2``: AVX2 + FMA; ``avx512``: AVX-512 F/BW/VL/DQ).
All of them give bit-identical results (no value-changing flags, no contraction into
fused multiply-adds; vector sqrt and division are exactly rounded); the wide ones are
faster on data that sits in cache.

``FASTOPTIM_CPU=baseline|avx2|avx512`` (read once, at import) overrides the choice, for
comparisons, debugging and tests, and it is also a cap: the targets wider than the one
named count as unsupported, as if the CPU lacked them. So a run under
``FASTOPTIM_CPU=avx2`` on an AVX-512 machine behaves like one on an AVX2-only machine:
:func:`supported` (and ``get_config()["cpu_targets"]``) lists only ``avx2`` and
``baseline``, :func:`load` refuses ``avx512``, and nothing imports
``fastoptim._kernels_avx512``. A requested target this CPU cannot run, or that was not
built, falls back to the best one available below it, with a warning; an unknown name
caps nothing and falls back to the best target, with a warning.
:func:`runnable` is the uncapped list, :func:`unavailable_reason` says why a target is
not in :func:`supported`. ``fastoptim.get_config()`` reports what was chosen.

Only ``fastoptim._kernels_baseline`` (which every CPU runs, and which tells what the CPU
supports) and the chosen module are ever imported.
"""

import importlib
import importlib.util
import os

from . import _kernels_baseline
from ._caller import warn_external

PREFERENCE = ("avx512", "avx2", "baseline")

requested = os.environ.get("FASTOPTIM_CPU", "").strip().lower()
# The widest target that counts as supported: the one FASTOPTIM_CPU names, if it names one.
cap = requested if requested in PREFERENCE else None


# Looked up once (without importing anything): what is installed does not change.
_BUILT = [t for t in PREFERENCE
          if importlib.util.find_spec(f"fastoptim._kernels_{t}") is not None]


def built():
    """The targets compiled into this installation, best first."""
    return list(_BUILT)


def runnable():
    """The targets that are built and that this CPU can run, best first (ignoring the
    ``FASTOPTIM_CPU`` cap)."""
    cpu = _kernels_baseline.cpu_supports()
    return [t for t in built() if cpu.get(t, False)]


def _under_cap(targets, cap):
    """``targets`` (best first) less those wider than ``cap`` (None: no cap)."""
    if cap is None:
        return list(targets)
    return [t for t in targets if PREFERENCE.index(t) >= PREFERENCE.index(cap)]


def supported():
    """The targets that are built, that this CPU can run and that ``FASTOPTIM_CPU``
    does not cap away, best first. Only these may be imported."""
    return _under_cap(runnable(), cap)


def unavailable_reason(target):
    """Why ``target`` is not in :func:`supported` ("not built", "CPU lacks avx512",
    "capped by FASTOPTIM_CPU=avx2"), or None if it is."""
    if target not in PREFERENCE:
        raise ValueError(f"unknown CPU target {target!r}; expected one of "
                         f"{', '.join(PREFERENCE)}")
    if target not in built():
        return "not built"
    if not _kernels_baseline.cpu_supports().get(target, False):
        return f"CPU lacks {target}"
    if target not in supported():
        return f"capped by FASTOPTIM_CPU={cap}"
    return None


def load(target):
    """The kernel module for ``target``; raises ValueError for a target outside
    :func:`supported` (a module built for wider vectors than the CPU has would crash on
    an illegal instruction, and a capped one must not be touched)."""
    reason = unavailable_reason(target)
    if reason is not None:
        raise ValueError(f"CPU target {target!r} is not available here ({reason}); "
                         f"supported: {', '.join(supported())}")
    return importlib.import_module(f"fastoptim._kernels_{target}")


def _choose():
    ok = supported()
    if requested:
        if requested in ok:
            return requested
        why = (unavailable_reason(requested) if requested in PREFERENCE
               else "unknown target")
        # at the importer's line (``import fastoptim``), not in fastoptim's own files
        warn_external(f"FASTOPTIM_CPU={requested!r} is not available on this machine "
                      f"({why}; supported: {', '.join(ok)}); using {ok[0]!r}",
                      RuntimeWarning)
    return ok[0]


target = _choose()
kernels = load(target)
