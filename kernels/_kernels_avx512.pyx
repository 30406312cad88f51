# cython: language_level=3
"""fastoptim's kernels built for the 'avx512' vector target (see _body.pxi)."""

TARGET = "avx512"

include "_body.pxi"
