"""``update`` alone, timed in two (or more) fastoptim installations, interleaved: the
microbenchmark side of a before/after claim (``compare_installs.py`` is the training-loop
side).

    python bench/compare_micro.py --python /tmp/before/bin/python --python .venv/bin/python

Cases (float32, the default ``num_threads=None``, so the threading policy in force in
each installation decides): SGD and Adam over one array of 1e7 elements, and Adam over
1000 arrays of 1000 elements in one call -- the cases ``fastoptim bench`` reports. Each
round runs one process per installation, in turn (the machine's noise hits all of them),
which times every case: warm-up calls, then ``--calls`` calls, each timed alone; the
process reports each case's median. The table gives, per case, the median over rounds
of those medians and each installation's ratio to the first. It uses only the public
API that every version has.
"""

import argparse
import json
import statistics
import subprocess
import sys

WORKER = r"""
import json, sys, time
import numpy as np
import fastoptim as fo
calls, warm = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
def case(make, params):
    grads = [rng.standard_normal(p.shape).astype(p.dtype) * 1e-3 for p in params]
    opt = make()
    for _ in range(warm):
        opt.update(params, grads)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        opt.update(params, grads)
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]
big = [rng.standard_normal(10_000_000).astype(np.float32)]
many = [rng.standard_normal(1000).astype(np.float32) for _ in range(1000)]
out = {
    "SGD 1e7": case(lambda: fo.SGD(lr=1e-3), big),
    "Adam 1e7": case(lambda: fo.Adam(lr=1e-3), big),
    "Adam 1000x1000": case(lambda: fo.Adam(lr=1e-3), many),
}
print(json.dumps({"version": fo.__version__, "times": out}))
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", action="append", required=True,
                    help="the Python of an installation (give two or more; the first is "
                         "the baseline)")
    ap.add_argument("--label", action="append", help="a name per --python, in order")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=60)
    ap.add_argument("--warm", type=int, default=20)
    ap.add_argument("--json", help="write the per-round results here")
    args = ap.parse_args(argv)
    labels = args.label or [f"install {i}" for i in range(len(args.python))]
    if len(labels) != len(args.python):
        ap.error("give one --label per --python")
    rounds = {label: [] for label in labels}
    for r in range(args.rounds):
        for py, label in zip(args.python, labels):
            res = subprocess.run([py, "-c", WORKER, json.dumps([args.calls, args.warm])],
                                 capture_output=True, text=True, check=True, timeout=600)
            rounds[label].append(json.loads(res.stdout)["times"])
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    cases = list(rounds[labels[0]][0])
    med = {label: {c: statistics.median(x[c] for x in rounds[label]) for c in cases}
           for label in labels}
    print("| case | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for c in cases:
        base = med[labels[0]][c]
        cells = [f"{med[label][c] * 1e3:.2f} ms ({med[label][c] / base:.2f}x)"
                 for label in labels]
        print(f"| {c} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"labels": labels, "rounds": rounds, "medians": med}, f, indent=1)


if __name__ == "__main__":
    main()
