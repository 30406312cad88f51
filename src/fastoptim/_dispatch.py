"""Pick the compiled kernels for this CPU, once, at import.

The same kernel source is built for several vector targets (``baseline``: the compiler's
portable x86-64 / arm64 default; ``avx2``: AVX2 + FMA; ``avx512``: AVX-512 F/BW/VL/DQ).
All of them give bit-identical results (no value-changing flags, no contraction into
fused multiply-adds; vector sqrt and division are exactly rounded); the wide ones are
faster on data that sits in cache.

``FASTOPTIM_CPU=baseline|avx2|avx512`` overrides the choice (for comparisons and
debugging); a target this CPU cannot run, or that was not built, falls back to the best
one available, with a warning. ``fastoptim.get_config()`` reports what was chosen.
"""

import importlib
import importlib.util
import os
import warnings

from . import _kernels_baseline

PREFERENCE = ("avx512", "avx2", "baseline")


def built():
    """The targets compiled into this installation, best first."""
    return [t for t in PREFERENCE
            if importlib.util.find_spec(f"fastoptim._kernels_{t}") is not None]


def supported():
    """The targets that are built and that this CPU can run, best first."""
    cpu = _kernels_baseline.cpu_supports()
    return [t for t in built() if cpu.get(t, False)]


def load(target):
    """The kernel module for ``target`` (only call it for a supported target: a module
    built for wider vectors than the CPU has would crash on an illegal instruction)."""
    if target not in supported():
        raise ValueError(f"target {target!r} is not available here; supported: "
                         f"{supported()}")
    return importlib.import_module(f"fastoptim._kernels_{target}")


def _choose():
    ok = supported()
    wanted = os.environ.get("FASTOPTIM_CPU", "").strip().lower()
    if wanted:
        if wanted in ok:
            return wanted
        warnings.warn(f"FASTOPTIM_CPU={wanted!r} is not available on this machine "
                      f"(supported: {', '.join(ok)}); using {ok[0]!r}", RuntimeWarning,
                      stacklevel=3)
    return ok[0]


target = _choose()
kernels = load(target)
