"""pytest-benchmark: Adam over one float32 array of 1e6 elements with float32 state
(``state_dtype=None``), bfloat16 state, 8-bit state, and the NumPy reference of each
low-precision format (the baselines). ``python bench/state_formats.py`` is the interleaved form that
docs/state.rst quotes, at 1e7 and 1e8; no test asserts a time.

    pytest bench/test_bench_state.py --benchmark-only
"""

import numpy as np
import pytest

import fastoptim as fo

N = 1_000_000
CONFIGS = {
    "float32 state": dict(),
    "bfloat16 state": dict(state_dtype="bfloat16"),
    "bfloat16 state, reference": dict(state_dtype="bfloat16", backend="numpy"),
    "int8 state": dict(state_dtype="int8"),
    "int8 state, reference": dict(state_dtype="int8", backend="numpy"),
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_adam_state_format(benchmark, config):
    benchmark.group = f"adam, one float32 array of {N:.0e}, state formats"
    n = 5000 if benchmark.disabled else N  # over rules.INT8_MIN_SIZE: 8-bit
    opt = fo.Adam(**CONFIGS[config])
    params, grads = [np.zeros(n, np.float32)], [np.full(n, 1e-3, np.float32)]
    benchmark(opt.update, params, grads)
    assert opt.state[0]["exp_avg"].dtype.itemsize == (
        4 if config == "float32 state" else 1 if "int8" in config else 2)
