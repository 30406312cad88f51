# cython: language_level=3
"""fastoptim's kernels built for the 'baseline' vector target (see _body.pxi)."""

TARGET = "baseline"

include "_body.pxi"
