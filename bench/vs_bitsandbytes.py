"""fastoptim's 8-bit (and bfloat16 and float32) Adam state against bitsandbytes' CPU
``Adam8bit`` and torch's fused Adam, interleaved by process: one step over one float32
array of ``--n`` elements.

Each round runs one process per implementation, in turn (the order rotated every round;
torch and fastoptim each bring an OpenMP runtime, which in one process spin against each
other), each timing its step (warm-up calls, then ``--calls`` calls timed alone, the
median); the table gives the median over rounds and each one's ratio to fastoptim's
8-bit step. bitsandbytes (``pip install bitsandbytes`` next to torch; its CPU backend)
is optional: without it its row says so.

    python bench/vs_bitsandbytes.py [--n 1e7] [--rounds 5] [--threads 2] [--calls 10]

Also: ``--trajectory`` runs 8-bit Adam with fastoptim and with bitsandbytes on the same
gradients (a fixed quadratic-plus-noise problem) and prints how far apart their
parameters and states drift (docs/state.rst).
"""

import argparse
import json
import statistics
import subprocess
import sys

WORKER = r"""
import json, sys, time
import numpy as np
impl, n, threads, calls = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
g0 = (rng.standard_normal(n) * 1e-3).astype(np.float32)
if impl in ("bitsandbytes", "torch"):
    import torch
    torch.set_num_threads(threads)
    p = torch.zeros(n)
    p.grad = torch.from_numpy(g0)
    if impl == "bitsandbytes":
        try:
            import bitsandbytes as bnb
        except ImportError:
            print(json.dumps(None)); sys.exit(0)
        opt = bnb.optim.Adam8bit([p], lr=1e-3)
    else:
        opt = torch.optim.Adam([p], lr=1e-3, fused=True)
    step = opt.step
else:
    import fastoptim as fo
    fmt = {"fastoptim int8": "int8", "fastoptim bfloat16": "bfloat16",
           "fastoptim float32": None}[impl]
    opt = fo.Adam(lr=1e-3, state_dtype=fmt, num_threads=threads)
    params, grads = [np.zeros(n, np.float32)], [g0]
    step = lambda: opt.update(params, grads)
for _ in range(3):
    step()
ts = []
for _ in range(calls):
    t0 = time.perf_counter_ns()
    step()
    ts.append(time.perf_counter_ns() - t0)
ts.sort()
print(json.dumps(ts[len(ts) // 2] * 1e-9))
"""

IMPLS = ["fastoptim int8", "fastoptim bfloat16", "fastoptim float32", "torch",
         "bitsandbytes"]


def trajectory(n=200_000, steps=300, seed=0):
    """8-bit Adam by fastoptim and by bitsandbytes on the same gradients: g = p - t +
    noise (a quadratic pulled to a target t, with noise), from the same start; returns
    at a few steps the largest and the mean gap of the two parameters and each one's
    mean gap to float32 Adam, relative to the target's mean magnitude."""
    import bitsandbytes as bnb
    import numpy as np
    import torch

    import fastoptim as fo

    rng = np.random.default_rng(seed)
    target = rng.standard_normal(n).astype(np.float32)
    ours = np.zeros(n, np.float32)
    theirs = torch.zeros(n)
    opt_ours = fo.Adam(lr=1e-2, state_dtype="int8")
    opt_theirs = bnb.optim.Adam8bit([theirs], lr=1e-2)
    f32 = np.zeros(n, np.float32)
    opt_f32 = fo.Adam(lr=1e-2)
    rows = []
    for t in range(1, steps + 1):
        noise = (rng.standard_normal(n) * 0.1).astype(np.float32)
        g = (ours - target) + noise
        g_theirs = (theirs.numpy() - target) + noise
        g32 = (f32 - target) + noise
        opt_ours.update([ours], [g])
        theirs.grad = torch.from_numpy(g_theirs)
        opt_theirs.step()
        opt_f32.update([f32], [g32])
        if t in (1, 10, 100, steps):
            scale = np.abs(target).mean()
            rows.append((t, float(np.abs(ours - theirs.numpy()).max() / scale),
                         float(np.abs(ours - theirs.numpy()).mean() / scale),
                         float(np.abs(ours - f32).mean() / scale),
                         float(np.abs(theirs.numpy() - f32).mean() / scale)))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", default="1e7")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--trajectory", action="store_true")
    args = ap.parse_args(argv)
    if args.trajectory:
        print("| step | max gap fastoptim-bnb | mean gap fastoptim-bnb | mean gap fastoptim "
              "int8-float32 | mean gap bnb-float32 |")
        print("| --- | --- | --- | --- | --- |")
        for t, mx, mean, f, b in trajectory():
            print(f"| {t} | {mx:.2e} | {mean:.2e} | {f:.2e} | {b:.2e} |")
        return 0
    n = int(float(args.n))
    times = {impl: [] for impl in IMPLS}
    for rnd in range(args.rounds):
        order = IMPLS[rnd % len(IMPLS):] + IMPLS[:rnd % len(IMPLS)]
        for impl in order:
            spec = json.dumps([impl, n, args.threads, args.calls])
            out = subprocess.run([sys.executable, "-c", WORKER, spec], capture_output=True,
                                 text=True, check=True)
            t = json.loads(out.stdout.strip().splitlines()[-1])
            if t is not None:
                times[impl].append(t)
    base = statistics.median(times["fastoptim int8"])
    print(f"Adam, one float32 array of {n:.0e}, {args.threads} threads, medians of "
          f"{args.rounds} rounds")
    print("| implementation | ms | x fastoptim int8 (above 1: slower) |")
    print("| --- | --- | --- |")
    for impl in IMPLS:
        if not times[impl]:
            print(f"| {impl} | not installed | |")
            continue
        med = statistics.median(times[impl])
        print(f"| {impl} | {med * 1e3:.2f} | {med / base:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
