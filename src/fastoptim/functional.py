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

import numpy as np

from . import _core

__all__ = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam", "adamw"]


def _run(rule, param, grad, state, step, num_threads, backend, **hyper):
    names, scalars, scalar_names = _core.RULES[rule]
    kernel = getattr(_core.check_backend(backend), rule)
    nt = _core.check_num_threads(num_threads)
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


def sgd(param, grad, *, lr=1e-3, weight_decay=0.0, num_threads=None, backend="cython"):
    """SGD step: ``p <- p - lr*g``.

    With ``weight_decay`` (coupled L2), every rule first takes ``g <- g + weight_decay*p``
    in a register; the caller's gradient array is never written.
    """
    _run("sgd", param, grad, (), 1, num_threads, backend, lr=lr, weight_decay=weight_decay)


def momentum(param, grad, velocity, *, lr=1e-3, momentum=0.9, weight_decay=0.0,
             num_threads=None, backend="cython"):
    """Momentum step: ``v <- momentum*v + lr*g ; p <- p - v``."""
    _run("momentum", param, grad, (velocity,), 1, num_threads, backend, lr=lr,
         momentum=momentum, weight_decay=weight_decay)


def nesterov(param, grad, velocity, *, lr=1e-3, momentum=0.9, weight_decay=0.0,
             num_threads=None, backend="cython"):
    """Nesterov step in look-ahead form: ``v <- momentum*v + lr*g ;
    p <- p - (momentum*v + lr*g)`` with the new ``v``."""
    _run("nesterov", param, grad, (velocity,), 1, num_threads, backend, lr=lr,
         momentum=momentum, weight_decay=weight_decay)


def adagrad(param, grad, sum_sq, *, lr=1e-2, eps=1e-10, weight_decay=0.0,
            num_threads=None, backend="cython"):
    """AdaGrad step: ``G <- G + g*g ; p <- p - lr*g / (sqrt(G) + eps)``."""
    _run("adagrad", param, grad, (sum_sq,), 1, num_threads, backend, lr=lr, eps=eps,
         weight_decay=weight_decay)


def rmsprop(param, grad, square_avg, *, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0,
            num_threads=None, backend="cython"):
    """RMSprop step: ``E <- alpha*E + (1-alpha)*g*g ; p <- p - lr*g / (sqrt(E) + eps)``."""
    _run("rmsprop", param, grad, (square_avg,), 1, num_threads, backend, lr=lr,
         alpha=alpha, eps=eps, weight_decay=weight_decay)


def adadelta(param, grad, square_avg, acc_delta, *, lr=1.0, rho=0.9, eps=1e-6,
             weight_decay=0.0, num_threads=None, backend="cython"):
    """AdaDelta step: ``G <- rho*G + (1-rho)*g*g ; d <- sqrt(S+eps)/sqrt(G+eps)*g ;
    S <- rho*S + (1-rho)*d*d ; p <- p - lr*d``."""
    _run("adadelta", param, grad, (square_avg, acc_delta), 1, num_threads, backend,
         lr=lr, rho=rho, eps=eps, weight_decay=weight_decay)


def adam(param, grad, exp_avg, exp_avg_sq, *, step, lr=1e-3, betas=(0.9, 0.999),
         eps=1e-8, weight_decay=0.0, num_threads=None, backend="cython"):
    """Adam step number ``step`` (1 on a parameter's first update), coupled L2 decay:
    ``m <- b1*m + (1-b1)*g ; v <- b2*v + (1-b2)*g*g ;
    p <- p - lr*m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m/(1-b1**step)`` and
    ``v_hat = v/(1-b2**step)``."""
    _run("adam", param, grad, (exp_avg, exp_avg_sq), step, num_threads, backend, lr=lr,
         betas=betas, eps=eps, weight_decay=weight_decay)


def adamw(param, grad, exp_avg, exp_avg_sq, *, step, lr=1e-3, betas=(0.9, 0.999),
          eps=1e-8, weight_decay=1e-2, num_threads=None, backend="cython"):
    """AdamW step: ``p <- p*(1 - lr*weight_decay)`` (decoupled decay), then Adam."""
    _run("adamw", param, grad, (exp_avg, exp_avg_sq), step, num_threads, backend, lr=lr,
         betas=betas, eps=eps, weight_decay=weight_decay)
