# The body of fastoptim's compiled kernels, included by one small module per CPU target
# (_kernels_baseline.pyx, _kernels_avx2.pyx, _kernels_avx512.pyx): the same source built
# with different -m flags; fastoptim._dispatch imports the best one the CPU can run.
#
# Layers, and calls go one way (top to bottom):
#
# 1. Per-element rules (_rules.pxi, hand-written: _rule_<name>, one per row of the rule
#    table fastoptim/rules.py): ``cdef inline ... noexcept nogil`` functions that update
#    one element of a parameter and its state. All the math of the spec (docs/rules.rst)
#    is there, in the same order of operations as fastoptim.reference, so results are
#    bit-identical.
# 2. Ranges (_range, generated from the table: _dispatch.pxi.tp): one rule over one
#    contiguous run of elements, scalars held in locals; the loops the compiler
#    vectorises. No math of their own.
# 3. The engine (_run / _span): a table of (parameter, gradient, state) pointers for any
#    number of arrays; one pass over memory, serial below a size threshold, otherwise
#    one OpenMP region whose threads split the *total* element count evenly, walking
#    across array boundaries.
# 4. Python-callable entry points: one kernel per rule over one flat parameter (the same
#    signature as fastoptim.reference; generated: _wrappers.pxi.tp), and update_many(),
#    which checks every array of an update call in C, gathers the pointer table and runs
#    the engine -- or writes nothing and returns what it did not take, for
#    fastoptim._engine's Python path (nothing here calls back into Python).
#
# Every scalar arrives as a C double computed once per step in float64 by the caller and
# is converted once to the element type; the reference converts it the same way.
# Weight decay is applied only when the converted value is non-zero (like torch.optim).

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from cpython.dict cimport PyDict_GetItemWithError, PyDict_Next
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport fabs, fabsf, sqrt, sqrtf
from libc.stdlib cimport qsort
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy

cimport numpy as cnp

cnp.import_array()

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
    #if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    static int fo_cpu_has_avx2(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    static int fo_cpu_has_avx512(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    }
    #else
    static int fo_cpu_has_avx2(void) { return 0; }
    static int fo_cpu_has_avx512(void) { return 0; }
    #endif
    """
    int FO_HAVE_OPENMP
    const char* FASTOPTIM_BUILD_FLAGS
    const char* FASTOPTIM_COMPILER
    int fo_max_threads() noexcept nogil
    int fo_cpu_has_avx2() noexcept nogil
    int fo_cpu_has_avx512() noexcept nogil


# bfloat16 (the top half of a float32's bits) to and from float32: widening is exact;
# narrowing rounds to nearest, ties to even, a NaN becomes the quiet NaN 0x7fc0 with its
# sign (ml_dtypes' and Eigen's rule, so fastoptim.reference, which rounds with ml_dtypes,
# gets the same bits), a value past the largest bfloat16 becomes Inf, subnormals are
# kept. Written with memcpy (no type punning through pointers) and no branch, so the
# loops over a block vectorise.
cdef extern from *:
    """
    #include <string.h>
    #include <stdint.h>
    static inline float fo_bf16_load(uint16_t h) {
        uint32_t u = ((uint32_t)h) << 16;
        float f;
        memcpy(&f, &u, sizeof f);
        return f;
    }
    static inline uint16_t fo_bf16_store(float f) {
        uint32_t u;
        memcpy(&u, &f, sizeof u);
        uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
        uint32_t q = ((u >> 16) & 0x8000u) | 0x7fc0u;
        return (uint16_t)(((u & 0x7fffffffu) > 0x7f800000u) ? q : r);
    }
    """
    float fo_bf16_load(uint16_t h) noexcept nogil
    uint16_t fo_bf16_store(float f) noexcept nogil


# 8-bit block-wise state: the bits of a float32 as an integer (memcpy, no punning)
cdef extern from *:
    """
    static inline uint32_t fo_f32_bits(float f) {
        uint32_t u;
        memcpy(&u, &f, sizeof u);
        return u;
    }
    static inline float fo_bits_f32(uint32_t u) {
        float f;
        memcpy(&f, &u, sizeof f);
        return f;
    }
    """
    uint32_t fo_f32_bits(float f) noexcept nogil
    float fo_bits_f32(uint32_t u) noexcept nogil


# The inner loops of 8-bit state over one block, in C for ``restrict``: GCC vectorises a
# table lookup only when it knows the table and the output do not overlap (Cython has
# no restrict). fo_q8_absmax_bits: the block's largest |x|, as the integer maximum of
# the bits with the sign cleared (NaN above every number); fo_q8_dequant: out =
# qmap[codes]*a; fo_q8_encode: each code of y = x/a by the encoding table: its entry
# for y's sign, exponent and top mantissa bits, plus one if y is above the one boundary
# the entry holds (fastoptim.formats.encoding_table); NaN -> 255, 0 -> the code of 0.
# GCC 12 vectorises the lookups with scalar loads into vector registers rather than
# gather instructions; on this project's AMD EPYC hand-written
# AVX-512 and AVX2 gathers were slower still (1.84 against 1.49 ns per Adam element on
# one thread), so the lookups -- four per Adam element -- bound the 8-bit step's speed.
cdef extern from *:
    """
    #include <stddef.h>
    static inline uint32_t fo_q8_absmax_bits(const float* restrict x, ptrdiff_t n) {
        uint32_t m = 0;
        for (ptrdiff_t i = 0; i < n; i++) {
            uint32_t v;
            memcpy(&v, &x[i], sizeof v);
            v &= 0x7fffffffu;
            m = v > m ? v : m;
        }
        return m;
    }
    static inline void fo_q8_dequant(const uint8_t* restrict codes, float a, ptrdiff_t n,
                                     const float* restrict qmap, float* restrict out) {
        for (ptrdiff_t i = 0; i < n; i++)
            out[i] = qmap[codes[i]] * a;
    }
    static inline void fo_q8_encode(const float* restrict x, float a, ptrdiff_t n,
                                    const uint32_t* restrict enc, uint32_t e0, uint32_t ne,
                                    uint8_t zero, uint8_t* restrict codes) {
        for (ptrdiff_t i = 0; i < n; i++) {
            float y = x[i] / a;
            uint32_t u;
            memcpy(&u, &y, sizeof u);
            uint32_t s = u >> 31, ex = (u >> 23) & 0xffu;
            uint32_t e2 = ex < e0 ? 0u : (ex > e0 + ne - 1u ? ne - 1u : ex - e0);
            int idx = (int)(((s * ne + e2) << 7) | ((u >> 16) & 0x7fu));
            uint32_t ent = enc[idx];
            uint32_t low = u & 0xffffu;
            uint32_t up = s ? 0xffffu - low : low;
            uint32_t c = (ent & 0xffu) + (up > (ent >> 8) ? 1u : 0u);
            codes[i] = (uint8_t)(y != y ? 255u : (y == 0.0f ? (uint32_t)zero : c));
        }
    }
    """
    uint32_t fo_q8_absmax_bits(const float* x, Py_ssize_t n) noexcept nogil
    void fo_q8_dequant(const uint8_t* codes, float a, Py_ssize_t n, const float* qmap,
                       float* out) noexcept nogil
    void fo_q8_encode(const float* x, float a, Py_ssize_t n, const uint32_t* enc,
                      uint32_t e0, uint32_t ne, uint8_t zero, uint8_t* codes) noexcept nogil

include "_pacer.pxi"

# Below these sizes (per update call, in float32 elements: a float64 element counts as
# two) a step runs on one thread: entering an OpenMP region costs about a microsecond
# with warm threads, more than a short loop. "light" rules (cost "light" in the rule
# table) do a few multiply-adds per element, "heavy" ones a square root and a division.
# Measured with bench/threshold.py (see docs/performance.rst).
cdef Py_ssize_t _threshold_light = 32768
cdef Py_ssize_t _threshold_heavy = 8192


# ---------------------------------------------------------------------------------------
# Layers 1 and 2: the per-element rules (hand-written, _rules.pxi) and, generated from
# the rule table (_dispatch.pxi.tp), the table's widths, N_STATE, HEAVY and _range: one
# rule over one contiguous range
# ---------------------------------------------------------------------------------------

# The deterministic sums of the rules with a trust ratio (LAMB): chunks of TRUST_CHUNK
# elements of each array, TRUST_LANES float64 lanes per chunk (fastoptim.reference's
# SUM_CHUNK and SUM_LANES, checked at import; the same as fastoptim.clip's).
cdef enum:
    TRUST_LANES = 8
    TRUST_CHUNK = 4096
SUM_LANES = TRUST_LANES
SUM_CHUNK = TRUST_CHUNK

include "_rules.pxi"
include "_dispatch.pxi"


# ---------------------------------------------------------------------------------------
# Layer 3: the engine over a table of arrays
# ---------------------------------------------------------------------------------------

# A kernel id with this bit set: the rule and the parameters' moving average
# a <- d*a + (1-d)*p of each element just stepped, in the rule's loop
# (fastoptim.rules.EMA_FLAG, which fastoptim checks against EMA_FLAG here at import).
cdef enum:
    EMA_BIT = 1024
    EMA_BLOCK = 512    # the rules with three state buffers: the average block by block
    MEAN_BLOCK = 2048  # elements per block of a mean of gradients (update_many's means)
EMA_FLAG = EMA_BIT

# A kernel id with this bit set: the rule's state buffers (not the moving average) are
# bfloat16, for float32 parameters (fastoptim.rules.BF16_FLAG; state_dtype="bfloat16").
# Such an entry runs the rule's generated bfloat16 loop (_range_bf16 via _bf16_range):
# each state value widened to float32 in a register, the rule, the new value rounded
# back, in the one pass over memory.
cdef enum:
    BF16_BIT = 2048
    FMT_NATIVE = 0     # Entry.fmt: state buffers of the parameter's dtype
    FMT_BF16 = 1       # Entry.fmt: bfloat16 state buffers (float32 parameters)
BF16_FLAG = BF16_BIT

# A kernel id with this bit set: the rule's state buffers are 8-bit block-wise
# (fastoptim.rules.INT8_FLAG; state_dtype="int8") -- per entry: a record with an absmax
# array per buffer is 8-bit (FMT_Q8), one without (an array under rules.INT8_MIN_SIZE)
# is float32 as usual. An 8-bit entry runs chunk by chunk (_q8_range): each chunk's
# codes dequantised into float32 buffers on the stack, the rule's usual loop, the new
# state quantised back block by block (its absmax, then its codes) while in cache.
cdef enum:
    INT8_BIT = 4096
    FMT_Q8 = 2         # Entry.fmt: 8-bit codes (uint8) and a float32 absmax per block
    Q8_BLOCK = 256     # elements per block (rules.INT8_BLOCK)
    Q8_CHUNK = 2048    # elements per chunk of the engine's loop (a multiple of Q8_BLOCK)
    Q8_E0 = 103        # the encoding table's lowest exponent: |y| < 2**-23 is one class
    Q8_NE = 25         # exponents Q8_E0 .. 127 (|y| <= 1)
    Q8_TABLE = 6400    # 2 signs x Q8_NE exponents x 128 (7 mantissa bits)
INT8_FLAG = INT8_BIT
INT8_BLOCK = Q8_BLOCK
INT8_TABLE = (Q8_E0, Q8_NE, Q8_TABLE)

# the maps (0: signed, 1: unsigned; fastoptim.reference.dynamic_map) and their encoding
# tables (fastoptim.formats.encoding_table), set by fastoptim.formats before any 8-bit
# state is made; _q8_ready: set
cdef float _qmap[2][256]
cdef uint32_t _qenc[2][Q8_TABLE]
cdef uint8_t _qzero[2]  # the code of y = 0 in each map
cdef int _q8_ready = 0


def set_int8_tables(const float[::1] signed_map, const float[::1] unsigned_map,
                    const uint32_t[::1] signed_enc, const uint32_t[::1] unsigned_enc,
                    int signed_zero, int unsigned_zero):
    """Register the 8-bit maps, their encoding tables and the codes of 0
    (fastoptim.formats)."""
    global _q8_ready
    cdef int i
    if (signed_map.shape[0] != 256 or unsigned_map.shape[0] != 256
            or signed_enc.shape[0] != Q8_TABLE or unsigned_enc.shape[0] != Q8_TABLE):
        raise ValueError("bad 8-bit tables")
    for i in range(256):
        _qmap[0][i] = signed_map[i]
        _qmap[1][i] = unsigned_map[i]
    for i in range(Q8_TABLE):
        _qenc[0][i] = signed_enc[i]
        _qenc[1][i] = unsigned_enc[i]
    _qzero[0] = <uint8_t>signed_zero
    _qzero[1] = <uint8_t>unsigned_zero
    _q8_ready = 1


# NumPy's type number of ml_dtypes.bfloat16 (a user dtype: its number is given at run
# time, by fastoptim.formats, before any bfloat16 state is made); -1: not registered
cdef int _bf16_typenum = -1


def set_bfloat16_typenum(int typenum):
    """Register NumPy's type number of ``ml_dtypes.bfloat16`` (fastoptim.formats)."""
    global _bf16_typenum
    _bf16_typenum = typenum


ctypedef struct Entry:
    char* p            # parameter data (written)
    char* g            # gradient data (read)
    char* s[MAX_STATE]  # state buffers (written), NULL past the rule's count
    char* avg          # the moving average (written), NULL without ema
    char* acc          # with a mean: the accumulated gradients (read), else NULL
    char* q[MAX_STATE]  # 8-bit entries: each state buffer's absmax (float32), else NULL
    Py_ssize_t n       # elements
    Py_ssize_t start   # index of its first element in the concatenation of the table
    Py_ssize_t sbytes  # bytes of each of its state buffers s[] (the average: the param's)
    int dbl            # 1: float64, 0: float32
    int fmt            # FMT_NATIVE or FMT_BF16: the state buffers' format
    int sc             # index of its scalar set (one per distinct step)

ctypedef struct ScalarSet:
    # the rule's scalars, then at MAX_SCALARS the gradient's sign (rules.Rule.stepper),
    # at MAX_SCALARS + 1 and + 2 the moving average's decay and 1 - decay (0 without ema),
    # at MAX_SCALARS + 3 the divisor of a mean of gradients (update_many's ``means``)
    double d[MAX_SCALARS + 4]
    float f[MAX_SCALARS + 4]


cdef inline Py_ssize_t _first_entry(const Entry* e, Py_ssize_t ne,
                                    Py_ssize_t lo) noexcept nogil:
    """The entry holding element lo of the concatenated table (binary search on starts;
    empty entries before it are skipped by the callers' range checks)."""
    cdef Py_ssize_t k, left = 0, right = ne
    while right - left > 1:
        k = (left + right) // 2
        if e[k].start <= lo:
            left = k
        else:
            right = k
    return left


cdef inline void _mean_range(floating* out, const floating* acc, const floating* g,
                             Py_ssize_t n, const floating* sc) noexcept nogil:
    """out = (acc + g)/k, k = sc[MAX_SCALARS + 3]: the mean of accumulated gradients
    and the last one, each sum rounded, then the division (fastoptim.Accumulate's
    np.add then np.divide)."""
    cdef Py_ssize_t i
    cdef floating k = sc[MAX_SCALARS + 3]
    for i in range(n):
        out[i] = (acc[i] + g[i]) / k


cdef inline void _entry_range(int rule, const Entry* e, Py_ssize_t a, Py_ssize_t b,
                              const floating* sc) noexcept nogil:
    """Elements [a, b) of one entry (its dtype is ``floating``): the rule (and the
    moving average, in its loop); with a mean of gradients, block by block while the
    block is in cache: the block's mean into a buffer the rule reads as its gradient,
    then the block's step."""
    cdef int j
    cdef Py_ssize_t c, c1
    cdef floating* st[MAX_STATE]
    cdef floating* p = <floating*>e.p
    cdef const floating* g = <const floating*>e.g
    cdef floating* avg = <floating*>e.avg
    cdef floating mean[MEAN_BLOCK]
    if e.acc == NULL:
        for j in range(MAX_STATE):
            st[j] = <floating*>e.s[j] + a if e.s[j] != NULL else NULL
        _range(rule, p + a, g + a, st, b - a, sc, avg + a if avg != NULL else NULL)
        return
    c = a
    while c < b:
        c1 = c + MEAN_BLOCK if b - c > MEAN_BLOCK else b
        for j in range(MAX_STATE):
            st[j] = <floating*>e.s[j] + c if e.s[j] != NULL else NULL
        _mean_range(mean, <const floating*>e.acc + c, g + c, c1 - c, sc)
        _range(rule, p + c, mean, st, c1 - c, sc, avg + c if avg != NULL else NULL)
        c = c1


cdef void _bf16_range(int rule, const Entry* e, Py_ssize_t a, Py_ssize_t b,
                      const float* sc) noexcept nogil:
    """Elements [a, b) of an entry with bfloat16 state (float32 parameter, gradient and
    moving average): the rule's loop with the state widened and rounded back in it
    (_range_bf16, generated); with a mean of gradients, block by block as _entry_range.
    Every element is the rule on its own values, so threads do not change a bit."""
    cdef uint16_t* st[MAX_STATE]
    cdef int j
    cdef Py_ssize_t c, c1
    cdef float* p = <float*>e.p
    cdef float* avg = <float*>e.avg
    cdef float mean[MEAN_BLOCK]
    if e.acc == NULL:
        for j in range(MAX_STATE):
            st[j] = <uint16_t*>e.s[j] + a if e.s[j] != NULL else NULL
        _range_bf16(rule, p + a, <const float*>e.g + a, st, b - a, sc,
                    avg + a if avg != NULL else NULL)
        return
    c = a
    while c < b:
        c1 = c + MEAN_BLOCK if b - c > MEAN_BLOCK else b
        for j in range(MAX_STATE):
            st[j] = <uint16_t*>e.s[j] + c if e.s[j] != NULL else NULL
        _mean_range(mean, <const float*>e.acc + c, <const float*>e.g + c, c1 - c, sc)
        _range_bf16(rule, p + c, mean, st, c1 - c, sc, avg + c if avg != NULL else NULL)
        c = c1


cdef inline void _q8_load(const uint8_t* codes, const float* absmax, Py_ssize_t n,
                          const float* qmap, float* out) noexcept nogil:
    """out[i] = qmap[codes[i]] * absmax of its block, for n elements from a block start."""
    cdef Py_ssize_t b0, b1
    b0 = 0
    while b0 < n:
        b1 = b0 + Q8_BLOCK if n - b0 > Q8_BLOCK else n
        fo_q8_dequant(codes + b0, absmax[b0 // Q8_BLOCK], b1 - b0, qmap, out + b0)
        b0 = b1


cdef inline void _q8_store(const float* x, Py_ssize_t n, const uint32_t* enc,
                           uint8_t zero, uint8_t* codes, float* absmax) noexcept nogil:
    """Quantise n elements from a block start, block by block: the block's absmax (an
    integer maximum of the bits with the sign cleared: NaN above every number), then
    each code of x/absmax (of 0 where the absmax is 0)."""
    cdef Py_ssize_t i, b0, b1
    cdef uint32_t m
    cdef float a
    b0 = 0
    while b0 < n:
        b1 = b0 + Q8_BLOCK if n - b0 > Q8_BLOCK else n
        m = fo_q8_absmax_bits(x + b0, b1 - b0)
        a = fo_bits_f32(m)
        absmax[b0 // Q8_BLOCK] = a
        if m == 0:
            for i in range(b0, b1):
                codes[i] = zero
        else:
            fo_q8_encode(x + b0, a, b1 - b0, enc, Q8_E0, Q8_NE, zero, codes + b0)
        b0 = b1


cdef void _q8_range(int rule, const Entry* e, Py_ssize_t a, Py_ssize_t b,
                    const float* sc) noexcept nogil:
    """Elements [a, b) of an entry with 8-bit state (a a multiple of Q8_BLOCK, b one or
    the entry's end), Q8_CHUNK at a time: each state buffer's codes dequantised into a
    float32 buffer, the gradient's mean when there is one, the rule's loop (_range, as
    for float32 state), the new state quantised back (fastoptim.reference's
    with_int8_state). Blocks are the array's own, so threads change no bit."""
    cdef float stage[MAX_STATE * Q8_CHUNK]
    cdef float mean[Q8_CHUNK]
    cdef float* st[MAX_STATE]
    cdef int j, ns = N_STATE[rule], sign
    cdef Py_ssize_t c = a, c1
    cdef float* p = <float*>e.p
    cdef float* avg = <float*>e.avg
    cdef const float* g
    for j in range(MAX_STATE):
        st[j] = &stage[j * Q8_CHUNK] if j < ns else NULL
    while c < b:
        c1 = c + Q8_CHUNK if b - c > Q8_CHUNK else b
        for j in range(ns):
            sign = 0 if (Q8_SIGNED[rule] >> j) & 1 else 1
            _q8_load(<const uint8_t*>e.s[j] + c, <const float*>e.q[j] + c // Q8_BLOCK,
                     c1 - c, _qmap[sign], st[j])
        if e.acc != NULL:
            _mean_range(mean, <const float*>e.acc + c, <const float*>e.g + c, c1 - c, sc)
            g = mean
        else:
            g = <const float*>e.g + c
        _range(rule, p + c, g, st, c1 - c, sc, avg + c if avg != NULL else NULL)
        for j in range(ns):
            sign = 0 if (Q8_SIGNED[rule] >> j) & 1 else 1
            _q8_store(st[j], c1 - c, _qenc[sign], _qzero[sign], <uint8_t*>e.s[j] + c,
                      <float*>e.q[j] + c // Q8_BLOCK)
        c = c1


cdef void _span(int rule, const Entry* e, Py_ssize_t ne, const ScalarSet* ss,
                Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """Elements [lo, hi) of the concatenated table, entry by entry."""
    cdef Py_ssize_t a, b, k = _first_entry(e, ne, lo)
    while k < ne and e[k].start < hi:
        a = lo - e[k].start if lo > e[k].start else 0
        b = hi - e[k].start if hi - e[k].start < e[k].n else e[k].n
        if e[k].fmt == FMT_Q8:  # the blocks that start in [a, b): each by one thread
            a = (a + Q8_BLOCK - 1) // Q8_BLOCK * Q8_BLOCK
            b = (b + Q8_BLOCK - 1) // Q8_BLOCK * Q8_BLOCK
            if b > e[k].n:
                b = e[k].n
        if b > a:
            if e[k].fmt == FMT_Q8:
                _q8_range(rule, &e[k], a, b, ss[e[k].sc].f)
            elif e[k].fmt == FMT_BF16:
                _bf16_range(rule, &e[k], a, b, ss[e[k].sc].f)
            elif e[k].dbl:
                _entry_range[double](rule, &e[k], a, b, ss[e[k].sc].d)
            else:
                _entry_range[float](rule, &e[k], a, b, ss[e[k].sc].f)
        k += 1


cdef inline Py_ssize_t _split(Py_ssize_t total, int nt, int t) noexcept nogil:
    # the first element of thread t's share: shares differ by at most one element
    return (total // nt) * t + (t if t < total % nt else total % nt)


cdef void _run(int rule, const Entry* e, Py_ssize_t ne, Py_ssize_t total,
               const ScalarSet* ss, int nt) noexcept nogil:
    cdef int t
    if nt <= 1:
        _span(rule, e, ne, ss, 0, total)
        return
    for t in prange(nt, schedule="static", num_threads=nt):
        _span(rule, e, ne, ss, _split(total, nt, t), _split(total, nt, t + 1))


# -- rules with a trust ratio (rules.Rule.trust_ratio, e.g. LAMB): two phases per update.
# Phase 1 runs the rule's _norms_<name> over every chunk of every array -- chunk c of an
# array is its elements [c*TRUST_CHUNK, (c+1)*TRUST_CHUNK), whichever thread takes it --
# writing the state and each chunk's two sums of squares; then, serially, each array's
# sums (its chunks left to right from 0.0), its ratio ||p||/||u|| (1 where either sum is
# 0), and its own scalar set with the last scalar (lr) times the ratio; phase 2 is the
# usual pass (_run) of _rule_<name> with those sets. Every sum is fixed by the data, so
# the result is the same for any thread count, and the reference's.

cdef void _norm_chunks(int rule, const Entry* e, const Py_ssize_t* cstart, Py_ssize_t ne,
                       const ScalarSet* ss, Py_ssize_t k0, Py_ssize_t k1,
                       double* part) noexcept nogil:
    """Chunks [k0, k1) of the table (entry i's chunks are cstart[i] .. cstart[i+1]-1),
    their two sums into part[2k], part[2k+1]."""
    cdef Py_ssize_t k, a, b, left = 0, right = ne, mid, i
    cdef int j
    cdef double* sd[MAX_STATE]
    cdef float* sf[MAX_STATE]
    cdef double md[TRUST_CHUNK]  # a chunk's mean of gradients (update_many's means)
    cdef float mf[TRUST_CHUNK]
    if k0 >= k1:
        return
    while right - left > 1:  # the last entry with cstart <= k0
        mid = (left + right) // 2
        if cstart[mid] <= k0:
            left = mid
        else:
            right = mid
    i = left
    for k in range(k0, k1):
        while cstart[i + 1] <= k:
            i += 1
        a = (k - cstart[i]) * TRUST_CHUNK
        b = a + TRUST_CHUNK if e[i].n - a > TRUST_CHUNK else e[i].n
        if e[i].dbl:
            for j in range(MAX_STATE):
                sd[j] = <double*>e[i].s[j] + a if e[i].s[j] != NULL else NULL
            if e[i].acc != NULL:
                _mean_range(md, <const double*>e[i].acc + a, <const double*>e[i].g + a,
                            b - a, ss[e[i].sc].d)
                _norms_range(rule, <const double*>e[i].p + a, md, sd, b - a,
                             ss[e[i].sc].d, part + 2 * k)
            else:
                _norms_range(rule, <const double*>e[i].p + a, <const double*>e[i].g + a,
                             sd, b - a, ss[e[i].sc].d, part + 2 * k)
        else:
            for j in range(MAX_STATE):
                sf[j] = <float*>e[i].s[j] + a if e[i].s[j] != NULL else NULL
            if e[i].acc != NULL:
                _mean_range(mf, <const float*>e[i].acc + a, <const float*>e[i].g + a,
                            b - a, ss[e[i].sc].f)
                _norms_range(rule, <const float*>e[i].p + a, mf, sf, b - a,
                             ss[e[i].sc].f, part + 2 * k)
            else:
                _norms_range(rule, <const float*>e[i].p + a, <const float*>e[i].g + a,
                             sf, b - a, ss[e[i].sc].f, part + 2 * k)


cdef void _trust_table(int rule, Entry* e, Py_ssize_t ne, Py_ssize_t total,
                       const ScalarSet* ss, int nt, Py_ssize_t* cstart, double* part,
                       ScalarSet* own) noexcept nogil:
    """Both phases over a table of entries (their scalar sets are changed to ``own``:
    ne sets, one per entry). ``cstart``: ne + 1, ``part``: two per chunk."""
    cdef Py_ssize_t i, k, nch
    cdef int t, slot = N_SCALARS[rule] - 1
    cdef double sp, su, ratio
    cstart[0] = 0
    for i in range(ne):
        cstart[i + 1] = cstart[i] + (e[i].n + TRUST_CHUNK - 1) // TRUST_CHUNK
    nch = cstart[ne]
    if nt > nch:
        nt = <int>nch
    if nt <= 1:
        _norm_chunks(rule, e, cstart, ne, ss, 0, nch, part)
    else:
        for t in prange(nt, schedule="static", num_threads=nt):
            _norm_chunks(rule, e, cstart, ne, ss, _split(nch, nt, t), _split(nch, nt, t + 1),
                         part)
    for i in range(ne):
        sp = 0.0
        su = 0.0
        for k in range(cstart[i], cstart[i + 1]):
            sp = sp + part[2 * k]
            su = su + part[2 * k + 1]
        ratio = 1.0 if sp == 0.0 or su == 0.0 else sqrt(sp) / sqrt(su)
        own[i] = ss[e[i].sc]
        own[i].d[slot] = ss[e[i].sc].d[slot] * ratio
        own[i].f[slot] = <float>own[i].d[slot]
        e[i].sc = <int>i
    _run(rule, e, ne, total, own, nt)


cdef int _trust_step(int rule, Entry* e, Py_ssize_t ne, Py_ssize_t total,
                     const ScalarSet* ss, int nt, bint in_order) except -1:
    """An update by a rule with a trust ratio. ``in_order``: the arrays share memory, so
    each array takes both phases before the next begins, serially (the reference's
    order). Allocates first: on MemoryError nothing has been written."""
    cdef Py_ssize_t i, nch = 0
    cdef Entry one
    cdef Py_ssize_t* cstart
    cdef double* part
    cdef ScalarSet* own
    for i in range(ne):
        nch += (e[i].n + TRUST_CHUNK - 1) // TRUST_CHUNK
    cstart = <Py_ssize_t*>PyMem_Malloc((ne + 1) * sizeof(Py_ssize_t))
    part = <double*>PyMem_Malloc((2 * nch + 2) * sizeof(double))
    own = <ScalarSet*>PyMem_Malloc((ne if ne else 1) * sizeof(ScalarSet))
    if cstart == NULL or part == NULL or own == NULL:
        PyMem_Free(cstart)
        PyMem_Free(part)
        PyMem_Free(own)
        raise MemoryError()
    with nogil:
        if not in_order:
            _trust_table(rule, e, ne, total, ss, nt, cstart, part, own)
        else:
            for i in range(ne):
                one = e[i]
                one.start = 0
                _trust_table(rule, &one, 1, one.n, ss, 1, cstart, part, own)
    PyMem_Free(cstart)
    PyMem_Free(part)
    PyMem_Free(own)
    return 0


cdef inline int _threads_cost(bint heavy, int requested, Py_ssize_t n) noexcept nogil:
    """Threads for a step over n (float32-equivalent) elements: 1 below the cost class's
    threshold; else the request (<= 0: OpenMP's current maximum), capped so that each
    thread gets at least half a threshold of elements (a many-core machine does not
    spread a mid-sized update so thin that the region costs more than the work)."""
    cdef Py_ssize_t threshold = _threshold_heavy if heavy else _threshold_light
    cdef Py_ssize_t chunk = threshold // 2 if threshold >= 2 else 1
    if n < threshold or not FO_HAVE_OPENMP or fo_forked:
        return 1
    if requested <= 0:
        requested = fo_max_threads()
    if requested > n // chunk:
        requested = <int>(n // chunk)
    return requested if requested > 1 else 1


cdef inline int _threads(int rule, int requested, Py_ssize_t n) noexcept nogil:
    return _threads_cost(HEAVY[rule], requested, n)


cdef void _fill_scalars(ScalarSet* s, tuple values, bint ema=False) except *:
    # values: the rule's scalars, then the gradient's sign, then with ema the moving
    # average's decay and 1 - decay
    cdef Py_ssize_t i, n = len(values) - (3 if ema else 1)
    if n > MAX_SCALARS or n < 0:
        raise ValueError("bad number of scalars")
    for i in range(MAX_SCALARS):
        s.d[i] = values[i] if i < n else 0.0
        s.f[i] = <float>s.d[i]
    for i in range(3):
        s.d[MAX_SCALARS + i] = values[n + i] if i == 0 or ema else 0.0
        s.f[MAX_SCALARS + i] = <float>s.d[MAX_SCALARS + i]
    s.d[MAX_SCALARS + 3] = 1.0  # update_many sets a mean's divisor
    s.f[MAX_SCALARS + 3] = 1.0


# The non-finite check of the guarded mode: does any gradient element hold NaN or Inf?
# One pass over the gradients, split over the threads like an update. An element is not
# finite exactly when its exponent bits are all ones; an integer OR-reduction over that
# test vectorises (a float reduction would not, without reassociation).

cdef int _nonfinite_f32(const uint32_t* x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint32_t acc = 0
    for i in range(n):
        acc |= (x[i] & 0x7f800000u) == 0x7f800000u
    return acc != 0


cdef int _nonfinite_f64(const uint64_t* x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint64_t acc = 0
    for i in range(n):
        acc |= (x[i] & 0x7ff0000000000000u) == 0x7ff0000000000000u
    return acc != 0


cdef int _span_nonfinite(const Entry* e, Py_ssize_t ne, Py_ssize_t lo,
                         Py_ssize_t hi) noexcept nogil:
    """1 if a gradient element of [lo, hi) of the concatenated table is NaN or Inf."""
    cdef Py_ssize_t a, b, k = _first_entry(e, ne, lo)
    while k < ne and e[k].start < hi:
        a = lo - e[k].start if lo > e[k].start else 0
        b = hi - e[k].start if hi - e[k].start < e[k].n else e[k].n
        if b > a:
            if e[k].dbl:
                if _nonfinite_f64(<const uint64_t*>e[k].g + a, b - a):
                    return 1
            elif _nonfinite_f32(<const uint32_t*>e[k].g + a, b - a):
                return 1
        k += 1
    return 0


cdef bint _any_nonfinite(const Entry* e, Py_ssize_t ne, Py_ssize_t total,
                         int nt) except -1:
    cdef int t, found = 0
    cdef int* flags
    if nt <= 1:
        return _span_nonfinite(e, ne, 0, total)
    flags = <int*>PyMem_Malloc(nt * sizeof(int))
    if flags == NULL:
        raise MemoryError()
    with nogil:
        for t in prange(nt, schedule="static", num_threads=nt):
            flags[t] = _span_nonfinite(e, ne, _split(total, nt, t), _split(total, nt, t + 1))
    for t in range(nt):
        found |= flags[t]
    PyMem_Free(flags)
    return found != 0


# ---------------------------------------------------------------------------------------
# Layer 4a: one kernel per rule over one flat parameter (the reference's signatures),
# generated from the rule table (_wrappers.pxi.tp)
# ---------------------------------------------------------------------------------------

cdef inline Py_ssize_t _length(Py_ssize_t n, Py_ssize_t m, str name) except -1:
    """n, after checking that the buffer ``name`` has n elements too (no read past an
    end)."""
    if m != n:
        if name == "grad":
            raise ValueError(f"grad has {m} elements but the parameter has {n}")
        raise ValueError(f"a state buffer has {m} elements but the parameter has {n} "
                         f"({name})")
    return n


cdef void _one(int rule, floating* p, const floating* g, floating** s, Py_ssize_t n,
               tuple scalars, int num_threads) except *:
    cdef Entry e
    cdef ScalarSet ss
    cdef int k
    cdef int nt = _threads(rule, num_threads, n * sizeof(floating) // 4)
    if nt > 1 and num_threads < 0:
        nt = _pace_keyed(p, n * sizeof(floating) // 4, nt)
    _fill_scalars(&ss, scalars)
    e.p = <char*>p
    e.g = <char*>g
    for k in range(MAX_STATE):
        e.s[k] = <char*>s[k]
        e.q[k] = NULL
    e.avg = NULL
    e.acc = NULL
    e.n = n
    e.start = 0
    e.sbytes = n * sizeof(floating)
    e.dbl = floating is double
    e.fmt = FMT_NATIVE
    e.sc = 0
    if TRUST[rule]:
        _trust_step(rule, &e, 1, n, &ss, nt, False)
        return
    with nogil:
        _run(rule, &e, 1, n, &ss, nt)


include "_wrappers.pxi"


# ---------------------------------------------------------------------------------------
# Layer 4b: a whole update call -- check every array in C, gather the pointer table,
# one pass over memory
# ---------------------------------------------------------------------------------------

ctypedef struct ArrInfo:
    char* data
    Py_ssize_t size
    Py_ssize_t nbytes
    int typenum
    int corder         # 1: C-contiguous, 0: F-contiguous (and not C)
    int ndim
    cnp.npy_intp* dims

cdef int _GOOD_FLAGS = cnp.NPY_ARRAY_WRITEABLE | cnp.NPY_ARRAY_ALIGNED


cdef inline bint _param_ok(object obj, ArrInfo* a) noexcept:
    """A native, aligned, writeable float32/float64 array, C- or F-contiguous."""
    cdef cnp.ndarray arr
    cdef int flags
    if not cnp.PyArray_CheckExact(obj):  # subclasses (memmap, masked) take the Python path
        return False
    arr = <cnp.ndarray>obj
    a.typenum = cnp.PyArray_TYPE(arr)
    if a.typenum != cnp.NPY_FLOAT32 and a.typenum != cnp.NPY_FLOAT64:
        return False
    if not cnp.PyArray_ISNOTSWAPPED(arr):
        return False
    flags = cnp.PyArray_FLAGS(arr)
    if (flags & _GOOD_FLAGS) != _GOOD_FLAGS:
        return False
    if flags & cnp.NPY_ARRAY_C_CONTIGUOUS:
        a.corder = 1
    elif flags & cnp.NPY_ARRAY_F_CONTIGUOUS:
        a.corder = 0
    else:
        return False
    a.data = <char*>cnp.PyArray_DATA(arr)
    a.size = cnp.PyArray_SIZE(arr)
    a.nbytes = a.size * cnp.PyArray_ITEMSIZE(arr)
    a.ndim = cnp.PyArray_NDIM(arr)
    a.dims = cnp.PyArray_DIMS(arr)
    return True


cdef inline bint _like(object obj, const ArrInfo* p, bint writeable, char** data) noexcept:
    """obj has p's dtype and shape, is aligned and contiguous in p's memory order."""
    return _like_typed(obj, p, p.typenum, writeable, data)


cdef inline bint _like_typed(object obj, const ArrInfo* p, int typenum, bint writeable,
                             char** data) noexcept:
    """obj has dtype ``typenum`` and p's shape, is aligned and contiguous in p's memory
    order."""
    cdef cnp.ndarray arr
    cdef int flags, i
    cdef cnp.npy_intp* dims
    if not cnp.PyArray_CheckExact(obj):  # subclasses (memmap, masked) take the Python path
        return False
    arr = <cnp.ndarray>obj
    if cnp.PyArray_TYPE(arr) != typenum or not cnp.PyArray_ISNOTSWAPPED(arr):
        return False
    if cnp.PyArray_NDIM(arr) != p.ndim:
        return False
    dims = cnp.PyArray_DIMS(arr)
    for i in range(p.ndim):
        if dims[i] != p.dims[i]:
            return False
    flags = cnp.PyArray_FLAGS(arr)
    if not flags & cnp.NPY_ARRAY_ALIGNED:
        return False
    if writeable and not flags & cnp.NPY_ARRAY_WRITEABLE:
        return False
    if not flags & (cnp.NPY_ARRAY_C_CONTIGUOUS if p.corder else cnp.NPY_ARRAY_F_CONTIGUOUS):
        return False
    data[0] = <char*>cnp.PyArray_DATA(arr)
    return True


cdef inline bint _disjoint(const char* a, Py_ssize_t na, const char* b,
                           Py_ssize_t nb) noexcept:
    return na == 0 or nb == 0 or a + na <= b or b + nb <= a


ctypedef struct Interval:
    const char* lo
    const char* hi
    Py_ssize_t owner

cdef int _cmp_interval(const void* x, const void* y) noexcept nogil:
    cdef const Interval* a = <const Interval*>x
    cdef const Interval* b = <const Interval*>y
    return -1 if a.lo < b.lo else (1 if a.lo > b.lo else 0)


cdef inline Py_ssize_t _add_interval(Interval* iv, Py_ssize_t m, const char* lo,
                                     Py_ssize_t nbytes, Py_ssize_t owner) noexcept:
    if lo != NULL and nbytes:
        iv[m].lo = lo
        iv[m].hi = lo + nbytes
        iv[m].owner = owner
        return m + 1
    return m


cdef bint _cross_overlap(const Entry* e, Py_ssize_t ne, const Py_ssize_t* nbytes,
                         object cache) except -1:
    """True when memory written by the call (parameters and state buffers) overlaps
    other memory it writes, or a gradient overlaps memory written for another parameter
    (or its own state buffer other than exactly): threads would then race, so the caller
    runs the update serially, in order -- exactly as the reference does. A gradient that
    is exactly its own state buffer is safe in parallel (each element is read before it
    is written, by one thread). The sorted intervals are cached (``cache``, a list owned
    by the optimizer) and re-sorted only when the written memory changes."""
    cdef Py_ssize_t k, j, lo, hi, mid, m = 0
    cdef bytes key
    cdef Interval* iv
    cdef bint written_overlap = False
    cdef char* kbuf
    cdef const char* g0
    cdef const char* g1
    cdef int b, w = 2 * MAX_STATE + 3
    # the cache key: every parameter's, state buffer's and average's pointer, and the
    # byte size (the state buffers' follows from it and the kernel id, which the cache's
    # owner, an optimizer, does not change while it holds state)
    key = bytes(ne * w * sizeof(Py_ssize_t))
    kbuf = <char*>key
    for k in range(ne):
        (<Py_ssize_t*>kbuf)[w * k] = <Py_ssize_t>e[k].p
        for b in range(MAX_STATE):
            (<Py_ssize_t*>kbuf)[w * k + 1 + b] = <Py_ssize_t>e[k].s[b]
            (<Py_ssize_t*>kbuf)[w * k + 1 + MAX_STATE + b] = <Py_ssize_t>e[k].q[b]
        (<Py_ssize_t*>kbuf)[w * k + w - 2] = <Py_ssize_t>e[k].avg
        (<Py_ssize_t*>kbuf)[w * k + w - 1] = nbytes[k]
    if len(cache) == 3 and cache[0] == key:
        written_overlap = cache[2]
        iv = <Interval*><char*>(<bytes>cache[1])
        m = len(<bytes>cache[1]) // sizeof(Interval)
    else:
        ivs = bytes((2 + 2 * MAX_STATE) * ne * sizeof(Interval))
        iv = <Interval*><char*>ivs
        for k in range(ne):
            m = _add_interval(iv, m, e[k].p, nbytes[k], k)
            for b in range(MAX_STATE):
                m = _add_interval(iv, m, e[k].s[b], e[k].sbytes, k)
                m = _add_interval(iv, m, e[k].q[b],
                                  (e[k].n + Q8_BLOCK - 1) // Q8_BLOCK * 4, k)
            m = _add_interval(iv, m, e[k].avg, nbytes[k], k)
        qsort(iv, m, sizeof(Interval), _cmp_interval)
        for k in range(1, m):
            if iv[k].lo < iv[k - 1].hi:
                written_overlap = True
                break
        ivs = ivs[:m * sizeof(Interval)]
        iv = <Interval*><char*>ivs
        cache[:] = [key, ivs, written_overlap]
    if written_overlap:
        return True
    # each gradient against the sorted, disjoint written intervals (their ends are
    # sorted too, so the ones it overlaps are the last few starting before its end)
    for k in range(ne):
        if not nbytes[k]:
            continue
        g0 = e[k].g
        g1 = e[k].g + nbytes[k]
        lo, hi = 0, m  # the first interval with iv.lo >= gradient end
        while lo < hi:
            mid = (lo + hi) // 2
            if iv[mid].lo < g1:
                lo = mid + 1
            else:
                hi = mid
        j = lo - 1
        while j >= 0 and iv[j].hi > g0:
            if not (iv[j].owner == k and iv[j].lo == g0 and iv[j].hi == g1):
                return True
            j -= 1
    return False


cdef inline bint _absmax_ok(object obj, Py_ssize_t nblocks, char** data) noexcept:
    """obj is a 1-D, aligned, writeable, contiguous native float32 array of nblocks."""
    cdef cnp.ndarray arr
    cdef int flags
    if not cnp.PyArray_CheckExact(obj):
        return False
    arr = <cnp.ndarray>obj
    if (cnp.PyArray_TYPE(arr) != cnp.NPY_FLOAT32 or not cnp.PyArray_ISNOTSWAPPED(arr)
            or cnp.PyArray_NDIM(arr) != 1 or cnp.PyArray_DIMS(arr)[0] != nblocks):
        return False
    flags = cnp.PyArray_FLAGS(arr)
    if (flags & (_GOOD_FLAGS | cnp.NPY_ARRAY_C_CONTIGUOUS)) != (
            _GOOD_FLAGS | cnp.NPY_ARRAY_C_CONTIGUOUS):
        return False
    data[0] = <char*>cnp.PyArray_DATA(arr)
    return True


cdef object _NO_KEY = object()  # a plan position that names no key yet (None is a key)


def update_many(int rule, object params, object grads, dict slots, object scalars,
                int num_threads, list cache, list plan, list steps_out,
                bint skip_nonfinite=False, object pacer=None, object means=None):
    """Update every parameter of one call in one pass over memory -- or, when anything
    is not as the fast path takes it, write nothing and say what (fastoptim._engine
    runs the transaction around this call; nothing here calls back into Python).

    rule: the kernel id (fastoptim.rules.Rule.id): the rule's position in the table,
        with EMA_FLAG for a row that keeps the parameters' moving average too.
    params, grads: two dicts with the same keys, or two lists/tuples of equal length
        (the caller checked the kinds and the lengths).
    slots: key -> [step, state buffer, ...] (the engine's state records: the step is a
        0-d int64 array, the number of steps taken, incremented here in place; then
        the rule's N_STATE[rule] buffers, and with EMA_FLAG the moving average).
    scalars: step -> tuple of the rule's kernel scalars for that step (float64), or, for
        a rule whose scalars do not depend on the step, the one tuple for every step.
    cache: a list owned by the caller (see _cross_overlap).
    plan: a list owned by the caller: [keys, slots] of the last call, position by
        position, so that a key that is the very same object as last time finds its slot
        without a dict lookup. The caller empties it whenever it changes ``slots`` other
        than through this function; the keys are held, so an identical object cannot be
        a new key.
    steps_out: on success, set to the distinct steps taken (so the caller can have the
        scalars of the next ones ready).
    skip_nonfinite: first check every gradient element (one pass, all threads); if any
        is NaN or Inf, write nothing, count no step, and return False.
    pacer: None (use the threads asked for, above the size thresholds), a bytearray of
        PACER_BYTES owned by the caller, or True (the pacer keyed by the first
        parameter's address): the adaptive policy (see _pacer.pxi) then decides, call
        by call, between one thread and those asked for.
    means: None, or (accumulators, k): a list, one array per position of ``params``
        (its parameter's dtype, shape and memory order, memory the call does not
        write), and an int k >= 1; the rule then takes (accumulator + gradient)/k as
        each gradient, computed block by block in the pass (fastoptim.Accumulate's
        stepping call). Not with skip_nonfinite (the guard checks gradients, not
        means): the caller computes the means first then.

    Returns True (applied) or False (skipped by the guard), or, with nothing written,
    a pair (rejected, missing): ``rejected`` the positions whose arrays or state the fast
    path does not take as they are (not exact, aligned, native float32/float64 ndarrays
    of matching shape, dtype and memory order; a gradient sharing memory with its
    parameter or state; a state buffer sharing memory with its parameter or another of
    its buffers; no state record yet), or None when a dict of gradients lacks a key of
    the parameters or has extra keys; ``missing`` the steps with no entry in
    ``scalars``.
    """
    cdef bint is_dict = type(params) is dict
    cdef Py_ssize_t n = len(params)
    cdef Py_ssize_t i, k, j, pos = 0, total = 0, work = 0, step, last_step = -1
    cdef bint ema = (rule & EMA_BIT) != 0
    cdef int fmt = (FMT_BF16 if rule & BF16_BIT else FMT_Q8 if rule & INT8_BIT
                    else FMT_NATIVE)
    cdef Py_ssize_t sbytes = 0
    cdef int nstate, nrule, last_sc = -1, nt
    cdef PyObject* kp
    cdef PyObject* vp
    cdef PyObject* gp
    cdef PyObject* sp
    cdef ArrInfo pi
    cdef char* gdata
    cdef char* sdata[2 * MAX_STATE + 1]
    cdef Py_ssize_t sizes[2 * MAX_STATE + 1]
    cdef int efmt = FMT_NATIVE, nq = 0, nbuf = 0
    cdef Py_ssize_t nblocks
    cdef bint ok
    cdef Entry* e = NULL
    cdef ScalarSet* ss = NULL
    cdef Py_ssize_t* steps = NULL
    cdef Py_ssize_t* nbytes = NULL
    cdef cnp.npy_int64** stepp = NULL
    cdef list rejected = None
    cdef list missing = None
    cdef Py_ssize_t* dsteps = NULL  # the distinct steps, in order of their scalar sets
    cdef Py_ssize_t nd = 0, idx
    cdef dict step_index = None
    cdef list pkeys, pslots
    cdef Pacer* ps = NULL
    cdef bint keyed = pacer is True
    cdef bint fixed = type(scalars) is tuple
    cdef bint paced_serial = False
    cdef bint overlap = False
    cdef list accs = None
    cdef double divisor = 1.0
    cdef char* adata = NULL
    rule &= ~(EMA_BIT | BF16_BIT | INT8_BIT)
    if rule < 0 or rule >= N_RULES:
        raise ValueError(f"no kernel id {rule}")
    if fmt == FMT_BF16 and (_bf16_typenum < 0 or TRUST[rule]):
        raise ValueError("internal error: bfloat16 state without its type registered, "
                         "or for a rule with a trust ratio")
    if fmt == FMT_Q8 and (not _q8_ready or not Q8_OK[rule]):
        raise ValueError("internal error: 8-bit state without its tables registered, or "
                         "for a rule without 8-bit state")
    nrule = N_STATE[rule]
    nstate = nrule + (1 if ema else 0)  # the record's buffers: the rule's, then ema
    if means is not None:
        accs, divisor = means
        if len(accs) != n or not divisor >= 1.0 or skip_nonfinite:
            raise ValueError("internal error: bad means for update_many")
    if n == 0:
        steps_out.clear()
        return True
    if not keyed:
        ps = _pacer_of(pacer)
    if len(plan) != 2 or len(<list>plan[0]) != n:
        plan[:] = [[_NO_KEY] * n, [None] * n]
    pkeys = plan[0]
    pslots = plan[1]
    e = <Entry*>PyMem_Malloc(n * sizeof(Entry))
    steps = <Py_ssize_t*>PyMem_Malloc(n * sizeof(Py_ssize_t))
    nbytes = <Py_ssize_t*>PyMem_Malloc(n * sizeof(Py_ssize_t))
    stepp = <cnp.npy_int64**>PyMem_Malloc(n * sizeof(cnp.npy_int64*))
    dsteps = <Py_ssize_t*>PyMem_Malloc(n * sizeof(Py_ssize_t))
    if e == NULL or steps == NULL or nbytes == NULL or stepp == NULL or dsteps == NULL:
        PyMem_Free(e); PyMem_Free(steps); PyMem_Free(nbytes); PyMem_Free(stepp)
        PyMem_Free(dsteps)
        raise MemoryError()
    try:
        # -- 1. check everything, gather pointers; nothing is written -----------------
        for i in range(n):
            if is_dict:
                PyDict_Next(params, &pos, &kp, &vp)
                key = <object>kp
                p = <object>vp
                gp = PyDict_GetItemWithError(grads, key)
                if gp == NULL:
                    return (None, None)  # a missing gradient: the caller says which
                g = <object>gp
            else:
                key = i
                p = params[i]
                g = grads[i]
            if <PyObject*>pkeys[i] == <PyObject*>key:
                sp = <PyObject*>pslots[i]
            else:
                sp = PyDict_GetItemWithError(slots, key)
                if sp != NULL:
                    pkeys[i] = key
                    pslots[i] = <object>sp
            ok = _param_ok(p, &pi) and _like(g, &pi, False, &gdata) \
                and _disjoint(pi.data, pi.nbytes, gdata, pi.nbytes) and sp != NULL
            efmt = fmt
            if ok and fmt != FMT_NATIVE:
                ok = pi.typenum == cnp.NPY_FLOAT32
            if ok:
                slot = <object>sp
                ok = type(slot) is list
            if ok:
                # an array under rules.INT8_MIN_SIZE in an 8-bit optimizer: float32 state
                if efmt == FMT_Q8 and len(<list>slot) == nstate + 1:
                    efmt = FMT_NATIVE
                nq = nrule if efmt == FMT_Q8 else 0
                ok = len(<list>slot) == nstate + nq + 1
                # the record's arrays, in sdata: the rule's buffers (in the state
                # format), the average (the param's), the absmax arrays of 8-bit state
                sbytes = (pi.size * 2 if efmt == FMT_BF16 else
                          pi.size if efmt == FMT_Q8 else pi.nbytes)
                nblocks = (pi.size + Q8_BLOCK - 1) // Q8_BLOCK
                nbuf = nstate + nq
                for k in range(nbuf):
                    if not ok:
                        break
                    if k < nrule:
                        obj = (<list>slot)[k + 1]
                        sizes[k] = sbytes
                        ok = (_like_typed(obj, &pi, _bf16_typenum, True, &sdata[k])
                              if efmt == FMT_BF16 else
                              _like_typed(obj, &pi, cnp.NPY_UINT8, True, &sdata[k])
                              if efmt == FMT_Q8 else _like(obj, &pi, True, &sdata[k]))
                    elif k < nstate:  # the average
                        sizes[k] = pi.nbytes
                        ok = _like((<list>slot)[1 + nrule + nq], &pi, True, &sdata[k])
                    else:  # an absmax: 1-D float32, one per block
                        sizes[k] = nblocks * 4
                        ok = _absmax_ok((<list>slot)[1 + nrule + k - nstate], nblocks,
                                        &sdata[k])
                    ok = ok and _disjoint(sdata[k], sizes[k], gdata, pi.nbytes) \
                        and _disjoint(sdata[k], sizes[k], pi.data, pi.nbytes)
                    for j in range(k):
                        ok = ok and _disjoint(sdata[k], sizes[k], sdata[j], sizes[j])
            if ok and accs is not None:
                ok = _like(accs[i], &pi, False, &adata) \
                    and _disjoint(adata, pi.nbytes, pi.data, pi.nbytes)
                for k in range(nbuf):
                    ok = ok and _disjoint(adata, pi.nbytes, sdata[k], sizes[k])
            if ok:
                box = (<list>slot)[0]
                ok = (cnp.PyArray_CheckExact(box)
                      and cnp.PyArray_TYPE(<cnp.ndarray>box) == cnp.NPY_INT64
                      and cnp.PyArray_SIZE(<cnp.ndarray>box) == 1
                      and cnp.PyArray_FLAGS(<cnp.ndarray>box) & cnp.NPY_ARRAY_WRITEABLE
                      and cnp.PyArray_ISALIGNED(<cnp.ndarray>box))
            if not ok:
                if rejected is None:
                    rejected = []
                rejected.append(i)
                continue
            e[i].p = pi.data
            e[i].g = gdata
            for k in range(MAX_STATE):
                e[i].s[k] = sdata[k] if k < nrule else NULL
                e[i].q[k] = sdata[nstate + k] if k < nq else NULL
            e[i].avg = sdata[nrule] if ema else NULL
            e[i].acc = adata if accs is not None else NULL
            e[i].n = pi.size
            e[i].start = total
            e[i].sbytes = sbytes
            e[i].dbl = pi.typenum == cnp.NPY_FLOAT64
            e[i].fmt = efmt
            total += pi.size
            work += pi.size * (2 if e[i].dbl else 1)
            nbytes[i] = pi.nbytes
            stepp[i] = <cnp.npy_int64*>cnp.PyArray_DATA(<cnp.ndarray>box)
            step = stepp[i][0] + 1
            steps[i] = step
            if fixed:
                e[i].sc = 0
                continue
            if step != last_step:
                # the scalar set of this step: a short linear search over the distinct
                # steps seen (usually one), a dict once there are many
                idx = -1
                if nd <= 8:
                    for k in range(nd):
                        if dsteps[k] == step:
                            idx = k
                            break
                else:
                    if step_index is None:
                        step_index = {dsteps[k]: k for k in range(nd)}
                    idx = step_index.get(step, -1)
                if idx < 0:
                    idx = nd
                    dsteps[nd] = step
                    nd += 1
                    if step_index is not None:
                        step_index[step] = idx
                    if step not in <dict>scalars:
                        if missing is None:
                            missing = []
                        missing.append(step)
                last_step, last_sc = step, idx
            e[i].sc = last_sc
        if is_dict and len(grads) != n:
            return (None, None)  # extra gradients: the caller says which
        if rejected is not None or missing is not None:
            return (rejected or [], missing or [])

        # -- 2. threads: none above one for overlapping arrays; the pacer's choice -------
        nt = _threads(rule, num_threads, work)
        # overlapping arrays: one thread, and a rule with a trust ratio array by array
        overlap = n > 1 and (nt > 1 or TRUST[rule]) and _cross_overlap(e, n, nbytes, cache)
        if overlap:
            nt = 1
        elif nt > 1 and keyed:
            nt = _pace_keyed(e[0].p, work, nt)
            paced_serial = nt == 1
        elif nt > 1 and ps != NULL:
            nt = _pace(ps, work, fo_now_ns(), nt)
            paced_serial = nt == 1

        # -- 3. the guard: nothing written, no step counted, if a gradient is not finite
        if skip_nonfinite and _any_nonfinite(
                e, n, total, 1 if paced_serial else _threads_cost(False, num_threads, work)):
            return False

        # -- 4. the scalars of every distinct step --------------------------------------
        ss = <ScalarSet*>PyMem_Malloc((1 if fixed else nd) * sizeof(ScalarSet))
        if ss == NULL:
            raise MemoryError()
        if fixed:
            _fill_scalars(&ss[0], <tuple>scalars, ema)
        for k in range(nd):
            _fill_scalars(&ss[k], <tuple?>(<dict>scalars)[dsteps[k]], ema)
        if accs is not None:
            for k in range(1 if fixed else nd):
                ss[k].d[MAX_SCALARS + 3] = divisor
                ss[k].f[MAX_SCALARS + 3] = <float>divisor

        # -- 5. nothing can fail from here on (but a trust rule's MemoryError, which
        # comes before it writes) ---------------------------------------------------
        if TRUST[rule]:
            _trust_step(rule, e, n, total, ss, nt, overlap)
        else:
            with nogil:
                _run(rule, e, n, total, ss, nt)
        for i in range(n):
            stepp[i][0] = steps[i]
        if not fixed:
            if len(steps_out) != nd:
                steps_out[:] = [dsteps[k] for k in range(nd)]
            else:
                for k in range(nd):
                    steps_out[k] = dsteps[k]
        return True
    finally:
        PyMem_Free(e)
        PyMem_Free(ss)
        PyMem_Free(steps)
        PyMem_Free(nbytes)
        PyMem_Free(stepp)
        PyMem_Free(dsteps)


# ---------------------------------------------------------------------------------------
# Build, CPU and thread facts; the serial thresholds
# ---------------------------------------------------------------------------------------

def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(FO_HAVE_OPENMP)


def max_threads():
    """Threads a step may use now: OpenMP's current maximum (honours OMP_NUM_THREADS
    and threadpoolctl), or 1 in a serial build."""
    return fo_max_threads()


def cpu_supports():
    """The vector targets this CPU can run: {"baseline": True, "avx2": ..., "avx512": ...}."""
    return {"baseline": True, "avx2": bool(fo_cpu_has_avx2()),
            "avx512": bool(fo_cpu_has_avx512())}


def build_info():
    """The compiler family, flags and vector target this module was built with."""
    return {
        "compiler": FASTOPTIM_COMPILER.decode("ascii", "replace"),
        "flags": FASTOPTIM_BUILD_FLAGS.decode("ascii", "replace"),
        "target": TARGET,
    }


def get_parallel_thresholds():
    """Sizes below which a step runs serially, {"light": n, "heavy": n}, in float32
    elements (a float64 element counts as two)."""
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
    """The thread count a step over n float32 elements (or n/2 float64 ones) would use
    (for tests and tuning)."""
    return _threads_cost(heavy, num_threads, n)


# ---------------------------------------------------------------------------------------
# The streaming roofline (for fastoptim bench): the memory traffic of a rule with none of
# its arithmetic -- k buffers updated in place from one read-only buffer, so k moves the
# bytes of a rule with k - 1 state buffers (rules.Rule.state_bytes; ema counts as one).
# ---------------------------------------------------------------------------------------

cdef void _stream_range(floating* a, floating* b, floating* c, floating* d, floating* e,
                        const floating* r, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    if e != NULL:
        for i in range(lo, hi):
            a[i] = a[i] + r[i]
            b[i] = b[i] + r[i]
            c[i] = c[i] + r[i]
            d[i] = d[i] + r[i]
            e[i] = e[i] + r[i]
    elif d != NULL:
        for i in range(lo, hi):
            a[i] = a[i] + r[i]
            b[i] = b[i] + r[i]
            c[i] = c[i] + r[i]
            d[i] = d[i] + r[i]
    elif c != NULL:
        for i in range(lo, hi):
            a[i] = a[i] + r[i]
            b[i] = b[i] + r[i]
            c[i] = c[i] + r[i]
    elif b != NULL:
        for i in range(lo, hi):
            a[i] = a[i] + r[i]
            b[i] = b[i] + r[i]
    else:
        for i in range(lo, hi):
            a[i] = a[i] + r[i]


def stream(const floating[::1] read, floating[::1] a, floating[::1] b=None,
           floating[::1] c=None, floating[::1] d=None, floating[::1] e=None, *,
           int num_threads=1):
    """a += read (and b, c, d, e likewise), split evenly over num_threads threads."""
    cdef Py_ssize_t n = read.shape[0]
    cdef int t, nt = num_threads if num_threads > 1 and FO_HAVE_OPENMP and not fo_forked else 1
    cdef floating* pb = NULL
    cdef floating* pc = NULL
    cdef floating* pd = NULL
    cdef floating* pe = NULL
    _length(n, a.shape[0], "grad")
    if b is not None:
        _length(n, b.shape[0], "b")
    if c is not None:
        _length(n, c.shape[0], "c")
    if d is not None:
        _length(n, d.shape[0], "d")
    if e is not None:
        _length(n, e.shape[0], "e")
    if n == 0:
        return
    if b is not None:
        pb = &b[0]
    if c is not None:
        if pb == NULL:
            raise ValueError("give b before c")
        pc = &c[0]
    if d is not None:
        if pc == NULL:
            raise ValueError("give c before d")
        pd = &d[0]
    if e is not None:
        if pd == NULL:
            raise ValueError("give d before e")
        pe = &e[0]
    with nogil:
        if nt <= 1:
            _stream_range(&a[0], pb, pc, pd, pe, &read[0], 0, n)
        else:
            for t in prange(nt, schedule="static", num_threads=nt):
                _stream_range(&a[0], pb, pc, pd, pe, &read[0], _split(n, nt, t),
                              _split(n, nt, t + 1))
