"""fastoptim against torch.optim, interleaved by process: ``update`` / ``step`` over one
float32 array, for every rule and variant torch.optim has.

``fastoptim bench`` times torch.optim in a process of its own before fastoptim's cases
(two OpenMP runtimes in one process spin against each other), so on a machine whose
memory bandwidth drifts its "x torch" compares two different moments. Here each round
runs one fastoptim process and one torch process, in turn (order swapped every other
round), each timing every case (warm-up calls, then ``--calls`` calls timed alone, the
median); the table gives the median over rounds of each side and their ratio (above 1:
fastoptim faster), and the spread of the per-round ratios.

    python bench/vs_torch.py [--n 1e7] [--rounds 5] [--threads 2] [--rules adam,...]
"""

import argparse
import json
import statistics
import subprocess
import sys

from fastoptim import _bench

WORKER = r"""
import json, sys, time
import numpy as np
from fastoptim import _bench
impl, rules, n, threads, calls = json.loads(sys.argv[1])
out = {}
for rule in rules:
    if impl == "torch":
        step = _bench.torch_step(rule, n, np.float32, threads)
    else:
        step = _bench.fastoptim_step(rule, n, np.float32, None, "compiled")
    for _ in range(3):
        step()
    ts = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        step()
        ts.append(time.perf_counter_ns() - t0)
    ts.sort()
    out[rule] = ts[len(ts) // 2] * 1e-9
print(json.dumps(out))
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", default="1e7")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--rules", default=",".join(r for r in _bench.RULES + _bench.VARIANTS
                                                if _bench._torch_of(r)))
    args = ap.parse_args(argv)
    n, rules = int(float(args.n)), args.rules.split(",")
    times = {impl: {r: [] for r in rules} for impl in ("fastoptim", "torch")}
    for rnd in range(args.rounds):
        for impl in (("fastoptim", "torch") if rnd % 2 == 0 else ("torch", "fastoptim")):
            spec = json.dumps([impl, rules, n, args.threads, args.calls])
            res = subprocess.run([sys.executable, "-c", WORKER, spec], check=True,
                                 capture_output=True, text=True, timeout=600)
            for r, t in json.loads(res.stdout).items():
                times[impl][r].append(t)
    print(f"n={n} float32, torch with {args.threads} threads, fastoptim's default "
          f"threading; medians over {args.rounds} rounds of one process per side")
    print(f"{'rule':<28}{'fastoptim':>11}{'torch':>11}{'x torch':>9}  per round")
    for r in rules:
        f, t = times["fastoptim"][r], times["torch"][r]
        ratios = sorted(b / a for a, b in zip(f, t))
        print(f"{r:<28}{statistics.median(f) * 1e3:>9.2f}ms{statistics.median(t) * 1e3:>9.2f}ms"
              f"{statistics.median(t) / statistics.median(f):>9.2f}  "
              f"{ratios[0]:.2f}-{ratios[-1]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
