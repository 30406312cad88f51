"""Docstring pieces shared by the optimizer classes and the functional API, written once
and composed per rule from the rule table (``fastoptim.rules``)."""

NUM_THREADS_CLASS = """\
num_threads : int or None, default None
    Threads per update; None uses OpenMP's current maximum at each call, so
    ``OMP_NUM_THREADS`` and ``threadpoolctl.threadpool_limits`` apply, and the adaptive
    threading policy may run a call on one thread (see ``fastoptim.set_threading``);
    an explicit count is used as given. Calls below the serial thresholds run on one
    thread. Results are the same, bit for bit, for any count."""

NUM_THREADS_FUNCTIONAL = """\
num_threads : int or None, default None
    Threads for this step; None uses OpenMP's current maximum (``OMP_NUM_THREADS``,
    ``threadpoolctl.threadpool_limits``). Small arrays run on one thread; the result
    is the same, bit for bit, for any count."""

BACKEND = """\
backend : {"compiled", "numpy"}, default "compiled"
    "compiled" runs the fused kernels; "numpy" the pure-NumPy reference
    (``fastoptim.reference``): the same results, bit for bit, only slower. The old
    name "cython" still means "compiled", with a DeprecationWarning."""

SKIP_NONFINITE = """\
skip_nonfinite : bool, default False
    Check every gradient of an ``update`` call first (one pass) and, if any element
    is NaN or Inf, skip the whole step: nothing written, no step counted; ``update``
    returns False and ``skipped_steps`` counts it."""

CLASS_NOTES = """\
Notes
-----
Every class shares :class:`Optimizer`'s interface: hyper-parameters are attributes,
validated when set (``opt.lr = 1e-4``); :meth:`~Optimizer.update` steps every
parameter in place; state is created on a parameter's first update;
``state_dict()`` / ``load_state_dict()`` save and restore it. The rule's row in
``fastoptim.rules`` is the class attribute ``rule``."""

PARAM = """\
param : ndarray
    float32 or float64, writeable, C- or F-contiguous; updated in place. An object
    NumPy can view without a copy through DLPack (a CPU torch tensor) works too."""

GRAD = """\
grad : ndarray
    Same shape and dtype as ``param``, any memory layout; only read."""

STEP = """\
step : int
    The number of this step for this parameter, counting from 1 (bias correction)."""
STEP_SCHEDULE_FREE = """\
step : int
    The number of this step, counting from 1: warmup, bias correction and the
    average's weight ``ckp1`` are those of step ``step`` of a run whose ``lr`` has been
    the same since step 1 (worked out from step 1 on each call that does not follow the
    previous step; the optimizer class keeps the learning-rate history instead)."""


def step_by_entry(rule):
    names = " or ".join(f"``{n}``" for n in rule.stepped_by)
    return (f"step : int, optional\n    The number of this step for this parameter, "
            f"counting from 1; needed only when {names} is not 0 (then the step's "
            f"scalars depend on it).")


RETURNS_NONE = """\
Returns
-------
None
    ``param`` and the state arrays are updated in place."""


def _indent(text, by="    "):
    return "\n".join(by + line if line else line for line in text.splitlines())


def _wrap(text, width=84, indent="    "):
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(indent) + len(line) + 1 + len(w) > width:
            lines.append(indent + line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    if line:
        lines.append(indent + line)
    return "\n".join(lines)


def hyper_entry(h):
    default = repr(h.default)
    return f"{h.name} : {h.type}, default {default}\n" + _wrap(
        f"{h.doc} {h.range_text()[0].upper() + h.range_text()[1:]}.")


def _start(rule, name):
    """How a state buffer starts, as code: a copy of the parameter or zeros."""
    init = rule.state_init[rule.state.index(name)] if rule.state_init else None
    if init == "param":
        return "param.copy()"
    return "np.zeros_like(param)"  # (or a hyper-parameter's value: the caller's choice)


def state_entry(rule, name):
    return (f"{name} : ndarray\n"
            + _wrap(f"{rule.state_doc[name][0].upper() + rule.state_doc[name][1:]}: "
                    f"same shape, dtype and memory layout as ``param`` "
                    f"(``{_start(rule, name)}`` before the first step); updated in "
                    f"place."))


def _state_phrase(rule):
    if not rule.state:
        return ""
    return " (state " + ", ".join(f"``{n}``" for n in rule.state) + ")"


def class_doc(rule):
    parts = [f"{rule.doc[:-1] if rule.doc.endswith('.') else rule.doc}: "
             f"``{rule.formula}``{_state_phrase(rule)}."]
    if rule.notes:
        parts.append(_wrap(rule.notes, indent=""))
    params = [hyper_entry(h) for h in rule.hyper]
    params += [NUM_THREADS_CLASS, BACKEND, SKIP_NONFINITE]
    parts.append("Parameters\n----------\n" + "\n".join(params))
    parts.append(CLASS_NOTES)
    parts.append("Examples\n--------\n"
                 ">>> import numpy as np, fastoptim as fo\n"
                 ">>> w = np.ones(3)\n"
                 f">>> opt = fo.{rule.class_name}()\n"
                 ">>> opt.update([w], [np.full(3, 0.5)])   # in place; True: applied\n"
                 "True\n"
                 ">>> bool((w < 1).all())\n"
                 "True")
    return "\n\n".join(parts) + "\n"


def functional_doc(rule):
    head = f"{rule.class_name} step: ``{rule.formula}``."
    if rule.stepped:
        head = (f"{rule.class_name} step number ``step`` (1 on a parameter's first "
                f"update): ``{rule.formula}``.")
    parts = [head]
    params = [PARAM, GRAD] + [state_entry(rule, n) for n in rule.state]
    if rule.stepped:
        params.append(STEP_SCHEDULE_FREE if rule.schedule_free else STEP)
    elif rule.stepped_by:
        params.append(step_by_entry(rule))
    params += [hyper_entry(h) for h in rule.functional_hyper]
    params += [NUM_THREADS_FUNCTIONAL, BACKEND]
    parts.append("Parameters\n----------\n" + "\n".join(params))
    parts.append(RETURNS_NONE)
    state = "".join(f", {n}" for n in rule.state)
    zeros = "".join(f"; {n} = " + _start(rule, n).replace("param", "p")
                    for n in rule.state)
    step = ", step=1" if rule.stepped else ""
    parts.append("Examples\n--------\n"
                 ">>> import numpy as np\n"
                 ">>> from fastoptim import functional as F\n"
                 f">>> p = np.ones(2); g = np.array([1.0, -1.0]){zeros}\n"
                 f">>> F.{rule.name}(p, g{state}{step})\n"
                 ">>> bool(p[0] < 1 < p[1])\n"
                 "True")
    return "\n\n".join(parts) + "\n"
