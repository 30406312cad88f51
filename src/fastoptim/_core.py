"""Shared machinery of the Python layer: hyper-parameter checks, step scalars, input
validation and the dispatch to the compiled kernels or the NumPy reference.

Nothing here changes an array until every array of the call has been checked.
"""

import math
import numbers

import numpy as np

from . import _kernels, reference

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
BACKENDS = {"cython": _kernels, "numpy": reference}


# ---------------------------------------------------------------------------------------
# Hyper-parameters
# ---------------------------------------------------------------------------------------

def _real(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"Invalid {name}: {value!r} (must be finite)")
    return value


def check_nonneg(name, value):
    value = _real(name, value)
    if value < 0:
        raise ValueError(f"Invalid {name}: {value!r} (must be >= 0)")
    return value


def check_unit_open(name, value):
    """0 <= value < 1 (momentum, Adam's betas)."""
    value = _real(name, value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"Invalid {name}: {value!r} (must satisfy 0 <= {name} < 1)")
    return value


def check_unit_closed(name, value):
    """0 <= value <= 1 (RMSprop's alpha, AdaDelta's rho)."""
    value = _real(name, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"Invalid {name}: {value!r} (must satisfy 0 <= {name} <= 1)")
    return value


def check_betas(betas):
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise ValueError(f"Invalid betas: {betas!r} (must be a pair (beta1, beta2))") from None
    return (check_unit_open("beta1", b1), check_unit_open("beta2", b2))


def check_num_threads(num_threads):
    if num_threads is None:
        return 0  # the kernels ask OpenMP for its current maximum at each call
    if isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral):
        raise TypeError(f"num_threads must be None or a positive int, got {num_threads!r}")
    if num_threads < 1:
        raise ValueError(f"Invalid num_threads: {num_threads!r} (must be >= 1, or None "
                         "for OpenMP's current maximum)")
    return int(num_threads)


def check_backend(backend):
    if backend not in BACKENDS:
        raise ValueError(f"Invalid backend: {backend!r} (must be 'cython' or 'numpy')")
    return BACKENDS[backend]


_CHECKS = {
    "lr": check_nonneg,
    "eps": check_nonneg,
    "weight_decay": check_nonneg,
    "momentum": check_unit_open,
    "alpha": check_unit_closed,
    "rho": check_unit_closed,
    "betas": lambda name, value: check_betas(value),
}


def check_hyper(**hyper):
    """Validate hyper-parameters by name; return them as floats (betas as a pair)."""
    return {name: _CHECKS[name](name, value) for name, value in hyper.items()}


def check_step(step):
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 1:
        raise ValueError(f"Invalid step: {step!r} (must be an int >= 1: the number of "
                         "this update, counting from 1)")
    return int(step)


# ---------------------------------------------------------------------------------------
# The rules: per rule, its state buffers and the kernel scalars for one step.
# Every scalar is computed here, once, in float64; kernels and reference convert it to
# the array's dtype the same way.
# ---------------------------------------------------------------------------------------

def sgd_scalars(step, *, lr, weight_decay):
    return {"lr": lr, "weight_decay": weight_decay}


def momentum_scalars(step, *, lr, momentum, weight_decay):
    return {"lr": lr, "momentum": momentum, "weight_decay": weight_decay}


def adagrad_scalars(step, *, lr, eps, weight_decay):
    return {"lr": lr, "eps": eps, "weight_decay": weight_decay}


def rmsprop_scalars(step, *, lr, alpha, eps, weight_decay):
    return {"lr": lr, "alpha": alpha, "one_minus_alpha": 1.0 - alpha, "eps": eps,
            "weight_decay": weight_decay}


def adadelta_scalars(step, *, lr, rho, eps, weight_decay):
    return {"lr": lr, "rho": rho, "one_minus_rho": 1.0 - rho, "eps": eps,
            "weight_decay": weight_decay}


def _adam_common(step, lr, betas, eps):
    beta1, beta2 = betas
    bias_correction1 = 1.0 - beta1 ** step
    bias_correction2 = 1.0 - beta2 ** step
    return {"beta1": beta1, "one_minus_beta1": 1.0 - beta1, "beta2": beta2,
            "one_minus_beta2": 1.0 - beta2, "eps": eps,
            "step_size": lr / bias_correction1,
            "bias_correction2_sqrt": math.sqrt(bias_correction2)}


def adam_scalars(step, *, lr, betas, eps, weight_decay):
    out = _adam_common(step, lr, betas, eps)
    out["weight_decay"] = weight_decay
    return out


def adamw_scalars(step, *, lr, betas, eps, weight_decay):
    out = _adam_common(step, lr, betas, eps)
    out["decay_factor"] = 1.0 - lr * weight_decay
    return out


# kernel name -> (state buffer names, scalar function)
RULES = {
    "sgd": ((), sgd_scalars),
    "momentum": (("velocity",), momentum_scalars),
    "nesterov": (("velocity",), momentum_scalars),
    "adagrad": (("sum_sq",), adagrad_scalars),
    "rmsprop": (("square_avg",), rmsprop_scalars),
    "adadelta": (("square_avg", "acc_delta"), adadelta_scalars),
    "adam": (("exp_avg", "exp_avg_sq"), adam_scalars),
    "adamw": (("exp_avg", "exp_avg_sq"), adamw_scalars),
}


# ---------------------------------------------------------------------------------------
# Arrays
# ---------------------------------------------------------------------------------------

def _dtype_name(dt):
    if dt.isnative or dt.byteorder == "|":
        return str(dt)
    return f"{dt.newbyteorder('=')} in non-native byte order ({dt.str!r})"


def _what(x):
    return f"{type(x).__module__}.{type(x).__qualname__}".replace("builtins.", "")


def check_param(name, param):
    """Check a parameter; return (a base-class ndarray view of it, its memory order).

    The order is the one in which its memory is contiguous ('C' or 'F'); the kernels
    walk a flat view of that memory, so the caller's own array is what gets updated.
    """
    if not isinstance(param, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array (float32 or float64), got "
                        f"{_what(param)}; convert it once before training, e.g. "
                        f"np.asarray(x, dtype=np.float32), and keep that array")
    if param.dtype not in FLOAT_DTYPES:
        hint = "np.float32" if param.dtype.kind != "f" or param.dtype.itemsize < 8 else "np.float64"
        raise TypeError(f"{name} has dtype {_dtype_name(param.dtype)}; "
                        f"fastoptim updates native float32 or float64 arrays in place: "
                        f"convert it once before training with .astype({hint}) and keep "
                        f"the new array as the parameter")
    if not param.flags.writeable:
        raise ValueError(f"{name} is read-only (flags.writeable is False); an optimizer "
                         f"must update it in place: pass a writeable array")
    if param.flags.c_contiguous:
        order = "C"
    elif param.flags.f_contiguous:
        order = "F"
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
    """Check a gradient against its parameter; return a flat view (or, for odd layouts
    or memory shared with the parameter, a flat copy) in the parameter's order."""
    if isinstance(grad, np.generic):
        grad = np.asarray(grad)
    if not isinstance(grad, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {_what(grad)}")
    if grad.dtype != param.dtype:
        raise TypeError(f"{name} has dtype {_dtype_name(grad.dtype)} "
                        f"but its parameter is {param.dtype}; cast it with "
                        f"grad.astype(np.{param.dtype})")
    if grad.shape != param.shape:
        raise ValueError(f"{name} has shape {grad.shape} but its parameter has shape "
                         f"{param.shape}; they must match exactly")
    if type(grad) is not np.ndarray:
        grad = grad.view(np.ndarray)
    flat = np.ravel(grad, order=order)  # contiguous; a copy only when the layout needs one
    if flat.size and np.may_share_memory(flat, param):
        # The gradient as given at the call, even if it is (part of) the parameter.
        flat = flat.copy()
    return flat


def flat_view(a, order):
    """A 1-D view of an array contiguous in ``order`` (reshaping such an array in its own
    order never copies, so writes through the view reach ``a``)."""
    return a.reshape(-1, order=order)


def check_state_buffer(name, buf, param, order):
    """For the functional API, where the caller owns the state buffers."""
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
    return buf.reshape(-1, order=order)
