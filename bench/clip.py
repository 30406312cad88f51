"""clip_grad_norm: the compiled norm and scaling passes, serial vs parallel, against the
NumPy reference and against what a user would write in plain NumPy (which sums in
another order, so it is not bit-identical and not thread-count independent).

For each size, print the median of ``--repeats`` calls (us) of:
  sum_ser / sum_par  fastoptim._clip.sum_of_squares forced serial / parallel
  scale_ser / scale_par  fastoptim._clip.scale forced serial / parallel
  clip  fastoptim.clip_grad_norm end to end, both passes (max_norm=0)
  ref   clip_grad_norm_reference (the pure-NumPy reference)
  numpy sqrt(sum(vdot(g, g))) then g *= factor, the usual NumPy code

    python bench/clip.py [--threads 2] [--repeats 200] [--dtype float32]
"""

import argparse
import math
import statistics
import time

import numpy as np

import fastoptim as fo
from fastoptim import _clip

SIZES = [4096, 16384, 32768, 65536, 131072, 1_000_000, 10_000_000]


def median_us(call, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1e3


def numpy_clip(grads, max_norm):
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
    factor = max_norm / (norm + 1e-6)
    if factor < 1:
        for g in grads:
            g *= g.dtype.type(factor)
    return norm


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args(argv)
    dtype = np.dtype(args.dtype)
    nt = args.threads
    old = _clip.get_parallel_threshold()
    print(f"fastoptim {fo.__version__}, {nt} threads, {dtype}, median of {args.repeats} "
          f"calls (us); serial threshold {old} elements")
    cols = ["sum_ser", "sum_par", "scale_ser", "scale_par", "clip", "ref", "numpy"]
    print(f"{'n':>10}" + "".join(f"{c:>11}" for c in cols))
    rng = np.random.default_rng(0)
    try:
        for n in SIZES:
            # four arrays, as a small network's W1, b1, W2, b2 would be
            sizes = [n * 3 // 4, n // 8, n // 8 - 8, 8]
            grads = [rng.standard_normal(k).astype(dtype) for k in sizes]
            rep = max(5, args.repeats if n <= 131072 else args.repeats // 10)
            res = {}
            _clip.set_parallel_threshold(n + 1)
            res["sum_ser"] = median_us(lambda: _clip.sum_of_squares(grads, num_threads=nt), rep)
            res["scale_ser"] = median_us(lambda: _clip.scale(grads, 1.0, num_threads=nt), rep)
            _clip.set_parallel_threshold(0)
            res["sum_par"] = median_us(lambda: _clip.sum_of_squares(grads, num_threads=nt), rep)
            res["scale_par"] = median_us(lambda: _clip.scale(grads, 1.0, num_threads=nt), rep)
            _clip.set_parallel_threshold(old)
            # max_norm = 0: the factor is 0 on every call, so both passes always run (the
            # values become zeros, which cost the same as any normal numbers)
            max_norm = 0.0
            res["clip"] = median_us(lambda: fo.clip_grad_norm(grads, max_norm,
                                                              num_threads=nt), rep)
            res["ref"] = median_us(lambda: fo.clip_grad_norm_reference(grads, max_norm),
                                   max(3, rep // 10))
            res["numpy"] = median_us(lambda: numpy_clip(grads, max_norm), rep)
            print(f"{n:>10}" + "".join(f"{res[c]:>11.1f}" for c in cols))
    finally:
        _clip.set_parallel_threshold(old)


if __name__ == "__main__":
    main()
