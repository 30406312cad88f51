"""fastoptim as a CPU optimizer for a torch model: its parameters are stepped in place
through NumPy views (``p.detach().numpy()``) or handed over as tensors (DLPack), and the
trajectory is checked against torch.optim's.

torch is not a test dependency (CI never downloads it): without torch this module is
skipped. With it (``pip install torch``), every test here runs.
"""

import copy
import gc

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import _core, _dlpack

torch = pytest.importorskip("torch")

STEPS = 10

# (fastoptim class and keywords, torch.optim factory with the same rule). Learning rates
# stay constant: fastoptim's Momentum/Nesterov store lr*g in the velocity, torch stores g
# and multiplies by the current lr, so the two agree only while lr does not change.
CASES = {
    "SGD": (fo.SGD, dict(lr=0.05, weight_decay=0.01),
            lambda ps: torch.optim.SGD(ps, lr=0.05, weight_decay=0.01)),
    "Momentum": (fo.Momentum, dict(lr=0.05, momentum=0.9, weight_decay=0.01),
                 lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.01)),
    "Nesterov": (fo.Nesterov, dict(lr=0.05, momentum=0.9),
                 lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True)),
    "AdaGrad": (fo.AdaGrad, dict(lr=0.05, weight_decay=0.01),
                lambda ps: torch.optim.Adagrad(ps, lr=0.05, weight_decay=0.01)),
    # torch.optim's options on these rules
    "SGD-maximize": (fo.SGD, dict(lr=0.05, weight_decay=0.01, maximize=True),
                     lambda ps: torch.optim.SGD(ps, lr=0.05, weight_decay=0.01,
                                                maximize=True)),
    "Adam-maximize": (fo.Adam, dict(lr=0.01, weight_decay=0.01, maximize=True),
                      lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.01,
                                                  maximize=True)),
    "RMSprop-maximize": (fo.RMSprop, dict(lr=0.01, alpha=0.9, maximize=True),
                         lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.9,
                                                        maximize=True)),
    "Momentum-dampening": (fo.Momentum, dict(lr=0.05, momentum=0.9, dampening=0.5,
                                             weight_decay=0.01),
                           lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9,
                                                      dampening=0.5, weight_decay=0.01)),
    "AdaGrad-lr_decay-initial": (
        fo.AdaGrad, dict(lr=0.05, lr_decay=0.1, initial_accumulator_value=0.1,
                         weight_decay=0.01),
        lambda ps: torch.optim.Adagrad(ps, lr=0.05, lr_decay=0.1,
                                       initial_accumulator_value=0.1, weight_decay=0.01)),
    # the structural options: a state buffer more, the variant's own kernel
    # (beta2 0.9: v falls below its maximum within the ten steps, so amsgrad shows)
    "Adam-amsgrad": (fo.Adam, dict(lr=0.01, betas=(0.8, 0.9), weight_decay=0.01,
                                   amsgrad=True),
                     lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.8, 0.9),
                                                 weight_decay=0.01, amsgrad=True)),
    "AdamW-amsgrad": (fo.AdamW, dict(lr=0.01, betas=(0.8, 0.9), weight_decay=0.1,
                                     amsgrad=True),
                      lambda ps: torch.optim.AdamW(ps, lr=0.01, betas=(0.8, 0.9),
                                                   weight_decay=0.1, amsgrad=True)),
    "RMSprop-centered": (fo.RMSprop, dict(lr=0.01, alpha=0.9, centered=True,
                                          weight_decay=0.01),
                         lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.9, centered=True,
                                                        weight_decay=0.01)),
    "RMSprop-momentum": (fo.RMSprop, dict(lr=0.01, alpha=0.9, momentum=0.9),
                         lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.9, momentum=0.9)),
    "RMSprop-centered-momentum": (
        fo.RMSprop, dict(lr=0.01, alpha=0.9, momentum=0.9, centered=True, maximize=True),
        lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.9, momentum=0.9, centered=True,
                                       maximize=True)),
    "RMSprop": (fo.RMSprop, dict(lr=0.01, alpha=0.9),
                lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.9)),
    "AdaDelta": (fo.AdaDelta, dict(lr=1.0, rho=0.9),
                 lambda ps: torch.optim.Adadelta(ps, lr=1.0, rho=0.9)),
    "Adam": (fo.Adam, dict(lr=0.01, weight_decay=0.01),
             lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.01)),
    "AdamW": (fo.AdamW, dict(lr=0.01, weight_decay=0.1),
              lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1)),
    "Adamax": (fo.Adamax, dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.01),
               lambda ps: torch.optim.Adamax(ps, lr=0.01, betas=(0.8, 0.99),
                                             weight_decay=0.01)),
    "NAdam": (fo.NAdam, dict(lr=0.01, weight_decay=0.01, momentum_decay=0.01),
              lambda ps: torch.optim.NAdam(ps, lr=0.01, weight_decay=0.01,
                                           momentum_decay=0.01)),
    # ten steps: five before the rectification (rho_t <= 5) and five after
    "RAdam": (fo.RAdam, dict(lr=0.01, weight_decay=0.01),
              lambda ps: torch.optim.RAdam(ps, lr=0.01, weight_decay=0.01)),
    # torch.optim has no Lion: LionOracle below, lucidrains' lion-pytorch step
    "Lion": (fo.Lion, dict(lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1),
             lambda ps: LionOracle(ps, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)),
    # torch.optim has no LAMB: LambOracle below, the paper's Algorithm 2
    "LAMB": (fo.LAMB, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01),
             lambda ps: LambOracle(ps, lr=0.01, betas=(0.8, 0.99), eps=1e-6,
                                   weight_decay=0.01)),
}


class LionOracle(torch.optim.Optimizer):
    """Lion as lucidrains' ``lion-pytorch`` writes it (the paper's Program 1), in torch:
    decoupled decay, the sign of the interpolation, then the momentum's update."""

    def __init__(self, params, lr, betas, weight_decay):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, wd, (beta1, beta2) = group["lr"], group["weight_decay"], group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                exp_avg = state["exp_avg"]
                p.mul_(1 - lr * wd)
                update = exp_avg.clone().mul_(beta1).add(p.grad, alpha=1 - beta1).sign_()
                p.add_(update, alpha=-lr)
                exp_avg.mul_(beta2).add_(p.grad, alpha=1 - beta2)

class LambOracle(torch.optim.Optimizer):
    """LAMB as the paper writes it (You et al. 2020, Algorithm 2, with bias correction,
    as apex's FusedLAMB and timm's Lamb), in torch: u = m_hat/(sqrt(v_hat) + eps) +
    wd*p, p <- p - lr*||p||/||u||*u (ratio 1 where a norm is 0). torch.optim has no
    LAMB; pytorch-optimizer's differs in form (test_published_oracles.py)."""

    def __init__(self, params, lr, betas, eps, weight_decay):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, eps, wd, (beta1, beta2) = (group["lr"], group["eps"], group["weight_decay"],
                                           group["betas"])
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state.update(step=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                state["step"] += 1
                t, m, v = state["step"], state["m"], state["v"]
                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                u = (m / (1 - beta1 ** t)) / ((v / (1 - beta2 ** t)).sqrt() + eps) + wd * p
                w_norm, u_norm = torch.linalg.norm(p), torch.linalg.norm(u)
                ratio = (w_norm / u_norm).item() if w_norm > 0 and u_norm > 0 else 1.0
                p.add_(u, alpha=-lr * ratio)


# Tolerances. fastoptim applies each rule in torch.optim's order except where the conventions of
# docs/rules.rst say otherwise (Adam/AdamW in the paper's efficient form, AdaDelta with one square
# root, Momentum storing lr*g), and torch's vectorised kernels may order some operations
# differently, so each step differs by a few units in the last place; ten steps through a network
# whose gradients depend on the parameters carry that along. Measured (torch 2.13, parameters of
# size 0.01-1): largest absolute difference 9e-8 in float32 and 1.4e-16 in float64, so the bounds
# below (|a - b| <= atol + rtol*|b|) leave a margin of 10x (float32) and 70x (float64). A real
# mistake is far outside them: Nesterov stepped as plain momentum differs by 5e-3, Adam with eps
# 1e-7 instead of 1e-8 by 4e-4. The rules added since, measured the same way (torch 2.13, largest
# absolute difference, float32 / float64): Adamax 3.0e-8 / 5.6e-17, NAdam 8.9e-8 / 1.9e-16,
# RAdam 1.5e-8 / 2.8e-17 (its ten steps take both branches), Lion against LionOracle 0 / 0 (the
# same operations in the same dtype). NAdam in float64 only with torch's default dtype set to
# float64: torch keeps its running product mu_product in the default dtype, and with float32 it
# is off by 2e-10 after ten steps; fastoptim's product is float64 (docs/rules.rst). Mistakes
# (float32): NAdam with momentum_decay 4e-3 instead of 0.01 differs by 4.4e-5, Adamax with beta2
# 0.999 instead of 0.99 by 2.4e-3, RAdam against plain Adam by 9.5e-2, Lion without its weight
# decay by 4.0e-4. torch's options: Momentum with dampening 3.0e-8 / 2.8e-17, AdaGrad with
# lr_decay and initial_accumulator_value 1.5e-8 / 2.8e-17; mistakes (float32): dampening
# ignored 7.4e-2, lr_decay ignored 1.7e-2, the initial accumulator ignored 2.1e-1. The
# structural options (measured the same way): Adam with amsgrad
# 3.0e-8 / 5.6e-17, AdamW with amsgrad 6.0e-8 / 5.6e-17, centered RMSprop 8.9e-8 / 8.3e-17,
# RMSprop with momentum 2.8e-7 / 9.7e-16 and centered with momentum (and maximize) 3.9e-7 /
# 6.7e-16 (fastoptim's velocity holds lr-scaled steps, torch's g/avg times lr: one more
# rounding per step; still 2.5x inside the float32 bound); mistakes (float32): amsgrad
# ignored 7.5e-3 (Adam) and 1.1e-2 (AdamW), centered ignored 5.0e-2, momentum ignored 6.8e-1.
# LAMB against LambOracle (the paper's form in torch: explicit bias corrections, torch's
# norms): 3.0e-8 / 5.6e-17; mistakes (float32): the weight decay left out of u 1.8e-4, eps
# 1e-8 instead of 1e-6 4.2e-4.
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-14)}


def make_model(dtype):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(),
                                torch.nn.Linear(16, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 3))
    return model.to(dtype)


def batches(dtype):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(32, 6, generator=g, dtype=dtype),
             torch.randint(0, 3, (32,), generator=g)) for _ in range(STEPS)]


def backward(model, x, y):
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch_optim(name, dtype):
    cls, kw, torch_opt = CASES[name]
    # torch's per-step scalar state (NAdam's mu_product) in the parameters' dtype
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        _run_against_torch(cls, kw, torch_opt, dtype)
    finally:
        torch.set_default_dtype(default)


def _run_against_torch(cls, kw, torch_opt, dtype):
    ref_model = make_model(dtype)
    model = copy.deepcopy(ref_model)
    ref_opt = torch_opt(ref_model.parameters())
    opt = cls(**kw)
    # the idiom: NumPy views of the parameters, made once (they share memory)
    params = {n: p.detach().numpy() for n, p in model.named_parameters()}
    start = {n: v.copy() for n, v in params.items()}
    for x, y in batches(dtype):
        backward(ref_model, x, y)
        ref_opt.step()
        backward(model, x, y)
        # views of this step's gradients (zero_grad may have made new tensors)
        opt.update(params, {n: p.grad.numpy() for n, p in model.named_parameters()})
    for n, p in model.named_parameters():
        ref = dict(ref_model.named_parameters())[n].detach().numpy()
        assert not np.array_equal(p.detach().numpy(), start[n])  # the model itself moved
        np.testing.assert_allclose(p.detach().numpy(), ref, **TOL[dtype], err_msg=n)


# Schedule-Free AdamW against the authors' own ``schedulefree.AdamWScheduleFree`` (not a
# test dependency: skipped without it), with warmup, polynomial weighting and weight
# decay so that every scalar of the recurrence is exercised, and the average x compared
# after eval() too. fastoptim follows the authors' order of operations except torch's
# lerp (torch: ``end - (end - start)*(1 - w)`` for w >= 0.5, fastoptim always
# ``start + w*(end - start)``) and torch's vectorised division/sqrt, so each step differs
# by a few units in the last place. Measured (torch 2.13, schedulefree 1.4.1, the model
# above, ten steps, lr doubled at step 7): largest absolute difference 6.0e-8 (y) and
# 6.0e-8 (x) in float32, 8.3e-17 (y) and 1.1e-16 (x) in float64, inside TOL's bounds
# (the same as the torch.optim rules'). A real mistake is far outside them (float32):
# no weight decay differs by 3.9e-4, no warmup by 5.3e-2, r = 0 by 2.0e-2,
# weight_lr_power = 0 by 4.7e-2, the lr change missed by 6.6e-2.
SF_KW = dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, warmup_steps=4,
             r=0.5, weight_lr_power=2.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_schedulefree_adamw_matches_the_authors(dtype):
    schedulefree = pytest.importorskip("schedulefree")
    ref_model = make_model(dtype)
    model = copy.deepcopy(ref_model)
    ref_opt = schedulefree.AdamWScheduleFree(ref_model.parameters(), **SF_KW)
    ref_opt.train()
    opt = fo.ScheduleFreeAdamW(**SF_KW)
    opt.train({})  # harmless: fastoptim starts in train mode
    params = {n: p.detach().numpy() for n, p in model.named_parameters()}
    for i, (x, y) in enumerate(batches(dtype)):
        if i == 6:  # a change of lr mid-run: the optimizer-level history
            for group in ref_opt.param_groups:
                group["lr"] = 0.02
            opt.lr = 0.02
        backward(ref_model, x, y)
        ref_opt.step()
        backward(model, x, y)
        opt.update(params, {n: p.grad.numpy() for n, p in model.named_parameters()})
    refs = dict(ref_model.named_parameters())
    for n, p in params.items():
        np.testing.assert_allclose(p, refs[n].detach().numpy(), **TOL[dtype], err_msg=n)
    ref_opt.eval()
    opt.eval(params)
    for n, p in params.items():
        np.testing.assert_allclose(p, refs[n].detach().numpy(), **TOL[dtype], err_msg=n)


def test_tensors_directly_are_the_same_as_numpy_views():
    """Tensors handed over as they are (DLPack) give bit-identical results to NumPy
    views of the same tensors."""
    a, b = make_model(torch.float32), make_model(torch.float32)
    opt_a, opt_b = fo.Adam(lr=0.01), fo.Adam(lr=0.01)
    views = {n: p.detach().numpy() for n, p in a.named_parameters()}
    for x, y in batches(torch.float32):
        backward(a, x, y)
        opt_a.update(views, {n: p.grad.numpy() for n, p in a.named_parameters()})
        backward(b, x, y)
        opt_b.update({n: p.detach() for n, p in b.named_parameters()},
                     {n: p.grad for n, p in b.named_parameters()})
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(pa, pb), n


def test_parameter_that_requires_grad_is_refused_with_the_idiom():
    model = make_model(torch.float32)
    backward(model, *batches(torch.float32)[0])
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(TypeError,
                       match=r"torch\..*Parameter that NumPy cannot view.*p\.detach\(\)"):
        fo.SGD(lr=0.1).update(dict(model.named_parameters()),
                              {n: p.grad for n, p in model.named_parameters()})
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p, b)


def test_clip_grad_norm_on_torch_grads_matches_torch():
    model = make_model(torch.float64)
    ref_model = copy.deepcopy(model)
    x, y = batches(torch.float64)[0]
    backward(model, x, y)
    backward(ref_model, x, y)
    norm = fo.clip_grad_norm({n: p.grad for n, p in model.named_parameters()}, 0.1)
    ref_norm = torch.nn.utils.clip_grad_norm_(ref_model.parameters(), 0.1, foreach=False)
    assert norm > 0.1
    # the same sum of squares in another order: equal to rounding
    assert norm == pytest.approx(float(ref_norm), rel=1e-12)
    for p, r in zip(model.parameters(), ref_model.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), r.grad.numpy(), rtol=1e-12, atol=0)


def test_non_contiguous_tensor_is_refused():
    w = torch.zeros(4, 6)[:, ::2]
    with pytest.raises(TypeError, match="not contiguous"):
        fo.SGD().update({"w": w}, {"w": torch.ones(4, 3)})


@pytest.mark.parametrize("reader", ["numpy", "fastoptim"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_tensor_round_trip_is_zero_copy_and_in_place(reader, dtype, monkeypatch):
    """A tensor handed over as it is: its NumPy view is the tensor's memory and writeable
    (read by NumPy >= 2.1, or by fastoptim._dlpack, which NumPy < 2.1 gets), and update
    changes the tensor itself; the view keeps the tensor's storage alive."""
    if reader == "numpy" and not _dlpack.NUMPY_HAS_DLPACK_1:
        pytest.skip(f"NumPy {np.__version__} cannot read DLPack 1.0 capsules")
    if reader == "fastoptim":
        monkeypatch.setattr(_dlpack, "NUMPY_HAS_DLPACK_1", False)
    w = torch.linspace(-1, 1, 50_001, dtype=dtype)  # above the parallel threshold
    ptr = w.data_ptr()
    v = _core.dlpack_view("w", w, writeable=True)
    assert v.flags.writeable and v.__array_interface__["data"][0] == ptr
    assert np.shares_memory(v, w.numpy())
    v[0] = 5.0
    assert w[0].item() == 5.0
    expected = w.numpy() - np.asarray(0.5, w.numpy().dtype) * 2
    fo.SGD(lr=0.5).update({"w": w}, {"w": torch.full_like(w, 2.0)})
    assert w.data_ptr() == ptr
    assert np.array_equal(w.numpy(), expected)
    t = torch.arange(7, dtype=dtype)
    v = _core.dlpack_view("t", t, writeable=True)
    del t
    gc.collect()
    assert np.array_equal(v, np.arange(7))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_schedulefree_param_groups_match_the_authors(dtype):
    """Schedule-Free AdamW with groups against the authors' param groups, each with its
    own lr_max and weight_sum: biases at another lr without decay, the last layer with
    other betas and warmup; one group's lr changed mid-run. The tolerance of
    test_schedulefree_adamw_matches_the_authors (largest absolute difference measured:
    3.7e-8 (y) and 4.5e-8 (x) float32, 1.1e-16 float64; far outside it, float32: without
    the groups 2.3e-2, the group's lr change missed 1.3e-2)."""
    schedulefree = pytest.importorskip("schedulefree")
    ref_model = make_model(dtype)
    model = copy.deepcopy(ref_model)
    named = dict(ref_model.named_parameters())
    last = "4.weight"
    biases = [p for n, p in named.items() if n.endswith("bias")]
    weights = [p for n, p in named.items() if n.endswith("weight") and n != last]
    ref_opt = schedulefree.AdamWScheduleFree([
        {"params": weights},
        {"params": biases, "lr": 0.004, "weight_decay": 0.0},
        {"params": [named[last]], "betas": (0.8, 0.99), "warmup_steps": 2},
    ], **SF_KW)
    ref_opt.train()
    opt = fo.ScheduleFreeAdamW(**SF_KW, groups=[
        {"match": "*.bias", "lr": 0.004, "weight_decay": 0.0},
        {"keys": [last], "betas": (0.8, 0.99), "warmup_steps": 2}])
    params = {n: p.detach().numpy() for n, p in model.named_parameters()}
    for i, (x, y) in enumerate(batches(dtype)):
        if i == 6:
            ref_opt.param_groups[1]["lr"] = 0.008
            opt.param_groups[1].lr = 0.008
        backward(ref_model, x, y)
        ref_opt.step()
        backward(model, x, y)
        opt.update(params, {n: p.grad.numpy() for n, p in model.named_parameters()})
    for n, p in params.items():
        np.testing.assert_allclose(p, named[n].detach().numpy(), **TOL[dtype], err_msg=n)
    ref_opt.eval()
    opt.eval(params)
    for n, p in params.items():
        np.testing.assert_allclose(p, named[n].detach().numpy(), **TOL[dtype], err_msg=n)
    assert opt.optimizer_state["weight_sum"] == pytest.approx(
        [g["weight_sum"] for g in ref_opt.param_groups], rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_param_groups_match_torch(dtype):
    """fastoptim's groups against torch.optim's param groups: biases without weight
    decay, the last layer at another learning rate, Adam; the same tolerance as above
    (measured 3.0e-8 float32, 5.6e-17 float64; without the groups 8.4e-2)."""
    ref_model = make_model(dtype)
    model = copy.deepcopy(ref_model)
    named = dict(ref_model.named_parameters())
    last = "4.weight"
    biases = [p for n, p in named.items() if n.endswith("bias")]
    weights = [p for n, p in named.items() if n.endswith("weight") and n != last]
    ref_opt = torch.optim.Adam([
        {"params": weights},
        {"params": biases, "weight_decay": 0.0},
        {"params": [named[last]], "lr": 0.002},
    ], lr=0.01, weight_decay=0.01)
    opt = fo.Adam(lr=0.01, weight_decay=0.01, groups=[
        {"match": "*.bias", "weight_decay": 0.0}, {"keys": [last], "lr": 0.002}])
    params = {n: p.detach().numpy() for n, p in model.named_parameters()}
    for x, y in batches(dtype):
        backward(ref_model, x, y)
        ref_opt.step()
        backward(model, x, y)
        opt.update(params, {n: p.grad.numpy() for n, p in model.named_parameters()})
    assert {n: s["group"] for n, s in opt.state.items()} == {
        "0.weight": 0, "0.bias": 1, "2.weight": 0, "2.bias": 1, "4.weight": 2, "4.bias": 1}
    for n, p in model.named_parameters():
        np.testing.assert_allclose(p.detach().numpy(), named[n].detach().numpy(),
                                   **TOL[dtype], err_msg=n)


# The ``ema`` option against torch's own moving average of a model's parameters,
# ``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn(decay)`` (a copy of
# the parameters at its first ``update_parameters``, then ``a.lerp_(p, 1 - decay)``),
# updated after each torch.optim.Adam step: the same convention as fastoptim's (a = p
# after the first step). torch's lerp rounds differently from fastoptim's
# ``d*a + (1-d)*p``, and the parameters carry Adam's own differences (above). Measured
# (torch 2.13, the model above, ten steps, decay 0.8): largest absolute difference of the
# averages 6.0e-8 in float32 and 8.3e-17 in float64, inside TOL's bounds. Mistakes
# (float32): the average of the parameters before each step instead of after differs by
# 9.6e-3, a first average mixed with zeros (0.8*0 + 0.2*p) by 4.3e-2.
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_ema_matches_torch_averaged_model(dtype):
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    ref_model = make_model(dtype)
    model = copy.deepcopy(ref_model)
    kw = dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.01)
    ref_opt = torch.optim.Adam(ref_model.parameters(), **kw)
    averaged = AveragedModel(ref_model, multi_avg_fn=get_ema_multi_avg_fn(0.8))
    opt = fo.Adam(**kw, ema=0.8)
    params = {n: p.detach().numpy() for n, p in model.named_parameters()}
    for x, y in batches(dtype):
        backward(ref_model, x, y)
        ref_opt.step()
        averaged.update_parameters(ref_model)
        backward(model, x, y)
        opt.update(params, {n: p.grad.numpy() for n, p in model.named_parameters()})
    ref_avgs = {n: p.detach().numpy() for n, p in averaged.module.named_parameters()}
    for n in params:
        np.testing.assert_allclose(opt.state[n]["ema"], ref_avgs[n], **TOL[dtype], err_msg=n)
        assert not np.allclose(opt.state[n]["ema"], params[n], **TOL[dtype])
    with opt.ema_applied(params):  # the torch model itself evaluates at the averages
        for n, p in model.named_parameters():
            np.testing.assert_allclose(p.detach().numpy(), ref_avgs[n], **TOL[dtype])
