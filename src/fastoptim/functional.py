"""The functional layer: one function per rule over one parameter, its gradient and its
state arrays, with keyword-only hyper-parameters.

Each function validates every array and hyper-parameter, computes the step scalars once
in float64, then runs the compiled kernel (``backend="cython"``) or the NumPy reference
(``backend="numpy"``), which are bit-identical. The parameter and the state arrays are
updated in place; the gradient is only read.

Array contract
--------------
param
    float32 or float64, writeable, C- or F-contiguous, any shape (0-d and empty too).
grad
    same shape and dtype as ``param``; any memory layout.
state arrays
    same shape, dtype and memory layout as ``param`` (``np.zeros_like(param)``),
    writeable, sharing no memory with ``param`` or with each other.

Example
-------
>>> import numpy as np
>>> from fastoptim import functional as F
>>> p = np.ones(3, dtype=np.float32); g = np.full(3, 0.5, dtype=np.float32)
>>> m, v = np.zeros_like(p), np.zeros_like(p)
>>> F.adam(p, g, m, v, step=1, lr=0.1)
>>> p.round(4)
array([0.9, 0.9, 0.9], dtype=float32)
"""

from __future__ import annotations

import numpy as np

from . import _core, _threading
from ._typing import ArrayIn, Backend

__all__ = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam", "adamw"]


def _run(rule, param, grad, state, step, num_threads, backend, **hyper):
    names, scalars, scalar_names = _core.RULES[rule]
    kernel = getattr(_core.check_backend(backend), rule)
    nt = _core.check_num_threads(num_threads)
    if nt == 0 and backend == "cython" and _threading.adaptive:
        nt = -1  # the kernel's pacer for this parameter decides: serial or parallel
    values = scalars(_core.check_step(step), **_core.check_hyper(**hyper))
    p, order = _core.check_param("param", param)
    bufs = [_core.check_state_buffer(n, b, p, order) for n, b in zip(names, state)]
    for i, a in enumerate(bufs):
        if a.size and np.may_share_memory(a, p):
            raise ValueError(f"{names[i]} shares memory with param; give each state "
                             "buffer its own array (np.zeros_like(param))")
        for j in range(i + 1, len(bufs)):
            if a.size and np.may_share_memory(a, bufs[j]):
                raise ValueError(f"{names[i]} and {names[j]} share memory; give each "
                                 "state buffer its own array (np.zeros_like(param))")
    g = _core.check_grad("grad", grad, p, order)
    if g.size and any(np.may_share_memory(g, b) for b in bufs):
        g = g.copy(order=order)  # the gradient as given, even if it lives in a state buffer
    kernel(_core.flat_view(p, order), _core.flat_view(g, order), *bufs,
           **dict(zip(scalar_names, values)), num_threads=nt)


def sgd(param: ArrayIn, grad: ArrayIn, *, lr: float = 1e-3, weight_decay: float = 0.0,
        num_threads: int | None = None, backend: Backend = "cython") -> None:
    """SGD step: ``p <- p - lr*g``.

    Parameters
    ----------
    param : ndarray
        float32 or float64, writeable, C- or F-contiguous; updated in place. An object
        NumPy can view without a copy through DLPack (a CPU torch tensor) works too.
    grad : ndarray
        Same shape and dtype as ``param``, any memory layout; only read.
    lr : float, default 1e-3
        Learning rate, >= 0.
    weight_decay : float, default 0.0
        Coupled L2 decay: ``g <- g + weight_decay*p`` first (in a register; ``grad``
        is never written), skipped when 0.
    num_threads : int or None, default None
        Threads for this step; None uses OpenMP's current maximum (``OMP_NUM_THREADS``,
        ``threadpoolctl.threadpool_limits``). Small arrays run on one thread; the result
        is the same, bit for bit, for any count.
    backend : {"cython", "numpy"}, default "cython"
        "numpy" runs the pure-NumPy reference (``fastoptim.reference``): same result.

    Returns
    -------
    None
        ``param`` and the state arrays are updated in place.

    Examples
    --------
    >>> import numpy as np
    >>> from fastoptim import functional as F
    >>> p = np.ones(2); F.sgd(p, np.array([1.0, -1.0]), lr=0.5); p
    array([0.5, 1.5])
    """
    _run("sgd", param, grad, (), 1, num_threads, backend, lr=lr, weight_decay=weight_decay)


def momentum(param: ArrayIn, grad: ArrayIn, velocity: ArrayIn, *, lr: float = 1e-3,
             momentum: float = 0.9, weight_decay: float = 0.0,
             num_threads: int | None = None, backend: Backend = "cython") -> None:
    """Momentum step: ``v <- momentum*v + lr*g ; p <- p - v``.

    Parameters
    ----------
    param : ndarray
        float32 or float64, writeable, C- or F-contiguous; updated in place. An object
        NumPy can view without a copy through DLPack (a CPU torch tensor) works too.
    grad : ndarray
        Same shape and dtype as ``param``, any memory layout; only read.
    velocity : ndarray
        The velocity ``v``: same shape, dtype and memory layout as ``param``
        (``np.zeros_like(param)`` before the first step); updated in place.
    lr : float, default 1e-3
        Learning rate, >= 0.
    momentum : float, default 0.9
        0 <= momentum < 1.
    weight_decay : float, default 0.0
        Coupled L2 decay: ``g <- g + weight_decay*p`` first (in a register; ``grad``
        is never written), skipped when 0.
    num_threads : int or None, default None
        Threads for this step; None uses OpenMP's current maximum (``OMP_NUM_THREADS``,
        ``threadpoolctl.threadpool_limits``). Small arrays run on one thread; the result
        is the same, bit for bit, for any count.
    backend : {"cython", "numpy"}, default "cython"
        "numpy" runs the pure-NumPy reference (``fastoptim.reference``): same result.

    Returns
    -------
    None
        ``param`` and the state arrays are updated in place.
    """
    _run("momentum", param, grad, (velocity,), 1, num_threads, backend, lr=lr,
         momentum=momentum, weight_decay=weight_decay)


def nesterov(param: ArrayIn, grad: ArrayIn, velocity: ArrayIn, *, lr: float = 1e-3,
             momentum: float = 0.9, weight_decay: float = 0.0,
             num_threads: int | None = None, backend: Backend = "cython") -> None:
    """Nesterov step in look-ahead form: ``v <- momentum*v + lr*g ;
    p <- p - (momentum*v + lr*g)`` with the new ``v``.

    Parameters
    ----------
    param : ndarray
        float32 or float64, writeable, C- or F-contiguous; updated in place. An object
        NumPy can view without a copy through DLPack (a CPU torch tensor) works too.
    grad : ndarray
        Same shape and dtype as ``param``, any memory layout; only read.
    velocity : ndarray
        The velocity ``v``: same shape, dtype and memory layout as ``param``
        (``np.zeros_like(param)`` before the first step); updated in place.
    lr : float, default 1e-3
        Learning rate, >= 0.
    momentum : float, default 0.9
        0 <= momentum < 1.
    weight_decay : float, default 0.0
        Coupled L2 decay: ``g <- g + weight_decay*p`` first (in a register; ``grad``
        is never written), skipped when 0.
    num_threads : int or None, default None
        Threads for this step; None uses OpenMP's current maximum (``OMP_NUM_THREADS``,
        ``threadpoolctl.threadpool_limits``). Small arrays run on one thread; the result
        is the same, bit for bit, for any count.
    backend : {"cython", "numpy"}, default "cython"
        "numpy" runs the pure-NumPy reference (``fastoptim.reference``): same result.

    Returns
    -------
    None
        ``param`` and the state arrays are updated in place.
    """
    _run("nesterov", param, grad, (velocity,), 1, num_threads, backend, lr=lr,
         momentum=momentum, weight_decay=weight_decay)


def adagrad(param: ArrayIn, grad: ArrayIn, sum_sq: ArrayIn, *, lr: float = 1e-2,
            eps: float = 1e-10, weight_decay: float = 0.0, num_threads: int | None = None,
            backend: Backend = "cython") -> None:
    """AdaGrad step: ``G <- G + g*g ; p <- p - lr*g / (sqrt(G) + eps)``.

    Parameters
    ----------
    param : ndarray
        float32 or float64, writeable, C- or F-contiguous; updated in place. An object
        NumPy can view without a copy through DLPack (a CPU torch tensor) works too.
    grad : ndarray
        Same shape and dtype as ``param``, any memory layout; only read.
    sum_sq : ndarray
        The sum of squared gradients ``G``: same shape, dtype and memory layout as ``param``
        (``np.zeros_like(param)`` before the first step); updated in place.
    lr : float, default 1e-2
        Learning rate, >= 0.
    eps : float, default 1e-10
        Added to ``sqrt(G)`` (outside the root, as torch.optim), >= 0.
    weight_decay : float, default 0.0
        Coupled L2 decay: ``g <- g + weight_decay*p`` first (in a register; ``grad``
        is never written), skipped when 0.
    num_threads : int or None, default None
        Threads for this step; None uses OpenMP's current maximum (``OMP_NUM_THREADS``,
        ``threadpoolctl.threadpool_limits``). Small arrays run on one thread; the result
        is the same, bit for bit, for any count.
    backend : {"cython", "numpy"}, default "cython"
        "numpy" runs the pure-NumPy reference (``fastoptim.reference``): same result.

    Returns
    -------
    None
        ``param`` and the state arrays are updated in place.
    """
    _run("adagrad", param, grad, (sum_sq,), 1, num_threads, backend, lr=lr, eps=eps,
         weight_decay=weight_decay)


def rmsprop(param: ArrayIn, grad: ArrayIn, square_avg: ArrayIn, *, lr: float = 1e-2,
            alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
            num_threads: int | None = None, backend: Backend = "cython") -> None:
    """RMSprop step: ``E <- alpha*E + (1-alpha)*g*g ; p <- p - lr*g / (sqrt(E) + eps)``.

    Parameters
    ----------
    param : ndarray
        float32 or float64, writeable, C- or F-contiguous; updated in place. An object
        NumPy can view without a copy through DLPack (a CPU torch tensor) works too.
    grad : ndarray
        Same shape and dtype as ``param``, any memory layout; only read.
    square_avg : ndarray
        The running average of squared gradients ``E``: same shape, dtype and
        memory layout as ``param`` (``np.zeros_like(param)`` before the first step);
        updated in place.
    lr : float, default 1e-2
        Learning rate, >= 0.
    alpha : float, default 0.99
        Smoothing constant, 0 <= alpha <= 1.
    eps : float, default 1e-8
        Added to ``sqrt(E)`` (outside the root), >= 0.
    weight_decay : float, default 0.0
        Coupled L2 decay: ``g <- g + weight_decay*p`` first (in a register; ``grad``
        is never written), skipped when 0.
    num_threads : int or None, default None
        Threads for this step; None uses OpenMP's current maximum (``OMP_NUM_THREADS``,
        ``threadpoolctl.threadpool_limits``). Small arrays run on one thread; the result
        is the same, bit for bit, for any count.
    backend : {"cython", "numpy"}, default "cython"
        "numpy" runs the pure-NumPy reference (``fastoptim.reference``): same result.

    Returns
    -------
    None
        ``param`` and the state arrays are updated in place.
    """
    _run("rmsprop", param, grad, (square_avg,), 1, num_threads, backend, lr=lr,
         alpha=alpha, eps=eps, weight_decay=weight_decay)


def adadelta(param: ArrayIn, grad: ArrayIn, square_avg: ArrayIn, acc_delta: ArrayIn, *,
             lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
             weight_decay: float = 0.0, num_threads: int | None = None,
             backend: Backend = "cython") -> None:
    """AdaDelta step: ``G <- rho*G + (1-rho)*g*g ; d <- sqrt(S+eps)/sqrt(G+eps)*g ;
    S <- rho*S + (1-rho)*d*d ; p <- p - lr*d``.

    Parameters
    ----------
    param : ndarray
        float32 or float64, writeable, C- or F-contiguous; updated in place. An object
        NumPy can view without a copy through DLPack (a CPU torch tensor) works too.
    grad : ndarray
        Same shape and dtype as ``param``, any memory layout; only read.
    square_avg : ndarray
        The running average of squared gradients ``G``: same shape, dtype and
        memory layout as ``param`` (``np.zeros_like(param)`` before the first step);
        updated in place.
    acc_delta : ndarray
        The running average of squared steps ``S``: same shape, dtype and memory
        layout as ``param`` (``np.zeros_like(param)`` before the first step); updated
        in place.
    lr : float, default 1.0
        Multiplies the step ``d`` (as torch.optim), >= 0.
    rho : float, default 0.9
        Decay of both averages, 0 <= rho <= 1.
    eps : float, default 1e-6
        Inside both roots (Zeiler's paper), >= 0.
    weight_decay : float, default 0.0
        Coupled L2 decay: ``g <- g + weight_decay*p`` first (in a register; ``grad``
        is never written), skipped when 0.
    num_threads : int or None, default None
        Threads for this step; None uses OpenMP's current maximum (``OMP_NUM_THREADS``,
        ``threadpoolctl.threadpool_limits``). Small arrays run on one thread; the result
        is the same, bit for bit, for any count.
    backend : {"cython", "numpy"}, default "cython"
        "numpy" runs the pure-NumPy reference (``fastoptim.reference``): same result.

    Returns
    -------
    None
        ``param`` and the state arrays are updated in place.
    """
    _run("adadelta", param, grad, (square_avg, acc_delta), 1, num_threads, backend,
         lr=lr, rho=rho, eps=eps, weight_decay=weight_decay)


def adam(param: ArrayIn, grad: ArrayIn, exp_avg: ArrayIn, exp_avg_sq: ArrayIn, *,
         step: int, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
         eps: float = 1e-8, weight_decay: float = 0.0, num_threads: int | None = None,
         backend: Backend = "cython") -> None:
    """Adam step number ``step`` (1 on a parameter's first update), coupled L2 decay:
    ``m <- b1*m + (1-b1)*g ; v <- b2*v + (1-b2)*g*g ;
    p <- p - lr*m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m/(1-b1**step)`` and
    ``v_hat = v/(1-b2**step)`` (computed in the paper's efficient form).

    Parameters
    ----------
    param : ndarray
        float32 or float64, writeable, C- or F-contiguous; updated in place. An object
        NumPy can view without a copy through DLPack (a CPU torch tensor) works too.
    grad : ndarray
        Same shape and dtype as ``param``, any memory layout; only read.
    exp_avg : ndarray
        The first moment ``m``: same shape, dtype and memory layout as ``param``
        (``np.zeros_like(param)`` before the first step); updated in place.
    exp_avg_sq : ndarray
        The second moment ``v``: same shape, dtype and memory layout as ``param``
        (``np.zeros_like(param)`` before the first step); updated in place.
    step : int
        The number of this step for this parameter, counting from 1 (bias correction).
    lr : float, default 1e-3
        Learning rate, >= 0.
    betas : (float, float), default (0.9, 0.999)
        Decay rates of the two moments, each 0 <= beta < 1.
    eps : float, default 1e-8
        Added to ``sqrt(v_hat)``, >= 0.
    weight_decay : float, default 0.0
        Coupled L2 decay: ``g <- g + weight_decay*p`` first (in a register; ``grad``
        is never written), skipped when 0.
    num_threads : int or None, default None
        Threads for this step; None uses OpenMP's current maximum (``OMP_NUM_THREADS``,
        ``threadpoolctl.threadpool_limits``). Small arrays run on one thread; the result
        is the same, bit for bit, for any count.
    backend : {"cython", "numpy"}, default "cython"
        "numpy" runs the pure-NumPy reference (``fastoptim.reference``): same result.

    Returns
    -------
    None
        ``param`` and the state arrays are updated in place.

    Examples
    --------
    >>> import numpy as np
    >>> from fastoptim import functional as F
    >>> w = np.array([1.0, -2.0]); m, v = np.zeros_like(w), np.zeros_like(w)
    >>> for step in (1, 2):     # a constant gradient: each step moves lr against its sign
    ...     F.adam(w, np.array([0.5, -3.0]), m, v, step=step, lr=0.1)
    >>> w.round(6)
    array([ 0.8, -1.8])
    """
    _run("adam", param, grad, (exp_avg, exp_avg_sq), step, num_threads, backend, lr=lr,
         betas=betas, eps=eps, weight_decay=weight_decay)


def adamw(param: ArrayIn, grad: ArrayIn, exp_avg: ArrayIn, exp_avg_sq: ArrayIn, *,
          step: int, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
          eps: float = 1e-8, weight_decay: float = 1e-2, num_threads: int | None = None,
          backend: Backend = "cython") -> None:
    """AdamW step: ``p <- p*(1 - lr*weight_decay)`` (decoupled decay), then Adam.

    Parameters
    ----------
    param : ndarray
        float32 or float64, writeable, C- or F-contiguous; updated in place. An object
        NumPy can view without a copy through DLPack (a CPU torch tensor) works too.
    grad : ndarray
        Same shape and dtype as ``param``, any memory layout; only read.
    exp_avg : ndarray
        The first moment ``m``: same shape, dtype and memory layout as ``param``
        (``np.zeros_like(param)`` before the first step); updated in place.
    exp_avg_sq : ndarray
        The second moment ``v``: same shape, dtype and memory layout as ``param``
        (``np.zeros_like(param)`` before the first step); updated in place.
    step : int
        The number of this step for this parameter, counting from 1 (bias correction).
    lr : float, default 1e-3
        Learning rate, >= 0.
    betas : (float, float), default (0.9, 0.999)
        Decay rates of the two moments, each 0 <= beta < 1.
    eps : float, default 1e-8
        Added to ``sqrt(v_hat)``, >= 0.
    weight_decay : float, default 1e-2
        Decoupled decay (Loshchilov & Hutter): the parameter shrinks by
        ``lr*weight_decay`` before the Adam step; no decay term in ``g``.
    num_threads : int or None, default None
        Threads for this step; None uses OpenMP's current maximum (``OMP_NUM_THREADS``,
        ``threadpoolctl.threadpool_limits``). Small arrays run on one thread; the result
        is the same, bit for bit, for any count.
    backend : {"cython", "numpy"}, default "cython"
        "numpy" runs the pure-NumPy reference (``fastoptim.reference``): same result.

    Returns
    -------
    None
        ``param`` and the state arrays are updated in place.
    """
    _run("adamw", param, grad, (exp_avg, exp_avg_sq), step, num_threads, backend, lr=lr,
         betas=betas, eps=eps, weight_decay=weight_decay)
