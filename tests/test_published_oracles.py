"""Rules checked against published implementations outside torch.optim, which has none
of them: Lion against ``pytorch-optimizer`` (kozistr/pytorch_optimizer, its ``Lion``:
the paper's Program 1 with decoupled decay ``p *= 1 - lr*weight_decay``, the form
fastoptim follows), and LAMB against its ``Lamb`` where the forms agree (below).
Skipped unless torch and pytorch-optimizer are installed; CI's
torch step installs both and runs this file.

Tolerance: pytorch-optimizer moves the momentum with ``lerp`` (``m + (1-b)*(g - m)``),
fastoptim with ``b*m + (1-b)*g``: the same value, rounded differently, so the momentum
agrees to a few units in the last place (bounds 1e-6 float32, 1e-15 float64, for
values of order one; measured 1.5e-7 and 2.2e-16 over 20 steps). The parameter moves
by ``lr*sign(...)``, so it is the same bit for bit unless rounding flips the sign of
an interpolation that is within an ulp of zero: none does on these inputs (measured:
every parameter array identical), and the test asserts exactly that.
"""

import numpy as np
import pytest

import fastoptim as fo

torch = pytest.importorskip("torch")
pytorch_optimizer = pytest.importorskip("pytorch_optimizer")

SHAPES = [(100, 50), (50,), (7, 3, 5)]
MOMENTUM_ATOL = {np.float32: 1e-6, np.float64: 1e-15}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hyper", [
    dict(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0),
    dict(lr=3e-3, betas=(0.8, 0.95), weight_decay=0.1),
], ids=["default", "decay"])
def test_lion_matches_pytorch_optimizer(dtype, hyper):
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    tensors = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    theirs = pytorch_optimizer.Lion(tensors, **hyper)
    ours = fo.Lion(**hyper)
    for _ in range(20):
        grads = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
        for t, g in zip(tensors, grads):
            t.grad = torch.tensor(g)
        theirs.step()
        ours.update(params, grads)
    start = np.random.default_rng(0)
    for i, (p, t) in enumerate(zip(params, tensors)):
        assert not np.array_equal(p, start.standard_normal(SHAPES[i]).astype(dtype))
        assert np.array_equal(p, t.detach().numpy()), i
        np.testing.assert_allclose(ours.state[i]["exp_avg"],
                                   theirs.state[t]["exp_avg"].numpy(), rtol=0,
                                   atol=MOMENTUM_ATOL[dtype])


# LAMB against pytorch-optimizer's ``Lamb`` where the two follow the same form. Theirs
# (4.1.0) differs from the paper's Algorithm 2, which fastoptim follows (as NVIDIA apex's
# FusedLAMB and timm's Lamb), in four ways, each set aside here: it leaves v without bias
# correction (so eps is not scaled) and, unless ``adam_debias=True``, divides the step by
# 1-b1**t outside the normalised direction (its step is then 1/(1-b1**t) times the
# paper's: 5x at step 1 with b1 0.8); it adds eps to ||u|| in the ratio; it clips ||p||
# at 10 (the paper's optional phi); its weight decay is decoupled, applied to p before the
# norms, where the paper puts wd*p inside u. With eps = 0, weight_decay = 0,
# adam_debias=True and every ||p|| < 10 the two are the same update: the bias
# corrections cancel in ||p||/||u|| * u. The parameters then agree to rounding (the norms
# summed in another order, torch's division and square root): measured over 20 steps,
# largest difference 3.0e-8 float32 and 5.6e-17 float64 (bounds 1e-6 and 1e-14 below).
# The mistakes the bounds catch (float32): their default (adam_debias=False) differs by
# 4.3e-3 at step 1, the weight decay inside u left out (fastoptim's weight_decay=0.01
# against theirs at 0) by 1.9e-4 over 20 steps.
LAMB_SHAPES = [(100, 50), (50,), (7, 3, 5)]
LAMB_ATOL = {np.float32: 1e-6, np.float64: 1e-14}


def _lamb_pair(dtype, ours_hyper, theirs_hyper, steps=20):
    rng = np.random.default_rng(1)
    params = [(0.1 * rng.standard_normal(s)).astype(dtype) for s in LAMB_SHAPES]
    assert all(np.linalg.norm(p) < 10 for p in params)  # pytorch-optimizer's clip is off
    tensors = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    theirs = pytorch_optimizer.Lamb(tensors, **theirs_hyper)
    ours = fo.LAMB(**ours_hyper)
    start = [p.copy() for p in params]
    for _ in range(steps):
        grads = [rng.standard_normal(s).astype(dtype) for s in LAMB_SHAPES]
        for t, g in zip(tensors, grads):
            t.grad = torch.tensor(g)
        theirs.step()
        ours.update(params, grads)
    for p, s in zip(params, start):
        assert not np.allclose(p, s)
    return params, [t.detach().numpy() for t in tensors]


SAME_FORM = dict(lr=0.01, betas=(0.8, 0.99), eps=0.0, weight_decay=0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lamb_matches_pytorch_optimizer_in_the_same_form(dtype):
    ours, theirs = _lamb_pair(dtype, SAME_FORM, dict(SAME_FORM, adam_debias=True))
    for i, (p, t) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(p, t, rtol=0, atol=LAMB_ATOL[dtype], err_msg=str(i))


def test_lamb_tolerance_catches_the_other_forms():
    ours, theirs = _lamb_pair(np.float32, SAME_FORM, SAME_FORM, steps=1)  # their default
    assert max(np.abs(p - t).max() for p, t in zip(ours, theirs)) > 100 * LAMB_ATOL[np.float32]
    ours, theirs = _lamb_pair(np.float32, dict(SAME_FORM, weight_decay=0.01),
                              dict(SAME_FORM, adam_debias=True))
    assert max(np.abs(p - t).max() for p, t in zip(ours, theirs)) > 10 * LAMB_ATOL[np.float32]
