"""Parameter groups (``fastoptim.groups``): per-parameter hyper-parameters by key, key
pattern, function or array, in one engine call per update, bit-identical to one
optimizer per group; changeable, scheduled, saved and restored."""

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import _engine, schedules

from conftest import HYPER, OPTIMIZERS, assert_same

SHAPES = {"W1": (12, 8), "b1": (8,), "W2": (8, 3), "b2": (3,)}


def make_params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}


def make_grads(dtype, steps, seed=1):
    rng = np.random.default_rng(seed)
    return [{k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}
            for _ in range(steps)]


def overrides_for(cls):
    """Other values, for a group, of every kind of hyper-parameter the rule has."""
    hyper = dict(HYPER[cls])
    out = {"lr": hyper["lr"] * 0.5}
    if "weight_decay" in cls._hyper_names:
        out["weight_decay"] = 0.0
    if "momentum" in cls._hyper_names and "momentum" not in cls.rule.structural:
        out["momentum"] = 0.5
    if "betas" in cls._hyper_names:
        out["betas"] = (0.7, 0.9)
    return out


# every rule, Schedule-Free too (its averaging weights per group, its step shared)
GROUPABLE = OPTIMIZERS


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls", GROUPABLE, ids=lambda c: c.__name__)
def test_grouped_equals_one_optimizer_per_group(cls, dtype):
    hyper, extra = dict(HYPER[cls]), overrides_for(cls)
    grads = make_grads(dtype, 12)
    groups = [fo.groups.no_decay_1d(**{k: v for k, v in extra.items()
                                       if k != "weight_decay"}),
              {"keys": ["W2"], "lr": hyper["lr"] * 2}]
    results = {}
    for backend in ("compiled", "numpy"):
        params = make_params(dtype)
        opt = cls(**hyper, groups=groups, backend=backend)
        for g in grads:
            opt.update(params, g)
        results[backend] = (params, opt)
    # the oracle: three optimizers, each on its own parameters
    params = make_params(dtype)
    parts = {0: ["W1"], 1: ["b1", "b2"], 2: ["W2"]}
    given = [{}, {"weight_decay": 0.0, **{k: v for k, v in extra.items()
                                          if k != "weight_decay"}},
             {"lr": hyper["lr"] * 2}]
    if "weight_decay" not in cls._hyper_names:
        given[1].pop("weight_decay")
    opts = [cls(**{**hyper, **given[i]}) for i in range(3)]
    for g in grads:
        for i, keys in parts.items():
            opts[i].update({k: params[k] for k in keys}, {k: g[k] for k in keys})
    for got, opt in results.values():
        for i, keys in parts.items():
            for k in keys:
                assert_same(got[k], params[k])
                assert opt.state[k]["group"] == i
                assert opt.state[k]["step"] == 12
                for n in cls.rule.state:
                    assert_same(opt.state[k][n], opts[i].state[k][n])


class _Counting:
    """An engine that counts its calls (the compiled one underneath)."""

    name = "compiled"

    def __init__(self):
        self.fast_calls = self.run_calls = 0

    def fast(self, *args):
        self.fast_calls += 1
        return _engine.COMPILED.fast(*args)

    def run(self, *args):
        self.run_calls += 1
        return _engine.COMPILED.run(*args)


@pytest.mark.parametrize("cls", [fo.Adam, fo.SGD, fo.Momentum], ids=lambda c: c.__name__)
def test_one_engine_call_per_update(cls):
    params = make_params(np.float32)
    opt = cls(groups=[{"match": "b*", "lr": 1e-4}, {"keys": ["W2"], "lr": 1e-2}])
    opt.update(params, make_grads(np.float32, 1)[0])  # makes the state
    counting = _Counting()
    object.__setattr__(opt, "_engine", counting)
    for g in make_grads(np.float32, 5, seed=3):
        assert opt.update(params, g) is True
    # every array of a call, whatever its group, in the one fast-path call
    assert (counting.fast_calls, counting.run_calls) == (5, 0)


def test_selectors_and_first_match():
    W = np.ones((2, 2))
    params = {"enc.W": np.ones((2, 2)), "enc.b": np.ones(2), "dec.W": W, "dec.b": np.ones(2),
              "emb": np.ones((3, 2))}
    opt = fo.SGD(lr=0.1, groups=[
        {"keys": ["emb"], "lr": 0.5},
        {"params": [W], "lr": 0.2},            # by identity
        {"match": ["*.b"], "lr": 0.0},
        {"where": lambda key, p: key.startswith("enc"), "lr": 0.3},
        {"match": "emb", "lr": 9.0},           # never: emb matched the first group
    ])
    opt.update(params, {k: np.ones_like(v) for k, v in params.items()})
    assert {k: s["group"] for k, s in opt.state.items()} == {
        "enc.W": 4, "enc.b": 3, "dec.W": 2, "dec.b": 3, "emb": 1}
    assert params["emb"][0, 0] == 0.5 and params["dec.W"][0, 0] == 0.8
    assert params["enc.W"][0, 0] == 0.7 and params["enc.b"][0] == 1.0
    # the list form: keys are positions; a parameter no group selects is group 0's
    lst = [np.ones(2), np.ones(2)]
    opt = fo.SGD(lr=0.1, groups=[{"keys": [1], "lr": 0.5}])
    opt.update(lst, [np.ones(2), np.ones(2)])
    assert lst[0].tolist() == [0.9, 0.9] and lst[1].tolist() == [0.5, 0.5]
    # a view of the same memory (as a torch tensor's NumPy view made per call)
    base = np.ones(3)
    opt = fo.SGD(lr=0.1, groups=[{"params": [base], "lr": 0.5}])
    opt.update([base[:]], [np.ones(3)])
    assert opt.state[0]["group"] == 1


def test_a_parameter_seen_later_joins_its_group_then():
    opt = fo.Adam(lr=0.1, groups=[fo.groups.no_decay_1d(lr=0.0)])
    params = {"W": np.ones((2, 2))}
    opt.update(params, {"W": np.ones((2, 2))})
    params["b"] = np.ones(2)
    opt.update(params, {"W": np.ones((2, 2)), "b": np.ones(2)})
    assert opt.state["b"] == {**opt.state["b"], "group": 1, "step": 1}
    assert params["b"].tolist() == [1.0, 1.0]  # lr 0


def test_group_initial_accumulator_value():
    opt = fo.AdaGrad(groups=[{"match": "b", "initial_accumulator_value": 0.5}])
    opt.update({"a": np.zeros(2), "b": np.zeros(2)}, {"a": np.zeros(2), "b": np.zeros(2)})
    assert opt.state["a"]["sum_sq"].tolist() == [0.0, 0.0]
    assert opt.state["b"]["sum_sq"].tolist() == [0.5, 0.5]


@pytest.mark.parametrize("groups, exc, match", [
    ({"match": "b"}, TypeError, r"groups must be a list of dicts"),
    (["b*"], TypeError, r"groups\[0\] must be a dict"),
    ([{"lr": 0.1}], ValueError, r"groups\[0\] must have exactly one selector .* none"),
    ([{"keys": ["a"], "match": "b", "lr": 0.1}], ValueError,
     r"exactly one selector.*\['keys', 'match'\]"),
    ([{"match": "b", "momentum": 0.9}], ValueError,
     r"groups\[0\] sets \['momentum'\], which Adam does not have \(its hyper-parameters: "
     r"lr, betas, eps, weight_decay, amsgrad, ema, state_dtype, maximize\)"),
    ([{"match": "b", "lr": -1}], ValueError, r"Invalid lr: -1"),
    ([{"match": 3}], TypeError, r"\['match'\] must be a glob pattern"),
    ([{"where": "b*"}], TypeError, r"\['where'\] must be a function"),
    ([{"keys": "W1"}], TypeError, r"\['keys'\] must be a list of keys"),
], ids=["not-a-list", "not-a-dict", "no-selector", "two-selectors", "unknown-hyper",
        "bad-value", "bad-match", "bad-where", "bad-keys"])
def test_bad_groups_are_refused_with_the_fix(groups, exc, match):
    with pytest.raises(exc, match=match):
        fo.Adam(groups=groups)


def test_changing_hyper_parameters_between_updates():
    params = {"W": np.ones(2), "b": np.ones(2)}
    opt = fo.SGD(lr=0.1, groups=[{"keys": ["b"], "lr": 0.5}])
    g = {"W": np.ones(2), "b": np.ones(2)}
    opt.update(params, g)
    assert params["W"][0] == 0.9 and params["b"][0] == 0.5
    opt.lr = 0.2                 # group 0 and groups without their own lr follow
    opt.param_groups[1].lr = 0.25
    opt.update(params, g)
    assert params["W"][0] == 0.9 - 0.2 and params["b"][0] == 0.25
    assert opt.param_groups[0].lr == 0.2 and opt.param_groups[1].overrides == {"lr": 0.25}
    with pytest.raises(ValueError, match=r"Invalid lr: -1"):
        opt.param_groups[1].lr = -1
    with pytest.raises(AttributeError, match=r"SGD has no hyper-parameter 'momentum'"):
        opt.param_groups[1].momentum = 0.9
    assert opt.param_groups[1].lr == 0.25
    opt.param_groups[0].lr = 0.0  # group 0's attributes are the optimizer's
    assert opt.lr == 0.0
    # an optimizer without groups has group 0 only
    plain = fo.SGD(lr=0.1)
    assert [g.index for g in plain.param_groups] == [0] and "group" not in str(plain.state)


def test_schedules_set_every_groups_lr_from_its_own_base():
    opt = fo.SGD(lr=0.1, groups=[{"match": "b", "lr": 0.01}])
    sched = schedules.StepLR(opt, step_size=1, gamma=0.5)
    for k in range(1, 4):
        sched.step()
        assert (opt.lr, opt.param_groups[1].lr) == (0.1 * 0.5**k, 0.01 * 0.5**k)
    # cosine with a floor: each group from its own base to the same min_lr, as torch's
    opt = fo.SGD(lr=0.1, groups=[{"match": "b", "lr": 0.02}])
    sched = schedules.CosineWithWarmup(opt, warmup_steps=0, total_steps=2, min_lr=0.01)
    sched.step()
    assert opt.lr == pytest.approx(0.055) and opt.param_groups[1].lr == pytest.approx(0.015)
    saved = sched.state_dict()
    assert saved["group_base_lrs"] == {"1": 0.02}
    again = fo.SGD(lr=0.1, groups=[{"match": "b", "lr": 0.02}])
    resumed = schedules.CosineWithWarmup(again, warmup_steps=0, total_steps=2, min_lr=0.01)
    resumed.load_state_dict(saved)
    assert again.param_groups[1].lr == pytest.approx(0.015)
    # plateau: each group's lr reduced by the factor
    opt = fo.SGD(lr=0.1, groups=[{"match": "b", "lr": 0.01}])
    sched = schedules.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    for metric in (1.0, 2.0):
        sched.step(metric)
    assert (opt.lr, opt.param_groups[1].lr) == (0.05, 0.005)


def test_state_dicts_and_checkpoints_keep_the_groups(tmp_path):
    groups = [fo.groups.no_decay_1d(lr=1e-3), {"keys": ["W2"], "betas": (0.8, 0.9)}]
    grads = make_grads(np.float64, 8)
    straight = make_params(np.float64)
    opt = fo.AdamW(lr=1e-2, groups=groups)
    for g in grads:
        opt.update(straight, g)
    for how in ("state_dict", "checkpoint"):
        params = make_params(np.float64)
        first = fo.AdamW(lr=1e-2, groups=groups)
        for g in grads[:4]:
            first.update(params, g)
        first.param_groups[1].lr = 1e-3  # (unchanged value: the saved one is restored)
        if how == "state_dict":
            sd = first.state_dict()
            assert sd["groups"] == [{"weight_decay": 0.0, "lr": 1e-3}, {"betas": (0.8, 0.9)}]
            assert sd["state"]["b1"]["group"] == 1 and sd["state"]["b1"]["step"] == 4
            second = fo.AdamW(lr=1e-2, groups=groups)
            second.load_state_dict(sd)
        else:
            fo.save(first, tmp_path / "g.ckpt")
            second = fo.load(tmp_path / "g.ckpt")
            assert [g.overrides for g in second.param_groups[1:]] == [
                {"weight_decay": 0.0, "lr": 1e-3}, {"betas": (0.8, 0.9)}]
        for g in grads[4:]:
            second.update(params, g)
        for k in params:
            assert_same(params[k], straight[k])
    sd = opt.state_dict()
    with pytest.raises(ValueError, match=r"has parameter groups and this optimizer none"):
        fo.AdamW().load_state_dict(sd)
    with pytest.raises(ValueError, match=r"has 2 parameter groups, this optimizer 1"):
        fo.AdamW(groups=groups[:1]).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"this optimizer has parameter groups and the "
                                         r"state_dict none"):
        fo.AdamW(groups=groups).load_state_dict(fo.AdamW().state_dict())
    # an optimizer without groups still writes format version 1
    import json
    import zipfile
    fo.save(fo.AdamW(), tmp_path / "plain.ckpt")
    with zipfile.ZipFile(tmp_path / "plain.ckpt") as z:
        header = json.loads(np.lib.format.read_array(z.open("header.npy")).tobytes())
    assert header["version"] == 1 and "groups" not in header


def test_torch_style_groups_with_the_arrays():
    W, b = np.ones((2, 2)), np.ones(2)
    opt = fo.SGD(lr=0.1, groups=[{"params": [b], "lr": 0.5}])
    opt.update([W, b], [np.ones((2, 2)), np.ones(2)])
    assert W[0, 0] == 0.9 and b[0] == 0.5


# -- Schedule-Free: per-group averaging weights ----------------------------------------

SF_GROUPS = [{"match": "b*", "lr": 5e-3, "weight_decay": 0.0},
             {"keys": ["W2"], "betas": (0.8, 0.99), "warmup_steps": 3}]


def _sf(**kw):
    return fo.ScheduleFreeAdamW(**{"lr": 1e-2, "weight_decay": 0.01, "warmup_steps": 2,
                                   "r": 0.5, **kw})


@pytest.mark.parametrize("backend", ["compiled", "numpy"])
def test_schedule_free_groups_keep_their_own_averaging_weights(backend):
    """A grouped Schedule-Free optimizer is one optimizer per group, bit for bit, with
    an lr change of one group mid-run, and eval() / train() use each group's beta1."""
    grads = make_grads(np.float64, 10)
    params = make_params(np.float64)
    opt = _sf(groups=SF_GROUPS, backend=backend)
    parts = {0: ["W1"], 1: ["b1", "b2"], 2: ["W2"]}
    given = [{}, {"lr": 5e-3, "weight_decay": 0.0},
             {"betas": (0.8, 0.99), "warmup_steps": 3}]
    alone = make_params(np.float64)
    opts = [_sf(**given[i]) for i in range(3)]
    for step, g in enumerate(grads):
        if step == 5:
            opt.param_groups[1].lr = 2e-3
            opts[1].lr = 2e-3
        assert opt.update(params, g) is True
        for i, keys in parts.items():
            opts[i].update({k: alone[k] for k in keys}, {k: g[k] for k in keys})
    for k in params:
        assert_same(params[k], alone[k])
    st = opt.optimizer_state
    assert st["step"] == 10 and st["train_mode"] is True
    assert st["lr_max"] == [o.optimizer_state["lr_max"] for o in opts]
    assert st["weight_sum"] == [o.optimizer_state["weight_sum"] for o in opts]
    assert len(set(st["weight_sum"])) == 3  # each its own
    opt.eval(params)
    for i, keys in parts.items():
        opts[i].eval({k: alone[k] for k in keys})
    for k in params:
        assert_same(params[k], alone[k])
    opt.train(params)
    for i, keys in parts.items():
        opts[i].train({k: alone[k] for k in keys})
    for k in params:
        assert_same(params[k], alone[k])


def test_schedule_free_groups_saved_and_restored(tmp_path):
    grads = make_grads(np.float32, 8)
    straight = make_params(np.float32)
    opt = _sf(groups=SF_GROUPS)
    for g in grads:
        opt.update(straight, g)
    for how in ("state_dict", "checkpoint"):
        params = make_params(np.float32)
        first = _sf(groups=SF_GROUPS)
        for g in grads[:4]:
            first.update(params, g)
        if how == "state_dict":
            sd = first.state_dict()
            assert len(sd["optimizer_state"]["lr_max"]) == 3
            second = _sf(groups=SF_GROUPS)
            second.load_state_dict(sd)
        else:
            fo.save(first, tmp_path / "sf.ckpt")
            second = fo.load(tmp_path / "sf.ckpt")
        assert second.optimizer_state == first.optimizer_state
        for g in grads[4:]:
            second.update(params, g)
        for k in params:
            assert_same(params[k], straight[k])
    # the optimizer state must have one entry per group; nothing changes on error
    sd = opt.state_dict()
    bad = dict(sd, optimizer_state=dict(sd["optimizer_state"], lr_max=[0.01, 0.01]))
    fresh = _sf(groups=SF_GROUPS)
    with pytest.raises(ValueError, match=r"lr_max must be a list of 3 numbers \(one per "
                                         r"parameter group"):
        fresh.load_state_dict(bad)
    assert fresh.optimizer_state["step"] == 0 and not fresh.state
    with pytest.raises(ValueError, match=r"this state_dict has parameter groups"):
        _sf().load_state_dict(sd)
    # before the first update every group starts from the same (unset) weights
    assert _sf(groups=SF_GROUPS).optimizer_state == {
        "step": 0, "lr_max": [-1.0] * 3, "weight_sum": [0.0] * 3, "train_mode": True}


# -- structural options (amsgrad, RMSprop's momentum and centered) ------------------------

def test_a_group_may_change_a_structural_value_that_keeps_the_state_buffers():
    """RMSprop(momentum=0.9) with a group at momentum 0.5: one velocity buffer for both,
    each group its own momentum; bit-identical to one optimizer per group."""
    params, grads_seq = make_params(np.float64), make_grads(np.float64, 5)
    opt = fo.RMSprop(lr=0.01, momentum=0.9, groups=[{"match": "b*", "momentum": 0.5}])
    one = {"b": fo.RMSprop(lr=0.01, momentum=0.5), "other": fo.RMSprop(lr=0.01, momentum=0.9)}
    alone = {k: v.copy() for k, v in params.items()}
    for grads in grads_seq:
        opt.update(params, grads)
        for which, o in one.items():
            keys = [k for k in alone if k.startswith("b") == (which == "b")]
            o.update({k: alone[k] for k in keys}, {k: grads[k] for k in keys})
    assert opt.rule.name == "rmsprop_momentum"
    for k in params:
        assert_same(params[k], alone[k])


@pytest.mark.parametrize("cls, opt_kw, group_kw", [
    (fo.Adam, {}, {"amsgrad": True}),
    (fo.AdamW, {"amsgrad": True}, {"amsgrad": False}),
    (fo.RMSprop, {}, {"momentum": 0.5}),
    (fo.RMSprop, {"momentum": 0.9}, {"momentum": 0.0}),
    (fo.RMSprop, {}, {"centered": True}),
])
def test_a_group_cannot_change_the_state_buffers(cls, opt_kw, group_kw):
    with pytest.raises(ValueError, match=r"groups\[0\] sets .*other state buffers than the "
                                         r"optimizer's"):
        cls(**opt_kw, groups=[{"match": "b*", **group_kw}])
    opt = cls(**opt_kw, groups=[{"match": "b*"}])
    name, value = next(iter(group_kw.items()))
    with pytest.raises(ValueError, match="group 1 sets .*other state buffers"):
        setattr(opt.param_groups[1], name, value)
    assert opt.param_groups[1].overrides == {}  # refused: nothing changed


def test_the_optimizer_cannot_leave_a_group_without_its_buffers():
    opt = fo.RMSprop(momentum=0.9, groups=[{"match": "b*", "momentum": 0.5}])
    with pytest.raises(ValueError, match=r"momentum=0\.0 would give group 1"):
        opt.momentum = 0.0
    assert opt.momentum == 0.9 and opt.rule.name == "rmsprop_momentum"
