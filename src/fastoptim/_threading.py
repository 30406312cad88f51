"""The threading policy: how fastoptim shares the cores with everything else.

One knob, ``FASTOPTIM_THREADING`` (read when fastoptim is imported), or
:func:`fastoptim.set_threading` at run time:

``"adaptive"`` (the default)
    For a training loop, where the cores are shared with NumPy's BLAS. fastoptim's OpenMP
    workers wait for the next region by spinning for about a millisecond only
    (``GOMP_SPINCOUNT=40000``, ``KMP_BLOCKTIME=1``; the runtimes' defaults are about 8 ms
    and 200 ms), then sleep. Each optimizer (and ``clip_grad_norm``) measures the period
    of the loop that calls it -- everything between two consecutive calls, matrix
    products included -- with its large steps run in parallel and run on one thread,
    keeps the faster, and checks again now and then (see ``kernels/_pacer.pxi``).
``"spin"``
    For a machine that does nothing else: every large step runs on all threads, and idle
    workers never sleep (``OMP_WAIT_POLICY=active``): the lowest latency per step, and
    cores kept busy between steps.
``"yield"``
    Every large step runs on all threads, and workers sleep as soon as a region ends
    (``OMP_WAIT_POLICY=passive``): for cores shared with other work that should still be
    used in parallel when fastoptim steps.

``num_threads=k`` (per optimizer or call), ``OMP_NUM_THREADS`` or
``threadpoolctl.threadpool_limits(k, user_api="openmp")`` cap the threads under any
policy; ``num_threads=1`` is always serial.

The wait behaviour is a setting of the OpenMP runtime, read once, when the runtime is
loaded; fastoptim sets it (for its own loading only: ``os.environ`` is restored after)
unless the user set ``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT`` or ``KMP_BLOCKTIME``
themselves (then theirs is in force). A wheel carries a private OpenMP runtime that
starts with fastoptim, so it always applies; a source build shares the system's
runtime, and if another library had loaded it first, the setting could not be applied:
``get_config()["wait_applied"]`` says which. :func:`set_threading` changes the
serial/parallel decision only.
"""

import os
import re
import warnings

POLICIES = ("adaptive", "spin", "yield")

# What each policy asks of the OpenMP runtime when it loads (GNU libgomp reads
# GOMP_SPINCOUNT and OMP_WAIT_POLICY; LLVM libomp reads KMP_BLOCKTIME and
# OMP_WAIT_POLICY). 40000 spins are about 1 ms on this project's AMD EPYC (measured:
# the CPU time an idle worker burns after a region); the default, 300000, about 8 ms.
WAIT_ENV = {
    "adaptive": {"GOMP_SPINCOUNT": "40000", "KMP_BLOCKTIME": "1"},
    "spin": {"OMP_WAIT_POLICY": "active"},
    "yield": {"OMP_WAIT_POLICY": "passive"},
}
USER_WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")

_RUNTIME_RE = re.compile(r"/lib(?:g|i|i5)?omp[^/]*\.(?:so|dylib)[^/]*$")

policy = "adaptive"      # the decision policy in force (set_threading changes it)
adaptive = True          # policy == "adaptive", read on every update
_start = {}              # what happened when the runtime loaded (see configure/finish)


def _check(value, source):
    v = str(value).strip().lower()
    if v not in POLICIES:
        raise ValueError(f"{source} must be one of {', '.join(map(repr, POLICIES))}, "
                         f"got {value!r}")
    return v


def _mapped_runtimes():
    """Paths of the OpenMP runtimes mapped into this process (None: cannot tell)."""
    try:
        with open("/proc/self/maps") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    found = set()
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) == 6 and _RUNTIME_RE.search(parts[5]):
            found.add(parts[5].strip())
    return found


def configure():
    """Before the kernels are imported: choose the policy and set the runtime's wait
    environment for its loading. Returns what ``finish`` needs."""
    global policy, adaptive
    raw = os.environ.get("FASTOPTIM_THREADING", "").strip()
    chosen = "adaptive"
    if raw:
        try:
            chosen = _check(raw, "FASTOPTIM_THREADING")
        except ValueError as exc:
            warnings.warn(f"{exc}; using 'adaptive'", RuntimeWarning, stacklevel=3)
    policy, adaptive = chosen, chosen == "adaptive"
    user = {k: os.environ[k] for k in USER_WAIT_VARS if os.environ.get(k)}
    added = {}
    if not user:
        for k, v in WAIT_ENV[chosen].items():
            os.environ[k] = v
            added[k] = v
    _start.update(policy=chosen, user=user, added=added, before=_mapped_runtimes())


def finish():
    """After the kernels are imported: restore the environment, and record whether the
    wait setting reached the runtime."""
    for k in _start.get("added", {}):
        os.environ.pop(k, None)
    after = _mapped_runtimes()
    before = _start.get("before")
    if after is None or before is None:
        new, applied = None, None
    else:
        new = sorted(after - before)
        applied = bool(new)
    _start.update(runtimes=None if after is None else sorted(after), new=new,
                  applied=applied)


def wait_report(openmp):
    """(wait, applied, note) for get_config."""
    if not openmp:
        return "none (built without OpenMP)", None, ""
    user = _start.get("user") or {}
    if user:
        setting = " ".join(f"{k}={v}" for k, v in user.items())
        return f"{setting} (set by the user)", True, ""
    setting = " ".join(f"{k}={v}" for k, v in WAIT_ENV[_start["policy"]].items())
    applied = _start.get("applied")
    if applied:
        return setting, True, ""
    if applied is None:
        return setting, None, "cannot tell whether the OpenMP runtime read it"
    return (setting, False, "the OpenMP runtime was loaded before fastoptim ("
            + ", ".join(_start.get("runtimes") or []) + "): its own wait setting applies")


def set_threading(value):
    """Change the threading policy of later calls: ``"adaptive"``, ``"spin"`` or
    ``"yield"`` (see the module docstring). Returns the previous policy.

    Only the decision between one thread and all changes at run time; how idle OpenMP
    workers wait is read once, when the runtime loads: set ``FASTOPTIM_THREADING`` in
    the environment before importing fastoptim for that part
    (``get_config()["wait"]`` shows what is in force).
    """
    global policy, adaptive
    v = _check(value, "threading policy")
    old = policy
    policy, adaptive = v, v == "adaptive"
    return old
