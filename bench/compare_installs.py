"""Training-loop epoch times of two (or more) fastoptim installations, interleaved.

For before/after claims about a change: give the Python of a virtual environment with the
old version installed and the Python of one with the new, e.g.

    python bench/compare_installs.py --python /tmp/before/bin/python \\
        --python .venv/bin/python --models 64-100-10,784-256-10,784-1024-1024-10

For every model and BLAS setting (NumPy's default threads, and one thread through
threadpoolctl), each installation runs one process that trains an MLP (fastoptim.demo.nn,
ReLU, softmax cross-entropy, float32, Adam lr=1e-3, mini-batches of 64 over synthetic
data) with each optimizer setting, epochs interleaved: the NumPy reference
(``backend="numpy"``), the default, ``num_threads=1``; and one more process with
``OMP_WAIT_POLICY=passive`` for the default. Installations alternate from round to round
(the machine's noise hits both); the table gives medians over rounds of each process's
median epoch (the first epoch, a warm-up, dropped). It uses only the public API that
every version has, so any two installations compare; ``fastoptim bench --e2e`` is the
same measurement for the installed version alone.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

WORKER = r"""
import contextlib, json, sys, time
import numpy as np
import fastoptim as fo
try:
    from fastoptim.demo import nn      # older versions: fastoptim.nn only
except ImportError:
    from fastoptim import nn
sizes, modes, blas1, epochs, rows = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
x = rng.standard_normal((rows, sizes[0])).astype(np.float32)
t = rng.integers(0, sizes[-1], rows)
def make(mode):
    if mode == "reference":
        return fo.Adam(lr=1e-3, backend="numpy")
    if mode == "serial":
        return fo.Adam(lr=1e-3, num_threads=1)
    return fo.Adam(lr=1e-3)
nets = {m: nn.MLP(sizes, dtype=np.float32, seed=1) for m in modes}
opts = {m: make(m) for m in modes}
epoch = {m: [] for m in modes}
upd = {m: [] for m in modes}
ctx = contextlib.nullcontext()
if blas1:
    from threadpoolctl import threadpool_limits
    ctx = threadpool_limits(1, user_api="blas")
with ctx:
    for e in range(epochs + 1):
        for m in (modes if e % 2 == 0 else modes[::-1]):
            net, opt, u = nets[m], opts[m], 0.0
            t0 = time.perf_counter()
            for i in range(0, rows, 64):
                g = net.gradient(x[i:i + 64], t[i:i + 64])
                t1 = time.perf_counter()
                opt.update(net.params, g)
                u += time.perf_counter() - t1
            epoch[m].append(time.perf_counter() - t0)
            upd[m].append(u)
print(json.dumps({m: [float(np.median(epoch[m][1:])), float(np.median(upd[m][1:]))]
                  for m in modes}))
"""


def run_one(python, sizes, modes, blas1, epochs, rows, env_extra, timeout):
    env = dict(os.environ)
    env.update(env_extra)
    arg = json.dumps([sizes, modes, blas1, epochs, rows])
    out = subprocess.run([python, "-c", WORKER, arg], capture_output=True, text=True,
                         env=env, timeout=timeout, cwd="/")
    if out.returncode != 0:
        raise SystemExit(f"{python} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", action="append", required=True,
                    help="a Python with fastoptim installed (give two or more)")
    ap.add_argument("--models", default="64-100-10,784-256-10,784-1024-1024-10")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per process")
    ap.add_argument("--rows", type=int, default=2048, help="training rows per epoch")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args(argv)
    models = [[int(v) for v in m.split("-")] for m in args.models.split(",")]
    jobs = []   # (label, python, env, modes)
    for py in args.python:
        jobs.append((py, {}, ["reference", "default", "serial"], ""))
        jobs.append((py, {"OMP_WAIT_POLICY": "passive"}, ["default"], "passive"))
    results = {}
    for sizes in models:
        for blas1 in (False, True):
            for r in range(args.rounds):
                order = jobs if r % 2 == 0 else jobs[::-1]
                for py, env, modes, tag in order:
                    res = run_one(py, sizes, modes, blas1, args.epochs, args.rows, env,
                                  args.timeout)
                    for m, v in res.items():
                        key = ("-".join(map(str, sizes)), "1" if blas1 else "default", py,
                               m + ("+passive" if tag else ""))
                        results.setdefault(key, []).append(v)
                    print(f"  {key[0]} blas={key[1]} round {r + 1}: {py} {tag or ''}",
                          file=sys.stderr)
    table = {k: [statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)]
             for k, v in results.items()}
    if args.json:
        print(json.dumps([list(k) + v for k, v in table.items()], indent=1))
        return
    print("| model | BLAS threads | install | optimizer | epoch ms | update ms |")
    print("|---|---|---|---|---|---|")
    for (model, blas, py, mode), (ep, up) in table.items():
        print(f"| {model} | {blas} | {py} | {mode} | {ep * 1e3:.1f} | {up * 1e3:.1f} |")


if __name__ == "__main__":
    main()
