"""Optimizer checkpoints on disk: :func:`save` and :func:`load`.

>>> import os, tempfile, numpy as np, fastoptim as fo
>>> w = np.ones(3, dtype=np.float32)
>>> opt = fo.Adam(lr=0.01)
>>> opt.update({"w": w}, {"w": np.full(3, 0.5, dtype=np.float32)})
>>> path = os.path.join(tempfile.mkdtemp(), "opt.ckpt")
>>> fo.save(opt, path)
>>> opt2 = fo.load(path)
>>> opt2, opt2.state["w"]["step"]
(Adam(lr=0.01, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.0), 1)

The file
--------
An uncompressed NumPy ``.npz`` archive (a zip of ``.npy`` members, written at exactly
``path``: no ``.npz`` is appended), read back with ``allow_pickle=False``, so loading a
file never runs code from it and the file is readable with ``np.load`` alone:

``header``
    1-D uint8: UTF-8 JSON ``{"format": "fastoptim-checkpoint", "version": 1,
    "fastoptim": <version that wrote it>, "optimizer": <class name>, "hyperparams":
    {...}, "params": [{"key": ..., "key_type": "str"|"int", "step": int, "shape": [...],
    "dtype": "float32"|"float64", "buffers": {<state name>: <member name>}}, ...]}``,
    and for a Schedule-Free optimizer ``"optimizer_state": {"step": int, "lr_max":
    float, "weight_sum": float, "train_mode": bool}`` (with parameter groups ``lr_max``
    and ``weight_sum`` are lists, one per group; JSON numbers round-trip float64
    exactly).
``p<i>.<state name>``
    the state buffers of the i-th parameter of ``params`` (its memory order is kept),
    of the entry's ``dtype`` -- but with ``"state_dtype": "bfloat16"`` in the
    hyper-parameters the rule's buffers (all but ``ema``) hold bfloat16 bit patterns as
    uint16 (``.view(ml_dtypes.bfloat16)`` reads them; NumPy alone has no bfloat16), and
    the entry's ``dtype`` is the parameter's, float32. The bits are stored exactly.
    With ``"state_dtype": "int8"`` an 8-bit parameter's buffers are its codes (uint8,
    the parameter's shape) and ``<state name>_absmax`` members (float32, one per block
    of 256 elements, fastoptim.formats); an array under 4096 elements has float32 state.

Parameter keys must be ``str`` or ``int`` (the list form of ``update`` uses 0, 1, ...);
:func:`save` refuses any other key with a ``TypeError`` before it writes anything.

Atomic writes
-------------
:func:`save` writes a temporary file in the target's directory
(``.<name>.<pid>.<random>.fastoptim-tmp``, created with ``O_EXCL``), flushes and
``fsync``s it, renames it over ``path`` with ``os.replace`` (atomic on POSIX and
Windows), then ``fsync``s the directory so that the rename itself is durable. A process
killed at any moment therefore leaves ``path`` as it was before the call or as the call
wrote it, never a mixture; what a killed save can leave is its temporary file, which the
next :func:`save` to the same path removes (on POSIX, once the process that wrote it no
longer runs). Do not update an optimizer from another thread while it is being saved.

Loading
-------
:func:`load` checks the whole file (zip CRCs, header, every member's presence, shape and
dtype, hyper-parameter ranges, steps) before it builds the optimizer and raises
:class:`CheckpointError` (a ``ValueError``) naming the file and the problem otherwise. A
loaded optimizer checks its state against the parameters of every ``update`` call: a
parameter whose shape or dtype differs from its saved state is refused with a
``ValueError`` before anything is written. ``fastoptim.checkpoint.read_state_dict(path)``
returns what ``Optimizer.state_dict()`` returns, for ``opt.load_state_dict(...)`` into an
optimizer you already have (which refuses a checkpoint of another kind).
"""

import errno
import json
import numbers
import os
import re
import secrets
import zipfile

import numpy as np

from . import _core, book, formats, optimizers, rules
from . import groups as _groups
from ._version import __version__
from .optimizers import Optimizer

__all__ = ["save", "load", "read_state_dict", "CheckpointError"]

FORMAT = "fastoptim-checkpoint"
# 1: the format; 2: with parameter groups (a "groups" field and each parameter's
# "group"). An optimizer without groups is written as version 1, so older readers load it.
VERSION = 2
# the registry: every class of the rule table and of fastoptim.book, by the name a
# checkpoint stores
CLASSES = {r.class_name: getattr(optimizers, r.class_name) for r in rules.RULES}
CLASSES.update(book.CLASSES)
_TMP_SUFFIX = ".fastoptim-tmp"
_HEADER = "header"
# fastoptim 0.x saved with ``np.savez(f, allow_pickle=False, **arrays)``; NumPy < 2.1 has no
# such keyword there and stored it as a member: a 0-d bool array False. :func:`load` accepts
# exactly that member in files written so (any other extra member is refused).
_OLD_NUMPY_MEMBER = "allow_pickle"


class CheckpointError(ValueError):
    """A file that is not a valid fastoptim checkpoint (corrupted, truncated, tampered
    with, or written by a newer format version)."""


# ---------------------------------------------------------------------------------------
# save
# ---------------------------------------------------------------------------------------

def _key_entry(key):
    if isinstance(key, str):
        return key, "str"
    if isinstance(key, numbers.Integral) and not isinstance(key, (bool, np.bool_)):
        return int(key), "int"
    raise TypeError(f"cannot save parameter key {key!r} of type {type(key).__name__}: "
                    f"checkpoint keys must be str or int (the list form of update uses "
                    f"0, 1, ...); use str keys such as 'W1' in the params dict")


def _pack(optimizer):
    """(header dict, {member: array}) of ``optimizer``'s live state; nothing is copied."""
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"save expects a fastoptim optimizer, got "
                        f"{type(optimizer).__name__}")
    kind = type(optimizer)._kind()
    if CLASSES.get(kind) is not type(optimizer):
        raise TypeError(f"cannot save a {kind}: checkpoints hold the built-in optimizer "
                        f"classes ({', '.join(CLASSES)}); save its state_dict() yourself")
    names = optimizer.rule.state  # the row it runs (amsgrad, ema, ...)

    def plain(values):
        return {n: (list(v) if isinstance(v, tuple) else v) for n, v in values.items()}

    hyper = plain(optimizer.hyperparams)
    grouped = optimizer._groups is not None
    entries, arrays = [], {}
    for i, (key, st) in enumerate(optimizer.state.items()):
        key, key_type = _key_entry(key)
        bufs = {n: v for n, v in st.items() if n not in ("step", "group")}
        first = bufs[names[0]] if names else None
        low = names and (formats.is_bfloat16(first) or first.dtype == np.uint8)
        entry = {"key": key, "key_type": key_type, "step": int(st["step"]),
                 "shape": list(first.shape) if names else None,
                 "dtype": ("float32" if low else str(first.dtype)) if names else None,
                 "buffers": {}}
        if grouped:
            entry["group"] = st["group"]
        for n, b in bufs.items():
            member = f"p{i}.{n}"
            entry["buffers"][n] = member
            arrays[member] = b.view(np.uint16) if formats.is_bfloat16(b) else b
        entries.append(entry)
    header = {"format": FORMAT, "version": 2 if grouped else 1, "fastoptim": __version__,
              "optimizer": kind, "hyperparams": hyper, "params": entries}
    if grouped:
        header["groups"] = [plain(o) for o in optimizer._groups.overrides()]
    if optimizer.rule.schedule_free:  # the optimizer's own state: numbers, JSON-exact
        header["optimizer_state"] = optimizer.optimizer_state
    return header, arrays


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, under another user
        return True
    return True


def _remove_stale_temps(directory, base):
    """Remove temporary files of earlier saves to ``base`` whose process is gone (a save
    killed mid-write leaves one). POSIX only: elsewhere ``os.kill`` cannot probe a pid."""
    if os.name != "posix":
        return
    pattern = re.compile(re.escape(f".{base}.") + r"(\d+)\.[0-9a-f]{16}"
                         + re.escape(_TMP_SUFFIX))
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def _fsync_directory(directory):
    """Make the rename durable. Skipped where a directory cannot be opened or synced
    (Windows; some network file systems): the file's data was synced already."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _write_npz(f, arrays):
    """What ``np.savez(f, **arrays)`` writes (an uncompressed zip of ``<name>.npy``
    members), with ``allow_pickle=False`` on every NumPy: ``np.savez`` only takes that
    keyword from NumPy 2.1 on, and older ones store it as one more array named
    ``allow_pickle`` (see :data:`_OLD_NUMPY_MEMBER`)."""
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED,
                         allowZip64=True) as zf:
        for name, arr in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)


def save(optimizer, path):
    """Write ``optimizer``'s class, hyper-parameters and state to ``path``, atomically.

    Parameters
    ----------
    optimizer : fastoptim.Optimizer
        One of the built-in classes (SGD ... AdamW), with str or int parameter keys.
    path : str or os.PathLike
        The file to write (replaced if it exists); its directory must exist.

    The file at ``path`` is only ever replaced by a complete, fsync'ed new file: a
    process killed during ``save`` leaves the previous checkpoint intact (see the module
    docstring). Everything is checked before anything is written.
    """
    check = getattr(optimizer, "_check_not_swapped", None)
    if check is not None:
        check("save()")
    header, arrays = _pack(optimizer)  # raises for unsupported optimizers and keys
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path!r} is a directory; give the checkpoint's file name")
    directory, base = os.path.split(os.path.abspath(path))
    if not os.path.isdir(directory):
        given = os.path.dirname(path) or directory
        what = "is not a directory" if os.path.exists(directory) else "does not exist"
        raise FileNotFoundError(errno.ENOENT,
                                f"cannot save to {path!r}: the directory {given!r} {what} "
                                f"(create it first, e.g. os.makedirs({given!r}, "
                                f"exist_ok=True))", path)
    _remove_stale_temps(directory, base)
    blob = np.frombuffer(json.dumps(header, allow_nan=False).encode("utf-8"), np.uint8)
    tmp = os.path.join(directory,
                       f".{base}.{os.getpid()}.{secrets.token_hex(8)}{_TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_npz(f, {_HEADER: blob, **arrays})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


# ---------------------------------------------------------------------------------------
# load
# ---------------------------------------------------------------------------------------

def _fail(path, problem):
    raise CheckpointError(f"{os.fspath(path)!r} is not a valid fastoptim checkpoint: "
                          f"{problem}")


def _check_header(path, header):
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        _fail(path, "its header does not say format 'fastoptim-checkpoint'")
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        _fail(path, f"bad format version {version!r}")
    if version > VERSION:
        _fail(path, f"format version {version} was written by a newer fastoptim "
                    f"({header.get('fastoptim')}); this one ({__version__}) reads up to "
                    f"version {VERSION}")
    if version < 1:
        _fail(path, f"bad format version {version!r}")
    expected = {"format", "version", "fastoptim", "optimizer", "hyperparams", "params"}
    if version >= 2:
        expected.add("groups")
    cls = CLASSES.get(header.get("optimizer"))
    if cls is not None and cls.rule.schedule_free:
        expected.add("optimizer_state")
    if set(header) != expected:
        _fail(path, f"its header has the fields {sorted(header)}, expected "
                    f"{sorted(expected)}")
    kind = header["optimizer"]
    if kind not in CLASSES:
        _fail(path, f"unknown optimizer {kind!r} (known: {', '.join(CLASSES)})")
    if not isinstance(header["hyperparams"], dict) or not isinstance(header["params"], list):
        _fail(path, "'hyperparams' must be an object and 'params' a list")
    if version >= 2 and not (isinstance(header["groups"], list)
                             and all(isinstance(g, dict) for g in header["groups"])):
        _fail(path, "'groups' must be a list of objects")
    return CLASSES[kind]


def read_state_dict(path):
    """Read a checkpoint written by :func:`save` and return it as
    ``Optimizer.state_dict()`` returns it: ``{"optimizer": class name, "hyperparams":
    {...}, "state": {key: {"step": int, <state name>: array}}}``.

    Raises :class:`CheckpointError` (a ``ValueError``) for anything but a complete,
    consistent checkpoint; ``FileNotFoundError`` if there is no file.
    """
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
        if not magic:
            _fail(path, "the file is empty")
        if magic == b"\x93NUMPY":
            _fail(path, "it is a single .npy array, not an .npz archive")
        if magic[:2] != b"PK":
            _fail(path, "it is not an .npz (zip) archive")
        z = np.load(path, allow_pickle=False)
        with z:
            members = set(z.files)
            if _HEADER not in members:
                _fail(path, "it has no header")
            raw = z[_HEADER]
            if raw.dtype != np.uint8 or raw.ndim != 1:
                _fail(path, "its header is not a 1-D uint8 array")
            try:
                header = json.loads(raw.tobytes().decode("utf-8"),
                                    parse_constant=lambda c: _fail(path, f"{c} in header"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                _fail(path, f"its header is not JSON ({exc})")
            cls = _check_header(path, header)
            grouped = header["version"] >= 2
            try:  # the state buffers of the row these hyper-parameters run (amsgrad, ...)
                names = cls.rule.row_for(header["hyperparams"]).state
            except (ValueError, TypeError) as exc:
                _fail(path, f"its hyper-parameters pick no variant of {cls.__name__} ({exc})")
            expected_members = {_HEADER}
            state = {}
            for i, entry in enumerate(header["params"]):
                fields = {"key", "key_type", "step", "shape", "dtype", "buffers"}
                if grouped:
                    fields.add("group")
                if not isinstance(entry, dict) or set(entry) != fields:
                    _fail(path, f"parameter entry {i} is malformed")
                key, key_type = entry["key"], entry["key_type"]
                if not ((key_type == "str" and isinstance(key, str))
                        or (key_type == "int" and isinstance(key, int)
                            and not isinstance(key, bool))):
                    _fail(path, f"parameter entry {i} has a bad key {key!r} "
                                f"({key_type!r})")
                if key in state:
                    _fail(path, f"parameter key {key!r} appears twice")
                step = entry["step"]
                if not isinstance(step, int) or isinstance(step, bool) or step < 0:
                    _fail(path, f"parameter {key!r} has a bad step {step!r}")
                buffers = entry["buffers"]
                fmt = header["hyperparams"].get("state_dtype")
                q8 = fmt == "int8" and isinstance(buffers, dict) and \
                    set(buffers) == set(formats.int8_names(names)) and bool(names)
                if not isinstance(buffers, dict) or (set(buffers) != set(names)
                                                     and not q8):
                    _fail(path, f"parameter {key!r} has state {sorted(buffers)} but a "
                                f"{cls.__name__} keeps {sorted(names)}")
                st = {"step": step}
                if grouped:
                    group = entry["group"]
                    if (not isinstance(group, int) or isinstance(group, bool)
                            or not 0 <= group <= len(header["groups"])):
                        _fail(path, f"parameter {key!r} has a bad group {group!r}")
                    st["group"] = group
                for n in buffers:
                    member = buffers[n]
                    if not isinstance(member, str) or member not in members:
                        _fail(path, f"state {n!r} of parameter {key!r} is missing")
                    if member in expected_members:
                        _fail(path, f"member {member!r} is used twice")
                    expected_members.add(member)
                    arr = z[member]
                    bf16 = n != "ema" and fmt == "bfloat16"
                    shape = entry["shape"]
                    if q8 and n.endswith("_absmax"):
                        want = "float32"
                        shape = [(int(np.prod(entry["shape"])) + rules.INT8_BLOCK - 1)
                                 // rules.INT8_BLOCK]
                    elif q8 and n != "ema":
                        want = "uint8"
                    else:
                        want = "uint16" if bf16 else entry["dtype"]
                    if (str(arr.dtype) != want or list(arr.shape) != shape
                            or not (bf16 or q8 or arr.dtype in _core.FLOAT_DTYPES)
                            or ((bf16 or q8) and entry["dtype"] != "float32")):
                        _fail(path, f"state {n!r} of parameter {key!r} has shape "
                                    f"{arr.shape} and dtype {arr.dtype}, but the header "
                                    f"says {shape} and {want}")
                    st[n] = arr.view(formats.bfloat16()) if bf16 else arr
                state[key] = st
            if _OLD_NUMPY_MEMBER in members - expected_members:
                stray = z[_OLD_NUMPY_MEMBER]
                if (stray.dtype == np.bool_ and stray.shape == ()
                        and not stray.item()):
                    expected_members.add(_OLD_NUMPY_MEMBER)  # as NumPy < 2.1 wrote it
            if members != expected_members:
                _fail(path, f"unexpected members {sorted(members - expected_members)}")
    except CheckpointError:
        raise
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        _fail(path, f"it is truncated or corrupted ({type(exc).__name__}: {exc})")
    except (ValueError, KeyError) as exc:  # e.g. a member holding pickled objects
        _fail(path, f"{type(exc).__name__}: {exc}")
    def native(values):
        return {n: (tuple(v) if isinstance(v, list) else v) for n, v in values.items()}

    out = {"optimizer": header["optimizer"], "hyperparams": native(header["hyperparams"]),
           "state": state}
    if grouped:
        out["groups"] = [native(g) for g in header["groups"]]
    if "optimizer_state" in header:
        out["optimizer_state"] = header["optimizer_state"]
    return out


def load(path, *, num_threads=None, backend="compiled", skip_nonfinite=False):
    """Read a checkpoint written by :func:`save`: a new optimizer of the saved class, with
    its hyper-parameters and state.

    Parameters
    ----------
    path : str or os.PathLike
    num_threads, backend, skip_nonfinite
        As for the optimizer classes (they are not saved: they describe how this run
        steps, not the optimizer's state).

    Raises :class:`CheckpointError` (a ``ValueError``) for a corrupted, truncated or
    inconsistent file, with nothing built.
    """
    sd = read_state_dict(path)
    extra = {}
    if "groups" in sd:  # the saved groups; their parameters keep them through the state
        extra["groups"] = _groups.saved_groups(sd["groups"])
    opt = CLASSES[sd["optimizer"]](num_threads=num_threads, backend=backend,
                                   skip_nonfinite=skip_nonfinite, **extra)
    try:
        opt.load_state_dict(sd)
    except (TypeError, ValueError) as exc:  # e.g. a hyper-parameter out of range
        _fail(path, str(exc))
    return opt
