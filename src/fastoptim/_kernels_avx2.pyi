# Stub of the compiled kernels (kernels/_body.pxi). _kernels_baseline.pyi,
# _kernels_avx2.pyi and _kernels_avx512.pyi are the same file (the three modules are
# the same source built with different flags); tests/test_typing.py checks that they
# are identical and that they match the modules and fastoptim.reference.
#
# The rule kernels take 1-D contiguous float32 or float64 arrays, all of one dtype
# (a Cython fused type): the parameter and the state buffers writeable, the gradient
# read-only. Scalars are Python floats computed by fastoptim._core.

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

_F = npt.NDArray[np.floating[Any]]

TARGET: str

def sgd(param: _F, grad: _F, *, lr: float, weight_decay: float,
        num_threads: int = 0) -> None: ...
def momentum(param: _F, grad: _F, velocity: _F, *, lr: float, momentum: float,
             weight_decay: float, num_threads: int = 0) -> None: ...
def nesterov(param: _F, grad: _F, velocity: _F, *, lr: float, momentum: float,
             weight_decay: float, num_threads: int = 0) -> None: ...
def adagrad(param: _F, grad: _F, sum_sq: _F, *, lr: float, eps: float,
            weight_decay: float, num_threads: int = 0) -> None: ...
def rmsprop(param: _F, grad: _F, square_avg: _F, *, lr: float, alpha: float,
            one_minus_alpha: float, eps: float, weight_decay: float,
            num_threads: int = 0) -> None: ...
def adadelta(param: _F, grad: _F, square_avg: _F, acc_delta: _F, *, lr: float,
             rho: float, one_minus_rho: float, eps: float, weight_decay: float,
             num_threads: int = 0) -> None: ...
def adam(param: _F, grad: _F, exp_avg: _F, exp_avg_sq: _F, *, beta1: float,
         one_minus_beta1: float, beta2: float, one_minus_beta2: float, eps_hat: float,
         weight_decay: float, step_size: float, num_threads: int = 0) -> None: ...
def adamw(param: _F, grad: _F, exp_avg: _F, exp_avg_sq: _F, *, decay_factor: float,
          beta1: float, one_minus_beta1: float, beta2: float, one_minus_beta2: float,
          eps_hat: float, step_size: float, num_threads: int = 0) -> None: ...
def update_many(rule: int, params: dict[Any, Any] | list[Any] | tuple[Any, ...],
                grads: dict[Any, Any] | list[Any] | tuple[Any, ...],
                slots: dict[Any, list[Any]],
                scalars_fn: Callable[[int], tuple[float, ...]],
                slow_fn: Callable[[Any, Any, Any, list[Any] | None],
                                  tuple[np.ndarray, np.ndarray, list[Any]]],
                pairs_fn: Callable[[Any, Any], object], num_threads: int,
                cache: list[Any], plan: list[Any],
                skip_nonfinite: bool = ...) -> bool: ...
def openmp_enabled() -> bool: ...
def max_threads() -> int: ...
def cpu_supports() -> dict[str, bool]: ...
def build_info() -> dict[str, str]: ...
def get_parallel_thresholds() -> dict[str, int]: ...
def set_parallel_thresholds(light: int | None = None,
                            heavy: int | None = None) -> dict[str, int]: ...
def _effective_threads(n: int, num_threads: int, heavy: bool) -> int: ...
def stream(read: _F, a: _F, b: _F | None = None, c: _F | None = None, *,
           num_threads: int = 1) -> None: ...
