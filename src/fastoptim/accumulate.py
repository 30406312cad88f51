"""Gradient accumulation: one optimizer step every ``steps`` calls of ``update``, with the
mean of their gradients (optax's ``MultiSteps``, Keras' ``gradient_accumulation_steps``).

>>> import numpy as np, fastoptim as fo
>>> w = np.zeros(2)
>>> acc = fo.Accumulate(fo.SGD(lr=0.5), steps=2)
>>> acc.update([w], [np.array([1.0, 2.0])])    # accumulated: w unchanged
False
>>> acc.update([w], [np.array([3.0, 0.0])])    # the step, with the mean [2.0, 1.0]
True
>>> w.tolist(), acc.count
([-1.0, -0.5], 0)

The arithmetic, which is the specification: the accumulator of each parameter is one
buffer of the parameter's dtype, shape and memory order. The first call of a cycle copies
the gradient into it, calls 2 to ``steps - 1`` add theirs in call order (``np.add(acc, g,
out=acc)``), and the last call steps the optimizer with the means ``(acc + g)/steps``
(each sum rounded, then the division: ``np.add`` then ``np.divide``). The compiled engine
computes them inside the optimizer's fused pass, block by block, never writing them; the
NumPy engine (and any call the fast path does not take) computes them into the
accumulators first, then calls the optimizer on them: bit-identical either way, and to
running the optimizer on means computed that way. The sum is in the parameter's dtype.

This module is a layer on top of the optimizer classes; nothing else in the package
imports it.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import _core, _engine
from ._typing import Grads, Params, StateDict
from .optimizers import Optimizer, ScheduleFree, _single_producer

__all__ = ["Accumulate"]

_KIND = "Accumulate"
_STATE_KEYS = frozenset({"wrapper", "steps", "count", "accumulators", "optimizer"})
# the wrapped optimizer's settings that ``acc.<name> = value`` sets on it (besides its
# hyper-parameters)
_OPTIONS = ("num_threads", "backend", "skip_nonfinite")


def _check_steps(steps):
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise TypeError(f"steps must be an int >= 1 (the number of update calls per "
                        f"optimizer step), got {steps!r}")
    if steps < 1:
        raise ValueError(f"Invalid steps: {steps!r} (must be an int >= 1: the number of "
                         f"update calls per optimizer step; 1 steps at every call)")
    return int(steps)


def _fits(buf, shape, dtype, order):
    return (buf.shape == shape and buf.dtype == dtype
            and (buf.flags.c_contiguous if order == "C" else buf.flags.f_contiguous))


class _Mean:
    """The stepping call's gradients, (accumulator + last gradient)/k per parameter, for
    ``Optimizer.update``: ``fused`` is what the compiled fast path takes to compute them
    inside its pass (the accumulators in the call's order, and k); ``computed()`` makes
    them in NumPy, into the accumulators, for every other path, and returns them in
    the container ``update`` expects."""

    def __init__(self, acc, checked, k, params):
        self._acc, self._checked, self._k, self._params = acc, checked, k, params
        self.fused = ([acc[key] for key, _, _, _ in checked], k)
        self._done = False

    def computed(self, like=None):
        """The means, in a container like ``like`` (the params ``update`` runs on: a dict
        by key, a list by position), by default like the caller's params."""
        acc = self._acc
        if not self._done:
            for key, _, _, g in self._checked:
                np.add(acc[key], g, out=acc[key])
                np.divide(acc[key], self._k, out=acc[key])
            self._done = True
        like = self._params if like is None else like
        if isinstance(like, np.ndarray) or _single_producer(like):
            return acc[0]
        if isinstance(like, Mapping):
            return {key: acc[key] for key in like}
        return [acc[i] for i in range(len(acc))]


class Accumulate:
    """Accumulate gradients over ``steps`` calls of :meth:`update`; step ``optimizer``
    with their mean on the last call of each cycle.

    Parameters
    ----------
    optimizer : fastoptim.Optimizer
        Any optimizer of the package (every class of the rule table and of
        ``fastoptim.book``, with or without parameter groups, either backend); it is
        used as it is, not copied, and is available as :attr:`optimizer`.
    steps : int
        Calls per optimizer step, ``>= 1``; ``steps=1`` hands every call straight to
        ``optimizer.update``.

    Notes
    -----
    Arithmetic (the specification): per parameter one accumulator buffer of its dtype,
    shape and memory order; call 1 of a cycle copies ``g``, calls 2..``steps - 1`` add
    theirs in call order (``np.add(acc, g, out=acc)``), the last call steps the
    optimizer with ``(acc + g)/steps`` (``np.add`` then ``np.divide``), as
    ``optimizer.update(params, means)`` would; then the cycle starts again. The sum is
    in the parameter's dtype, so it overflows to ``inf`` where ``|g|`` is near the
    dtype's maximum over ``steps``.

    Checks: every array of every call is checked as ``Optimizer.update`` checks it
    (the same functions and errors) before anything is written, and so are the keys,
    shapes and dtypes against those of the cycle so far and of the optimizer's state:
    a refused call leaves parameters, accumulators and the optimizer as they were.
    (Should the optimizer still refuse the stepping call for a reason not checked here
    -- a groups ``where`` function that raises, say -- its error propagates and the
    cycle is discarded.)
    Numbers as the values of a ``params`` dict or list are accepted as
    ``Optimizer.update`` accepts them (rebound on the stepping call).

    Non-finite gradients: NaN or Inf is accumulated like any value, so the mean and, on
    the stepping call, the parameters take it. With ``skip_nonfinite=True`` on the
    optimizer, a non-finite mean is skipped by it as usual (parameters and state as
    they were, ``optimizer.skipped_steps`` up by one); the cycle ends either way.

    Memory and time: one buffer per parameter, kept from cycle to cycle (freed by
    :meth:`reset`). An accumulating call is one pass over each gradient (the copy, or
    the add). The stepping call is the optimizer's fused pass reading the accumulator
    besides the gradient: the mean is made block by block in cache, where the rule
    reads it, and never written (the compiled engine; with ``backend="numpy"``, with
    ``skip_nonfinite=True`` -- whose guard checks the means -- and for a call the fast
    path does not take, the means are computed into the accumulators first: two more
    passes, the same bits).

    Attributes of the optimizer not defined here are read from it (``acc.lr``,
    ``acc.state``, ``acc.param_groups``, ...); its hyper-parameters and
    ``num_threads``, ``backend`` and ``skip_nonfinite`` may also be set through the
    wrapper (``acc.lr = 1e-4`` sets ``acc.optimizer.lr``). A learning-rate schedule
    steps the optimizer once per optimizer step: make it on ``acc.optimizer`` (or on
    ``acc``, the same) and call its ``step()`` after an ``update`` that returned True.

    Examples
    --------
    >>> import numpy as np, fastoptim as fo
    >>> params = {"w": np.ones(3, dtype=np.float32)}
    >>> acc = fo.Accumulate(fo.Adam(lr=0.1), steps=4)
    >>> [acc.update(params, {"w": np.full(3, 0.25, dtype=np.float32)}) for _ in range(4)]
    [False, False, False, True]
    >>> acc.optimizer.state["w"]["step"], acc.lr
    (1, 0.1)
    """

    def __init__(self, optimizer: Optimizer, steps: int) -> None:
        if not isinstance(optimizer, Optimizer):
            hint = (" (to accumulate over a*b calls, wrap the optimizer once with "
                    "steps=a*b)" if isinstance(optimizer, Accumulate) else "")
            raise TypeError(f"optimizer must be a fastoptim optimizer (fo.Adam(...), "
                            f"...), got {type(optimizer).__name__}{hint}")
        object.__setattr__(self, "optimizer", optimizer)
        object.__setattr__(self, "_steps", _check_steps(steps))
        object.__setattr__(self, "_count", 0)
        object.__setattr__(self, "_acc", {})  # key -> accumulator buffer

    # -- attributes ----------------------------------------------------------------------

    @property
    def steps(self) -> int:
        """Calls of :meth:`update` per optimizer step (fixed at construction)."""
        return self._steps

    @property
    def count(self) -> int:
        """Calls accumulated in the current cycle, ``0 <= count < steps``."""
        return self._count

    def __getattr__(self, name: str) -> Any:
        # only for names not found on the wrapper: the optimizer's (acc.lr, acc.state)
        opt = self.__dict__.get("optimizer")
        if opt is None or name.startswith("__"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute "
                                 f"{name!r}")
        return getattr(opt, name)

    def __setattr__(self, name: str, value: Any) -> None:
        opt = self.optimizer
        if name in opt._hyper_names or name in _OPTIONS:
            setattr(opt, name, value)  # validated by the optimizer
            return
        if name in ("steps", "count", "optimizer"):
            raise AttributeError(f"{name} of an Accumulate cannot be set; make a new "
                                 f"fo.Accumulate(optimizer, steps=...)")
        raise AttributeError(f"Accumulate has no setting {name!r} (it sets the "
                             f"optimizer's hyper-parameters and {', '.join(_OPTIONS)}); "
                             f"set other attributes on acc.optimizer")

    def __repr__(self) -> str:
        return f"Accumulate({self.optimizer!r}, steps={self._steps})"

    # -- the step ------------------------------------------------------------------------

    def update(self, params: Params, grads: Grads) -> bool:
        """Accumulate the gradients; on the ``steps``-th call of a cycle, step the
        optimizer with their mean.

        Parameters
        ----------
        params, grads
            As for ``Optimizer.update``: two dicts with the same keys, two lists/tuples
            of the same length, or one array each. Every call of a cycle must have the
            same keys, and each parameter the same shape and dtype.

        Returns
        -------
        bool
            True when the optimizer's step was applied (the last call of a cycle);
            False on accumulating calls, and on the last call when the optimizer has
            ``skip_nonfinite=True`` and skipped a non-finite mean. :attr:`count` is 0
            after the last call of a cycle, either way.

        Raises
        ------
        TypeError, ValueError
            For any array ``Optimizer.update`` refuses (naming it), and for keys,
            shapes or dtypes that differ from those of the calls accumulated so far
            (finish the cycle with the same parameters, or call :meth:`reset`).
        RuntimeError
            For a Schedule-Free optimizer in eval mode. Nothing is written on error.
        """
        opt = self.optimizer
        k = self._steps
        if k == 1:
            return opt.update(params, grads)
        n = self._count
        last = n + 1 == k
        checked = self._check(params, grads, n, state=n == 0 or last)
        if n == 0:
            old, new = self._acc, {}
            for key, view, order, _ in checked:
                buf = old.get(key)
                if buf is None or not _fits(buf, view.shape, view.dtype, order):
                    buf = np.empty_like(view, order=order)
                new[key] = buf
            for key, _, _, g in checked:
                np.copyto(new[key], g)
            object.__setattr__(self, "_acc", new)
        elif not last:
            acc = self._acc
            for key, _, _, g in checked:
                np.add(acc[key], g, out=acc[key])
        if not last:
            object.__setattr__(self, "_count", n + 1)
            return False
        object.__setattr__(self, "_count", 0)  # the cycle ends, stepped or not
        mean = _Mean(self._acc, checked, k, params)
        if opt.skip_nonfinite:  # the guard checks the gradients it gets: the means
            return opt.update(params, mean.computed())
        object.__setattr__(opt, "_means", mean)
        try:
            return opt.update(params, grads)
        finally:
            del opt.__dict__["_means"]

    def _check(self, params, grads, n, state):
        """[(key, parameter view, memory order, gradient array)] of a call, every array
        checked as ``Optimizer.update`` checks it, the keys, shapes and dtypes against
        the cycle's (``n`` calls so far) and, with ``state``, against the optimizer's
        state; raises before anything is written."""
        opt = self.optimizer
        opt._check_not_swapped("update")  # at every call: a cycle is not lost to it
        if isinstance(opt, ScheduleFree) and not opt.train_mode:
            raise RuntimeError(
                f"{type(opt).__name__} is in eval mode (the parameters hold the average "
                f"x, see eval()): call acc.optimizer.train(params) before update, also "
                f"before accumulating calls (gradients belong at the train point y)")
        container = params
        if isinstance(params, np.ndarray) or _single_producer(params):
            container, grads = [params], [grads]
        checked = []
        for key, p, g in _engine.pairs(container, grads):  # kinds, keys, lengths
            boxed = _engine.scalar_box(p)
            if boxed is not None:  # a number in a dict or list, as Optimizer.update
                if not _engine._rebindable(container):
                    raise TypeError(
                        f"parameter {key!r} is {_engine._scalar_what(p)} in a "
                        f"{type(container).__name__}: fastoptim updates a number held in "
                        f"place of an array by rebinding it (params[{key!r}] = new "
                        f"value), which a {type(container).__name__} does not allow; pass "
                        f"the parameters in a list or a dict, or keep each in a NumPy "
                        f"array")
                view, order = boxed[0], "C"
            else:
                view, order = _core.check_param(_engine.ClassNames.param(key), p)
            g = _core.check_grad(_engine.ClassNames.grad(key), g, view, order)
            checked.append((key, view, order, g))
        if n:
            self._check_cycle(checked, n)
        if state:
            names = opt.rule.state
            slots = opt._slots
            for key, view, order, _ in checked:
                record = slots.get(key)
                if record is not None:  # the optimizer's own checks of its state
                    record = _engine._fit_owned(key, record, view, order, names,
                                                opt._hyper.get("state_dtype"))
                    _engine._check_state_aliasing(names, record[1:], view)
        return checked

    def _check_cycle(self, checked, n):
        acc = self._acc
        keys = [c[0] for c in checked]
        what = (f"the {n} call{'s' if n > 1 else ''} accumulated so far in this cycle of "
                f"{self._steps}")
        fix = ("pass the same parameters at every call of a cycle (finish it), or call "
               "acc.reset() to discard it")
        if len(keys) != len(acc) or any(key not in acc for key in keys):
            missing = [key for key in acc if key not in set(keys)]
            extra = [key for key in keys if key not in acc]
            parts = []
            if missing:
                parts.append(f"missing {', '.join(map(repr, missing))}")
            if extra:
                parts.append(f"new {', '.join(map(repr, extra))}")
            raise ValueError(f"the parameters of this call differ from those of {what}: "
                             f"{'; '.join(parts)}; {fix}")
        for key, view, _, _ in checked:
            buf = acc[key]
            if buf.shape != view.shape or buf.dtype != view.dtype:
                raise ValueError(f"parameter {key!r} has shape {view.shape} and dtype "
                                 f"{view.dtype}, but in {what} it had shape {buf.shape} "
                                 f"and dtype {buf.dtype}; {fix}")

    def reset(self) -> None:
        """Discard the current cycle (its accumulated gradients) and free the
        accumulators; the next :meth:`update` starts a new cycle. The optimizer is not
        changed."""
        object.__setattr__(self, "_count", 0)
        object.__setattr__(self, "_acc", {})

    # -- checkpoints ---------------------------------------------------------------------

    def state_dict(self) -> StateDict:
        """``{"wrapper": "Accumulate", "steps": int, "count": int, "accumulators": {key:
        ndarray}, "optimizer": optimizer.state_dict()}``: copies, so later calls do not
        change it. ``accumulators`` holds the sums of the current cycle's ``count``
        calls (empty when ``count`` is 0)."""
        accs = ({key: buf.copy(order="K") for key, buf in self._acc.items()}
                if self._count else {})
        return {"wrapper": _KIND, "steps": self._steps, "count": self._count,
                "accumulators": accs, "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, the optimizer's state included, so
        that continuing -- mid-cycle too -- is bit-identical to never having stopped.
        Nothing changes if the dict does not fit (another ``steps`` included)."""
        if not isinstance(state_dict, Mapping) or set(state_dict) != _STATE_KEYS:
            raise ValueError(f"state_dict must be a dict with the keys "
                             f"{sorted(_STATE_KEYS)}, as returned by "
                             f"Accumulate.state_dict() (for the optimizer's own, use "
                             f"acc.optimizer.load_state_dict)")
        if state_dict["wrapper"] != _KIND:
            raise ValueError(f"this state_dict belongs to {state_dict['wrapper']!r}, not "
                             f"{_KIND!r}")
        steps = state_dict["steps"]
        if (isinstance(steps, bool) or not isinstance(steps, (int, np.integer))
                or steps != self._steps):
            raise ValueError(f"this state_dict accumulates over steps={steps!r} calls, "
                             f"this Accumulate over {self._steps}: make it with "
                             f"fo.Accumulate(optimizer, steps={steps!r})")
        count = state_dict["count"]
        if (isinstance(count, bool) or not isinstance(count, (int, np.integer))
                or not 0 <= count < self._steps):
            raise ValueError(f"count must be an int with 0 <= count < {self._steps}, got "
                             f"{count!r}")
        accs = state_dict["accumulators"]
        if not isinstance(accs, Mapping) or (count == 0 and len(accs)):
            raise ValueError("accumulators must be a dict of arrays, empty when count is "
                             "0")
        new = {}
        for key, buf in accs.items():
            if not isinstance(buf, np.ndarray) or buf.dtype not in _core.FLOAT_DTYPES:
                raise TypeError(f"accumulator of parameter {key!r} must be a float32 or "
                                f"float64 array")
            order = "F" if buf.flags.f_contiguous and not buf.flags.c_contiguous else "C"
            new[key] = np.array(buf, copy=True, order=order)
        self.optimizer.load_state_dict(state_dict["optimizer"])  # raises, or restores
        object.__setattr__(self, "_count", int(count))
        object.__setattr__(self, "_acc", new)
