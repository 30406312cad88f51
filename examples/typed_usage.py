"""fastoptim's public API with full type annotations; CI checks this file with
``mypy --strict`` (and runs it: ``python examples/typed_usage.py``).

A least-squares fit of ``y = X @ w + b`` with every optimizer class, the functional API,
gradient clipping, a schedule, a checkpoint and gradient accumulation.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

import fastoptim as fo
from fastoptim import functional as F
from fastoptim.schedules import CosineWithWarmup

Array = npt.NDArray[np.float32]


def make_data(n: int = 256, d: int = 8, seed: int = 0) -> tuple[Array, Array]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    w_true = rng.standard_normal(d).astype(np.float32)
    y = (x @ w_true + np.float32(0.5)).astype(np.float32)
    return x, y


def gradients(params: dict[str, Array], x: Array, y: Array) -> tuple[float, dict[str, Array]]:
    """Mean squared error and its gradient with respect to ``w`` and ``b``."""
    r = x @ params["w"] + params["b"] - y
    loss = float(np.mean(r * r))
    scale = np.float32(2.0 / len(y))
    return loss, {"w": (x.T @ r) * scale, "b": np.atleast_1d(r.sum() * scale)}


def train(opt: fo.Optimizer, steps: int = 200) -> float:
    x, y = make_data()
    params: dict[str, Array] = {"w": np.zeros(x.shape[1], np.float32),
                                "b": np.zeros(1, np.float32)}
    sched = CosineWithWarmup(opt, warmup_steps=10, total_steps=steps)
    loss = float("inf")
    for _ in range(steps):
        loss, grads = gradients(params, x, y)
        norm: float = fo.clip_grad_norm(grads, max_norm=10.0)
        assert norm >= 0.0
        opt.update(params, grads)        # in place
        sched.step()
    return loss


def checkpoint_roundtrip() -> None:
    opt = fo.Adam(lr=1e-2, betas=(0.9, 0.99))
    w = np.ones(4)
    opt.update([w], [np.full(4, 0.5)])
    saved = opt.state_dict()
    restored = fo.Adam()
    restored.load_state_dict(saved)
    lr: float = restored.lr
    assert lr == 1e-2 and restored.betas == (0.9, 0.99)


def functional_steps() -> Array:
    p = np.ones(3, dtype=np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    for step in range(1, 4):
        F.adam(p, np.full(3, 0.5, dtype=np.float32), m, v, step=step, lr=0.1)
    velocity = np.zeros_like(p)
    F.momentum(p, p * np.float32(0.1), velocity, lr=0.1, momentum=0.9, num_threads=1)
    return p


def accumulate_steps() -> int:
    """Two micro-batches per Adam step: the step count after four calls."""
    x, y = make_data()
    params: dict[str, Array] = {"w": np.zeros(x.shape[1], np.float32),
                                "b": np.zeros(1, np.float32)}
    acc = fo.Accumulate(fo.Adam(lr=1e-2), steps=2)
    stepped: list[bool] = []
    for i in range(4):
        _, grads = gradients(params, x[i::4], y[i::4])
        stepped.append(acc.update(params, grads))
    assert stepped == [False, True, False, True] and acc.count == 0
    step: int = acc.optimizer.state["w"]["step"]
    return step


def main() -> None:
    optimizers: list[fo.Optimizer] = [
        fo.SGD(lr=0.05), fo.Momentum(lr=0.02, momentum=0.9), fo.Nesterov(lr=0.02),
        fo.AdaGrad(lr=0.5), fo.RMSprop(lr=0.02, alpha=0.9), fo.AdaDelta(lr=1.0),
        fo.Adam(lr=0.05), fo.AdamW(lr=0.05, weight_decay=1e-4, backend="numpy"),
    ]
    for opt in optimizers:
        print(f"{type(opt).__name__:<9} final loss {train(opt):.4f}")
    checkpoint_roundtrip()
    print("functional:", functional_steps())
    print("accumulate: optimizer steps after 4 calls:", accumulate_steps())
    cfg = fo.get_config()
    threads: int = cfg["threads"]
    print(f"fastoptim {fo.__version__}, {threads} thread(s), target {cfg['cpu_target']}")


if __name__ == "__main__":
    main()
