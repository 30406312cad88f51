"""The functional layer: one function per rule over one parameter, its gradient and its
state arrays, with keyword-only hyper-parameters.

Each function validates its hyper-parameters, computes the step scalars once in float64,
then runs the same transaction as the optimizer classes (``fastoptim._engine``) over the
compiled kernels (``backend="compiled"``) or the NumPy reference (``backend="numpy"``),
which are bit-identical. The parameter and the state arrays are updated in place; the
gradient is only read. The functions are made from the rule table (``fastoptim.rules``):
``fastoptim.functional.<rule name>``.

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

from . import _core, _docs, _engine, _threading, rules


def _run(rule, param, grad, state, step, num_threads, backend, hyper):
    engine = _engine.ENGINES[_core.backend_name(backend)]
    nt = _core.check_num_threads(num_threads)
    pacer = None
    if nt == 0 and engine is _engine.COMPILED and _threading.adaptive:
        pacer = True  # the pacer keyed by this parameter decides: serial or parallel
    hyper = rule.check(**hyper)
    if step is None:  # a rule stepped only by some hyper-parameters (rules.Rule.stepped_by)
        if rule.is_stepped(hyper):
            given = ", ".join(f"{n}={hyper[n]!r}" for n in rule.stepped_by if hyper[n])
            raise TypeError(f"{rule.name}() with {given} depends on the step number: pass "
                            f"step=t (this update's number for the parameter, counting "
                            f"from 1)")
        step = 1
    step = _core.check_step(step)
    scalars = {step: rule.stepper(hyper)(step)}
    slots = {0: [np.array(step - 1, dtype=np.int64), *state]}
    _engine.step(engine, rule, [param], [grad], slots, scalars, hyper, nt=nt, cache=[],
                 plan=[], steps_out=[], pacer=pacer, naming=_engine.FunctionalNames)


def _function_source(rule):
    """The source of a rule's function: the parameter, the gradient and the state
    buffers positionally, then (keyword-only) the step for a rule whose scalars depend
    on it, the table's hyper-parameters with their defaults, and the options."""
    args = ["param", "grad", *rule.state, "*"]
    if rule.stepped:
        args.append("step")
    elif rule.stepped_by:
        args.append("step=None")
    taken = rule.functional_hyper
    args += [f"{h.name}=_d[{h.name!r}]" for h in taken]
    args += ["num_threads=None", "backend='compiled'"]
    state = "".join(f"{n}, " for n in rule.state)
    # a state buffer's initial value is the caller's to set: its default goes in
    hyper = ", ".join(f"{h.name!r}: {h.name if h in taken else f'_d[{h.name!r}]'}"
                      for h in rule.hyper)
    return (f"def {rule.name}({', '.join(args)}):\n"
            f"    _run(_rule, param, grad, ({state}), "
            f"{'step' if rule.stepped or rule.stepped_by else '1'}, "
            f"num_threads, backend, {{{hyper}}})\n")


def _make_function(rule):
    env = {"_run": _run, "_rule": rule, "_d": rule.defaults}
    # compiled under this file's name: warnings from the options point past it
    exec(compile(_function_source(rule), __file__, "exec"), env)  # noqa: S102
    fn = env[rule.name]
    fn.__module__ = __name__
    fn.__doc__ = _docs.functional_doc(rule)
    return fn


_FUNCTIONS = {rule.name: _make_function(rule) for rule in rules.KERNEL_ROWS}
globals().update(_FUNCTIONS)
__all__ = list(_FUNCTIONS)
