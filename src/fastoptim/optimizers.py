"""The optimizer classes: hold hyper-parameters and per-parameter state, count steps, and
run one rule over every parameter of an ``update(params, grads)`` call.

They are a thin shell over ``fastoptim._core`` (validation, step scalars) and the kernels;
the math lives in the kernels and in ``fastoptim.reference``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import _core, _threading, reference
from ._dispatch import kernels as _kernels
from ._typing import Backend, Grads, Params, StateDict

__all__ = ["Optimizer", "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "AdaDelta",
           "Adam", "AdamW"]


def _single_producer(obj):
    """One non-NumPy array (a torch tensor, any DLPack producer) passed as ``params``."""
    return hasattr(obj, "__dlpack__") and not isinstance(obj, (Mapping, Sequence))


def _pairs(params, grads):
    """[(key, param, grad)] from two dicts with the same keys or two equal-length
    sequences (keys 0, 1, ...); a single array pair counts as a sequence of one."""
    if isinstance(params, np.ndarray) and isinstance(grads, (np.ndarray, np.generic)):
        return [(0, params, grads)]
    if isinstance(params, Mapping):
        if not isinstance(grads, Mapping):
            raise TypeError(f"params is a dict, so grads must be a dict with the same keys, "
                            f"got {type(grads).__name__}")
        missing = [k for k in params if k not in grads]
        extra = [k for k in grads if k not in params]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"no gradient for parameter(s) {', '.join(map(repr, missing))}")
            if extra:
                parts.append(f"gradient(s) {', '.join(map(repr, extra))} have no parameter")
            raise ValueError("params and grads must have the same keys: " + "; ".join(parts))
        return [(k, params[k], grads[k]) for k in params]
    if isinstance(params, Sequence) and not isinstance(params, (str, bytes)):
        if not isinstance(grads, Sequence) or isinstance(grads, (str, bytes)):
            raise TypeError(f"params is a sequence, so grads must be a sequence of the same "
                            f"length, got {type(grads).__name__}")
        if len(params) != len(grads):
            raise ValueError(f"params has {len(params)} arrays but grads has {len(grads)}; "
                             f"pass one gradient per parameter, in the same order")
        return [(i, p, g) for i, (p, g) in enumerate(zip(params, grads))]
    raise TypeError(f"params must be a dict of arrays, a list/tuple of arrays or one array, "
                    f"got {type(params).__name__}")


def _step_box(step):
    return np.array(step, dtype=np.int64)


class Optimizer:
    """Base class. Subclasses set ``_rule`` (a kernel name) and ``_hyper_names``.

    Hyper-parameters are plain attributes (``opt.lr = 1e-4`` between updates is fine) and
    are validated whenever they are set.

    State lives in ``_slots``: parameter key -> ``[step, buffer, ...]`` (the step in a
    0-d int64 array that the kernels increment in place, so counting steps allocates no
    Python integer; buffers in the order of the rule's state names), shared by both
    backends. ``state`` shows it as
    ``{key: {"step": int, name: array}}``.
    """

    _rule = None
    _hyper_names = ()

    def __init__(self, *, num_threads: int | None = None, backend: Backend = "cython",
                 skip_nonfinite: bool = False, **hyper: Any) -> None:
        object.__setattr__(self, "_scalars_fn", None)
        self.num_threads = num_threads
        self.backend = backend
        self.skip_nonfinite = bool(skip_nonfinite)
        self.skipped_steps = 0
        for name in self._hyper_names:
            setattr(self, name, hyper[name])
        self._slots = {}
        self._overlap_cache = []
        self._plan = []  # update_many's [keys, slots] of the last call; [] = unknown
        # the adaptive threading policy's measurements for this optimizer's loop
        self._pacer = bytearray(_kernels.PACER_BYTES)
        if num_threads not in (None, 1) and not _kernels.openmp_enabled():
            warnings.warn("fastoptim was built without OpenMP: num_threads="
                          f"{num_threads} is ignored and every update runs on one core. "
                          "Rebuild with an OpenMP-capable compiler to use all cores.",
                          RuntimeWarning, stacklevel=3)

    def __setattr__(self, name, value):
        if name in self._hyper_names:
            value = _core.check_hyper(**{name: value})[name]
            object.__setattr__(self, "_scalars_fn", None)  # scalars depend on it
        elif name == "num_threads":
            object.__setattr__(self, "_nt", _core.check_num_threads(value))
        elif name == "backend":
            _core.check_backend(value)
        object.__setattr__(self, name, value)

    def __repr__(self):
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._hyper_names)
        extra = ""
        if self.num_threads is not None:
            extra += f", num_threads={self.num_threads!r}"
        if self.backend != "cython":
            extra += f", backend={self.backend!r}"
        return f"{type(self).__name__}({args}{extra})"

    @property
    def hyperparams(self):
        """The hyper-parameters as a dict."""
        return {n: getattr(self, n) for n in self._hyper_names}

    @property
    def state(self):
        """Per parameter key: ``{"step": int, <state name>: array, ...}``. The arrays are
        the live state buffers; the dicts are made for each access."""
        names = _core.RULES[self._rule][0]
        return {key: {"step": int(slot[0]), **dict(zip(names, slot[1:]))}
                for key, slot in self._slots.items()}

    def _scalars(self):
        """step -> the rule's scalar tuple, for the current hyper-parameters."""
        fn = self._scalars_fn
        if fn is None:
            scalars = _core.RULES[self._rule][1]
            hyper = self.hyperparams
            cache = {}

            def fn(step):
                v = cache.get(step)
                if v is None:
                    if len(cache) > 64:
                        cache.clear()
                    v = cache[step] = scalars(step, **hyper)
                return v

            object.__setattr__(self, "_scalars_fn", fn)
        return fn

    # -- the step ------------------------------------------------------------------------

    def update(self, params: Params, grads: Grads) -> bool:
        """Update every parameter in place from its gradient.

        Parameters
        ----------
        params : dict of ndarray, or sequence of ndarray, or ndarray
            float32/float64, writeable, C- or F-contiguous arrays, updated in place.
        grads : same kind as ``params``
            Same keys (or length and order); each gradient has its parameter's shape and
            dtype, any memory layout. Gradients are never modified.

        Every array is checked before any is changed: on error, parameters and state are
        exactly as they were.

        Returns
        -------
        bool
            True when the step was applied. False only with ``skip_nonfinite=True``, when
            some gradient element was NaN or Inf: then no parameter or state buffer was
            written, no step was counted, and ``skipped_steps`` went up by one.
        """
        tp, tg = type(params), type(grads)
        if not ((tp is dict and tg is dict)
                or (tp in (list, tuple) and tg in (list, tuple) and len(params) == len(grads))):
            if isinstance(params, np.ndarray) or _single_producer(params):
                params, grads = [params], [grads]
            pairs = _pairs(params, grads)  # raises for mismatched kinds, keys, lengths
            if isinstance(params, Mapping):
                params = {k: p for k, p, _ in pairs}
                grads = {k: g for k, _, g in pairs}
            else:
                params = [p for _, p, _ in pairs]
                grads = [g for _, _, g in pairs]
        if self.backend == "cython":
            applied = _kernels.update_many(
                _core.RULE_IDS[self._rule], params, grads, self._slots, self._scalars(),
                self._slow_path, _pairs, self._nt, self._overlap_cache, self._plan,
                self.skip_nonfinite,
                self._pacer if _threading.adaptive and self._nt == 0 else None)
        else:
            applied = self._update_reference(params, grads)
        if not applied:
            self.skipped_steps += 1
        return applied

    def _slow_path(self, key, param, grad, slot):
        """What update_many's C checks did not take as it is: raise the user-facing
        error, or return (parameter view, gradient in its memory order, slot to use)."""
        names = _core.RULES[self._rule][0]
        p, order = _core.check_param(f"parameter {key!r}", param)
        g = _core.check_grad(f"gradient {key!r}", grad, p, order)
        if slot is None:
            slot = [_step_box(0)] + [np.zeros_like(p) for _ in names]
        else:
            slot = self._slot_for(key, slot, p, order, names)
            if g.size and any(np.may_share_memory(g, b) for b in slot[1:]):
                g = g.copy(order=order)  # read as at the call, like functional._run
        return p, g, slot

    def _update_reference(self, params, grads):
        """The same update through the NumPy reference, parameter by parameter."""
        names, _, scalar_names = _core.RULES[self._rule]
        kernel = getattr(reference, self._rule)
        items = params.items() if isinstance(params, dict) else enumerate(params)
        if isinstance(params, dict):
            _pairs(params, grads)  # same keys
        work = []
        for key, param in items:
            p, g, slot = self._slow_path(key, param, grads[key], self._slots.get(key))
            work.append((key, p, g, slot))
        if self.skip_nonfinite and not all(np.isfinite(g).all() for _, _, g, _ in work):
            return False
        # nothing can fail from here on
        scalars = self._scalars()
        self._plan.clear()  # slots change here, not through update_many
        for key, p, g, slot in work:
            self._slots[key] = slot
            order = "C" if p.flags.c_contiguous else "F"
            step = int(slot[0]) + 1
            kernel(_core.flat_view(p, order), _core.flat_view(g, order),
                   *[_core.flat_view(b, order) for b in slot[1:]],
                   **dict(zip(scalar_names, scalars(step))))
            slot[0][()] = step
        return True

    @staticmethod
    def _slot_for(key, slot, p, order, names):
        """The stored slot of ``key`` if it fits ``p``; a re-laid-out copy if only its
        memory order differs (state is ours to copy); else a clear error."""
        if type(slot) is not list or len(slot) != len(names) + 1:
            raise RuntimeError(f"internal error: bad state slot for {key!r}")
        fixed = None
        for i, n in enumerate(names):
            buf = slot[i + 1]
            if buf.shape != p.shape or buf.dtype != p.dtype:
                raise ValueError(
                    f"optimizer state {n!r} of parameter {key!r} has shape {buf.shape} and "
                    f"dtype {buf.dtype}, but the parameter now has shape {p.shape} and dtype "
                    f"{p.dtype}; use a new optimizer (or load a matching state_dict) for "
                    f"changed parameters")
            ok = (buf.flags.c_contiguous if order == "C" else buf.flags.f_contiguous) \
                and buf.flags.aligned and buf.flags.writeable
            if not ok:
                if fixed is None:
                    fixed = list(slot)
                fixed[i + 1] = np.array(buf, order=order)
        return slot if fixed is None else fixed

    # -- checkpoints ---------------------------------------------------------------------

    def state_dict(self) -> StateDict:
        """The optimizer's hyper-parameters and state as plain Python and NumPy values
        (copies: later updates do not change it)."""
        names = _core.RULES[self._rule][0]
        state = {key: {"step": int(slot[0]),
                       **{n: b.copy(order="K") for n, b in zip(names, slot[1:])}}
                 for key, slot in self._slots.items()}
        return {"optimizer": type(self).__name__, "hyperparams": self.hyperparams,
                "state": state}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what ``state_dict()`` returned, so that continuing is bit-identical to
        never having stopped. Nothing changes if the dict does not fit this optimizer."""
        if not isinstance(state_dict, Mapping) or set(state_dict) != {
                "optimizer", "hyperparams", "state"}:
            raise ValueError("state_dict must be a dict with keys 'optimizer', "
                             "'hyperparams' and 'state', as returned by state_dict()")
        kind = state_dict["optimizer"]
        if kind != type(self).__name__:
            raise ValueError(f"this state_dict belongs to a {kind} optimizer, not "
                             f"{type(self).__name__}")
        hyper = dict(state_dict["hyperparams"])
        if set(hyper) != set(self._hyper_names):
            raise ValueError(f"hyperparams must have exactly the keys "
                             f"{sorted(self._hyper_names)}, got {sorted(hyper)}")
        hyper = _core.check_hyper(**hyper)
        names = _core.RULES[self._rule][0]
        slots = {}
        for key, st in dict(state_dict["state"]).items():
            if not isinstance(st, Mapping) or set(st) != {"step", *names}:
                raise ValueError(f"state of parameter {key!r} must have the keys "
                                 f"{['step', *names]}")
            step = st["step"]
            if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
                raise ValueError(f"state of parameter {key!r}: step must be an int >= 0, "
                                 f"got {step!r}")
            slot = [_step_box(step)]
            for n in names:
                buf = st[n]
                if not isinstance(buf, np.ndarray) or buf.dtype not in _core.FLOAT_DTYPES:
                    raise TypeError(f"state {n!r} of parameter {key!r} must be a float32 "
                                    f"or float64 array")
                ref = st[names[0]]
                if buf.shape != ref.shape or buf.dtype != ref.dtype:
                    raise ValueError(f"state buffers of parameter {key!r} differ in shape "
                                     f"or dtype")
                slot.append(np.array(buf, copy=True, order="K"))
            slots[key] = slot
        for n, v in hyper.items():
            setattr(self, n, v)
        self._slots = slots
        self._plan.clear()


class SGD(Optimizer):
    """Stochastic gradient descent: ``p <- p - lr*g``.

    Parameters
    ----------
    lr : float, default 1e-3
        Learning rate, >= 0.
    weight_decay : float, default 0.0
        Coupled L2 decay: ``g <- g + weight_decay*p`` before the rule (your gradient
        array is never written); >= 0.
    num_threads : int or None, default None
        Threads per update; None uses OpenMP's current maximum at each call, so
        ``OMP_NUM_THREADS`` and ``threadpoolctl.threadpool_limits`` apply. Calls below
        the serial thresholds run on one thread. Results are the same, bit for bit,
        for any count.
    backend : {"cython", "numpy"}, default "cython"
        "numpy" runs the pure-NumPy reference: the same results, only slower.
    skip_nonfinite : bool, default False
        Check every gradient of an ``update`` call first (one pass) and, if any element
        is NaN or Inf, skip the whole step: nothing written, no step counted;
        ``update`` returns False and ``skipped_steps`` counts it.

    Notes
    -----
    Every class shares :class:`Optimizer`'s interface: hyper-parameters are attributes,
    validated when set (``opt.lr = 1e-4``); :meth:`update` steps every parameter in
    place; state is created on a parameter's first update; ``state_dict()`` /
    ``load_state_dict()`` save and restore it.

    Examples
    --------
    >>> import numpy as np, fastoptim as fo
    >>> w = np.ones(3)
    >>> fo.SGD(lr=0.1).update([w], [np.full(3, 2.0)])
    True
    >>> w
    array([0.8, 0.8, 0.8])
    """

    _rule = "sgd"
    _hyper_names = ("lr", "weight_decay")
    lr: float
    weight_decay: float

    def __init__(self, lr: float = 1e-3, *, weight_decay: float = 0.0,
                 num_threads: int | None = None, backend: Backend = "cython",
                 skip_nonfinite: bool = False) -> None:
        super().__init__(lr=lr, weight_decay=weight_decay, num_threads=num_threads,
                         backend=backend,
                         skip_nonfinite=skip_nonfinite)


class Momentum(Optimizer):
    """Momentum: ``v <- momentum*v + lr*g ; p <- p - v`` (state ``velocity``).

    ``v`` holds lr-scaled steps, so a later change of ``lr`` leaves the stored velocity
    as it was (old steps keep their learning rate; torch.optim's ``SGD(momentum=...)``
    agrees while ``lr`` is constant).

    Parameters
    ----------
    lr : float, default 1e-3
        Learning rate, >= 0.
    momentum : float, default 0.9
        0 <= momentum < 1.
    weight_decay : float, default 0.0
        Coupled L2 decay: ``g <- g + weight_decay*p`` before the rule (your gradient
        array is never written); >= 0.
    num_threads : int or None, default None
        Threads per update; None uses OpenMP's current maximum at each call, so
        ``OMP_NUM_THREADS`` and ``threadpoolctl.threadpool_limits`` apply. Calls below
        the serial thresholds run on one thread. Results are the same, bit for bit,
        for any count.
    backend : {"cython", "numpy"}, default "cython"
        "numpy" runs the pure-NumPy reference: the same results, only slower.
    skip_nonfinite : bool, default False
        Skip a whole step whose gradients hold a NaN or Inf (see :class:`SGD`).
    """

    _rule = "momentum"
    _hyper_names = ("lr", "momentum", "weight_decay")
    lr: float
    momentum: float
    weight_decay: float

    def __init__(self, lr: float = 1e-3, momentum: float = 0.9, *,
                 weight_decay: float = 0.0, num_threads: int | None = None,
                 backend: Backend = "cython",
                 skip_nonfinite: bool = False) -> None:
        super().__init__(lr=lr, momentum=momentum, weight_decay=weight_decay,
                         num_threads=num_threads, backend=backend,
                         skip_nonfinite=skip_nonfinite)


class Nesterov(Momentum):
    """Nesterov accelerated gradient in look-ahead form (Bengio et al. 2013, as in
    torch.optim and Keras): ``v <- momentum*v + lr*g ; p <- p - (momentum*v + lr*g)``
    (state ``velocity``).

    The stored parameter is the look-ahead point ``theta - momentum*v`` of the classic
    formulation, so the gradient the caller computes at ``p`` is the look-ahead gradient.

    Parameters
    ----------
    lr : float, default 1e-3
        Learning rate, >= 0.
    momentum : float, default 0.9
        0 <= momentum < 1.
    weight_decay : float, default 0.0
        Coupled L2 decay: ``g <- g + weight_decay*p`` before the rule (your gradient
        array is never written); >= 0.
    num_threads : int or None, default None
        Threads per update; None uses OpenMP's current maximum at each call, so
        ``OMP_NUM_THREADS`` and ``threadpoolctl.threadpool_limits`` apply. Calls below
        the serial thresholds run on one thread. Results are the same, bit for bit,
        for any count.
    backend : {"cython", "numpy"}, default "cython"
        "numpy" runs the pure-NumPy reference: the same results, only slower.
    skip_nonfinite : bool, default False
        Skip a whole step whose gradients hold a NaN or Inf (see :class:`SGD`).
    """

    _rule = "nesterov"


class AdaGrad(Optimizer):
    """AdaGrad: ``G <- G + g*g ; p <- p - lr*g / (sqrt(G) + eps)`` (state ``sum_sq``).

    Parameters
    ----------
    lr : float, default 1e-2
        Learning rate, >= 0.
    eps : float, default 1e-10
        Added to ``sqrt(G)`` (outside the root, as torch.optim), >= 0.
    weight_decay : float, default 0.0
        Coupled L2 decay: ``g <- g + weight_decay*p`` before the rule (your gradient
        array is never written); >= 0.
    num_threads : int or None, default None
        Threads per update; None uses OpenMP's current maximum at each call, so
        ``OMP_NUM_THREADS`` and ``threadpoolctl.threadpool_limits`` apply. Calls below
        the serial thresholds run on one thread. Results are the same, bit for bit,
        for any count.
    backend : {"cython", "numpy"}, default "cython"
        "numpy" runs the pure-NumPy reference: the same results, only slower.
    skip_nonfinite : bool, default False
        Skip a whole step whose gradients hold a NaN or Inf (see :class:`SGD`).
    """

    _rule = "adagrad"
    _hyper_names = ("lr", "eps", "weight_decay")
    lr: float
    eps: float
    weight_decay: float

    def __init__(self, lr: float = 1e-2, *, eps: float = 1e-10, weight_decay: float = 0.0,
                 num_threads: int | None = None, backend: Backend = "cython",
                 skip_nonfinite: bool = False) -> None:
        super().__init__(lr=lr, eps=eps, weight_decay=weight_decay,
                         num_threads=num_threads, backend=backend,
                         skip_nonfinite=skip_nonfinite)


class RMSprop(Optimizer):
    """RMSprop: ``E <- alpha*E + (1-alpha)*g*g ; p <- p - lr*g / (sqrt(E) + eps)``
    (state ``square_avg``).

    Parameters
    ----------
    lr : float, default 1e-2
        Learning rate, >= 0.
    alpha : float, default 0.99
        Smoothing constant of the average, 0 <= alpha <= 1.
    eps : float, default 1e-8
        Added to ``sqrt(E)`` (outside the root), >= 0.
    weight_decay : float, default 0.0
        Coupled L2 decay: ``g <- g + weight_decay*p`` before the rule (your gradient
        array is never written); >= 0.
    num_threads : int or None, default None
        Threads per update; None uses OpenMP's current maximum at each call, so
        ``OMP_NUM_THREADS`` and ``threadpoolctl.threadpool_limits`` apply. Calls below
        the serial thresholds run on one thread. Results are the same, bit for bit,
        for any count.
    backend : {"cython", "numpy"}, default "cython"
        "numpy" runs the pure-NumPy reference: the same results, only slower.
    skip_nonfinite : bool, default False
        Skip a whole step whose gradients hold a NaN or Inf (see :class:`SGD`).
    """

    _rule = "rmsprop"
    _hyper_names = ("lr", "alpha", "eps", "weight_decay")
    lr: float
    alpha: float
    eps: float
    weight_decay: float

    def __init__(self, lr: float = 1e-2, alpha: float = 0.99, *, eps: float = 1e-8,
                 weight_decay: float = 0.0, num_threads: int | None = None,
                 backend: Backend = "cython",
                 skip_nonfinite: bool = False) -> None:
        super().__init__(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                         num_threads=num_threads, backend=backend,
                         skip_nonfinite=skip_nonfinite)


class AdaDelta(Optimizer):
    """AdaDelta: ``G <- rho*G + (1-rho)*g*g ; d <- sqrt(S+eps)/sqrt(G+eps)*g ;
    S <- rho*S + (1-rho)*d*d ; p <- p - lr*d`` (state ``square_avg``, ``acc_delta``).

    Parameters
    ----------
    lr : float, default 1.0
        Multiplies the step ``d`` (as torch.optim), >= 0.
    rho : float, default 0.9
        Decay of both running averages, 0 <= rho <= 1.
    eps : float, default 1e-6
        Inside both roots (Zeiler's paper), >= 0.
    weight_decay : float, default 0.0
        Coupled L2 decay: ``g <- g + weight_decay*p`` before the rule (your gradient
        array is never written); >= 0.
    num_threads : int or None, default None
        Threads per update; None uses OpenMP's current maximum at each call, so
        ``OMP_NUM_THREADS`` and ``threadpoolctl.threadpool_limits`` apply. Calls below
        the serial thresholds run on one thread. Results are the same, bit for bit,
        for any count.
    backend : {"cython", "numpy"}, default "cython"
        "numpy" runs the pure-NumPy reference: the same results, only slower.
    skip_nonfinite : bool, default False
        Skip a whole step whose gradients hold a NaN or Inf (see :class:`SGD`).
    """

    _rule = "adadelta"
    _hyper_names = ("lr", "rho", "eps", "weight_decay")
    lr: float
    rho: float
    eps: float
    weight_decay: float

    def __init__(self, lr: float = 1.0, rho: float = 0.9, *, eps: float = 1e-6,
                 weight_decay: float = 0.0, num_threads: int | None = None,
                 backend: Backend = "cython",
                 skip_nonfinite: bool = False) -> None:
        super().__init__(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                         num_threads=num_threads, backend=backend,
                         skip_nonfinite=skip_nonfinite)


class Adam(Optimizer):
    """Adam with bias correction and coupled L2 decay (state ``exp_avg``,
    ``exp_avg_sq``): ``m <- b1*m + (1-b1)*g ; v <- b2*v + (1-b2)*g*g ;
    p <- p - lr*m_hat / (sqrt(v_hat) + eps)``, ``m_hat = m/(1-b1**t)``,
    ``v_hat = v/(1-b2**t)``, ``t`` counted per parameter.

    Computed in the paper's efficient form (equal in exact arithmetic; agrees with
    torch.optim.Adam to rounding, not bit for bit).

    Parameters
    ----------
    lr : float, default 1e-3
        Learning rate, >= 0.
    betas : (float, float), default (0.9, 0.999)
        Decay rates ``(b1, b2)`` of the two moments, each 0 <= beta < 1.
    eps : float, default 1e-8
        Added to ``sqrt(v_hat)``, >= 0.
    weight_decay : float, default 0.0
        Coupled L2 decay: ``g <- g + weight_decay*p`` before the rule (your gradient
        array is never written); >= 0.
    num_threads : int or None, default None
        Threads per update; None uses OpenMP's current maximum at each call, so
        ``OMP_NUM_THREADS`` and ``threadpoolctl.threadpool_limits`` apply. Calls below
        the serial thresholds run on one thread. Results are the same, bit for bit,
        for any count.
    backend : {"cython", "numpy"}, default "cython"
        "numpy" runs the pure-NumPy reference: the same results, only slower.
    skip_nonfinite : bool, default False
        Skip a whole step whose gradients hold a NaN or Inf (see :class:`SGD`).
    """

    _rule = "adam"
    _hyper_names = ("lr", "betas", "eps", "weight_decay")
    lr: float
    betas: tuple[float, float]
    eps: float
    weight_decay: float

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), *,
                 eps: float = 1e-8, weight_decay: float = 0.0,
                 num_threads: int | None = None, backend: Backend = "cython",
                 skip_nonfinite: bool = False) -> None:
        super().__init__(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         num_threads=num_threads, backend=backend,
                         skip_nonfinite=skip_nonfinite)


class AdamW(Adam):
    """AdamW: decoupled weight decay ``p <- p*(1 - lr*weight_decay)``, then the Adam rule
    with no decay term in ``g`` (Loshchilov & Hutter).

    Parameters
    ----------
    lr : float, default 1e-3
        Learning rate, >= 0.
    betas : (float, float), default (0.9, 0.999)
        Decay rates ``(b1, b2)`` of the two moments, each 0 <= beta < 1.
    eps : float, default 1e-8
        Added to ``sqrt(v_hat)``, >= 0.
    weight_decay : float, default 1e-2
        Decoupled decay: the parameter shrinks by the factor ``1 - lr*weight_decay``
        before the Adam step; >= 0.
    num_threads : int or None, default None
        Threads per update; None uses OpenMP's current maximum at each call, so
        ``OMP_NUM_THREADS`` and ``threadpoolctl.threadpool_limits`` apply. Calls below
        the serial thresholds run on one thread. Results are the same, bit for bit,
        for any count.
    backend : {"cython", "numpy"}, default "cython"
        "numpy" runs the pure-NumPy reference: the same results, only slower.
    skip_nonfinite : bool, default False
        Skip a whole step whose gradients hold a NaN or Inf (see :class:`SGD`).
    """

    _rule = "adamw"

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), *,
                 eps: float = 1e-8, weight_decay: float = 1e-2,
                 num_threads: int | None = None, backend: Backend = "cython",
                 skip_nonfinite: bool = False) -> None:
        super().__init__(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         num_threads=num_threads, backend=backend,
                         skip_nonfinite=skip_nonfinite)
