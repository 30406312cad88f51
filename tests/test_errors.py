"""Bad input: a clear error naming the offending array, and nothing changed.

Each bad call below mixes a valid parameter (listed first, so it would be updated first)
with the bad one; the optimizer has taken one good step before, so it has state too.
The test asserts the message and that every parameter and state buffer is bit-for-bit
what it was, and that step counts did not move.
"""

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import functional as F

from conftest import OPTIMIZERS, assert_same, assert_snapshot_equal, snapshot


def good():
    rng = np.random.default_rng(0)
    return {"W": rng.standard_normal((4, 3)).astype(np.float32),
            "b": rng.standard_normal(3).astype(np.float32)}


def grads_for(params):
    return {k: np.full_like(v, 0.25) for k, v in params.items()}


def _readonly(a):
    a.flags.writeable = False
    return a


# name -> (function(params) -> (params, grads) of the bad call, exception, message regex)
CASES = {
    "param int dtype": (
        lambda P: ({**P, "b": np.arange(3)}, {**grads_for(P), "b": np.ones(3)}),
        TypeError, r"parameter 'b' has dtype int64.*astype\(np\.float32\)"),
    "param float16": (
        lambda P: ({**P, "b": np.ones(3, np.float16)},
                   {**grads_for(P), "b": np.ones(3, np.float16)}),
        TypeError, r"parameter 'b' has dtype float16"),
    "param non-native byte order": (
        lambda P: ({**P, "b": np.ones(3, ">f4" if np.little_endian else "<f4")},
                   {**grads_for(P), "b": np.ones(3, np.float32)}),
        TypeError, r"parameter 'b' has dtype float32 in non-native byte order"),
    "param read-only": (
        lambda P: ({**P, "b": _readonly(P["b"].copy())}, grads_for(P)),
        ValueError, r"parameter 'b' is read-only"),
    "param not contiguous": (
        lambda P: ({**P, "b": np.ones((3, 2), np.float32)[:, 0]}, grads_for(P)),
        TypeError, r"parameter 'b' is not contiguous.*will not update a copy"),
    "param is a list": (
        lambda P: ({**P, "b": [1.0, 2.0, 3.0]}, grads_for(P)),
        TypeError, r"parameter 'b' must be a NumPy array.*got list"),
    "grad dtype differs": (
        lambda P: (P, {**grads_for(P), "b": np.ones(3)}),
        TypeError, r"gradient 'b' has dtype float64 but its parameter is float32; cast it "
                   r"with grad\.astype\(np\.float32\)"),
    "grad non-native byte order": (
        lambda P: (P, {**grads_for(P), "b": np.ones(3, ">f4" if np.little_endian else "<f4")}),
        TypeError, r"gradient 'b' has dtype float32 in non-native byte order.*astype"),
    "grad shape differs": (
        lambda P: (P, {**grads_for(P), "W": np.ones((3, 4), np.float32)}),
        ValueError, r"gradient 'W' has shape \(3, 4\) but its parameter has shape \(4, 3\)"),
    "grad broadcastable but not equal shape": (
        lambda P: (P, {**grads_for(P), "b": np.ones((1, 3), np.float32)}),
        ValueError, r"gradient 'b' has shape \(1, 3\)"),
    "grad is None": (
        lambda P: (P, {**grads_for(P), "b": None}),
        TypeError, r"gradient 'b' must be a NumPy array, got NoneType"),
    "grad is a list": (
        lambda P: (P, {**grads_for(P), "b": [0.1, 0.2, 0.3]}),
        TypeError, r"gradient 'b' must be a NumPy array, got list"),
    "missing gradient": (
        lambda P: (P, {"W": grads_for(P)["W"]}),
        ValueError, r"no gradient for parameter\(s\) 'b'"),
    "extra gradient": (
        lambda P: (P, {**grads_for(P), "c": np.ones(2, np.float32)}),
        ValueError, r"gradient\(s\) 'c' have no parameter"),
    "dict params, list grads": (
        lambda P: (P, list(grads_for(P).values())),
        TypeError, r"params is a dict, so grads must be a dict"),
    "list params, dict grads": (
        lambda P: (list(P.values()), grads_for(P)),
        TypeError, r"params is a sequence, so grads must be a sequence"),
    "sequence lengths differ": (
        lambda P: (list(P.values()), list(grads_for(P).values())[:1]),
        ValueError, r"params has 2 arrays but grads has 1"),
    "params not a container": (
        lambda P: (42, 42),
        TypeError, r"params must be a dict of arrays"),
    "parameter changed shape under its key": (
        lambda P: ({**P, "b": np.ones(5, np.float32)},
                   {**grads_for(P), "b": np.ones(5, np.float32)}),
        ValueError, r"optimizer state '.*' of parameter 'b' has shape \(3,\) and dtype "
                    r"float32, but the parameter now has shape \(5,\)"),
    "parameter changed dtype under its key": (
        lambda P: ({**P, "b": np.ones(3)}, {**grads_for(P), "b": np.ones(3)}),
        ValueError, r"parameter now has shape \(3,\) and dtype float64"),
}


# SGD keeps no per-parameter buffers, so the "changed under its key" cases do not apply
COMBOS = [(cls, case) for cls in OPTIMIZERS for case in CASES
          if not (cls is fo.SGD and "changed" in case)]


@pytest.mark.parametrize("cls, case", COMBOS, ids=[f"{c.__name__}-{k}" for c, k in COMBOS])
def test_bad_update_raises_and_changes_nothing(cls, case):
    make_bad, exc, match = CASES[case]
    params = good()
    opt = cls()
    opt.update(params, grads_for(params))  # one good step: state exists
    bad_params, bad_grads = make_bad(params)
    before = snapshot(opt, params)
    grads_before = ({k: np.array(v, copy=True) for k, v in bad_grads.items()
                     if isinstance(v, np.ndarray)} if isinstance(bad_grads, dict) else None)
    with pytest.raises(exc, match=match):
        opt.update(bad_params, bad_grads)
    assert_snapshot_equal(snapshot(opt, params), before)
    if grads_before:
        for k, v in grads_before.items():
            assert_same(bad_grads[k], v)
    # and the optimizer still works afterwards
    opt.update(params, grads_for(params))
    assert all(st["step"] == 2 for st in opt.state.values())


def test_sgd_has_state_entries_only_for_steps():
    """SGD keeps only a step count per parameter (checked: no buffers to mismatch)."""
    opt = fo.SGD()
    p = good()
    opt.update(p, grads_for(p))
    assert opt.state == {"W": {"step": 1}, "b": {"step": 1}}


def test_non_contiguous_param_is_refused_not_copied():
    """The classic bug is to update np.ascontiguousarray(param): the caller's array
    would never change. fastoptim refuses instead and leaves it untouched."""
    base = np.arange(12, dtype=np.float64).reshape(3, 4)
    col = base[:, 1]
    before = base.copy()
    with pytest.raises(TypeError, match="not contiguous"):
        fo.SGD(lr=0.1).update([col], [np.ones(3)])
    assert_same(base, before)


# -- hyper-parameters -------------------------------------------------------------------

HYPER_CASES = [
    (fo.SGD, {"lr": -0.1}, r"Invalid lr: -0\.1 \(must be >= 0\)"),
    (fo.SGD, {"lr": float("nan")}, r"Invalid lr: nan \(must be finite\)"),
    (fo.SGD, {"weight_decay": -1e-4}, r"Invalid weight_decay: -0\.0001"),
    (fo.Momentum, {"momentum": 1.0}, r"Invalid momentum: 1\.0 \(must satisfy 0 <= momentum < 1\)"),
    (fo.Nesterov, {"momentum": -0.5}, r"Invalid momentum: -0\.5"),
    (fo.AdaGrad, {"eps": -1e-10}, r"Invalid eps: -1e-10 \(must be >= 0\)"),
    (fo.RMSprop, {"alpha": 1.5}, r"Invalid alpha: 1\.5 \(must satisfy 0 <= alpha <= 1\)"),
    (fo.AdaDelta, {"rho": -0.1}, r"Invalid rho: -0\.1 \(must satisfy 0 <= rho <= 1\)"),
    (fo.Adam, {"betas": (0.9, 1.0)}, r"Invalid beta2: 1\.0 \(must satisfy 0 <= beta2 < 1\)"),
    (fo.Adam, {"betas": (-0.1, 0.9)}, r"Invalid beta1: -0\.1"),
    (fo.Adam, {"betas": 0.9}, r"Invalid betas: 0\.9 \(must be a pair"),
    (fo.AdamW, {"weight_decay": -0.01}, r"Invalid weight_decay: -0\.01"),
    (fo.Adam, {"lr": float("inf")}, r"Invalid lr: inf \(must be finite\)"),
    (fo.Adam, {"num_threads": 0}, r"Invalid num_threads: 0 \(must be >= 1, or None"),
    (fo.Adam, {"backend": "torch"}, r"Invalid backend: 'torch' \(must be 'compiled' or 'numpy'\)"),
]


@pytest.mark.parametrize("cls, kwargs, match", HYPER_CASES,
                         ids=[f"{c.__name__}-{list(k)[0]}" for c, k, _ in HYPER_CASES])
def test_bad_hyperparameters(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


@pytest.mark.parametrize("kwargs, exc", [({"lr": "0.1"}, TypeError), ({"lr": None}, TypeError),
                                         ({"num_threads": 2.0}, TypeError),
                                         ({"lr": True}, TypeError)])
def test_hyperparameter_types(kwargs, exc):
    with pytest.raises(exc, match=list(kwargs)[0]):
        fo.SGD(**kwargs)


def test_valid_edges_accepted():
    fo.SGD(lr=0.0)
    fo.Momentum(momentum=0.0)
    fo.RMSprop(alpha=0.0)
    fo.RMSprop(alpha=1.0)
    fo.AdaDelta(rho=1.0, eps=0.0)
    fo.Adam(betas=(0.0, 0.0), eps=0.0)
    fo.Adam(num_threads=1)
    fo.Adam(lr=np.float32(1e-3))  # NumPy scalars are numbers too


# -- the functional API: user-owned state buffers ---------------------------------------

def test_functional_state_buffer_errors_change_nothing():
    p = np.ones((3, 4))
    g = np.full((3, 4), 0.5)
    m, v = np.zeros_like(p), np.zeros_like(p)
    F.adam(p, g, m, v, step=1)
    snap = [a.copy() for a in (p, m, v)]
    bad = [
        ((p, g, m, np.zeros((4, 3))), ValueError, r"exp_avg_sq has shape \(4, 3\).*np\.zeros_like"),
        ((p, g, m, np.zeros((3, 4), np.float32)), ValueError, r"exp_avg_sq .* dtype float32"),
        ((p, g, m, np.zeros((3, 4), order="F")), TypeError, r"exp_avg_sq must be C-contiguous"),
        ((p, g, m, m), ValueError, r"exp_avg and exp_avg_sq share memory"),
        ((p, g, p, v), ValueError, r"exp_avg shares memory with param"),
        ((p, g, m, _readonly(v.copy())), ValueError, r"exp_avg_sq is read-only"),
        ((p, g, m, [0.0] * 12), TypeError, r"exp_avg_sq must be a NumPy array"),
    ]
    for args, exc, match in bad:
        with pytest.raises(exc, match=match):
            F.adam(*args, step=2)
        for a, b in zip((p, m, v), snap):
            assert_same(a, b)
    for step in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="Invalid step"):
            F.adam(p, g, m, v, step=step)
    with pytest.raises(TypeError, match="param must be a NumPy array"):
        F.sgd([1.0], g)
