"""Deprecated path of :mod:`fastoptim.demo.nn` (the NumPy network toolkit moved out of the
optimizer package): importing it warns, then it *is* ``fastoptim.demo.nn``."""

import sys
import warnings

from .demo import nn as _moved

warnings.warn("fastoptim.nn is deprecated; use fastoptim.demo.nn", DeprecationWarning,
              stacklevel=2)
sys.modules[__name__] = _moved
