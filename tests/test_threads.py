"""Threads under the user's control: threadpoolctl's limits (and OMP_NUM_THREADS, tested
in test_arrays.py in a subprocess) decide what ``num_threads=None`` uses."""

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import fastoptim as fo
from fastoptim import _clip
from fastoptim._dispatch import kernels as _kernels

pytestmark = pytest.mark.skipif(not _kernels.openmp_enabled(),
                                reason="serial build: no OpenMP to limit")

BIG = 10**7   # far above every serial threshold


def machine_threads():
    return _kernels.max_threads()


def test_threadpoolctl_sees_fastoptims_openmp_runtime():
    assert any(info["user_api"] == "openmp" for info in threadpool_info())


@pytest.mark.parametrize("user_api", [None, "openmp"])
def test_threadpool_limits_one(user_api):
    before = machine_threads()
    with threadpool_limits(1, user_api=user_api):
        assert fo.get_config()["threads"] == 1
        assert _kernels._effective_threads(BIG, 0, True) == 1
        assert _kernels._effective_threads(BIG, 0, False) == 1
        assert _clip._effective_threads(BIG, 0) == 1
        # an explicit num_threads is the optimizer's own choice and is kept
        assert _kernels._effective_threads(BIG, 2, True) == 2
        # and updates still run (bit-identical whatever the count; see tests/parity/test_cases.py)
        p, q = np.zeros(100_000, np.float32), np.zeros(100_000, np.float32)
        g = np.linspace(-1, 1, p.size, dtype=np.float32)
        fo.Adam(lr=0.1).update([p], [g])
        fo.Adam(lr=0.1, backend="numpy").update([q], [g])
        assert np.array_equal(p, q) and p.any()
    assert fo.get_config()["threads"] == before
    assert _kernels._effective_threads(BIG, 0, True) == before


def test_threadpool_limits_two():
    before = machine_threads()
    with threadpool_limits(2, user_api="openmp"):
        assert fo.get_config()["threads"] == 2
        assert _kernels._effective_threads(BIG, 0, True) == 2
    assert fo.get_config()["threads"] == before
