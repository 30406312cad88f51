"""Parameter groups: other hyper-parameters for some of the parameters of one optimizer.

An optimizer's ``groups`` is a list of dicts, each a **selector** and the
hyper-parameters that differ for the parameters it selects::

    opt = fo.AdamW(lr=1e-3, weight_decay=0.05, groups=[
        {"match": "*.b", "weight_decay": 0.0},           # keys matching a glob pattern
        {"keys": ["emb"], "lr": 1e-4},                   # these keys
        {"where": lambda key, p: p.ndim == 1, "weight_decay": 0.0},   # a test
        {"params": [W_out], "lr": 3e-3},                 # these arrays (torch's style)
    ])

Selectors: ``keys`` (a list of keys; with the list form of ``update``, positions),
``match`` (a glob pattern or a list of them, ``fnmatch`` on ``str(key)``), ``where`` (a
function of the key and the parameter array returning a truth value) or ``params`` (a
list of the parameter arrays themselves, matched by identity, as torch.optim's param
groups). A parameter belongs to the first group that selects it, else to the optimizer's
own hyper-parameters (group 0); a group's hyper-parameters not given are the
optimizer's, and follow it when it changes. The group is chosen when a parameter's state
is made (its first update) and kept with the state (``state_dict``, checkpoints).

``opt.param_groups`` lists the groups, group 0 first; each is a :class:`Group`, whose
hyper-parameters are attributes (validated like the optimizer's) and may be changed
between updates. A schedule scales every group's learning rate as torch's schedulers do.

Every parameter of an ``update`` call is still stepped in one pass over memory, in one
call of the engine: the kernels' scalar sets are per (group, step).
"""

from __future__ import annotations

import fnmatch
import numbers
from collections.abc import Mapping
from typing import Any

__all__ = ["Group", "no_decay_1d"]

#: The step box of a state record holds ``group * STRIDE + steps``; group 0 (the
#: optimizer's own hyper-parameters) leaves it as the step count alone.
STRIDE = 1 << 40
MAX_GROUPS = (1 << 22) - 1
SELECTORS = ("keys", "match", "where", "params")


def split(value):
    """(group, steps) of a step box's value."""
    return value >> 40, value & (STRIDE - 1)


def no_decay_1d(**extra: Any) -> dict[str, Any]:
    """The common group: no weight decay for 1-D (and 0-d) parameters, i.e. biases and
    normalisation scales; ``extra`` hyper-parameters for them too (e.g. ``lr=...``).

    >>> import fastoptim as fo
    >>> opt = fo.AdamW(weight_decay=0.05, groups=[fo.groups.no_decay_1d()])
    """
    return {"where": _is_1d, "weight_decay": 0.0, **extra}


def _is_1d(key, param):
    return param.ndim <= 1


class Group:
    """One parameter group: its selector and its own hyper-parameters (``overrides``);
    every other hyper-parameter is the optimizer's. Attributes: each hyper-parameter of
    the rule (the group's value), ``overrides`` (a copy of what the group sets),
    ``index`` (0 for the optimizer's own)."""

    def __init__(self, table, index, selector, overrides):
        object.__setattr__(self, "_table", table)
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "_selector", selector)
        object.__setattr__(self, "_overrides", dict(overrides))

    @property
    def overrides(self):
        return dict(self._overrides)

    def hyper(self):
        """The group's hyper-parameters: the optimizer's, overridden by the group's."""
        return {**self._table.optimizer._hyper, **self._overrides}

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        opt = self._table.optimizer
        if name in opt._hyper_names:
            return self._overrides.get(name, opt._hyper[name])
        raise AttributeError(f"{type(opt).__name__} has no hyper-parameter {name!r} "
                             f"(its are {', '.join(opt._hyper_names)})")

    def __setattr__(self, name, value):
        opt = self._table.optimizer
        if name not in opt._hyper_names:
            raise AttributeError(f"{type(opt).__name__} has no hyper-parameter {name!r} "
                                 f"(its are {', '.join(opt._hyper_names)})")
        if self.index == 0:
            setattr(opt, name, value)  # the optimizer's own
            return
        value = opt.rule.check(**{name: value})[name]
        check_structural(opt, {**self._overrides, name: value}, f"group {self.index}")
        self._overrides[name] = opt.rule.check(**{name: value})[name]
        self._table.changed()

    def __repr__(self):
        what = ", ".join(f"{k}={v!r}" for k, v in self._overrides.items())
        sel = "default" if self.index == 0 else _selector_text(self._selector)
        return f"Group({self.index}, {sel}{', ' if what else ''}{what})"

    def selects(self, key, param):
        kind, value = self._selector
        if kind == "keys":
            return _in(key, value)
        if kind == "match":
            name = str(key)
            return any(fnmatch.fnmatchcase(name, pat) for pat in value)
        if kind == "where":
            return bool(value(key, param))
        if kind == "params":
            return any(param is q or _same_array(param, q) for q in value)
        return False  # "saved": a loaded group selects the keys its state names


def _in(key, keys):
    try:
        return key in keys
    except TypeError:  # an unhashable key against a set
        return False


def _same_array(param, q):
    """The same memory as ``q`` (a view made fresh for this call, e.g. of a torch
    tensor): equal data pointer, shape and dtype."""
    try:
        return (param.__array_interface__["data"][0] == q.__array_interface__["data"][0]
                and param.shape == q.shape and param.dtype == q.dtype)
    except (AttributeError, KeyError, TypeError):
        return False


def _selector_text(selector):
    kind, value = selector
    if kind == "where":
        return f"where={getattr(value, '__name__', 'function')}"
    if kind == "params":
        return f"params=[{len(value)} arrays]"
    if kind == "saved":
        return "saved keys"
    return f"{kind}={list(value)!r}"


def _parse(spec, i, rule):
    """(selector, overrides) of the ``i``-th group dict, checked."""
    where = f"groups[{i}]"
    if not isinstance(spec, Mapping):
        raise TypeError(f"{where} must be a dict (a selector such as 'match': 'bias*' "
                        f"and the hyper-parameters that differ), got "
                        f"{type(spec).__name__}")
    sel = [k for k in SELECTORS if k in spec]
    if len(sel) != 1:
        raise ValueError(f"{where} must have exactly one selector of "
                         f"{', '.join(repr(s) for s in SELECTORS)}; it has "
                         f"{sel if sel else 'none'}")
    kind = sel[0]
    value = spec[kind]
    if kind == "match":
        value = [value] if isinstance(value, str) else (
            list(value) if isinstance(value, (list, tuple)) else [None])
        if not value or not all(isinstance(v, str) for v in value):
            raise TypeError(f"{where}['match'] must be a glob pattern or a list of them")
    elif kind == "where":
        if not callable(value):
            raise TypeError(f"{where}['where'] must be a function (key, param) -> bool")
    elif kind == "keys":
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise TypeError(f"{where}['keys'] must be a list of keys, got {value!r}")
        value = list(value)
    else:  # params
        if not hasattr(value, "__iter__") or hasattr(value, "__array_interface__"):
            raise TypeError(f"{where}['params'] must be a list of arrays")
        value = [_as_array(p) for p in value]
    hyper = {k: v for k, v in spec.items() if k != kind}
    bad = sorted(set(hyper) - set(rule.hyper_names))
    if bad:
        raise ValueError(f"{where} sets {bad}, which {rule.class_name} does not have (its "
                         f"hyper-parameters: {', '.join(rule.hyper_names)})")
    return (kind, value), rule.check(**hyper)


def check_structural(optimizer, overrides, where):
    """Groups share the optimizer's state buffers, so a group's structural options
    (amsgrad, RMSprop's momentum and centered) must pick the optimizer's row of the rule
    table: RMSprop(momentum=0.9) may give a group momentum 0.5, not 0."""
    rule = type(optimizer).rule
    if ("state_dtype" in overrides
            and overrides["state_dtype"] != optimizer._hyper.get("state_dtype")):
        raise ValueError(
            f"{where} sets state_dtype={overrides['state_dtype']!r}: every group keeps "
            f"its state in the optimizer's format "
            f"(state_dtype={optimizer._hyper.get('state_dtype')!r}); set it on the "
            f"optimizer, or use two optimizers")
    fixed = [k for k in overrides if k in rule.structural]
    if fixed and rule.row_for({**optimizer._hyper, **overrides}) is not optimizer.rule:
        buffers = ", ".join(optimizer.rule.state)
        raise ValueError(
            f"{where} sets {', '.join(f'{k}={overrides[k]!r}' for k in fixed)}, which "
            f"would need other state buffers than the optimizer's ({buffers}): "
            f"every group shares them; set it on the optimizer (e.g. "
            f"{rule.class_name}({fixed[0]}=...) and a group value that keeps it on), or "
            f"use two optimizers")


def _as_array(p):
    if hasattr(p, "__array_interface__"):
        return p
    if hasattr(p, "__dlpack__"):  # a torch tensor: its NumPy view, matched by memory
        from . import _dlpack
        return _dlpack.view(p)
    raise TypeError(f"groups 'params' holds {type(p).__name__}, not an array")


class GroupTable:
    """An optimizer's groups: which group a new parameter joins, each group's
    hyper-parameters and the kernel scalars of any (group, step)."""

    def __init__(self, optimizer, specs):
        if isinstance(specs, Mapping) or not hasattr(specs, "__iter__"):
            raise TypeError("groups must be a list of dicts, e.g. "
                            "[{'match': '*.bias', 'weight_decay': 0.0}]")
        self.optimizer = optimizer
        rule = optimizer.rule
        self.groups = [Group(self, 0, ("default", None), {})]
        for i, spec in enumerate(specs):
            selector, overrides = _parse(spec, i, rule)
            check_structural(optimizer, overrides, f"groups[{i}]")
            self.groups.append(Group(self, i + 1, selector, overrides))
        if len(self.groups) > MAX_GROUPS:
            raise ValueError(f"at most {MAX_GROUPS} groups")
        self._steppers = {}

    def changed(self):
        """A group's hyper-parameters changed: its scalars are made again."""
        self._steppers.clear()
        self.optimizer._scalar_cache.clear()

    def resolve(self, key, param):
        for g in self.groups[1:]:
            if g.selects(key, param):
                return g.index
        return 0

    def hyper(self, index):
        return self.groups[index].hyper()

    def initial_values(self, index):
        return self.optimizer.rule.initial_values(self.hyper(index))

    def scalars_at(self, boxed_step):
        """The kernel scalars for a step box value (group and step)."""
        group, step = split(boxed_step)
        stepper = self._steppers.get(group)
        if stepper is None:
            stepper = self.optimizer.rule.stepper(self.hyper(group))
            self._steppers[group] = stepper
        return stepper(step)

    # -- saving --------------------------------------------------------------------------

    def overrides(self):
        """Per group after 0, what it sets (for state_dict)."""
        return [g.overrides for g in self.groups[1:]]

    def load(self, overrides, hyper=None):
        """Restore the groups' settings from ``overrides()`` (same number of groups),
        for the optimizer's hyper-parameters ``hyper`` (its own by default)."""
        rule = self.optimizer.rule
        hyper = self.optimizer._hyper if hyper is None else hyper
        row = type(self.optimizer).rule.row_for(hyper)
        checked = []
        for i, o in enumerate(overrides):
            if not isinstance(o, Mapping):
                raise ValueError(f"groups[{i}] of the state_dict must be a dict")
            bad = sorted(set(o) - set(rule.hyper_names))
            if bad:
                raise ValueError(f"groups[{i}] of the state_dict sets {bad}, which "
                                 f"{rule.class_name} does not have")
            o = rule.check(**o)
            if "state_dtype" in o and o["state_dtype"] != hyper.get("state_dtype"):
                raise ValueError(f"groups[{i}] of the state_dict sets state_dtype="
                                 f"{o['state_dtype']!r}, and every group keeps its state "
                                 f"in its optimizer's format")
            if row.structural and type(self.optimizer).rule.row_for({**hyper, **o}) is not row:
                raise ValueError(f"groups[{i}] of the state_dict sets a structural option "
                                 f"({', '.join(k for k in o if k in row.structural)}) that "
                                 f"needs other state buffers than its optimizer's")
            checked.append(o)
        if len(checked) != len(self.groups) - 1:
            raise ValueError(f"the state_dict has {len(checked)} parameter groups, this "
                             f"optimizer {len(self.groups) - 1}: make it with the same "
                             f"groups")
        for g, o in zip(self.groups[1:], checked):
            object.__setattr__(g, "_overrides", o)
        self.changed()


def saved_groups(overrides):
    """Group dicts that reproduce saved groups for :func:`fastoptim.load`: each selects
    nothing new (its saved parameters keep their group through their state)."""
    return [{"keys": (), **o} for o in overrides]


def check_index(key, value, n_groups):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not (
            0 <= value < n_groups):
        raise ValueError(f"state of parameter {key!r}: group must be an int in "
                         f"[0, {n_groups}), got {value!r}")
    return int(value)

