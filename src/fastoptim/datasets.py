"""Deprecated path of :mod:`fastoptim.demo.datasets` (the demo's data sets moved out of
the optimizer package): importing it warns, then it *is* ``fastoptim.demo.datasets``."""

import sys
import warnings

from .demo import datasets as _moved

warnings.warn("fastoptim.datasets is deprecated; use fastoptim.demo.datasets",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
