# cython: language_level=3
"""fastoptim's kernels built for the 'avx2' vector target (see _body.pxi)."""

TARGET = "avx2"

include "_body.pxi"
