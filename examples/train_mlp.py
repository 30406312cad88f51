"""Train a tiny two-layer MLP on synthetic 3-class spirals with every fastoptim optimizer.

Pure NumPy + fastoptim: no other dependency, no network, no files.  Every optimizer starts
from the same initial weights and sees the same mini-batches in the same order, so the
table compares the update rules alone.  The network follows the style of the book
"Deep Learning from Scratch": a ``params`` dict {"W1", "b1", "W2", "b2"} and a
``gradient(x, t)`` method (backprop) that returns a dict with the same keys.

    PYTHONPATH=src python examples/train_mlp.py [--epochs N] [--seed S] [--backend numpy]
"""

import argparse
import time

import numpy as np

import fastoptim as fo


def make_spirals(rng, n_per_class=500, n_classes=3, noise=0.2):
    """``n_classes`` interleaved 2-D spiral arms; returns (x float32 (N, 2), t int64 (N,))."""
    xs, ts = [], []
    for c in range(n_classes):
        r = np.linspace(0.05, 1.0, n_per_class)
        theta = np.linspace(0.0, 6.0, n_per_class) + c * 2 * np.pi / n_classes
        theta = theta + rng.normal(0.0, noise, n_per_class)
        xs.append(np.column_stack([r * np.sin(theta), r * np.cos(theta)]))
        ts.append(np.full(n_per_class, c))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ts)


def softmax(a):
    a = a - a.max(axis=1, keepdims=True)
    e = np.exp(a)
    return e / e.sum(axis=1, keepdims=True)


class TwoLayerNet:
    """Affine -> ReLU -> Affine -> softmax-cross-entropy, float32 throughout."""

    def __init__(self, input_size, hidden_size, output_size, rng):
        # He initialisation for the ReLU layer, small weights for the output layer.
        self.params = {
            "W1": (rng.standard_normal((input_size, hidden_size))
                   * np.sqrt(2.0 / input_size)).astype(np.float32),
            "b1": np.zeros(hidden_size, dtype=np.float32),
            "W2": (rng.standard_normal((hidden_size, output_size))
                   * np.sqrt(1.0 / hidden_size)).astype(np.float32),
            "b2": np.zeros(output_size, dtype=np.float32),
        }

    def copy(self):
        """A new net with copies of this net's weights (so each optimizer starts equal)."""
        other = object.__new__(TwoLayerNet)
        other.params = {k: v.copy() for k, v in self.params.items()}
        return other

    def _forward(self, x):
        p = self.params
        h = np.maximum(x @ p["W1"] + p["b1"], 0.0)
        return h, h @ p["W2"] + p["b2"]

    def predict(self, x):
        return self._forward(x)[1]

    def loss(self, x, t):
        y = softmax(self.predict(x))
        return float(-np.mean(np.log(y[np.arange(len(t)), t] + 1e-7)))

    def accuracy(self, x, t):
        return float(np.mean(self.predict(x).argmax(axis=1) == t))

    def gradient(self, x, t):
        """Backprop through the whole net; returns {"W1", "b1", "W2", "b2"} gradients."""
        p = self.params
        h, scores = self._forward(x)
        dscores = softmax(scores)                  # softmax-with-loss backward:
        dscores[np.arange(len(t)), t] -= 1.0       # (y - one_hot(t)) / batch_size
        dscores /= np.float32(len(t))
        dh = dscores @ p["W2"].T
        dh[h <= 0.0] = 0.0                         # ReLU backward
        return {"W1": x.T @ dh, "b1": dh.sum(axis=0),
                "W2": h.T @ dscores, "b2": dscores.sum(axis=0)}


def make_optimizers(backend):
    """The eight optimizers, with learning rates tuned for this problem."""
    kw = {"backend": backend}
    return {
        "SGD": fo.SGD(lr=1.0, **kw),
        "Momentum": fo.Momentum(lr=0.1, momentum=0.9, **kw),
        "Nesterov": fo.Nesterov(lr=0.1, momentum=0.9, **kw),
        "AdaGrad": fo.AdaGrad(lr=0.2, **kw),
        "RMSprop": fo.RMSprop(lr=0.01, alpha=0.99, **kw),
        "AdaDelta": fo.AdaDelta(lr=2.0, rho=0.95, **kw),
        "Adam": fo.Adam(lr=0.02, betas=(0.9, 0.999), **kw),
        "AdamW": fo.AdamW(lr=0.02, weight_decay=1e-2, **kw),
    }


def train(net, opt, x, t, batches):
    """Run every mini-batch through ``opt``; returns seconds spent inside opt.update."""
    spent = 0.0
    for idx in batches:
        grads = net.gradient(x[idx], t[idx])
        start = time.perf_counter()
        opt.update(net.params, grads)
        spent += time.perf_counter() - start
    return spent


def main(argv=None):
    ap = argparse.ArgumentParser(description="Compare fastoptim optimizers on a tiny MLP.")
    ap.add_argument("--epochs", type=int, default=20, help="passes over the training set")
    ap.add_argument("--seed", type=int, default=0, help="seed for data, weights and batches")
    ap.add_argument("--backend", choices=["compiled", "numpy", "cython"], default="compiled")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=100, help="hidden layer width")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    x, t = make_spirals(rng)
    order = rng.permutation(len(x))
    n_train = int(0.8 * len(x))
    x_train, t_train = x[order[:n_train]], t[order[:n_train]]
    x_test, t_test = x[order[n_train:]], t[order[n_train:]]

    net0 = TwoLayerNet(2, args.hidden, 3, rng)
    # One fixed mini-batch order, shared by every optimizer.
    batches = [perm[i:i + args.batch_size]
               for perm in (rng.permutation(n_train) for _ in range(args.epochs))
               for i in range(0, n_train, args.batch_size)]

    print(f"fastoptim {fo.__version__}, threads={fo.get_config()['threads']}, "
          f"backend={args.backend}, epochs={args.epochs}, "
          f"train/test={n_train}/{len(x) - n_train}, {len(batches)} updates per optimizer")
    print(f"{'optimizer':<10} {'train loss':>10} {'test acc':>9} {'update time':>12}")
    results = {}
    for name, opt in make_optimizers(args.backend).items():
        net = net0.copy()
        spent = train(net, opt, x_train, t_train, batches)
        loss = net.loss(x_train, t_train)
        acc = net.accuracy(x_test, t_test)
        results[name] = {"loss": loss, "accuracy": acc}
        print(f"{name:<10} {loss:>10.4f} {acc:>8.1%} {spent * 1e3:>10.1f} ms")
    return results


if __name__ == "__main__":
    main()
