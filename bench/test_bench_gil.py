"""pytest-benchmark: the kernels release the GIL, so Python threads that each step their
own optimizer run at the same time.

One round = K independent optimizers (Adam, float32, 1e6 elements each, num_threads=1 so
that OpenMP adds no threads of its own) each taking one update:

* ``python-threads=1``: the K updates one after the other in the calling thread;
* ``python-threads=K``: the K updates submitted to a pool of K threads at once;
* ``openmp``: the K updates one after the other, each on all cores (num_threads=None),
  for comparison.

On a machine with K free cores the second row takes about 1/K of the first when the
updates are compute-bound, less gain when memory bandwidth is the limit; had the kernels
held the GIL it would take as long as the first, or longer.

    pytest bench/test_bench_gil.py --benchmark-only
    pytest bench --benchmark-disable      # smoke: each runs once

No test here asserts a time.
"""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastoptim as fo

N = 1_000_000
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
KS = sorted({2, max(2, CORES or 1)})


def make_jobs(k, num_threads):
    rng = np.random.default_rng(0)
    jobs = []
    for _ in range(k):
        p = rng.standard_normal(N).astype(np.float32)
        g = rng.standard_normal(N).astype(np.float32)
        opt = fo.Adam(lr=1e-3, num_threads=num_threads)
        opt.update([p], [g])  # state allocated and first touched outside the timing
        jobs.append((opt, [p], [g]))
    return jobs


@pytest.mark.parametrize("mode", ["python-threads=1", "python-threads=K", "openmp"])
@pytest.mark.parametrize("k", KS, ids=lambda k: f"K={k}")
def test_independent_optimizers(benchmark, k, mode):
    benchmark.group = f"gil: {k} independent Adam float32 n=1e6 updates per round"
    benchmark.extra_info.update(k=k, mode=mode, n=N)
    jobs = make_jobs(k, None if mode == "openmp" else 1)

    if mode == "python-threads=K":
        pool = ThreadPoolExecutor(max_workers=k)
        list(pool.map(lambda j: j[0].update(j[1], j[2]), jobs))  # threads started

        def round_():
            for f in [pool.submit(opt.update, p, g) for opt, p, g in jobs]:
                f.result()
    else:
        pool = None

        def round_():
            for opt, p, g in jobs:
                opt.update(p, g)

    try:
        benchmark(round_)
    finally:
        if pool is not None:
            pool.shutdown()
