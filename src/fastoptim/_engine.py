"""The engine: one transaction for every update -- the optimizer classes' and the
functional API's -- over either implementation of the rules.

The transaction, written once (:func:`step`):

1. **validate**: every array of the call is checked before any is written. The fast path
   (the compiled ``update_many``) checks them in C and either runs the whole step or
   writes nothing and returns what it did not take (positions, missing step scalars);
   the NumPy engine sends every position down the Python path. The Python path
   (:func:`_prepare`, with the checks of ``fastoptim._core``) is the one place that
   raises the errors users see; for what it accepts it gives base-class views of the
   parameters, the gradients as arrays that share no memory with what is written
   (copies where needed: a gradient is read as it was at the call), and state records;
2. **guard**: with ``skip_nonfinite``, a gradient holding NaN or Inf skips the step
   (nothing written, no step counted);
3. **state**: new or re-laid-out state records are staged and stored only once the step
   has run;
4. **step**: one fused pass over memory (compiled) or the reference, array by array
   (NumPy); each record's step count goes up by one.

State records (the "slots" dict, key -> record) are the engine's own structure, which
the optimizer classes hold but do not look inside: a record is a list ``[step, buffer,
...]``, the step a 0-d int64 array (the number of steps taken; incremented in place),
then the rule's state buffers (``rules.Rule.state``), each of the parameter's shape,
dtype and memory order -- or, with a state format (``fastoptim.formats``: the kernel id's
``rules.BF16_FLAG`` or ``rules.INT8_FLAG``), the rule's buffers in that format: bfloat16
buffers, or for 8-bit state the codes (uint8) of the rule's buffers, then one absmax
array per buffer (float32, one per block), then the moving average of ``ema``, which
stays in the parameter's dtype in every format.

Who owns the state decides one thing, and only one: an optimizer's records are its own,
so a record whose memory order no longer fits its parameter is re-laid out (a copy); a
caller's buffers (the functional API) are the caller's, so a misfit is an error. The
aliasing policy is the same for both: a gradient that shares memory with anything
written is copied first; state buffers that share memory with their parameter or with
each other are refused; parameters that overlap each other run serially, in order,
exactly as the reference does.
"""

from collections.abc import Mapping, MutableMapping, MutableSequence, Sequence

import numpy as np

from . import _core, formats, reference, rules
from . import groups as _groups_mod
from ._dispatch import kernels as _kernels


def pairs(params, grads):
    """[(key, param, grad)] from two dicts with the same keys or two equal-length
    sequences (keys 0, 1, ...); raises the error for mismatched kinds, keys or lengths."""
    if isinstance(params, np.ndarray) and isinstance(grads, (np.ndarray, np.generic)):
        return [(0, params, grads)]
    if isinstance(params, Mapping):
        if not isinstance(grads, Mapping):
            raise TypeError(f"params is a dict, so grads must be a dict with the same keys, "
                            f"got {type(grads).__name__}")
        missing = [k for k in params if k not in grads]
        extra = [k for k in grads if k not in params]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"no gradient for parameter(s) {', '.join(map(repr, missing))}")
            if extra:
                parts.append(f"gradient(s) {', '.join(map(repr, extra))} have no parameter")
            raise ValueError("params and grads must have the same keys: " + "; ".join(parts))
        return [(k, params[k], grads[k]) for k in params]
    if isinstance(params, Sequence) and not isinstance(params, (str, bytes)):
        if not isinstance(grads, Sequence) or isinstance(grads, (str, bytes)):
            raise TypeError(f"params is a sequence, so grads must be a sequence of the same "
                            f"length, got {type(grads).__name__}{_iterable_hint(grads)}")
        if len(params) != len(grads):
            raise ValueError(f"params has {len(params)} arrays but grads has {len(grads)}; "
                             f"pass one gradient per parameter, in the same order")
        return [(i, p, g) for i, (p, g) in enumerate(zip(params, grads))]
    hint = ""
    if scalar_box(params) is not None:
        hint = ("; a number passed alone cannot be updated (arrays are updated in place, "
                "numbers are rebound in their dict or list): pass {'x': x} and read "
                "the new value back from the dict")
    else:
        hint = _iterable_hint(params)
    raise TypeError(f"params must be a dict of arrays, a list/tuple of arrays or one array, "
                    f"got {type(params).__name__}{hint}")


def _iterable_hint(value):
    """The fix for an iterable that is not a sequence (a generator such as torch's
    ``model.parameters()``, a map, a set, dict views): "" for anything else."""
    if isinstance(value, (Sequence, Mapping, np.ndarray, str, bytes)):
        return ""
    try:
        iter(value)
    except TypeError:
        return ""
    return "; pass a list (e.g. list(model.parameters())) or a dict"


def scalar_box(value):
    """For a number that a params dict or list may hold in place of an array (a Python
    float or int, a NumPy float64 or float32 scalar): (a fresh 0-d array of its value --
    float64, or float32 for np.float32 -- the type to rebind the new value as). None for
    anything else (bool included)."""
    t = type(value)
    if t is float or t is int:
        return np.array(value, dtype=np.float64), float
    if t is np.float64 or t is np.float32:
        return np.array(value), t
    return None


def _rebindable(container):
    return isinstance(container, (dict, list, MutableMapping, MutableSequence))


def _scalar_what(value):
    t = type(value)
    return f"a Python {t.__name__}" if t in (float, int) else f"a NumPy {t.__name__} scalar"


def new_record(param, names, step=0, init=None, state_dtype=None, rule_maps=None):
    """A state record for ``param``: ``step`` steps taken, buffers of zeros -- or, per
    buffer, of the values ``init`` gives (``Rule.initial_values``: a number, or "param"
    for a copy of ``param`` in its memory order); the rule's buffers in the format
    ``state_dtype`` (rounded or quantised to it: ``rule_maps``, the row's
    ``int8_maps``, for 8-bit state), the moving average ``ema`` in the parameter's."""
    if formats.int8_applies(state_dtype, param):
        return _new_int8_record(param, names, step, init, rule_maps)
    if state_dtype == "int8":  # an array under rules.INT8_MIN_SIZE: float32 state
        state_dtype = None
    out = [np.array(step, dtype=np.int64)]
    for i, name in enumerate(names):
        v = 0.0 if init is None else init[i]
        dt = param.dtype if name == "ema" else formats.buffer_dtype(state_dtype, param.dtype)
        if isinstance(v, str):  # "param"
            buf = np.empty_like(param, dtype=dt, order="K")
            if dt == param.dtype:
                buf[...] = param
            else:
                reference.to_bfloat16(param, buf)
            out.append(buf)
        elif v:
            buf = np.empty_like(param, dtype=dt, order="K")
            if dt == param.dtype:
                buf.fill(v)
            else:
                reference.to_bfloat16(np.full_like(param, v), buf)
            out.append(buf)
        else:
            out.append(np.zeros_like(param, dtype=dt))
    return out


def _new_int8_record(param, names, step, init, maps):
    """An 8-bit record: [step, codes..., absmax..., (ema)] (fastoptim.formats)."""
    own = [n for n in names if n != "ema"]
    codes, absmaxes = [], []
    for i, sign in enumerate(maps):
        v = 0.0 if init is None else init[i]
        x = np.array(param, dtype=np.float32, order="K") if isinstance(v, str) else \
            np.full_like(param, v, dtype=np.float32)
        c, a = formats.quantized(x, sign)
        codes.append(c)
        absmaxes.append(a)
    out = [np.array(step, dtype=np.int64), *codes, *absmaxes]
    if len(own) != len(names):
        out.append(np.zeros_like(param))
    return out


def _check_format(naming, key, p, state_dtype):
    """A parameter that the format ``state_dtype`` does not keep state for: the error
    (8-bit state: float32 parameters too, whatever their size)."""
    if state_dtype is not None and p.dtype != np.float32:
        raise ValueError(
            f"{naming.param(key)} is {p.dtype}, and state_dtype={state_dtype!r} keeps the "
            f"state of float32 parameters: train in float32 (p.astype(np.float32)), or "
            f"use an optimizer with state_dtype=None for the {p.dtype} parameters")


# ---------------------------------------------------------------------------------------
# Naming: how errors name the arrays of a call
# ---------------------------------------------------------------------------------------

class ClassNames:
    """An optimizer's ``update(params, grads)``: arrays named by their key."""

    owned = True

    @staticmethod
    def param(key):
        return f"parameter {key!r}"

    @staticmethod
    def grad(key):
        return f"gradient {key!r}"


class FunctionalNames:
    """A functional call: one parameter, its gradient and the caller's state buffers."""

    owned = False

    @staticmethod
    def param(key):
        return "param"

    @staticmethod
    def grad(key):
        return "grad"


def _fit_owned(key, record, p, order, names, state_dtype=None):
    """An optimizer's record of ``key`` if it fits ``p`` (its buffers in the format
    ``state_dtype``); a re-laid-out copy if only its memory order differs (state is ours
    to copy); else a clear error."""
    if type(record) is not list or len(record) != len(names) + 1 and not (
            state_dtype == "int8" and formats.is_int8_record(record, names)):
        raise RuntimeError(f"internal error: bad state record for {key!r}")
    box = record[0]
    if not (type(box) is np.ndarray and box.dtype == np.int64 and box.size == 1
            and box.flags.writeable and box.flags.aligned):
        raise RuntimeError(f"internal error: the step of {key!r} is not an int64 box")
    if state_dtype == "int8" and formats.is_int8_record(record, names):
        return _fit_int8(key, record, p, order, names)
    if state_dtype == "int8":
        state_dtype = None  # a small array's float32 state
    fixed = None
    for i, n in enumerate(names):
        buf = record[i + 1]
        want = p.dtype if n == "ema" else formats.buffer_dtype(state_dtype, p.dtype)
        if buf.shape != p.shape or buf.dtype != want:
            raise ValueError(
                f"optimizer state {n!r} of parameter {key!r} has shape {buf.shape} and "
                f"dtype {buf.dtype}, but the parameter now has shape {p.shape} and dtype "
                f"{p.dtype}; use a new optimizer (or load a matching state_dict) for "
                f"changed parameters")
        ok = (buf.flags.c_contiguous if order == "C" else buf.flags.f_contiguous) \
            and buf.flags.aligned and buf.flags.writeable
        if not ok:
            if fixed is None:
                fixed = list(record)
            fixed[i + 1] = np.array(buf, order=order)
    return record if fixed is None else fixed


def _fit_int8(key, record, p, order, names):
    """An 8-bit record that fits ``p`` (codes of its shape, an absmax per block), its
    codes re-laid out if only the memory order differs (the blocks follow memory
    order, so the state is requantised: dequantised in the old order, quantised in the
    new); else a clear error."""
    own = [n for n in names if n != "ema"]
    k = len(own)
    nblocks = (p.size + rules.INT8_BLOCK - 1) // rules.INT8_BLOCK
    for i, n in enumerate(own):
        codes, absmax = record[1 + i], record[1 + k + i]
        if codes.shape != p.shape or p.dtype != np.float32 or absmax.shape != (nblocks,):
            raise ValueError(
                f"optimizer state {n!r} of parameter {key!r} is 8-bit state of shape "
                f"{codes.shape}, but the parameter now has shape {p.shape} and dtype "
                f"{p.dtype}; use a new optimizer (or load a matching state_dict) for "
                f"changed parameters")
    if "ema" in names:
        ema = record[-1]
        if ema.shape != p.shape or ema.dtype != p.dtype:
            raise ValueError(f"optimizer state 'ema' of parameter {key!r} has shape "
                             f"{ema.shape} and dtype {ema.dtype}, but the parameter now "
                             f"has shape {p.shape} and dtype {p.dtype}")
    fits = all((c.flags.c_contiguous if order == "C" else c.flags.f_contiguous)
               for c in record[1:1 + k])
    if fits and ("ema" not in names or (record[-1].flags.c_contiguous if order == "C"
                                        else record[-1].flags.f_contiguous)):
        return record
    fixed = list(record)
    for i, sign in enumerate(_maps_of(names)):
        x = formats.dequantized(record[1 + i], record[1 + k + i], sign)
        fixed[1 + i], fixed[1 + k + i] = formats.quantized(np.array(x, order=order), sign)
    if "ema" in names:
        fixed[-1] = np.array(record[-1], order=order)
    return fixed


def _maps_of(names):
    return [rules.INT8_MAPS[n] for n in names if n != "ema"]


def _fit_callers(record, p, order, names):
    """The caller's state buffers, checked (never copied: they are the caller's)."""
    bufs = [_core.check_state_buffer(n, b, p, order) for n, b in zip(names, record[1:])]
    return [record[0]] + bufs


def _check_state_aliasing(names, bufs, p):
    for i, a in enumerate(bufs):
        if a.size and np.may_share_memory(a, p):
            raise ValueError(f"{names[i]} shares memory with param; give each state "
                             "buffer its own array (np.zeros_like(param))")
        for j in range(i + 1, len(bufs)):
            if a.size and np.may_share_memory(a, bufs[j]):
                raise ValueError(f"{names[i]} and {names[j]} share memory; give each "
                                 "state buffer its own array (np.zeros_like(param))")


def _prepare(rule, params, grads, slots, positions, naming, target=None, init=None,
             groups=None, state_dtype=None):
    """The Python path for the positions the fast path did not take: raise the error for
    bad input, else return (params, grads, staged, rebind): new containers (the caller's
    are never changed) with base-class views and safe gradients at those positions, the
    records to store once the step has run (new, or re-laid out), and for each number
    held in place of an array (see :func:`scalar_box`; the optimizer classes only) its
    (key, 0-d array, type): the array is what the step updates, and the new value is
    rebound into ``target`` (the caller's container, default ``params``) only once the
    step has run. New records start at ``init`` (one value per buffer; zeros by
    default), or with ``groups`` (a :class:`fastoptim.groups.GroupTable`) in the group
    the parameter joins, at that group's initial values; their buffers in the format
    ``state_dtype`` (:mod:`fastoptim.formats`)."""
    is_dict = isinstance(params, dict)
    keys = list(params) if is_dict else range(len(params))
    p2 = dict(params) if is_dict else list(params)
    g2 = dict(grads) if is_dict else list(grads)
    staged = {}
    rebind = []
    names = rule.state
    for i in positions:
        key = keys[i]
        boxed = scalar_box(p2[key]) if naming.owned else None
        if boxed is not None:
            container = params if target is None else target
            if not _rebindable(container):
                raise TypeError(
                    f"{naming.param(key)} is {_scalar_what(p2[key])} in a "
                    f"{type(container).__name__}: fastoptim updates a number held in "
                    f"place of an array by rebinding it (params[{key!r}] = new value), "
                    f"which a {type(container).__name__} does not allow; pass the "
                    f"parameters in a list or a dict, or keep each in a NumPy array")
            p, kind = boxed
            order = "C"
            rebind.append((key, p, kind))
        else:
            p, order = _core.check_param(naming.param(key), p2[key])
        if naming.owned:
            g = _core.check_grad(naming.grad(key), g2[key], p, order)
            _check_format(naming, key, p, state_dtype)
            record = slots.get(key)
            if record is None:
                if groups is None:
                    record = new_record(p, names, init=init, state_dtype=state_dtype,
                                        rule_maps=rule.int8_maps)
                else:
                    grp = groups.resolve(key, p)
                    record = new_record(p, names, step=grp * _groups_mod.STRIDE,
                                        init=groups.initial_values(grp),
                                        state_dtype=state_dtype, rule_maps=rule.int8_maps)
            else:
                record = _fit_owned(key, record, p, order, names, state_dtype)
            _check_state_aliasing(names, record[1:], p)
        else:
            record = _fit_callers(slots[key], p, order, names)
            _check_state_aliasing(names, record[1:], p)
            g = _core.check_grad(naming.grad(key), g2[key], p, order)
        if record is not slots.get(key):
            staged[key] = record
        if g.size and any(np.may_share_memory(g, b) for b in record[1:]):
            g = g.copy(order=order)  # the gradient as given, even inside a state buffer
        p2[key] = p
        g2[key] = g
    return p2, g2, staged, rebind


# ---------------------------------------------------------------------------------------
# The two engines
# ---------------------------------------------------------------------------------------

class CompiledEngine:
    """The fused, OpenMP-parallel kernels of the CPU target chosen at import."""

    name = "compiled"

    def __init__(self, kernels):
        self.kernels = kernels

    @property
    def fast(self):
        """update_many(rule id, params, grads, slots, scalars, num_threads, cache, plan,
        steps_out, skip_nonfinite, pacer, means=None): the whole step, or what it did
        not take (``means``: fastoptim.Accumulate's mean of gradients, fused)."""
        return self.kernels.update_many

    run = fast  # after the Python path, the same call takes every array

    def function(self, rule):
        return getattr(self.kernels, rule.name)


class NumpyEngine:
    """The pure-NumPy reference (``fastoptim.reference``), array by array, in order."""

    name = "numpy"

    def fast(self, rule_id, params, grads, slots, scalars, nt, cache, plan, steps_out,
             skip, pacer, means=None):
        return (list(range(len(params))), [])  # every array down the Python path

    def run(self, rule_id, params, grads, slots, scalars, nt, cache, plan, steps_out, skip,
            pacer):
        ema = bool(rule_id & rules.EMA_FLAG)
        bf16 = bool(rule_id & rules.BF16_FLAG)
        int8 = bool(rule_id & rules.INT8_FLAG)
        rule = rules.KERNEL_ROWS[rule_id & ~(rules.EMA_FLAG | rules.BF16_FLAG
                                             | rules.INT8_FLAG)]
        items = params.items() if isinstance(params, dict) else enumerate(params)
        work = [(p, grads[key], slots[key]) for key, p in items]
        if skip and not all(np.isfinite(g).all() for _, g, _ in work):
            return False
        kernel = getattr(reference, rule.name)
        taken = []
        for p, g, record in work:
            order = "C" if p.flags.c_contiguous else "F"
            step = int(record[0]) + 1
            sc = scalars if type(scalars) is tuple else scalars[step]
            g = _core.flat_view(g, order)
            if ema:  # the rule's scalars and sign, then the moving average's
                sc, (decay, one_minus_decay) = sc[:-2], sc[-2:]
            if sc[-1] != 1.0:  # maximize: the rule on -g, as the kernels' g*(-1)
                g = g * g.dtype.type(sc[-1])
            flat_p = _core.flat_view(p, order)
            bufs = [_core.flat_view(b, order) for b in record[1:]]
            k = len(rule.state)
            if int8 and len(record) == 1 + 2 * k + ema:  # 8-bit: dequantised, quantised
                reference.with_int8_state(kernel, flat_p, g,
                                          *zip(bufs[:k], [b.reshape(-1) for b in
                                                          record[1 + k:1 + 2 * k]]),
                                          signs=rule.int8_maps,
                                          **dict(zip(rule.scalar_names, sc)))
            elif bf16:  # the rule on the state's float32 widening, then rounded back
                reference.with_bfloat16_state(kernel, flat_p, g, *bufs[:len(rule.state)],
                                              **dict(zip(rule.scalar_names, sc)))
            else:
                kernel(flat_p, g, *bufs[:len(rule.state)],
                       **dict(zip(rule.scalar_names, sc)))
            if ema:
                reference.ema(flat_p, bufs[-1], decay=decay, one_minus_decay=one_minus_decay)
            record[0][()] = step
            if step not in taken:
                taken.append(step)
        steps_out[:] = taken
        return True

    def function(self, rule):
        return getattr(reference, rule.name)


if tuple(_kernels.RULE_NAMES) != tuple(r.name for r in rules.KERNEL_ROWS):
    raise ImportError(
        f"fastoptim's compiled kernels were built from another rule table (theirs: "
        f"{_kernels.RULE_NAMES}, fastoptim.rules: {tuple(r.name for r in rules.KERNEL_ROWS)}): "
        f"a stale build; rebuild the package (pip install . again)")

if (_kernels.EMA_FLAG, _kernels.BF16_FLAG, _kernels.INT8_FLAG, _kernels.INT8_BLOCK,
        _kernels.SUM_CHUNK, _kernels.SUM_LANES) != (
        rules.EMA_FLAG, rules.BF16_FLAG, rules.INT8_FLAG, rules.INT8_BLOCK,
        reference.SUM_CHUNK, reference.SUM_LANES) or reference.INT8_BLOCK != rules.INT8_BLOCK:
    raise ImportError("fastoptim's compiled kernels were built with another EMA_FLAG, "
                      "BF16_FLAG, INT8_FLAG, 8-bit block or sum order than fastoptim.rules and "
                      "fastoptim.reference: a stale build; rebuild the package (pip "
                      "install . again)")

COMPILED = CompiledEngine(_kernels)
NUMPY = NumpyEngine()
ENGINES = {"compiled": COMPILED, "numpy": NUMPY}


# ---------------------------------------------------------------------------------------
# The transaction
# ---------------------------------------------------------------------------------------

def step(engine, rule, params, grads, slots, scalars, hyper, *, nt, cache, plan,
         steps_out, skip=False, pacer=None, naming=ClassNames):
    """One update of every parameter of ``params`` (a dict or a list/tuple, with
    ``grads`` of the same kind and length) by ``rule``, through ``engine``.

    ``slots`` (key -> record) is the state, changed only on success; ``scalars`` (step
    -> kernel scalars) a cache the caller keeps, filled here from ``hyper`` for any step
    it lacks -- or, for a rule whose scalars do not depend on the step, their one
    tuple. Returns True (applied) or False (skipped by the guard); raises, with
    nothing written, for bad input. (The optimizer classes make the first call,
    ``engine.fast``, themselves and come to :func:`finish` only when it returns what it
    did not take: the same transaction, one Python call less per update.)
    """
    args = (nt, cache, plan, steps_out, skip, pacer)
    result = engine.fast(rule.id, params, grads, slots, scalars, *args)
    if result is True or result is False:
        return result
    return finish(engine, rule, params, grads, slots, scalars, hyper, result, args, naming)


def finish(engine, rule, params, grads, slots, scalars, hyper, result, args, naming,
           target=None, groups=None, rule_id=None):
    """The rest of :func:`step` after ``engine.fast`` returned ``result``, a pair
    (rejected positions or None, missing steps). ``target`` is the caller's container
    when ``params`` is a copy of it (numbers held in place of arrays are rebound there
    after the step); by default ``params`` itself. ``groups``: the optimizer's
    parameter groups (then ``scalars`` is keyed by step box values, group and step).
    ``rule_id``: the kernel id the fast path ran (with a state format's bits), by
    default ``rule.id``."""
    if rule_id is None:
        rule_id = rule.id
    rejected, missing = result
    plan = args[2]
    params_in = params
    if rejected is None:
        pairs(params, grads)  # raises the error for the keys
        raise RuntimeError("internal error: a key mismatch that pairs() accepts")
    staged = {}
    rebind = ()
    if rejected:
        params, grads, staged, rebind = _prepare(rule, params, grads, slots, rejected,
                                                 naming, target, rule.initial_values(hyper),
                                                 groups, formats.of_id(rule_id))
    use = slots
    if staged:
        plan.clear()  # positions now map to records that are not (yet) in ``slots``
        use = dict(slots)
        use.update(staged)
    # the scalars of every step about to be taken: those the fast path found missing,
    # and those of the records it did not take
    need = set(missing)
    if rejected:
        keys = list(params) if isinstance(params, dict) else None
        for i in rejected:
            need.add(int(use[keys[i] if keys is not None else i][0]) + 1)
    if type(scalars) is dict:  # else one tuple for every step
        for s in need:
            if s not in scalars:
                scalars[s] = (rule.stepper(hyper)(s) if groups is None
                              else groups.scalars_at(s))
    result = engine.run(rule_id, params, grads, use, scalars, *args)
    if result is True:
        if staged:
            slots.update(staged)
        if rebind:
            container = params_in if target is None else target
            for key, box, kind in rebind:  # the book's ``params[key] -= ...``
                container[key] = box.item() if kind is float else box[()]
        return True
    if result is False:
        return False
    plan.clear()
    raise RuntimeError(f"internal error: the fast path refused prepared arrays ({result})")
