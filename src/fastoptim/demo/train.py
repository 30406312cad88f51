"""``fastoptim demo``: a NumPy MLP (:mod:`fastoptim.demo.nn`) trained with every optimizer.

Each optimizer trains three nets from the same initial weights on the same mini-batches,
the three loops taking turns epoch by epoch: one with fastoptim; one with the plain NumPy
optimizer of :mod:`fastoptim.demo.plain` (the rule as a user writes it, the code
fastoptim replaces: the baseline of the speed-ups; it agrees with fastoptim to rounding);
one with the NumPy reference (:class:`fastoptim.demo.loop.PlainReference`: the functions
of :mod:`fastoptim.reference`, the specification), which must end bit-identical to
fastoptim. The table gives the final loss, accuracy (or RMSE), the epoch time and the
part of it in ``update`` for all three, and the speed-ups over the plain loop; the loss
curves go to a PNG and a CSV. Plots are drawn with matplotlib's Agg canvas (no display
needed, pyplot's global state never touched).
"""

import csv
import itertools
import math
import os
import statistics
import sys
import time

import numpy as np

from .. import __version__, get_config, rules
from .. import optimizers as _optimizers
from . import DemoError, new_figure, plain, settings

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


def _ratio(a, b):
    return f"{a / b:.1f}x" if b > 0 else "-"


def _fmt_rel(x):
    return "0" if x == 0 else f"{x:.0e}" if math.isfinite(x) else str(x)


def _demo_table(rows, regression):
    """The table: per optimizer the final loss and metric, then epoch ms and update ms of
    fastoptim, the plain NumPy loop and the reference, with fastoptim's speed-up over the
    plain loop; whether fastoptim ended bit-identical to the reference, and how far the
    plain loop's loss curve is from fastoptim's (largest relative difference)."""
    metric = "train RMSE" if regression else "test acc"
    groups = [("", 3), ("epoch ms", 4), ("update ms", 4), ("vs reference", 1),
              ("plain loss", 1)]
    head = ["optimizer", "final loss", metric, "fastoptim", "plain", "x plain",
            "reference", "fastoptim", "plain", "x plain", "reference", "result", "rel diff"]
    body = []
    for r in rows:
        body.append([r["optimizer"], f"{r['final_loss']:.4f}",
                     (f"{r['metric']:.3f}" if regression else f"{r['metric']:.1%}"),
                     _fmt_ms(r["epoch_s"]), _fmt_ms(r["plain_epoch_s"]),
                     _ratio(r["plain_epoch_s"], r["epoch_s"]), _fmt_ms(r["ref_epoch_s"]),
                     _fmt_ms(r["update_s"]), _fmt_ms(r["plain_update_s"]),
                     _ratio(r["plain_update_s"], r["update_s"]), _fmt_ms(r["ref_update_s"]),
                     "bit-identical" if r["identical"] else "DIFFERENT",
                     _fmt_rel(r["plain_loss_rel_diff"])])
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    col = 0
    for title, n in groups:   # a one-column group's title is its header's first line
        if n == 1:
            widths[col] = max(widths[col], len(title))
        col += n
    sep = "  "
    # the group line: a title centred over its columns (dashes around it)
    top, col = [], 0
    for title, n in groups:
        span = sum(widths[col:col + n]) + len(sep) * (n - 1)
        top.append(title.rjust(span) if n == 1 else
                   f" {title} ".center(span, "-") if title else " " * span)
        col += n
    line = sep.join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in
                    enumerate(zip(head, widths)))
    out = [sep.join(top).rstrip(), line, "-" * len(line)]
    for b in body:
        out.append(sep.join(c.ljust(w) if i == 0 else c.rjust(w)
                            for i, (c, w) in enumerate(zip(b, widths))))
    return "\n".join(out)


def _dominance(epoch_s, update_s, plain_epoch_s, plain_update_s):
    """The closing line: which part of fastoptim's epoch takes most of the time."""
    share = update_s / epoch_s if epoch_s > 0 else 0.0
    plain_share = plain_update_s / plain_epoch_s if plain_epoch_s > 0 else 0.0
    lead = "updates dominate" if share >= 0.5 else "backprop dominates"
    return (f"{lead}: updates are {share:.0%} of fastoptim's epoch time, forward and "
            f"backward passes (matrix products) the other {1 - share:.0%} "
            f"(with the plain NumPy loop, updates are {plain_share:.0%} of its epoch)")


def _totals(rows, n_updates, n_params):
    """The summary lines under the table: all optimizers together, fastoptim against the
    plain NumPy loop (the headline), then against the reference."""
    tot = {k: sum(r[k] for r in rows) for k in (
        "total_epoch_s", "total_plain_epoch_s", "total_ref_epoch_s",
        "total_update_s", "total_plain_update_s", "total_ref_update_s")}
    fo_e, fo_u = tot["total_epoch_s"], tot["total_update_s"]
    pl_e, pl_u = tot["total_plain_epoch_s"], tot["total_plain_update_s"]
    ref_e, ref_u = tot["total_ref_epoch_s"], tot["total_ref_update_s"]
    return [
        f"all optimizers, {n_updates} updates of {n_params} parameters: epochs "
        f"{_fmt_ms(fo_e)} ms with fastoptim vs {_fmt_ms(pl_e)} ms with the plain NumPy "
        f"loop ({pl_e / fo_e:.2f}x); of which in update {_fmt_ms(fo_u)} ms vs "
        f"{_fmt_ms(pl_u)} ms ({_ratio(pl_u, fo_u)})",
        f"the NumPy reference (fastoptim.reference, bit-identical to fastoptim): epochs "
        f"{_fmt_ms(ref_e)} ms ({ref_e / fo_e:.2f}x fastoptim's), of which in update "
        f"{_fmt_ms(ref_u)} ms ({_ratio(ref_u, fo_u)} fastoptim's)",
        _dominance(fo_e, fo_u, pl_e, pl_u)]


#: The order of the three loops in each epoch: every permutation in turn, so that over
#: the epochs each loop runs first, second and third equally often (noise, caches and
#: whatever ran just before treat all three alike).
LOOP_ORDERS = tuple(itertools.permutations(range(3)))


def run(dataset="digits", names=None, *, epochs=None, batch_size=None, hidden=None,
        dtype=None, seed=0, threads=None, progress=None, out="fastoptim-demo"):
    """Train the MLP of ``dataset`` (a key of :data:`DEMO_SETUPS`) with each optimizer of
    ``names`` (class names; default: every rule), next to the same loop with the plain
    NumPy optimizer (:mod:`fastoptim.demo.plain`) and with the NumPy reference, the three
    loops taking turns epoch by epoch (:data:`LOOP_ORDERS`); print the table and write
    ``<out>/loss_curves.png`` and ``<out>/loss_curves.csv``. ``None`` means the data
    set's setting; ``threads`` is the optimizers' ``num_threads``; ``progress`` (None:
    only when stderr is a terminal) a progress bar per optimizer. Needs matplotlib and
    tqdm (and scikit-learn for digits). Returns the table's rows. Raises
    :class:`~fastoptim.demo.DemoError` if an optimizer diverges, or before any training
    if a rule has no plain NumPy version.
    """
    from tqdm import tqdm

    from . import loop, nn

    setup = DEMO_SETUPS[dataset]
    names = settings.names() if names is None else list(names)
    for name in names:
        if rules.get(name).class_name not in plain.PLAIN:
            raise DemoError(f"{rules.get(name).class_name} has no plain NumPy version in "
                            f"fastoptim.demo.plain, the baseline the demo compares with; "
                            f"add one there")
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
    print("Each optimizer trains three nets from the same weights on the same batches, "
          "the loops taking turns epoch by epoch: fastoptim; the plain NumPy loop "
          "(fastoptim.demo.plain: the rule written as a user writes it, book-style, the "
          "code fastoptim replaces; same math, results equal to rounding); and the NumPy "
          "reference (fastoptim.reference's functions, the spec: must end bit-identical "
          "to fastoptim). epoch ms: median wall time of an epoch (forward + backward + "
          "update); update ms: the part of it in update; x plain: the plain loop's time "
          "over fastoptim's")
    print()

    def evaluate(net):
        loss = net.loss(x_tr, t_tr)
        if regression:
            rmse = math.sqrt(loss) * info["y_std"]   # loss is the MSE of standardised prices
            return loss, {"train_rmse": rmse}, rmse
        test_loss = net.loss(x_te, t_te)
        acc = net.accuracy(x_te, t_te)
        return loss, {"test_loss": test_loss, "test_accuracy": acc}, acc

    def net_loss(net):
        return float(net.loss(x_tr, t_tr))

    def epoch_batches(epoch):
        # indexed inside the timed loop, as a training loop does
        return ((x_tr[idx], t_tr[idx]) for idx in batches[epoch])

    rows, curves = [], {}
    for name in names:
        hyper = settings.hyper(f"demo/{dataset}", name)
        cls = getattr(_optimizers, rules.get(name).class_name)
        opt = cls(**hyper, num_threads=threads)
        plain_opt = plain.plain_optimizer(name, **hyper)
        ref = loop.PlainReference(cls(**hyper))
        net, plain_net, ref_net = make_net(), make_net(), make_net()
        for each in (net, plain_net, ref_net):
            each.load_params(init)
        loss, extra, _ = evaluate(net)
        plain_loss = loss
        curve = [{"optimizer": name, "epoch": 0, "train_loss": loss, **extra,
                  "plain_train_loss": plain_loss}]
        loops = [("fastoptim", net, opt), ("plain", plain_net, plain_opt),
                 ("reference", ref_net, ref)]
        times = {which: [] for which, _, _ in loops}   # (epoch s, update s) per epoch
        rel_diff = 0.0   # the largest relative difference of the two loss curves
        bar = tqdm(total=epochs, desc=f"{name:<9}", unit="epoch", leave=True,
                   disable=None if progress is None else not progress,
                   file=sys.stderr)
        for epoch in range(epochs):
            for i in LOOP_ORDERS[epoch % len(LOOP_ORDERS)]:
                which, model, optimizer = loops[i]
                times[which].append(loop.train_epoch(model, optimizer,
                                                     epoch_batches(epoch)))
            # (Schedule-Free: evaluated at the average x, as its authors advise)
            loss, extra, metric = loop.evaluated_at_average(net, opt, ref_net, ref, evaluate)
            if not math.isfinite(loss):
                bar.close()
                raise DemoError(f"{name} diverged (loss {loss}) in epoch {epoch + 1}")
            if hasattr(plain_opt, "eval"):  # Schedule-Free: its loss at x too
                plain_opt.eval(plain_net.params)
                plain_loss = net_loss(plain_net)
                plain_opt.train(plain_net.params)
            else:
                plain_loss = net_loss(plain_net)
            rel_diff = max(rel_diff, abs(plain_loss - loss) / abs(loss) if loss else
                           abs(plain_loss))
            curve.append({"optimizer": name, "epoch": epoch + 1, "train_loss": loss, **extra,
                          "plain_train_loss": plain_loss})
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            bar.update(1)
        bar.close()
        identical = all(np.array_equal(ref_net.params[k], net.params[k]) for k in init)
        row = {"optimizer": name, "final_loss": loss, "metric": metric,
               "plain_final_loss": plain_loss, "plain_loss_rel_diff": rel_diff,
               "identical": identical}
        for which, prefix in (("fastoptim", ""), ("plain", "plain_"), ("reference", "ref_")):
            t = times[which]
            row[f"{prefix}epoch_s"] = statistics.median(e for e, _ in t)
            row[f"{prefix}update_s"] = statistics.median(u for _, u in t)
            row[f"total_{prefix}epoch_s"] = sum(e for e, _ in t)
            row[f"total_{prefix}update_s"] = sum(u for _, u in t)
        rows.append(row)
        curves[name] = curve

    print(_demo_table(rows, regression))
    print()
    for line in _totals(rows, n_updates * len(names), sum(v.size for v in init.values())):
        print(line)
    if not all(r["identical"] for r in rows):
        print("WARNING: " + ", ".join(r["optimizer"] for r in rows if not r["identical"])
              + " ended with parameters different from the reference's")
    print("plain loss rel diff: the largest relative difference between the plain loop's "
          "training loss and fastoptim's over the epochs (the same rule, rounded "
          "differently; the CSV has both curves)")
    if regression:
        print("final loss: MSE of standardised prices; train RMSE: in the table's price "
              "units (10 rows, no test split)")

    os.makedirs(out, exist_ok=True)
    csv_path = os.path.join(out, "loss_curves.csv")
    png_path = os.path.join(out, "loss_curves.png")
    columns = (["optimizer", "epoch", "train_loss", "train_rmse"] if regression else
               ["optimizer", "epoch", "train_loss", "test_loss", "test_accuracy"])
    columns.append("plain_train_loss")
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
