"""Memory: state is allocated once per parameter, and 100k update calls grow neither
Python's allocations nor the process's resident memory beyond a small bound.

A leak of a single small object per call would show as >= 1.6 MB over 100k calls; the
bounds below are far under that and far over what one-off caches hold (the per-step
scalar cache of an optimizer keeps at most 65 small tuples).
"""

import gc
import os
import sys
import tracemalloc

import numpy as np
import pytest

import fastoptim as fo

from conftest import OPTIMIZERS

CALLS = 100_000
PY_BOUND = 100_000          # bytes of Python allocations still held after CALLS calls
RSS_BOUND = 4 * 2**20       # bytes of resident memory


def rss_bytes():
    """Resident memory of this process, or None where it cannot be read."""
    if sys.platform.startswith("linux") and os.path.exists("/proc/self/statm"):
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process().memory_info().rss


def small_model(dtype=np.float32):
    rng = np.random.default_rng(0)
    params = {"W1": rng.standard_normal((8, 4)).astype(dtype),
              "b1": rng.standard_normal(4).astype(dtype),
              "W2": np.asfortranarray(rng.standard_normal((4, 2)).astype(dtype)),
              "b2": rng.standard_normal(2).astype(dtype)}
    grads = {k: np.full_like(v, 1e-3) for k, v in params.items()}
    return params, grads


def buffers(opt):
    return {(k, n): b for k, st in opt.state.items() for n, b in st.items() if n != "step"}


@pytest.mark.parametrize("backend", ["compiled", "numpy"])
@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_state_is_allocated_once(cls, backend):
    params, grads = small_model()
    opt = cls(backend=backend)
    opt.update(params, grads)
    first = buffers(opt)
    pointers = {k: b.__array_interface__["data"][0] for k, b in first.items()}
    for _ in range(200):
        opt.update(params, grads)
    assert buffers(opt).keys() == first.keys()
    for k, b in buffers(opt).items():
        assert b is first[k] and b.__array_interface__["data"][0] == pointers[k]
    assert all(st["step"] == 201 for st in opt.state.values())


def test_python_allocations_do_not_grow():
    params, grads = small_model()
    opt = fo.Adam(lr=1e-3)
    for _ in range(2000):  # warm up: caches filled, the slot plan made
        opt.update(params, grads)
    gc.collect()
    objects = len(gc.get_objects())
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(CALLS):
            opt.update(params, grads)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < PY_BOUND, f"{grown} bytes of Python allocations held after {CALLS} calls"
    assert len(gc.get_objects()) - objects < 100
    assert opt.state["W1"]["step"] == 2000 + CALLS


@pytest.mark.skipif(rss_bytes() is None,
                    reason="resident memory is read from /proc/self/statm (Linux) or "
                           "psutil; neither is available here")
@pytest.mark.parametrize("path", ["fast", "copied-gradients", "reference"])
def test_resident_memory_does_not_grow(path):
    """The C fast path (100k calls); the Python path that copies strided gradients and
    the NumPy reference (20k calls each: they are slower)."""
    params, grads = small_model()
    calls = CALLS
    opt = fo.Adam(lr=1e-3)
    if path == "copied-gradients":
        grads = {k: np.repeat(v, 2, axis=-1)[..., ::2] for k, v in grads.items()}
        assert not grads["W1"].flags.c_contiguous
        calls = 20_000
    elif path == "reference":
        opt = fo.Adam(lr=1e-3, backend="numpy")
        calls = 20_000
    for _ in range(2000):
        opt.update(params, grads)
    gc.collect()
    before = rss_bytes()
    for _ in range(calls):
        opt.update(params, grads)
    gc.collect()
    grown = rss_bytes() - before
    assert grown < RSS_BOUND, f"resident memory grew by {grown} bytes in {calls} calls"
