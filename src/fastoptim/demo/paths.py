"""``fastoptim paths``: optimizer trajectories on 2-D test functions.

Every optimizer runs from one start on each function, with the real optimizer class on a
2-element float64 array; the paths are drawn over the function's contour lines
(matplotlib, on the Agg canvas: no display needed, pyplot's global state never touched).
The hyper-parameters per optimizer and function are in :mod:`fastoptim.demo.settings`.
"""

import csv
import os
import time

import numpy as np

from .. import __version__, rules
from .. import optimizers as _optimizers
from . import new_figure, settings


def _fmt(value):
    """A hyper-parameter for a panel's title: 0.1, or (0.9, 0.999) for a pair."""
    if isinstance(value, tuple):
        return "(" + ", ".join(f"{v:g}" for v in value) + ")"
    return f"{value:g}"


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


# name -> function, start, minimum (or saddle point), view box, steps, contour levels.
# Each optimizer's hyper-parameters for a function: settings.hyper("paths/<name>", ...).
PATH_FUNCTIONS = {
    "book": {
        "title": "x²/20 + y²  (Deep Learning from Scratch)", "fn": _book,
        "start": (-7.0, 2.0), "target": (0.0, 0.0), "box": ((-10, 10), (-5, 5)),
        "steps": 30, "levels": "log",
    },
    "rosenbrock": {
        "title": "Rosenbrock  (1-x)² + 100(y-x²)²", "fn": _rosenbrock,
        "start": (-1.2, 1.0), "target": (1.0, 1.0), "box": ((-2, 2), (-1, 3)),
        "steps": 1000, "levels": "log",
    },
    "beale": {
        "title": "Beale", "fn": _beale,
        "start": (1.0, 1.5), "target": (3.0, 0.5), "box": ((-1, 4.5), (-1.5, 2)),
        "steps": 500, "levels": "log",
    },
    "saddle": {
        "title": "saddle  x² - y²", "fn": _saddle,
        "start": (-1.8, 1e-3), "target": (0.0, 0.0), "box": ((-2, 2), (-2, 2)),
        "steps": 80, "levels": "linear",
    },
}


def optimizer_path(name, function, steps=None, hyper=None):
    """The trajectory of one optimizer on one test function: an array of shape
    (steps + 1, 2), start included. Uses the real optimizer class on a 2-element float64
    parameter array, updated in place."""
    spec = PATH_FUNCTIONS[function]
    if hyper is None:
        hyper = settings.hyper(f"paths/{function}", name)
    opt = getattr(_optimizers, rules.get(name).class_name)(**hyper)
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


def _draw_path(ax, path, name, markers=True):
    ax.plot(path[:, 0], path[:, 1], settings.line_style(name), color=settings.color(name),
            lw=1.4, label=name, marker="o" if markers else None, ms=2.5)


def run(names, functions, steps=None, out="fastoptim-paths"):
    """Draw the paths of the optimizers ``names`` (class names) on the test functions
    ``functions`` (keys of :data:`PATH_FUNCTIONS`), ``steps`` steps each (default: per
    function): ``<out>/paths.png`` (all functions), ``<out>/paths_<function>.png`` (a
    panel per optimizer) and ``<out>/paths.csv``; print a summary. Needs matplotlib."""
    start = time.perf_counter()
    paths = {f: {n: optimizer_path(n, f, steps=steps) for n in names} for f in functions}

    os.makedirs(out, exist_ok=True)
    csv_path = os.path.join(out, "paths.csv")
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
    fig = new_figure(figsize=(6.2 * cols, 5.0 * rows), layout="constrained")
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
    overview = os.path.join(out, "paths.png")
    fig.savefig(overview, dpi=100)
    written = [overview]

    # One figure per function: a panel per optimizer, as in the book's figure.
    for f in functions:
        spec = PATH_FUNCTIONS[f]
        cols = min(4, len(names))
        rows = -(-len(names) // cols)
        fig = new_figure(figsize=(4.0 * cols, 3.3 * rows), layout="constrained")
        axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
        for ax, n in zip(axes, names):
            _contours(ax, spec)
            _draw_path(ax, paths[f][n], n)
            ax.plot(*spec["target"], "k*", ms=10)
            hp = ", ".join(f"{k}={_fmt(v)}"
                           for k, v in settings.hyper(f"paths/{f}", n).items())
            ax.set_title(f"{n} ({hp})", fontsize=9)
        for ax in axes[len(names):]:
            ax.set_visible(False)
        fig.suptitle(f"{spec['title']}: start {spec['start']}, "
                     f"{len(paths[f][names[0]]) - 1} steps")
        path = os.path.join(out, f"paths_{f}.png")
        fig.savefig(path, dpi=90)
        written.append(path)

    print(f"fastoptim {__version__} paths: {', '.join(names)} on {', '.join(functions)}")
    for f in functions:
        spec = PATH_FUNCTIONS[f]
        finals = ", ".join(
            f"{n} {spec['fn'](paths[f][n][-1])[0]:.3g}" for n in names)
        print(f"  {f:<11} f at the last step: {finals}")
    print(f"wrote {csv_path}, {', '.join(written)} ({time.perf_counter() - start:.1f} s)")
    return {"csv": csv_path, "figures": written}
