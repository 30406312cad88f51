"""Plain NumPy optimizers, written the way a user writes them: ``fastoptim demo``'s baseline.

One class per rule of :data:`fastoptim.rules.RULES`, in the style of the optimizers of
"Deep Learning from Scratch": ``update(params, grads)`` loops over the keys of two dicts,
``for key in params: ... params[key] -= ...``; the state is a dict of ``np.zeros_like``
arrays made on the first call; the rule is a few NumPy expressions with their
temporaries, the textbook formula as it is usually written (Adam's bias corrections
applied to ``m`` and ``v``, AdaDelta with two square roots); nothing is checked. This is
the code a reader replaces with fastoptim, so ``fastoptim demo`` measures fastoptim
against it.

Each class takes the hyper-parameters of the fastoptim class of the same name, with the
same names, defaults and meaning (``weight_decay`` coupled, ``g + weight_decay*p``, except
AdamW's and Lion's decoupled ``p*(1 - lr*weight_decay)``; see ``docs/rules.rst``), so the
math is the same rule. The results agree with fastoptim's (and its reference's) to
rounding, not bit for bit: the order of operations differs (fastoptim folds Adam's bias
corrections into two scalars, for one), and NAdam keeps the running product of its
momentum schedule as torch.optim does where fastoptim computes it from the step number.
A Python float times a float32 array stays float32, so float32 parameters are updated
in float32, as with fastoptim.

:data:`PLAIN` maps each rule's class name to its class and :func:`plain_optimizer` makes
one; a rule with no class here is an error there (and in the tests). The library never
imports this module.
"""

import math

import numpy as np

from .. import rules

__all__ = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "AdaDelta", "Adam", "AdamW",
           "Lion", "Adamax", "NAdam", "RAdam", "ScheduleFreeAdamW", "LAMB", "PLAIN",
           "plain_optimizer"]


class _Averaged:
    """Keras' ``use_ema`` as a user adds it to such a class: after each ``update``,
    ``a <- ema*a + (1-ema)*p`` per key (``a`` a copy of ``p`` after the first), in
    ``self.average``; ``ema = 0`` keeps none."""

    ema = 0.0
    average = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        step = cls.update

        def update(self, params, grads):
            step(self, params, grads)
            if not self.ema:
                return
            if self.average is None:
                self.average = {key: val.copy() for key, val in params.items()}
                return
            for key in params:
                self.average[key] = self.ema * self.average[key] + (1 - self.ema) * params[key]
        update.__doc__ = step.__doc__
        cls.update = update


class SGD(_Averaged):
    """``p <- p - lr*g``."""

    def __init__(self, lr=1e-3, weight_decay=0.0, ema=0.0, maximize=False):
        self.lr = lr
        self.maximize = maximize
        self.ema = ema
        self.weight_decay = weight_decay

    def update(self, params, grads):
        for key in params:
            g = -grads[key] if self.maximize else grads[key]
            if self.weight_decay:
                g = g + self.weight_decay * params[key]
            params[key] -= self.lr * g


class Momentum(_Averaged):
    """``v <- momentum*v + lr*g ; p <- p - v`` (``lr*(1-dampening)*g`` after the first
    step, with torch's ``dampening``)."""

    def __init__(self, lr=1e-3, momentum=0.9, weight_decay=0.0, dampening=0.0,
                 ema=0.0, maximize=False):
        self.lr = lr
        self.maximize = maximize
        self.ema = ema
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.dampening = dampening
        self.v = None

    def update(self, params, grads):
        first = self.v is None
        if first:
            self.v = {key: np.zeros_like(val) for key, val in params.items()}
        for key in params:
            g = -grads[key] if self.maximize else grads[key]
            if self.weight_decay:
                g = g + self.weight_decay * params[key]
            scale = self.lr if first else self.lr * (1 - self.dampening)
            self.v[key] = self.momentum * self.v[key] + scale * g
            params[key] -= self.v[key]


class Nesterov(_Averaged):
    """``v <- momentum*v + lr*g ; p <- p - (momentum*v + lr*g)`` (look-ahead form)."""

    def __init__(self, lr=1e-3, momentum=0.9, weight_decay=0.0, ema=0.0, maximize=False):
        self.lr = lr
        self.maximize = maximize
        self.ema = ema
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.v = None

    def update(self, params, grads):
        if self.v is None:
            self.v = {key: np.zeros_like(val) for key, val in params.items()}
        for key in params:
            g = -grads[key] if self.maximize else grads[key]
            if self.weight_decay:
                g = g + self.weight_decay * params[key]
            self.v[key] = self.momentum * self.v[key] + self.lr * g
            params[key] -= self.momentum * self.v[key] + self.lr * g


class AdaGrad(_Averaged):
    """``h <- h + g*g ; p <- p - lr_t*g / (sqrt(h) + eps)``, ``lr_t = lr/(1 + (t-1)*lr_decay)``,
    ``h`` starting at ``initial_accumulator_value``."""

    def __init__(self, lr=1e-2, eps=1e-10, weight_decay=0.0, lr_decay=0.0,
                 initial_accumulator_value=0.0, ema=0.0, maximize=False):
        self.lr = lr
        self.maximize = maximize
        self.ema = ema
        self.eps = eps
        self.weight_decay = weight_decay
        self.lr_decay = lr_decay
        self.initial_accumulator_value = initial_accumulator_value
        self.h = None
        self.t = 0

    def update(self, params, grads):
        if self.h is None:
            self.h = {key: np.full_like(val, self.initial_accumulator_value)
                      for key, val in params.items()}
        self.t += 1
        lr = self.lr / (1 + (self.t - 1) * self.lr_decay)
        for key in params:
            g = -grads[key] if self.maximize else grads[key]
            if self.weight_decay:
                g = g + self.weight_decay * params[key]
            self.h[key] += g * g
            params[key] -= lr * g / (np.sqrt(self.h[key]) + self.eps)


class RMSprop(_Averaged):
    """``h <- alpha*h + (1-alpha)*g*g ; p <- p - lr*g / (sqrt(h) + eps)``; with
    ``centered``, ``a <- alpha*a + (1-alpha)*g`` and ``sqrt(h - a*a)``; with ``momentum``,
    ``b <- momentum*b + lr*g / (...) ; p <- p - b``."""

    def __init__(self, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, ema=0.0, maximize=False):
        self.lr = lr
        self.maximize = maximize
        self.ema = ema
        self.alpha = alpha
        self.eps = eps
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.centered = centered
        self.h = None

    def update(self, params, grads):
        if self.h is None:
            self.h = {key: np.zeros_like(val) for key, val in params.items()}
            if self.centered:
                self.a = {key: np.zeros_like(val) for key, val in params.items()}
            if self.momentum:
                self.b = {key: np.zeros_like(val) for key, val in params.items()}
        for key in params:
            g = -grads[key] if self.maximize else grads[key]
            if self.weight_decay:
                g = g + self.weight_decay * params[key]
            self.h[key] = self.alpha * self.h[key] + (1 - self.alpha) * g * g
            var = self.h[key]
            if self.centered:
                self.a[key] = self.alpha * self.a[key] + (1 - self.alpha) * g
                var = var - self.a[key] * self.a[key]
            step = self.lr * g / (np.sqrt(var) + self.eps)
            if self.momentum:
                self.b[key] = self.momentum * self.b[key] + step
                step = self.b[key]
            params[key] -= step


class AdaDelta(_Averaged):
    """``h <- rho*h + (1-rho)*g*g ; d <- sqrt(s + eps)/sqrt(h + eps)*g ;
    s <- rho*s + (1-rho)*d*d ; p <- p - lr*d``."""

    def __init__(self, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, ema=0.0, maximize=False):
        self.lr = lr
        self.maximize = maximize
        self.ema = ema
        self.rho = rho
        self.eps = eps
        self.weight_decay = weight_decay
        self.h = None
        self.s = None

    def update(self, params, grads):
        if self.h is None:
            self.h = {key: np.zeros_like(val) for key, val in params.items()}
            self.s = {key: np.zeros_like(val) for key, val in params.items()}
        for key in params:
            g = -grads[key] if self.maximize else grads[key]
            if self.weight_decay:
                g = g + self.weight_decay * params[key]
            self.h[key] = self.rho * self.h[key] + (1 - self.rho) * g * g
            d = np.sqrt(self.s[key] + self.eps) / np.sqrt(self.h[key] + self.eps) * g
            self.s[key] = self.rho * self.s[key] + (1 - self.rho) * d * d
            params[key] -= self.lr * d


class Adam(_Averaged):
    """``m <- b1*m + (1-b1)*g ; v <- b2*v + (1-b2)*g*g ;
    p <- p - lr*m_hat / (sqrt(v_hat) + eps)``, with ``m_hat = m/(1-b1**t)`` and
    ``v_hat = v/(1-b2**t)``; with ``amsgrad``, ``v``'s running maximum in ``v_hat``."""

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 ema=0.0, maximize=False):
        self.lr = lr
        self.maximize = maximize
        self.ema = ema
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.amsgrad = amsgrad
        self.t = 0
        self.m = None
        self.v = None

    def update(self, params, grads):
        if self.m is None:
            self.m = {key: np.zeros_like(val) for key, val in params.items()}
            self.v = {key: np.zeros_like(val) for key, val in params.items()}
            if self.amsgrad:
                self.v_max = {key: np.zeros_like(val) for key, val in params.items()}
        self.t += 1
        for key in params:
            g = -grads[key] if self.maximize else grads[key]
            if self.weight_decay:
                g = g + self.weight_decay * params[key]
            self.m[key] = self.beta1 * self.m[key] + (1 - self.beta1) * g
            self.v[key] = self.beta2 * self.v[key] + (1 - self.beta2) * g * g
            m_hat = self.m[key] / (1 - self.beta1 ** self.t)
            v = self.v[key]
            if self.amsgrad:  # AMSGrad: the running maximum of v
                v = self.v_max[key] = np.maximum(self.v_max[key], v)
            v_hat = v / (1 - self.beta2 ** self.t)
            params[key] -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class AdamW(_Averaged):
    """``p <- p*(1 - lr*weight_decay)``, then Adam's step with no decay term in ``g``."""

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                 ema=0.0, maximize=False):
        self.lr = lr
        self.maximize = maximize
        self.ema = ema
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.amsgrad = amsgrad
        self.t = 0
        self.m = None
        self.v = None

    def update(self, params, grads):
        if self.m is None:
            self.m = {key: np.zeros_like(val) for key, val in params.items()}
            self.v = {key: np.zeros_like(val) for key, val in params.items()}
            if self.amsgrad:
                self.v_max = {key: np.zeros_like(val) for key, val in params.items()}
        self.t += 1
        for key in params:
            g = -grads[key] if self.maximize else grads[key]
            params[key] *= 1 - self.lr * self.weight_decay
            self.m[key] = self.beta1 * self.m[key] + (1 - self.beta1) * g
            self.v[key] = self.beta2 * self.v[key] + (1 - self.beta2) * g * g
            m_hat = self.m[key] / (1 - self.beta1 ** self.t)
            v = self.v[key]
            if self.amsgrad:  # AMSGrad: the running maximum of v
                v = self.v_max[key] = np.maximum(self.v_max[key], v)
            v_hat = v / (1 - self.beta2 ** self.t)
            params[key] -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class Lion(_Averaged):
    """``c <- b1*m + (1-b1)*g ; p <- p*(1 - lr*weight_decay) - lr*sign(c) ;
    m <- b2*m + (1-b2)*g``."""

    def __init__(self, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, ema=0.0, maximize=False):
        self.lr = lr
        self.maximize = maximize
        self.ema = ema
        self.beta1, self.beta2 = betas
        self.weight_decay = weight_decay
        self.m = None

    def update(self, params, grads):
        if self.m is None:
            self.m = {key: np.zeros_like(val) for key, val in params.items()}
        for key in params:
            g = -grads[key] if self.maximize else grads[key]
            c = self.beta1 * self.m[key] + (1 - self.beta1) * g
            if self.weight_decay:
                params[key] *= 1 - self.lr * self.weight_decay
            params[key] -= self.lr * np.sign(c)
            self.m[key] = self.beta2 * self.m[key] + (1 - self.beta2) * g


class Adamax(_Averaged):
    """``m <- b1*m + (1-b1)*g ; u <- max(b2*u, |g| + eps) ; p <- p - lr/(1-b1**t) * m/u``."""

    def __init__(self, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 ema=0.0, maximize=False):
        self.lr = lr
        self.maximize = maximize
        self.ema = ema
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.t = 0
        self.m = None
        self.u = None

    def update(self, params, grads):
        if self.m is None:
            self.m = {key: np.zeros_like(val) for key, val in params.items()}
            self.u = {key: np.zeros_like(val) for key, val in params.items()}
        self.t += 1
        for key in params:
            g = -grads[key] if self.maximize else grads[key]
            if self.weight_decay:
                g = g + self.weight_decay * params[key]
            self.m[key] = self.beta1 * self.m[key] + (1 - self.beta1) * g
            self.u[key] = np.maximum(self.beta2 * self.u[key], np.abs(g) + self.eps)
            params[key] -= self.lr / (1 - self.beta1 ** self.t) * self.m[key] / self.u[key]


class NAdam(_Averaged):
    """``m <- b1*m + (1-b1)*g ; v <- b2*v + (1-b2)*g*g``; with the momentum schedule
    ``mu_t = b1*(1 - 0.5*0.96**(t*momentum_decay))`` and its running product
    ``prod_t = mu_1*...*mu_t``, ``p <- p - lr*((1-mu_t)/(1-prod_t)*g +
    mu_{t+1}/(1-prod_t*mu_{t+1})*m) / (sqrt(v_hat) + eps)``, as torch.optim.NAdam."""

    def __init__(self, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 momentum_decay=4e-3, ema=0.0, maximize=False):
        self.lr = lr
        self.maximize = maximize
        self.ema = ema
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.momentum_decay = momentum_decay
        self.t = 0
        self.mu_product = 1.0
        self.m = None
        self.v = None

    def update(self, params, grads):
        if self.m is None:
            self.m = {key: np.zeros_like(val) for key, val in params.items()}
            self.v = {key: np.zeros_like(val) for key, val in params.items()}
        self.t += 1
        mu = self.beta1 * (1 - 0.5 * 0.96 ** (self.t * self.momentum_decay))
        mu_next = self.beta1 * (1 - 0.5 * 0.96 ** ((self.t + 1) * self.momentum_decay))
        self.mu_product *= mu
        for key in params:
            g = -grads[key] if self.maximize else grads[key]
            if self.weight_decay:
                g = g + self.weight_decay * params[key]
            self.m[key] = self.beta1 * self.m[key] + (1 - self.beta1) * g
            self.v[key] = self.beta2 * self.v[key] + (1 - self.beta2) * g * g
            v_hat = self.v[key] / (1 - self.beta2 ** self.t)
            denom = np.sqrt(v_hat) + self.eps
            params[key] -= self.lr * (1 - mu) / (1 - self.mu_product) * g / denom
            params[key] -= (self.lr * mu_next / (1 - self.mu_product * mu_next)
                            * self.m[key] / denom)


class RAdam(_Averaged):
    """``m <- b1*m + (1-b1)*g ; v <- b2*v + (1-b2)*g*g``; while ``rho_t <= 5``,
    ``p <- p - lr*m_hat``, after that ``p <- p - lr*r_t*m_hat*sqrt(1-b2**t)/(sqrt(v) + eps)``
    (``rho_t`` and ``r_t`` from ``b2`` and ``t``), as torch.optim.RAdam."""

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 ema=0.0, maximize=False):
        self.lr = lr
        self.maximize = maximize
        self.ema = ema
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.t = 0
        self.m = None
        self.v = None

    def update(self, params, grads):
        if self.m is None:
            self.m = {key: np.zeros_like(val) for key, val in params.items()}
            self.v = {key: np.zeros_like(val) for key, val in params.items()}
        self.t += 1
        bias1 = 1 - self.beta1 ** self.t
        bias2 = 1 - self.beta2 ** self.t
        rho_inf = 2 / (1 - self.beta2) - 1
        rho_t = rho_inf - 2 * self.t * self.beta2 ** self.t / bias2
        if rho_t > 5:
            r = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf
                          / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        for key in params:
            g = -grads[key] if self.maximize else grads[key]
            if self.weight_decay:
                g = g + self.weight_decay * params[key]
            self.m[key] = self.beta1 * self.m[key] + (1 - self.beta1) * g
            self.v[key] = self.beta2 * self.v[key] + (1 - self.beta2) * g * g
            m_hat = self.m[key] / bias1
            if rho_t > 5:
                params[key] -= (self.lr * r * m_hat * math.sqrt(bias2)
                                / (np.sqrt(self.v[key]) + self.eps))
            else:
                params[key] -= self.lr * m_hat


class ScheduleFreeAdamW:
    """Schedule-Free AdamW (Defazio et al. 2024) as its authors' ``AdamWScheduleFree``
    computes it: the parameters hold the gradient point ``y``; per parameter ``z``
    (starting as a copy of it) and ``v``; ``eval``/``train`` move the parameters to the
    average ``x = y + (1 - 1/b1)*(z - y)`` and back."""

    def __init__(self, lr=2.5e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 warmup_steps=0, r=0.0, weight_lr_power=2.0, maximize=False):
        self.lr = lr
        self.maximize = maximize
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.warmup_steps = warmup_steps
        self.r = r
        self.weight_lr_power = weight_lr_power
        self.k, self.lr_max, self.weight_sum = 0, -1.0, 0.0
        self.train_mode = True
        self.z = None
        self.v = None

    def update(self, params, grads):
        if self.z is None:
            self.z = {key: val.copy() for key, val in params.items()}
            self.v = {key: np.zeros_like(val) for key, val in params.items()}
        k = self.k
        lr = self.lr * ((k + 1) / self.warmup_steps if k < self.warmup_steps else 1.0)
        self.lr_max = max(lr, self.lr_max)
        weight = (k + 1) ** self.r * self.lr_max ** self.weight_lr_power
        self.weight_sum += weight
        ckp1 = weight / self.weight_sum if self.weight_sum else 0.0
        bias2 = 1 - self.beta2 ** (k + 1)
        for key in params:
            g = -grads[key] if self.maximize else grads[key]
            y, z = params[key], self.z[key]
            self.v[key] = self.beta2 * self.v[key] + (1 - self.beta2) * g * g
            u = g / (np.sqrt(self.v[key] / bias2) + self.eps)
            if self.weight_decay:
                u = u + self.weight_decay * y
            y += ckp1 * (z - y) + lr * (self.beta1 * (1 - ckp1) - 1) * u
            z -= lr * u
        self.k += 1

    def eval(self, params):
        if self.train_mode and self.z is not None:
            for key in params:
                params[key] += (1 - 1 / self.beta1) * (self.z[key] - params[key])
        self.train_mode = False

    def train(self, params):
        if not self.train_mode and self.z is not None:
            for key in params:
                params[key] += (1 - self.beta1) * (self.z[key] - params[key])
        self.train_mode = True


class LAMB(_Averaged):
    """``m <- b1*m + (1-b1)*g ; v <- b2*v + (1-b2)*g*g ;
    u = m_hat/(sqrt(v_hat) + eps) + weight_decay*p ; p <- p - lr*||p||/||u||*u``, the norms
    of each array (the paper's Algorithm 2)."""

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0,
                 ema=0.0, maximize=False):
        self.lr = lr
        self.maximize = maximize
        self.ema = ema
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.t = 0
        self.m = None
        self.v = None

    def update(self, params, grads):
        if self.m is None:
            self.m = {key: np.zeros_like(val) for key, val in params.items()}
            self.v = {key: np.zeros_like(val) for key, val in params.items()}
        self.t += 1
        for key in params:
            g = -grads[key] if self.maximize else grads[key]
            self.m[key] = self.beta1 * self.m[key] + (1 - self.beta1) * g
            self.v[key] = self.beta2 * self.v[key] + (1 - self.beta2) * g * g
            m_hat = self.m[key] / (1 - self.beta1 ** self.t)
            v_hat = self.v[key] / (1 - self.beta2 ** self.t)
            u = m_hat / (np.sqrt(v_hat) + self.eps) + self.weight_decay * params[key]
            w_norm, u_norm = np.linalg.norm(params[key]), np.linalg.norm(u)
            ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
            params[key] -= self.lr * ratio * u


#: Class name -> the plain NumPy class of that rule; every rule of the table has one
#: (``tests/test_plain.py`` checks).
PLAIN = {cls.__name__: cls for cls in (SGD, Momentum, Nesterov, AdaGrad, RMSprop, AdaDelta,
                                       Adam, AdamW, Lion, Adamax, NAdam, RAdam,
                                       ScheduleFreeAdamW, LAMB)}


def plain_optimizer(name, **hyper):
    """The plain NumPy optimizer of rule ``name`` (class or rule name, e.g. "Adam" or
    "adam") with hyper-parameters ``hyper`` (the fastoptim class's keywords, as in
    :func:`fastoptim.demo.settings.hyper`; ``num_threads`` and ``backend`` do not apply,
    nor does ``state_dtype`` but None).
    Raises ``NotImplementedError`` for a rule of the table with no class here."""
    rule = rules.get(name)
    if hyper.pop("state_dtype", None) is not None:
        raise ValueError("the plain NumPy optimizers keep float state, as a user writes "
                         "them: state_dtype applies to fastoptim's optimizers only")
    cls = PLAIN.get(rule.class_name)
    if cls is None:
        raise NotImplementedError(
            f"fastoptim.demo.plain has no plain NumPy version of {rule.class_name}: add a "
            f"class {rule.class_name} there (the rule written as a user writes it, with "
            f"the keywords {', '.join(rule.hyper_names)}), the baseline fastoptim demo "
            f"compares it with")
    return cls(**hyper)
