# cython: language_level=3
"""fastoptim._kernels: the compiled, fused, OpenMP-parallel optimizer steps.

Layers, and calls go one way (top to bottom):

1. Per-element rules (``_sgd`` ... ``_adam``): ``cdef inline ... noexcept nogil``
   functions that update one element of the parameter and of its state. All the math of
   ``SPEC.md`` lives here, written in the same order of operations as
   ``fastoptim.reference`` so that results are bit-identical to it.
2. Loops (``_sgd_loop`` ...): one pass over raw pointers, serial below a size threshold
   and ``prange(schedule="static")`` above it. They hold no math.
3. Python-callable kernels (``sgd`` ... ``adamw``): take 1-D contiguous float32/float64
   buffers (fused types, typed memoryviews) and scalars already computed in float64 by
   the caller, check only what keeps memory safe (equal lengths), then release the GIL
   and run the loop. The same functions, with the same signatures, exist in
   ``fastoptim.reference``; ``fastoptim.functional`` validates user input and calls
   either.

Every scalar arrives as a C double and is converted once to the buffer's type; the
reference converts it the same way (``dtype.type(x)``), so both see the same value.
Weight decay is applied only when the converted value is non-zero (like torch.optim), so
``weight_decay=0`` leaves NaN/Inf parameters and signed zeros exactly alone.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt, sqrtf

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define FO_HAVE_OPENMP 1
    static int fo_max_threads(void) { return omp_get_max_threads(); }
    #else
    #define FO_HAVE_OPENMP 0
    static int fo_max_threads(void) { return 1; }
    #endif
    #ifndef FASTOPTIM_BUILD_FLAGS
    #define FASTOPTIM_BUILD_FLAGS "unknown"
    #endif
    #ifndef FASTOPTIM_COMPILER
    #define FASTOPTIM_COMPILER "unknown"
    #endif
    """
    int FO_HAVE_OPENMP
    const char* FASTOPTIM_BUILD_FLAGS
    const char* FASTOPTIM_COMPILER
    int fo_max_threads() noexcept nogil


# Below these element counts a step runs on one thread even when more are allowed:
# entering an OpenMP region costs about a microsecond with warm threads (far more with
# sleeping ones), which is more than a short loop takes. "light" rules (SGD, Momentum,
# Nesterov) do a few multiply-adds per element; "heavy" rules do a sqrt and a division.
# Measured on a 2-core machine: see README ("Threads") and bench/threshold.py.
cdef Py_ssize_t _threshold_light = 32768
cdef Py_ssize_t _threshold_heavy = 8192


# ---------------------------------------------------------------------------------------
# Layer 1: per-element rules (the math; see SPEC.md)
# ---------------------------------------------------------------------------------------

cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating _decayed(floating g, floating p, floating wd) noexcept nogil:
    # Coupled L2 weight decay: g + wd*p, in a register; the user's gradient is not touched.
    if wd != 0:
        return g + wd * p
    return g


cdef inline void _sgd(floating* p, floating g, floating lr, floating wd) noexcept nogil:
    cdef floating pi = p[0]
    g = _decayed(g, pi, wd)
    p[0] = pi - lr * g


cdef inline void _momentum(floating* p, floating g, floating* v,
                           floating lr, floating mu, floating wd) noexcept nogil:
    cdef floating pi = p[0]
    cdef floating vi
    g = _decayed(g, pi, wd)
    vi = mu * v[0] + lr * g
    v[0] = vi
    p[0] = pi - vi


cdef inline void _nesterov(floating* p, floating g, floating* v,
                           floating lr, floating mu, floating wd) noexcept nogil:
    cdef floating pi = p[0]
    cdef floating vi
    g = _decayed(g, pi, wd)
    vi = mu * v[0] + lr * g
    v[0] = vi
    p[0] = pi - (mu * vi + lr * g)


cdef inline void _adagrad(floating* p, floating g, floating* s,
                          floating lr, floating eps, floating wd) noexcept nogil:
    cdef floating pi = p[0]
    cdef floating si
    g = _decayed(g, pi, wd)
    si = s[0] + g * g
    s[0] = si
    p[0] = pi - lr * (g / (_sqrt(si) + eps))


cdef inline void _rmsprop(floating* p, floating g, floating* e,
                          floating lr, floating alpha, floating one_minus_alpha,
                          floating eps, floating wd) noexcept nogil:
    cdef floating pi = p[0]
    cdef floating ei
    g = _decayed(g, pi, wd)
    ei = alpha * e[0] + one_minus_alpha * (g * g)
    e[0] = ei
    p[0] = pi - lr * (g / (_sqrt(ei) + eps))


cdef inline void _adadelta(floating* p, floating g, floating* sq, floating* acc,
                           floating lr, floating rho, floating one_minus_rho,
                           floating eps, floating wd) noexcept nogil:
    cdef floating pi = p[0]
    cdef floating gi, delta, ai
    g = _decayed(g, pi, wd)
    gi = rho * sq[0] + one_minus_rho * (g * g)
    delta = _sqrt(acc[0] + eps) / _sqrt(gi + eps) * g
    ai = rho * acc[0] + one_minus_rho * (delta * delta)
    sq[0] = gi
    acc[0] = ai
    p[0] = pi - lr * delta


cdef inline void _adam(floating* p, floating g, floating* m, floating* v,
                       floating decay_factor, floating beta1, floating one_minus_beta1,
                       floating beta2, floating one_minus_beta2, floating eps,
                       floating wd, floating step_size,
                       floating bias_correction2_sqrt) noexcept nogil:
    # decay_factor is 1 - lr*wd for AdamW (decoupled decay) and exactly 1 for Adam, where
    # p * 1 == p bit for bit (NaN and -0.0 included); wd is coupled decay (Adam only).
    cdef floating pi = p[0] * decay_factor
    cdef floating mi, vi
    g = _decayed(g, pi, wd)
    mi = beta1 * m[0] + one_minus_beta1 * g
    vi = beta2 * v[0] + one_minus_beta2 * (g * g)
    m[0] = mi
    v[0] = vi
    p[0] = pi - step_size * (mi / (_sqrt(vi) / bias_correction2_sqrt + eps))


# ---------------------------------------------------------------------------------------
# Layer 2: one pass over memory, serial or parallel (no math here)
# ---------------------------------------------------------------------------------------

cdef inline int _threads(int requested, Py_ssize_t n, Py_ssize_t threshold) noexcept nogil:
    """Threads for a step over n elements: 1 below the threshold; else the request
    (<= 0: OpenMP's current maximum), capped so that each thread gets at least
    threshold/2 elements (on a many-core machine a mid-sized array is not spread so thin
    that the region costs more than the work)."""
    cdef Py_ssize_t chunk = threshold // 2 if threshold >= 2 else 1
    if n < threshold or not FO_HAVE_OPENMP:
        return 1
    if requested <= 0:
        requested = fo_max_threads()
    if requested > n // chunk:
        requested = <int>(n // chunk)
    return requested if requested > 1 else 1


cdef void _sgd_loop(floating* p, const floating* g, Py_ssize_t n,
                    floating lr, floating wd, int nt) noexcept nogil:
    cdef Py_ssize_t i
    if nt > 1:
        for i in prange(n, schedule="static", num_threads=nt):
            _sgd(&p[i], g[i], lr, wd)
    else:
        for i in range(n):
            _sgd(&p[i], g[i], lr, wd)


cdef void _momentum_loop(floating* p, const floating* g, floating* v, Py_ssize_t n,
                         floating lr, floating mu, floating wd, bint nesterov,
                         int nt) noexcept nogil:
    cdef Py_ssize_t i
    if nesterov:
        if nt > 1:
            for i in prange(n, schedule="static", num_threads=nt):
                _nesterov(&p[i], g[i], &v[i], lr, mu, wd)
        else:
            for i in range(n):
                _nesterov(&p[i], g[i], &v[i], lr, mu, wd)
    else:
        if nt > 1:
            for i in prange(n, schedule="static", num_threads=nt):
                _momentum(&p[i], g[i], &v[i], lr, mu, wd)
        else:
            for i in range(n):
                _momentum(&p[i], g[i], &v[i], lr, mu, wd)


cdef void _adagrad_loop(floating* p, const floating* g, floating* s, Py_ssize_t n,
                        floating lr, floating eps, floating wd, int nt) noexcept nogil:
    cdef Py_ssize_t i
    if nt > 1:
        for i in prange(n, schedule="static", num_threads=nt):
            _adagrad(&p[i], g[i], &s[i], lr, eps, wd)
    else:
        for i in range(n):
            _adagrad(&p[i], g[i], &s[i], lr, eps, wd)


cdef void _rmsprop_loop(floating* p, const floating* g, floating* e, Py_ssize_t n,
                        floating lr, floating alpha, floating one_minus_alpha,
                        floating eps, floating wd, int nt) noexcept nogil:
    cdef Py_ssize_t i
    if nt > 1:
        for i in prange(n, schedule="static", num_threads=nt):
            _rmsprop(&p[i], g[i], &e[i], lr, alpha, one_minus_alpha, eps, wd)
    else:
        for i in range(n):
            _rmsprop(&p[i], g[i], &e[i], lr, alpha, one_minus_alpha, eps, wd)


cdef void _adadelta_loop(floating* p, const floating* g, floating* sq, floating* acc,
                         Py_ssize_t n, floating lr, floating rho, floating one_minus_rho,
                         floating eps, floating wd, int nt) noexcept nogil:
    cdef Py_ssize_t i
    if nt > 1:
        for i in prange(n, schedule="static", num_threads=nt):
            _adadelta(&p[i], g[i], &sq[i], &acc[i], lr, rho, one_minus_rho, eps, wd)
    else:
        for i in range(n):
            _adadelta(&p[i], g[i], &sq[i], &acc[i], lr, rho, one_minus_rho, eps, wd)


cdef void _adam_loop(floating* p, const floating* g, floating* m, floating* v,
                     Py_ssize_t n, floating decay_factor, floating beta1,
                     floating one_minus_beta1, floating beta2, floating one_minus_beta2,
                     floating eps, floating wd, floating step_size,
                     floating bias_correction2_sqrt, int nt) noexcept nogil:
    cdef Py_ssize_t i
    if nt > 1:
        for i in prange(n, schedule="static", num_threads=nt):
            _adam(&p[i], g[i], &m[i], &v[i], decay_factor, beta1, one_minus_beta1,
                  beta2, one_minus_beta2, eps, wd, step_size, bias_correction2_sqrt)
    else:
        for i in range(n):
            _adam(&p[i], g[i], &m[i], &v[i], decay_factor, beta1, one_minus_beta1,
                  beta2, one_minus_beta2, eps, wd, step_size, bias_correction2_sqrt)


# ---------------------------------------------------------------------------------------
# Layer 3: Python-callable kernels over 1-D contiguous buffers
# ---------------------------------------------------------------------------------------

cdef inline void _same_length(Py_ssize_t n, Py_ssize_t m, str name) except *:
    if m != n:
        raise ValueError(f"{name} has {m} elements but the parameter has {n}")


def sgd(floating[::1] param, const floating[::1] grad, *,
        double lr, double weight_decay, int num_threads=0):
    """p <- p - lr*g, with g <- g + weight_decay*p first when weight_decay != 0."""
    cdef Py_ssize_t n = param.shape[0]
    _same_length(n, grad.shape[0], "grad")
    if n == 0:
        return
    cdef int nt = _threads(num_threads, n, _threshold_light)
    with nogil:
        _sgd_loop(&param[0], &grad[0], n, <floating>lr, <floating>weight_decay, nt)


def momentum(floating[::1] param, const floating[::1] grad, floating[::1] velocity, *,
             double lr, double momentum, double weight_decay, int num_threads=0):
    """v <- momentum*v + lr*g ; p <- p - v."""
    cdef Py_ssize_t n = param.shape[0]
    _same_length(n, grad.shape[0], "grad")
    _same_length(n, velocity.shape[0], "velocity")
    if n == 0:
        return
    cdef int nt = _threads(num_threads, n, _threshold_light)
    with nogil:
        _momentum_loop(&param[0], &grad[0], &velocity[0], n, <floating>lr,
                       <floating>momentum, <floating>weight_decay, False, nt)


def nesterov(floating[::1] param, const floating[::1] grad, floating[::1] velocity, *,
             double lr, double momentum, double weight_decay, int num_threads=0):
    """v <- momentum*v + lr*g ; p <- p - (momentum*v + lr*g)."""
    cdef Py_ssize_t n = param.shape[0]
    _same_length(n, grad.shape[0], "grad")
    _same_length(n, velocity.shape[0], "velocity")
    if n == 0:
        return
    cdef int nt = _threads(num_threads, n, _threshold_light)
    with nogil:
        _momentum_loop(&param[0], &grad[0], &velocity[0], n, <floating>lr,
                       <floating>momentum, <floating>weight_decay, True, nt)


def adagrad(floating[::1] param, const floating[::1] grad, floating[::1] sum_sq, *,
            double lr, double eps, double weight_decay, int num_threads=0):
    """G <- G + g*g ; p <- p - lr*(g / (sqrt(G) + eps))."""
    cdef Py_ssize_t n = param.shape[0]
    _same_length(n, grad.shape[0], "grad")
    _same_length(n, sum_sq.shape[0], "sum_sq")
    if n == 0:
        return
    cdef int nt = _threads(num_threads, n, _threshold_heavy)
    with nogil:
        _adagrad_loop(&param[0], &grad[0], &sum_sq[0], n, <floating>lr, <floating>eps,
                      <floating>weight_decay, nt)


def rmsprop(floating[::1] param, const floating[::1] grad, floating[::1] square_avg, *,
            double lr, double alpha, double one_minus_alpha, double eps,
            double weight_decay, int num_threads=0):
    """E <- alpha*E + (1-alpha)*(g*g) ; p <- p - lr*(g / (sqrt(E) + eps))."""
    cdef Py_ssize_t n = param.shape[0]
    _same_length(n, grad.shape[0], "grad")
    _same_length(n, square_avg.shape[0], "square_avg")
    if n == 0:
        return
    cdef int nt = _threads(num_threads, n, _threshold_heavy)
    with nogil:
        _rmsprop_loop(&param[0], &grad[0], &square_avg[0], n, <floating>lr,
                      <floating>alpha, <floating>one_minus_alpha, <floating>eps,
                      <floating>weight_decay, nt)


def adadelta(floating[::1] param, const floating[::1] grad, floating[::1] square_avg,
             floating[::1] acc_delta, *, double lr, double rho, double one_minus_rho,
             double eps, double weight_decay, int num_threads=0):
    """G <- rho*G + (1-rho)*(g*g) ; d <- sqrt(S+eps)/sqrt(G+eps)*g ;
    S <- rho*S + (1-rho)*(d*d) ; p <- p - lr*d."""
    cdef Py_ssize_t n = param.shape[0]
    _same_length(n, grad.shape[0], "grad")
    _same_length(n, square_avg.shape[0], "square_avg")
    _same_length(n, acc_delta.shape[0], "acc_delta")
    if n == 0:
        return
    cdef int nt = _threads(num_threads, n, _threshold_heavy)
    with nogil:
        _adadelta_loop(&param[0], &grad[0], &square_avg[0], &acc_delta[0], n,
                       <floating>lr, <floating>rho, <floating>one_minus_rho,
                       <floating>eps, <floating>weight_decay, nt)


def adam(floating[::1] param, const floating[::1] grad, floating[::1] exp_avg,
         floating[::1] exp_avg_sq, *, double beta1, double one_minus_beta1, double beta2,
         double one_minus_beta2, double eps, double weight_decay, double step_size,
         double bias_correction2_sqrt, int num_threads=0):
    """m <- b1*m + (1-b1)*g ; v <- b2*v + (1-b2)*(g*g) ;
    p <- p - step_size*(m / (sqrt(v)/bias_correction2_sqrt + eps))."""
    cdef Py_ssize_t n = param.shape[0]
    _same_length(n, grad.shape[0], "grad")
    _same_length(n, exp_avg.shape[0], "exp_avg")
    _same_length(n, exp_avg_sq.shape[0], "exp_avg_sq")
    if n == 0:
        return
    cdef int nt = _threads(num_threads, n, _threshold_heavy)
    with nogil:
        _adam_loop(&param[0], &grad[0], &exp_avg[0], &exp_avg_sq[0], n, <floating>1.0,
                   <floating>beta1, <floating>one_minus_beta1, <floating>beta2,
                   <floating>one_minus_beta2, <floating>eps, <floating>weight_decay,
                   <floating>step_size, <floating>bias_correction2_sqrt, nt)


def adamw(floating[::1] param, const floating[::1] grad, floating[::1] exp_avg,
          floating[::1] exp_avg_sq, *, double decay_factor, double beta1,
          double one_minus_beta1, double beta2, double one_minus_beta2, double eps,
          double step_size, double bias_correction2_sqrt, int num_threads=0):
    """p <- p*decay_factor (decay_factor = 1 - lr*weight_decay), then the Adam rule."""
    cdef Py_ssize_t n = param.shape[0]
    _same_length(n, grad.shape[0], "grad")
    _same_length(n, exp_avg.shape[0], "exp_avg")
    _same_length(n, exp_avg_sq.shape[0], "exp_avg_sq")
    if n == 0:
        return
    cdef int nt = _threads(num_threads, n, _threshold_heavy)
    with nogil:
        _adam_loop(&param[0], &grad[0], &exp_avg[0], &exp_avg_sq[0], n,
                   <floating>decay_factor, <floating>beta1, <floating>one_minus_beta1,
                   <floating>beta2, <floating>one_minus_beta2, <floating>eps,
                   <floating>0.0, <floating>step_size,
                   <floating>bias_correction2_sqrt, nt)


# ---------------------------------------------------------------------------------------
# Build and thread facts, and the serial thresholds
# ---------------------------------------------------------------------------------------

def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(FO_HAVE_OPENMP)


def max_threads():
    """Threads a step may use now: OpenMP's current maximum (honours OMP_NUM_THREADS
    and threadpoolctl), or 1 in a serial build."""
    return fo_max_threads()


def build_info():
    """The compiler family and flags the kernels were built with."""
    return {
        "compiler": FASTOPTIM_COMPILER.decode("ascii", "replace"),
        "flags": FASTOPTIM_BUILD_FLAGS.decode("ascii", "replace"),
    }


def get_parallel_thresholds():
    """Element counts below which a step runs serially: {"light": n, "heavy": n}."""
    return {"light": _threshold_light, "heavy": _threshold_heavy}


def set_parallel_thresholds(light=None, heavy=None):
    """Change the serial thresholds (for tuning and tests); returns the old values."""
    global _threshold_light, _threshold_heavy
    old = get_parallel_thresholds()
    if light is not None:
        if light < 0:
            raise ValueError(f"light threshold must be >= 0, got {light}")
        _threshold_light = light
    if heavy is not None:
        if heavy < 0:
            raise ValueError(f"heavy threshold must be >= 0, got {heavy}")
        _threshold_heavy = heavy
    return old


def _effective_threads(Py_ssize_t n, int num_threads, bint heavy):
    """The thread count a step over n elements would use (for tests and tuning)."""
    return _threads(num_threads, n, _threshold_heavy if heavy else _threshold_light)
