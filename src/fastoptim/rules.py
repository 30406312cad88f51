"""The rule table: every optimizer rule fastoptim has, described once.

Each :class:`Rule` row says what the rest of the package needs to know about a rule: its
name (the name of its NumPy reference function in :mod:`fastoptim.reference`, of its
per-element kernel ``_rule_<name>`` in ``kernels/_rules.pxi``, and of its function in
:mod:`fastoptim.functional`), its class name, its state buffers, its hyper-parameters
with their defaults, checks and documentation, how the per-step kernel scalars derive
from them, and its cost class. The classes, the functional wrappers, the checkpoint
registry, the CLI and benchmark lists, the typing stubs, the kernels' dispatch (generated
at build time from ``kernels/_dispatch.pxi.tp``) and the docs' rule table are all made
from :data:`RULES`.

Adding a rule: a row here, a per-element kernel function, a reference function, a plain
NumPy version in ``fastoptim.demo.plain`` (the demo's baseline), tests and a doc line.

This module imports nothing from the package (the build reads it to generate the
kernels' dispatch), and nothing here touches an array.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["Hyper", "Rule", "RULES", "VARIANTS", "KERNEL_ROWS", "BY_NAME", "BY_CLASS",
           "BY_KERNEL", "EMA_FLAG", "BF16_FLAG", "INT8_FLAG", "STATE_DTYPES", "INT8_BLOCK",
           "INT8_MIN_SIZE", "INT8_RULES", "INT8_MAPS", "get", "schedulefree_step"]


# ---------------------------------------------------------------------------------------
# Hyper-parameter checks: each takes (name, value) and returns the value to store, or
# raises ValueError / TypeError with the message users see.
# ---------------------------------------------------------------------------------------

def _real(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"Invalid {name}: {value!r} (must be finite)")
    return value


def check_nonneg(name, value):
    """value >= 0 (learning rates, eps, weight decay)."""
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


#: The state formats of ``state_dtype`` (see docs/state.rst): None keeps the state in
#: the parameter's dtype; "bfloat16" keeps the rule's state buffers in bfloat16
#: (float32 parameters), widened exactly for each step and rounded to nearest even;
#: "int8" keeps them 8-bit block-wise (the 8-bit optimizers' dynamic maps, blocks of
#: INT8_BLOCK elements with a float32 absmax each; arrays under INT8_MIN_SIZE elements
#: keep float32 state), for the rules of INT8_RULES.
STATE_DTYPES = (None, "bfloat16", "int8")
#: Elements per block of 8-bit state (one float32 absmax per block; bitsandbytes' 256).
INT8_BLOCK = 256
#: Arrays with fewer elements keep float32 state in an int8 optimizer (bitsandbytes'
#: ``min_8bit_size``): the absmax and the noise cost more than they save there.
INT8_MIN_SIZE = 4096
#: The rules (and their variants) with 8-bit state, and each state buffer's map: signed
#: for first moments and velocities, unsigned for second moments and sums of squares.
INT8_RULES = ("momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "lion")
INT8_MAPS = {"velocity": "signed", "exp_avg": "signed", "exp_avg_sq": "unsigned",
             "max_exp_avg_sq": "unsigned", "square_avg": "unsigned", "grad_avg": "signed",
             "momentum_buffer": "signed", "sum_sq": "unsigned"}


def check_state_dtype(name, value):
    """None (the parameter's dtype) or "bfloat16" (the string, or a dtype/type whose
    name is bfloat16, such as ``ml_dtypes.bfloat16``)."""
    if value is None or value in STATE_DTYPES:
        return value
    named = getattr(value, "name", None) or getattr(value, "__name__", None)
    if named in ("bfloat16", "int8"):
        return named
    if value in ("float32", "float64") or named in ("float32", "float64"):
        raise ValueError(f"Invalid {name}: {value!r} (float state is kept in the "
                         f"parameter's dtype: leave {name}=None; the other formats are "
                         f"{', '.join(repr(v) for v in STATE_DTYPES[1:])})")
    raise ValueError(f"Invalid {name}: {value!r} (must be None, the parameter's dtype, "
                     f"or {', '.join(repr(v) for v in STATE_DTYPES[1:])})")


def check_betas(name, value):
    """A pair (beta1, beta2), each 0 <= beta < 1."""
    try:
        b1, b2 = value
    except (TypeError, ValueError):
        raise ValueError(f"Invalid {name}: {value!r} (must be a pair (beta1, beta2))") from None
    return (check_unit_open("beta1", b1), check_unit_open("beta2", b2))


def check_bool(name, value):
    """True or False (NumPy's bool too)."""
    t = type(value)  # NumPy's bool by name: this module imports no NumPy
    if t is bool or (t.__module__ == "numpy" and t.__name__ in ("bool", "bool_")):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def check_sf_betas(name, value):
    """A pair (beta1, beta2), 0 < beta1 < 1 and 0 <= beta2 < 1 (Schedule-Free: the
    evaluation point x = y + (1 - 1/beta1)*(z - y) needs beta1 > 0)."""
    b1, b2 = check_betas(name, value)
    if b1 == 0.0:
        raise ValueError(f"Invalid beta1: {b1!r} (must satisfy 0 < beta1 < 1: "
                         f"Schedule-Free's evaluation point divides by beta1)")
    return (b1, b2)


def check_count(name, value):
    """An int >= 0 (a number of steps)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    value = int(value)
    if value < 0:
        raise ValueError(f"Invalid {name}: {value!r} (must be >= 0)")
    return value


_REQUIRED = object()


class _Row:
    """A read-only record with the fields ``_fields`` ((name, default) pairs; default
    ``_REQUIRED`` for none), given by position or by keyword. (Plain classes rather than
    dataclasses: importing ``dataclasses`` costs ``import fastoptim`` several ms.)"""

    _fields = ()

    def __init__(self, *args, **kwargs):
        names = [f for f, _ in self._fields]
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__} takes at most {len(names)} fields")
        values = dict(zip(names, args))
        for k, v in kwargs.items():
            if k not in names or k in values:
                raise TypeError(f"{type(self).__name__}: bad or repeated field {k!r}")
            values[k] = v
        for f, default in self._fields:
            if f not in values:
                if default is _REQUIRED:
                    raise TypeError(f"{type(self).__name__}: missing field {f!r}")
                values[f] = default
            object.__setattr__(self, f, values[f])

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} rows are read-only")

    def __repr__(self):
        return f"{type(self).__name__}({getattr(self, self._fields[0][0])!r})"


_RANGE_TEXT = {check_nonneg: ">= 0", check_unit_open: "0 <= {name} < 1",
               check_unit_closed: "0 <= {name} <= 1",
               check_betas: "each 0 <= beta < 1", check_bool: "True or False",
               check_sf_betas: "0 < beta1 < 1 and 0 <= beta2 < 1",
               check_count: "an int >= 0",
               check_state_dtype: "None, 'bfloat16' or 'int8'"}


class Hyper(_Row):
    """One hyper-parameter of a rule: ``name``, ``default``, ``check`` (a function
    (name, value) -> the value to store, or it raises), ``doc`` (what it is, one
    sentence; the range is added from ``check``), ``type`` (for the docs and stubs:
    "float" unless given), ``option`` (an option added to the rule, off by default:
    a state_dict without it loads with the default) and ``structural`` (an option that
    changes the rule's state buffers when it is not at its default, such as Adam's
    ``amsgrad``: the optimizer runs the rule's variant row of :data:`VARIANTS`; it can
    change only while the optimizer holds no state)."""

    _fields = (("name", _REQUIRED), ("default", _REQUIRED), ("check", _REQUIRED),
               ("doc", _REQUIRED), ("type", "float"), ("option", False),
               ("structural", False))

    def range_text(self):
        return _RANGE_TEXT[self.check].format(name=self.name)


def _lr(default, doc="Learning rate."):
    return Hyper("lr", default, check_nonneg, doc)


def _eps(default, doc):
    return Hyper("eps", default, check_nonneg, doc)


_COUPLED_DECAY = Hyper(
    "weight_decay", 0.0, check_nonneg,
    "Coupled L2 decay: ``g <- g + weight_decay*p`` before the rule (in a register: "
    "the gradient array is never written), skipped when 0.")
_MOMENTUM = Hyper("momentum", 0.9, check_unit_open, "The velocity's decay.")
# every rule's last hyper-parameter (Rule adds it): torch.optim's maximize
MAXIMIZE = Hyper("maximize", False, check_bool,
                 "Step up the gradient (maximise the objective): the rule on ``-g``, "
                 "before any weight decay, as torch.optim.", type="bool", option=True)
# every rule's option but Schedule-Free's (Rule adds it, before maximize): Keras' use_ema
EMA = Hyper("ema", 0.0, check_unit_open,
            "Keep an exponential moving average of the parameters, updated in the same pass "
            "as the step: ``a <- ema*a + (1-ema)*p`` after each step (``a = p`` after a "
            "parameter's first step, as Keras' ``use_ema`` and torch's ``AveragedModel``; "
            "a state buffer, ``ema``); 0 keeps none. ``swap_ema(params)`` swaps it in for "
            "evaluation.", option=True, structural=True)
#: The bit of a kernel id that says "and the parameters' moving average" (rules with
#: ``ema``): the rule's loop also does a <- ema*a + (1-ema)*p for each element just
#: stepped (kernels/_dispatch.pxi.tp; kernels/_body.pxi checks its own copy of this value).
EMA_FLAG = 1024
# every rule's option but LAMB's (Rule adds it, before maximize): the state's format
STATE_DTYPE = Hyper(
    "state_dtype", None, check_state_dtype,
    "The format of the rule's state buffers: None keeps them in the parameter's dtype; "
    "``'bfloat16'`` (float32 parameters) keeps them in bfloat16, half the bytes: each "
    "step widens them to float32 (exact), runs the rule in float32 and rounds the new "
    "state to nearest even, in the same pass; ``'int8'`` (Adam, AdamW, Momentum, "
    "Nesterov, RMSprop, AdaGrad, Lion; float32 parameters) keeps them 8-bit block-wise, "
    "a quarter of the bytes: blocks of 256 with a float32 absmax each, the dynamic maps "
    "of the 8-bit optimizers paper, dequantised and requantised in the same pass; "
    "arrays under 4096 elements keep float32 state (see docs/state.rst). The moving "
    "average of ``ema`` stays in the parameter's dtype.", type="str or None",
    option=True, structural=True)
#: The bit of a kernel id that says "the rule's state buffers are bfloat16"
#: (state_dtype="bfloat16"; kernels/_body.pxi checks its own copy of this value).
BF16_FLAG = 2048
#: The bit of a kernel id that says "the rule's state buffers are 8-bit block-wise"
#: (state_dtype="int8", arrays of INT8_MIN_SIZE elements or more).
INT8_FLAG = 4096
_BETAS = Hyper("betas", (0.9, 0.999), check_betas,
               "Decay rates ``(b1, b2)`` of the two moments.", type="(float, float)")
_AMSGRAD = Hyper("amsgrad", False, check_bool,
                 "AMSGrad (Reddi et al. 2018, as torch.optim): the step divides by the "
                 "running maximum of ``v`` (a third state buffer, ``max_exp_avg_sq``) "
                 "instead of ``v``.", type="bool", option=True, structural=True)


# ---------------------------------------------------------------------------------------
# Step scalars: per rule, a function of its hyper-parameters (keywords) that returns the
# function step -> the kernel scalars of that step, in the order of the rule's
# ``scalar_names``. Every scalar is computed here, once per step, in float64; kernels and
# reference convert it to the array's dtype the same way. (Two levels, so that what does
# not depend on the step is worked out once per setting of the hyper-parameters.)
# ---------------------------------------------------------------------------------------

def _constant(*values):
    values = tuple(values)

    def at(step):
        return values
    return at


def _lr_wd(*, lr, weight_decay):
    return _constant(lr, weight_decay)


def _momentum_scalars(*, lr, momentum, weight_decay):
    return _constant(lr, momentum, weight_decay)


# Momentum with torch's dampening: torch keeps buf <- momentum*buf + (1-dampening)*g and
# steps lr*buf, but its first step sets buf <- g (no dampening). In the lr-scaled
# velocity: the gradient's coefficient (the kernel's ``lr``) is lr on a parameter's
# first step and lr*(1-dampening) after, so with dampening the scalars depend on the
# step (``Rule.stepped_by``).

def _dampened_momentum_scalars(*, lr, momentum, dampening, weight_decay):
    if dampening == 0.0:
        return _constant(lr, momentum, weight_decay)
    first, later = (lr, momentum, weight_decay), (lr * (1.0 - dampening), momentum,
                                                   weight_decay)

    def at(step):
        return first if step == 1 else later
    return at


# AdaGrad with torch's lr_decay: the step's rate is lr/(1 + (t-1)*lr_decay), computed
# here as torch computes it; with lr_decay the scalars depend on the step.

def _adagrad_scalars(*, lr, eps, weight_decay, lr_decay, initial_accumulator_value):
    if lr_decay == 0.0:
        return _constant(lr, eps, weight_decay)

    def at(step):
        return (lr / (1.0 + (step - 1) * lr_decay), eps, weight_decay)
    return at


def _rmsprop_scalars(*, lr, alpha, eps, weight_decay):
    return _constant(lr, alpha, 1.0 - alpha, eps, weight_decay)


def _rmsprop_momentum_scalars(*, lr, alpha, eps, weight_decay, momentum):
    return _constant(lr, alpha, 1.0 - alpha, eps, weight_decay, momentum)


def _adadelta_scalars(*, lr, rho, eps, weight_decay):
    return _constant(lr, rho, 1.0 - rho, eps, weight_decay)


# Adam and AdamW in the paper's efficient form (Kingma & Ba, sec. 2): with
# step_size = lr*sqrt(1-b2**t)/(1-b1**t) and eps_hat = eps*sqrt(1-b2**t),
# lr*m_hat/(sqrt(v_hat)+eps) becomes step_size*m/(sqrt(v)+eps_hat), with no per-element
# bias correction.

def _adam_scalars(*, lr, betas, eps, weight_decay):
    beta1, beta2 = betas
    head = (beta1, 1.0 - beta1, beta2, 1.0 - beta2)

    def at(step):
        bc2_sqrt = math.sqrt(1.0 - beta2 ** step)
        return (*head, eps * bc2_sqrt, weight_decay, lr * bc2_sqrt / (1.0 - beta1 ** step))
    return at


def _adamw_scalars(*, lr, betas, eps, weight_decay):
    beta1, beta2 = betas
    head = (1.0 - lr * weight_decay, beta1, 1.0 - beta1, beta2, 1.0 - beta2)

    def at(step):
        bc2_sqrt = math.sqrt(1.0 - beta2 ** step)
        return (*head, eps * bc2_sqrt, lr * bc2_sqrt / (1.0 - beta1 ** step))
    return at


def _lion_scalars(*, lr, betas, weight_decay):
    beta1, beta2 = betas
    return _constant(1.0 - lr * weight_decay, lr, beta1, 1.0 - beta1, beta2, 1.0 - beta2)


# Adamax (Kingma & Ba, sec. 7.1; torch.optim.Adamax): only the first moment is
# bias-corrected, so the step size is lr/(1-b1**t); eps is inside the max, as torch.

def _adamax_scalars(*, lr, betas, eps, weight_decay):
    beta1, beta2 = betas
    head = (beta1, 1.0 - beta1, beta2, eps, weight_decay)

    def at(step):
        return (*head, lr / (1.0 - beta1 ** step))
    return at


# NAdam (Dozat 2016, as torch.optim.NAdam): the momentum schedule
# mu_t = b1*(1 - 0.5*0.96**(t*momentum_decay)) and its running product
# prod_t = mu_1*...*mu_t. torch keeps prod_t as per-parameter state (multiplied up step by
# step, in float32 unless torch's default dtype is float64); here it is a function of the
# step number (_nadam_prod), so that the state stays two per-element buffers and any step
# costs the same. In Adam's efficient form: with s = sqrt(1-b2**t),
# lr*(1-mu_t)/(1-prod_t) * g/(sqrt(v/(1-b2**t)) + eps) = grad_coef*g/(sqrt(v) + eps*s),
# likewise the m term with mu_{t+1} and prod_{t+1}.

_LN_096 = math.log(0.96)


def _nadam_mu(beta1, momentum_decay, step):
    return beta1 * (1.0 - 0.5 * 0.96 ** (step * momentum_decay))


def _nadam_prod(beta1, momentum_decay):
    """The function step -> prod_{i=1..step} mu_i, in closed form: b1**t * exp(F) with
    F = sum_i log(1 - q**i/2), q = 0.96**momentum_decay, summed over k in
    log(1-x) = -sum_k x**k/k: F = -sum_k 2**-k/k * sum_i q**(i*k), each inner sum a
    geometric series (expm1 keeps it accurate for q near 1). The terms fall by at least
    half per k, so 60 of them reach float64's precision: the result agrees with the
    step-by-step product to about 1e-13 relative (measured up to step 3000; the running
    product's own rounding is of that size), for any step, at the same cost."""
    if beta1 == 0.0:
        return lambda step: 0.0
    log_b1 = math.log(beta1)
    x = momentum_decay * _LN_096  # log q <= 0
    terms = []  # per k, smallest first: (k*x, 2**-k/k, q**k / (q**k - 1) or None)
    for k in range(60, 0, -1):
        den = math.expm1(k * x)
        terms.append((k * x, 0.5 ** k / k, None if den == 0.0 else math.exp(k * x) / den))

    def prod(step):
        f = 0.0
        for kx, c, r in terms:
            f -= c * (step if r is None else r * math.expm1(kx * step))
        return math.exp(step * log_b1 + f)
    return prod


def _nadam_scalars(*, lr, betas, eps, weight_decay, momentum_decay):
    beta1, beta2 = betas
    head = (beta1, 1.0 - beta1, beta2, 1.0 - beta2)

    prod = _nadam_prod(beta1, momentum_decay)
    last = (0, 1.0)  # the last step's (t+1, prod_{t+1}): the next step's prod_t

    def at(step):
        nonlocal last
        bc2_sqrt = math.sqrt(1.0 - beta2 ** step)
        mu = _nadam_mu(beta1, momentum_decay, step)
        mu_next = _nadam_mu(beta1, momentum_decay, step + 1)
        t, p = last
        prod_t = p if t == step else prod(step)
        prod_next = prod(step + 1)
        last = (step + 1, prod_next)
        return (*head, eps * bc2_sqrt, weight_decay,
                lr * (1.0 - mu) / (1.0 - prod_t) * bc2_sqrt,
                lr * mu_next / (1.0 - prod_next) * bc2_sqrt)
    return at


# RAdam (Liu et al. 2020, as torch.optim.RAdam): rho_inf = 2/(1-b2) - 1,
# rho_t = rho_inf - 2*t*b2**t/(1-b2**t). While rho_t <= 5 the step is SGD with momentum,
# lr*m_hat; after, the rectified adaptive step lr*r_t*m_hat*sqrt(1-b2**t)/(sqrt(v) + eps)
# (eps added to sqrt(v), not sqrt(v_hat), as torch). Both as one step_size and a flag
# ``rectify`` (1.0 or 0.0): the kernel branches on the flag, the same for every element.

def _radam_scalars(*, lr, betas, eps, weight_decay):
    beta1, beta2 = betas
    head = (beta1, 1.0 - beta1, beta2, 1.0 - beta2, eps, weight_decay)
    rho_inf = 2.0 / (1.0 - beta2) - 1.0

    def at(step):
        bc1 = 1.0 - beta1 ** step
        bc2 = 1.0 - beta2 ** step
        rho_t = rho_inf - 2.0 * step * (beta2 ** step) / bc2
        if rho_t > 5.0:
            rect = math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                             / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
            return (*head, lr * rect * math.sqrt(bc2) / bc1, 1.0)
        return (*head, lr / bc1, 0.0)
    return at


# LAMB (You et al. 2020, "Large Batch Optimization for Deep Learning: Training BERT in
# 76 minutes", Algorithm 2, as NVIDIA's apex FusedLAMB and timm's Lamb with bias
# correction): m and v as Adam's, the direction u = m_hat/(sqrt(v_hat) + eps) + wd*p, and
# p <- p - lr * ||p||/||u|| * u. In Adam's efficient form, with s = sqrt(1-b2**t)/(1-b1**t)
# and eps_hat = eps*sqrt(1-b2**t): u = s*(m/(sqrt(v) + eps_hat)) + wd*p. The trust ratio
# is the engine's (the norms of the whole array come before any element is stepped): it
# multiplies the last scalar, lr.

def _lamb_scalars(*, lr, betas, eps, weight_decay):
    beta1, beta2 = betas
    head = (beta1, 1.0 - beta1, beta2, 1.0 - beta2)

    def at(step):
        bc2_sqrt = math.sqrt(1.0 - beta2 ** step)
        return (*head, eps * bc2_sqrt, weight_decay, bc2_sqrt / (1.0 - beta1 ** step), lr)
    return at


# Schedule-Free AdamW (Defazio et al. 2024, as the authors' schedulefree.AdamWScheduleFree,
# inner momentum 0): per step k (counted from 0 per optimizer, not per parameter),
# sched = (k+1)/warmup_steps while k < warmup_steps else 1, lr_k = lr*sched,
# lr_max = max(lr_max, lr_k), weight = (k+1)**r * lr_max**weight_lr_power,
# weight_sum += weight, ckp1 = weight/weight_sum (0 while weight_sum is 0). lr_max and
# weight_sum depend on the learning rates of every step so far, not only on k: the
# optimizer class keeps (k, lr_max, weight_sum) as its own state and advances it with
# schedulefree_step once per applied update; the table's step function (what the
# functional API and the parity tests use) is the same recurrence for a run whose lr was
# the same from step 1.

SCHEDULE_FREE_START = (0, -1.0, 0.0)  # (k, lr_max, weight_sum) before the first step


def schedulefree_step(k, lr_max, weight_sum, *, lr, betas, eps, weight_decay,
                      warmup_steps, r, weight_lr_power, maximize=False, state_dtype=None):
    """(the rule's kernel scalars of step k+1, the new lr_max, the new weight_sum) from
    the optimizer-level state (k, lr_max, weight_sum) before that step. ``maximize`` is
    taken and left to the caller (the engine's gradient sign comes after these), and so
    is ``state_dtype`` (the engine's)."""
    beta1, beta2 = betas
    sched = (k + 1) / warmup_steps if k < warmup_steps else 1.0
    lr_k = lr * sched
    lr_max = max(lr_k, lr_max)
    weight = ((k + 1) ** r) * (lr_max ** weight_lr_power)
    weight_sum = weight_sum + weight
    ckp1 = weight / weight_sum if weight_sum != 0.0 else 0.0
    scalars = (beta2, 1.0 - beta2, 1.0 - beta2 ** (k + 1), eps, weight_decay, ckp1,
               lr_k * (beta1 * (1.0 - ckp1) - 1.0), lr_k)
    return scalars, lr_max, weight_sum


def _schedulefree_scalars(**hyper):
    """step -> the scalars of that step of a run at this constant ``lr`` from step 1:
    the recurrence of :func:`schedulefree_step` from the start, so the same bits as the
    optimizer class's while its ``lr`` is constant. The next step costs O(1); any other
    (a jump) O(step), about 0.3 us per step skipped."""
    lr, warmup, r, power = (hyper["lr"], hyper["warmup_steps"], hyper["r"],
                            hyper["weight_lr_power"])
    last = [*SCHEDULE_FREE_START]  # (k, lr_max, weight_sum) after k steps

    def at(step):
        k, lr_max, weight_sum = last
        if step <= k:
            k, lr_max, weight_sum = SCHEDULE_FREE_START
        while k < step - 1:  # schedulefree_step's lr_max and weight_sum, operation by operation
            sched = (k + 1) / warmup if k < warmup else 1.0
            lr_max = max(lr * sched, lr_max)
            weight_sum = weight_sum + ((k + 1) ** r) * (lr_max ** power)
            k += 1
        scalars, lr_max, weight_sum = schedulefree_step(k, lr_max, weight_sum, **hyper)
        last[:] = [k + 1, lr_max, weight_sum]
        return scalars
    return at


# ---------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------

class Rule(_Row):
    """One optimizer rule. The position of a row in :data:`RULES` is its kernel id.

    Fields: ``name`` (of its reference, kernel and functional functions), ``class_name``
    (``fastoptim.<class_name>``), ``doc`` (one line: what it is), ``formula`` (the
    update, in the notation of the docs), ``state`` (state buffer names, created zero on
    the first step), ``state_doc`` (buffer name -> what it holds), ``hyper``
    (:class:`Hyper` rows, in the constructor's order), ``positional`` (how many leading
    hyper-parameters may be positional), ``step_scalars`` (a function of the
    hyper-parameters, as keywords, returning step -> the kernel scalars, in
    ``scalar_names`` order), ``scalar_names`` (the kernel's and the reference's scalar
    keywords), ``cost`` ("light": a few multiply-adds per element, or "heavy": a square
    root and a division; it picks the serial threshold), ``stepped`` (the scalars depend
    on the step, e.g. bias correction), ``base`` (the class this rule's class derives
    from), ``notes`` (more of the class docstring), ``torch`` ((torch.optim class, extra
    keywords): the equivalent), ``stepped_by`` (hyper-parameters that make a rule's
    scalars depend on the step when they are not zero, e.g. AdaGrad's ``lr_decay``:
    then the optimizer and the functional form take the step as for a stepped rule),
    ``state_init`` (per state buffer, what it starts at: None for zero, "param" for a
    copy of the parameter, or the name of the hyper-parameter holding its initial value,
    e.g. AdaGrad's ``initial_accumulator_value``), ``schedule_free`` (the class keeps
    Schedule-Free's optimizer-level state and has ``eval()``/``train()``; see
    ``fastoptim.optimizers.ScheduleFree``), ``variant_of`` (for a row of
    :data:`VARIANTS`: (the name of its rule in :data:`RULES`, the structural options it
    stands for)), ``takes`` (the structural options its ``step_scalars`` takes, e.g.
    RMSprop's ``momentum`` in its momentum variants; the others are left out),
    ``ema_of`` (for a row made by :meth:`with_ema`: the row it extends) and
    ``trust_ratio`` (a layer-wise rule such as LAMB: each update is two phases per
    array -- the state and the norms ``||p||``, ``||u||`` of the parameter and of the
    update direction, then the parameter stepped by its last kernel scalar times
    ``||p||/||u||`` (1 where either norm is 0); see docs/rules.rst).
    """

    _fields = (("name", _REQUIRED), ("class_name", _REQUIRED), ("doc", _REQUIRED),
               ("formula", _REQUIRED), ("state", _REQUIRED), ("state_doc", _REQUIRED),
               ("hyper", _REQUIRED), ("positional", _REQUIRED),
               ("step_scalars", _REQUIRED), ("scalar_names", _REQUIRED),
               ("cost", _REQUIRED), ("stepped", False), ("base", None), ("notes", ""),
               ("torch", ()), ("stepped_by", ()), ("state_init", None),
               ("schedule_free", False), ("variant_of", None), ("takes", ()),
               ("ema_of", None), ("trust_ratio", False))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        names = [h.name for h in self.hyper]
        extra = []
        if "ema" not in names and not self.schedule_free:  # every rule but Schedule-Free's
            extra.append(EMA)
        if "state_dtype" not in names and not self.trust_ratio:  # every rule but LAMB's
            extra.append(STATE_DTYPE)
        if "maximize" not in names:  # every rule has it, last
            extra.append(MAXIMIZE)
        if extra:
            object.__setattr__(self, "hyper", (*self.hyper, *extra))

    @property
    def id(self):
        """The kernel id: the row's position in :data:`KERNEL_ROWS`, with
        :data:`EMA_FLAG` for a row that keeps the moving average (``ema_of``)."""
        return _IDS[self.name] | (EMA_FLAG if self.ema_of is not None else 0)

    def with_ema(self):
        """This row keeping the parameters' moving average too: the same kernel, its
        state buffers and then ``ema``; its scalars depend on the step (the first sets
        the average to the parameter). Made once per row."""
        if self.ema_of is not None:
            return self
        row = _EMA_ROWS.get(id(self))
        if row is None or row.ema_of is not self:
            fields = {f: getattr(self, f) for f, _ in Rule._fields}
            init = self.state_init or (None,) * len(self.state)
            fields.update(state=(*self.state, "ema"), state_init=(*init, None),
                          state_doc={**self.state_doc, "ema": _EMA_DOC}, stepped=True,
                          ema_of=self)
            row = _EMA_ROWS[id(self)] = Rule(**fields)
        return row

    @property
    def hyper_names(self):
        return tuple(h.name for h in self.hyper)

    @property
    def defaults(self):
        return {h.name: h.default for h in self.hyper}

    @property
    def functional_hyper(self):
        """The hyper-parameters the functional form takes: all but those that only set
        a state buffer's initial value (its caller makes the state) and the structural
        options (the caller picks the variant's function: ``adam_amsgrad``), unless
        the row's scalars take them."""
        skip = set(self.state_init or ()) | (set(self.structural) - set(self.takes))
        return tuple(h for h in self.hyper if h.name not in skip)

    def is_stepped(self, hyper):
        """Whether the scalars of these hyper-parameters depend on the step."""
        return self.stepped or any(hyper[n] != 0 for n in self.stepped_by)

    def initial_values(self, hyper):
        """What each state buffer starts at, for these hyper-parameters: a number (0.0
        unless ``state_init`` names a hyper-parameter), or "param" (a copy of the
        parameter)."""
        if self.state_init is None:
            return (0.0,) * len(self.state)
        return tuple(0.0 if n is None else n if n == "param" else hyper[n]
                     for n in self.state_init)

    def stepper(self, hyper):
        """The function step -> the kernel scalars for these (checked) hyper-parameters:
        the rule's own, in the order of ``scalar_names``, then the gradient's sign (-1
        with ``maximize``), which the engine applies to every gradient element."""
        at = self.step_scalars(**self._own(hyper))
        sign = -1.0 if hyper.get("maximize") else 1.0
        if self.ema_of is None:
            def scalars(step):
                return (*at(step), sign)
            return scalars
        # then the moving average's (decay, 1 - decay): (0, 1) on a parameter's first
        # step, so that a = 0*0 + 1*p is the parameter exactly
        later = (hyper["ema"], 1.0 - hyper["ema"])

        def scalars_ema(step):
            return (*at(step), sign, *((0.0, 1.0) if step == 1 else later))
        return scalars_ema

    def scalars(self, step, **hyper):
        """The rule's kernel scalars of step ``step`` (counting from 1) for these
        (checked) hyper-parameters, in the order of ``scalar_names`` (without the
        gradient's sign that :meth:`stepper` adds for the engine)."""
        return self.step_scalars(**self._own(hyper))(step)

    def _own(self, hyper):
        """What ``step_scalars`` takes of these hyper-parameters: all but ``maximize``
        and the structural options this row does not take."""
        skip = {h.name for h in self.hyper if h.structural and h.name not in self.takes}
        skip.add("maximize")
        return {k: v for k, v in hyper.items() if k not in skip}

    @property
    def structural(self):
        """The names of the structural options (:class:`Hyper`'s ``structural``)."""
        return tuple(h.name for h in self.hyper if h.structural)

    def row_for(self, hyper):
        """The row that runs these hyper-parameters: this rule's own, or the variant
        of :data:`VARIANTS` for the structural options not at their defaults (missing
        names count as at their defaults). Raises ValueError for a combination that
        has no variant."""
        own = self.ema_of if self.ema_of is not None else self
        base = BY_NAME[own.variant_of[0]] if own.variant_of else own
        active = tuple(h.name for h in base.hyper if h.structural
                       and h.name not in ("ema", "state_dtype")
                       and hyper.get(h.name, h.default) != h.default)
        row = base
        if active:
            row = _BY_OPTIONS.get((base.name, active))
            if row is None:
                raise ValueError(f"{base.class_name} has no variant for "
                                 f"{', '.join(active)} together")
        if hyper.get("ema", 0.0) != 0.0 and "ema" in base.hyper_names:
            return row.with_ema()
        return row

    def check(self, **hyper):
        """Validate hyper-parameters of this rule by name; return them as stored."""
        by_name = {h.name: h for h in self.hyper}
        return {n: by_name[n].check(n, v) for n, v in hyper.items()}

    @property
    def int8_maps(self):
        """Per own state buffer (not ``ema``) its 8-bit map, "signed" or "unsigned",
        for a row with 8-bit state (:data:`INT8_RULES` and their variants); else None."""
        own = self.ema_of if self.ema_of is not None else self
        base = own.variant_of[0] if own.variant_of else own.name
        if base not in INT8_RULES:
            return None
        return tuple(INT8_MAPS[n] for n in own.state)

    def state_bytes(self, itemsize, state_itemsize=None):
        """Bytes of memory one ``update`` moves per element: the parameter read and
        written, the gradient read, each state buffer read and written; for a
        ``trust_ratio`` rule, the parameter and the state read again in the second
        phase. ``state_itemsize``: of the rule's state buffers when their format is not
        the parameter's (2 for bfloat16); the moving average (``ema``) is the
        parameter's."""
        si = itemsize if state_itemsize is None else state_itemsize
        own = len(self.state) - ("ema" in self.state)
        again = (itemsize + own * si) if self.trust_ratio else 0
        return (3 * itemsize + 2 * own * si + 2 * itemsize * ("ema" in self.state)
                + again)


RULES = (
    Rule("sgd", "SGD", "Stochastic gradient descent.", "p <- p - lr*g",
         (), {}, (_lr(1e-3), _COUPLED_DECAY), 1, _lr_wd, ("lr", "weight_decay"),
         "light", torch=("SGD", {})),
    Rule("momentum", "Momentum", "SGD with momentum (the velocity holds lr-scaled steps).",
         "v <- momentum*v + lr*g ; p <- p - v",
         ("velocity",), {"velocity": "the velocity ``v``"},
         (_lr(1e-3), _MOMENTUM, _COUPLED_DECAY,
          Hyper("dampening", 0.0, check_unit_closed,
                "torch.optim's dampening: from a parameter's second step on, the "
                "gradient enters the velocity as ``lr*(1-dampening)*g`` (its first "
                "step adds ``lr*g``, as torch).", option=True)), 2,
         _dampened_momentum_scalars,
         ("lr", "momentum", "weight_decay"), "light",
         notes="``v`` holds lr-scaled steps, so a later change of ``lr`` leaves the "
               "stored velocity as it was (old steps keep their learning rate; "
               "torch.optim's ``SGD(momentum=...)`` agrees while ``lr`` is constant). "
               "With ``dampening`` the kernel's ``lr`` scalar is the gradient's "
               "coefficient of the step, ``lr`` or ``lr*(1-dampening)``.",
         torch=("SGD", {"momentum": 0.9}), stepped_by=("dampening",)),
    Rule("nesterov", "Nesterov", "Nesterov accelerated gradient (NAG), look-ahead form.",
         "v <- momentum*v + lr*g ; p <- p - (momentum*v + lr*g)",
         ("velocity",), {"velocity": "the velocity ``v``"},
         (_lr(1e-3), _MOMENTUM, _COUPLED_DECAY), 2, _momentum_scalars,
         ("lr", "momentum", "weight_decay"), "light", base="Momentum",
         notes="The look-ahead form of Bengio et al. 2013, as in torch.optim and Keras: "
               "the stored parameter is the look-ahead point ``theta - momentum*v`` of "
               "the classic formulation, so the gradient the caller computes at ``p`` "
               "is the look-ahead gradient.",
         torch=("SGD", {"momentum": 0.9, "nesterov": True})),
    Rule("adagrad", "AdaGrad", "AdaGrad: per-element rates from the sum of squared "
         "gradients.", "G <- G + g*g ; p <- p - lr*g / (sqrt(G) + eps)",
         ("sum_sq",), {"sum_sq": "the running sum ``G`` of squared gradients"},
         (_lr(1e-2), _eps(1e-10, "Added to ``sqrt(G)`` (outside the root, as "
                                 "torch.optim)."), _COUPLED_DECAY,
          Hyper("lr_decay", 0.0, check_nonneg, option=True,
                doc="torch.optim's learning-rate decay: step ``t`` uses "
                    "``lr/(1 + (t-1)*lr_decay)``."),
          Hyper("initial_accumulator_value", 0.0, check_nonneg, option=True,
                doc="The value ``G`` starts at (torch.optim's; 0 in the paper).")), 1,
         _adagrad_scalars, ("lr", "eps", "weight_decay"), "heavy", torch=("Adagrad", {}),
         notes="With ``lr_decay`` the kernel's ``lr`` scalar is the step's rate.",
         stepped_by=("lr_decay",), state_init=("initial_accumulator_value",)),
    Rule("rmsprop", "RMSprop", "RMSprop: per-element rates from a running average of "
         "squared gradients.", "E <- alpha*E + (1-alpha)*g*g ; p <- p - lr*g / (sqrt(E) + eps)",
         ("square_avg",), {"square_avg": "the running average ``E`` of squared gradients"},
         (_lr(1e-2), Hyper("alpha", 0.99, check_unit_closed,
                           "Smoothing constant of the average."),
          _eps(1e-8, "Added to ``sqrt(E)`` (outside the root)."), _COUPLED_DECAY,
          Hyper("momentum", 0.0, check_unit_open, option=True, structural=True,
                doc="torch.optim's momentum: when not 0, the step goes through a "
                    "velocity ``b <- momentum*b + lr*g/(sqrt(E) + eps)``, "
                    "``p <- p - b`` (a state buffer, ``momentum_buffer``)."),
          Hyper("centered", False, check_bool, type="bool", option=True, structural=True,
                doc="torch.optim's centered RMSprop: the root is of the variance "
                    "estimate ``E - a*a``, ``a`` the running average of the gradients "
                    "(a state buffer, ``grad_avg``).")), 2,
         _rmsprop_scalars, ("lr", "alpha", "one_minus_alpha", "eps", "weight_decay"),
         "heavy", torch=("RMSprop", {}),
         notes="With ``momentum`` the velocity holds lr-scaled steps, as "
               "fastoptim's Momentum (torch keeps ``g/avg`` and multiplies by ``lr`` "
               "when it steps: the same while ``lr`` is constant)."),
    Rule("adadelta", "AdaDelta", "AdaDelta: RMSprop with units from a running average of "
         "squared steps.",
         "G <- rho*G + (1-rho)*g*g ; d <- sqrt(S+eps)/sqrt(G+eps)*g ; "
         "S <- rho*S + (1-rho)*d*d ; p <- p - lr*d",
         ("square_avg", "acc_delta"),
         {"square_avg": "the running average ``G`` of squared gradients",
          "acc_delta": "the running average ``S`` of squared steps"},
         (_lr(1.0, "Multiplies the step ``d`` (as torch.optim)."),
          Hyper("rho", 0.9, check_unit_closed, "Decay of both running averages."),
          _eps(1e-6, "Inside both roots (Zeiler's paper)."), _COUPLED_DECAY), 2,
         _adadelta_scalars, ("lr", "rho", "one_minus_rho", "eps", "weight_decay"),
         "heavy", torch=("Adadelta", {"lr": 1.0})),
    Rule("adam", "Adam", "Adam with bias correction and coupled L2 decay.",
         "m <- b1*m + (1-b1)*g ; v <- b2*v + (1-b2)*g*g ; "
         "p <- p - lr*m_hat / (sqrt(v_hat) + eps)",
         ("exp_avg", "exp_avg_sq"),
         {"exp_avg": "the first moment ``m``", "exp_avg_sq": "the second moment ``v``"},
         (_lr(1e-3), _BETAS, _eps(1e-8, "Added to ``sqrt(v_hat)``."), _COUPLED_DECAY,
          _AMSGRAD), 2,
         _adam_scalars, ("beta1", "one_minus_beta1", "beta2", "one_minus_beta2",
                         "eps_hat", "weight_decay", "step_size"), "heavy", stepped=True,
         notes="``m_hat = m/(1-b1**t)``, ``v_hat = v/(1-b2**t)``, ``t`` counted per "
               "parameter. Computed in the paper's efficient form (equal in exact "
               "arithmetic; agrees with torch.optim.Adam to rounding, not bit for bit).",
         torch=("Adam", {})),
    Rule("adamw", "AdamW", "AdamW: Adam with decoupled weight decay.",
         "p <- p*(1 - lr*weight_decay), then Adam with no decay term in g",
         ("exp_avg", "exp_avg_sq"),
         {"exp_avg": "the first moment ``m``", "exp_avg_sq": "the second moment ``v``"},
         (_lr(1e-3), _BETAS, _eps(1e-8, "Added to ``sqrt(v_hat)``."),
          Hyper("weight_decay", 1e-2, check_nonneg,
                "Decoupled decay (Loshchilov & Hutter): the parameter shrinks by the "
                "factor ``1 - lr*weight_decay`` before the Adam step; no decay term in "
                "``g``."), _AMSGRAD), 2,
         _adamw_scalars, ("decay_factor", "beta1", "one_minus_beta1", "beta2",
                          "one_minus_beta2", "eps_hat", "step_size"), "heavy",
         stepped=True, base="Adam", torch=("AdamW", {})),
    Rule("lion", "Lion", "Lion (Chen et al. 2023): the sign of an interpolated momentum, "
         "decoupled weight decay.",
         "c <- b1*m + (1-b1)*g ; p <- p*(1 - lr*weight_decay) - lr*sign(c) ; "
         "m <- b2*m + (1-b2)*g",
         ("exp_avg",), {"exp_avg": "the momentum ``m``"},
         (_lr(1e-4), Hyper("betas", (0.9, 0.99), check_betas,
                           "``b1`` interpolates the step's direction, ``b2`` is the "
                           "momentum's decay.", type="(float, float)"),
          Hyper("weight_decay", 0.0, check_nonneg,
                "Decoupled decay: the parameter shrinks by the factor "
                "``1 - lr*weight_decay`` before the step; no decay term in ``g``.")), 2,
         _lion_scalars, ("decay_factor", "lr", "beta1", "one_minus_beta1", "beta2",
                         "one_minus_beta2"), "light",
         notes="The form of the paper's Program 1 and of lucidrains' ``lion-pytorch`` "
               "(not in torch.optim). ``sign(0) = 0`` (a zero keeps its sign) and "
               "``sign(NaN) = NaN``. Every element moves by ``lr`` (or not at all): use "
               "a learning rate 3-10x smaller than AdamW's."),
    Rule("adamax", "Adamax", "Adamax: Adam with the infinity norm in place of the second "
         "moment.",
         "m <- b1*m + (1-b1)*g ; u <- max(b2*u, |g| + eps) ; "
         "p <- p - lr/(1-b1**t) * (m / u)",
         ("exp_avg", "exp_inf"),
         {"exp_avg": "the first moment ``m``",
          "exp_inf": "the exponentially weighted infinity norm ``u``"},
         (_lr(2e-3), _BETAS, _eps(1e-8, "Added to ``|g|`` inside the max (as "
                                        "torch.optim)."), _COUPLED_DECAY), 2,
         _adamax_scalars, ("beta1", "one_minus_beta1", "beta2", "eps", "weight_decay",
                           "step_size"), "heavy", stepped=True,
         notes="Kingma & Ba, section 7.1, with torch.optim's ``eps`` (the paper has "
               "none). The max propagates NaN, as ``torch.maximum``.",
         torch=("Adamax", {})),
    Rule("nadam", "NAdam", "NAdam: Adam with Nesterov momentum (Dozat's momentum "
         "schedule).",
         "m <- b1*m + (1-b1)*g ; v <- b2*v + (1-b2)*g*g ; "
         "p <- p - lr*((1-mu_t)/(1-prod_t)*g + mu_{t+1}/(1-prod_{t+1})*m) "
         "/ (sqrt(v_hat) + eps)",
         ("exp_avg", "exp_avg_sq"),
         {"exp_avg": "the first moment ``m``", "exp_avg_sq": "the second moment ``v``"},
         (_lr(2e-3), _BETAS, _eps(1e-8, "Added to ``sqrt(v_hat)``."), _COUPLED_DECAY,
          Hyper("momentum_decay", 4e-3, check_nonneg,
                "``psi`` of the momentum schedule "
                "``mu_t = b1*(1 - 0.5*0.96**(t*psi))``.")), 2,
         _nadam_scalars, ("beta1", "one_minus_beta1", "beta2", "one_minus_beta2",
                          "eps_hat", "weight_decay", "grad_coef", "momentum_coef"),
         "heavy", stepped=True,
         notes="``v_hat = v/(1-b2**t)``, ``prod_t = mu_1*...*mu_t``, as "
               "torch.optim.NAdam. ``prod_t`` is recomputed from the step number "
               "(not kept as state), with the current ``betas`` and "
               "``momentum_decay``. Computed in Adam's efficient form.",
         torch=("NAdam", {})),
    Rule("radam", "RAdam", "RAdam: Adam with the variance of the adaptive rate rectified.",
         "m <- b1*m + (1-b1)*g ; v <- b2*v + (1-b2)*g*g ; "
         "p <- p - lr*r_t*m_hat*sqrt(1-b2**t)/(sqrt(v) + eps) if rho_t > 5, "
         "else p <- p - lr*m_hat",
         ("exp_avg", "exp_avg_sq"),
         {"exp_avg": "the first moment ``m``", "exp_avg_sq": "the second moment ``v``"},
         (_lr(1e-3), _BETAS, _eps(1e-8, "Added to ``sqrt(v)`` (as torch.optim)."),
          _COUPLED_DECAY), 2,
         _radam_scalars, ("beta1", "one_minus_beta1", "beta2", "one_minus_beta2", "eps",
                          "weight_decay", "step_size", "rectify"), "heavy", stepped=True,
         notes="``m_hat = m/(1-b1**t)``, ``rho_inf = 2/(1-b2) - 1``, "
               "``rho_t = rho_inf - 2*t*b2**t/(1-b2**t)``, "
               "``r_t = sqrt((rho_t-4)*(rho_t-2)*rho_inf/((rho_inf-4)*(rho_inf-2)*rho_t))``"
               ", as torch.optim.RAdam.",
         torch=("RAdam", {})),
    Rule("schedulefree_adamw", "ScheduleFreeAdamW",
         "Schedule-Free AdamW (Defazio et al. 2024): no learning-rate schedule; the "
         "parameter holds the gradient point y.",
         "v <- b2*v + (1-b2)*g*g ; u <- g/(sqrt(v/(1-b2**t)) + eps) + weight_decay*y ; "
         "y <- y + ckp1*(z - y) + lr_t*(b1*(1-ckp1) - 1)*u ; z <- z - lr_t*u",
         ("z", "exp_avg_sq"),
         {"z": "the base sequence ``z`` of the primal averaging (a copy of the parameter "
               "before the first step)",
          "exp_avg_sq": "the second moment ``v``"},
         (_lr(2.5e-3, "Learning rate (the peak: after warmup)."),
          Hyper("betas", (0.9, 0.999), check_sf_betas,
                "``b1`` interpolates between ``z`` and the average ``x`` (the gradient "
                "point ``y = (1-b1)*z + b1*x``), ``b2`` is the second moment's decay.",
                type="(float, float)"),
          _eps(1e-8, "Added to ``sqrt(v_hat)``."),
          Hyper("weight_decay", 0.0, check_nonneg,
                "L2 decay evaluated at ``y``: ``weight_decay*y`` is added to the "
                "normalised gradient ``u`` (as the authors' code)."),
          Hyper("warmup_steps", 0, check_count,
                "Linear warmup: ``lr_t = lr*t/warmup_steps`` for the first "
                "``warmup_steps`` steps.", type="int"),
          Hyper("r", 0.0, check_nonneg, "Polynomial weighting ``t**r`` of the "
                "average."),
          Hyper("weight_lr_power", 2.0, check_nonneg,
                "The average's weights are ``lr_max**weight_lr_power`` (0: no "
                "weighting by the learning rate).")), 2,
         _schedulefree_scalars, ("beta2", "one_minus_beta2", "bias_correction2", "eps",
                                 "weight_decay", "ckp1", "y_coef", "scheduled_lr"),
         "heavy", stepped=True, state_init=("param", None), schedule_free=True,
         notes="``lr_t`` is ``lr`` after warmup, ``ckp1 = weight/weight_sum`` with "
               "``weight = t**r * lr_max**weight_lr_power`` and ``lr_max`` the largest "
               "``lr_t`` so far. ``t`` counts the optimizer's applied updates (one per "
               "training step, all parameters in one call), not each parameter's: the "
               "optimizer keeps ``(t, lr_max, weight_sum)`` and whether it is in train "
               "or eval mode as its own state (``state_dict()['optimizer_state']``, in "
               "checkpoints too), advanced once per applied update, so changing ``lr`` "
               "between updates acts as in the authors' code. A parameter first seen at "
               "a later update starts with ``z`` a copy of itself and the optimizer's "
               "``t`` (as the authors'). ``opt.eval(params)`` moves the parameters to "
               "the average ``x`` (evaluate and checkpoint the model there), "
               "``opt.train(params)`` back to ``y``; ``update`` refuses to run in eval "
               "mode. The optimizer starts in train mode (the authors' starts in eval "
               "mode and needs ``train()`` first; here that call is harmless)."),
    Rule("lamb", "LAMB", "LAMB (You et al. 2020): Adam's direction, scaled per array by "
         "the trust ratio ||p||/||u||.",
         "m <- b1*m + (1-b1)*g ; v <- b2*v + (1-b2)*g*g ; "
         "u <- m_hat/(sqrt(v_hat) + eps) + weight_decay*p ; p <- p - lr*||p||/||u||*u",
         ("exp_avg", "exp_avg_sq"),
         {"exp_avg": "the first moment ``m``", "exp_avg_sq": "the second moment ``v``"},
         (_lr(1e-3), _BETAS, _eps(1e-6, "Added to ``sqrt(v_hat)`` (the paper's and apex's "
                                        "1e-6)."),
          Hyper("weight_decay", 0.0, check_nonneg,
                "Decoupled decay inside the direction: ``weight_decay*p`` is added to "
                "``u`` before its norm (the paper's ``r + lambda*x``).")), 2,
         _lamb_scalars, ("beta1", "one_minus_beta1", "beta2", "one_minus_beta2", "eps_hat",
                         "weight_decay", "scale", "lr"), "heavy", stepped=True,
         trust_ratio=True,
         notes="``m_hat = m/(1-b1**t)``, ``v_hat = v/(1-b2**t)``; the norms are of the "
               "whole array (its layer), ``||p||`` before the step; the ratio is 1 where "
               "either norm is 0 (as apex and timm), NaN where one is NaN. Each update "
               "is two passes over each array: the moments and both norms, then the "
               "step (the norms must be known before any element moves). No gradient "
               "clipping is built in: apex's ``max_grad_norm`` is "
               "``fastoptim.clip_grad_norm`` before ``update``."),
)

_EMA_DOC = "the exponential moving average ``a`` of the parameter (``ema``)"
_EMA_ROWS = {}  # id(row) -> row.with_ema()

BY_NAME = {r.name: r for r in RULES}
BY_CLASS = {r.class_name: r for r in RULES}


def _variant(parent, suffix, options, state, state_doc, formula, **fields):
    """The row of ``parent``'s rule with the structural ``options`` on: the same class,
    hyper-parameters, cost and step scalars (unless ``fields`` says otherwise), its own
    state buffers, kernel and reference function ``<parent>_<suffix>``."""
    parent = BY_NAME[parent]
    keep = {f: getattr(parent, f) for f, _ in Rule._fields
            if f not in ("name", "formula", "state", "state_doc", "notes", "torch",
                         "variant_of")}
    keep.update(fields)
    return Rule(name=f"{parent.name}_{suffix}", formula=formula, state=state,
                state_doc={**parent.state_doc, **state_doc},
                variant_of=(parent.name, tuple(options)), **keep)


_MAX_V = {"max_exp_avg_sq": "the running maximum of ``v`` (AMSGrad)"}
_GRAD_AVG = {"grad_avg": "the running average ``a`` of the gradients"}
_MOMENTUM_BUFFER = {"momentum_buffer": "the velocity ``b`` (lr-scaled steps)"}
_RMSPROP_MOMENTUM = dict(step_scalars=_rmsprop_momentum_scalars, takes=("momentum",),
                         scalar_names=("lr", "alpha", "one_minus_alpha", "eps",
                                       "weight_decay", "momentum"))

#: The rows of the structural options (:class:`Hyper`'s ``structural``): each is run by
#: its rule's class when those options are on (``Rule.row_for``); each has its kernel,
#: reference function and functional form, and no class of its own.
VARIANTS = (
    _variant("adam", "amsgrad", ("amsgrad",), ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
             _MAX_V, "m <- b1*m + (1-b1)*g ; v <- b2*v + (1-b2)*g*g ; "
             "w <- max(w, v) ; p <- p - lr*m_hat / (sqrt(w/(1-b2**t)) + eps)"),
    _variant("adamw", "amsgrad", ("amsgrad",), ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
             _MAX_V, "p <- p*(1 - lr*weight_decay), then Adam with amsgrad"),
    _variant("rmsprop", "centered", ("centered",), ("square_avg", "grad_avg"), _GRAD_AVG,
             "E <- alpha*E + (1-alpha)*g*g ; a <- alpha*a + (1-alpha)*g ; "
             "p <- p - lr*g / (sqrt(E - a*a) + eps)"),
    _variant("rmsprop", "momentum", ("momentum",), ("square_avg", "momentum_buffer"),
             _MOMENTUM_BUFFER, "E <- alpha*E + (1-alpha)*g*g ; "
             "b <- momentum*b + lr*g / (sqrt(E) + eps) ; p <- p - b", **_RMSPROP_MOMENTUM),
    _variant("rmsprop", "centered_momentum", ("momentum", "centered"),
             ("square_avg", "momentum_buffer", "grad_avg"),
             {**_GRAD_AVG, **_MOMENTUM_BUFFER},
             "E <- alpha*E + (1-alpha)*g*g ; a <- alpha*a + (1-alpha)*g ; "
             "b <- momentum*b + lr*g / (sqrt(E - a*a) + eps) ; p <- p - b",
             **_RMSPROP_MOMENTUM),
)

#: Every row with a kernel, in kernel-id order: the rules, then their variants.
KERNEL_ROWS = RULES + VARIANTS
_IDS = {r.name: i for i, r in enumerate(KERNEL_ROWS)}
BY_KERNEL = {r.name: r for r in KERNEL_ROWS}
_BY_OPTIONS = {r.variant_of: r for r in VARIANTS}
#: The most state buffers and kernel scalars any kernel has (the engine's table widths).
MAX_STATE = max(len(r.state) for r in KERNEL_ROWS)
MAX_SCALARS = max(len(r.scalar_names) for r in KERNEL_ROWS)


def get(name):
    """The rule called ``name`` (its function name, e.g. "adam", or its class name,
    e.g. "Adam")."""
    rule = BY_NAME.get(name) or BY_CLASS.get(name)
    if rule is None:
        raise KeyError(f"no rule {name!r}; the rules are "
                       f"{', '.join(r.class_name for r in RULES)}")
    return rule
