"""The optimizers of "Deep Learning from Scratch" (``common/optimizer.py`` of
oreilly-japan/deep-learning-from-scratch), written here in the book's order of operations
as the oracle for ``fastoptim.book``: each NumPy statement of the book's ``update`` is one
statement here, so the arrays round as the book's do. Plus NAG in the look-ahead form the
book's Nesterov aims at (Bengio et al. 2013, the form its docstring's paper gives).

Not a test module (no ``test_`` prefix); ``tests/`` is on the path (pyproject's
``pythonpath``).
"""

import numpy as np

# the book's constant: 1e-7 added to the root in AdaGrad, RMSprop and Adam
BOOK_EPS = 1e-7


class _Stateful:
    def _zeros(self, params):
        return {key: np.zeros_like(val) for key, val in params.items()}


class BookSGD:
    def __init__(self, lr=0.01):
        self.lr = lr

    def update(self, params, grads):
        for key in params.keys():
            params[key] -= self.lr * grads[key]


class BookMomentum(_Stateful):
    def __init__(self, lr=0.01, momentum=0.9):
        self.lr, self.momentum, self.v = lr, momentum, None

    def update(self, params, grads):
        if self.v is None:
            self.v = self._zeros(params)
        for key in params.keys():
            self.v[key] = self.momentum * self.v[key] - self.lr * grads[key]
            params[key] += self.v[key]


class BookNesterov(_Stateful):
    """The book's class: the velocity is updated first, then used."""

    def __init__(self, lr=0.01, momentum=0.9):
        self.lr, self.momentum, self.v = lr, momentum, None

    def update(self, params, grads):
        if self.v is None:
            self.v = self._zeros(params)
        for key in params.keys():
            self.v[key] *= self.momentum
            self.v[key] -= self.lr * grads[key]
            params[key] += self.momentum * self.momentum * self.v[key]
            params[key] -= (1 + self.momentum) * self.lr * grads[key]


class LookAheadNesterov(_Stateful):
    """NAG in look-ahead form with the book's sign of v: the step uses the velocity
    from before the step, p += mu^2*v - (1+mu)*lr*g, then v <- mu*v - lr*g."""

    def __init__(self, lr=0.01, momentum=0.9):
        self.lr, self.momentum, self.v = lr, momentum, None

    def update(self, params, grads):
        if self.v is None:
            self.v = self._zeros(params)
        for key in params.keys():
            params[key] += self.momentum * self.momentum * self.v[key]
            params[key] -= (1 + self.momentum) * self.lr * grads[key]
            self.v[key] *= self.momentum
            self.v[key] -= self.lr * grads[key]


class BookAdaGrad(_Stateful):
    def __init__(self, lr=0.01):
        self.lr, self.h = lr, None

    def update(self, params, grads):
        if self.h is None:
            self.h = self._zeros(params)
        for key in params.keys():
            self.h[key] += grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + BOOK_EPS)


class BookRMSprop(_Stateful):
    def __init__(self, lr=0.01, decay_rate=0.99):
        self.lr, self.decay_rate, self.h = lr, decay_rate, None

    def update(self, params, grads):
        if self.h is None:
            self.h = self._zeros(params)
        for key in params.keys():
            self.h[key] *= self.decay_rate
            self.h[key] += (1 - self.decay_rate) * grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + BOOK_EPS)


class BookAdam(_Stateful):
    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps_hat=None):
        self.lr, self.beta1, self.beta2 = lr, beta1, beta2
        self.iter, self.m, self.v = 0, None, None
        self.eps_hat = eps_hat  # not the book's: eps*sqrt(1-beta2^t) in place of 1e-7

    def update(self, params, grads):
        if self.m is None:
            self.m, self.v = self._zeros(params), self._zeros(params)
        self.iter += 1
        lr_t = (self.lr * np.sqrt(1.0 - self.beta2**self.iter)
                / (1.0 - self.beta1**self.iter))
        for key in params.keys():
            self.m[key] += (1 - self.beta1) * (grads[key] - self.m[key])
            self.v[key] += (1 - self.beta2) * (grads[key]**2 - self.v[key])
            eps = (BOOK_EPS if self.eps_hat is None
                   else self.eps_hat * np.sqrt(1.0 - self.beta2**self.iter))
            params[key] -= lr_t * self.m[key] / (np.sqrt(self.v[key]) + eps)


#: fastoptim.book's class name -> the book's class
BOOK = {"SGD": BookSGD, "Momentum": BookMomentum, "Nesterov": BookNesterov,
        "AdaGrad": BookAdaGrad, "RMSprop": BookRMSprop, "Adam": BookAdam}
