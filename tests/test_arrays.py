"""In-place semantics, odd sizes, non-finite values, threads and build facts."""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastoptim as fo
from fastoptim._dispatch import kernels as _kernels

from conftest import DTYPES, HYPER, OPTIMIZERS, assert_same


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_caller_array_and_its_base_are_updated(cls):
    base = np.zeros((6, 5))
    rows = base[2:4]  # a C-contiguous view into a larger array
    assert rows.base is base and rows.flags.c_contiguous
    fcol = np.zeros((5, 6), order="F")[:, 1:3]  # an F-contiguous view
    assert fcol.flags.f_contiguous and not fcol.flags.c_contiguous
    params = {"rows": rows, "fcol": fcol}
    ids = {k: id(v) for k, v in params.items()}
    cls(lr=0.5).update(params, {"rows": np.ones((2, 5)), "fcol": np.ones((5, 2))})
    assert {k: id(v) for k, v in params.items()} == ids  # same objects, not replaced
    assert np.all(base[2:4] < 0) and np.all(base[:2] == 0) and np.all(base[4:] == 0)
    assert np.all(fcol < 0) and np.all(fcol.base[:, 0] == 0) and np.all(fcol.base[:, 3:] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_zero_d_and_empty(cls, dtype):
    s = np.array(1.0, dtype=dtype)
    e = np.zeros((0, 4), dtype=dtype)
    # a 0-d gradient may also come as a NumPy scalar, as np.sum returns
    cls(lr=0.5).update([s, e], [dtype(0.5), np.zeros((0, 4), dtype=dtype)])
    assert s.shape == () and s < 1.0
    assert e.shape == (0, 4)


def test_subclass_parameter_is_updated_in_place():
    class Tagged(np.ndarray):
        pass

    p = np.ones(4).view(Tagged)
    fo.SGD(lr=0.5).update([p], [np.ones(4)])
    assert type(p) is Tagged and np.all(p == 0.5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_non_finite_gradient_flows_like_the_reference(cls, bad):
    """NaN/Inf in one element of one gradient: no crash, no error; the result is the
    reference's (IEEE arithmetic, as in torch.optim), other parameters untouched by it."""
    rng = np.random.default_rng(0)
    p = {"a": rng.standard_normal(50), "b": rng.standard_normal(50)}
    q = {k: v.copy() for k, v in p.items()}
    ga = rng.standard_normal(50)
    ga[17] = bad
    g = {"a": ga, "b": rng.standard_normal(50)}
    oa, ob = cls(**HYPER[cls]), cls(**HYPER[cls], backend="numpy")
    with np.errstate(all="ignore"):
        oa.update(p, g)
        ob.update(q, g)
    for k in p:
        assert_same(p[k], q[k])
    if cls.rule.trust_ratio:
        # LAMB: the array's norm ||u|| is NaN, so is its trust ratio: every element of
        # that array (as torch's LAMBs), and no other array
        assert not np.isfinite(p["a"]).any() and np.all(np.isfinite(p["b"]))
        return
    if cls is fo.Lion and np.isinf(bad):
        # Lion steps by sign(c) = +-1 for an infinite c: an ordinary step for the
        # parameter, the infinity kept in the momentum
        assert not np.isfinite(oa.state["a"]["exp_avg"][17])
    else:
        assert not np.isfinite(p["a"][17])
    assert np.all(np.isfinite(p["a"][:17])) and np.all(np.isfinite(p["b"]))


def test_gradient_aliasing_its_parameter_uses_the_values_given():
    """A gradient that is its own parameter is read as it was at the call (both paths)."""
    for backend in ("compiled", "numpy"):
        p = np.linspace(-1, 1, 9)
        expected = p.copy()
        fo.Adam(lr=0.1, backend=backend).update([expected], [p.copy()])
        fo.Adam(lr=0.1, backend=backend).update([p], [p])
        assert_same(p, expected)


# -- threads ----------------------------------------------------------------------------

def test_config_reports_build_and_threads():
    cfg = fo.get_config()
    assert cfg["version"] == fo.__version__
    assert isinstance(cfg["openmp"], bool)
    assert cfg["threads"] == _kernels.max_threads() >= 1
    assert set(cfg["parallel_thresholds"]) == {"light", "heavy"}
    assert "-ffp-contract=off" in cfg["flags"] or cfg["compiler"] == "msvc"
    assert "-ffast-math" not in cfg["flags"]


def test_show_config_prints(capsys):
    fo.show_config()
    out = capsys.readouterr().out
    assert "openmp" in out and fo.__version__ in out


@pytest.mark.skipif(not _kernels.openmp_enabled(), reason="serial build: no OpenMP")
def test_omp_num_threads_is_honoured():
    """OMP_NUM_THREADS (read by OpenMP at start-up) sets what num_threads=None uses."""
    code = "import fastoptim; print(fastoptim.get_config()['threads'])"
    for n in ("1", "3"):
        env = {**os.environ, "OMP_NUM_THREADS": n}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True)
        assert out.stdout.strip() == n


@pytest.mark.skipif(not _kernels.openmp_enabled(), reason="serial build: no OpenMP")
def test_thread_choice():
    """Below the threshold one thread; above it the request (or OpenMP's maximum for
    None), but never less than threshold/2 elements per thread."""
    th = _kernels.get_parallel_thresholds()
    light, heavy = th["light"], th["heavy"]
    eff = _kernels._effective_threads
    assert eff(light - 1, 4, False) == 1
    assert eff(light, 4, False) == 2  # two chunks of light/2
    assert eff(2 * light, 4, False) == 4
    assert eff(100 * light, 1, False) == 1
    assert eff(100 * light, 0, False) == _kernels.max_threads()
    assert eff(heavy - 1, 4, True) == 1
    assert eff(2 * heavy, 4, True) == 4


def test_threshold_setter_validates():
    with pytest.raises(ValueError):
        _kernels.set_parallel_thresholds(light=-1)
    old = _kernels.set_parallel_thresholds(light=5)
    try:
        assert _kernels.get_parallel_thresholds()["light"] == 5
    finally:
        _kernels.set_parallel_thresholds(**old)
    assert _kernels.get_parallel_thresholds() == old


def test_masked_arrays_are_refused_every_time():
    """Masked arrays are refused (parameter or gradient), also once state exists (the
    C fast path takes exact ndarrays only; subclasses go through the Python checks)."""
    p = np.ones(3)
    opt = fo.Adam()
    opt.update({"w": p}, {"w": np.ones(3)})
    before = p.copy()
    with pytest.raises(TypeError, match="gradient 'w' is a masked array"):
        opt.update({"w": p}, {"w": np.ma.array(np.ones(3), mask=[0, 1, 0])})
    with pytest.raises(TypeError, match="parameter 'w' is a masked array"):
        opt.update({"w": np.ma.array(p, mask=[0, 1, 0])}, {"w": np.ones(3)})
    assert_same(p, before)
    assert opt.state["w"]["step"] == 1


def test_memmap_parameter_is_updated_in_place(tmp_path):
    m = np.memmap(tmp_path / "w.dat", dtype=np.float32, mode="w+", shape=(2, 3))
    m[:] = 1.0
    opt = fo.SGD(lr=0.5)
    for _ in range(2):  # the second call has state: still the memmap's own memory
        opt.update({"w": m}, {"w": np.ones((2, 3), np.float32)})
    m.flush()
    assert np.all(np.fromfile(tmp_path / "w.dat", dtype=np.float32) == 0.0)
