"""What bfloat16 and 8-bit optimizer state cost in accuracy: the demo's digits MLP (64-100-10,
ReLU, softmax; scikit-learn's bundled 8x8 digits, 1438 training and 359 test images;
30 epochs of mini-batches of 32, the demo's settings) and a larger MLP on the same data
(64-512-512-10, the same settings), trained with every rule that has ``state_dtype`` --
each from the same initial weights on the same batches, with float32, bfloat16 and (the
rules that have it) 8-bit state. Prints the final training loss and test accuracy of
each, and the mean training loss over the epochs with each low-precision format
relative to float32's (the curves' areas: a late loss near 0 makes relative gaps of
single epochs meaningless). The digits nets' weight matrices are 6400, 51200 and
262144 elements: over 4096, so they take 8-bit state; the biases keep float32.

    python bench/state_accuracy.py [--rules adam,...] [--epochs 30] [--hidden 100]

The optimizers' hyper-parameters are the demo's (``fastoptim.demo.settings``). No test
asserts a number; docs/state.rst quotes the output.
"""

import argparse

import numpy as np

import fastoptim as fo
from fastoptim import rules
from fastoptim.demo import nn, settings
from fastoptim.demo.loop import train_epoch
from fastoptim.demo.train import DEMO_SETUPS, load_data

FORMATS = (None, "bfloat16", "int8")


def train(name, hidden, epochs, state_dtype, seed=0):
    """[(train loss, test accuracy) after each epoch] of ``name`` with ``state_dtype``."""
    setup = DEMO_SETUPS["digits"]
    x_tr, t_tr, x_te, t_te, _ = load_data("digits", seed, setup["test_fraction"])
    x_tr, x_te = x_tr.astype(np.float32), x_te.astype(np.float32)
    sizes = [x_tr.shape[1], *hidden, 10]
    net = nn.MLP(sizes, activation=setup["activation"], loss=setup["loss"],
                 dtype="float32", seed=seed)
    rng = np.random.default_rng(seed + 1)
    bs = setup["batch_size"]
    cls = getattr(fo, rules.get(name).class_name)
    opt = cls(**{**settings.hyper("demo/digits", name), "state_dtype": state_dtype})
    out = []
    for _ in range(epochs):
        perm = rng.permutation(len(x_tr))
        train_epoch(net, opt, ((x_tr[perm[i:i + bs]], t_tr[perm[i:i + bs]])
                               for i in range(0, len(x_tr), bs)))
        if opt.rule.schedule_free:  # evaluated at the average x, as the demo does
            opt.eval(net.params)
        out.append((float(net.loss(x_tr, t_tr)), float(net.accuracy(x_te, t_te))))
        if opt.rule.schedule_free:
            opt.train(net.params)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [r.name for r in rules.RULES if "state_dtype" in r.hyper_names]
    ap.add_argument("--rules", default=",".join(names))
    ap.add_argument("--epochs", type=int, default=DEMO_SETUPS["digits"]["epochs"])
    ap.add_argument("--hidden", default="100;512,512",
                    help="hidden layer widths per net, nets separated by ';'")
    args = ap.parse_args(argv)
    head = ["net", "rule", "loss f32", "loss bf16", "loss int8", "acc f32", "acc bf16",
            "acc int8", "mean loss bf16/f32", "int8/f32"]
    print("| " + " | ".join(head) + " |")
    print("| " + " | ".join("---" for _ in head) + " |")
    for hidden in args.hidden.split(";"):
        widths = [int(w) for w in hidden.split(",")]
        for name in args.rules.split(","):
            has8 = rules.get(name).int8_maps is not None
            a, b = (train(name, widths, args.epochs, f) for f in FORMATS[:2])
            c = train(name, widths, args.epochs, "int8") if has8 else None
            net = "-".join(map(str, [64, *widths, 10]))

            def area(x):
                return f"{sum(y[0] for y in x) / sum(y[0] for y in a):.3f}" if x else "—"
            cl = f"{c[-1][0]:.3g}" if c else "—"
            ca = f"{c[-1][1]:.3f}" if c else "—"
            print(f"| {net} | {name} | {a[-1][0]:.3g} | {b[-1][0]:.3g} | {cl} | "
                  f"{a[-1][1]:.3f} | {b[-1][1]:.3f} | {ca} | {area(b)} | {area(c)} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
