"""clip_grad_norm: the compiled norm and scaling against the NumPy reference, bit for bit,
for any thread count; the clipping rule; what is refused."""

import math

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import _clip
from fastoptim.clip import CHUNK, LANES, NORM_EPS, sum_of_squares_reference

DTYPES = [np.float32, np.float64]
THREADS = [1, 2, 3]
# Sizes around the lane and chunk boundaries, and several chunks with a tail.
SIZES = [0, 1, LANES - 1, LANES, LANES + 1, CHUNK - 1, CHUNK, CHUNK + 1,
         3 * CHUNK + 5, 50_001]


@pytest.fixture
def all_parallel():
    """Send every size through the parallel region (normally only large inputs go)."""
    old = _clip.set_parallel_threshold(0)
    yield
    _clip.set_parallel_threshold(old)


def spread(rng, n, dtype):
    """Values over 16 orders of magnitude: any change of summation order shows."""
    return (rng.standard_normal(n) * 10.0 ** rng.uniform(-8, 8, n)).astype(dtype)


def sequential_by_definition(flats):
    """The documented order, as plain Python loops over float64 values."""
    x = [float(v) for f in flats for v in np.asarray(f).reshape(-1)]
    total = 0.0
    for start in range(0, len(x), CHUNK):
        lanes = [0.0] * LANES
        for i, v in enumerate(x[start:start + CHUNK]):
            lanes[i % LANES] += v * v
        chunk = 0.0
        for s in lanes:
            chunk += s
        total += chunk
    return total


def test_kernel_constants_match_the_reference():
    assert (_clip.CHUNK, _clip.LANES) == (CHUNK, LANES)
    assert CHUNK % LANES == 0


def test_reference_follows_its_documented_order():
    rng = np.random.default_rng(0)
    flats = [spread(rng, 2 * CHUNK + 37, np.float64), spread(rng, 11, np.float32),
             np.zeros(0, np.float32), spread(rng, CHUNK - 3, np.float32)]
    assert sum_of_squares_reference(flats) == sequential_by_definition(flats)


def test_the_data_is_order_sensitive():
    # Guards the tests below: with this data another order (NumPy's pairwise sum) does
    # give another result, so bit equality really checks the order.
    rng = np.random.default_rng(1)
    x = spread(rng, 50_001, np.float64)
    assert float(np.sum(x * x)) != sum_of_squares_reference([x])


@pytest.mark.usefixtures("all_parallel")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("num_threads", THREADS)
def test_sum_of_squares_bit_identical_to_reference(n, dtype, num_threads):
    rng = np.random.default_rng(n)
    x = spread(rng, n, dtype)
    assert _clip.sum_of_squares([x], num_threads=num_threads) == sum_of_squares_reference([x])


@pytest.mark.usefixtures("all_parallel")
@pytest.mark.parametrize("num_threads", THREADS)
def test_many_arrays_mixed_sizes_and_dtypes(num_threads):
    rng = np.random.default_rng(2)
    sizes = [5, 0, CHUNK + 3, 1, 0, 3 * CHUNK - 1, 17, 9000, 0]
    for dtypes in ([np.float32] * len(sizes), [np.float64] * len(sizes),
                   [(np.float32, np.float64)[i % 2] for i in range(len(sizes))]):
        flats = [spread(rng, n, dt) for n, dt in zip(sizes, dtypes)]
        ref = sum_of_squares_reference(flats)
        assert _clip.sum_of_squares(flats, num_threads=num_threads) == ref
        assert _clip.sum_of_squares(flats, num_threads=1) == ref


@pytest.mark.parametrize("dtype", DTYPES)
def test_chunks_run_across_array_boundaries(dtype):
    # The order is that of the concatenation, so any split of the same elements into
    # arrays gives the same sum, bit for bit.
    rng = np.random.default_rng(3)
    x = spread(rng, 3 * CHUNK + 100, dtype)
    whole = _clip.sum_of_squares([x])
    for cuts in ([1], [LANES + 3, CHUNK + 1], [7, 7, 2 * CHUNK - 5], [0, 0, len(x)]):
        parts = np.split(x, cuts)
        assert _clip.sum_of_squares(parts) == whole
        assert sum_of_squares_reference(parts) == whole


def test_default_threshold_parallel_path_large_input():
    rng = np.random.default_rng(4)
    x = spread(rng, 300_000, np.float32)
    assert _clip.get_parallel_threshold() <= x.size
    ref = sum_of_squares_reference([x])
    for nt in (None, 1, 2, 3):
        g = x.copy()
        norm = fo.clip_grad_norm([g], math.inf, num_threads=nt)
        assert norm == math.sqrt(ref)


def test_small_inputs_run_serially():
    assert _clip._effective_threads(100, 4) == 1
    assert _clip._effective_threads(_clip.get_parallel_threshold() - 1, 4) == 1
    if _clip.openmp_enabled():
        assert _clip._effective_threads(100 * CHUNK, 2) == 2
        # never more threads than half the chunks
        n = max(_clip.get_parallel_threshold(), 9 * CHUNK)
        assert _clip._effective_threads(n, 1000) == (-(-n // CHUNK)) // 2


def test_empty_and_zero_gradients():
    assert fo.clip_grad_norm([], 1.0) == 0.0
    assert fo.clip_grad_norm({"a": np.zeros(0), "b": np.zeros((0, 3), np.float32)}, 1.0) == 0.0
    z = np.zeros(10)
    assert fo.clip_grad_norm(z, 0.0) == 0.0
    assert np.array_equal(z, np.zeros(10)) and not np.signbit(z).any()


# ---------------------------------------------------------------------------------------
# The clipping rule
# ---------------------------------------------------------------------------------------

def make_grads(rng, dtype, scale=10.0):
    return {"W1": (rng.standard_normal((64, 100)) * scale).astype(dtype),
            "b1": (rng.standard_normal(100) * scale).astype(dtype),
            "W2": np.asfortranarray(rng.standard_normal((100, 10)) * scale).astype(dtype),
            "b2": (rng.standard_normal(10) * scale).astype(dtype),
            "s": np.asarray(scale, dtype=dtype)}   # 0-d


@pytest.mark.usefixtures("all_parallel")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_threads", THREADS)
def test_clip_scales_like_the_rule_and_the_reference(dtype, num_threads):
    rng = np.random.default_rng(5)
    grads = make_grads(rng, dtype)
    before = {k: v.copy(order="K") for k, v in grads.items()}
    ref_grads = {k: v.copy(order="K") for k, v in grads.items()}
    max_norm = 3.0

    norm = fo.clip_grad_norm(grads, max_norm, num_threads=num_threads)
    ref_norm = fo.clip_grad_norm_reference(ref_grads, max_norm)

    assert norm == ref_norm
    exact = math.sqrt(sum(float(np.sum(v.astype(np.float64) ** 2)) for v in before.values()))
    assert norm == pytest.approx(exact, rel=1e-12)
    factor = max_norm / (norm + NORM_EPS)
    assert factor < 1
    for k in grads:
        assert grads[k].dtype == dtype
        assert grads[k].flags.f_contiguous == before[k].flags.f_contiguous
        assert np.array_equal(grads[k], ref_grads[k])
        assert np.array_equal(grads[k], before[k] * np.dtype(dtype).type(factor))
    new_norm = math.sqrt(sum(float(np.sum(v.astype(np.float64) ** 2)) for v in grads.values()))
    assert new_norm == pytest.approx(max_norm, rel=1e-5)


def test_mixed_dtypes_scale_each_in_its_own_dtype():
    rng = np.random.default_rng(6)
    a = rng.standard_normal(1000).astype(np.float32) * 5
    b = rng.standard_normal(999) * 5
    a0, b0 = a.copy(), b.copy()
    norm = fo.clip_grad_norm([a, b], 1.0)
    assert norm == math.sqrt(sum_of_squares_reference([a0, b0]))
    f = 1.0 / (norm + NORM_EPS)
    assert a.dtype == np.float32 and b.dtype == np.float64
    assert np.array_equal(a, a0 * np.float32(f)) and np.array_equal(b, b0 * f)


@pytest.mark.parametrize("backend", ["compiled", "numpy"])
def test_no_scaling_below_max_norm(backend):
    g = np.array([3.0, 4.0])                          # norm 5
    assert fo.clip_grad_norm(g, 5.0 + 2e-6, backend=backend) == 5.0
    assert np.array_equal(g, [3.0, 4.0])              # factor >= 1: untouched
    g = np.array([3.0, 4.0])
    fo.clip_grad_norm(g, 5.0 + 1e-6, backend=backend)
    assert np.array_equal(g, [3.0, 4.0])              # factor == 1: untouched
    g = np.array([3.0, 4.0])
    assert fo.clip_grad_norm(g, math.inf, backend=backend) == 5.0
    assert np.array_equal(g, [3.0, 4.0])


def test_scaled_when_norm_equals_max_norm():
    g = np.array([3.0, 4.0])
    fo.clip_grad_norm(g, 5.0)                         # 5 / (5 + 1e-6) < 1
    f = 5.0 / (5.0 + NORM_EPS)
    assert np.array_equal(g, np.array([3.0, 4.0]) * f)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_raises_and_leaves_everything(dtype, bad):
    a = np.ones(100, dtype=dtype)
    b = np.full(50, 2.0, dtype=dtype)
    b[7] = bad
    a0, b0 = a.copy(), b.copy()
    for backend in ("compiled", "numpy"):
        with pytest.raises(FloatingPointError, match="no gradient was changed"):
            fo.clip_grad_norm([a, b], 1.0, error_if_nonfinite=True, backend=backend)
        assert np.array_equal(a, a0) and np.array_equal(b, b0, equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nonfinite_without_raise_follows_the_rule(dtype):
    # NaN norm: the factor is NaN, not < 1, nothing is scaled.
    a = np.ones(10, dtype=dtype)
    a[3] = np.nan
    a0 = a.copy()
    assert math.isnan(fo.clip_grad_norm(a, 1.0))
    assert np.array_equal(a, a0, equal_nan=True)
    # Inf norm: factor 0, finite entries become 0, infinite ones NaN (as in PyTorch).
    for backend in ("compiled", "numpy"):
        b = np.arange(10, dtype=dtype)
        b[2] = np.inf
        assert fo.clip_grad_norm(b, 1.0, backend=backend) == math.inf
        expected = np.arange(10, dtype=dtype) * dtype(0.0)
        expected[2] = np.nan
        assert np.array_equal(b, expected, equal_nan=True)


def test_float32_squares_do_not_overflow():
    g = np.full(4, 3e38, dtype=np.float32)   # g*g overflows float32, not float64
    norm = fo.clip_grad_norm(g, 1.0)
    assert norm == pytest.approx(6e38, rel=1e-6)
    assert np.all(np.isfinite(g)) and np.allclose(g, 0.5, rtol=1e-6)


@pytest.mark.parametrize("kind", ["dict", "list", "tuple", "array"])
def test_input_kinds(kind):
    rng = np.random.default_rng(7)
    arrs = [rng.standard_normal(30) * 3, rng.standard_normal((4, 5)) * 3]
    if kind == "array":
        arrs = arrs[:1]
    ref = [a.copy() for a in arrs]
    wrap = {"dict": lambda xs: {f"g{i}": x for i, x in enumerate(xs)}, "list": list,
            "tuple": tuple, "array": lambda xs: xs[0]}[kind]
    n1 = fo.clip_grad_norm(wrap(arrs), 1.0)
    n2 = fo.clip_grad_norm_reference(wrap(ref), 1.0)
    assert n1 == n2
    for a, r in zip(arrs, ref):
        assert np.array_equal(a, r)


def test_views_into_a_larger_array_are_scaled_in_place():
    buf = np.arange(1.0, 21.0)
    g = buf[5:15]                       # contiguous view
    fo.clip_grad_norm([g], 1.0)
    assert np.all(buf[:5] == np.arange(1.0, 6.0)) and np.all(buf[15:] == np.arange(16.0, 21.0))
    assert np.linalg.norm(buf[5:15]) == pytest.approx(1.0, rel=1e-5)


# ---------------------------------------------------------------------------------------
# Refused inputs: nothing is written
# ---------------------------------------------------------------------------------------

def _readonly():
    a = np.ones(4)
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("bad, exc, match", [
    (np.ones((4, 4))[:, ::2], TypeError, "not contiguous.*will not scale a copy"),
    (_readonly(), ValueError, "read-only"),
    (np.ones(4, dtype=np.int64), TypeError, "dtype int64"),
    (np.ones(4, dtype=np.float16), TypeError, "dtype float16"),
    (np.ones(4, dtype=">f8"), TypeError, "dtype >f8"),
    ([1.0, 2.0], TypeError, "must be a NumPy array"),
])
def test_refused_gradients_leave_all_unchanged(bad, exc, match):
    good = np.full(10, 5.0)
    for backend in ("compiled", "numpy"):
        with pytest.raises(exc, match=match):
            fo.clip_grad_norm({"good": good, "bad": bad}, 1.0, backend=backend)
        assert np.array_equal(good, np.full(10, 5.0))


def test_shared_memory_refused():
    a = np.ones(10)
    with pytest.raises(ValueError, match="share memory"):
        fo.clip_grad_norm([a, a], 1.0)
    buf = np.ones(20)
    with pytest.raises(ValueError, match="gradients 0 and 1 share memory"):
        fo.clip_grad_norm([buf[:12], buf[8:]], 1.0)
    assert np.array_equal(buf, np.ones(20))
    fo.clip_grad_norm([buf[:10], buf[10:]], 1.0)   # adjacent, not overlapping: fine


@pytest.mark.parametrize("max_norm, exc", [(-1.0, ValueError), (math.nan, ValueError),
                                           (True, TypeError), ("1", TypeError),
                                           (None, TypeError)])
def test_bad_max_norm(max_norm, exc):
    with pytest.raises(exc, match="max_norm"):
        fo.clip_grad_norm([np.ones(3)], max_norm)


def test_bad_arguments():
    with pytest.raises(ValueError, match="backend"):
        fo.clip_grad_norm([np.ones(3)], 1.0, backend="torch")
    with pytest.raises(ValueError, match="num_threads"):
        fo.clip_grad_norm([np.ones(3)], 1.0, num_threads=0)
    with pytest.raises(TypeError, match="grads must be"):
        fo.clip_grad_norm("abc", 1.0)
    with pytest.raises(TypeError, match="grads must be"):
        fo.clip_grad_norm(3.0, 1.0)


def test_masked_and_unaligned_gradients_are_refused():
    ok = np.ones(4)
    unaligned = np.frombuffer(bytearray(8 * 4 + 1), dtype=np.float64, offset=1, count=4)
    assert not unaligned.flags.aligned
    for bad, match in [(np.ma.array(np.ones(4), mask=[0, 1, 0, 0]), "masked array"),
                       (unaligned, "not aligned")]:
        before = ok.copy()
        with pytest.raises(TypeError, match=match):
            fo.clip_grad_norm([ok, bad], max_norm=0.1)
        assert np.array_equal(ok, before)
