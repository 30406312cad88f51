"""Fork safety: after the parent ran every threaded path (so the OpenMP team exists), a
child made by fork() -- directly, through multiprocessing's fork start method, and
through concurrent.futures.ProcessPoolExecutor -- runs update, clip_grad_norm and the
non-finite guard to completion, with the numbers the parent computes.

GNU libgomp's thread pool does not survive fork(): without the fork handler in the
kernels, the child's first parallel region waits forever. So the scenario runs in a
subprocess with a timeout: a regression fails this test instead of hanging the suite.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from fastoptim._dispatch import kernels as _kernels

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this OS")

SCRIPT = textwrap.dedent(r"""
    import concurrent.futures as cf
    import hashlib
    import multiprocessing as mp
    import os
    import pickle
    import sys
    import warnings

    import numpy as np

    import fastoptim as fo
    from fastoptim import functional as F
    from fastoptim._dispatch import kernels

    # Python >= 3.12 warns that forking a multi-threaded process may deadlock: that is
    # the very case under test.
    warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)

    N = 1 << 20        # far above every serial threshold
    T = 2              # an explicit team, even on a one-core machine

    def work(_=None):
        rng = np.random.default_rng(0)
        p = rng.standard_normal(N).astype(np.float32)
        g = rng.standard_normal(N).astype(np.float32)
        out = {"threads": kernels._effective_threads(N, T, True)}
        opt = fo.Adam(lr=1e-3, num_threads=T)             # update_many, parallel
        for _ in range(3):
            opt.update({"w": p}, {"w": g})
        opt_default = fo.AdamW(lr=1e-3)                    # the default policy
        q = p.copy()
        opt_default.update([q], [g])
        m, v = np.zeros_like(p), np.zeros_like(p)
        r = p.copy()
        F.adam(r, g, m, v, step=1, num_threads=T)          # the functional kernel
        c = g.copy()
        norm = fo.clip_grad_norm([c], 0.5, num_threads=T)  # the norm and the scaling
        bad = g.copy()
        bad[N // 2] = np.nan
        guard = fo.SGD(lr=0.1, num_threads=T, skip_nonfinite=True)
        s = p.copy()
        applied = guard.update([s], [bad])                 # the guard's parallel pass
        digest = hashlib.sha256()
        for a in (p, q, r, m, v, c, s):
            digest.update(a.tobytes())
        out.update(digest=digest.hexdigest(), norm=norm, applied=applied,
                   fork_child=fo.get_config()["fork_child"])
        return out

    parent = work()
    assert parent["threads"] == T, parent
    assert parent["fork_child"] is False and parent["applied"] is False, parent

    children = []
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        children += pool.map(work, range(2))
    with cf.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        children += list(ex.map(work, range(2)))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(w, pickle.dumps(work()))
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.waitpid(pid, 0)
    children.append(pickle.loads(data))

    for child in children:
        assert child["fork_child"] is True, child
        assert child["threads"] == 1, child     # a forked child runs on one thread
        for key in ("digest", "norm", "applied"):
            assert child[key] == parent[key], (key, child, parent)
    print("ok", len(children), "children")
""")


@pytest.mark.skipif(not _kernels.openmp_enabled(), reason="serial build: no OpenMP team")
def test_forked_children_finish_with_the_parents_numbers():
    try:
        out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True,
                             text=True, timeout=120)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"a forked child hung (no result in {exc.timeout} s): libgomp's "
                    "thread pool is not fork-safe and the kernels did not go serial")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == "ok 5 children", out.stdout + out.stderr


def test_the_parent_is_not_a_forked_child():
    import fastoptim as fo

    assert fo.get_config()["fork_child"] is False
    assert _kernels.fork_child() is False
