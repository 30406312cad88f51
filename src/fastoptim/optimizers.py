"""The optimizer classes: hold hyper-parameters and per-parameter state, and run one rule
over every parameter of an ``update(params, grads)`` call through the engine.

One class per row of the rule table (``fastoptim.rules``), made below from it: the
class's ``__init__`` takes the row's hyper-parameters with their defaults, its docstring
is composed from the row and the shared pieces of ``fastoptim._docs``. The math lives in
the kernels and in ``fastoptim.reference``; the transaction in ``fastoptim._engine``.
"""

from __future__ import annotations

import contextlib
import inspect
import numbers
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import _core, _docs, _engine, _threading, formats, reference, rules
from . import groups as _groups_mod
from ._dispatch import kernels as _kernels
from ._typing import Backend, Grads, Params, StateDict


def _single_producer(obj):
    """One non-NumPy array (a torch tensor, any DLPack producer) passed as ``params``."""
    return hasattr(obj, "__dlpack__") and not isinstance(obj, (Mapping, Sequence))


# kept for code that imported it from here
_pairs = _engine.pairs


class Optimizer:
    """Base class of the optimizers; each subclass is one rule of ``fastoptim.rules``
    (its class attribute ``rule``).

    Hyper-parameters are plain attributes (``opt.lr = 1e-4`` between updates is fine) and
    are validated whenever they are set.

    The state is the engine's records (``fastoptim._engine``), one per parameter key;
    ``state`` shows it as ``{key: {"step": int, name: array}}``.
    """

    rule: rules.Rule
    _rule: str
    _hyper_names: tuple = ()
    _group_table = _groups_mod.GroupTable  # what groups= makes
    # fastoptim.Accumulate's stepping call sets it for one update: the gradients' mean,
    # fused into the step where the fast path takes the call (see _Mean there)
    _means = None

    def __init__(self, *, num_threads: int | None = None, backend: Backend = "compiled",
                 skip_nonfinite: bool = False, groups: Any = None, **hyper: Any) -> None:
        object.__setattr__(self, "_scalar_cache", {})
        object.__setattr__(self, "_stepper", None)
        object.__setattr__(self, "_groups", None)
        self.num_threads = num_threads
        self.backend = backend
        self.skip_nonfinite = bool(skip_nonfinite)
        self.skipped_steps = 0
        for name in self._hyper_names:
            setattr(self, name, hyper[name])
        if groups is not None and (not hasattr(groups, "__len__") or len(groups)):
            object.__setattr__(self, "_groups", self._group_table(self, groups))
        self._slots = {}
        self._overlap_cache = []
        self._plan = []  # update_many's [keys, records] of the last call; [] = unknown
        self._steps = []  # the distinct steps of the last update
        # the adaptive threading policy's measurements for this optimizer's loop
        self._pacer = bytearray(_kernels.PACER_BYTES)
        if num_threads not in (None, 1) and not _kernels.openmp_enabled():
            warnings.warn("fastoptim was built without OpenMP: num_threads="
                          f"{num_threads} is ignored and every update runs on one core. "
                          "Rebuild with an OpenMP-capable compiler to use all cores.",
                          RuntimeWarning, stacklevel=3)

    def __setattr__(self, name, value):
        object.__setattr__(self, "_args", None)  # made again on the next update
        if name in self._hyper_names:
            value = self.rule.check(**{name: value})[name]
            if name in self.rule.structural:
                self._select_row({**self.__dict__.get("_hyper", {}), name: value}, name)
            self._scalar_cache.clear()  # the step scalars depend on it
            object.__setattr__(self, "_stepper", None)
            if self.__dict__.get("_groups") is not None:
                self._groups.changed()  # groups without their own value follow it
            self.__dict__.setdefault("_hyper", {})[name] = value
        elif name == "num_threads":
            object.__setattr__(self, "_nt", _core.check_num_threads(value))
        elif name == "backend":
            value = _core.backend_name(value)
            object.__setattr__(self, "_engine", _engine.ENGINES[value])
        object.__setattr__(self, name, value)

    def _select_row(self, hyper, name):
        """Run the row of the rule table these hyper-parameters pick (the rule's own,
        or a variant for structural options such as ``amsgrad``): it sets the state
        buffers, so it can change only while the optimizer holds no state."""
        row = type(self).rule.row_for(hyper)
        if hyper.get("state_dtype") == "int8" and row.int8_maps is None:
            have = ", ".join(rules.BY_NAME[n].class_name for n in rules.INT8_RULES)
            option = f" with {name}={hyper[name]!r}" if name != "state_dtype" else ""
            raise ValueError(
                f"{type(self).__name__} has no 8-bit state (state_dtype='int8'){option}: "
                f"the rules with it are {have} (the 8-bit optimizers paper's); use "
                f"state_dtype='bfloat16' or None")
        rule_id = row.id | formats.flag(hyper.get("state_dtype"))
        current = self.__dict__.get("rule", type(self).rule)
        table = self.__dict__.get("_groups")
        if table is not None:  # the groups keep to the optimizer's state buffers
            for g in table.groups[1:]:
                if type(self).rule.row_for({**hyper, **g.overrides}) is not row:
                    raise ValueError(f"{name}={hyper[name]!r} would give group {g.index} "
                                     f"(which sets {g.overrides}) other state buffers "
                                     f"than the optimizer's: change the group first")
        if row is current and rule_id == self._rule_id:
            return
        if self.__dict__.get("_slots") and row is current:
            raise ValueError(
                f"{name}={hyper[name]!r} changes the format of {type(self).__name__}'s "
                f"state buffers, which cannot change while it holds state: set {name} "
                f"when making the optimizer, or convert a state_dict (set its "
                f"hyperparams[{name!r}] and load it)")
        if self.__dict__.get("_slots"):
            raise ValueError(
                f"{name}={hyper[name]!r} changes {type(self).__name__}'s state buffers "
                f"({', '.join(current.state)} -> {', '.join(row.state)}), which cannot "
                f"change while it holds state: set {name} when making the optimizer, or "
                f"load a state_dict that has it")
        object.__setattr__(self, "rule", row)
        object.__setattr__(self, "_rule", row.name)
        object.__setattr__(self, "_rule_id", rule_id)
        if self.__dict__.get("_plan") is not None:
            self._plan.clear()

    def __repr__(self):
        # options at their defaults (maximize=False, ...) are left out, as they are off
        args = ", ".join(f"{h.name}={getattr(self, h.name)!r}" for h in self.rule.hyper
                         if not (h.option and getattr(self, h.name) == h.default))
        extra = ""
        if self.num_threads is not None:
            extra += f", num_threads={self.num_threads!r}"
        if self.backend != "compiled":
            extra += f", backend={self.backend!r}"
        return f"{type(self).__name__}({args}{extra})"

    @classmethod
    def _kind(cls):
        """The name ``state_dict()`` and checkpoints store for this class."""
        return cls.__name__

    @property
    def hyperparams(self):
        """The hyper-parameters as a dict."""
        return dict(self._hyper)

    @property
    def param_groups(self):
        """The parameter groups (:mod:`fastoptim.groups`): group 0, the optimizer's own
        hyper-parameters, then one per entry of ``groups``."""
        table = self._groups
        if table is None:
            return _groups_mod.GroupTable(self, []).groups
        return list(table.groups)

    def _step_of(self, record):
        """(steps, group) of a state record."""
        return _groups_mod.split(int(record[0]))[::-1]

    @property
    def state(self):
        """Per parameter key: ``{"step": int, <state name>: array, ...}`` (and
        ``"group"``, its group's index, with ``groups``). The arrays are the live state
        buffers; the dicts are made for each access. With ``state_dtype="int8"`` an
        8-bit parameter's buffers are its codes (uint8) and ``<state name>_absmax``
        arrays (float32, one per block of 256; ``fastoptim.formats.dequantized`` gives
        the values)."""
        grouped = self._groups is not None
        out = {}
        for key, rec in self._slots.items():
            step, group = self._step_of(rec)
            entry = {"step": step, **dict(zip(self._names_of(rec), rec[1:]))}
            if grouped:
                entry["group"] = group
            out[key] = entry
        return out

    def _names_of(self, record):
        """The names of a state record's arrays (an 8-bit record's: the codes, their
        ``<name>_absmax``, the average; fastoptim.formats)."""
        names = self.rule.state
        if formats.is_int8_record(record, names):
            return formats.int8_names(names)
        return names

    @property
    def state_nbytes(self) -> int:
        """Bytes of memory the optimizer's state buffers hold now, over every parameter
        with state (as ``ndarray.nbytes``: the data, not the objects around it; each
        parameter's step count, 8 bytes, is not counted). With ``state_dtype=
        'bfloat16'`` the rule's buffers take 2 bytes per element."""
        return sum(b.nbytes for rec in self._slots.values() for b in rec[1:])

    @property
    def state_nbytes_per_param(self) -> float:
        """:attr:`state_nbytes` per parameter element with state (0.0 before the first
        update and for a rule without state buffers)."""
        n = sum(rec[1].size for rec in self._slots.values() if len(rec) > 1)
        return self.state_nbytes / n if n else 0.0

    # -- the step ------------------------------------------------------------------------

    def update(self, params: Params, grads: Grads) -> bool:
        """Update every parameter in place from its gradient.

        Parameters
        ----------
        params : dict of ndarray, or sequence of ndarray, or ndarray
            float32/float64, writeable, C- or F-contiguous arrays, updated in place. The
            values of a dict or list may also be numbers (Python float or int, NumPy
            float64 or float32 scalar), as in the book's scripts: each is updated as a
            0-d array of its dtype and rebound (``params[key] = new value``, of the
            number's type) once the step has run; a tuple cannot be rebound.
        grads : same kind as ``params``
            Same keys (or length and order); each gradient has its parameter's shape and
            dtype, any memory layout. Gradients are never modified.

        Every array is checked before any is changed: on error, parameters and state are
        exactly as they were.

        Returns
        -------
        bool
            True when the step was applied. False only with ``skip_nonfinite=True``, when
            some gradient element was NaN or Inf: then no parameter or state buffer was
            written, no step was counted, and ``skipped_steps`` went up by one.
        """
        tp, tg = type(params), type(grads)
        target = None  # the caller's container, where ``params`` is made anew below
        if not ((tp is dict and tg is dict)
                or (tp in (list, tuple) and tg in (list, tuple) and len(params) == len(grads))):
            if isinstance(params, np.ndarray) or _single_producer(params):
                params, grads = [params], [grads]
            target = params
            pairs = _engine.pairs(params, grads)  # raises for mismatched kinds, keys, lengths
            if isinstance(params, Mapping):
                params = {k: p for k, p, _ in pairs}
                grads = {k: g for k, _, g in pairs}
            else:
                params = [p for _, p, _ in pairs]
                grads = [g for _, _, g in pairs]
        args = self._args
        if args is None or args[-1] is not _threading.adaptive:
            args = self._make_args()
        if self._groups is not None:
            return self._update_grouped(params, grads, args, target)
        stepper = self._stepper
        if stepper is None:  # step -> scalars, for the current hyper-parameters
            stepper = self.rule.stepper(self._hyper)
            object.__setattr__(self, "_stepper", stepper)
            # per instance: an option such as AdaGrad's lr_decay makes scalars stepped
            object.__setattr__(self, "_stepped", self.rule.is_stepped(self._hyper))
            object.__setattr__(self, "_fixed_scalars", None if self._stepped else stepper(1))
        if self._stepped:
            scalars = self._scalar_cache
            for s in args[3]:  # the next steps' scalars, so the fast path takes the call
                if s + 1 not in scalars:
                    if len(scalars) > 64:
                        scalars.clear()
                    scalars[s + 1] = stepper(s + 1)
        else:  # the same scalars for every step
            scalars = self._fixed_scalars
        engine = self._engine
        # _engine.step, with its first call made here (one Python call less per update)
        means = self._means
        applied = engine.fast(self._rule_id, params, grads, self._slots, scalars, *args[:6],
                              None if means is None else means.fused)
        if applied is not True and applied is not False:
            if means is not None:  # the means in NumPy, then the usual path with them
                grads = means.computed(params)
            applied = _engine.finish(engine, self.rule, params, grads, self._slots, scalars,
                                     self._hyper, applied, args[:6], _engine.ClassNames,
                                     target, rule_id=self._rule_id)
        if not applied:
            self.skipped_steps += 1
        return applied

    def _update_grouped(self, params, grads, args, target):
        """update() with parameter groups: the scalars of every (group, step) the last
        call took, one step on, then the same single engine call."""
        table = self._groups
        scalars = self._scalar_cache
        for s in args[3]:
            if s + 1 not in scalars:
                if len(scalars) > 64:
                    scalars.clear()
                scalars[s + 1] = table.scalars_at(s + 1)
        engine = self._engine
        means = self._means
        applied = engine.fast(self._rule_id, params, grads, self._slots, scalars, *args[:6],
                              None if means is None else means.fused)
        if applied is not True and applied is not False:
            if means is not None:
                grads = means.computed(params)
            applied = _engine.finish(engine, self.rule, params, grads, self._slots, scalars,
                                     self._hyper, applied, args[:6], _engine.ClassNames,
                                     target, groups=table, rule_id=self._rule_id)
        if not applied:
            self.skipped_steps += 1
        return applied

    def _make_args(self):
        """The engine's per-call arguments (num_threads, overlap cache, plan, steps,
        skip_nonfinite, pacer), and last the threading policy they were made for; kept
        until one of them changes (and made anew after :meth:`swap_ema`, so that the
        check of the swap costs an update nothing)."""
        self._check_not_swapped("update")
        adaptive = _threading.adaptive
        args = (self._nt, self._overlap_cache, self._plan, self._steps,
                self.skip_nonfinite, self._pacer if adaptive and self._nt == 0 else None,
                adaptive)
        object.__setattr__(self, "_args", args)
        return args

    # -- the moving average (ema) --------------------------------------------------------

    @property
    def ema_swapped(self) -> bool:
        """Whether the parameters hold their moving averages now (see :meth:`swap_ema`)."""
        return self.__dict__.get("_ema_swap", False)

    def _check_not_swapped(self, what):
        if self.__dict__.get("_ema_swap", False):
            raise RuntimeError(
                f"the parameters hold their moving averages (after swap_ema) and the "
                f"ema state the trained values: call opt.swap_ema(params) again before "
                f"{what}")

    def _with_state(self, params, index, what, left):
        """(params as a container, [(the parameter's view, buffer ``index`` of its state
        record, (key, number type) to rebind a number or None, the record)]) for every
        parameter of ``params`` that has state, each checked against its buffer; raises,
        before anything is written, when one the optimizer has state for is missing
        (it would be left ``left``)."""
        if isinstance(params, np.ndarray) or _single_producer(params):
            params = [params]
        work = []
        seen = set()
        for key, p, _ in _engine.pairs(params, params):
            record = self._slots.get(key)
            seen.add(key)
            if record is None:
                continue  # no step yet
            boxed = _engine.scalar_box(p)
            if boxed is not None:
                if not _engine._rebindable(params):
                    raise TypeError(f"parameter {key!r} is a number in a "
                                    f"{type(params).__name__}, which cannot be rebound; "
                                    f"pass a list or a dict")
                view, rebind = boxed[0], (key, boxed[1])
            else:
                view, _ = _core.check_param(f"parameter {key!r}", p)
                rebind = None
            buf = record[index]
            if view.shape != buf.shape or (view.dtype != buf.dtype and not (
                    formats.is_bfloat16(buf) and view.dtype == np.float32)):
                raise ValueError(f"parameter {key!r} has shape {view.shape} and dtype "
                                 f"{view.dtype}, but its state has {buf.shape} and "
                                 f"{buf.dtype}")
            work.append((view, buf, rebind, record))
        missing = [k for k in self._slots if k not in seen]
        if missing:
            raise ValueError(f"{what} needs every parameter the optimizer has state for; "
                             f"missing {', '.join(map(repr, missing))} (it would be left "
                             f"{left})")
        return params, work

    def swap_ema(self, params: Params) -> None:
        """Swap every parameter that has state with its moving average (the ``ema``
        state buffer), in place: the first call puts the averages in the parameters
        (evaluate or export the model there), the next puts the trained values back,
        bit for bit. :meth:`update`, :meth:`state_dict` and checkpoints refuse to run
        while the averages are swapped in (:attr:`ema_swapped`). ``params`` is what
        :meth:`update` takes (the same keys); it must hold every parameter the optimizer
        has state for. See also :meth:`ema_applied`."""
        if "ema" not in self.rule.state:
            if self.rule.schedule_free:
                raise ValueError(f"{type(self).__name__} keeps no moving average: its "
                                 f"average x is what opt.eval(params) swaps in")
            raise ValueError(f"{type(self).__name__} keeps no moving average: make it with "
                             f"ema=0.999 (or another decay in (0, 1))")
        params, work = self._with_state(params, -1, "swap_ema()", "unswapped")
        for view, avg, rebind, _ in work:
            kept = view.copy(order="K")
            np.copyto(view, avg)
            np.copyto(avg, kept)
            if rebind is not None:
                key, kind = rebind
                params[key] = view.item() if kind is float else view[()]
        object.__setattr__(self, "_ema_swap", not self.ema_swapped)
        object.__setattr__(self, "_args", None)  # the next update checks the swap

    @contextlib.contextmanager
    def ema_applied(self, params: Params):
        """``with opt.ema_applied(params): evaluate(...)``: the moving averages are in
        the parameters inside the block (:meth:`swap_ema`), the trained values again
        after it, also when the block raises. ``params`` must be a container whose
        arrays are updated in place (a dict or a list; numbers in it are rebound)."""
        self.swap_ema(params)
        try:
            yield params
        finally:
            self.swap_ema(params)

    # -- checkpoints ---------------------------------------------------------------------

    def state_dict(self) -> StateDict:
        """The optimizer's hyper-parameters and state as plain Python and NumPy values
        (copies: later updates do not change it)."""
        self._check_not_swapped("state_dict()")
        grouped = self._groups is not None
        state = {}
        for key, rec in self._slots.items():
            step, group = self._step_of(rec)
            entry = {"step": step, **{n: b.copy(order="K")
                                      for n, b in zip(self._names_of(rec), rec[1:])}}
            if grouped:
                entry["group"] = group
            state[key] = entry
        out = {"optimizer": self._kind(), "hyperparams": self.hyperparams, "state": state}
        if grouped:
            out["groups"] = self._groups.overrides()
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what ``state_dict()`` returned, so that continuing is bit-identical to
        never having stopped. Nothing changes if the dict does not fit this optimizer."""
        grouped = self._groups is not None
        keys = {"optimizer", "hyperparams", "state"} | ({"groups"} if grouped else set())
        if isinstance(state_dict, Mapping) and set(state_dict) ^ keys == {"groups"}:
            raise ValueError(
                "this state_dict has parameter groups and this optimizer none: make it "
                "with the same groups=" if not grouped else
                "this optimizer has parameter groups and the state_dict none")
        if not isinstance(state_dict, Mapping) or set(state_dict) != keys:
            raise ValueError("state_dict must be a dict with keys 'optimizer', "
                             "'hyperparams' and 'state' (and 'groups' with parameter "
                             "groups), as returned by state_dict()")
        kind = state_dict["optimizer"]
        if kind != self._kind():
            raise ValueError(f"this state_dict belongs to a {kind} optimizer, not "
                             f"{self._kind()}")
        hyper = dict(state_dict["hyperparams"])
        for h in self.rule.hyper:  # an option added since the state_dict was made: off
            if h.option and h.name not in hyper:
                hyper[h.name] = h.default
        if set(hyper) != set(self._hyper_names):
            raise ValueError(f"hyperparams must have exactly the keys "
                             f"{sorted(self._hyper_names)}, got {sorted(hyper)}")
        hyper = self.rule.check(**hyper)
        row = type(self).rule.row_for(hyper)
        names = row.state
        fields = ["step", *names] + (["group"] if grouped else [])
        fields8 = ["step", *formats.int8_names(names)] + (["group"] if grouped else [])
        n_groups = len(state_dict["groups"]) + 1 if grouped else 1
        slots = {}
        for key, st in dict(state_dict["state"]).items():
            if not isinstance(st, Mapping) or (set(st) != set(fields)
                                               and set(st) != set(fields8)):
                raise ValueError(f"state of parameter {key!r} must have the keys "
                                 f"{fields}" + (f" (8-bit state: {fields8})"
                                                if row.int8_maps else ""))
            step = st["step"]
            if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
                raise ValueError(f"state of parameter {key!r}: step must be an int >= 0, "
                                 f"got {step!r}")
            if step >= _groups_mod.STRIDE:
                raise ValueError(f"state of parameter {key!r}: step {step} is too large")
            if grouped:
                group = _groups_mod.check_index(key, st["group"], n_groups)
                step = group * _groups_mod.STRIDE + int(step)
            slots[key] = _loaded_record(key, st, names, row.int8_maps, step,
                                        hyper.get("state_dtype"))
        if grouped:
            self._groups.load(state_dict["groups"], hyper)  # checks the number of groups
        self._slots = {}  # so that a structural option may pick another row
        for n, v in hyper.items():
            setattr(self, n, v)
        self._slots = slots
        self._plan.clear()
        self._steps.clear()
        object.__setattr__(self, "_ema_swap", False)  # saved state is never swapped


def _loaded_record(key, st, names, maps, step, state_dtype):
    """A state record from a state_dict's entry ``st`` in the format ``state_dtype``:
    8-bit state in an 8-bit optimizer as is (codes and absmax checked); otherwise
    every buffer as float values (8-bit state dequantised), then in the format:
    quantised for an 8-bit array (rules.INT8_MIN_SIZE elements or more), else as
    :func:`_loaded_buffer` converts."""
    own = [n for n in names if n != "ema"]
    given8 = bool(own) and f"{own[0]}_absmax" in st
    record = [np.array(step, dtype=np.int64)]
    floats = {}
    for i, n in enumerate(own):
        if given8:
            codes, absmax = st[n], st[f"{n}_absmax"]
            if not (isinstance(codes, np.ndarray) and codes.dtype == np.uint8
                    and isinstance(absmax, np.ndarray) and absmax.dtype == np.float32
                    and absmax.shape == ((codes.size + rules.INT8_BLOCK - 1)
                                         // rules.INT8_BLOCK,)
                    and codes.shape == st[own[0]].shape):
                raise ValueError(f"state {n!r} of parameter {key!r}: 8-bit state must be "
                                 f"uint8 codes of the parameter's shape and a float32 "
                                 f"absmax per block of {rules.INT8_BLOCK}")
            if state_dtype == "int8" and codes.size >= rules.INT8_MIN_SIZE:
                continue  # kept as is below
            floats[n] = formats.dequantized(codes, absmax, maps[i])
        else:
            floats[n] = st[n]
    shape = st[own[0]].shape if own else None
    if state_dtype == "int8" and own and int(np.prod(shape)) >= rules.INT8_MIN_SIZE:
        if given8:
            codes = [np.array(st[n], copy=True, order="K") for n in own]
            absmax = [np.array(st[f"{n}_absmax"], copy=True) for n in own]
        else:
            codes, absmax = [], []
            for i, n in enumerate(own):
                buf = _loaded_buffer(key, n, floats[n], floats[own[0]], None)
                if buf.dtype != np.float32:
                    raise ValueError(f"state {n!r} of parameter {key!r} is {buf.dtype}, "
                                     f"and state_dtype='int8' keeps the state of float32 "
                                     f"parameters")
                c, a = formats.quantized(buf, maps[i])
                codes.append(c)
                absmax.append(a)
        record += [*codes, *absmax]
    else:
        fmt = None if state_dtype == "int8" else state_dtype
        record += [_loaded_buffer(key, n, floats[n], floats[own[0]], fmt) for n in own]
    if "ema" in names:
        record.append(_loaded_buffer(key, "ema", st["ema"], st["ema"], None))
    return record


def _loaded_buffer(key, name, buf, first, state_dtype):
    """A copy of state buffer ``name`` of a state_dict in the format ``state_dtype``:
    float32 or float64 as is for None (bfloat16 widened to float32, exactly); bfloat16
    as is, or float32 rounded to it, for "bfloat16" -- so that changing ``state_dtype``
    in a state_dict converts its state. Raises for anything else."""
    if not isinstance(buf, np.ndarray) or (buf.dtype not in _core.FLOAT_DTYPES
                                           and not formats.is_bfloat16(buf)):
        raise TypeError(f"state {name!r} of parameter {key!r} must be a float32, float64 "
                        f"or bfloat16 array")
    if buf.shape != first.shape:
        raise ValueError(f"state buffers of parameter {key!r} differ in shape")
    if state_dtype is None:
        if formats.is_bfloat16(buf):
            return np.array(buf, dtype=np.float32, order="K")
        return np.array(buf, copy=True, order="K")
    if formats.is_bfloat16(buf):
        return np.array(buf, dtype=formats.bfloat16(), copy=True, order="K")
    if buf.dtype != np.float32:
        raise ValueError(f"state {name!r} of parameter {key!r} is {buf.dtype}, and "
                         f"state_dtype={state_dtype!r} keeps the state of float32 "
                         f"parameters")
    out = np.empty_like(buf, dtype=formats.bfloat16(), order="K")
    reference.to_bfloat16(buf, out)
    return out


class ScheduleFree(Optimizer):
    """Base class of the Schedule-Free optimizers (rows with ``schedule_free``).

    The parameters hold the gradient point ``y``; the state ``z`` the base sequence; the
    point to evaluate the model at is the average ``x``, with ``y = (1-b1)*z + b1*x``.
    :meth:`eval` moves the parameters to ``x``, :meth:`train` back to ``y`` (in place,
    as the authors' ``optimizer.eval()`` / ``optimizer.train()``); :meth:`update` runs
    in train mode only.

    The averaging's weights depend on every learning rate so far, so the optimizer keeps
    ``(step, lr_max, weight_sum)`` -- with ``train_mode`` its *optimizer state* -- and
    advances it once per applied update (a skipped or refused update leaves it as it
    was): every parameter of one call takes that step's scalars, whatever its own step
    count. ``state_dict()`` holds it under ``"optimizer_state"`` (and checkpoints in their
    header), so that a resumed run is bit-identical. The per-step scalar cache of the
    other classes is not used: the scalars are worked out once per update.

    With parameter groups, each group keeps its own ``lr_max`` and ``weight_sum`` (from
    its own learning rates and hyper-parameters, as the authors' code keeps them per
    param group), and the step count is shared: every group advances once per applied
    update. ``optimizer_state`` then gives ``lr_max`` and ``weight_sum`` as lists, group
    0 first.
    """

    # the optimizer state before the first update (instances assign their own)
    _sf_state = (*rules.SCHEDULE_FREE_START, True)  # (k, lr_max, weight_sum, train_mode)
    _OPTIMIZER_STATE = ("step", "lr_max", "weight_sum", "train_mode")

    @property
    def train_mode(self) -> bool:
        """Whether the parameters hold ``y`` (train mode, where :meth:`update` runs) or
        the average ``x`` (eval mode, after :meth:`eval`)."""
        return self._sf_state[3]

    @property
    def optimizer_state(self):
        """``{"step": updates applied, "lr_max": float, "weight_sum": float,
        "train_mode": bool}``: the state that is the optimizer's, not a parameter's
        (with groups, ``lr_max`` and ``weight_sum`` are lists, one per group)."""
        k, lr_max, weight_sum, train_mode = self._sf_state
        if self._groups is not None:
            n = len(self._groups.groups)
            lr_max, weight_sum = list(_per_group(lr_max, n)), list(_per_group(weight_sum, n))
        return dict(zip(self._OPTIMIZER_STATE, (k, lr_max, weight_sum, train_mode)))

    def update(self, params: Params, grads: Grads) -> bool:
        k, lr_max, weight_sum, train_mode = self._sf_state
        if not train_mode:
            raise RuntimeError(
                f"{type(self).__name__} is in eval mode (the parameters hold the average "
                f"x, see eval()): call opt.train(params) before update, and opt.eval("
                f"params) again before evaluating or saving the model")
        table = self._groups
        if table is not None:  # per group: its scalars, lr_max and weight_sum
            n = len(table.groups)
            lr_max, weight_sum = _per_group(lr_max, n), _per_group(weight_sum, n)
            current, new_max, new_sum = [], [], []
            for g in range(n):
                hyper = table.hyper(g)
                sc, m, w = rules.schedulefree_step(k, lr_max[g], weight_sum[g], **hyper)
                current.append((*sc, -1.0 if hyper["maximize"] else 1.0))
                new_max.append(m)
                new_sum.append(w)
            table.current = current
            self._scalar_cache.clear()  # the scalars of (group, step) are this update's
            applied = Optimizer.update(self, params, grads)
            if applied:
                object.__setattr__(self, "_sf_state",
                                   (k + 1, tuple(new_max), tuple(new_sum), True))
            return applied
        scalars, lr_max, weight_sum = rules.schedulefree_step(k, lr_max, weight_sum,
                                                              **self._hyper)
        scalars = (*scalars, -1.0 if self._hyper["maximize"] else 1.0)  # the engine's
        # Optimizer.update with this step's scalars as the one tuple for every parameter
        object.__setattr__(self, "_stepper", _ScheduleFreeScalars)
        object.__setattr__(self, "_fixed_scalars", scalars)
        applied = Optimizer.update(self, params, grads)
        if applied:
            object.__setattr__(self, "_sf_state", (k + 1, lr_max, weight_sum, True))
        return applied

    update.__doc__ = Optimizer.update.__doc__

    def eval(self, params: Params) -> None:
        """Move every parameter that has state from ``y`` to the average ``x``,
        ``p <- p + (1 - 1/b1)*(z - p)``, in place; the optimizer goes to eval mode.
        ``params`` is what :meth:`update` takes (the same keys). Nothing happens in eval
        mode already (as the authors')."""
        self._swap(params, to_train=False)

    def train(self, params: Params) -> None:
        """Move every parameter that has state from the average ``x`` back to ``y``,
        ``p <- p + (1 - b1)*(z - p)``, in place; the optimizer goes to train mode.
        Nothing happens in train mode already. ``train(eval(p))`` gives ``p`` back to
        rounding (a few units in the last place), not bit for bit."""
        self._swap(params, to_train=True)

    def _swap(self, params, to_train):
        k, lr_max, weight_sum, train_mode = self._sf_state
        if train_mode == to_train:
            return
        table = self._groups

        def weight_of(record):  # of the record's group (the optimizer's without groups)
            beta1 = (self._hyper if table is None else
                     table.hyper(_groups_mod.split(int(record[0]))[0]))["betas"][0]
            return 1.0 - beta1 if to_train else 1.0 - 1.0 / beta1
        what = "eval()" if not to_train else "train()"
        params, found = self._with_state(params, 1, what, "at the other point")
        work = [(z, view, rebind, weight_of(record)) for view, z, rebind, record in found]
        for z, view, rebind, weight in work:
            t = view.dtype.type
            diff = np.subtract(z, view)
            diff *= t(weight)
            view += diff
            if rebind is not None:
                key, kind = rebind
                params[key] = view.item() if kind is float else view[()]
        object.__setattr__(self, "_sf_state", (k, lr_max, weight_sum, to_train))

    def state_dict(self) -> StateDict:
        sd = Optimizer.state_dict(self)
        sd["optimizer_state"] = self.optimizer_state
        return sd

    state_dict.__doc__ = Optimizer.state_dict.__doc__

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what ``state_dict()`` returned (with its ``"optimizer_state"``), so that
        continuing is bit-identical to never having stopped. Nothing changes if the dict
        does not fit this optimizer."""
        if not isinstance(state_dict, Mapping) or "optimizer_state" not in state_dict:
            raise ValueError(f"a {type(self).__name__} state_dict must have the keys "
                             f"'optimizer', 'hyperparams', 'state' and 'optimizer_state', "
                             f"as returned by state_dict()")
        rest = {n: v for n, v in state_dict.items() if n != "optimizer_state"}
        if ("groups" in rest) != (self._groups is not None):
            Optimizer.load_state_dict(self, rest)  # raises the error for the groups
            raise RuntimeError("internal error: a groups mismatch was accepted")
        new = _check_optimizer_state(
            state_dict["optimizer_state"], self._OPTIMIZER_STATE,
            None if self._groups is None else len(self._groups.groups))
        Optimizer.load_state_dict(self, rest)
        object.__setattr__(self, "_sf_state", new)


def _ScheduleFreeScalars(step):  # noqa: N802 -- stands where a rule's stepper goes
    raise RuntimeError("internal error: Schedule-Free scalars are worked out per update")


def _per_group(value, n):
    """A Schedule-Free optimizer's lr_max or weight_sum per group: a number (the state
    before the first update with groups, the same for each) or a tuple of n."""
    return value if isinstance(value, tuple) else (value,) * n


class _ScheduleFreeGroups(_groups_mod.GroupTable):
    """A Schedule-Free optimizer's groups: the kernel scalars of a (group, step) are
    those of the update in progress (``current``, per group, set by
    ``ScheduleFree.update``), whatever the parameter's own step count."""

    current = ()

    def scalars_at(self, boxed_step):
        return self.current[_groups_mod.split(boxed_step)[0]]


ScheduleFree._group_table = _ScheduleFreeGroups


def _check_optimizer_state(st, names, n_groups=None):
    """(k, lr_max, weight_sum, train_mode) from a state_dict's "optimizer_state" (with
    ``n_groups`` groups, lr_max and weight_sum are lists of that many, made tuples)."""
    if not isinstance(st, Mapping) or set(st) != set(names):
        raise ValueError(f"optimizer_state must have exactly the keys {list(names)}")
    k, lr_max, weight_sum, train_mode = (st[n] for n in names)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"optimizer_state: step must be an int >= 0, got {k!r}")

    def numbers_of(n, v):
        if n_groups is None:
            return [v]
        if not isinstance(v, (list, tuple)) or len(v) != n_groups:
            raise ValueError(f"optimizer_state: {n} must be a list of {n_groups} numbers "
                             f"(one per parameter group, group 0 first), got {v!r}")
        return list(v)
    for n, v in (("lr_max", lr_max), ("weight_sum", weight_sum)):
        for x in numbers_of(n, v):
            if isinstance(x, bool) or not isinstance(x, numbers.Real) or not np.isfinite(x):
                raise ValueError(f"optimizer_state: {n} must be "
                                 f"{'a finite number' if n_groups is None else 'finite numbers'}"
                                 f", got {v!r}")
    if any(x < 0 for x in numbers_of("weight_sum", weight_sum)):
        raise ValueError(f"optimizer_state: weight_sum must be >= 0, got {weight_sum!r}")
    if not isinstance(train_mode, (bool, np.bool_)):
        raise ValueError(f"optimizer_state: train_mode must be a bool, got {train_mode!r}")
    if n_groups is None:
        return (int(k), float(lr_max), float(weight_sum), bool(train_mode))
    return (int(k), tuple(float(x) for x in lr_max), tuple(float(x) for x in weight_sum),
            bool(train_mode))


# ---------------------------------------------------------------------------------------
# One class per row of the rule table
# ---------------------------------------------------------------------------------------

_OPTIONS = ("num_threads=None", "backend='compiled'", "skip_nonfinite=False", "groups=None")


def _init_source(rule):
    """The source of a rule class's ``__init__``: the table's hyper-parameters (the first
    ``rule.positional`` of them positional), then the shared keyword-only options --
    written out, so that signatures, help() and the errors for bad calls are Python's
    own. ``__init__`` itself takes anything and first looks for torch.optim's call
    (parameters first, see :func:`_check_not_params`), so that call gets fastoptim's
    error rather than Python's "got multiple values for argument 'lr'"."""
    pos = [f"{h.name}=_d[{h.name!r}]" for h in rule.hyper[:rule.positional]]
    kw = [f"{h.name}=_d[{h.name!r}]" for h in rule.hyper[rule.positional:]]
    args = ", ".join(["self", *pos, "*", *kw, *_OPTIONS])
    passed = ", ".join(f"{h.name}={h.name}" for h in rule.hyper)
    # the inner function's code is named __init__, so that Python's errors for bad calls
    # say "__init__()" on Python 3.9 too (3.10+ names the qualname, "Adam.__init__()")
    return (f"def __init__({args}):\n"
            f"    Optimizer.__init__(self, {passed}, num_threads=num_threads, "
            f"backend=backend, skip_nonfinite=skip_nonfinite, groups=groups)\n"
            f"_inner = __init__\n"
            f"def _entry(self, *args, **kwargs):\n"
            f"    if args:\n"
            f"        _check_not_params(_rule, args, kwargs)\n"
            f"    if kwargs:\n"
            f"        _check_keywords(_rule, kwargs)\n"
            f"    _inner(self, *args, **kwargs)\n")


def _looks_like_params(value):
    """Whether ``value``, given where a hyper-parameter goes, is parameters instead: a
    dict, an array of more than one dimension... anything iterable (a list, a tuple,
    a generator such as torch's ``model.parameters()``) or a tensor; not a number, a
    0-d array or a string."""
    if isinstance(value, (numbers.Number, str, bytes)):
        return False
    if isinstance(value, np.ndarray):
        return value.ndim > 0
    return (isinstance(value, Mapping) or hasattr(value, "__iter__")
            or hasattr(value, "__next__") or hasattr(value, "__dlpack__"))


def _check_not_params(rule, args, kwargs):
    """Raise fastoptim's error for torch.optim's constructor call, ``Adam(params,
    lr=1e-3)``: a first positional argument that looks like parameters and is not a
    value the rule's first hyper-parameter takes (so ``Adam(1e-3, (0.9, 0.99))`` and
    any other call that works stay as they are)."""
    first = args[0]
    if not _looks_like_params(first):
        return
    if (type(first) in (tuple, list) and rule.hyper[0].name not in kwargs
            and all(isinstance(x, numbers.Real) for x in first)):
        return  # numbers where lr goes and no lr= (``Adam((0.9, 0.99))``): the rule's error
    try:
        rule.check(**{rule.hyper[0].name: first})
        return
    except (TypeError, ValueError):
        pass
    given = dict(zip(rule.hyper_names, args[1:]))  # torch's order: params, lr, ...
    given.update(kwargs)
    shown = ", ".join(f"{k}={v!r}" for k, v in given.items())
    raise TypeError(
        f"fastoptim optimizers take the parameters in update(params, grads), not in the "
        f"constructor (torch.optim's {rule.class_name}(model.parameters(), ...)): use "
        f"opt = fo.{rule.class_name}({shown}) and call opt.update(params, grads) at each "
        f"step; got {type(first).__name__} as the first argument, where {rule.hyper[0].name} "
        f"goes (for per-parameter options, torch's param groups, pass "
        f"groups=[{{'params': [...], 'lr': ...}}] or select by key: see fastoptim.groups)")


# Other libraries' spellings of a hyper-parameter: (keyword, fastoptim's hyper-parameter,
# how to pass it, whose spelling). The book's ("Deep Learning from Scratch") and Keras'.
_FOREIGN_KEYWORDS = (
    ("beta1", "betas", "betas=(beta1, beta2)", "the book's"),
    ("beta2", "betas", "betas=(beta1, beta2)", "the book's"),
    ("decay_rate", "alpha", "alpha=decay_rate", "the book's"),
    ("decay_rate", "rho", "rho=decay_rate", "the book's"),
    ("beta_1", "betas", "betas=(beta_1, beta_2)", "Keras'"),
    ("beta_2", "betas", "betas=(beta_1, beta_2)", "Keras'"),
    ("learning_rate", "lr", "lr=learning_rate", "Keras'"),
    ("epsilon", "eps", "eps=epsilon", "Keras'"),
    ("rho", "alpha", "alpha=rho", "Keras'"),
)
_OPTION_NAMES = frozenset(o.split("=")[0] for o in _OPTIONS)


def _check_keywords(rule, kwargs):
    """Raise an error that names fastoptim's spelling for a keyword of the book's or
    Keras' spelling (``Adam(beta1=0.9)``: ``betas=(beta1, beta2)``); any other unknown
    keyword is left to Python's own error."""
    names = rule.hyper_names
    for key in kwargs:
        if key in names or key in _OPTION_NAMES:
            continue
        if key == "state_dtype" and rule.trust_ratio:
            raise TypeError(
                f"{rule.class_name}() has no state_dtype option yet: its trust ratio "
                f"reads the state twice per step (the norms, then the step), and the "
                f"second read of rounded state is not specified yet; keep its state in "
                f"the parameters' dtype")
        if key == "ema" and rule.schedule_free:
            raise TypeError(
                f"{rule.class_name}() has no ema option: its evaluation point x (see "
                f"eval()) is already an average of the iterates, weighted as the "
                f"schedule-free method prescribes; evaluate at opt.eval(params)")
        for foreign, ours, how, whose in _FOREIGN_KEYWORDS:
            if key == foreign and ours in names:
                book = ""
                if rule.class_name in _book_names():
                    book = (f"; for the book's keywords and defaults use "
                            f"fastoptim.book.{rule.class_name}")
                raise TypeError(
                    f"{rule.class_name}() got an unexpected keyword argument {key!r}: "
                    f"{key} is {whose} name, fastoptim's (torch.optim's) is {ours}: pass "
                    f"{how}{book}")


def _book_names():
    from . import book  # the module of the book's classes builds on this one
    return book.__all__


def _make_class(rule, namespace):
    env = {"Optimizer": Optimizer, "_d": rule.defaults, "_rule": rule,
           "_check_not_params": _check_not_params, "_check_keywords": _check_keywords}
    # compiled under this file's name: warnings from the options point past it
    exec(compile(_init_source(rule), __file__, "exec"), env)  # noqa: S102
    inner, init = env["_inner"], env["_entry"]
    for fn in (inner, init):  # Python's errors for bad calls name "Adam.__init__()"
        fn.__name__ = "__init__"
        fn.__qualname__ = f"{rule.class_name}.__init__"
        fn.__module__ = __name__
        fn.__doc__ = None
    init.__signature__ = inspect.signature(inner)
    base = namespace[rule.base] if rule.base else (
        ScheduleFree if rule.schedule_free else Optimizer)
    return type(rule.class_name, (base,), {
        "__doc__": _docs.class_doc(rule),
        "__init__": init,
        "__module__": __name__,
        "__qualname__": rule.class_name,
        "rule": rule,
        "_rule": rule.name,
        "_rule_id": rule.id,
        # a Schedule-Free class hands Optimizer.update one tuple of scalars per update
        "_stepped": rule.stepped and not rule.schedule_free,
        "_hyper_names": rule.hyper_names,
    })


def _make_classes():
    made = {}
    for rule in rules.RULES:
        made[rule.class_name] = _make_class(rule, made)
    return made


_CLASSES = _make_classes()
globals().update(_CLASSES)
__all__ = ["Optimizer", "ScheduleFree", *_CLASSES]
