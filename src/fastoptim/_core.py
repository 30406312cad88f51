"""The checks of the Python layer: the arrays of an update (the messages users see for
anything the compiled fast path does not take), the thread count, the backend name and
the step; the hyper-parameter checks are the rule table's (``fastoptim.rules``).

Nothing here changes an array until every array of the call has been checked.
"""

import numbers

import numpy as np

from . import _dlpack, reference, rules
from ._caller import warn_external  # noqa: F401 -- used here and imported from here
from ._dispatch import kernels as _kernels

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
BACKENDS = {"compiled": _kernels, "numpy": reference}


# ---------------------------------------------------------------------------------------
# Hyper-parameters (the checks live with the rule table)
# ---------------------------------------------------------------------------------------

check_nonneg = rules.check_nonneg
check_unit_open = rules.check_unit_open
check_unit_closed = rules.check_unit_closed


def check_betas(betas):
    return rules.check_betas("betas", betas)


def check_num_threads(num_threads):
    if num_threads is None:
        return 0  # the kernels ask OpenMP for its current maximum at each call
    if isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral):
        raise TypeError(f"num_threads must be None or a positive int, got {num_threads!r}")
    if num_threads < 1:
        raise ValueError(f"Invalid num_threads: {num_threads!r} (must be >= 1, or None "
                         "for OpenMP's current maximum)")
    return int(num_threads)


BACKEND_NAMES = ("compiled", "numpy")


def backend_name(backend):
    """The backend's name, checked: "compiled" (the fused kernels) or "numpy" (the
    reference); the old name "cython" means "compiled", with a DeprecationWarning."""
    if backend == "cython":
        warn_external('backend="cython" is deprecated: it is now called "compiled" '
                      '(the default); "cython" will stop working in a later release',
                      DeprecationWarning)
        return "compiled"
    if backend not in BACKEND_NAMES:
        raise ValueError(f"Invalid backend: {backend!r} (must be 'compiled' or 'numpy')")
    return backend


def check_backend(backend):
    """The module of the backend's per-rule functions (the kernels or the reference)."""
    return BACKENDS[backend_name(backend)]


_CHECKS = {h.name: h.check for r in rules.RULES for h in r.hyper}


def check_hyper(**hyper):
    """Validate hyper-parameters by name; return them as floats (betas as a pair)."""
    return {name: _CHECKS[name](name, value) for name, value in hyper.items()}


def check_step(step):
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 1:
        raise ValueError(f"Invalid step: {step!r} (must be an int >= 1: the number of "
                         "this update, counting from 1)")
    return int(step)


# kernel name -> (state buffer names, scalar function, scalar names), from the rule
# table; the order of the names is the rule id the compiled update_many() takes.
RULES = {r.name: (r.state, r.scalars, r.scalar_names) for r in rules.KERNEL_ROWS}
RULE_IDS = {r.name: r.id for r in rules.KERNEL_ROWS}


# ---------------------------------------------------------------------------------------
# Arrays
# ---------------------------------------------------------------------------------------

def _dtype_name(dt):
    if dt.isnative or dt.byteorder == "|":
        return str(dt)
    return f"{dt.newbyteorder('=')} in non-native byte order ({dt.str!r})"


def _what(x):
    return f"{type(x).__module__}.{type(x).__qualname__}".replace("builtins.", "")


def _producer_pointer(x):
    """The address of the first element of a DLPack producer, where it tells it (torch's
    ``data_ptr()``, or ``__array_interface__``); None when it does not."""
    data_ptr = getattr(x, "data_ptr", None)
    if callable(data_ptr):
        try:
            return int(data_ptr())
        except Exception:
            return None
    interface = getattr(x, "__array_interface__", None)
    if isinstance(interface, dict) and isinstance(interface.get("data"), tuple):
        return interface["data"][0]
    return None


def dlpack_view(name, x, writeable):
    """A NumPy array viewing the memory of ``x``, an object with ``__dlpack__`` that is
    not an ndarray (a torch CPU tensor, a JAX or CuPy-on-host array, ...).

    ``writeable=True`` (parameters, state buffers, gradients to clip): the view must be
    the producer's own memory and writeable, so that writing through it updates ``x``;
    NumPy is asked for no copy (``copy=False``) and the addresses are compared where the
    producer tells its own (torch's ``data_ptr()``). Anything else is refused with an
    error rather than updating a copy. ``writeable=False`` (gradients, only read): any
    array NumPy makes of it, a view where it can.
    """
    try:
        if writeable:
            try:
                # NumPy >= 2.1's np.from_dlpack(x, copy=False); _dlpack reads DLPack 1.0
                # capsules itself on older NumPy, whose views are all read-only
                arr = _dlpack.view(x, copy=False)
            except TypeError:
                # a producer whose __dlpack__ predates DLPack 1.0's copy/max_version
                # keywords: views, never copies
                arr = np.from_dlpack(x)
        else:
            arr = _dlpack.view(x)
    except Exception as exc:
        raise TypeError(
            f"{name} is a {_what(x)} that NumPy cannot view in host memory "
            f"({type(exc).__name__}: {exc}); fastoptim takes NumPy arrays and objects "
            f"NumPy can view without a copy through DLPack, e.g. CPU torch tensors "
            f"(a parameter that requires grad: pass p.detach() or p.detach().numpy())"
        ) from exc
    if writeable:
        if not arr.flags.writeable:
            raise ValueError(
                f"{name} is a {_what(x)} that NumPy sees as read-only through DLPack "
                f"(the producer marked it read-only, or its __dlpack__ predates DLPack "
                f"1.0 and cannot say it is writeable); fastoptim updates it in place: "
                f"pass a writeable NumPy view of it (for torch: tensor.numpy())")
        ptr = _producer_pointer(x)
        if arr.size and ptr is not None and ptr != arr.__array_interface__["data"][0]:
            raise TypeError(
                f"{name} is a {_what(x)} whose NumPy view through DLPack is a copy (at "
                f"another address), so updating it would leave {name} unchanged; pass a "
                f"NumPy array that shares its memory")
    return arr


def _is_torch(x):
    """Whether ``x`` is a torch object (a tensor, a Parameter): its errors then give the
    torch fix (``.float()``, ``.contiguous()``) rather than the NumPy one."""
    return (getattr(type(x), "__module__", None) or "").split(".")[0] == "torch"


def _torch_cast(dtype):
    return ".double()" if dtype == np.float64 else ".float()"


def check_param(name, param):
    """Check a parameter; return (a base-class ndarray view of it, its memory order).

    The order is the one in which its memory is contiguous ('C' or 'F'); the kernels
    walk a flat view of that memory, so the caller's own array is what gets updated.
    An object that is not an ndarray but has ``__dlpack__`` (a CPU torch tensor, ...) is
    viewed with :func:`dlpack_view`: the view is its memory, or it is refused.
    """
    torch = False
    if not isinstance(param, np.ndarray) and hasattr(type(param), "__dlpack__"):
        torch = _is_torch(param)
        param = dlpack_view(name, param, writeable=True)  # e.g. a torch CPU tensor
    if not isinstance(param, np.ndarray):
        if isinstance(param, (numbers.Number, np.generic)):
            # no np.asarray advice here: a 0-d array kept in a history list and then
            # updated in place changes every entry of that list
            raise TypeError(
                f"{name} must be a NumPy array (float32 or float64), got {_what(param)}; "
                f"fastoptim updates arrays in place, and the optimizers' update() also "
                f"takes Python floats and NumPy float32/float64 scalars as the values of "
                f"a params dict or list (rebinding them there): pass float(x) or "
                f"np.float32(x) in a dict, or a 1-element array that you keep")
        raise TypeError(f"{name} must be a NumPy array (float32 or float64), got "
                        f"{_what(param)}; convert it once before training, e.g. "
                        f"np.asarray(x, dtype=np.float32), and keep that array")
    if isinstance(param, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array; an optimizer step has no meaning for "
                        f"masked elements: pass the plain array (param.data, every element "
                        f"updated) and keep the mask yourself")
    if param.dtype not in FLOAT_DTYPES:
        hint = "np.float32" if param.dtype.kind != "f" or param.dtype.itemsize < 8 else "np.float64"
        if torch:
            fix = ".float()" if hint == "np.float32" else ".double()"
            raise TypeError(f"{name} is a torch tensor of dtype {_dtype_name(param.dtype)}; "
                            f"fastoptim updates float32 or float64 tensors in place: "
                            f"convert it once before training with p.data = p.data{fix} "
                            f"(or model{fix} for a whole torch module) and keep training "
                            f"that tensor")
        raise TypeError(f"{name} has dtype {_dtype_name(param.dtype)}; "
                        f"fastoptim updates native float32 or float64 arrays in place: "
                        f"convert it once before training with .astype({hint}) and keep "
                        f"the new array as the parameter")
    if not param.flags.writeable:
        raise ValueError(f"{name} is read-only (flags.writeable is False); an optimizer "
                         f"must update it in place: pass a writeable array")
    if not param.flags.aligned:
        raise TypeError(f"{name} is not aligned to its dtype in memory (e.g. made with "
                        f"np.frombuffer at an odd offset); keep parameters in arrays NumPy "
                        f"allocated, e.g. np.array(x) once before training")
    if param.flags.c_contiguous:
        order = "C"
    elif param.flags.f_contiguous:
        order = "F"
    elif torch:
        raise TypeError(f"{name} is a torch tensor that is not contiguous (strides "
                        f"{param.strides} in bytes for shape {param.shape}); fastoptim "
                        f"updates parameters in place and will not update a copy: make it "
                        f"contiguous once, before training, with p.data = "
                        f"p.data.contiguous(), and train that tensor")
    else:
        raise TypeError(f"{name} is not contiguous (strides {param.strides} for shape "
                        f"{param.shape}); fastoptim updates parameters in place and will "
                        f"not update a copy: keep parameters in C- or F-contiguous arrays "
                        f"(e.g. W = np.ascontiguousarray(W) once, before training, and use "
                        f"that W in the model)")
    if type(param) is not np.ndarray:
        param = param.view(np.ndarray)
    return param, order


def check_grad(name, grad, param, order):
    """Check a gradient against its (checked) parameter; return it as an array of the
    parameter's shape, aligned and contiguous in the parameter's memory order, sharing no
    memory with the parameter: the gradient itself when it already is, else a copy (the
    gradient as given at the call: a copy is only ever read)."""
    torch_grad = False
    if isinstance(grad, np.generic):
        grad = np.asarray(grad)
    elif type(grad) in (float, int) and param.ndim == 0:
        # a Python number has no dtype: it takes the (0-d) parameter's, as NumPy's own
        # arithmetic does with Python scalars
        grad = np.array(grad, dtype=param.dtype)
    elif not isinstance(grad, np.ndarray) and hasattr(type(grad), "__dlpack__"):
        if _is_torch(grad):
            torch_grad = True
        grad = dlpack_view(name, grad, writeable=False)  # e.g. a torch CPU tensor
    if not isinstance(grad, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {_what(grad)}")
    if isinstance(grad, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array; pass plain gradients (e.g. "
                        f"grad.filled(0) to give masked elements a zero gradient)")
    if grad.dtype != param.dtype:
        if torch_grad:
            raise TypeError(f"{name} is a torch tensor of dtype "
                            f"{_dtype_name(grad.dtype)} but its parameter is "
                            f"{param.dtype}; cast it with grad{_torch_cast(param.dtype)}")
        raise TypeError(f"{name} has dtype {_dtype_name(grad.dtype)} "
                        f"but its parameter is {param.dtype}; cast it with "
                        f"grad.astype(np.{param.dtype})")
    if grad.shape != param.shape:
        raise ValueError(f"{name} has shape {grad.shape} but its parameter has shape "
                         f"{param.shape}; they must match exactly")
    if type(grad) is not np.ndarray:
        grad = grad.view(np.ndarray)
    contiguous = grad.flags.c_contiguous if order == "C" else grad.flags.f_contiguous
    if (not contiguous or not grad.flags.aligned
            or (grad.size and np.may_share_memory(grad, param))):
        grad = np.array(grad, order=order)
    return grad


def flat_view(a, order):
    """A 1-D view of an array contiguous in ``order`` (reshaping such an array in its own
    order never copies, so writes through the view reach ``a``)."""
    return a.reshape(-1, order=order)


def check_state_buffer(name, buf, param, order):
    """For the functional API, where the caller owns the state buffers."""
    if not isinstance(buf, np.ndarray) and hasattr(type(buf), "__dlpack__"):
        buf = dlpack_view(name, buf, writeable=True)
    if not isinstance(buf, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {_what(buf)}")
    if buf.dtype != param.dtype or buf.shape != param.shape:
        raise ValueError(f"{name} has shape {buf.shape} and dtype {buf.dtype} but the "
                         f"parameter has shape {param.shape} and dtype {param.dtype}; "
                         f"create it with np.zeros_like(param)")
    if not buf.flags.writeable:
        raise ValueError(f"{name} is read-only; state buffers are updated in place")
    contiguous = buf.flags.c_contiguous if order == "C" else buf.flags.f_contiguous
    if not contiguous:
        raise TypeError(f"{name} must be {order}-contiguous like its parameter; create it "
                        f"with np.zeros_like(param)")
    if type(buf) is not np.ndarray:
        buf = buf.view(np.ndarray)
    return buf
