# Stub of fastoptim._clip (kernels/_clip.pyx): the global-norm reduction and the scaling
# pass of fastoptim.clip_grad_norm. ``arrays`` is a list of 1-D contiguous float32 or
# float64 arrays (dtypes may differ); tests/test_typing.py checks the stub against the
# module.

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

CHUNK: int
LANES: int

def sum_of_squares(arrays: Sequence[npt.NDArray[np.floating[Any]]], *,
                   num_threads: int = 0) -> float: ...
def scale(arrays: Sequence[npt.NDArray[np.floating[Any]]], factor: float, *,
          num_threads: int = 0) -> None: ...
def openmp_enabled() -> bool: ...
def get_parallel_threshold() -> int: ...
def set_parallel_threshold(n: int) -> int: ...
def _effective_threads(n: int, num_threads: int = 0) -> int: ...
