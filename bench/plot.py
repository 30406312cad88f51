"""Plot GB/s against size per rule from `fastoptim bench --json` output.

    fastoptim bench --sizes 1e3,1e4,1e5,1e6,1e7 --json > docs/bench.json
    python bench/plot.py docs/bench.json docs/performance.png

Needs matplotlib.
"""

import json
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__)
        return 2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(argv[0]) as f:
        result = json.load(f)
    rules = list(dict.fromkeys(r["rule"] for r in result["rows"]))
    cols = 4
    rows_n = (len(rules) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(4 * cols, 3.2 * rows_n), sharey=True,
                             squeeze=False)
    styles = {"roofline": ("in-place streaming roofline", "0.6", "--"),
              "fastoptim": ("fastoptim", "C0", "-"),
              "torch": (f"torch {result.get('torch') or ''} (fused where it has one)",
                        "C3", "-"),
              "reference": ("NumPy reference", "C2", "-")}
    for ax, rule in zip(axes.flat, rules):
        rows = sorted((r for r in result["rows"] if r["rule"] == rule), key=lambda r: r["n"])
        ns = [r["n"] for r in rows]
        for key, (label, color, ls) in styles.items():
            if all(f"{key}_gbs" in r for r in rows):
                ax.plot(ns, [r[f"{key}_gbs"] for r in rows], ls, color=color, marker="o",
                        ms=3, label=label)
        ax.set_xscale("log")
        ax.set_title(rule)
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("elements")
    for ax in axes[:, 0]:
        ax.set_ylabel("GB/s moved")
    for ax in axes.flat[len(rules):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"fastoptim {result['fastoptim']} ({result['cpu_target']}) on "
                 f"{result['cpu']}, {result['threads']} threads, {result['dtype']}; "
                 f"median time per step", fontsize=10)
    fig.tight_layout()
    fig.savefig(argv[1], dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
