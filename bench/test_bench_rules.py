"""pytest-benchmark suite: every rule x dtype x size x threads, fastoptim next to the
NumPy reference (the baseline) and torch.optim (when installed) in one group.

    pytest bench --benchmark-only --benchmark-json=out.json     # measure
    pytest bench --benchmark-disable                            # smoke: each runs once
    FASTOPTIM_BENCH_HUGE=1 pytest bench --benchmark-only -k 1e8 # the 1e8 sizes (~3 GB)

No test here asserts a time.
"""

import os

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import rules
from fastoptim._bench import RULES, fastoptim_step, torch_step

ALL = fo.get_config()["threads"]
THREADS = sorted({1, ALL})
SIZES = [10**3, 10**4, 10**5, 10**6, 10**7]
if os.environ.get("FASTOPTIM_BENCH_HUGE") == "1":
    SIZES.append(10**8)
IMPLS = ["fastoptim", "reference", "torch"]


def make_step(impl, rule, n, dtype, threads):
    if impl == "torch":
        if not rules.get(rule).torch:
            pytest.skip(f"torch.optim has no {rule}")
        step = torch_step(rule, n, dtype, threads)
        if step is None:
            pytest.skip("torch is not installed (pip install torch==2.13.0)")
        return step
    return fastoptim_step(rule, n, dtype, threads,
                          "compiled" if impl == "fastoptim" else "numpy")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"{n:.0e}")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rule", RULES)
def test_rule(benchmark, rule, dtype, n, threads, impl):
    benchmark.group = f"{rule} {dtype} n={n:.0e} threads={threads}"
    benchmark.extra_info.update(rule=rule, dtype=dtype, n=n, threads=threads, impl=impl)
    step = make_step(impl, rule, n, dtype, threads)
    step()  # first touch of the state buffers happens outside the timing
    benchmark(step)


def many_arrays(impl, count, size):
    if impl == "torch":
        try:
            import torch
        except ImportError:
            pytest.skip("torch is not installed (pip install torch==2.13.0)")
        torch.set_num_threads(ALL)
        ps = [torch.zeros(size) for _ in range(count)]
        for p in ps:
            p.grad = torch.full((size,), 1e-3)
        return torch.optim.Adam(ps, lr=1e-3, fused=True).step
    opt = fo.Adam(backend="compiled" if impl == "fastoptim" else "numpy")
    params = {f"p{i}": np.zeros(size, np.float32) for i in range(count)}
    grads = {k: np.full(size, 1e-3, np.float32) for k in params}
    return lambda: opt.update(params, grads)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", [(1000, 1000), (1000, 1), (1, 1)],
                         ids=["1000x1000", "1000x1", "1x1"])
def test_many_small_arrays(benchmark, shape, impl):
    """Adam float32 over `count` arrays of `size` elements in one update call (a dict
    for fastoptim, a list of tensors for torch fused, a Python loop for the reference).
    1000x1 against 1x1 gives the cost of each extra array."""
    count, size = shape
    benchmark.group = f"adam float32 {count} arrays x {size}"
    benchmark.extra_info.update(count=count, size=size, impl=impl)
    step = many_arrays(impl, count, size)
    step()
    benchmark(step)


GROUPINGS = {
    "none": None,
    # every other array in a second group with its own lr and no weight decay
    "two groups": [{"where": lambda key, p: int(key[1:]) % 2 == 1, "lr": 1e-4,
                    "weight_decay": 0.0}],
}


@pytest.mark.parametrize("grouping", list(GROUPINGS))
@pytest.mark.parametrize("count, size", [(1000, 1000), (1, 10**7)], ids=["1000x1000", "1e7"])
def test_groups_cost_no_extra_pass(benchmark, grouping, count, size):
    """Adam float32 with and without parameter groups (one engine call either way): the
    grouped update should time like the plain one."""
    benchmark.group = f"adam float32 {count} arrays x {size}: groups"
    benchmark.extra_info.update(count=count, size=size, grouping=grouping)
    opt = fo.Adam(weight_decay=0.01, groups=GROUPINGS[grouping])
    params = {f"p{i}": np.zeros(size, np.float32) for i in range(count)}
    grads = {k: np.full(size, 1e-3, np.float32) for k in params}
    opt.update(params, grads)
    benchmark(lambda: opt.update(params, grads))


@pytest.mark.parametrize("options", ["defaults", "torch options"])
@pytest.mark.parametrize("rule", ["momentum", "adagrad"])
def test_options_cost_no_extra_pass(benchmark, rule, options):
    """Momentum's dampening and AdaGrad's lr_decay change per-step scalars only."""
    extra = {} if options == "defaults" else (
        {"dampening": 0.1} if rule == "momentum" else
        {"lr_decay": 1e-3, "initial_accumulator_value": 0.1})
    benchmark.group = f"{rule} float32 1e7: options"
    benchmark.extra_info.update(rule=rule, options=options)
    opt = getattr(fo, rules.get(rule).class_name)(**extra)
    params = {"p": np.zeros(10**7, np.float32)}
    grads = {"p": np.full(10**7, 1e-3, np.float32)}
    opt.update(params, grads)
    benchmark(lambda: opt.update(params, grads))
