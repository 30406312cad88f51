"""The pure-NumPy reference: the executable form of the spec (docs/rules.rst).

One function per rule, with the same name, signature and order of operations as the
compiled kernel (``fastoptim._kernels_<target>``, chosen by ``fastoptim._dispatch``), so
that both give bit-identical results for float32 and float64. Each function updates
``param`` and its state buffers in place and never writes to ``grad``.

Conventions shared with the kernels:

* Every scalar is a Python float computed once in float64 by the caller (the rule
  table's scalar function, ``fastoptim.rules``), then converted to the array's dtype
  here with ``dtype.type(x)`` -- exactly the C conversion the kernel makes -- so
  float32 arrays are updated in float32 arithmetic throughout, never promoted to
  float64.
* Coupled weight decay ``g + weight_decay*p`` is applied only when the converted
  ``weight_decay`` is non-zero, as in torch.optim.
* ``num_threads`` is accepted for the shared signature and ignored.

Arrays may have any shape here (the kernels take flat views of the same memory); every
array of one call must have the same shape and dtype.
"""

import math

import numpy as np

#: The deterministic sum of squares (:func:`sum_of_squares`): chunks of SUM_CHUNK
#: elements, SUM_LANES float64 lanes per chunk (the kernels' and fastoptim.clip's).
SUM_CHUNK = 4096
SUM_LANES = 8

__all__ = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam", "adamw",
           "lion", "adamax", "nadam", "radam", "schedulefree_adamw", "adam_amsgrad",
           "adamw_amsgrad", "rmsprop_centered", "rmsprop_momentum",
           "rmsprop_centered_momentum", "lamb", "ema", "sum_of_squares", "trust_ratio",
           "to_bfloat16", "with_bfloat16_state", "dynamic_map", "map_midpoints", "map_boundaries",
           "quantize_blockwise", "dequantize_blockwise", "with_int8_state"]


def _scalars(param, *values):
    t = param.dtype.type
    return [t(v) for v in values]


def _decayed(grad, param, wd):
    """Coupled L2 decay, g + wd*p, in a temporary (the caller's grad is never written)."""
    if wd != 0:
        return grad + wd * param
    return grad


def sgd(param, grad, *, lr, weight_decay, num_threads=0):
    """p <- p - lr*g."""
    lr, wd = _scalars(param, lr, weight_decay)
    g = _decayed(grad, param, wd)
    param -= lr * g


def momentum(param, grad, velocity, *, lr, momentum, weight_decay, num_threads=0):
    """v <- mu*v + lr*g ; p <- p - v."""
    lr, mu, wd = _scalars(param, lr, momentum, weight_decay)
    g = _decayed(grad, param, wd)
    velocity *= mu
    velocity += lr * g
    param -= velocity


def nesterov(param, grad, velocity, *, lr, momentum, weight_decay, num_threads=0):
    """v <- mu*v + lr*g ; p <- p - (mu*v + lr*g), with the new v (look-ahead form)."""
    lr, mu, wd = _scalars(param, lr, momentum, weight_decay)
    g = _decayed(grad, param, wd)
    lr_g = lr * g
    velocity *= mu
    velocity += lr_g
    param -= mu * velocity + lr_g


def adagrad(param, grad, sum_sq, *, lr, eps, weight_decay, num_threads=0):
    """G <- G + g*g ; p <- p - lr*(g / (sqrt(G) + eps))."""
    lr, eps, wd = _scalars(param, lr, eps, weight_decay)
    g = _decayed(grad, param, wd)
    sum_sq += g * g
    param -= lr * (g / (np.sqrt(sum_sq) + eps))


def rmsprop(param, grad, square_avg, *, lr, alpha, one_minus_alpha, eps, weight_decay,
            num_threads=0):
    """E <- alpha*E + (1-alpha)*(g*g) ; p <- p - lr*(g / (sqrt(E) + eps))."""
    lr, alpha, one_minus_alpha, eps, wd = _scalars(
        param, lr, alpha, one_minus_alpha, eps, weight_decay)
    g = _decayed(grad, param, wd)
    square_avg *= alpha
    square_avg += one_minus_alpha * (g * g)
    param -= lr * (g / (np.sqrt(square_avg) + eps))


def adadelta(param, grad, square_avg, acc_delta, *, lr, rho, one_minus_rho, eps,
             weight_decay, num_threads=0):
    """G <- rho*G + (1-rho)*(g*g) ; d <- sqrt((S+eps)/(G+eps))*g ;
    S <- rho*S + (1-rho)*(d*d) ; p <- p - lr*d.

    (sqrt(S+eps)/sqrt(G+eps) of the spec, with one square root instead of two.)"""
    lr, rho, one_minus_rho, eps, wd = _scalars(
        param, lr, rho, one_minus_rho, eps, weight_decay)
    g = _decayed(grad, param, wd)
    square_avg *= rho
    square_avg += one_minus_rho * (g * g)
    delta = np.sqrt((acc_delta + eps) / (square_avg + eps)) * g
    acc_delta *= rho
    acc_delta += one_minus_rho * (delta * delta)
    param -= lr * delta


def _adam_rule(param, g, exp_avg, exp_avg_sq, beta1, one_minus_beta1, beta2,
               one_minus_beta2, eps_hat, step_size):
    # m <- b1*m + (1-b1)*g ; v <- b2*v + (1-b2)*(g*g)
    exp_avg *= beta1
    exp_avg += one_minus_beta1 * g
    exp_avg_sq *= beta2
    exp_avg_sq += one_minus_beta2 * (g * g)
    # p <- p - lr * m_hat / (sqrt(v_hat) + eps), in the Adam paper's efficient form:
    # step_size = lr*sqrt(1-b2**t)/(1-b1**t), eps_hat = eps*sqrt(1-b2**t), so that
    # p <- p - step_size * m / (sqrt(v) + eps_hat), equal in exact arithmetic.
    param -= step_size * (exp_avg / (np.sqrt(exp_avg_sq) + eps_hat))


def adam(param, grad, exp_avg, exp_avg_sq, *, beta1, one_minus_beta1, beta2,
         one_minus_beta2, eps_hat, weight_decay, step_size, num_threads=0):
    """Adam with coupled L2 weight decay (g <- g + weight_decay*p)."""
    (beta1, one_minus_beta1, beta2, one_minus_beta2, eps_hat, wd,
     step_size) = _scalars(param, beta1, one_minus_beta1, beta2, one_minus_beta2,
                           eps_hat, weight_decay, step_size)
    g = _decayed(grad, param, wd)
    _adam_rule(param, g, exp_avg, exp_avg_sq, beta1, one_minus_beta1, beta2,
               one_minus_beta2, eps_hat, step_size)


def adamw(param, grad, exp_avg, exp_avg_sq, *, decay_factor, beta1, one_minus_beta1,
          beta2, one_minus_beta2, eps_hat, step_size, num_threads=0):
    """AdamW: p <- p*decay_factor (decay_factor = 1 - lr*weight_decay), then Adam."""
    (decay_factor, beta1, one_minus_beta1, beta2, one_minus_beta2, eps_hat,
     step_size) = _scalars(param, decay_factor, beta1, one_minus_beta1, beta2,
                           one_minus_beta2, eps_hat, step_size)
    param *= decay_factor
    _adam_rule(param, grad, exp_avg, exp_avg_sq, beta1, one_minus_beta1, beta2,
               one_minus_beta2, eps_hat, step_size)


def _sign(x):
    """1 where x > 0, -1 where x < 0, else x itself: a zero keeps its sign, NaN stays
    (the same NaN). The kernels' ``_sign``; unlike ``np.sign``, whose zero's sign has
    varied between NumPy versions, this is fixed here."""
    one = x.dtype.type(1)
    return np.where(x > 0, one, np.where(x < 0, -one, x))


def _maximum(a, b):
    """a where a >= b or a is NaN, else b: NaN from either side propagates (as
    ``np.maximum``), and the choice between -0.0 and 0.0 is fixed (a). The kernels'
    ``_max``."""
    return np.where((a >= b) | np.isnan(a), a, b)


def lion(param, grad, exp_avg, *, decay_factor, lr, beta1, one_minus_beta1, beta2,
         one_minus_beta2, num_threads=0):
    """c <- b1*m + (1-b1)*g ; p <- p*decay_factor - lr*sign(c) ; m <- b2*m + (1-b2)*g
    (decay_factor = 1 - lr*weight_decay)."""
    decay_factor, lr, beta1, one_minus_beta1, beta2, one_minus_beta2 = _scalars(
        param, decay_factor, lr, beta1, one_minus_beta1, beta2, one_minus_beta2)
    c = beta1 * exp_avg + one_minus_beta1 * grad
    param *= decay_factor
    param -= lr * _sign(c)
    exp_avg *= beta2
    exp_avg += one_minus_beta2 * grad


def adamax(param, grad, exp_avg, exp_inf, *, beta1, one_minus_beta1, beta2, eps,
           weight_decay, step_size, num_threads=0):
    """m <- b1*m + (1-b1)*g ; u <- max(b2*u, abs(g) + eps) ; p <- p - step_size*(m/u)
    (step_size = lr/(1-b1**t))."""
    beta1, one_minus_beta1, beta2, eps, wd, step_size = _scalars(
        param, beta1, one_minus_beta1, beta2, eps, weight_decay, step_size)
    g = _decayed(grad, param, wd)
    exp_avg *= beta1
    exp_avg += one_minus_beta1 * g
    exp_inf[...] = _maximum(beta2 * exp_inf, np.abs(g) + eps)
    param -= step_size * (exp_avg / exp_inf)


def nadam(param, grad, exp_avg, exp_avg_sq, *, beta1, one_minus_beta1, beta2,
          one_minus_beta2, eps_hat, weight_decay, grad_coef, momentum_coef, num_threads=0):
    """m <- b1*m + (1-b1)*g ; v <- b2*v + (1-b2)*(g*g) ;
    p <- p - (grad_coef*g + momentum_coef*m) / (sqrt(v) + eps_hat)."""
    (beta1, one_minus_beta1, beta2, one_minus_beta2, eps_hat, wd, grad_coef,
     momentum_coef) = _scalars(param, beta1, one_minus_beta1, beta2, one_minus_beta2,
                               eps_hat, weight_decay, grad_coef, momentum_coef)
    g = _decayed(grad, param, wd)
    exp_avg *= beta1
    exp_avg += one_minus_beta1 * g
    exp_avg_sq *= beta2
    exp_avg_sq += one_minus_beta2 * (g * g)
    param -= (grad_coef * g + momentum_coef * exp_avg) / (np.sqrt(exp_avg_sq) + eps_hat)


def radam(param, grad, exp_avg, exp_avg_sq, *, beta1, one_minus_beta1, beta2,
          one_minus_beta2, eps, weight_decay, step_size, rectify, num_threads=0):
    """m <- b1*m + (1-b1)*g ; v <- b2*v + (1-b2)*(g*g) ; then
    p <- p - step_size*(m/(sqrt(v) + eps)) if rectify else p <- p - step_size*m."""
    (beta1, one_minus_beta1, beta2, one_minus_beta2, eps, wd,
     step_size) = _scalars(param, beta1, one_minus_beta1, beta2, one_minus_beta2, eps,
                           weight_decay, step_size)
    g = _decayed(grad, param, wd)
    exp_avg *= beta1
    exp_avg += one_minus_beta1 * g
    exp_avg_sq *= beta2
    exp_avg_sq += one_minus_beta2 * (g * g)
    if rectify != 0:
        param -= step_size * (exp_avg / (np.sqrt(exp_avg_sq) + eps))
    else:
        param -= step_size * exp_avg


def schedulefree_adamw(param, grad, z, exp_avg_sq, *, beta2, one_minus_beta2,
                       bias_correction2, eps, weight_decay, ckp1, y_coef, scheduled_lr,
                       num_threads=0):
    """v <- b2*v + (1-b2)*(g*g) ; u <- g/(sqrt(v/bias_correction2) + eps) + wd*y ;
    y <- (y + ckp1*(z - y)) + y_coef*u ; z <- z - scheduled_lr*u (``param`` holds y)."""
    (beta2, one_minus_beta2, bias_correction2, eps, wd, ckp1, y_coef,
     scheduled_lr) = _scalars(param, beta2, one_minus_beta2, bias_correction2, eps,
                              weight_decay, ckp1, y_coef, scheduled_lr)
    exp_avg_sq *= beta2
    exp_avg_sq += one_minus_beta2 * (grad * grad)
    u = grad / (np.sqrt(exp_avg_sq / bias_correction2) + eps)
    u = _decayed(u, param, wd)
    param += ckp1 * (z - param)
    param += y_coef * u
    z -= scheduled_lr * u


# The variants of the structural options (fastoptim.rules.VARIANTS).

def _amsgrad_rule(param, g, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1, one_minus_beta1,
                  beta2, one_minus_beta2, eps_hat, step_size):
    # _adam_rule with w <- max(w, v) in the root
    exp_avg *= beta1
    exp_avg += one_minus_beta1 * g
    exp_avg_sq *= beta2
    exp_avg_sq += one_minus_beta2 * (g * g)
    max_exp_avg_sq[...] = _maximum(max_exp_avg_sq, exp_avg_sq)
    param -= step_size * (exp_avg / (np.sqrt(max_exp_avg_sq) + eps_hat))


def adam_amsgrad(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *, beta1,
                 one_minus_beta1, beta2, one_minus_beta2, eps_hat, weight_decay, step_size,
                 num_threads=0):
    """Adam with AMSGrad: as :func:`adam`, with w <- max(w, v) and sqrt(w) in the step."""
    (beta1, one_minus_beta1, beta2, one_minus_beta2, eps_hat, wd,
     step_size) = _scalars(param, beta1, one_minus_beta1, beta2, one_minus_beta2,
                           eps_hat, weight_decay, step_size)
    g = _decayed(grad, param, wd)
    _amsgrad_rule(param, g, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1, one_minus_beta1,
                  beta2, one_minus_beta2, eps_hat, step_size)


def adamw_amsgrad(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *, decay_factor, beta1,
                  one_minus_beta1, beta2, one_minus_beta2, eps_hat, step_size,
                  num_threads=0):
    """AdamW with AMSGrad: p <- p*decay_factor, then :func:`adam_amsgrad` without decay."""
    (decay_factor, beta1, one_minus_beta1, beta2, one_minus_beta2, eps_hat,
     step_size) = _scalars(param, decay_factor, beta1, one_minus_beta1, beta2,
                           one_minus_beta2, eps_hat, step_size)
    param *= decay_factor
    _amsgrad_rule(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1, one_minus_beta1,
                  beta2, one_minus_beta2, eps_hat, step_size)


def _rmsprop_avgs(param, grad, square_avg, grad_avg, alpha, one_minus_alpha, wd):
    """g (decayed); E <- alpha*E + (1-alpha)*g*g and, centered, a <- alpha*a + (1-alpha)*g;
    the root's argument E or E - a*a."""
    g = _decayed(grad, param, wd)
    square_avg *= alpha
    square_avg += one_minus_alpha * (g * g)
    if grad_avg is None:
        return g, square_avg
    grad_avg *= alpha
    grad_avg += one_minus_alpha * g
    return g, square_avg - grad_avg * grad_avg


def rmsprop_centered(param, grad, square_avg, grad_avg, *, lr, alpha, one_minus_alpha, eps,
                     weight_decay, num_threads=0):
    """E <- alpha*E + (1-alpha)*(g*g) ; a <- alpha*a + (1-alpha)*g ;
    p <- p - lr*(g/(sqrt(E - a*a) + eps))."""
    lr, alpha, one_minus_alpha, eps, wd = _scalars(param, lr, alpha, one_minus_alpha, eps,
                                                   weight_decay)
    g, var = _rmsprop_avgs(param, grad, square_avg, grad_avg, alpha, one_minus_alpha, wd)
    param -= lr * (g / (np.sqrt(var) + eps))


def _rmsprop_velocity(param, g, var, momentum_buffer, lr, eps, mu):
    momentum_buffer *= mu
    momentum_buffer += lr * (g / (np.sqrt(var) + eps))
    param -= momentum_buffer


def rmsprop_momentum(param, grad, square_avg, momentum_buffer, *, lr, alpha,
                     one_minus_alpha, eps, weight_decay, momentum, num_threads=0):
    """E <- alpha*E + (1-alpha)*(g*g) ; b <- momentum*b + lr*(g/(sqrt(E) + eps)) ;
    p <- p - b."""
    lr, alpha, one_minus_alpha, eps, wd, mu = _scalars(param, lr, alpha, one_minus_alpha,
                                                       eps, weight_decay, momentum)
    g, var = _rmsprop_avgs(param, grad, square_avg, None, alpha, one_minus_alpha, wd)
    _rmsprop_velocity(param, g, var, momentum_buffer, lr, eps, mu)


def rmsprop_centered_momentum(param, grad, square_avg, momentum_buffer, grad_avg, *, lr,
                              alpha, one_minus_alpha, eps, weight_decay, momentum,
                              num_threads=0):
    """Centered RMSprop with momentum: a as :func:`rmsprop_centered`, the step as
    :func:`rmsprop_momentum` with sqrt(E - a*a)."""
    lr, alpha, one_minus_alpha, eps, wd, mu = _scalars(param, lr, alpha, one_minus_alpha,
                                                       eps, weight_decay, momentum)
    g, var = _rmsprop_avgs(param, grad, square_avg, grad_avg, alpha, one_minus_alpha, wd)
    _rmsprop_velocity(param, g, var, momentum_buffer, lr, eps, mu)


# The parameters' moving average (every rule's ``ema`` option; the engine calls it after
# the rule, on the parameter just stepped).

def ema(param, average, *, decay, one_minus_decay):
    """a <- decay*a + one_minus_decay*p (each product rounded, then the sum)."""
    d, omd = _scalars(param, decay, one_minus_decay)
    average *= d
    average += omd * param


# The deterministic sum of squares: the order of the kernels' norms (LAMB's, and
# fastoptim.clip's global norm), fixed by the data alone.

def sum_of_squares(flats):
    """The sum of squares of every element of ``flats`` (1-D float32/float64 arrays), in
    float64, in the order of the compiled kernels: chunks of ``SUM_CHUNK`` elements of the
    concatenation, ``SUM_LANES`` lanes per chunk (element i of a chunk in lane
    i % SUM_LANES), every sum taken left to right from 0.0 -- each lane, then the lanes of
    a chunk, then the chunks.

    ``np.sum`` would use pairwise summation, a different order; ``np.cumsum`` (an
    accumulate) is strictly sequential, so the last element of a cumulative sum is the
    left-to-right sum. Zero padding of the last chunk adds ``+ 0.0`` to a non-negative
    (or NaN) partial sum, which changes nothing.
    """
    x = np.concatenate([np.asarray(f, dtype=np.float64).reshape(-1) for f in flats]
                       or [np.zeros(0)])
    n = x.size
    if n == 0:
        return 0.0
    sq = x * x                                           # exact for float32 inputs
    nchunks = -(-n // SUM_CHUNK)
    sq = np.concatenate([sq, np.zeros(nchunks * SUM_CHUNK - n)])
    rows = sq.reshape(nchunks, SUM_CHUNK // SUM_LANES, SUM_LANES)
    lanes = np.cumsum(rows, axis=1)[:, -1, :]            # each lane, in index order
    chunks = np.cumsum(lanes, axis=1)[:, -1]             # lanes 0, 1, ... in order
    return float(np.cumsum(chunks)[-1])                  # chunks 0, 1, ... in order


def trust_ratio(param_sumsq, update_sumsq):
    """||p||/||u|| from the two sums of squares, as the kernels compute it: 1.0 where
    either is 0, NaN where either is NaN."""
    if param_sumsq == 0.0 or update_sumsq == 0.0:
        return 1.0
    return math.sqrt(param_sumsq) / math.sqrt(update_sumsq)


def _lamb_direction(param, exp_avg, exp_avg_sq, eps_hat, wd, scale):
    u = scale * (exp_avg / (np.sqrt(exp_avg_sq) + eps_hat))
    return _decayed(u, param, wd)


def lamb(param, grad, exp_avg, exp_avg_sq, *, beta1, one_minus_beta1, beta2,
         one_minus_beta2, eps_hat, weight_decay, scale, lr, num_threads=0):
    """m <- b1*m + (1-b1)*g ; v <- b2*v + (1-b2)*(g*g) ;
    u = scale*(m/(sqrt(v) + eps_hat)) + wd*p ; p <- p - (lr*||p||/||u||)*u, the norms of
    the whole array (:func:`sum_of_squares`, :func:`trust_ratio`), ||p|| before the step."""
    (beta1, one_minus_beta1, beta2, one_minus_beta2, eps_hat, wd,
     scale) = _scalars(param, beta1, one_minus_beta1, beta2, one_minus_beta2, eps_hat,
                       weight_decay, scale)
    exp_avg *= beta1
    exp_avg += one_minus_beta1 * grad
    exp_avg_sq *= beta2
    exp_avg_sq += one_minus_beta2 * (grad * grad)
    u = _lamb_direction(param, exp_avg, exp_avg_sq, eps_hat, wd, scale)
    ratio = trust_ratio(sum_of_squares([param]), sum_of_squares([u]))
    (trust_lr,) = _scalars(param, lr * ratio)
    param -= trust_lr * u


# ---------------------------------------------------------------------------------------
# State formats (fastoptim.formats, docs/state.rst): bfloat16 state is the rule above
# on its float32 widening, then the new state rounded back
# ---------------------------------------------------------------------------------------

def to_bfloat16(x, out):
    """``out[...] = x`` rounded to the nearest bfloat16, ties to even (ml_dtypes' cast: a
    NaN becomes the quiet NaN of its sign, a value past the largest bfloat16 Inf,
    subnormals are kept): the kernels' rounding of bfloat16 state."""
    with np.errstate(invalid="ignore", over="ignore"):  # NaN and Inf are values here
        out[...] = x.astype(out.dtype)


def with_bfloat16_state(kernel, param, grad, *states, **scalars):
    """One step of ``kernel`` (a rule of this module) with bfloat16 state buffers
    ``states``: each widened to float32 (exact), the rule on them in float32, the new
    state rounded back (:func:`to_bfloat16`)."""
    wide = [s.astype(np.float32) for s in states]
    kernel(param, grad, *wide, **scalars)
    for s, w in zip(states, wide):
        to_bfloat16(w, s)


# 8-bit block-wise state (state_dtype="int8"): the dynamic maps of the 8-bit optimizers
# paper (Dettmers et al. 2021) and the block-wise quantiser

INT8_BLOCK = 256  # fastoptim.rules.INT8_BLOCK
_MAPS = {}


def dynamic_map(signed):
    """The 256 values (float32, sorted) an 8-bit code stands for, times its block's
    absmax: the dynamic map of Dettmers et al. ("8-bit Optimizers via Block-wise
    Quantization", 2021; bitsandbytes' ``create_dynamic_map`` with 7 exponent bits).
    For each decade ``10**(i-6)``, i = 0..6, the midpoints of ``2**i`` equal parts of
    [0.1, 1] (signed: each with both signs; unsigned: ``2**(i+1)`` parts, no negatives),
    then 0 and 1. Computed in float64 (linspace, midpoints, the power of ten), each value
    rounded once to float32."""
    key = bool(signed)
    if key not in _MAPS:
        vals = [0.0, 1.0]
        for i in range(7):
            parts = 2 ** i if signed else 2 ** (i + 1)
            edges = np.linspace(0.1, 1.0, parts + 1)
            means = (edges[:-1] + edges[1:]) / 2 * 10.0 ** (i - 6)
            vals += list(means) + (list(-means) if signed else [])
        qmap = np.array(sorted(vals), dtype=np.float32)
        mid = ((qmap[:-1].astype(np.float64) + qmap[1:]) / 2).astype(np.float32)
        qmap.flags.writeable = False
        mid.flags.writeable = False
        _MAPS[key] = (qmap, mid)
    return _MAPS[key][0]


def map_midpoints(signed):
    """The 255 midpoints (float32) between neighbouring values of :func:`dynamic_map`."""
    dynamic_map(signed)
    return _MAPS[bool(signed)][1]


def map_boundaries(signed):
    """The 255 boundaries between codes: the code of y is the number of boundaries
    below y. The midpoints between neighbouring map values, so y gets the nearest value
    (a y exactly at a midpoint takes the lower code) -- but in the unsigned map (second
    moments) the first boundary is 0: a positive y never gets the code of 0, only the
    smallest positive value (3.25e-7) or more. A second moment quantised to 0 beside a
    first moment that is not makes the next step m/(sqrt(v) + eps) blow up."""
    if signed:
        return map_midpoints(True)
    out = map_midpoints(False).copy()
    out[0] = 0.0
    out.flags.writeable = False
    return out


def _blocks(n):
    return (n + INT8_BLOCK - 1) // INT8_BLOCK


def quantize_blockwise(x, codes, absmax, *, signed):
    """Quantise the flat float32 ``x`` into ``codes`` (uint8, x's size) and ``absmax``
    (float32, one per block of INT8_BLOCK elements, the last block possibly shorter):
    a block's absmax is its largest ``|x|`` (as an integer maximum of the bits with the
    sign cleared: a NaN is larger than any number, so a block holding one has a NaN
    absmax); then ``y = x/absmax`` (0 where the absmax is 0) and the code of ``y``: the
    number of :func:`map_boundaries` below it, 255 for a NaN ``y``."""
    n = x.size
    mags = x.view(np.uint32) & np.uint32(0x7FFFFFFF)
    starts = np.arange(0, n, INT8_BLOCK)
    if n:
        absmax[...] = np.maximum.reduceat(mags, starts).view(np.float32)
    else:
        return
    scale = np.repeat(absmax, INT8_BLOCK)[:n]
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(scale == 0, np.float32(0.0), x / np.where(scale == 0, np.float32(1.0),
                                                                 scale))
    c = np.searchsorted(map_boundaries(signed), y, side="left")
    c[np.isnan(y)] = 255
    codes[...] = c.astype(np.uint8)


def dequantize_blockwise(codes, absmax, out, *, signed):
    """``out = dynamic_map(signed)[codes] * absmax`` of each element's block (float32)."""
    n = codes.size
    if n:
        out[...] = dynamic_map(signed)[codes] * np.repeat(absmax, INT8_BLOCK)[:n]


def with_int8_state(kernel, param, grad, *states, signs, **scalars):
    """One step of ``kernel`` (a rule of this module) with 8-bit state: ``states`` are
    (codes, absmax) pairs (flat), ``signs`` their maps ("signed"/"unsigned"); each
    dequantised to float32, the rule on them, each quantised back."""
    wide = []
    for (codes, absmax), sign in zip(states, signs):
        w = np.empty(codes.size, np.float32)
        dequantize_blockwise(codes, absmax, w, signed=sign == "signed")
        wide.append(w)
    kernel(param, grad, *wide, **scalars)
    for (codes, absmax), sign, w in zip(states, signs, wide):
        quantize_blockwise(w, codes, absmax, signed=sign == "signed")
