"""The ``ema`` and ``state_dtype`` options and LAMB in the user's loop: epochs of a NumPy
training loop.

One round = one epoch of ``fastoptim.demo.nn.MLP`` (float32, 4096 synthetic rows in
mini-batches of 64: per batch forward + backward, NumPy matrix products, then one
``update``), NumPy's BLAS at its default thread count, for:

* ``adam``: ``fo.Adam()``;
* ``adam+ema``: ``fo.Adam(ema=0.999)``, the average in the same pass;
* ``adam, numpy ema``: ``fo.Adam()`` then the average as a user adds it in NumPy
  (``a *= d; a += (1-d)*p`` per array: two more passes and a temporary);
* ``plain adam+ema``: ``fastoptim.demo.plain.Adam(ema=0.999)``, all in NumPy;
* ``lamb``: ``fo.LAMB()``;  ``plain lamb``: ``fastoptim.demo.plain.LAMB()``;
* ``adam bf16 state``: ``fo.Adam(state_dtype="bfloat16")``;  ``adam int8 state``:
  ``fo.Adam(state_dtype="int8")``.

    pytest bench/test_bench_options.py --benchmark-only   # pytest-benchmark, one by one
    pytest bench --benchmark-disable                      # smoke: one epoch of 256 rows
    python bench/test_bench_options.py [--model 784-1024-1024-10] [--epochs 5]

The last form interleaves the epochs of every configuration (rounds in alternating
order, one warm-up round not counted) and prints each one's median epoch and ``update``
time and its ratio to ``adam``: the numbers docs/performance.rst quotes. No test here
asserts a time.
"""

import argparse
import statistics
import sys

import numpy as np
import pytest

import fastoptim as fo
from fastoptim.demo import nn, plain
from fastoptim.demo.e2e import e2e_data, parse_model
from fastoptim.demo.loop import train_epoch

SAMPLES = 4096
SMOKE_SAMPLES = 256
BATCH = 64
DECAY = 0.999


class NumpyEma:
    """``opt`` then the parameters' moving average in NumPy, as a user writes it."""

    def __init__(self, opt, decay=DECAY):
        self.opt, self.decay, self.average = opt, decay, None

    def update(self, params, grads):
        self.opt.update(params, grads)
        if self.average is None:
            self.average = {k: v.copy() for k, v in params.items()}
            return
        d = np.float32(self.decay)
        for k, p in params.items():
            a = self.average[k]
            a *= d
            a += (1 - d) * p


CONFIGS = {
    "adam": lambda: fo.Adam(),
    "adam+ema": lambda: fo.Adam(ema=DECAY),
    "adam, numpy ema": lambda: NumpyEma(fo.Adam()),
    "plain adam+ema": lambda: plain.Adam(ema=DECAY),
    "lamb": lambda: fo.LAMB(),
    "plain lamb": lambda: plain.LAMB(),
    "adam bf16 state": lambda: fo.Adam(state_dtype="bfloat16"),
    "adam int8 state": lambda: fo.Adam(state_dtype="int8"),
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_epoch(benchmark, config):
    benchmark.group = "epoch 784-256-10, options and LAMB"
    sizes = parse_model("784-256-10")
    samples = SMOKE_SAMPLES if benchmark.disabled else SAMPLES
    benchmark.extra_info.update(model="784-256-10", config=config, samples=samples)
    batches = e2e_data(sizes, samples, BATCH)
    net, opt = nn.MLP(sizes, seed=0), CONFIGS[config]()
    in_update = []
    benchmark.pedantic(lambda: in_update.append(train_epoch(net, opt, batches)[1]),
                       rounds=10, warmup_rounds=1, iterations=1)
    benchmark.extra_info["update_s_median"] = statistics.median(in_update)
    assert np.isfinite(net.last_loss)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="784-256-10")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--samples", type=int, default=SAMPLES)
    args = ap.parse_args(argv)
    sizes = parse_model(args.model)
    batches = e2e_data(sizes, args.samples, BATCH)
    runs = {c: (nn.MLP(sizes, seed=0), make()) for c, make in CONFIGS.items()}
    times = {c: [] for c in CONFIGS}
    names = list(CONFIGS)
    for rnd in range(args.epochs + 1):
        for c in (names if rnd % 2 == 0 else names[::-1]):
            net, opt = runs[c]
            epoch_s, update_s = train_epoch(net, opt, batches)
            if rnd:
                times[c].append((epoch_s, update_s))
    cfg = fo.get_config()
    print(f"fastoptim {cfg['version']} ({cfg['cpu_target']}), {cfg['threads']} threads; "
          f"MLP {args.model} float32, {args.samples} rows in batches of {BATCH}; median of "
          f"{args.epochs} interleaved epochs")
    base = statistics.median(t[0] for t in times["adam"])
    print(f"{'configuration':<18}{'epoch ms':>10}{'update ms':>11}{'epoch / adam':>14}")
    for c in names:
        e = statistics.median(t[0] for t in times[c])
        u = statistics.median(t[1] for t in times[c])
        print(f"{c:<18}{e * 1e3:>10.1f}{u * 1e3:>11.1f}{e / base:>14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
