"""fastoptim: fused, OpenMP-parallel optimizer steps for NumPy arrays.

>>> import numpy as np, fastoptim as fo
>>> params = {"W": np.ones((2, 3)), "b": np.zeros(3)}
>>> grads = {"W": np.full((2, 3), 0.5), "b": np.ones(3)}
>>> opt = fo.SGD(lr=0.1)
>>> opt.update(params, grads)      # in place, one fused pass per array
>>> params["W"][0, 0], params["b"][0]
(np.float64(0.95), np.float64(-0.1))

Modules: ``fastoptim.functional`` (one function per rule), ``fastoptim.reference`` (the
pure-NumPy specification the kernels are bit-identical to), ``fastoptim.clip``
(:func:`clip_grad_norm` and its reference), ``fastoptim.schedules`` (learning-rate
schedules), ``fastoptim.nn`` (a small NumPy network toolkit).
"""

from . import _dispatch, clip, functional, nn, reference, schedules
from ._dispatch import kernels as _kernels
from ._version import __version__
from .checkpoint import load, save
from .clip import clip_grad_norm, clip_grad_norm_reference
from .optimizers import (SGD, AdaDelta, AdaGrad, Adam, AdamW, Momentum, Nesterov,
                         Optimizer, RMSprop)

__all__ = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "AdaDelta", "Adam",
           "AdamW", "Optimizer", "functional", "reference", "schedules", "nn", "clip",
           "clip_grad_norm", "clip_grad_norm_reference", "get_config", "show_config",
           "save", "load", "__version__"]


def get_config():
    """Build and thread facts as a dict.

    Keys: ``version``; ``openmp`` (compiled with OpenMP); ``threads`` (what an update
    with ``num_threads=None`` uses now: OpenMP's current maximum, which honours
    ``OMP_NUM_THREADS`` and threadpoolctl; 1 without OpenMP); ``parallel_thresholds``
    (element counts below which an update runs on one thread); ``cpu_target`` (the vector
    target whose kernels run: "baseline", "avx2" or "avx512", see ``FASTOPTIM_CPU``) and
    ``cpu_targets`` (all that are built and that this CPU can run); ``compiler`` and
    ``flags`` (the build of the chosen target).
    """
    info = _kernels.build_info()
    return {
        "version": __version__,
        "openmp": _kernels.openmp_enabled(),
        "threads": _kernels.max_threads(),
        "parallel_thresholds": _kernels.get_parallel_thresholds(),
        "cpu_target": _dispatch.target,
        "cpu_targets": _dispatch.supported(),
        "compiler": info["compiler"],
        "flags": info["flags"],
    }


def show_config():
    """Print :func:`get_config` in a readable form."""
    cfg = get_config()
    width = max(map(len, cfg))
    for key, value in cfg.items():
        print(f"{key:<{width}} : {value}")
