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
    return a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


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


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_compiled_equals_reference_bit_for_bit(cls):
    for extra in OPTIONS.get(cls.__name__, [{}]):
        rng = np.random.default_rng(1)
        p_fast, p_ref = model(rng, "F"), None
        p_ref = {k: v.copy(order="K") for k, v in p_fast.items()}
        fast = cls(state_dtype="bfloat16", num_threads=2, **extra)
        ref = cls(state_dtype="bfloat16", backend="numpy", **extra)
        for step in range(4):
            g = grads_like(rng, p_fast, specials=step == 2)
            with np.errstate(all="ignore"):
                assert fast.update(p_fast, g) and ref.update(p_ref, g)
            for k in p_fast:
                assert same_bits(p_fast[k], p_ref[k]), (cls.__name__, extra, k, step)
                for n in fast.rule.state:
                    a, b = fast.state[k][n], ref.state[k][n]
                    assert a.dtype == (np.float32 if n == "ema" else BF16), n
                    assert same_bits(a, b), (cls.__name__, extra, k, n, step)


@pytest.mark.parametrize("n", [1, 511, 512, 513, 3 * 512 + 7, 40_000])
def test_threads_and_block_edges_change_no_bit(n):
    """Any thread count splits the elements anywhere, not at block edges: each element
    is the rule on its own values, so the result is the same."""
    rng = np.random.default_rng(n)
    p0 = rng.standard_normal(n).astype(np.float32)
    gs = [rng.standard_normal(n).astype(np.float32) for _ in range(3)]
    outs = []
    old = fo._dispatch.kernels.set_parallel_thresholds(light=0, heavy=0)
    try:
        for nt in (1, 2, 3):
            p = p0.copy()
            opt = fo.Adam(state_dtype="bfloat16", num_threads=nt)
            for g in gs:
                opt.update([p], [g])
            outs.append((p, opt.state[0]["exp_avg"], opt.state[0]["exp_avg_sq"]))
    finally:
        fo._dispatch.kernels.set_parallel_thresholds(**old)
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
    for bad in ("float32", "float16", "int8", 3):
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
