"""The book's two ch06 scripts ("Deep Learning from Scratch", chapter 6) with
``fastoptim.book`` in place of the book's ``common/optimizer.py``, side by side with the
book's classes (as ``tests/book_code.py`` writes them, in the book's order of
operations): paths, losses, accuracies, and the time per ``update``.

    python bench/book_ch06.py [--iters 2000]

* ``optimizer_compare_naive.py``: 30 steps on ``f(x, y) = x**2/20 + y**2`` from
  (-7, 2), ``params`` holding Python floats, the script's hyper-parameters.
* ``optimizer_compare_mnist.py``: its loop (a 4x100 ReLU MLP, batches of 128, SGD,
  Momentum, AdaGrad and Adam with their defaults, ``--iters`` iterations) on
  scikit-learn's 8x8 digits instead of MNIST (nothing downloads here), float64 as the
  book's network computes. Both implementations train their own copy of the same net
  on the same batches, one iteration each in turn; ``update`` is timed alone, and the
  table gives the median per call.

Needs scikit-learn (the ``demo`` extra).
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from book_code import BOOK  # noqa: E402 -- the book's classes, in the book's order

import fastoptim  # noqa: E402
import fastoptim.book as B  # noqa: E402
from fastoptim._bench import cpu_name  # noqa: E402
from fastoptim.demo import datasets, nn  # noqa: E402


def naive(make):
    """The naive script's loop: its path and the median time of an update."""
    params = {"x": -7.0, "y": 2.0}
    grads = {}
    xs, ys, times = [], [], []
    opt = make()
    for _ in range(30):
        xs.append(params["x"])
        ys.append(params["y"])
        grads["x"], grads["y"] = params["x"] / 10.0, 2.0 * params["y"]
        t0 = time.perf_counter()
        opt.update(params, grads)
        times.append(time.perf_counter() - t0)
    return np.array(xs, dtype=float), np.array(ys, dtype=float), statistics.median(times)


def mnist_like(name, iters, x, t, x_te, t_te):
    rng = np.random.default_rng(0)
    nets, opts, times = [], [], ([], [])
    for make in (BOOK[name], getattr(B, name)):
        nets.append(nn.MLP([64, 100, 100, 100, 100, 10], dtype=np.float64, seed=1))
        opts.append(make())
    losses = []
    for i in range(iters):
        idx = rng.choice(len(x), 128)
        xb, tb = x[idx], t[idx]
        for j in (0, 1) if i % 2 == 0 else (1, 0):
            grads = nets[j].gradient(xb, tb)
            t0 = time.perf_counter()
            opts[j].update(nets[j].params, grads)
            times[j].append(time.perf_counter() - t0)
        if i % 500 == 0 or i == iters - 1:
            losses.append((i, nets[0].loss(xb, tb), nets[1].loss(xb, tb)))
    diff = max(float(np.abs(nets[0].params[k] - nets[1].params[k]).max())
               for k in nets[0].params)
    identical = all(np.array_equal(nets[0].params[k], nets[1].params[k])
                    for k in nets[0].params)
    return {"losses": losses,
            "final": [(n.loss(x, t), n.accuracy(x_te, t_te)) for n in nets],
            "update_us": [1e6 * statistics.median(ts) for ts in times],
            "diff": diff, "identical": identical}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=2000)
    args = ap.parse_args(argv)
    print(f"fastoptim {fastoptim.__version__}, NumPy {np.__version__}, {cpu_name()}, "
          f"{os.cpu_count()} CPUs")

    print("\nch06/optimizer_compare_naive.py (30 steps, Python floats in params)")
    print(f"{'optimizer':<9} {'book final (x, y)':>30} {'fastoptim.book final (x, y)':>30} "
          f"{'max |diff|':>10} {'book us':>8} {'fo us':>8}")
    hyper = {"SGD": dict(lr=0.95), "Momentum": dict(lr=0.1), "AdaGrad": dict(lr=1.5),
             "Adam": dict(lr=0.3)}
    for name, kw in hyper.items():
        bx, by, bt = naive(lambda: BOOK[name](**kw))  # noqa: B023
        ox, oy, ot = naive(lambda: getattr(B, name)(**kw))  # noqa: B023
        d = max(np.abs(bx - ox).max(), np.abs(by - oy).max())
        print(f"{name:<9} {f'({bx[-1]:.12g}, {by[-1]:.12g})':>30} "
              f"{f'({ox[-1]:.12g}, {oy[-1]:.12g})':>30} "
              f"{'identical' if d == 0 else f'{d:.2g}':>10} {bt * 1e6:8.1f} {ot * 1e6:8.1f}")

    x, t = datasets.load_digits()
    x = x / 16.0
    perm = np.random.default_rng(42).permutation(len(x))
    tr, te = perm[:1500], perm[1500:]
    print(f"\nch06/optimizer_compare_mnist.py on digits ({len(tr)} training rows, "
          f"{len(te)} test rows), MLP 64-100-100-100-100-10, batch 128, {args.iters} "
          f"iterations; update time: median per call, the two alternating")
    print(f"{'optimizer':<9} {'book loss':>10} {'fo loss':>10} {'book acc':>9} "
          f"{'fo acc':>9} {'max |dW|':>10} {'book us':>8} {'fo us':>8} {'speed-up':>8}")
    for name in ("SGD", "Momentum", "AdaGrad", "Adam"):
        r = mnist_like(name, args.iters, x[tr], t[tr], x[te], t[te])
        (bl, ba), (ol, oa) = r["final"]
        bu, ou = r["update_us"]
        diff = "identical" if r["identical"] else f"{r['diff']:.2g}"
        print(f"{name:<9} {bl:10.6f} {ol:10.6f} {ba:9.4f} {oa:9.4f} {diff:>10} "
              f"{bu:8.1f} {ou:8.1f} {bu / ou:7.1f}x")


if __name__ == "__main__":
    main()
