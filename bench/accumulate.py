"""fastoptim.Accumulate: the cost of its calls against direct updates.

For each case, medians (interleaved rounds) of:
  direct      optimizer.update(params, grads)
  accumulate  an accumulating call (the copy or the add into the accumulators)
  step        the stepping call: the optimizer's fused pass making (acc + g)/k in cache
  step-2pass  the same call computing the means first (np.add, np.divide into the
              accumulators, then optimizer.update on them): the unfused path, what the
              stepping call cost before it was fused (and costs with backend="numpy"
              or skip_nonfinite=True)
  cycle       one cycle of k calls, against k direct updates

    python bench/accumulate.py [--steps 4] [--rounds 30]
"""

import argparse
import statistics
import time

import numpy as np

import fastoptim as fo
from fastoptim import accumulate

CASES = {"one array of 1e6 float32": [(1_000_000,)],
         "64-100-10 MLP (4 arrays, 7.5k)": [(64, 100), (100,), (100, 10), (10,)]}


def timed(fn):
    t0 = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t0) * 1e-9


def run_case(shapes, k, rounds):
    rng = np.random.default_rng(0)
    p = {f"p{i}": rng.standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)}
    g = {key: (1e-3 * rng.standard_normal(v.shape)).astype(np.float32) for key, v in p.items()}
    direct = fo.Adam(lr=1e-6)
    fused = fo.Accumulate(fo.Adam(lr=1e-6), steps=k)
    unfused = fo.Accumulate(fo.Adam(lr=1e-6), steps=k)
    real = accumulate._Mean

    class TwoPass(real):  # the unfused path: the fast path refuses these means (no
        def __init__(self, *a):  # arrays), so they are computed in NumPy first
            super().__init__(*a)
            self.fused = ([None] * len(self.fused[0]), self.fused[1])
    times = {n: [] for n in ("direct", "accumulate", "step", "step-2pass", "cycle",
                             "k direct")}
    for _ in range(3):  # warm up: state made, pages touched
        direct.update(p, g)
        for _ in range(k):
            fused.update(p, g)
            unfused.update(p, g)
    for _ in range(rounds):
        times["direct"].append(timed(lambda: direct.update(p, g)))
        times["k direct"].append(sum(timed(lambda: direct.update(p, g)) for _ in range(k)))
        calls = [timed(lambda: fused.update(p, g)) for _ in range(k)]
        times["accumulate"].append(statistics.median(calls[1:-1] or calls[:1]))
        times["step"].append(calls[-1])
        times["cycle"].append(sum(calls))
        for _ in range(k - 1):
            unfused.update(p, g)
        accumulate._Mean = TwoPass
        try:
            times["step-2pass"].append(timed(lambda: unfused.update(p, g)))
        finally:
            accumulate._Mean = real
    return {n: statistics.median(t) for n, t in times.items()}


def fmt(s):
    return f"{s * 1e6:.0f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args(argv)
    cfg = fo.get_config()
    print(f"fastoptim {cfg['version']} ({cfg['cpu_target']}), {cfg['threads']} threads; "
          f"Adam, steps={args.steps}, medians of {args.rounds} interleaved rounds")
    cols = ("direct", "accumulate", "step", "step-2pass", "cycle", "k direct")
    print(f"{'case':<32}" + "".join(f"{c:>12}" for c in cols))
    for name, shapes in CASES.items():
        med = run_case(shapes, args.steps, args.rounds)
        print(f"{name:<32}" + "".join(f"{fmt(med[c]):>12}" for c in cols))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
