"""A training loop's pieces shared by ``fastoptim demo`` and ``fastoptim bench --e2e``:
one epoch, timed (:func:`train_epoch`), and the baseline optimizer both compare
fastoptim with (:class:`PlainReference`)."""

import time

import numpy as np

from .. import reference, rules


class PlainReference:
    """A rule's update as a plain NumPy training loop writes it: the function of
    ``fastoptim.reference`` on each parameter with the step's scalars, state made on first
    use, no argument checks (so none of fastoptim's checking is charged to the baseline).

    The rule and hyper-parameters are those of the fastoptim optimizer ``like``; starting
    from the same parameters and gradients, both end bit-identical.
    """

    def __init__(self, like):
        rule = rules.get(like._rule)
        self._names, self._scalar_names = rule.state, rule.scalar_names
        self._init = rule.state_init  # buffers that start as a copy of the parameter
        self._fn = getattr(reference, rule.name)
        self._hyper = like.hyperparams
        # step -> scalars, made once (the next step's costs O(1) for every rule)
        self._scalars = rule.step_scalars(**self._hyper)
        self._schedule_free = rule.schedule_free
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
        kw = dict(zip(self._scalar_names, self._scalars(self.step)))
        for key, p in params.items():
            state = self.state.get(key)
            if state is None:
                state = self.state[key] = [
                    p.copy() if self._init.get(n) == "param" else np.zeros_like(p)
                    for n in self._names]
            self._fn(p, grads[key], *state, **kw)
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
    if not rules.get(opt._rule).schedule_free:
        return evaluate(net)
    opt.eval(net.params)
    ref.swap(ref_net.params, to_train=False)
    try:
        return evaluate(net)
    finally:
        opt.train(net.params)
        ref.swap(ref_net.params, to_train=True)
