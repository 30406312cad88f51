# cython: language_level=3
"""fastoptim._clip: the global gradient norm and the scaling pass of ``clip_grad_norm``.

Layers, and calls go one way (top to bottom):

1. ``_accumulate`` / ``_multiply``: one contiguous segment of one array, no threads.
2. ``_chunk_sumsq`` / ``_chunk_scale``: one fixed-size chunk of the concatenated arrays,
   which may span several arrays (and both dtypes).
3. Python-callable ``sum_of_squares(arrays)`` and ``scale(arrays, factor)``: gather the
   buffers' pointers, then one parallel region over the chunks (serial below a size
   threshold), with ``prange(schedule="static")``.

The order of summation is fixed by the data alone, never by the thread count, so the
result is bit-identical for any number of threads. With ``x`` the concatenation of the
arrays (each read in its own memory order, as a flat buffer) and ``N`` its length:

* chunk ``k`` is ``x[k*CHUNK : (k+1)*CHUNK]`` (the last one may be shorter);
* within a chunk, element ``i`` (counted from the chunk's start) belongs to lane
  ``i % LANES``; each lane starts at 0.0 and adds its squares in index order;
* a chunk's sum is ``(((0.0 + lane[0]) + lane[1]) + ...) + lane[LANES-1]``;
* the total is ``(((0.0 + chunk[0]) + chunk[1]) + ...)``, added serially after the
  parallel region.

Squares and sums are in float64 for float32 and float64 arrays alike (the square of a
float32 value is exact in float64). ``fastoptim.clip.sum_of_squares_reference`` computes
the same sums in the same order with NumPy. Lanes are independent, so the compiler may
vectorise the full rows of a chunk without reordering any lane's additions (no
``-ffast-math``; ``-ffp-contract=off`` forbids fused multiply-adds).
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define FO_CLIP_HAVE_OPENMP 1
    static int fo_clip_max_threads(void) { return omp_get_max_threads(); }
    #else
    #define FO_CLIP_HAVE_OPENMP 0
    static int fo_clip_max_threads(void) { return 1; }
    #endif
    """
    int FO_CLIP_HAVE_OPENMP
    int fo_clip_max_threads() noexcept nogil

include "_pacer.pxi"


cdef enum:
    _LANES = 8      # accumulators per chunk
    _CHUNK = 4096    # elements per chunk; a multiple of _LANES

LANES = _LANES
CHUNK = _CHUNK

# Below this many elements in total, one thread does all chunks (an OpenMP region costs
# more than a short loop); above it, never fewer than two chunks' worth per thread.
cdef Py_ssize_t _threshold = 32768


# ---------------------------------------------------------------------------------------
# Layer 1: one contiguous segment of one array
# ---------------------------------------------------------------------------------------

cdef inline void _accumulate(const floating* x, Py_ssize_t n, Py_ssize_t lane,
                             double* acc) noexcept nogil:
    """acc[(lane + i) % LANES] += double(x[i])**2 for i = 0 .. n-1, in index order."""
    cdef Py_ssize_t i = 0, j
    cdef double v
    while i < n and lane != 0:          # up to the start of the next full row
        v = x[i]
        acc[lane] += v * v
        i += 1
        lane += 1
        if lane == _LANES:
            lane = 0
    while i + _LANES <= n:              # full rows: one element per lane
        for j in range(_LANES):
            v = x[i + j]
            acc[j] += v * v
        i += _LANES
    j = 0
    while i < n:                        # the last, partial row
        v = x[i]
        acc[j] += v * v
        i += 1
        j += 1


cdef inline void _multiply(floating* x, Py_ssize_t n, floating factor) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        x[i] = x[i] * factor


# ---------------------------------------------------------------------------------------
# Layer 2: one chunk of the concatenated arrays
# ---------------------------------------------------------------------------------------

cdef inline Py_ssize_t _array_at(const Py_ssize_t* offsets, Py_ssize_t narr,
                                 Py_ssize_t g) noexcept nogil:
    """The array holding element g of the concatenation: the last a with
    offsets[a] <= g (empty arrays share their offset with the next one)."""
    cdef Py_ssize_t lo = 0, hi = narr - 1, mid
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if offsets[mid] <= g:
            lo = mid
        else:
            hi = mid - 1
    return lo


cdef double _chunk_sumsq(Py_ssize_t k, Py_ssize_t total, char** ptrs, const int* is64,
                         const Py_ssize_t* offsets, Py_ssize_t narr) noexcept nogil:
    cdef double acc[_LANES]
    cdef double s = 0.0
    cdef Py_ssize_t start = k * _CHUNK
    cdef Py_ssize_t end = start + _CHUNK
    cdef Py_ssize_t g = start, seg_end, a, j
    if end > total:
        end = total
    for j in range(_LANES):
        acc[j] = 0.0
    a = _array_at(offsets, narr, g)
    while g < end:
        seg_end = offsets[a + 1] if offsets[a + 1] < end else end
        if seg_end > g:
            if is64[a]:
                _accumulate(<const double*>ptrs[a] + (g - offsets[a]), seg_end - g,
                            (g - start) % _LANES, acc)
            else:
                _accumulate(<const float*>ptrs[a] + (g - offsets[a]), seg_end - g,
                            (g - start) % _LANES, acc)
            g = seg_end
        a += 1
    for j in range(_LANES):
        s += acc[j]
    return s


cdef void _chunk_scale(Py_ssize_t k, Py_ssize_t total, char** ptrs, const int* is64,
                       const Py_ssize_t* offsets, Py_ssize_t narr, float factor32,
                       double factor64) noexcept nogil:
    cdef Py_ssize_t start = k * _CHUNK
    cdef Py_ssize_t end = start + _CHUNK
    cdef Py_ssize_t g = start, seg_end, a
    if end > total:
        end = total
    a = _array_at(offsets, narr, g)
    while g < end:
        seg_end = offsets[a + 1] if offsets[a + 1] < end else end
        if seg_end > g:
            if is64[a]:
                _multiply(<double*>ptrs[a] + (g - offsets[a]), seg_end - g, factor64)
            else:
                _multiply(<float*>ptrs[a] + (g - offsets[a]), seg_end - g, factor32)
            g = seg_end
        a += 1


cdef inline int _threads(int requested, Py_ssize_t n, Py_ssize_t nchunks) noexcept nogil:
    """1 below the threshold or without OpenMP; else the request (<= 0: OpenMP's current
    maximum), capped at one thread per two chunks."""
    if n < _threshold or not FO_CLIP_HAVE_OPENMP or fo_forked:
        return 1
    if requested <= 0:
        requested = fo_clip_max_threads()
    if requested > nchunks // 2:
        requested = <int>(nchunks // 2)
    return requested if requested > 1 else 1


# ---------------------------------------------------------------------------------------
# Layer 3: Python-callable
# ---------------------------------------------------------------------------------------

cdef class _Buffers:
    """Pointers, dtypes and offsets of a list of 1-D contiguous float32/float64 arrays.
    Holds the memoryviews so that the pointers stay valid."""
    cdef char** ptrs
    cdef int* is64
    cdef Py_ssize_t* offsets
    cdef Py_ssize_t narr
    cdef Py_ssize_t total
    cdef list views

    def __cinit__(self, arrays, bint writeable):
        cdef float[::1] w32
        cdef double[::1] w64
        cdef const float[::1] r32
        cdef const double[::1] r64
        cdef Py_ssize_t i, n
        self.narr = len(arrays)
        self.views = []
        self.ptrs = <char**>malloc((self.narr + 1) * sizeof(char*))
        self.is64 = <int*>malloc((self.narr + 1) * sizeof(int))
        self.offsets = <Py_ssize_t*>malloc((self.narr + 1) * sizeof(Py_ssize_t))
        if self.ptrs == NULL or self.is64 == NULL or self.offsets == NULL:
            raise MemoryError()
        self.total = 0
        for i in range(self.narr):
            a = arrays[i]
            self.offsets[i] = self.total
            self.ptrs[i] = NULL
            # Acquiring the typed memoryview checks format, dimensions, contiguity and
            # (when writing) writeability, so a wrong array cannot corrupt memory.
            if a.itemsize == 8:
                self.is64[i] = 1
                if writeable:
                    w64 = a
                    n = w64.shape[0]
                    if n:
                        self.ptrs[i] = <char*>&w64[0]
                    self.views.append(w64)
                else:
                    r64 = a
                    n = r64.shape[0]
                    if n:
                        self.ptrs[i] = <char*>&r64[0]
                    self.views.append(r64)
            else:
                self.is64[i] = 0
                if writeable:
                    w32 = a
                    n = w32.shape[0]
                    if n:
                        self.ptrs[i] = <char*>&w32[0]
                    self.views.append(w32)
                else:
                    r32 = a
                    n = r32.shape[0]
                    if n:
                        self.ptrs[i] = <char*>&r32[0]
                    self.views.append(r32)
            self.total += n
        self.offsets[self.narr] = self.total

    def __dealloc__(self):
        free(self.ptrs)
        free(self.is64)
        free(self.offsets)


# The adaptive policy's state for clip_grad_norm (one per process: a training loop clips
# once per step, so the period between calls is the loop's), and its last choice, which
# the scaling pass that follows a norm follows too.
cdef Pacer _pacer
_pacer.magic = 0
cdef bint _paced_serial = False


def sum_of_squares(arrays, *, int num_threads=0, bint adaptive=False):
    """The sum of squares of every element of ``arrays`` (a list of 1-D contiguous
    float32/float64 arrays, dtypes may differ), in float64, in the fixed chunk order
    described in the module docstring. ``num_threads <= 0``: OpenMP's current maximum.
    ``adaptive``: the module's pacer chooses between one thread and ``num_threads``
    (see _pacer.pxi), and the next ``scale(adaptive=True)`` follows its choice."""
    global _paced_serial
    cdef _Buffers b = _Buffers(arrays, False)
    cdef Py_ssize_t total = b.total, narr = b.narr, k
    cdef Py_ssize_t nchunks = (total + _CHUNK - 1) // _CHUNK
    cdef double s = 0.0
    cdef double* sums
    cdef int nt
    if total == 0:
        return 0.0
    sums = <double*>malloc(nchunks * sizeof(double))
    if sums == NULL:
        raise MemoryError()
    nt = _threads(num_threads, total, nchunks)
    _paced_serial = False
    if nt > 1 and adaptive:
        nt = _pace(&_pacer, total, fo_now_ns(), nt)
        _paced_serial = nt == 1
    with nogil:
        if nt > 1:
            for k in prange(nchunks, schedule="static", num_threads=nt):
                sums[k] = _chunk_sumsq(k, total, b.ptrs, b.is64, b.offsets, narr)
        else:
            for k in range(nchunks):
                sums[k] = _chunk_sumsq(k, total, b.ptrs, b.is64, b.offsets, narr)
        for k in range(nchunks):
            s += sums[k]
    free(sums)
    return s


def scale(arrays, double factor, *, int num_threads=0, bint adaptive=False):
    """Multiply every element of ``arrays`` (1-D contiguous, writeable float32/float64)
    in place by ``factor`` converted to the array's dtype. ``adaptive``: one thread if
    the last ``sum_of_squares(adaptive=True)`` chose one."""
    cdef _Buffers b = _Buffers(arrays, True)
    cdef Py_ssize_t total = b.total, narr = b.narr, k
    cdef Py_ssize_t nchunks = (total + _CHUNK - 1) // _CHUNK
    cdef float f32 = <float>factor
    cdef int nt
    if total == 0:
        return
    nt = _threads(num_threads, total, nchunks)
    if adaptive and _paced_serial:
        nt = 1
    with nogil:
        if nt > 1:
            for k in prange(nchunks, schedule="static", num_threads=nt):
                _chunk_scale(k, total, b.ptrs, b.is64, b.offsets, narr, f32, factor)
        else:
            for k in range(nchunks):
                _chunk_scale(k, total, b.ptrs, b.is64, b.offsets, narr, f32, factor)


def openmp_enabled():
    """True when this module was compiled with OpenMP."""
    return bool(FO_CLIP_HAVE_OPENMP)


def get_parallel_threshold():
    """Total element count below which the norm and the scaling run on one thread."""
    return _threshold


def set_parallel_threshold(Py_ssize_t n):
    """Change the serial threshold (for tuning and tests); returns the old value."""
    global _threshold
    if n < 0:
        raise ValueError(f"threshold must be >= 0, got {n}")
    old = _threshold
    _threshold = n
    return old


def pacer_state():
    """What the module's pacer has seen (see ``pacer_info``), or None."""
    cdef bytearray b = bytearray(sizeof(Pacer))
    memcpy(<char*>b, &_pacer, sizeof(Pacer))
    return pacer_info(b)


def _effective_threads(Py_ssize_t n, int num_threads=0):
    """The thread count a call over n elements in total would use (for tests)."""
    return _threads(num_threads, n, (n + _CHUNK - 1) // _CHUNK)
