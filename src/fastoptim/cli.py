"""The ``fastoptim`` command: ``fastoptim demo``, ``fastoptim paths``, ``fastoptim bench``,
``fastoptim info``.

``demo`` and ``paths`` need the optional ``demo`` extra (matplotlib, scikit-learn, tqdm):
``pip install "fastoptim[demo]"``. They import those libraries only when they run, so
``import fastoptim`` stays NumPy-only. Plots are drawn with matplotlib's Agg canvas (no
display needed, the global pyplot state is never touched).
"""

import argparse
import csv
import importlib
import math
import os
import statistics
import sys
import time

import numpy as np

from . import __version__, get_config
from . import optimizers as _optimizers

OPTIMIZER_NAMES = ("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "AdaDelta", "Adam",
                   "AdamW")
SEVEN = OPTIMIZER_NAMES[:7]

DEMO_EXTRA = 'pip install "fastoptim[demo]"'


class CLIError(Exception):
    """A user-facing error: printed as 'fastoptim: error: ...', exit status 2."""


def _require(command, *modules):
    """Import the optional libraries a command needs, or fail with the install line."""
    loaded, missing = [], []
    for name in modules:
        try:
            loaded.append(importlib.import_module(name))
        except ImportError:
            missing.append(name.split(".")[0])
    if missing:
        pretty = {"sklearn": "scikit-learn"}
        names = ", ".join(pretty.get(m, m) for m in dict.fromkeys(missing))
        raise CLIError(f"'fastoptim {command}' needs {names}, which "
                       f"{'is' if len(missing) == 1 else 'are'} not installed; install the "
                       f"demo extra: {DEMO_EXTRA}")
    return loaded


def _new_figure(**kw):
    """A matplotlib Figure on the Agg canvas, without pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kw)
    FigureCanvasAgg(fig)
    return fig


def _optimizer_list(text, default):
    if text is None:
        return list(default)
    by_lower = {n.lower(): n for n in OPTIMIZER_NAMES}
    names = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if part.lower() not in by_lower:
            raise CLIError(f"unknown optimizer {part!r}; choose from "
                           f"{', '.join(OPTIMIZER_NAMES)}")
        if by_lower[part.lower()] not in names:
            names.append(by_lower[part.lower()])
    if not names:
        raise CLIError("--optimizers is empty")
    return names


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def _widths(text):
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give widths like 100 or 128,64") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: widths must be positive")
    return sizes


# ---------------------------------------------------------------------------------------
# fastoptim demo
# ---------------------------------------------------------------------------------------

# Per data set: the network, the training settings and the learning rates. Every
# optimizer starts from the same weights and sees the same mini-batches.
DEMO_SETUPS = {
    "digits": {
        "title": "scikit-learn digits (8x8 images, 10 classes)",
        "hidden": [100], "activation": "relu", "loss": "softmax", "dtype": "float32",
        "epochs": 30, "batch_size": 32, "test_fraction": 0.2,
        "hyper": {"SGD": dict(lr=0.05), "Momentum": dict(lr=0.02, momentum=0.9),
                  "Nesterov": dict(lr=0.02, momentum=0.9), "AdaGrad": dict(lr=0.05),
                  "RMSprop": dict(lr=0.001), "AdaDelta": dict(lr=1.0),
                  "Adam": dict(lr=0.002), "AdamW": dict(lr=0.002, weight_decay=0.05)},
    },
    "apartment": {
        # Seed 004's network: one hidden layer of 2 sigmoid nodes, MSE, and the whole
        # 10-row table as the batch (batch gradient descent).
        "title": "apartment prices, seed 004 (10 rows: size, age -> price)",
        "hidden": [2], "activation": "sigmoid", "loss": "mse", "dtype": "float64",
        "epochs": 1000, "batch_size": 10, "test_fraction": 0.0,
        "hyper": {"SGD": dict(lr=0.1), "Momentum": dict(lr=0.01, momentum=0.9),
                  "Nesterov": dict(lr=0.01, momentum=0.9), "AdaGrad": dict(lr=0.1),
                  "RMSprop": dict(lr=0.01), "AdaDelta": dict(lr=1.0),
                  "Adam": dict(lr=0.01), "AdamW": dict(lr=0.01, weight_decay=0.01)},
    },
}


def _load_demo_data(name, seed, test_fraction):
    """(x_train, t_train, x_test, t_test, info) with standardised inputs (and, for the
    regression, standardised targets; info['y_std'] converts back to price units)."""
    from .demo import datasets

    rng = np.random.default_rng(seed)
    if name == "digits":
        X, y = datasets.load_digits()
        order = rng.permutation(len(X))
        n_test = int(round(test_fraction * len(X)))
        test, train = order[:n_test], order[n_test:]
        x_tr, x_te, _, _ = datasets.standardize(X[train], X[test])
        return x_tr, y[train], x_te, y[test], {"classes": 10}
    X, y = datasets.load_apartment()
    x_tr, _, _ = datasets.standardize(X)
    y_tr, y_mean, y_std = datasets.standardize(y)
    return x_tr, y_tr.reshape(-1, 1), None, None, {"y_mean": float(y_mean),
                                                    "y_std": float(y_std)}


def _fmt_ms(seconds):
    ms = seconds * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def _demo_table(rows, regression):
    metric = "train RMSE" if regression else "test acc"
    head = ["optimizer", "final loss", metric, "epoch ms", "ref epoch ms", "epoch x",
            "update ms", "ref update ms", "update x", "same result"]

    def ratio(a, b):
        return f"{a / b:.1f}x" if b > 0 else "-"

    body = []
    for r in rows:
        body.append([r["optimizer"], f"{r['final_loss']:.4f}",
                     (f"{r['metric']:.3f}" if regression else f"{r['metric']:.1%}"),
                     _fmt_ms(r["epoch_s"]), _fmt_ms(r["ref_epoch_s"]),
                     ratio(r["ref_epoch_s"], r["epoch_s"]),
                     _fmt_ms(r["update_s"]), _fmt_ms(r["ref_update_s"]),
                     ratio(r["ref_update_s"], r["update_s"]),
                     "bit-identical" if r["identical"] else "DIFFERENT"])
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in
                     enumerate(zip(head, widths)))
    out = [line, "-" * len(line)]
    for b in body:
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(b, widths))))
    return "\n".join(out)


def _dominance(epoch_s, update_s, ref_epoch_s, ref_update_s):
    """The closing line: which part of fastoptim's epoch takes most of the time."""
    share = update_s / epoch_s if epoch_s > 0 else 0.0
    ref_share = ref_update_s / ref_epoch_s if ref_epoch_s > 0 else 0.0
    lead = "updates dominate" if share >= 0.5 else "backprop dominates"
    return (f"{lead}: updates are {share:.0%} of fastoptim's epoch time, forward and "
            f"backward passes (matrix products) the other {1 - share:.0%} "
            f"(with the NumPy reference, updates are {ref_share:.0%} of its epoch)")


def run_demo(args):
    setup = DEMO_SETUPS[args.dataset]
    need = ["matplotlib", "tqdm"] + (["sklearn"] if args.dataset == "digits" else [])
    _require("demo", *need)
    from tqdm import tqdm

    from ._bench import PlainReference, train_epoch
    from .demo import nn

    names = _optimizer_list(args.optimizers, OPTIMIZER_NAMES)
    epochs = args.epochs or setup["epochs"]
    batch_size = args.batch_size or setup["batch_size"]
    hidden = args.hidden or setup["hidden"]
    dtype = np.dtype(args.dtype or setup["dtype"])
    regression = setup["loss"] == "mse"
    start = time.perf_counter()

    x_tr, t_tr, x_te, t_te, info = _load_demo_data(args.dataset, args.seed,
                                                   setup["test_fraction"])
    n_out = 1 if regression else info["classes"]
    sizes = [x_tr.shape[1], *hidden, n_out]

    def make_net():
        return nn.MLP(sizes, activation=setup["activation"], loss=setup["loss"],
                      dtype=dtype, seed=args.seed)

    init = {k: v.copy() for k, v in make_net().params.items()}
    n_train = len(x_tr)
    rng = np.random.default_rng(args.seed + 1)
    batches = [[perm[i:i + batch_size] for i in range(0, n_train, batch_size)]
               for perm in (rng.permutation(n_train) for _ in range(epochs))]
    n_updates = sum(map(len, batches))
    x_tr = x_tr.astype(dtype)
    x_te = None if x_te is None else x_te.astype(dtype)
    if regression:
        t_tr = t_tr.astype(dtype)

    cfg = get_config()
    print(f"fastoptim {__version__} demo: {setup['title']}")
    print(f"MLP {'-'.join(map(str, sizes))} ({setup['activation']}, "
          f"{'MSE' if regression else 'softmax cross-entropy'}, {dtype}), "
          f"{n_train} training rows" + ("" if regression else f", {len(x_te)} test rows")
          + f", {epochs} epochs x {len(batches[0])} batches of <= {batch_size} = "
          f"{n_updates} updates per optimizer")
    print(f"same initial weights (seed {args.seed}) and batch order for every optimizer; "
          f"OpenMP {'on' if cfg['openmp'] else 'OFF'}, {cfg['threads']} threads")
    print("Each optimizer trains two nets from the same weights on the same batches, epochs "
          "alternating: one with fastoptim, one with the NumPy reference optimizer "
          "(fastoptim.reference's functions in the same loop); both must end "
          "bit-identical. epoch ms: median wall time of an epoch (forward + backward + "
          "update); update ms: the part of it in update")
    print()

    def evaluate(net):
        loss = net.loss(x_tr, t_tr)
        if regression:
            rmse = math.sqrt(loss) * info["y_std"]   # loss is the MSE of standardised prices
            return loss, {"train_rmse": rmse}, rmse
        test_loss = net.loss(x_te, t_te)
        acc = net.accuracy(x_te, t_te)
        return loss, {"test_loss": test_loss, "test_accuracy": acc}, acc

    def epoch_batches(epoch):
        # indexed inside the timed loop, as a training loop does
        return ((x_tr[idx], t_tr[idx]) for idx in batches[epoch])

    rows, curves = [], {}
    for name in names:
        hyper = dict(setup["hyper"][name])
        cls = getattr(_optimizers, name)
        opt = cls(**hyper, num_threads=args.threads)
        ref = PlainReference(cls(**hyper))
        net, ref_net = make_net(), make_net()
        net.load_params(init)
        ref_net.load_params(init)
        loss, extra, _ = evaluate(net)
        curve = [{"optimizer": name, "epoch": 0, "train_loss": loss, **extra}]
        times = {"fastoptim": [], "reference": []}   # (epoch s, update s) per epoch
        loops = [("fastoptim", net, opt), ("reference", ref_net, ref)]
        bar = tqdm(total=epochs, desc=f"{name:<9}", unit="epoch", leave=True,
                   disable=None if args.progress is None else not args.progress,
                   file=sys.stderr)
        for epoch in range(epochs):
            # alternate which loop goes first, so that noise and caches treat both alike
            for which, model, optimizer in (loops if epoch % 2 == 0 else loops[::-1]):
                times[which].append(train_epoch(model, optimizer, epoch_batches(epoch)))
            loss, extra, metric = evaluate(net)
            if not math.isfinite(loss):
                bar.close()
                raise CLIError(f"{name} diverged (loss {loss}) in epoch {epoch + 1}")
            curve.append({"optimizer": name, "epoch": epoch + 1, "train_loss": loss, **extra})
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            bar.update(1)
        bar.close()
        identical = all(np.array_equal(ref_net.params[k], net.params[k]) for k in init)
        fo_t, ref_t = times["fastoptim"], times["reference"]
        rows.append({"optimizer": name, "final_loss": loss, "metric": metric,
                     "epoch_s": statistics.median(e for e, _ in fo_t),
                     "ref_epoch_s": statistics.median(e for e, _ in ref_t),
                     "update_s": statistics.median(u for _, u in fo_t),
                     "ref_update_s": statistics.median(u for _, u in ref_t),
                     "total_epoch_s": sum(e for e, _ in fo_t),
                     "total_ref_epoch_s": sum(e for e, _ in ref_t),
                     "total_update_s": sum(u for _, u in fo_t),
                     "total_ref_update_s": sum(u for _, u in ref_t),
                     "identical": identical})
        curves[name] = curve

    print(_demo_table(rows, regression))
    tot = {k: sum(r[k] for r in rows) for k in ("total_epoch_s", "total_ref_epoch_s",
                                                "total_update_s", "total_ref_update_s")}
    print(f"\nall optimizers, {n_updates * len(names)} updates of "
          f"{sum(v.size for v in init.values())} parameters: epochs {_fmt_ms(tot['total_epoch_s'])}"
          f" ms with fastoptim vs {_fmt_ms(tot['total_ref_epoch_s'])} ms with the NumPy "
          f"reference ({tot['total_ref_epoch_s'] / tot['total_epoch_s']:.2f}x); of which in "
          f"update {_fmt_ms(tot['total_update_s'])} ms vs "
          f"{_fmt_ms(tot['total_ref_update_s'])} ms "
          f"({tot['total_ref_update_s'] / tot['total_update_s']:.1f}x)")
    print(_dominance(tot["total_epoch_s"], tot["total_update_s"], tot["total_ref_epoch_s"],
                     tot["total_ref_update_s"]))
    if not all(r["identical"] for r in rows):
        print("WARNING: " + ", ".join(r["optimizer"] for r in rows if not r["identical"])
              + " ended with parameters different from the reference's")
    if regression:
        print("final loss: MSE of standardised prices; train RMSE: in the table's price "
              "units (10 rows, no test split)")

    os.makedirs(args.out, exist_ok=True)
    csv_path = os.path.join(args.out, "loss_curves.csv")
    png_path = os.path.join(args.out, "loss_curves.png")
    columns = (["optimizer", "epoch", "train_loss", "train_rmse"] if regression else
               ["optimizer", "epoch", "train_loss", "test_loss", "test_accuracy"])
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for name in names:
            for row in curves[name]:
                w.writerow({k: (f"{v:.9g}" if isinstance(v, float) else v)
                            for k, v in row.items()})
    _plot_curves(png_path, curves, names, regression, setup["title"], sizes, epochs)
    print(f"\nwrote {csv_path} and {png_path} ({time.perf_counter() - start:.1f} s in total)")
    return 0


def _plot_curves(path, curves, names, regression, title, sizes, epochs):
    fig = _new_figure(figsize=(11, 4.5), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    key = "train_rmse" if regression else "test_accuracy"
    for name in names:
        ep = [r["epoch"] for r in curves[name]]
        style = dict(label=name, lw=1.6, color=COLORS[name], ls=STYLES.get(name, "-"))
        ax1.plot(ep, [r["train_loss"] for r in curves[name]], **style)
        ax2.plot(ep, [r[key] for r in curves[name]], **style)
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss" + (" (MSE, standardised)" if regression else
                                      " (cross-entropy)"))
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("training RMSE (price units)" if regression else "test accuracy")
    if not regression:
        ax2.set_ylim(max(0.0, min(r[key] for n in names for r in curves[n][1:]) - 0.02)
                     if epochs else 0.0, 1.0)
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
    ax1.legend(ncol=2, fontsize=8)
    fig.suptitle(f"fastoptim demo: {title}, MLP {'-'.join(map(str, sizes))}")
    fig.savefig(path, dpi=110)


# ---------------------------------------------------------------------------------------
# fastoptim paths
# ---------------------------------------------------------------------------------------

def _book(p):
    x, y = p
    return x * x / 20.0 + y * y, np.array([x / 10.0, 2.0 * y])


def _rosenbrock(p):
    x, y = p
    return ((1 - x) ** 2 + 100 * (y - x * x) ** 2,
            np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)]))


def _beale(p):
    x, y = p
    a = 1.5 - x + x * y
    b = 2.25 - x + x * y * y
    c = 2.625 - x + x * y ** 3
    f = a * a + b * b + c * c
    gx = 2 * a * (y - 1) + 2 * b * (y * y - 1) + 2 * c * (y ** 3 - 1)
    gy = 2 * a * x + 2 * b * 2 * x * y + 2 * c * 3 * x * y * y
    return f, np.array([gx, gy])


def _saddle(p):
    x, y = p
    return x * x - y * y, np.array([2 * x, -2 * y])


# name -> function, start, minimum (or saddle point), view box, steps, per-optimizer
# hyper-parameters (chosen so that every path is visible in the box), contour levels.
PATH_FUNCTIONS = {
    "book": {
        "title": "x²/20 + y²  (Deep Learning from Scratch)", "fn": _book,
        "start": (-7.0, 2.0), "target": (0.0, 0.0), "box": ((-10, 10), (-5, 5)),
        "steps": 30, "levels": "log",
        "hyper": {"SGD": dict(lr=0.95), "Momentum": dict(lr=0.1), "Nesterov": dict(lr=0.1),
                  "AdaGrad": dict(lr=1.5), "RMSprop": dict(lr=0.3),
                  "AdaDelta": dict(lr=1.0, eps=1e-1), "Adam": dict(lr=0.3),
                  "AdamW": dict(lr=0.3, weight_decay=0.1)},
    },
    "rosenbrock": {
        "title": "Rosenbrock  (1-x)² + 100(y-x²)²", "fn": _rosenbrock,
        "start": (-1.2, 1.0), "target": (1.0, 1.0), "box": ((-2, 2), (-1, 3)),
        "steps": 1000, "levels": "log",
        "hyper": {"SGD": dict(lr=1e-3), "Momentum": dict(lr=1e-3), "Nesterov": dict(lr=1e-3),
                  "AdaGrad": dict(lr=1.0), "RMSprop": dict(lr=0.005),
                  "AdaDelta": dict(lr=1.0, rho=0.99, eps=1e-5), "Adam": dict(lr=0.05),
                  "AdamW": dict(lr=0.05, weight_decay=0.01)},
    },
    "beale": {
        "title": "Beale", "fn": _beale,
        "start": (1.0, 1.5), "target": (3.0, 0.5), "box": ((-1, 4.5), (-1.5, 2)),
        "steps": 500, "levels": "log",
        "hyper": {"SGD": dict(lr=0.01), "Momentum": dict(lr=0.002), "Nesterov": dict(lr=0.002),
                  "AdaGrad": dict(lr=0.5), "RMSprop": dict(lr=0.01),
                  "AdaDelta": dict(lr=1.0, rho=0.99, eps=1e-4), "Adam": dict(lr=0.05),
                  "AdamW": dict(lr=0.05, weight_decay=0.01)},
    },
    "saddle": {
        "title": "saddle  x² - y²", "fn": _saddle,
        "start": (-1.8, 1e-3), "target": (0.0, 0.0), "box": ((-2, 2), (-2, 2)),
        "steps": 80, "levels": "linear",
        "hyper": {"SGD": dict(lr=0.05), "Momentum": dict(lr=0.01), "Nesterov": dict(lr=0.01),
                  "AdaGrad": dict(lr=0.3), "RMSprop": dict(lr=0.05),
                  "AdaDelta": dict(lr=1.0, eps=1e-2), "Adam": dict(lr=0.1),
                  "AdamW": dict(lr=0.1, weight_decay=0.01)},
    },
}

COLORS = {"SGD": "#1f77b4", "Momentum": "#ff7f0e", "Nesterov": "#2ca02c",
          "AdaGrad": "#d62728", "RMSprop": "#9467bd", "AdaDelta": "#8c564b",
          "Adam": "#e377c2", "AdamW": "#17becf"}


def optimizer_path(name, function, steps=None, hyper=None):
    """The trajectory of one optimizer on one test function: an array of shape
    (steps + 1, 2), start included. Uses the real optimizer class on a 2-element float64
    parameter array, updated in place."""
    spec = PATH_FUNCTIONS[function]
    opt = getattr(_optimizers, name)(**(hyper if hyper is not None else spec["hyper"][name]))
    p = np.array(spec["start"], dtype=np.float64)
    out = [p.copy()]
    for _ in range(spec["steps"] if steps is None else steps):
        _, g = spec["fn"](p)
        opt.update([p], [g])
        out.append(p.copy())
        if not np.all(np.isfinite(p)):
            break
    return np.array(out)


def _contours(ax, spec):
    (x0, x1), (y0, y1) = spec["box"]
    xs = np.linspace(x0, x1, 300)
    ys = np.linspace(y0, y1, 300)
    X, Y = np.meshgrid(xs, ys)
    Z, _ = spec["fn"]((X, Y))
    if spec["levels"] == "log":
        lo = max(float(Z.min()), 1e-3)
        levels = np.geomspace(lo, float(Z.max()), 25)
        ax.contour(X, Y, Z, levels=levels, colors="0.7", linewidths=0.6)
    else:
        ax.contour(X, Y, Z, levels=25, colors="0.7", linewidths=0.6)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)


# The variants (Nesterov of Momentum, AdamW of Adam) dashed, so overlapping lines show.
STYLES = {"Nesterov": "--", "AdamW": "--"}


def _draw_path(ax, path, name, markers=True):
    ax.plot(path[:, 0], path[:, 1], STYLES.get(name, "-"), color=COLORS[name], lw=1.4,
            label=name, marker="o" if markers else None, ms=2.5)


def run_paths(args):
    _require("paths", "matplotlib")
    names = _optimizer_list(args.optimizers, SEVEN)
    if args.functions is None:
        functions = list(PATH_FUNCTIONS)
    else:
        functions = [f.strip().lower() for f in args.functions.split(",") if f.strip()]
        bad = [f for f in functions if f not in PATH_FUNCTIONS]
        if bad or not functions:
            raise CLIError(f"unknown function(s) {', '.join(map(repr, bad))}; choose from "
                           f"{', '.join(PATH_FUNCTIONS)}")
    start = time.perf_counter()
    paths = {f: {n: optimizer_path(n, f, steps=args.steps) for n in names} for f in functions}

    os.makedirs(args.out, exist_ok=True)
    csv_path = os.path.join(args.out, "paths.csv")
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["function", "optimizer", "step", "x", "y", "f"])
        for f in functions:
            fn = PATH_FUNCTIONS[f]["fn"]
            for n in names:
                for step, (x, y) in enumerate(paths[f][n]):
                    w.writerow([f, n, step, f"{x:.12g}", f"{y:.12g}",
                                f"{fn((x, y))[0]:.12g}"])

    # One overview: a panel per function, every optimizer over the contours.
    cols = min(2, len(functions))
    rows = -(-len(functions) // cols)
    fig = _new_figure(figsize=(6.2 * cols, 5.0 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, f in zip(axes, functions):
        spec = PATH_FUNCTIONS[f]
        _contours(ax, spec)
        for n in names:
            _draw_path(ax, paths[f][n], n, markers=False)
        ax.plot(*spec["start"], "k^", ms=8)
        ax.plot(*spec["target"], "k*", ms=11)
        ax.set_title(f"{spec['title']}, {len(paths[f][names[0]]) - 1} steps")
    for ax in axes[len(functions):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle("fastoptim paths: one start (▲), the minimum or saddle point (★)")
    overview = os.path.join(args.out, "paths.png")
    fig.savefig(overview, dpi=100)
    written = [overview]

    # One figure per function: a panel per optimizer, as in the book's figure.
    for f in functions:
        spec = PATH_FUNCTIONS[f]
        cols = min(4, len(names))
        rows = -(-len(names) // cols)
        fig = _new_figure(figsize=(4.0 * cols, 3.3 * rows), layout="constrained")
        axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
        for ax, n in zip(axes, names):
            _contours(ax, spec)
            _draw_path(ax, paths[f][n], n)
            ax.plot(*spec["target"], "k*", ms=10)
            hp = ", ".join(f"{k}={v:g}" for k, v in spec["hyper"][n].items())
            ax.set_title(f"{n} ({hp})", fontsize=9)
        for ax in axes[len(names):]:
            ax.set_visible(False)
        fig.suptitle(f"{spec['title']}: start {spec['start']}, "
                     f"{len(paths[f][names[0]]) - 1} steps")
        path = os.path.join(args.out, f"paths_{f}.png")
        fig.savefig(path, dpi=90)
        written.append(path)

    print(f"fastoptim {__version__} paths: {', '.join(names)} on {', '.join(functions)}")
    for f in functions:
        spec = PATH_FUNCTIONS[f]
        finals = ", ".join(
            f"{n} {spec['fn'](paths[f][n][-1])[0]:.3g}" for n in names)
        print(f"  {f:<11} f at the last step: {finals}")
    print(f"wrote {csv_path}, {', '.join(written)} ({time.perf_counter() - start:.1f} s)")
    return 0


# ---------------------------------------------------------------------------------------
# fastoptim info, and the parser
# ---------------------------------------------------------------------------------------

def run_info(args):
    from . import show_config

    show_config()
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fastoptim",
        description="Fused, OpenMP-parallel optimizer steps for NumPy arrays: demos.")
    parser.add_argument("--version", action="version", version=f"fastoptim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="train an MLP with every optimizer; table, loss curves (PNG, CSV)",
        description="Train a NumPy MLP (fastoptim.demo.nn) with each optimizer from the "
                    "same initial weights on the same mini-batches, next to the same loop "
                    "with the NumPy reference optimizer (epochs alternating); print final "
                    "loss, accuracy, epoch time and the time in the optimizer for both, and "
                    "which part of the epoch dominates; write <out>/loss_curves.png and "
                    "<out>/loss_curves.csv.")
    demo.add_argument("--dataset", choices=sorted(DEMO_SETUPS), default="digits",
                      help="digits: scikit-learn's bundled 8x8 digits (classification); "
                           "apartment: the 10-row price table of the lecture notes (MSE "
                           "regression). Default: digits")
    demo.add_argument("--epochs", type=_positive_int, default=None,
                      help="passes over the training set (default: 30 for digits, 1000 for "
                           "apartment)")
    demo.add_argument("--optimizers", default=None,
                      help=f"comma-separated subset of {','.join(OPTIMIZER_NAMES)} "
                           "(default: all eight)")
    demo.add_argument("--out", default="fastoptim-demo",
                      help="output directory (default: ./fastoptim-demo)")
    demo.add_argument("--seed", type=int, default=0,
                      help="seed for the split, the initial weights and the batches")
    demo.add_argument("--batch-size", type=_positive_int, default=None,
                      help="mini-batch size (default: 32 for digits, 10 = all rows for "
                           "apartment)")
    demo.add_argument("--hidden", type=_widths, default=None,
                      help="hidden layer widths, e.g. 100 or 128,64 (default: 100 for "
                           "digits, 2 for apartment as in the notes)")
    demo.add_argument("--dtype", choices=["float32", "float64"], default=None,
                      help="network dtype (default: float32 for digits, float64 for "
                           "apartment)")
    demo.add_argument("--threads", type=_positive_int, default=None,
                      help="num_threads for the optimizers (default: OpenMP's maximum)")
    demo.add_argument("--progress", dest="progress", action="store_true", default=None,
                      help="always show a progress bar per optimizer (default: only when "
                           "stderr is a terminal)")
    demo.add_argument("--no-progress", dest="progress", action="store_false",
                      help="never show progress bars")
    demo.set_defaults(func=run_demo)

    paths = sub.add_parser(
        "paths", help="optimizer trajectories on 2-D test functions (PNG, CSV)",
        description="Run each optimizer from one start on 2-D test functions and draw the "
                    "paths over contour lines: <out>/paths.png (all functions), "
                    "<out>/paths_<function>.png (a panel per optimizer) and "
                    "<out>/paths.csv.")
    paths.add_argument("--functions", default=None,
                       help=f"comma-separated subset of {','.join(PATH_FUNCTIONS)} "
                            "(default: all)")
    paths.add_argument("--optimizers", default=None,
                       help=f"comma-separated subset of {','.join(OPTIMIZER_NAMES)} "
                            "(default: the seven of the notes, without AdamW)")
    paths.add_argument("--steps", type=_positive_int, default=None,
                       help="steps per path (default: per function, 30 to 1000)")
    paths.add_argument("--out", default="fastoptim-paths",
                       help="output directory (default: ./fastoptim-paths)")
    paths.set_defaults(func=run_paths)

    sub.add_parser("bench", add_help=False,
                   help="time every rule against the NumPy reference, the memory roofline "
                        "and torch.optim (see 'fastoptim bench --help')")

    info = sub.add_parser("info", help="print the build and thread configuration")
    info.set_defaults(func=run_info)
    return parser


def main(argv=None):
    """Entry point of the ``fastoptim`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # its own parser (fastoptim._bench), core-only dependencies
        from . import _bench

        return _bench.main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"fastoptim: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
