"""``fastoptim demo``: a NumPy MLP (:mod:`fastoptim.demo.nn`) trained with every optimizer.

Each optimizer trains two nets from the same initial weights on the same mini-batches,
epochs alternating: one with fastoptim, one with the plain NumPy reference optimizer
(:class:`fastoptim.demo.loop.PlainReference`); both must end bit-identical. The table
gives the final loss, accuracy (or RMSE), the epoch time and the part of it in
``update`` for both; the loss curves go to a PNG and a CSV. Plots are drawn with
matplotlib's Agg canvas (no display needed, pyplot's global state never touched).
"""

import csv
import math
import os
import statistics
import sys
import time

import numpy as np

from .. import __version__, get_config, rules
from .. import optimizers as _optimizers
from . import DemoError, new_figure, settings

# Per data set: the network and the training settings (each optimizer's hyper-parameters:
# settings.hyper("demo/<data set>", ...)). Every optimizer starts from the same weights
# and sees the same mini-batches.
DEMO_SETUPS = {
    "digits": {
        "title": "scikit-learn digits (8x8 images, 10 classes)",
        "hidden": [100], "activation": "relu", "loss": "softmax", "dtype": "float32",
        "epochs": 30, "batch_size": 32, "test_fraction": 0.2,
    },
    "apartment": {
        # Seed 004's network: one hidden layer of 2 sigmoid nodes, MSE, and the whole
        # 10-row table as the batch (batch gradient descent).
        "title": "apartment prices, seed 004 (10 rows: size, age -> price)",
        "hidden": [2], "activation": "sigmoid", "loss": "mse", "dtype": "float64",
        "epochs": 1000, "batch_size": 10, "test_fraction": 0.0,
    },
}


def load_data(name, seed, test_fraction):
    """(x_train, t_train, x_test, t_test, info) with standardised inputs (and, for the
    regression, standardised targets; info['y_std'] converts back to price units)."""
    from . import datasets

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


def run(dataset="digits", names=None, *, epochs=None, batch_size=None, hidden=None,
        dtype=None, seed=0, threads=None, progress=None, out="fastoptim-demo"):
    """Train the MLP of ``dataset`` (a key of :data:`DEMO_SETUPS`) with each optimizer of
    ``names`` (class names; default: every rule), next to the same loop with the plain
    NumPy reference optimizer, epochs alternating; print the table and write
    ``<out>/loss_curves.png`` and ``<out>/loss_curves.csv``. ``None`` means the data
    set's setting; ``threads`` is the optimizers' ``num_threads``; ``progress`` (None:
    only when stderr is a terminal) a progress bar per optimizer. Needs matplotlib and
    tqdm (and scikit-learn for digits). Returns the table's rows.
    """
    from tqdm import tqdm

    from . import loop, nn

    setup = DEMO_SETUPS[dataset]
    names = settings.names() if names is None else list(names)
    epochs = epochs or setup["epochs"]
    batch_size = batch_size or setup["batch_size"]
    hidden = hidden or setup["hidden"]
    dtype = np.dtype(dtype or setup["dtype"])
    regression = setup["loss"] == "mse"
    start = time.perf_counter()

    x_tr, t_tr, x_te, t_te, info = load_data(dataset, seed, setup["test_fraction"])
    n_out = 1 if regression else info["classes"]
    sizes = [x_tr.shape[1], *hidden, n_out]

    def make_net():
        return nn.MLP(sizes, activation=setup["activation"], loss=setup["loss"],
                      dtype=dtype, seed=seed)

    init = {k: v.copy() for k, v in make_net().params.items()}
    n_train = len(x_tr)
    rng = np.random.default_rng(seed + 1)
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
    print(f"same initial weights (seed {seed}) and batch order for every optimizer; "
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
        hyper = settings.hyper(f"demo/{dataset}", name)
        cls = getattr(_optimizers, rules.get(name).class_name)
        opt = cls(**hyper, num_threads=threads)
        ref = loop.PlainReference(cls(**hyper))
        net, ref_net = make_net(), make_net()
        net.load_params(init)
        ref_net.load_params(init)
        loss, extra, _ = evaluate(net)
        curve = [{"optimizer": name, "epoch": 0, "train_loss": loss, **extra}]
        times = {"fastoptim": [], "reference": []}   # (epoch s, update s) per epoch
        loops = [("fastoptim", net, opt), ("reference", ref_net, ref)]
        bar = tqdm(total=epochs, desc=f"{name:<9}", unit="epoch", leave=True,
                   disable=None if progress is None else not progress,
                   file=sys.stderr)
        for epoch in range(epochs):
            # alternate which loop goes first, so that noise and caches treat both alike
            for which, model, optimizer in (loops if epoch % 2 == 0 else loops[::-1]):
                times[which].append(loop.train_epoch(model, optimizer,
                                                     epoch_batches(epoch)))
            # (Schedule-Free: evaluated at the average x, as its authors advise)
            loss, extra, metric = loop.evaluated_at_average(net, opt, ref_net, ref, evaluate)
            if not math.isfinite(loss):
                bar.close()
                raise DemoError(f"{name} diverged (loss {loss}) in epoch {epoch + 1}")
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

    os.makedirs(out, exist_ok=True)
    csv_path = os.path.join(out, "loss_curves.csv")
    png_path = os.path.join(out, "loss_curves.png")
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
    return rows


def _plot_curves(path, curves, names, regression, title, sizes, epochs):
    """Draw the loss and accuracy (or RMSE) panels, every epoch from 0 (the initial
    weights) on, each with its legend; write the PNG to ``path`` (None: don't) and return
    the figure."""
    fig = new_figure(figsize=(11, 4.5), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    key = "train_rmse" if regression else "test_accuracy"
    for name in names:
        ep = [r["epoch"] for r in curves[name]]
        style = dict(label=name, lw=1.6, color=settings.color(name),
                     ls=settings.line_style(name))
        ax1.plot(ep, [r["train_loss"] for r in curves[name]], **style)
        ax2.plot(ep, [r[key] for r in curves[name]], **style)
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss" + (" (MSE, standardised)" if regression else
                                      " (cross-entropy)"))
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("training RMSE (price units)" if regression else "test accuracy")
    if not regression:  # epoch 0 (the initial weights) included
        ax2.set_ylim(max(0.0, min(r[key] for n in names for r in curves[n]) - 0.02), 1.0)
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
        ax.set_xlim(0, max(epochs, 1))
        ax.legend(ncol=2, fontsize=8, loc="best")
    fig.suptitle(f"fastoptim demo: {title}, MLP {'-'.join(map(str, sizes))}")
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
