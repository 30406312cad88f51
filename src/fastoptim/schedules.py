"""Learning-rate schedules for every fastoptim optimizer.

A schedule owns the optimizer's ``lr`` attribute: it sets ``opt.lr`` (validated like any
hyper-parameter) when it is created and after every ``step()``. ``t`` below is the number
of ``step()`` calls so far; whether you call ``step()`` once per epoch or once per batch
is up to you. ``base_lr`` is the optimizer's ``lr`` when the schedule is created.

=====================  ==================================================================
``StepLR``             ``lr_t = base_lr * gamma ** (t // step_size)``
``ExponentialLR``      ``lr_t = base_lr * gamma ** t``
``CosineWithWarmup``   ``base_lr * (t + 1) / (warmup_steps + 1)`` for ``t < warmup_steps``;
                       then ``min_lr + (base_lr - min_lr) * (1 + cos(pi * s)) / 2`` with
                       ``s = (t - warmup_steps) / (total_steps - warmup_steps)``, up to
                       ``t = total_steps``; ``min_lr`` after that
``ReduceLROnPlateau``  ``step(metric)``: ``lr <- max(lr * factor, min_lr)`` when the metric
                       has not improved for more than ``patience`` steps
=====================  ==================================================================

What a changing ``lr`` means for the optimizers' state: every rule reads ``lr`` at each
update, so the new value applies from the next ``update``. No state buffer holds a
gradient sum scaled by ``lr``: a momentum velocity stores the *step*
``v <- momentum*v + lr*g``, so it keeps the steps already taken at the learning rate they
were taken with, and only the new gradient is scaled by the new ``lr`` (PyTorch's
``buf <- momentum*buf + g; p -= lr*buf`` instead rescales the whole history by the new
``lr``); the adaptive rules' moments and averages do not contain ``lr`` at all (see each
rule's formula in ``fastoptim.rules`` and docs/rules.rst).

>>> import fastoptim as fo
>>> opt = fo.SGD(lr=0.1)
>>> sched = fo.schedules.StepLR(opt, step_size=2, gamma=0.5)
>>> lrs = [opt.lr]
>>> for _ in range(4):
...     _ = sched.step()
...     lrs.append(opt.lr)
>>> lrs
[0.1, 0.1, 0.05, 0.05, 0.025]
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .optimizers import Optimizer

__all__ = ["LRScheduler", "StepLR", "ExponentialLR", "CosineWithWarmup",
           "ReduceLROnPlateau"]


def _int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"Invalid {name}: {value!r} (must be an int >= {minimum})")
    return int(value)


def _real(name, value, *, positive=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"Invalid {name}: {value!r} (must be finite and "
                         f"{'> 0' if positive else '>= 0'})")
    return value


def _own_lr_groups(optimizer):
    """The optimizer's parameter groups that set their own lr."""
    table = getattr(optimizer, "_groups", None)
    if table is None:
        return []
    return [g for g in table.groups[1:] if "lr" in g.overrides]


class LRScheduler:
    """Base class: a schedule ``lr_at(t)`` written into ``optimizer.lr``.

    Subclasses define ``lr_at(t)`` and list their settings in ``_settings``.

    Attributes
    ----------
    optimizer : fastoptim.Optimizer
    base_lr : float
        ``optimizer.lr`` when the schedule was created.
    last_step : int
        Number of ``step()`` calls so far.
    last_lr : float
        The learning rate this schedule last wrote into the optimizer.
    """

    _settings = ()

    def __init__(self, optimizer: Optimizer) -> None:
        if not hasattr(optimizer, "lr") or not hasattr(optimizer, "update"):
            raise TypeError(f"optimizer must be a fastoptim optimizer (with an lr "
                            f"attribute), got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
        # parameter groups with their own lr (fastoptim.groups): each follows the
        # schedule from its own base, as torch's schedulers scale every group
        self.group_base_lrs = {g.index: float(g.lr) for g in _own_lr_groups(optimizer)}
        self.last_step = 0
        self._apply(self.lr_at(0))

    def lr_at(self, t: int) -> float:
        """The learning rate after ``t`` calls of ``step()``."""
        raise NotImplementedError

    def get_lr(self) -> float:
        """The learning rate for the current step: ``lr_at(last_step)``."""
        return self.lr_at(self.last_step)

    def step(self) -> float:
        """Advance one step and set ``optimizer.lr``; returns the new learning rate."""
        self.last_step += 1
        return self._apply(self.get_lr())

    def _apply(self, lr):
        self.optimizer.lr = lr        # validated by the optimizer (finite, >= 0)
        self.last_lr = float(lr)
        for g in _own_lr_groups(self.optimizer):
            if g.index in self.group_base_lrs:
                g.lr = self._group_lr(g, self.group_base_lrs[g.index])
        return self.last_lr

    def _group_lr(self, group, base):
        """A group's learning rate now: the schedule's formula from the group's base."""
        own = self.base_lr
        try:
            self.base_lr = base
            return self.lr_at(self.last_step)
        finally:
            self.base_lr = own

    def state_dict(self) -> dict[str, Any]:
        """The schedule's settings and position, as plain Python values."""
        out = {"scheduler": type(self).__name__, "base_lr": self.base_lr,
               "last_step": self.last_step, "last_lr": self.last_lr}
        out.update({n: getattr(self, n) for n in self._settings})
        if self.group_base_lrs:
            out["group_base_lrs"] = {str(k): v for k, v in self.group_base_lrs.items()}
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore ``state_dict()``, and set ``optimizer.lr`` to the saved ``last_lr``
        (continuing gives the same learning rates as never having stopped)."""
        kind = state_dict.get("scheduler")
        if kind != type(self).__name__:
            raise ValueError(f"this state_dict belongs to {kind!r}, not "
                             f"{type(self).__name__!r}")
        expected = {"scheduler", "base_lr", "last_step", "last_lr", *self._settings}
        if self.group_base_lrs or "group_base_lrs" in state_dict:
            expected.add("group_base_lrs")
        if set(state_dict) != expected:
            raise ValueError(f"state_dict must have exactly the keys {sorted(expected)}, "
                             f"got {sorted(state_dict)}")
        for n in self._settings:
            setattr(self, n, state_dict[n])
        self._check()
        self.base_lr = _real("base_lr", state_dict["base_lr"])
        self.last_step = _int("last_step", state_dict["last_step"], 0)
        if "group_base_lrs" in state_dict:
            self.group_base_lrs = {int(k): _real("group base_lr", v)
                                   for k, v in dict(state_dict["group_base_lrs"]).items()}
        self._apply(_real("last_lr", state_dict["last_lr"]))

    def _check(self):
        """Validate the settings (called by __init__ and load_state_dict)."""

    def __repr__(self):
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._settings)
        return (f"{type(self).__name__}({type(self.optimizer).__name__}, {args}; "
                f"base_lr={self.base_lr!r}, last_step={self.last_step})")


class StepLR(LRScheduler):
    """``lr_t = base_lr * gamma ** (t // step_size)``: multiply by ``gamma`` every
    ``step_size`` steps.

    Parameters
    ----------
    optimizer : fastoptim.Optimizer
    step_size : int >= 1
    gamma : float > 0, default 0.1
    """

    _settings = ("step_size", "gamma")

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = step_size
        self.gamma = gamma
        self._check()
        super().__init__(optimizer)

    def _check(self):
        self.step_size = _int("step_size", self.step_size, 1)
        self.gamma = _real("gamma", self.gamma, positive=True)

    def lr_at(self, t):
        return self.base_lr * self.gamma ** (t // self.step_size)


class ExponentialLR(LRScheduler):
    """``lr_t = base_lr * gamma ** t``.

    Parameters
    ----------
    optimizer : fastoptim.Optimizer
    gamma : float > 0
    """

    _settings = ("gamma",)

    def __init__(self, optimizer: Optimizer, gamma: float) -> None:
        self.gamma = gamma
        self._check()
        super().__init__(optimizer)

    def _check(self):
        self.gamma = _real("gamma", self.gamma, positive=True)

    def lr_at(self, t):
        return self.base_lr * self.gamma ** t


class CosineWithWarmup(LRScheduler):
    """Linear warm-up, then a half cosine from ``base_lr`` down to ``min_lr``.

    * ``t < warmup_steps``: ``lr_t = base_lr * (t + 1) / (warmup_steps + 1)`` (the first
      update already moves; ``base_lr`` is reached at ``t = warmup_steps``);
    * ``warmup_steps <= t <= total_steps``:
      ``lr_t = min_lr + (base_lr - min_lr) * (1 + cos(pi * s)) / 2`` with
      ``s = (t - warmup_steps) / (total_steps - warmup_steps)``;
    * ``t > total_steps``: ``min_lr``.

    Parameters
    ----------
    optimizer : fastoptim.Optimizer
    warmup_steps : int >= 0
    total_steps : int > warmup_steps
    min_lr : float >= 0, default 0
    """

    _settings = ("warmup_steps", "total_steps", "min_lr")

    def __init__(self, optimizer: Optimizer, warmup_steps: int, total_steps: int,
                 min_lr: float = 0.0) -> None:
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_lr = min_lr
        self._check()
        super().__init__(optimizer)

    def _check(self):
        self.warmup_steps = _int("warmup_steps", self.warmup_steps, 0)
        self.total_steps = _int("total_steps", self.total_steps, self.warmup_steps + 1)
        self.min_lr = _real("min_lr", self.min_lr)

    def lr_at(self, t):
        w, total = self.warmup_steps, self.total_steps
        if t < w:
            return self.base_lr * (t + 1) / (w + 1)
        if t >= total:
            return self.min_lr
        s = (t - w) / (total - w)
        return self.min_lr + (self.base_lr - self.min_lr) * (1.0 + math.cos(math.pi * s)) / 2.0


class ReduceLROnPlateau(LRScheduler):
    """Reduce ``lr`` when a metric (e.g. the validation loss) stops improving.

    ``step(metric)`` after each evaluation. With ``mode="min"``, the metric improves when
    ``metric < best * (1 - threshold)`` (``threshold_mode="rel"``) or
    ``metric < best - threshold`` (``"abs"``); ``mode="max"`` mirrors this. After more
    than ``patience`` steps in a row without improvement, ``lr <- max(lr * factor,
    min_lr)`` (skipped if that changes ``lr`` by less than ``eps``), the count restarts
    and the next ``cooldown`` steps do not count as bad. A NaN metric never improves.

    Parameters
    ----------
    optimizer : fastoptim.Optimizer
    mode : {"min", "max"}, default "min"
    factor : float, 0 < factor < 1, default 0.1
    patience : int >= 0, default 10
    threshold : float >= 0, default 1e-4
    threshold_mode : {"rel", "abs"}, default "rel"
    cooldown : int >= 0, default 0
    min_lr : float >= 0, default 0
    eps : float >= 0, default 1e-8
    """

    _settings = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown",
                 "min_lr", "eps", "best", "num_bad_steps", "cooldown_counter")

    def __init__(self, optimizer: Optimizer, mode: str = "min", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel",
                 cooldown: int = 0, min_lr: float = 0.0, eps: float = 1e-8) -> None:
        self.mode = mode
        self.factor = factor
        self.patience = patience
        self.threshold = threshold
        self.threshold_mode = threshold_mode
        self.cooldown = cooldown
        self.min_lr = min_lr
        self.eps = eps
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_steps = 0
        self.cooldown_counter = 0
        self._check()
        super().__init__(optimizer)

    def _check(self):
        if self.mode not in ("min", "max"):
            raise ValueError(f"Invalid mode: {self.mode!r} (must be 'min' or 'max')")
        if self.threshold_mode not in ("rel", "abs"):
            raise ValueError(f"Invalid threshold_mode: {self.threshold_mode!r} (must be "
                             f"'rel' or 'abs')")
        self.factor = _real("factor", self.factor, positive=True)
        if self.factor >= 1.0:
            raise ValueError(f"Invalid factor: {self.factor!r} (must satisfy 0 < factor < 1)")
        self.patience = _int("patience", self.patience, 0)
        self.threshold = _real("threshold", self.threshold)
        self.cooldown = _int("cooldown", self.cooldown, 0)
        self.min_lr = _real("min_lr", self.min_lr)
        self.eps = _real("eps", self.eps)
        self.best = float(self.best)
        self.num_bad_steps = _int("num_bad_steps", self.num_bad_steps, 0)
        self.cooldown_counter = _int("cooldown_counter", self.cooldown_counter, 0)

    def lr_at(self, t):
        # Not a function of t: the current lr (the one this schedule last set).
        return self.optimizer.lr if t == 0 else self.last_lr

    def _group_lr(self, group, base):
        # a group's current lr, reduced in step() by the same rule as the optimizer's
        return base

    def _improves(self, metric):
        if self.mode == "min":
            bound = (self.best * (1.0 - self.threshold) if self.threshold_mode == "rel"
                     else self.best - self.threshold)
            return metric < bound
        bound = (self.best * (1.0 + self.threshold) if self.threshold_mode == "rel"
                 else self.best + self.threshold)
        return metric > bound

    def step(self, metric: float) -> float:  # type: ignore[override]
        """Record one evaluation of the metric; reduce ``lr`` if it has plateaued.
        Returns the (possibly new) learning rate."""
        if isinstance(metric, bool) or not isinstance(metric, numbers.Real):
            try:
                metric = float(metric)          # NumPy scalars, 0-d arrays
            except (TypeError, ValueError):
                raise TypeError(f"metric must be a real number, got {metric!r}") from None
        metric = float(metric)
        self.last_step += 1
        if self._improves(metric):
            self.best = metric
            self.num_bad_steps = 0
        else:
            self.num_bad_steps += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_steps = 0
        lr = self.last_lr
        if self.num_bad_steps > self.patience:
            new = max(lr * self.factor, self.min_lr)
            if lr - new > self.eps:
                lr = new
            for g in _own_lr_groups(self.optimizer):  # each group as torch: its own lr
                new = max(g.lr * self.factor, self.min_lr)
                if g.lr - new > self.eps:
                    self.group_base_lrs[g.index] = new
            self.cooldown_counter = self.cooldown
            self.num_bad_steps = 0
        return self._apply(lr)
