"""Rules checked against published implementations outside torch.optim, which has none
of them: Lion against ``pytorch-optimizer`` (kozistr/pytorch_optimizer, its ``Lion``:
the paper's Program 1 with decoupled decay ``p *= 1 - lr*weight_decay``, the form
fastoptim follows). Skipped unless torch and pytorch-optimizer are installed; CI's
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
