"""pytest-benchmark: one epoch of a training loop, the way a NumPy user trains.

One round = one epoch of ``fastoptim.demo.nn.MLP`` (ReLU, softmax cross-entropy, float32)
with Adam (lr 1e-3) over 4096 synthetic rows in mini-batches of 64: per batch the
gradient (forward + backward, NumPy matrix products) and one ``update``. Models
64-100-10 (the demo's), 784-256-10 and 784-1024-1024-10, each with NumPy's BLAS at its
default thread count and at one thread (``threadpoolctl.threadpool_limits(limits=1,
user_api="blas")``), each group holding:

* ``plain``: Adam as a user writes it in NumPy (``fastoptim.demo.plain.Adam``: the
  book's loop style, the textbook formula with its temporaries): the baseline;
* ``reference``: the NumPy reference -- ``fastoptim.reference.adam``, the specification
  the kernels match bit for bit, called directly on each parameter with the step's
  scalars (``fastoptim.demo.loop.PlainReference``), none of fastoptim's argument checks
  charged to it;
* ``fastoptim``: ``fo.Adam()``, the installed default threading;
* ``serial``: ``fo.Adam(num_threads=1)``.

``extra_info`` holds the median time in ``update`` per epoch. pytest-benchmark runs one
test after the other; ``fastoptim bench --e2e`` interleaves the epochs of every
configuration instead, and adds ``OMP_WAIT_POLICY=passive`` (which needs a process of
its own).

    pytest bench/test_bench_e2e.py --benchmark-only      # measure (~50 s on 2 idle cores)
    pytest bench --benchmark-disable                     # smoke: one epoch of 256 rows

No test here asserts a time.
"""

import statistics
from contextlib import nullcontext

import pytest

from fastoptim.demo import nn
from fastoptim.demo.e2e import E2E_MODELS, e2e_data, e2e_optimizer, parse_model
from fastoptim.demo.loop import train_epoch

SAMPLES = 4096
SMOKE_SAMPLES = 256          # with --benchmark-disable: each test runs one epoch
BATCH = 64
ROUNDS = {"64-100-10": 30, "784-256-10": 15, "784-1024-1024-10": 5}


def blas_limit(blas):
    if blas == "default":
        return nullcontext()
    threadpoolctl = pytest.importorskip(
        "threadpoolctl", reason="threadpoolctl limits NumPy's BLAS threads "
                                "(pip install threadpoolctl)")
    return threadpoolctl.threadpool_limits(limits=1, user_api="blas")


@pytest.mark.parametrize("impl", ["plain", "reference", "fastoptim", "serial"])
@pytest.mark.parametrize("blas", ["default", "1"])
@pytest.mark.parametrize("model", E2E_MODELS)
def test_epoch(benchmark, model, blas, impl):
    benchmark.group = f"epoch {model} BLAS threads={blas}"
    sizes = parse_model(model)
    samples = SMOKE_SAMPLES if benchmark.disabled else SAMPLES
    benchmark.extra_info.update(model=model, blas=blas, impl=impl, samples=samples,
                                batch_size=BATCH, optimizer="Adam")
    batches = e2e_data(sizes, samples, BATCH)
    net = nn.MLP(sizes, seed=0)
    opt = e2e_optimizer(impl)
    in_update = []

    def epoch():
        in_update.append(train_epoch(net, opt, batches)[1])

    with blas_limit(blas):
        benchmark.pedantic(epoch, rounds=ROUNDS[model], warmup_rounds=1, iterations=1)
    timed = in_update[1:] if len(in_update) > 1 else in_update   # not the warm-up
    benchmark.extra_info["update_s_median"] = statistics.median(timed)
