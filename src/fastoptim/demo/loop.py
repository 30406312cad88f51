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
        self.step = 0
        self.state = {}

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
