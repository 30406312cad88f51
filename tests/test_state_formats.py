"""State formats (``state_dtype``, fastoptim.formats, docs/state.rst): bfloat16 state.

The compiled engine's bfloat16 path (kernels/_body.pxi, ``_bf16_range``) against the
reference (``reference.with_bfloat16_state``: the rule on the float32 widening, then
ml_dtypes' rounding), bit for bit, for every rule that has the option; its rounding
against ml_dtypes' cast on special values; memory, checkpoints, conversions and errors.
"""

import os

import ml_dtypes
import numpy as np
import pytest

import fastoptim as fo
from fastoptim import _engine, formats, reference, rules

BF16 = np.dtype(ml_dtypes.bfloat16)
CLASSES = [getattr(fo, r.class_name) for r in rules.RULES if "state_dtype" in r.hyper_names]
# options that change a rule's row (variants) or add a buffer, per class
OPTIONS = {"Adam": [{}, {"amsgrad": True}, {"ema": 0.9}], "AdamW": [{"amsgrad": True}],
           "RMSprop": [{"centered": True, "momentum": 0.9}, {"momentum": 0.5}],
           "AdaGrad": [{"initial_accumulator_value": 0.1}], "Momentum": [{"dampening": 0.5}]}


def bits(a):
    a = np.asarray(a)
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(bits(a), bits(b))


def model(rng, order="C"):
    return {"W": np.array(rng.standard_normal((37, 41)), dtype=np.float32, order=order),
            "b": rng.standard_normal(513).astype(np.float32),
            "s": np.array(rng.standard_normal(()), dtype=np.float32)}


def grads_like(rng, params, specials=False):
    out = {k: rng.standard_normal(p.shape).astype(np.float32) for k, p in params.items()}
    if specials:
        w = out["W"].reshape(-1)
        w[::97] = np.nan
        w[5::89] = np.inf
        w[7::83] = np.float32(1e-41)  # subnormal
    return out


def test_every_rule_but_lamb_has_the_option():
    names = {r.class_name for r in rules.RULES if "state_dtype" not in r.hyper_names}
    assert names == {"LAMB"}
    with pytest.raises(TypeError, match="LAMB.. has no state_dtype option yet"):
        fo.LAMB(state_dtype="bfloat16")


def run_both_backends(cls, extra, state_dtype, make_model, seed):
    """Four steps (the third with NaN, Inf and subnormal gradients) of ``cls`` with
    ``state_dtype`` on the compiled engine and on the reference: every parameter and
    every state array after each step the same bits. Returns the compiled optimizer."""
    rng = np.random.default_rng(seed)
    p_fast = make_model(rng, "F")
    p_ref = {k: v.copy(order="K") for k, v in p_fast.items()}
    fast = cls(state_dtype=state_dtype, num_threads=2, **extra)
    ref = cls(state_dtype=state_dtype, backend="numpy", **extra)
    for step in range(4):
        g = grads_like(rng, p_fast, specials=step == 2)
        with np.errstate(all="ignore"):
            assert fast.update(p_fast, g) and ref.update(p_ref, g)
        for k in p_fast:
            assert same_bits(p_fast[k], p_ref[k]), (cls.__name__, extra, k, step)
            assert fast.state[k].keys() == ref.state[k].keys()
            for n, a in fast.state[k].items():
                if n != "step":
                    assert same_bits(a, ref.state[k][n]), (cls.__name__, extra, k, n, step)
    return fast


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_compiled_equals_reference_bit_for_bit(cls):
    for extra in OPTIONS.get(cls.__name__, [{}]):
        fast = run_both_backends(cls, extra, "bfloat16", model, 1)
        for k in fast.state:
            for n in fast.rule.state:
                assert fast.state[k][n].dtype == (np.float32 if n == "ema" else BF16), n


def by_thread_count(n, state_dtype, names):
    """Three Adam steps over n elements with 1, 2 and 3 threads (no serial threshold):
    per thread count, the parameter and the state arrays ``names``."""
    rng = np.random.default_rng(n)
    p0 = rng.standard_normal(n).astype(np.float32)
    gs = [rng.standard_normal(n).astype(np.float32) for _ in range(3)]
    outs = []
    old = fo._dispatch.kernels.set_parallel_thresholds(light=0, heavy=0)
    try:
        for nt in (1, 2, 3):
            p = p0.copy()
            opt = fo.Adam(state_dtype=state_dtype, num_threads=nt)
            for g in gs:
                opt.update([p], [g])
            outs.append((p, *(opt.state[0][k] for k in names)))
    finally:
        fo._dispatch.kernels.set_parallel_thresholds(**old)
    return outs


@pytest.mark.parametrize("n", [1, 511, 512, 513, 3 * 512 + 7, 40_000])
def test_threads_and_block_edges_change_no_bit(n):
    """Any thread count splits the elements anywhere, not at block edges: each element
    is the rule on its own values, so the result is the same."""
    outs = by_thread_count(n, "bfloat16", ("exp_avg", "exp_avg_sq"))
    for other in outs[1:]:
        assert all(same_bits(a, b) for a, b in zip(outs[0], other))


def test_rounding_is_ml_dtypes_cast_on_special_values():
    """Momentum(lr=1, momentum=0) stores v = 0*v + 1*g (g itself, but -0.0 becomes
    +0.0) in float32, rounded: the stored bits are ml_dtypes' cast of it (ties to even,
    NaN payloads, overflow, subnormals)."""
    f32 = np.float32
    special = [1.0, 1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 3.3895314e38, 3.4e38, -3.4e38,
               np.inf, -np.inf, 1e-40, -1e-40, 1e-45, 0.0, -0.0, 65504.0, 2.0**-126]
    payloads = np.array([0x7F800001, 0xFF800001, 0x7FA00000, 0x7FFFFFFF, 0x7FC00000,
                         0xFFFFFFFF], np.uint32).view(f32)
    rng = np.random.default_rng(0)
    g = np.concatenate([np.array(special, f32), payloads,
                        rng.standard_normal(5000).astype(f32) * f32(1e3)])
    p = np.zeros_like(g)
    opt = fo.Momentum(lr=1.0, momentum=0.0, state_dtype="bfloat16")
    opt.update([p], [g])
    with np.errstate(invalid="ignore", over="ignore"):
        want = (f32(0.0) * np.zeros_like(g) + f32(1.0) * g).astype(BF16)
    assert same_bits(opt.state[0]["velocity"], want)
    # the hand-derived ones: a tie goes to the even mantissa, a NaN keeps only its sign
    v = bits(opt.state[0]["velocity"])
    assert list(v[:4]) == [0x3F80, 0x3F80, 0x3F82, 0xBF80]
    assert v[5] == 0x7F80 and v[6] == 0xFF80  # past the largest bfloat16: Inf
    assert list(v[len(special):len(special) + 6]) == [0x7FC0, 0xFFC0, 0x7FC0, 0x7FC0,
                                                      0x7FC0, 0xFFC0]
    assert v[9] == 0x0001 and v[11] == 0x0000  # 1e-40: a subnormal bfloat16; 1e-45: 0
    assert v[12] == 0x0000 and v[13] == 0x0000  # -0.0 + 0.0 is +0.0


def test_the_fast_path_takes_bfloat16_calls(monkeypatch):
    """After the first update made the state, every call is one compiled pass (the
    Python path, which would be slower but give the same bits, is never entered)."""
    rng = np.random.default_rng(3)
    params = model(rng)
    opt = fo.Adam(state_dtype="bfloat16", ema=0.99)
    opt.update(params, grads_like(rng, params))

    def refuse(*args, **kwargs):
        raise AssertionError("the fast path refused a bfloat16 call")
    monkeypatch.setattr(_engine, "finish", refuse)
    for _ in range(3):
        opt.update(params, grads_like(rng, params))


def test_memory_is_reported_and_halved():
    rng = np.random.default_rng(4)
    params = model(rng)
    n = sum(p.size for p in params.values())
    for dtype, per in ((None, 8.0), ("bfloat16", 4.0)):
        opt = fo.Adam(state_dtype=dtype)
        assert opt.state_nbytes == 0 and opt.state_nbytes_per_param == 0.0
        opt.update(params, grads_like(rng, params))
        assert opt.state_nbytes == per * n
        assert opt.state_nbytes_per_param == per
    opt = fo.Adam(state_dtype="bfloat16", ema=0.9)  # the average stays float32
    opt.update(params, grads_like(rng, params))
    assert opt.state_nbytes_per_param == 2 + 2 + 4
    sgd = fo.SGD(state_dtype="bfloat16")
    sgd.update(params, grads_like(rng, params))
    assert sgd.state_nbytes == 0 and sgd.state_nbytes_per_param == 0.0


def test_bfloat16_state_bytes_moved():
    adam = rules.get("adam")
    assert adam.state_bytes(4) == 28 and adam.state_bytes(4, 2) == 20
    assert adam.with_ema().state_bytes(4, 2) == 28  # + the float32 average, read and written


def test_float64_parameters_are_refused_before_anything_is_written():
    rng = np.random.default_rng(5)
    a = rng.standard_normal(10).astype(np.float32)
    b = rng.standard_normal(10)
    before = a.copy(), b.copy()
    opt = fo.Adam(state_dtype="bfloat16")
    with pytest.raises(ValueError, match=r"parameter 1 is float64, and "
                                         r"state_dtype='bfloat16' keeps the state of "
                                         r"float32 parameters: train in float32"):
        opt.update([a, b], [np.ones(10, np.float32), np.ones(10)])
    assert same_bits(a, before[0]) and same_bits(b, before[1]) and not opt.state


def test_format_is_fixed_while_the_optimizer_holds_state():
    opt = fo.Adam()
    opt.state_dtype = "bfloat16"  # no state yet: fine
    opt.state_dtype = ml_dtypes.bfloat16  # the dtype names it too
    assert opt.state_dtype == "bfloat16"
    p = np.zeros(3, np.float32)
    opt.update([p], [np.ones(3, np.float32)])
    with pytest.raises(ValueError, match="changes the format of Adam's state buffers"):
        opt.state_dtype = None
    assert opt.state_dtype == "bfloat16" and opt.state[0]["exp_avg"].dtype == BF16
    for bad in ("float32", "float16", "int4", 3):
        with pytest.raises(ValueError, match="Invalid state_dtype"):
            fo.Adam(state_dtype=bad)


def test_groups_share_the_optimizers_format():
    w = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"groups\[0\] sets state_dtype='bfloat16': "
                                         r"every group keeps its state in the optimizer"):
        fo.Adam(groups=[{"params": [w], "state_dtype": "bfloat16"}])
    opt = fo.Adam(state_dtype="bfloat16", groups=[{"params": [w], "lr": 0.1}])
    w2 = w.copy()
    ref = fo.Adam(state_dtype="bfloat16", groups=[{"params": [w2], "lr": 0.1}],
                  backend="numpy")
    opt.update([w], [np.ones(3, np.float32)])
    ref.update([w2], [np.ones(3, np.float32)])
    assert same_bits(w, w2) and opt.state[0]["exp_avg"].dtype == BF16


def test_state_dict_round_trip_and_conversion():
    rng = np.random.default_rng(6)
    params = model(rng)
    opt = fo.Adam(state_dtype="bfloat16")
    for _ in range(2):
        opt.update(params, grads_like(rng, params))
    sd = opt.state_dict()
    assert sd["hyperparams"]["state_dtype"] == "bfloat16"
    assert sd["state"]["W"]["exp_avg"].dtype == BF16
    again = fo.Adam()
    again.load_state_dict(sd)
    assert again.state_dtype == "bfloat16"
    # to float32 state: widened exactly
    wide = {**sd, "hyperparams": {**sd["hyperparams"], "state_dtype": None}}
    f32 = fo.Adam()
    f32.load_state_dict(wide)
    assert f32.state["W"]["exp_avg"].dtype == np.float32
    assert same_bits(f32.state["W"]["exp_avg"].astype(BF16), sd["state"]["W"]["exp_avg"])
    # and back: float32 state rounded as every step rounds it
    back = fo.Adam()
    back.load_state_dict({**f32.state_dict(), "hyperparams": sd["hyperparams"]})
    assert same_bits(back.state["W"]["exp_avg"], sd["state"]["W"]["exp_avg"])
    fresh = fo.Adam(lr=0.1)
    fresh.update(params, grads_like(rng, params))
    rounded = fo.Adam()
    rounded.load_state_dict({**fresh.state_dict(),
                             "hyperparams": {**fresh.hyperparams, "state_dtype": "bfloat16"}})
    out = np.empty(params["W"].shape, BF16)
    reference.to_bfloat16(fresh.state["W"]["exp_avg_sq"], out)
    assert same_bits(rounded.state["W"]["exp_avg_sq"], out)
    # float64 state cannot become bfloat16
    d = fo.Adam()
    d.update([np.zeros(3)], [np.ones(3)])
    with pytest.raises(ValueError, match="is float64, and state_dtype='bfloat16'"):
        fo.Adam().load_state_dict({**d.state_dict(), "hyperparams": {
            **d.hyperparams, "state_dtype": "bfloat16"}})


def test_checkpoint_stores_the_bits_and_continues_bit_identically(tmp_path):
    rng = np.random.default_rng(7)
    params = model(rng, "F")
    opt = fo.Adam(state_dtype="bfloat16", ema=0.9)
    for _ in range(3):
        opt.update(params, grads_like(rng, params))
    path = os.path.join(tmp_path, "opt.ckpt")
    fo.save(opt, path)
    with np.load(path, allow_pickle=False) as z:  # NumPy alone reads it: uint16 bits
        assert z["p0.exp_avg"].dtype == np.uint16 and z["p0.ema"].dtype == np.float32
        assert same_bits(z["p0.exp_avg"].view(BF16), opt.state["W"]["exp_avg"])
    loaded = fo.load(path)
    assert loaded.state_dtype == "bfloat16"
    assert loaded.state["W"]["exp_avg"].flags.f_contiguous
    copy = {k: v.copy(order="K") for k, v in params.items()}
    for _ in range(3):
        g = grads_like(rng, params)
        opt.update(params, g)
        loaded.update(copy, g)
    for k in params:
        assert same_bits(params[k], copy[k])
        for n in opt.rule.state:
            assert same_bits(opt.state[k][n], loaded.state[k][n])


def test_checkpoint_with_wrong_member_dtype_is_refused(tmp_path):
    opt = fo.Adam(state_dtype="bfloat16")
    opt.update({"w": np.zeros(4, np.float32)}, {"w": np.ones(4, np.float32)})
    path = os.path.join(tmp_path, "opt.ckpt")
    fo.save(opt, path)
    with np.load(path) as z:
        members = {n: z[n] for n in z.files}
    members["p0.exp_avg"] = members["p0.exp_avg"].astype(np.float32)  # not the bits
    bad = os.path.join(tmp_path, "bad.ckpt")
    with open(bad, "wb") as f:
        np.savez(f, **members)
    with pytest.raises(fo.checkpoint.CheckpointError, match="the header says"):
        fo.load(bad)


def test_accumulate_fuses_the_mean_with_bfloat16_state():
    rng = np.random.default_rng(8)
    p_fast = model(rng)
    p_ref = {k: v.copy() for k, v in p_fast.items()}
    fast = fo.Accumulate(fo.Adam(state_dtype="bfloat16"), 3)
    ref = fo.Accumulate(fo.Adam(state_dtype="bfloat16", backend="numpy"), 3)
    for _ in range(6):
        g = grads_like(rng, p_fast)
        fast.update(p_fast, g)
        ref.update(p_ref, g)
    for k in p_fast:
        assert same_bits(p_fast[k], p_ref[k])


def test_swap_ema_and_schedule_free_eval_with_bfloat16_state():
    rng = np.random.default_rng(9)
    for make in (lambda **kw: fo.Adam(ema=0.5, **kw), fo.ScheduleFreeAdamW):
        p_fast = model(rng)
        p_ref = {k: v.copy() for k, v in p_fast.items()}
        fast, ref = make(state_dtype="bfloat16"), make(state_dtype="bfloat16", backend="numpy")
        for _ in range(3):
            g = grads_like(rng, p_fast)
            fast.update(p_fast, g)
            ref.update(p_ref, g)
        if isinstance(fast, fo.ScheduleFreeAdamW):
            fast.eval(p_fast)
            ref.eval(p_ref)
        else:
            fast.swap_ema(p_fast)
            ref.swap_ema(p_ref)
        for k in p_fast:
            assert same_bits(p_fast[k], p_ref[k])


def test_nan_in_nan_out_and_the_guard():
    p = np.ones(1000, np.float32)
    g = np.ones(1000, np.float32)
    g[10] = np.nan
    opt = fo.Adam(state_dtype="bfloat16")
    with np.errstate(invalid="ignore"):
        opt.update([p], [g])
    assert np.isnan(p[10]) and np.isnan(opt.state[0]["exp_avg"][10])
    assert np.isfinite(np.delete(p, 10)).all()
    guarded = fo.Adam(state_dtype="bfloat16", skip_nonfinite=True)
    q = np.ones(1000, np.float32)
    assert guarded.update([q], [np.ones(1000, np.float32)])
    before = guarded.state[0]["exp_avg"].copy()
    assert not guarded.update([q], [g])
    assert same_bits(guarded.state[0]["exp_avg"], before)


def test_formats_module():
    assert formats.flag(None) == 0 and formats.flag("bfloat16") == rules.BF16_FLAG
    assert formats.of_id(rules.get("adam").id | rules.BF16_FLAG) == "bfloat16"
    assert formats.buffer_dtype("bfloat16", np.float32) == BF16
    assert formats.itemsize("bfloat16", 4) == 2 and formats.itemsize(None, 8) == 8


def test_bfloat16_second_moment_stalls_as_docs_state_says():
    """docs/state.rst: with beta2=0.999 and g = 1 from zero state, bfloat16 v stops at
    0.25 (0.999*0.25 + 0.001 = 0.25075 rounds back to 0.25: bfloat16's unit at 0.25 is
    2**-9, so half a unit 2**-10 ~ 0.00098 > 0.00075) and does not decay when g = 0
    (0.999*0.25 differs from 0.25 by less than half a unit too); float32 v moves on."""
    opt, ref = fo.Adam(state_dtype="bfloat16"), fo.Adam()
    p, q = np.zeros(1, np.float32), np.zeros(1, np.float32)
    one, zero = np.ones(1, np.float32), np.zeros(1, np.float32)
    for _ in range(5000):
        opt.update([p], [one])
        ref.update([q], [one])
    assert float(opt.state[0]["exp_avg_sq"][0]) == 0.25
    assert float(ref.state[0]["exp_avg_sq"][0]) > 0.99
    for _ in range(3000):
        opt.update([p], [zero])
        ref.update([q], [zero])
    assert float(opt.state[0]["exp_avg_sq"][0]) == 0.25
    assert float(ref.state[0]["exp_avg_sq"][0]) < 0.05


# -- 8-bit block-wise state (state_dtype="int8") -----------------------------------------

INT8_CLASSES = [getattr(fo, r.class_name) for r in rules.RULES if r.int8_maps is not None]
INT8_OPTIONS = {"Adam": [{}, {"amsgrad": True}, {"ema": 0.9}], "AdamW": [{"amsgrad": True}],
                "RMSprop": [{"centered": True, "momentum": 0.9}, {"momentum": 0.5}],
                "AdaGrad": [{"initial_accumulator_value": 0.1}],
                "Momentum": [{"dampening": 0.5}]}


def model8(rng, order="C"):
    """One array under INT8_MIN_SIZE (float32 state), two over it (8-bit), of sizes
    that end in partial blocks."""
    return {"W": np.array(rng.standard_normal((67, 93)), dtype=np.float32, order=order),
            "v": rng.standard_normal(3 * 4096 + 77).astype(np.float32),
            "b": rng.standard_normal(4095).astype(np.float32)}


def test_the_8bit_rules_are_the_papers():
    assert {c.__name__ for c in INT8_CLASSES} == {"Adam", "AdamW", "Momentum", "Nesterov",
                                                  "RMSprop", "AdaGrad", "Lion"}
    for cls in (fo.SGD, fo.AdaDelta, fo.Adamax, fo.NAdam, fo.RAdam, fo.ScheduleFreeAdamW):
        with pytest.raises(ValueError, match="has no 8-bit state .state_dtype='int8'.: "
                                             "the rules with it are Momentum"):
            cls(state_dtype="int8")
    # the maps: first moments signed, second moments unsigned
    assert rules.get("adam").int8_maps == ("signed", "unsigned")
    assert rules.BY_KERNEL["rmsprop_centered_momentum"].int8_maps == (
        "unsigned", "signed", "signed")


def test_dynamic_maps_are_the_papers():
    """256 sorted values; per decade 10**(i-6), i = 0..6, the midpoints of 2**i equal
    parts of [0.1, 1] (signed, both signs) or 2**(i+1) parts (unsigned); then 0 and 1."""
    for signed in (True, False):
        m = reference.dynamic_map(signed)
        assert m.dtype == np.float32 and m.shape == (256,) and np.all(np.diff(m) > 0)
        assert m[-1] == 1.0 and np.count_nonzero(m == 0) == 1
        pos = m[(m > 0) & (m < 1)]
        for i in range(7):
            lo, hi = 10.0 ** (i - 6) * 0.1, 10.0 ** (i - 6)
            assert np.count_nonzero((pos > lo) & (pos < hi)) == (2 ** i if signed else
                                                                 2 ** (i + 1))
        assert np.count_nonzero(m < 0) == (127 if signed else 0)
    assert reference.dynamic_map(True)[0] == np.float32(-(0.1 + 0.9 * 63.5 / 64))
    assert reference.dynamic_map(False)[1] == np.float32(1e-6 * (0.1 + 0.9 * 0.5 / 2))


def test_codes_are_the_nearest_map_value():
    """Momentum(lr=1, momentum=0) keeps v = g (+0.0 for -0.0), quantised: each code is
    the nearest map value to v/absmax of its block, found here by brute force over the
    map in float64 -- also at every midpoint and its float32 neighbours. Where y lies
    between a midpoint and its float32 rounding (the quantiser compares with float32
    midpoints, a y equal to one taking the lower code), either neighbour may be the
    code; everywhere else exactly the nearest."""
    f32 = np.float32
    mid = reference.map_midpoints(True)
    rng = np.random.default_rng(11)
    y = np.concatenate([mid, np.nextafter(mid, f32(2)), np.nextafter(mid, f32(-2)),
                        rng.uniform(-1, 1, 20000), rng.uniform(-1, 1, 4000) * 1e-5,
                        rng.uniform(-1, 1, 1000) * 1e-7, [1.0, -1.0, 0.0, 1e-30]]).astype(f32)
    block = reference.INT8_BLOCK
    y = np.resize(y, (y.size + block - 1) // block * block).reshape(-1, block)
    y[:, 0] = 1.0  # every block's absmax 1: v/absmax = v exactly
    g = y.reshape(-1)
    opt = fo.Momentum(lr=1.0, momentum=0.0, state_dtype="int8")
    opt.update([np.zeros_like(g)], [g])
    codes = opt.state[0]["velocity"]
    assert np.all(opt.state[0]["velocity_absmax"] == 1.0)
    m = reference.dynamic_map(True).astype(np.float64)
    y64 = g.astype(np.float64)
    best = np.abs(y64[:, None] - m[None, :]).argmin(axis=1)
    mid64 = (m[:-1] + m[1:]) / 2
    lo, hi = np.minimum(mid64, mid.astype(np.float64)), np.maximum(mid64, mid)
    gap = ((y64[:, None] >= lo[None, :]) & (y64[:, None] <= hi[None, :])).any(axis=1)
    assert gap.sum() >= mid.size  # every midpoint itself is in its gap
    assert np.array_equal(codes[~gap], best[~gap].astype(np.uint8))
    assert np.all(np.abs(codes[gap].astype(int) - best[gap]) <= 1)
    assert np.array_equal(codes, np.searchsorted(reference.map_boundaries(True), g))


def test_second_moments_never_round_to_zero():
    """The unsigned map (second moments): the nearest value (brute force in float64,
    either neighbour between a midpoint and its float32 rounding), but a positive y
    never the code of 0. Here AdaGrad(lr=0) keeps G = g*g, quantised, on blocks whose
    absmax is 1."""
    rng = np.random.default_rng(15)
    m = reference.dynamic_map(False)
    y = np.concatenate([m, np.nextafter(m, np.float32(2)), np.nextafter(m, np.float32(-1)),
                        rng.uniform(0, 1, 20000), rng.uniform(0, 1e-5, 4000),
                        rng.uniform(0, 1e-7, 1000), [1e-30, 1e-45]]).astype(np.float32)
    y = np.clip(y, 0, 1)
    block = reference.INT8_BLOCK
    y = np.resize(y, (y.size + block - 1) // block * block).reshape(-1, block)
    y[:, 0] = 1.0
    y = y.reshape(-1)
    opt = fo.AdaGrad(lr=0.0, state_dtype="int8")
    g = np.sqrt(y.astype(np.float64)).astype(np.float32)
    opt.update([np.zeros_like(g)], [g])
    G = (g * g).astype(np.float32)  # what the rule computed, in float32
    codes = opt.state[0]["sum_sq"].astype(int)
    assert np.all(opt.state[0]["sum_sq_absmax"] == 1.0)
    m64, G64 = m.astype(np.float64), G.astype(np.float64)
    best = np.abs(G64[:, None] - m64[None, :]).argmin(axis=1)
    best[(G > 0) & (best == 0)] = 1  # a positive second moment: never 0
    mid = reference.map_midpoints(False).astype(np.float64)
    mid64 = (m64[:-1] + m64[1:]) / 2
    lo, hi = np.minimum(mid64, mid), np.maximum(mid64, mid)
    gap = ((G64[:, None] >= lo[None, :]) & (G64[:, None] <= hi[None, :])).any(axis=1)
    sure = ~gap | ((G > 0) & (G64 <= mid64[0]))
    assert np.array_equal(codes[sure], best[sure])
    assert np.all(np.abs(codes - best) <= 1)
    assert np.all(codes[G > 0] > 0) and np.all(codes[G == 0] == 0)


def test_encoding_tables_need_one_comparison():
    """The kernels' encoding tables: no entry covers two midpoints (formats checks it
    while building them), and every entry's code is searchsorted's for the smallest
    value it covers."""
    for signed in (True, False):
        t = formats.encoding_table(signed)
        assert t.dtype == np.uint32 and t.shape == (6400,)
        assert np.all((t & 0xFF) <= 255) and np.all((t >> 8) <= 0xFFFF)


@pytest.mark.parametrize("cls", INT8_CLASSES, ids=lambda c: c.__name__)
def test_int8_compiled_equals_reference_bit_for_bit(cls):
    for extra in INT8_OPTIONS.get(cls.__name__, [{}]):
        fast = run_both_backends(cls, extra, "int8", model8, 2)
        names = fast.rule.state
        own = [n for n in names if n != "ema"]
        assert fast.state["b"].keys() == {"step", *names}  # under INT8_MIN_SIZE: float32
        assert fast.state["v"].keys() == {"step", *names, *(f"{n}_absmax" for n in own)}
        assert fast.state["v"][own[0]].dtype == np.uint8
        assert fast.state["W"][own[0]].flags.f_contiguous  # codes in memory order


@pytest.mark.parametrize("n", [4096, 4097, 4096 + 255, 5 * 256 * 8 + 3, 40_000])
def test_int8_threads_split_at_block_edges(n):
    """Threads take whole blocks (those that start in their share), so any thread count
    gives the same codes and absmax."""
    outs = by_thread_count(n, "int8", ("exp_avg", "exp_avg_sq", "exp_avg_absmax",
                                       "exp_avg_sq_absmax"))
    for other in outs[1:]:
        assert all(same_bits(a, b) for a, b in zip(outs[0], other))


def test_int8_memory_and_the_small_array_threshold():
    rng = np.random.default_rng(12)
    n = 256 * 100
    opt = fo.Adam(state_dtype="int8")
    opt.update([np.zeros(n, np.float32)], [rng.standard_normal(n).astype(np.float32)])
    assert opt.state_nbytes == 2 * n + 2 * 4 * (n // 256)  # codes, then a float32 absmax
    assert opt.state_nbytes_per_param == 2 + 8 / 256
    small = fo.Adam(state_dtype="int8")
    small.update([np.zeros(rules.INT8_MIN_SIZE - 1, np.float32)],
                 [np.ones(rules.INT8_MIN_SIZE - 1, np.float32)])
    assert small.state_nbytes_per_param == 8.0 and small.state[0]["exp_avg"].dtype == np.float32
    assert rules.get("adam").state_bytes(4, 1) == 16


def test_int8_nan_takes_its_block_only():
    n = 4096
    g = np.ones(n, np.float32)
    g[300] = np.nan  # in block 1 (elements 256..511)
    p = np.zeros(n, np.float32)
    opt = fo.Adam(state_dtype="int8")
    with np.errstate(invalid="ignore"):
        opt.update([p], [g])
        opt.update([p], [np.ones(n, np.float32)])
    a = opt.state[0]["exp_avg_absmax"]
    assert np.isnan(a[1]) and np.isfinite(np.delete(a, 1)).all()
    assert np.isnan(p[256:512]).all() and np.isfinite(np.delete(p, np.s_[256:512])).all()


def test_int8_fast_path_checkpoint_and_conversions(monkeypatch, tmp_path):
    rng = np.random.default_rng(13)
    params = model8(rng)
    opt = fo.Adam(state_dtype="int8", ema=0.9)
    opt.update(params, grads_like(rng, params))
    path = os.path.join(tmp_path, "q8.ckpt")
    fo.save(opt, path)
    with np.load(path, allow_pickle=False) as z:
        v = [e for e in z.files if e.startswith("p1.")]
        assert {z[m].dtype for m in v} == {np.dtype(np.uint8), np.dtype(np.float32)}
    loaded = fo.load(path)
    sd = opt.state_dict()

    def refuse(*args, **kwargs):
        raise AssertionError("the fast path refused an 8-bit call")
    copy = {k: a.copy() for k, a in params.items()}
    g = grads_like(rng, params)
    opt.update(params, g)
    loaded.update(copy, g)  # its first update after loading has its step's scalars made
    with monkeypatch.context() as m:
        m.setattr(_engine, "finish", refuse)
        for _ in range(3):
            g = grads_like(rng, params)
            opt.update(params, g)
            loaded.update(copy, g)
    for k in params:
        assert same_bits(params[k], copy[k])
    # 8-bit to float32 state: dequantised exactly (the values the step used)
    f32 = fo.Adam()
    f32.load_state_dict({**sd, "hyperparams": {**sd["hyperparams"], "state_dtype": None}})
    want = formats.dequantized(sd["state"]["v"]["exp_avg"], sd["state"]["v"]["exp_avg_absmax"],
                               "signed")
    assert same_bits(f32.state["v"]["exp_avg"], want)
    assert same_bits(f32.state["b"]["exp_avg"], sd["state"]["b"]["exp_avg"])  # float32 already
    # float32 to 8-bit: quantised as a step quantises
    back = fo.Adam()
    back.load_state_dict({**f32.state_dict(), "hyperparams": sd["hyperparams"]})
    c, a = formats.quantized(f32.state["v"]["exp_avg_sq"], "unsigned")
    assert same_bits(back.state["v"]["exp_avg_sq"], c)
    assert same_bits(back.state["v"]["exp_avg_sq_absmax"], a)
    bad = {**sd, "state": {**sd["state"], "v": {**sd["state"]["v"],
                                                "exp_avg_absmax": np.zeros(3, np.float32)}}}
    with pytest.raises(ValueError, match="8-bit state must be uint8 codes"):
        fo.Adam().load_state_dict(bad)


def test_int8_with_accumulate_and_swap_ema():
    rng = np.random.default_rng(14)
    p_fast = model8(rng)
    p_ref = {k: v.copy() for k, v in p_fast.items()}
    fast = fo.Accumulate(fo.Adam(state_dtype="int8", ema=0.5), 2)
    ref = fo.Accumulate(fo.Adam(state_dtype="int8", ema=0.5, backend="numpy"), 2)
    for _ in range(4):
        g = grads_like(rng, p_fast)
        fast.update(p_fast, g)
        ref.update(p_ref, g)
    fast.optimizer.swap_ema(p_fast)
    ref.optimizer.swap_ema(p_ref)
    for k in p_fast:
        assert same_bits(p_fast[k], p_ref[k])
