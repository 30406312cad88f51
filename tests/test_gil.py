"""The GIL: kernels run without it, so several Python threads can each step their own
optimizer at the same time. Every result must equal a serial run of the same work, bit
for bit. (bench/test_bench_gil.py shows the concurrency; nothing here is timed.)
"""

import threading

import numpy as np
import pytest

import fastoptim as fo

from conftest import HYPER, assert_same

N = 1_000_000
STEPS = 3
JOBS = [(fo.Adam, np.float32, 0), (fo.Momentum, np.float64, 1), (fo.AdaDelta, np.float32, 2),
        (fo.AdamW, np.float64, 3), (fo.RMSprop, np.float32, 4), (fo.SGD, np.float64, 5)]


def job(cls, dtype, seed, num_threads):
    """One optimizer on its own arrays: a dict and a 2-D F-ordered array, STEPS calls
    with gradients drawn from the job's own seeded generator."""
    rng = np.random.default_rng(seed)
    params = {"w": rng.standard_normal(N).astype(dtype),
              "m": np.asfortranarray(rng.standard_normal((250, 400)).astype(dtype))}
    opt = cls(**HYPER[cls], num_threads=num_threads)
    for _ in range(STEPS):
        grads = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}
        opt.update(params, grads)
    return params, opt


def run_in_threads(jobs, num_threads):
    results, errors = [None] * len(jobs), []
    start = threading.Barrier(len(jobs))

    def work(i, cls, dtype, seed):
        try:
            start.wait()
            results[i] = job(cls, dtype, seed, num_threads)
        except BaseException as exc:  # reported below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, *j)) for i, j in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def assert_same_job(a, b):
    (pa, oa), (pb, ob) = a, b
    for k in pa:
        assert_same(pa[k], pb[k])
        assert oa.state[k].keys() == ob.state[k].keys()
        for n, buf in oa.state[k].items():
            if n == "step":
                assert buf == ob.state[k][n] == STEPS
            else:
                assert_same(buf, ob.state[k][n])


@pytest.mark.parametrize("num_threads", [1, 2], ids=["serial-kernels", "openmp-2"])
def test_python_threads_each_with_an_optimizer_match_a_serial_run(num_threads):
    """num_threads=1: the kernels themselves are serial, so any overlap comes from the
    released GIL; num_threads=2: each Python thread also opens OpenMP regions of its own
    at the same time."""
    serial = [job(cls, dtype, seed, num_threads) for cls, dtype, seed in JOBS]
    for _ in range(2):
        threaded = run_in_threads(JOBS, num_threads)
        for a, b in zip(threaded, serial):
            assert_same_job(a, b)
