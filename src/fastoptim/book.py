"""The optimizers of "Deep Learning from Scratch" (``common/optimizer.py``) on the fused
kernels: the book's class names, keyword names and defaults, and its ε of ``1e-7``.

Replace the book's import with this module's and a script of the book runs unchanged::

    # from common.optimizer import *
    from fastoptim.book import *

    optimizer = Adam()                 # lr=0.001, beta1=0.9, beta2=0.999, eps 1e-7
    optimizer.update(params, grads)    # a dict (or list) of arrays, or of Python floats

The classes keep the book's defaults, which differ from torch.optim's (the top-level
classes of :mod:`fastoptim` follow torch: ``fastoptim.SGD()`` has ``lr=1e-3``, the book's
``SGD()`` ``lr=0.01``; ``fastoptim.Adam`` adds ``eps=1e-8`` to the bias-corrected
root, the book adds ``1e-7`` to the uncorrected one). Use this module to reproduce the
book's runs or to speed up code written against it; use the top-level classes for new
code and to match torch.optim.

What each class computes, and how close it is to the book's own class (see the docs'
"Coming from the book" page for the measurements):

* ``SGD``, ``Momentum``: the book's arithmetic, bit for bit. ``Momentum`` stores the
  velocity with the opposite sign (``v <- momentum*v + lr*g ; p <- p - v``; the book:
  ``v <- momentum*v - lr*g ; p <- p + v``), which rounds identically.
* ``AdaGrad``, ``RMSprop``, ``Adam``: the book's rules (ε ``1e-7`` where the book adds
  it; Adam's step size ``lr*sqrt(1-beta2**t)/(1-beta1**t)`` and ε added to ``sqrt(v)``,
  as the book), computed in fastoptim's order of operations, which is torch's (for
  example ``p - lr*(g/(sqrt(h)+eps))`` where the book writes ``p - lr*g/(sqrt(h)+eps)``,
  and ``m <- beta1*m + (1-beta1)*g`` where it writes ``m <- m + (1-beta1)*(g-m)``). Each
  kernel has one order, that of the reference implementation it is checked against, so
  these agree with the book to rounding, not bit for bit.
* ``Nesterov``: Nesterov's accelerated gradient in the look-ahead form of fastoptim's
  :class:`fastoptim.Nesterov` (Bengio et al. 2013), not the book's class. The book's
  ``Nesterov`` updates the velocity before it uses it, which makes its step
  ``p += momentum**3*v - (1+momentum+momentum**2)*lr*g`` instead of the look-ahead form's
  ``p += momentum**2*v - (1+momentum)*lr*g`` (``v`` the velocity before the step, in the
  book's sign): an extra factor ``momentum`` on the velocity and an extra
  ``momentum**2*lr*g``. That is not NAG; this class is.
"""

from __future__ import annotations

import math

from . import rules
from ._typing import Backend
from .optimizers import Optimizer

__all__ = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"]

#: The ε the book's AdaGrad, RMSprop and Adam add (a constant in its code).
EPS = 1e-7


def _adam_scalars(*, lr, betas, eps, weight_decay):
    """The book's Adam in the kernel's terms: its step size
    ``lr*sqrt(1-beta2**t)/(1-beta1**t)`` (computed as the book does, in float64) and its
    ε added to ``sqrt(v)`` as it is (the table's Adam scales ε by ``sqrt(1-beta2**t)`` to
    add it to the bias-corrected root instead)."""
    beta1, beta2 = betas
    head = (beta1, 1.0 - beta1, beta2, 1.0 - beta2, eps, weight_decay)

    def at(step):
        return (*head, lr * math.sqrt(1.0 - beta2 ** step) / (1.0 - beta1 ** step))
    return at


def _book_rule(name, *, formula, step_scalars=None, **defaults):
    """The table's row ``name`` with the book's defaults (and, for Adam, its step
    scalars). The row keeps the table's name, so the engine runs the table's kernel."""
    row = rules.get(name)
    fields = {f: getattr(row, f) for f, _ in rules.Rule._fields}
    fields["hyper"] = tuple(
        rules.Hyper(h.name, defaults.get(h.name, h.default), h.check, h.doc, h.type,
                    h.option, h.structural)
        for h in row.hyper)
    fields["formula"] = formula
    if step_scalars is not None:
        fields["step_scalars"] = step_scalars
    return rules.Rule(**fields)


class BookOptimizer(Optimizer):
    """Base of the book's classes: one rule of the table with the book's keywords, its
    defaults and its ε. Hyper-parameters are attributes under the book's names
    (``lr``, ``momentum``, ``decay_rate``, ``beta1``, ``beta2``) as well as fastoptim's
    (``alpha``, ``betas``); ``state``, ``state_dict()`` and checkpoints use fastoptim's.

    Besides the book's keywords, each class takes fastoptim's keyword-only options
    ``num_threads``, ``backend`` and ``skip_nonfinite`` (see :class:`fastoptim.SGD`).
    """

    #: the book's constructor arguments, in its order
    _book_args: tuple = ()

    @classmethod
    def _kind(cls):
        return f"book.{cls.__name__}"

    def _init(self, *, num_threads, backend, skip_nonfinite, **given):
        """Optimizer.__init__ with the book's arguments ``given`` and, for every other
        hyper-parameter of the rule, the book rule's default (0 weight decay, the book's
        eps, no torch-only option)."""
        Optimizer.__init__(self, **{**self.rule.defaults, **given},
                           num_threads=num_threads, backend=backend,
                           skip_nonfinite=skip_nonfinite)

    def __repr__(self):
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._book_args)
        return f"fastoptim.book.{type(self).__name__}({args})"


def _setup(cls, rule):
    cls.rule = rule
    cls._rule = rule.name
    cls._rule_id = rule.id
    cls._stepped = rule.stepped
    cls._hyper_names = rule.hyper_names
    return cls


def _book_alias(get, put, doc):
    """A property under the book's name for part of a fastoptim hyper-parameter."""
    def fget(self):
        return get(self)

    def fset(self, value):
        put(self, value)
    return property(fget, fset, doc=f"{doc} (the book's name).")


class SGD(BookOptimizer):
    """The book's ``SGD(lr=0.01)``: ``p <- p - lr*g``; bit-identical to the book's."""

    _book_args = ("lr",)

    def __init__(self, lr: float = 0.01, *, num_threads: int | None = None,
                 backend: Backend = "compiled", skip_nonfinite: bool = False) -> None:
        self._init(lr=lr, num_threads=num_threads, backend=backend,
                   skip_nonfinite=skip_nonfinite)


class Momentum(BookOptimizer):
    """The book's ``Momentum(lr=0.01, momentum=0.9)``, bit-identical to the book's: the
    velocity is stored with the opposite sign, ``v <- momentum*v + lr*g ; p <- p - v``."""

    _book_args = ("lr", "momentum")

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, *,
                 num_threads: int | None = None, backend: Backend = "compiled",
                 skip_nonfinite: bool = False) -> None:
        self._init(lr=lr, momentum=momentum, num_threads=num_threads, backend=backend,
                   skip_nonfinite=skip_nonfinite)


class Nesterov(Momentum):
    """``Nesterov(lr=0.01, momentum=0.9)`` with the book's defaults, in the look-ahead
    form of :class:`fastoptim.Nesterov` (Bengio et al. 2013):
    ``v <- momentum*v + lr*g ; p <- p - (momentum*v + lr*g)``, which is
    ``p += momentum**2*v - (1+momentum)*lr*g`` in the book's sign with the velocity
    before the step. The book's own class updates the velocity first and so takes
    ``p += momentum**3*v - (1+momentum+momentum**2)*lr*g``, which is not Nesterov's
    method; this class does not reproduce it."""


class AdaGrad(BookOptimizer):
    """The book's ``AdaGrad(lr=0.01)``: ``h <- h + g*g ; p <- p - lr*g/(sqrt(h) + 1e-7)``
    (in fastoptim's order of operations: equal to the book's to rounding)."""

    _book_args = ("lr",)

    def __init__(self, lr: float = 0.01, *, num_threads: int | None = None,
                 backend: Backend = "compiled", skip_nonfinite: bool = False) -> None:
        self._init(lr=lr, num_threads=num_threads, backend=backend,
                   skip_nonfinite=skip_nonfinite)


class RMSprop(BookOptimizer):
    """The book's ``RMSprop(lr=0.01, decay_rate=0.99)``:
    ``h <- decay_rate*h + (1-decay_rate)*g*g ; p <- p - lr*g/(sqrt(h) + 1e-7)`` (in
    fastoptim's order of operations: equal to the book's to rounding). ``decay_rate``
    is fastoptim's ``alpha``."""

    _book_args = ("lr", "decay_rate")
    decay_rate = _book_alias(lambda self: self.alpha,
                             lambda self, v: setattr(self, "alpha", v),
                             "The decay of the running average; fastoptim's ``alpha``")

    def __init__(self, lr: float = 0.01, decay_rate: float = 0.99, *,
                 num_threads: int | None = None, backend: Backend = "compiled",
                 skip_nonfinite: bool = False) -> None:
        self._init(lr=lr, alpha=decay_rate, num_threads=num_threads, backend=backend,
                   skip_nonfinite=skip_nonfinite)


class Adam(BookOptimizer):
    """The book's ``Adam(lr=0.001, beta1=0.9, beta2=0.999)``:
    ``m <- beta1*m + (1-beta1)*g ; v <- beta2*v + (1-beta2)*g*g ;
    p <- p - lr_t*m/(sqrt(v) + 1e-7)`` with ``lr_t = lr*sqrt(1-beta2**t)/(1-beta1**t)``
    (ε added to the uncorrected root, as the book; in fastoptim's order of operations:
    equal to the book's to rounding). ``beta1`` and ``beta2`` are fastoptim's
    ``betas``; ``t`` is counted per parameter (the book counts calls: the same while
    every call updates every parameter)."""

    _book_args = ("lr", "beta1", "beta2")
    beta1 = _book_alias(lambda self: self.betas[0],
                        lambda self, v: setattr(self, "betas", (v, self.betas[1])),
                        "The first moment's decay; ``betas[0]``")
    beta2 = _book_alias(lambda self: self.betas[1],
                        lambda self, v: setattr(self, "betas", (self.betas[0], v)),
                        "The second moment's decay; ``betas[1]``")

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, *,
                 num_threads: int | None = None, backend: Backend = "compiled",
                 skip_nonfinite: bool = False) -> None:
        self._init(lr=lr, betas=(beta1, beta2), num_threads=num_threads, backend=backend,
                   skip_nonfinite=skip_nonfinite)


_setup(SGD, _book_rule("sgd", formula="p <- p - lr*g", lr=0.01))
_setup(Momentum, _book_rule("momentum", formula="v <- momentum*v + lr*g ; p <- p - v",
                            lr=0.01))
_setup(Nesterov, _book_rule("nesterov", lr=0.01,
                            formula="v <- momentum*v + lr*g ; p <- p - (momentum*v + lr*g)"))
_setup(AdaGrad, _book_rule("adagrad", lr=0.01, eps=EPS,
                           formula="h <- h + g*g ; p <- p - lr*g / (sqrt(h) + eps)"))
_setup(RMSprop, _book_rule("rmsprop", lr=0.01, eps=EPS,
                           formula="h <- decay_rate*h + (1-decay_rate)*g*g ; "
                                   "p <- p - lr*g / (sqrt(h) + eps)"))
_setup(Adam, _book_rule("adam", lr=0.001, eps=EPS, step_scalars=_adam_scalars,
                        formula="m <- b1*m + (1-b1)*g ; v <- b2*v + (1-b2)*g*g ; "
                                "p <- p - lr*sqrt(1-b2**t)/(1-b1**t) * m / (sqrt(v) + eps)"))

#: The classes, by the name their state_dicts and checkpoints store ("book.Adam", ...).
CLASSES = {cls._kind(): cls for cls in (SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam)}
