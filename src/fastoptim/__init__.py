"""fastoptim: fused, OpenMP-parallel optimizer steps for NumPy arrays.

>>> import numpy as np, fastoptim as fo
>>> params = {"W": np.ones((2, 3)), "b": np.zeros(3)}
>>> grads = {"W": np.full((2, 3), 0.5), "b": np.ones(3)}
>>> opt = fo.SGD(lr=0.1)
>>> opt.update(params, grads)      # in place, one fused pass; True: the step was applied
True
>>> float(params["W"][0, 0]), float(params["b"][0])
(0.95, -0.1)

Modules: ``fastoptim.functional`` (one function per rule), ``fastoptim.reference`` (the
pure-NumPy specification the kernels are bit-identical to), ``fastoptim.clip``
(:func:`clip_grad_norm` and its reference), ``fastoptim.schedules`` (learning-rate
schedules), ``fastoptim.groups`` (parameter groups), ``fastoptim.accumulate``
(:class:`Accumulate`: gradient accumulation over several calls), ``fastoptim.book`` (the
classes of "Deep Learning from Scratch", with its names and defaults). The training
toolkit and the demos live apart, in ``fastoptim.demo`` (``fastoptim.demo.nn``,
``fastoptim.demo.datasets``), which ``import fastoptim`` does not import.
"""

from typing import TYPE_CHECKING

# The threading policy sets the OpenMP runtime's wait behaviour for its loading, so it
# runs before any compiled module (each of which loads the runtime) is imported.
from . import _threading

_threading.configure()

from . import _clip, _dispatch, clip, functional, groups, reference, rules, schedules  # noqa: E402
from ._dispatch import kernels as _kernels  # noqa: E402
from ._threading import set_threading  # noqa: E402
from ._typing import Config  # noqa: E402
from ._version import __version__  # noqa: E402
from .accumulate import Accumulate  # noqa: E402 -- a layer on top of the classes
from .checkpoint import load, save  # noqa: E402
from .clip import clip_grad_norm, clip_grad_norm_reference  # noqa: E402
from .optimizers import *  # noqa: E402,F403 -- one class per row of fastoptim.rules
from .optimizers import __all__ as _optimizer_names  # noqa: E402

_threading.finish()

__all__ = [*_optimizer_names, "Accumulate", "functional", "reference", "rules", "schedules",
           "clip", "groups", "clip_grad_norm", "clip_grad_norm_reference", "get_config",
           "show_config", "set_threading", "save", "load", "__version__"]

# Old paths of modules moved to fastoptim.demo: imported on first use, with a warning.
# Hidden from type checkers, which would otherwise take every unknown attribute of the
# package for one of these.
_MOVED = {"nn": "fastoptim.demo.nn", "datasets": "fastoptim.demo.datasets"}

if not TYPE_CHECKING:
    def __getattr__(name: str) -> object:
        """``fastoptim.nn`` and ``fastoptim.datasets`` (PEP 562): the moved module, imported
        on first use, after a DeprecationWarning that names its new path."""
        new = _MOVED.get(name)
        if new is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib
        import sys
        import warnings

        warnings.warn(f"fastoptim.{name} is deprecated; use {new}", DeprecationWarning,
                      stacklevel=2)
        module = importlib.import_module(new)
        sys.modules.setdefault(f"{__name__}.{name}", module)
        globals()[name] = module
        return module


def get_config() -> Config:
    """Build and thread facts of this installation.

    Returns
    -------
    dict
        ``version`` (str); ``openmp`` (bool: compiled with OpenMP); ``threads`` (int:
        what an update with ``num_threads=None`` uses now -- OpenMP's current maximum,
        which honours ``OMP_NUM_THREADS`` and ``threadpoolctl.threadpool_limits``; 1
        without OpenMP); ``parallel_thresholds`` (``{"light": n, "heavy": n}``: float32
        element counts below which an update runs on one thread); ``cpu_target`` (the
        vector target whose kernels run: "baseline", "avx2" or "avx512", see
        ``FASTOPTIM_CPU``) and ``cpu_targets`` (all that are built and that this CPU
        can run, best first, less any wider than the one ``FASTOPTIM_CPU`` names);
        ``compiler`` and ``flags`` (the build of the chosen
        target); ``threading`` (the policy in force: "adaptive", "spin" or "yield", see
        :func:`set_threading` and ``FASTOPTIM_THREADING``); ``wait`` (how idle OpenMP
        workers wait: the runtime setting fastoptim chose for the policy at import, or
        the user's own ``OMP_WAIT_POLICY`` / ``GOMP_SPINCOUNT`` / ``KMP_BLOCKTIME``);
        ``wait_applied`` (True: in force; False: the OpenMP runtime had been loaded
        before fastoptim, so its own setting applies -- ``wait_note`` says which
        runtime; None: cannot tell, or no OpenMP); ``fork_child`` (True in a process
        made by ``fork()`` after fastoptim was imported: every step then runs on one
        thread, since GNU libgomp's threads do not survive a fork).

    See Also
    --------
    show_config : the same, printed.

    Examples
    --------
    >>> import fastoptim as fo
    >>> cfg = fo.get_config()
    >>> cfg["version"] == fo.__version__, cfg["threads"] >= 1
    (True, True)
    """
    info = _kernels.build_info()
    wait, applied, note = _threading.wait_report(_kernels.openmp_enabled())
    return {
        "version": __version__,
        "openmp": _kernels.openmp_enabled(),
        "threads": _kernels.max_threads(),
        "parallel_thresholds": _kernels.get_parallel_thresholds(),
        "cpu_target": _dispatch.target,
        "cpu_targets": _dispatch.supported(),
        "compiler": info["compiler"],
        "flags": info["flags"],
        "threading": _threading.policy,
        "wait": wait,
        "wait_applied": applied,
        "wait_note": note,
        "fork_child": _kernels.fork_child() or _clip.fork_child(),
    }


def show_config() -> None:
    """Print :func:`get_config`, one ``key : value`` line each (version, OpenMP, threads,
    serial thresholds, CPU target, compiler and flags, threading policy, OpenMP wait
    setting and whether it applied, forked child): the first thing to paste into a bug
    report.

    Returns
    -------
    None
    """
    cfg = get_config()
    width = max(map(len, cfg))
    for key, value in cfg.items():
        print(f"{key:<{width}} : {value}")
