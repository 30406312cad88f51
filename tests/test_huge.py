"""Huge arrays (opt-in): a float32 SGD update over 2**31 + 17 elements -- more than a
32-bit index can count -- is correct at the start, around 2**31, at the end, and
everywhere in between.

It needs two 8.6 GB arrays (about 17.2 GB of RAM) and a minute or so, so it only runs
when asked for:

    FASTOPTIM_SLOW=1 pytest -m slow tests/test_huge.py
"""

import os
import time

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import functional as F
from fastoptim import reference

N = 2**31 + 17
NEED = 2 * N * 4 + 2**30  # both arrays plus 1 GB for the checks and the interpreter
# marker positions: both ends, both sides of 2**31 (and of 2**31 - 1, the last index a
# signed 32-bit integer holds), and around the thread split of 2 and 3 threads
MARKS = sorted({0, 1, 2, N // 3, N // 2 - 1, N // 2, N // 2 + 1, 2**31 - 2, 2**31 - 1,
                2**31, 2**31 + 1, 2 * N // 3, N - 2, N - 1})


def mem_available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("FASTOPTIM_SLOW") != "1",
                       reason="opt-in: needs ~18 GB of RAM and about a minute; run with "
                              "FASTOPTIM_SLOW=1 pytest -m slow tests/test_huge.py"),
]


def count_other_than(a, value, chunk=2**27):
    """Elements of a 1-D array that differ from value (in chunks: no 8 GB temporary)."""
    return sum(int(np.count_nonzero(a[i:i + chunk] != value))
               for i in range(0, a.size, chunk))


def test_sgd_over_more_than_2_to_the_31_elements():
    avail = mem_available()
    if avail is not None and avail < NEED:
        pytest.skip(f"needs {NEED / 2**30:.1f} GiB of available RAM, "
                    f"{avail / 2**30:.1f} GiB available")
    marks = np.array(MARKS, dtype=np.int64)
    p = np.full(N, 1.0, dtype=np.float32)
    g = np.full(N, 0.5, dtype=np.float32)
    # distinct values at the markers, so that an element updated from the wrong place
    # (a wrapped or truncated index) or not at all shows
    p[marks] = np.arange(2, 2 + marks.size, dtype=np.float32) * np.float32(1.5)
    g[marks] = -np.arange(1, 1 + marks.size, dtype=np.float32) / np.float32(8)
    expected_marks = p[marks].copy()
    expected_rest = np.float32(1.0)
    lr = 0.5

    steps = [
        ("class, one thread", lambda: fo.SGD(lr=lr, num_threads=1).update(p, g)),
        ("class, all threads", lambda: fo.SGD(lr=lr).update(p, g)),
        ("functional, 3 threads", lambda: F.sgd(p, g, lr=lr, num_threads=3)),
    ]
    for name, step in steps:
        t0 = time.perf_counter()
        step()
        print(f"{name}: {time.perf_counter() - t0:.2f} s")  # information (pytest -s)
        # the same step on the markers and on one ordinary element, by the reference
        reference.sgd(expected_marks, g[marks].copy(), lr=lr, weight_decay=0.0)
        rest = np.array([expected_rest], dtype=np.float32)
        reference.sgd(rest, np.array([0.5], np.float32), lr=lr, weight_decay=0.0)
        expected_rest = rest[0]
        assert np.array_equal(p[marks], expected_marks), name
        assert p[N - 1] == expected_marks[-1] and p[2**31] == expected_marks[
            MARKS.index(2**31)], name
        # every other element: the ordinary value (markers are the only exceptions)
        others = count_other_than(p, expected_rest)
        assert others == np.count_nonzero(expected_marks != expected_rest), name
    assert expected_rest == np.float32(0.25)  # 1 - 3 * 0.5 * 0.5
