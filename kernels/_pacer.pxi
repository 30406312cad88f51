# Serial or parallel? The "adaptive" threading policy, and fork safety. Included by the
# kernel modules (_body.pxi) and by _clip.pyx; each compiled module gets its own copy.
#
# Why: timed alone, a step over a large array is fastest on every core. Inside a NumPy
# training loop the cores are shared with the BLAS pool of the matrix products, and an
# OpenMP team then straggles: a worker waits for a core that a BLAS thread is spinning
# on, and our own workers spin after each region on a core BLAS needs. Which is faster
# for the *loop* depends on the machine, the BLAS, the model and what else runs; it can
# only be measured. So an adaptive caller keeps a Pacer and passes it with each call:
#
# * the signal is the period between the starts of consecutive calls -- the user's whole
#   loop (forward, backward, matrix products, the step), not the step alone, so a mode
#   that slows the matrix products down is charged for it;
# * a trial runs a mode for one warm-up call (its period straddles the switch) and then
#   TRIAL_SAMPLES calls; the median of their periods is the mode's cost. The first trial
#   is parallel, the second serial; then the cheaper mode is used ("exploited");
# * every `interval` exploited calls the other mode is tried again: the interval starts
#   at MIN_INTERVAL, doubles each time the exploited mode is confirmed (quadruples
#   when the other mode lost by more than ABORT_RATIO), up to MAX_INTERVAL, and starts
#   over after a switch. A trial stops at its first counted period that is clearly
#   worse (ABORT_RATIO) than the exploited mode's, so re-checking a mode that loses
#   costs two calls in MAX_INTERVAL;
# * while exploiting, the mode's cost is the median of its last three periods, so a
#   trial compares against the present, not the past; switching needs a gain of
#   SWITCH_GAIN (noise alone does not flip the mode back and forth);
# * a call over a different amount of work starts again from scratch.
#
# After fork() in a process whose OpenMP runtime had started a team, GNU libgomp's
# thread pool exists only in the parent: the child's first parallel region waits for it
# forever. A pthread_atfork handler marks the child, and every region of this module
# then runs on one thread (fork_child() reports it). Spawned processes are unaffected.

cdef extern from *:
    """
    #if defined(_WIN32)
    #include <windows.h>
    static long long fo_now_ns(void) {
        LARGE_INTEGER f, c;
        QueryPerformanceFrequency(&f);
        QueryPerformanceCounter(&c);
        return (long long)((double)c.QuadPart * 1e9 / (double)f.QuadPart);
    }
    static volatile int fo_forked = 0;
    static int fo_register_atfork(void) { return 0; }
    #else
    #include <time.h>
    #include <pthread.h>
    static long long fo_now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000000000LL + (long long)ts.tv_nsec;
    }
    static volatile int fo_forked = 0;
    static void fo_atfork_child(void) { fo_forked = 1; }
    static int fo_register_atfork(void) {
        return pthread_atfork(NULL, NULL, fo_atfork_child);
    }
    #endif
    """
    long long fo_now_ns() noexcept nogil
    int fo_forked
    int fo_register_atfork() noexcept nogil

if fo_register_atfork() != 0:
    raise ImportError("fastoptim: pthread_atfork failed; cannot make the kernels "
                      "fork-safe")


cdef enum:
    PACE_SERIAL = 1
    PACE_PARALLEL = 2
    PACE_TRIAL = 0
    PACE_EXPLOIT = 1
    TRIAL_SAMPLES = 3
    MIN_INTERVAL = 16
    MAX_INTERVAL = 1024

cdef double ABORT_RATIO = 1.5
cdef double SWITCH_GAIN = 0.97
cdef long long PACER_MAGIC = 0x666f706163657231   # "fopacer1"

ctypedef struct Pacer:
    long long magic
    long long work          # the work (float32 elements) the costs below are for
    long long last_ns       # start of the previous paced call; 0: none yet
    long long countdown     # exploited calls left before the other mode is tried
    long long interval
    long long calls, parallel_calls, trials, switches
    int last_mode           # the mode of the previous paced call
    int mode                # the mode of the calls now
    int phase               # PACE_TRIAL or PACE_EXPLOIT
    int incumbent           # the mode exploited before this trial; 0: none yet
    int seen                # periods recorded in this trial (the first is the warm-up)
    int nrecent
    double cost[3]          # [-, serial, parallel]: median period in ns; 0: unknown
    double sample[TRIAL_SAMPLES]
    double recent[3]

PACER_BYTES = sizeof(Pacer)


cdef inline double _median3(double a, double b, double c) noexcept nogil:
    if a > b:
        a, b = b, a
    if b > c:
        b = c
    return a if a > b else b


cdef inline double _median(const double* x, int n) noexcept nogil:
    if n == 1:
        return x[0]
    if n == 2:
        return 0.5 * (x[0] + x[1])
    return _median3(x[0], x[1], x[2])


cdef void _pace_reset(Pacer* s, long long work) noexcept nogil:
    cdef char* b = <char*>s
    cdef Py_ssize_t i
    for i in range(sizeof(Pacer)):
        b[i] = 0
    s.magic = PACER_MAGIC
    s.work = work
    s.mode = PACE_PARALLEL
    s.phase = PACE_TRIAL
    s.interval = MIN_INTERVAL


cdef void _pace_trial(Pacer* s, int mode) noexcept nogil:
    s.phase = PACE_TRIAL
    s.mode = mode
    s.seen = 0
    s.trials += 1


cdef void _pace_exploit(Pacer* s) noexcept nogil:
    """Both costs are known: use the cheaper mode (the incumbent unless the other wins
    by SWITCH_GAIN)."""
    cdef int best
    cdef int inc = s.incumbent
    if inc == 0:
        best = PACE_SERIAL if s.cost[PACE_SERIAL] < s.cost[PACE_PARALLEL] else PACE_PARALLEL
    elif s.cost[3 - inc] < SWITCH_GAIN * s.cost[inc]:
        best = 3 - inc
    else:
        best = inc
    if inc != 0 and best == inc:
        # confirmed; by a wide margin: check four times less often, else half as often
        s.interval *= 4 if s.cost[3 - inc] > ABORT_RATIO * s.cost[inc] else 2
        if s.interval > MAX_INTERVAL:
            s.interval = MAX_INTERVAL
    else:
        s.interval = MIN_INTERVAL
        if inc != 0:
            s.switches += 1
    s.incumbent = best
    s.mode = best
    s.phase = PACE_EXPLOIT
    s.countdown = s.interval
    s.nrecent = 1
    s.recent[0] = s.cost[best]


cdef void _pace_record(Pacer* s, int mode, double period) noexcept nogil:
    """The period that started with a call made in ``mode``."""
    cdef int other = 3 - mode
    if mode != s.mode:
        return      # a call of the mode before a switch
    if s.phase == PACE_TRIAL:
        s.seen += 1
        if s.seen == 1:
            # warm-up: the period straddles the switch (workers that went to sleep
            # during a serial stretch wake up, data moves between the cores' caches),
            # so it is not counted
            return
        s.sample[s.seen - 2] = period
        if s.cost[other] > 0 and period > ABORT_RATIO * s.cost[other]:
            s.cost[mode] = period                       # clearly worse: stop here
        elif s.seen - 1 == TRIAL_SAMPLES:
            s.cost[mode] = _median(s.sample, TRIAL_SAMPLES)
        else:
            return
        if s.cost[other] == 0:
            _pace_trial(s, other)
        else:
            _pace_exploit(s)
        return
    s.recent[s.nrecent % 3] = period
    s.nrecent += 1
    s.cost[mode] = _median(s.recent, s.nrecent if s.nrecent < 3 else 3)
    s.countdown -= 1
    if s.countdown <= 0:
        _pace_trial(s, other)


cdef int _pace(Pacer* s, long long work, long long now, int nt) noexcept nogil:
    """The thread count for a call that would use ``nt`` > 1 threads at time ``now``."""
    if s.magic != PACER_MAGIC or s.work != work:
        _pace_reset(s, work)
        s.trials = 1
    elif s.last_ns != 0 and now > s.last_ns:
        _pace_record(s, s.last_mode, <double>(now - s.last_ns))
    s.last_ns = now
    s.last_mode = s.mode
    s.calls += 1
    if s.mode == PACE_PARALLEL:
        s.parallel_calls += 1
        return nt
    return 1


cdef Pacer* _pacer_of(object pacer) except? NULL:
    """The Pacer in a bytearray of PACER_BYTES bytes (None: no pacing)."""
    if pacer is None:
        return NULL
    if type(pacer) is not bytearray or len(<bytearray>pacer) != sizeof(Pacer):
        raise TypeError(f"pacer must be a bytearray of {sizeof(Pacer)} bytes")
    return <Pacer*><char*>pacer


# The functional API's kernels take one array per call, so a training loop calls them
# once per parameter per step: their pacers are keyed by the parameter's address (the
# period between two calls on the same array is the loop's), in a small direct-mapped
# table; two arrays that share an entry start over each time (then: parallel, as before
# the adaptive policy). Only touched with the GIL held.
cdef enum:
    KEYED_BITS = 8
    KEYED_SLOTS = 256

cdef Pacer _keyed[KEYED_SLOTS]
cdef size_t _keyed_key[KEYED_SLOTS]


cdef int _pace_keyed(const void* key, long long work, int nt) noexcept nogil:
    cdef size_t k = <size_t>key
    cdef int i = <int>(((<unsigned long long>k >> 4) * 11400714819323198485ULL)
                       >> (64 - KEYED_BITS))
    if _keyed_key[i] != k:
        _keyed_key[i] = k
        _keyed[i].magic = 0
    return _pace(&_keyed[i], work, fo_now_ns(), nt)


def pacer_info(bytearray pacer):
    """What a pacer has seen (for tests and ``fastoptim bench``): the mode in use, the
    measured costs (median periods, seconds; None: not measured), call counts."""
    cdef Pacer* s = _pacer_of(pacer)
    if s.magic != PACER_MAGIC:
        return None
    return {
        "mode": "parallel" if s.mode == PACE_PARALLEL else "serial",
        "phase": "trial" if s.phase == PACE_TRIAL else "exploit",
        "serial_s": s.cost[PACE_SERIAL] * 1e-9 if s.cost[PACE_SERIAL] > 0 else None,
        "parallel_s": s.cost[PACE_PARALLEL] * 1e-9 if s.cost[PACE_PARALLEL] > 0 else None,
        "calls": s.calls, "parallel_calls": s.parallel_calls, "trials": s.trials,
        "switches": s.switches, "interval": s.interval, "work": s.work,
    }


def keyed_pacer_info(size_t address):
    """``pacer_info`` of the functional API's pacer for the array at ``address``."""
    cdef int i = <int>(((<unsigned long long>address >> 4) * 11400714819323198485ULL)
                       >> (64 - KEYED_BITS))
    if _keyed_key[i] != address or _keyed[i].magic != PACER_MAGIC:
        return None
    cdef bytearray b = bytearray(sizeof(Pacer))
    memcpy(<char*>b, &_keyed[i], sizeof(Pacer))
    return pacer_info(b)


def pacer_simulate(costs, long long work=1):
    """Run the policy against a simulated clock: ``costs`` is a sequence of (serial,
    parallel) periods in seconds, one per call; each call advances the clock by the cost
    of the mode the policy chose. Returns the chosen modes as a string of 'S'/'P' (for
    the tests of the policy itself)."""
    cdef Pacer s
    cdef long long now = 1
    cdef int nt
    out = []
    s.magic = 0
    for serial, parallel in costs:
        nt = _pace(&s, work, now, 2)
        out.append("P" if nt > 1 else "S")
        now += <long long>((parallel if nt > 1 else serial) * 1e9)
    return "".join(out)


def fork_child():
    """True in a process made by fork() after this module was loaded: every parallel
    region then runs on one thread (GNU libgomp's thread pool did not survive the fork)."""
    return bool(fo_forked)
