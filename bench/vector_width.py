"""Per-element cost of three rules for each CPU target, on data in L1 (one thread).

Shows what limits the kernels when data is in cache: SGD (multiply-adds) gets faster
with wider vectors; rules with a square root and a division per element (AdaGrad,
Adam) do not on CPUs whose divide/sqrt unit has the same per-element throughput at
every vector width (as on this project's Xeon).

    python bench/vector_width.py

Only the targets this CPU runs are timed (``FASTOPTIM_CPU`` caps them, see
fastoptim._dispatch); the others are named with the reason, never imported.
"""

import statistics
import time

import numpy as np

from fastoptim import _core, _dispatch

HYPER = {"sgd": dict(lr=1e-3, weight_decay=0.0),
         "adagrad": dict(lr=1e-2, eps=1e-10, weight_decay=0.0),
         "adam": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)}


def median_ns(fn, reps=20000):
    for _ in range(200):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times)


def per_element_ns(module, rule, small=16, large=1024):
    """(time(large) - time(small)) / (large - small): the call overhead cancels."""
    names, scalars, scalar_names = _core.RULES[rule]
    kw = dict(zip(scalar_names, scalars(3, **HYPER[rule])))
    fn = getattr(module, rule)
    out = []
    for n in (small, large):
        p, g = np.ones(n, np.float32), np.full(n, 1e-3, np.float32)
        state = [np.zeros(n, np.float32) for _ in names]
        out.append(median_ns(lambda: fn(p, g, *state, **kw, num_threads=1)))
    return (out[1] - out[0]) / (large - small)


def main():
    targets = _dispatch.supported()
    print("ns per float32 element, one thread, 1024 elements (in L1)")
    for t in _dispatch.PREFERENCE:
        if t not in targets:
            print(f"({t} not timed: {_dispatch.unavailable_reason(t)})")
    print(f"{'rule':<8}" + "".join(f"{t:>10}" for t in targets))
    for rule in HYPER:
        row = [per_element_ns(_dispatch.load(t), rule) for t in targets]
        print(f"{rule:<8}" + "".join(f"{v:>10.3f}" for v in row))


if __name__ == "__main__":
    main()
