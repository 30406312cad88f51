"""Measure where a parallel step starts to pay off, per rule family.

For each size, time one optimizer update forced serial (threshold above the size) and forced
parallel (threshold 0), interleaved, and print the medians and the ratio. The first size
where parallel wins steadily is the serial threshold to choose for this machine.

    python bench/threshold.py [--threads 2] [--repeats 400]
"""

import argparse
import statistics
import time

import numpy as np

import fastoptim as fo
from fastoptim._dispatch import kernels as _kernels

SIZES = [1, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144]


def kernel_call(rule, n, dtype, nt):
    """One optimizer update over one array of n elements (the path users run)."""
    cls = {"sgd": fo.SGD, "adam": fo.Adam}[rule]
    opt = cls(num_threads=nt)
    p = [np.ones(n, dtype)]
    g = [np.full(n, 1e-3, dtype)]
    return lambda: opt.update(p, g)


def median_us(call, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=400)
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args(argv)
    dtype = np.dtype(args.dtype)
    old = _kernels.get_parallel_thresholds()
    print(f"fastoptim {fo.__version__}, {args.threads} threads, {dtype}, median of "
          f"{args.repeats} calls (us)")
    print(f"{'rule':<6}{'n':>9}{'serial':>10}{'parallel':>10}{'par/ser':>9}")
    try:
        for rule, family in (("sgd", "light"), ("adam", "heavy")):
            for n in SIZES:
                call = kernel_call(rule, n, dtype, args.threads)
                res = {"serial": [], "parallel": []}
                for _ in range(5):  # interleave to share the noise
                    _kernels.set_parallel_thresholds(**{family: 2 * n + 1})  # > any work
                    res["serial"].append(median_us(call, args.repeats // 5))
                    _kernels.set_parallel_thresholds(**{family: 0})
                    res["parallel"].append(median_us(call, args.repeats // 5))
                s, p = statistics.median(res["serial"]), statistics.median(res["parallel"])
                print(f"{rule:<6}{n:>9}{s:>10.2f}{p:>10.2f}{p / s:>9.2f}")
    finally:
        _kernels.set_parallel_thresholds(**old)


if __name__ == "__main__":
    main()
