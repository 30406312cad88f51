"""Type aliases of the public API (for annotations and the ``.pyi`` stubs; nothing here
runs any check -- the checks are in ``fastoptim._core``)."""

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Optional, Protocol, TypedDict, Union

import numpy as np
import numpy.typing as npt

__all__ = ["FloatArray", "SupportsDLPack", "ArrayIn", "Params", "Grads", "Backend",
           "StateDict", "Config"]

#: A float32 or float64 NumPy array (the dtype is checked at run time).
FloatArray = npt.NDArray[np.floating[Any]]


class SupportsDLPack(Protocol):
    """An object NumPy can view through DLPack (``np.from_dlpack``), e.g. a CPU torch
    tensor."""

    def __dlpack__(self, *args: Any, **kwargs: Any) -> Any: ...

    def __dlpack_device__(self) -> Any: ...


#: What an update takes as one parameter, gradient or state buffer.
ArrayIn = Union[FloatArray, SupportsDLPack]

#: ``params`` of ``Optimizer.update``: a dict (any hashable keys), a list/tuple, or one
#: array. ``grads`` has the same form.
Params = Union[Mapping[Any, ArrayIn], Sequence[ArrayIn], FloatArray]
Grads = Params

#: The two implementations of every rule (bit-identical results).
Backend = Literal["compiled", "numpy", "cython"]

#: What ``Optimizer.state_dict()`` returns: ``{"optimizer": str, "hyperparams": dict,
#: "state": {key: {"step": int, <buffer name>: ndarray}}}``.
StateDict = dict[str, Any]


class Config(TypedDict):
    """What :func:`fastoptim.get_config` returns."""

    version: str
    openmp: bool
    threads: int
    parallel_thresholds: dict[str, int]
    cpu_target: str
    cpu_targets: list[str]
    compiler: str
    flags: str
    threading: str
    wait: str
    wait_applied: Optional[bool]
    wait_note: str
    fork_child: bool
