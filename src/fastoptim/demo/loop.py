"""A training loop's pieces shared by ``fastoptim demo`` and ``fastoptim bench --e2e``:
one epoch, timed (:func:`train_epoch`), and the NumPy reference as an optimizer
(:class:`PlainReference`), which fastoptim must match bit for bit. (The baseline of the
speed-ups, the rule as a user writes it, is :mod:`fastoptim.demo.plain`.)"""

import time

import numpy as np

from .. import reference


class PlainReference:
    """The NumPy reference as an optimizer: the function of ``fastoptim.reference`` (the
    executable specification, in the kernels' order of operations) on each parameter
    with the step's scalars from the rule table, state made on first use, no argument
    checks (none of fastoptim's checking is charged to it, unlike ``backend="numpy"``).

    The rule and hyper-parameters are those of the fastoptim optimizer ``like``; starting
    from the same parameters and gradients, both end bit-identical. It is not the code a
    user writes (that is :mod:`fastoptim.demo.plain`): its float32 scalars are converted
    for each call, and its expressions follow the kernels', not the textbook's.
    """

    def __init__(self, like):
        rule = like.rule  # the row it runs (a variant with amsgrad, centered, ...)
        self._names, self._scalar_names = rule.state, rule.scalar_names
        self._fn = getattr(reference, rule.name)
        self._hyper = hyper = like.hyperparams
        self._stepper = rule.stepper(hyper)   # the rule's scalars, then the gradient's sign
        self._init = rule.initial_values(hyper)  # numbers, or "param": a copy of it
        self._ema = rule.ema_of is not None  # then the last buffer is the moving average
        self.step = 0
        self.state = {}

    def swap(self, params, to_train):
        """Schedule-Free only: the parameters to the average x (``to_train`` False) or
        back to y, as ``ScheduleFree.eval`` / ``train`` compute it (no mode kept)."""
        beta1 = self._hyper["betas"][0]
        weight = 1.0 - beta1 if to_train else 1.0 - 1.0 / beta1
        for key, p in params.items():
            z = self.state[key][0]
            diff = np.subtract(z, p)
            diff *= p.dtype.type(weight)
            p += diff

    def update(self, params, grads):
        self.step += 1
        scalars = self._stepper(self.step)
        if self._ema:
            *scalars, sign, decay, one_minus_decay = scalars
        else:
            *scalars, sign = scalars
        kw = dict(zip(self._scalar_names, scalars))
        for key, p in params.items():
            state = self.state.get(key)
            if state is None:
                state = self.state[key] = [
                    p.copy() if isinstance(v, str) else np.full_like(p, v)
                    for v in self._init]
            g = grads[key]
            if sign != 1.0:  # maximize: the rule on -g, as the engine
                g = g * g.dtype.type(sign)
            if self._ema:
                self._fn(p, g, *state[:-1], **kw)
                reference.ema(p, state[-1], decay=decay, one_minus_decay=one_minus_decay)
            else:
                self._fn(p, g, *state, **kw)
        return True


def train_epoch(net, opt, batches):
    """One pass over ``batches`` (pairs of inputs and labels): per batch the gradient
    (forward and backward, ``net.gradient``) then ``opt.update``. Returns (seconds for the
    whole epoch, seconds of it inside ``opt.update``)."""
    clock = time.perf_counter
    in_update = 0.0
    start = clock()
    for x, t in batches:
        grads = net.gradient(x, t)
        t0 = clock()
        opt.update(net.params, grads)
        in_update += clock() - t0
    return clock() - start, in_update


def evaluated_at_average(net, opt, ref_net, ref, evaluate):
    """``evaluate(net)``; for a Schedule-Free optimizer with the parameters of both nets
    moved to the average x first and back to y after (the reference's moved the same
    way, so that both stay bit-identical), as the authors' ``eval()`` / ``train()``."""
    if not opt.rule.schedule_free:
        return evaluate(net)
    opt.eval(net.params)
    ref.swap(ref_net.params, to_train=False)
    try:
        return evaluate(net)
    finally:
        opt.train(net.params)
        ref.swap(ref_net.params, to_train=True)
