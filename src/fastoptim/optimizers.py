"""The optimizer classes: hold hyper-parameters and per-parameter state, count steps, and
run one rule over every parameter of an ``update(params, grads)`` call.

They are a thin shell over ``fastoptim._core`` (validation, step scalars) and the kernels;
the math lives in the kernels and in ``fastoptim.reference``.
"""

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from . import _core, _kernels

__all__ = ["Optimizer", "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "AdaDelta",
           "Adam", "AdamW"]


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


class Optimizer:
    """Base class. Subclasses set ``_rule`` (a kernel name) and ``_hyper_names``.

    Hyper-parameters are plain attributes (``opt.lr = 1e-4`` between updates is fine) and
    are validated whenever they are set.
    """

    _rule = None
    _hyper_names = ()

    def __init__(self, *, num_threads=None, backend="cython", **hyper):
        self.num_threads = num_threads
        self.backend = backend
        for name in self._hyper_names:
            setattr(self, name, hyper[name])
        self.state = {}
        if num_threads not in (None, 1) and not _kernels.openmp_enabled():
            warnings.warn("fastoptim was built without OpenMP: num_threads="
                          f"{num_threads} is ignored and every update runs on one core. "
                          "Rebuild with an OpenMP-capable compiler to use all cores.",
                          RuntimeWarning, stacklevel=3)

    def __setattr__(self, name, value):
        if name in self._hyper_names:
            value = _core.check_hyper(**{name: value})[name]
        elif name == "num_threads":
            _core.check_num_threads(value)
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

    # -- the step ------------------------------------------------------------------------

    def update(self, params, grads):
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
        """
        names, scalars = _core.RULES[self._rule]
        kernel = getattr(_core.BACKENDS[self.backend], self._rule)
        nt = _core.check_num_threads(self.num_threads)

        # 1. Check everything; build (but do not yet store) new state.
        work = []
        for key, param, grad in _pairs(params, grads):
            p, order = _core.check_param(f"parameter {key!r}", param)
            g = _core.check_grad(f"gradient {key!r}", grad, p, order)
            st = self.state.get(key)
            if st is None:
                st = {"step": 0}
                for n in names:
                    st[n] = np.zeros_like(p)
            else:
                st = self._state_for(key, st, p, order, names)
            work.append((key, p, order, g, st))

        # 2. Nothing can fail from here on: store state, run the kernels.
        hyper = self.hyperparams
        cache = {}
        for key, p, order, g, st in work:
            self.state[key] = st
            step = st["step"] + 1
            kw = cache.get(step)
            if kw is None:
                kw = cache[step] = scalars(step, **hyper)
            kernel(_core.flat_view(p, order), g,
                   *[_core.flat_view(st[n], order) for n in names], **kw, num_threads=nt)
            st["step"] = step

    @staticmethod
    def _state_for(key, st, p, order, names):
        """The stored state of ``key`` if it fits ``p``; a re-laid-out copy if only its
        memory order differs (state is ours to copy); else a clear error."""
        fixed = None
        for n in names:
            buf = st[n]
            if buf.shape != p.shape or buf.dtype != p.dtype:
                raise ValueError(
                    f"optimizer state {n!r} of parameter {key!r} has shape {buf.shape} and "
                    f"dtype {buf.dtype}, but the parameter now has shape {p.shape} and dtype "
                    f"{p.dtype}; use a new optimizer (or load a matching state_dict) for "
                    f"changed parameters")
            ok = buf.flags.c_contiguous if order == "C" else buf.flags.f_contiguous
            if not ok:
                if fixed is None:
                    fixed = dict(st)
                fixed[n] = np.array(buf, order=order)
        return st if fixed is None else fixed

    # -- checkpoints ---------------------------------------------------------------------

    def state_dict(self):
        """The optimizer's hyper-parameters and state as plain Python and NumPy values
        (copies: later updates do not change it)."""
        state = {}
        for key, st in self.state.items():
            state[key] = {n: (v.copy(order="K") if isinstance(v, np.ndarray) else v)
                          for n, v in st.items()}
        return {"optimizer": type(self).__name__, "hyperparams": self.hyperparams,
                "state": state}

    def load_state_dict(self, state_dict):
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
        names, _ = _core.RULES[self._rule]
        state = {}
        for key, st in dict(state_dict["state"]).items():
            if not isinstance(st, Mapping) or set(st) != {"step", *names}:
                raise ValueError(f"state of parameter {key!r} must have the keys "
                                 f"{['step', *names]}")
            step = st["step"]
            if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
                raise ValueError(f"state of parameter {key!r}: step must be an int >= 0, "
                                 f"got {step!r}")
            new = {"step": int(step)}
            for n in names:
                buf = st[n]
                if not isinstance(buf, np.ndarray) or buf.dtype not in _core.FLOAT_DTYPES:
                    raise TypeError(f"state {n!r} of parameter {key!r} must be a float32 "
                                    f"or float64 array")
                ref = st[names[0]]
                if buf.shape != ref.shape or buf.dtype != ref.dtype:
                    raise ValueError(f"state buffers of parameter {key!r} differ in shape "
                                     f"or dtype")
                new[n] = np.array(buf, copy=True, order="K")
            state[key] = new
        for n, v in hyper.items():
            object.__setattr__(self, n, v)
        self.state = state


class SGD(Optimizer):
    """Stochastic gradient descent: ``p <- p - lr*g``.

    Parameters
    ----------
    lr : float, default 1e-3
        Learning rate, >= 0.
    weight_decay : float, default 0
        Coupled L2 decay: ``g <- g + weight_decay*p`` before the rule.
    num_threads : int or None, default None
        Threads per update; None uses OpenMP's current maximum (``OMP_NUM_THREADS``,
        threadpoolctl). Small arrays always run on one thread.
    backend : {"cython", "numpy"}, default "cython"
        "numpy" runs the bit-identical pure-NumPy reference.
    """

    _rule = "sgd"
    _hyper_names = ("lr", "weight_decay")

    def __init__(self, lr=1e-3, *, weight_decay=0.0, num_threads=None, backend="cython"):
        super().__init__(lr=lr, weight_decay=weight_decay, num_threads=num_threads,
                         backend=backend)


class Momentum(Optimizer):
    """Momentum: ``v <- momentum*v + lr*g ; p <- p - v`` (state ``velocity``).

    ``v`` holds lr-scaled steps, so a later change of ``lr`` leaves the stored velocity
    as it was (old steps keep their learning rate). Other parameters as in :class:`SGD`;
    ``momentum`` must satisfy 0 <= momentum < 1 (default 0.9).
    """

    _rule = "momentum"
    _hyper_names = ("lr", "momentum", "weight_decay")

    def __init__(self, lr=1e-3, momentum=0.9, *, weight_decay=0.0, num_threads=None,
                 backend="cython"):
        super().__init__(lr=lr, momentum=momentum, weight_decay=weight_decay,
                         num_threads=num_threads, backend=backend)


class Nesterov(Momentum):
    """Nesterov accelerated gradient in look-ahead form (Bengio et al. 2013, as in
    torch.optim and Keras): ``v <- momentum*v + lr*g ; p <- p - (momentum*v + lr*g)``.

    The stored parameter is the look-ahead point ``theta - momentum*v`` of the classic
    formulation, so the gradient the caller computes at ``p`` is the look-ahead gradient.
    """

    _rule = "nesterov"


class AdaGrad(Optimizer):
    """AdaGrad: ``G <- G + g*g ; p <- p - lr*g / (sqrt(G) + eps)`` (state ``sum_sq``).

    Defaults lr=1e-2, eps=1e-10 (eps outside the root, as torch.optim).
    """

    _rule = "adagrad"
    _hyper_names = ("lr", "eps", "weight_decay")

    def __init__(self, lr=1e-2, *, eps=1e-10, weight_decay=0.0, num_threads=None,
                 backend="cython"):
        super().__init__(lr=lr, eps=eps, weight_decay=weight_decay,
                         num_threads=num_threads, backend=backend)


class RMSprop(Optimizer):
    """RMSprop: ``E <- alpha*E + (1-alpha)*g*g ; p <- p - lr*g / (sqrt(E) + eps)``
    (state ``square_avg``). Defaults lr=1e-2, alpha=0.99, eps=1e-8."""

    _rule = "rmsprop"
    _hyper_names = ("lr", "alpha", "eps", "weight_decay")

    def __init__(self, lr=1e-2, alpha=0.99, *, eps=1e-8, weight_decay=0.0,
                 num_threads=None, backend="cython"):
        super().__init__(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                         num_threads=num_threads, backend=backend)


class AdaDelta(Optimizer):
    """AdaDelta: ``G <- rho*G + (1-rho)*g*g ; d <- sqrt(S+eps)/sqrt(G+eps)*g ;
    S <- rho*S + (1-rho)*d*d ; p <- p - lr*d`` (state ``square_avg``, ``acc_delta``).
    Defaults lr=1.0, rho=0.9, eps=1e-6 (eps inside the roots, as Zeiler's paper)."""

    _rule = "adadelta"
    _hyper_names = ("lr", "rho", "eps", "weight_decay")

    def __init__(self, lr=1.0, rho=0.9, *, eps=1e-6, weight_decay=0.0, num_threads=None,
                 backend="cython"):
        super().__init__(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                         num_threads=num_threads, backend=backend)


class Adam(Optimizer):
    """Adam with bias correction and coupled L2 decay (state ``exp_avg``,
    ``exp_avg_sq``): ``m <- b1*m + (1-b1)*g ; v <- b2*v + (1-b2)*g*g ;
    p <- p - lr*m_hat / (sqrt(v_hat) + eps)``, ``m_hat = m/(1-b1**t)``,
    ``v_hat = v/(1-b2**t)``, ``t`` counted per parameter. Defaults lr=1e-3,
    betas=(0.9, 0.999), eps=1e-8."""

    _rule = "adam"
    _hyper_names = ("lr", "betas", "eps", "weight_decay")

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), *, eps=1e-8, weight_decay=0.0,
                 num_threads=None, backend="cython"):
        super().__init__(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         num_threads=num_threads, backend=backend)


class AdamW(Adam):
    """AdamW: decoupled weight decay ``p <- p*(1 - lr*weight_decay)``, then the Adam rule
    with no decay term in ``g`` (Loshchilov & Hutter). Default weight_decay=1e-2."""

    _rule = "adamw"

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), *, eps=1e-8, weight_decay=1e-2,
                 num_threads=None, backend="cython"):
        super().__init__(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         num_threads=num_threads, backend=backend)
