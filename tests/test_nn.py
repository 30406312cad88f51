"""fastoptim.demo.nn: every layer and loss against numerical differentiation (central
differences in float64), parameters shared with the optimizer, train/eval modes."""

import numpy as np
import pytest

import fastoptim as fo
from fastoptim.demo import nn

# Central differences with step H in float64: truncation ~H**2 * f''' and rounding
# ~1e-16 * |f| / H, both far below these tolerances for the O(1) values used here.
H = 1e-5
RTOL, ATOL = 1e-6, 1e-8


def away_from_zero(rng, shape, margin=0.05):
    """Inputs at least ``margin`` from 0, so no central difference straddles a kink."""
    x = rng.uniform(margin, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    return x


def check_layer(layer, x, train=True, reset=None):
    """Compare backward() with numerical derivatives of f = sum(forward(x) * R) with
    respect to x and every parameter."""
    rng = np.random.default_rng(123)
    if reset:
        reset()
    out = layer.forward(x, train=train)
    r = rng.standard_normal(out.shape)

    def f():
        if reset:
            reset()
        return float(np.sum(layer.forward(x, train=train) * r))

    if reset:
        reset()
    layer.forward(x, train=train)
    dx = layer.backward(r)
    grads = {k: v.copy() for k, v in layer.grads.items()}
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, nn.numerical_gradient(f, x, H), rtol=RTOL, atol=ATOL)
    assert set(grads) == set(layer.params)
    for name, p in layer.params.items():
        assert grads[name].shape == p.shape and grads[name].dtype == p.dtype
        np.testing.assert_allclose(grads[name], nn.numerical_gradient(f, p, H),
                                   rtol=RTOL, atol=ATOL, err_msg=name)


def test_affine_gradients():
    rng = np.random.default_rng(0)
    layer = nn.Dense(6, 4, init=0.5, rng=rng, dtype=np.float64)
    layer.b[...] = rng.standard_normal(4)
    check_layer(layer, rng.standard_normal((5, 6)))


def test_affine_flattens_higher_dimensional_input():
    rng = np.random.default_rng(1)
    layer = nn.Affine(rng.standard_normal((12, 3)), rng.standard_normal(3))
    x = rng.standard_normal((4, 3, 2, 2))
    check_layer(layer, x)
    assert np.allclose(layer.forward(x), x.reshape(4, 12) @ layer.W + layer.b)


@pytest.mark.parametrize("layer", [nn.ReLU(), nn.LeakyReLU(0.01), nn.LeakyReLU(0.2),
                                   nn.Sigmoid(), nn.Tanh()], ids=repr)
def test_activation_gradients(layer):
    rng = np.random.default_rng(2)
    check_layer(layer, away_from_zero(rng, (7, 5)))


def test_activation_values():
    x = np.array([-3.0, -0.5, 0.0, 0.5, 3.0])
    assert np.array_equal(nn.ReLU().forward(x), [0.0, 0.0, 0.0, 0.5, 3.0])
    assert np.allclose(nn.LeakyReLU(0.01).forward(x), [-0.03, -0.005, 0.0, 0.5, 3.0])
    assert np.allclose(nn.Sigmoid().forward(x), 1 / (1 + np.exp(-x)), rtol=1e-15)
    assert np.allclose(nn.Tanh().forward(x), np.tanh(x))
    with np.errstate(over="raise"):
        y = nn.Sigmoid().forward(np.array([-1000.0, 1000.0]))
    assert np.array_equal(y, [0.0, 1.0])


def test_dropout_gradients_with_a_fixed_mask():
    rng = np.random.default_rng(3)
    layer = nn.Dropout(0.3)

    def reset():
        layer.rng = np.random.default_rng(7)
    check_layer(layer, rng.standard_normal((6, 8)), reset=reset)


def test_dropout_modes():
    x = np.ones((400, 500), dtype=np.float32)
    layer = nn.Dropout(0.25, rng=np.random.default_rng(0))
    y = layer.forward(x, train=True)
    assert y.dtype == np.float32
    kept = y != 0
    assert np.all(y[kept] == np.float32(1 / 0.75))           # inverted scaling
    assert abs(kept.mean() - 0.75) < 0.01                    # keep probability 1 - ratio
    assert np.array_equal(layer.backward(np.ones_like(x)), y)
    assert layer.forward(x, train=False) is x                # evaluation: identity
    assert layer.backward(x) is x


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_gradients(train):
    rng = np.random.default_rng(4)
    layer = nn.BatchNorm(5, dtype=np.float64)
    layer.gamma[...] = rng.uniform(0.5, 2.0, 5)
    layer.beta[...] = rng.standard_normal(5)
    layer.running_mean[...] = rng.standard_normal(5)
    layer.running_var[...] = rng.uniform(0.5, 2.0, 5)
    check_layer(layer, rng.standard_normal((8, 5)) * 3 + 1, train=train)


def test_batchnorm_modes_and_running_statistics():
    rng = np.random.default_rng(5)
    layer = nn.BatchNorm(3, momentum=0.9, eps=1e-5, dtype=np.float64)
    rm, rv = layer.running_mean, layer.running_var
    x = rng.standard_normal((50, 3)) * 2 + 5
    y = layer.forward(x, train=True)
    assert np.allclose(y.mean(axis=0), 0, atol=1e-12)
    assert np.allclose(y.var(axis=0), x.var(axis=0) / (x.var(axis=0) + 1e-5))
    assert layer.running_mean is rm and layer.running_var is rv   # updated in place
    assert np.allclose(rm, 0.1 * x.mean(axis=0))
    assert np.allclose(rv, 0.9 + 0.1 * x.var(axis=0))
    before = (rm.copy(), rv.copy())
    y_eval = layer.forward(x, train=False)
    assert np.array_equal(rm, before[0]) and np.array_equal(rv, before[1])
    assert np.allclose(y_eval, (x - rm) / np.sqrt(rv + 1e-5))
    assert set(layer.params) == {"gamma", "beta"}


@pytest.mark.parametrize("one_hot", [False, True])
def test_softmax_cross_entropy(one_hot):
    rng = np.random.default_rng(6)
    y = rng.standard_normal((6, 4)) * 3
    labels = rng.integers(0, 4, 6)
    t = np.eye(4)[labels] if one_hot else labels
    loss = nn.SoftmaxCrossEntropy()
    value = loss.forward(y, t)
    p = np.exp(y) / np.exp(y).sum(axis=1, keepdims=True)
    assert value == pytest.approx(-np.mean(np.log(p[np.arange(6), labels])), rel=1e-12)
    dy = loss.backward()
    np.testing.assert_allclose(dy, nn.numerical_gradient(lambda: loss.forward(y, t), y, H),
                               rtol=RTOL, atol=ATOL)
    # stable for huge scores
    big = nn.SoftmaxCrossEntropy().forward(np.array([[1000.0, 0.0]]), np.array([1]))
    assert big == pytest.approx(1000.0)


def test_mse_loss_is_the_seed_formula():
    # Seed 004: E = (1/N) * sum_i (y_i - yhat_i)**2
    yhat = np.array([[4.8], [2.7], [3.9]])
    y = np.array([5.0, 2.5, 4.0])
    loss = nn.MSELoss()
    assert loss.forward(yhat, y) == pytest.approx(((y - yhat[:, 0]) ** 2).sum() / 3, rel=1e-15)
    rng = np.random.default_rng(7)
    yhat = rng.standard_normal((5, 2))
    t = rng.standard_normal((5, 2))
    loss.forward(yhat, t)
    np.testing.assert_allclose(loss.backward(),
                               nn.numerical_gradient(lambda: loss.forward(yhat, t), yhat, H),
                               rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("kw", [
    dict(activation="relu", loss="softmax"),
    dict(activation="leaky_relu", loss="softmax", batchnorm=True),
    dict(activation="sigmoid", loss="mse"),
    dict(activation="tanh", loss="mse", batchnorm=True, dropout=0.2),
], ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_mlp_gradient_matches_numerical(kw):
    rng = np.random.default_rng(8)
    net = nn.MLP([5, 7, 6, 3], dtype=np.float64, seed=1, **kw)
    for p in net.params.values():      # move away from the initial zeros and ones
        p += rng.standard_normal(p.shape) * 0.1
    x = rng.standard_normal((9, 5))
    t = rng.integers(0, 3, 9) if kw["loss"] == "softmax" else rng.standard_normal((9, 3))
    drops = [layer for layer in net.layers if isinstance(layer, nn.Dropout)]

    def reset():
        for i, layer in enumerate(drops):
            layer.rng = np.random.default_rng(100 + i)

    def f():
        reset()
        return net.loss(x, t, train=True)

    reset()
    grads = net.gradient(x, t)
    assert list(grads) == list(net.params)
    for key, p in net.params.items():
        assert grads[key].dtype == p.dtype and grads[key].shape == p.shape
        np.testing.assert_allclose(grads[key], nn.numerical_gradient(f, p, H),
                                   rtol=RTOL, atol=ATOL, err_msg=key)


def test_keys_and_shared_arrays():
    net = nn.MLP([4, 5, 6, 3], batchnorm=True, dropout=0.1, seed=0)
    assert list(net.params) == ["W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2",
                                "beta2", "W3", "b3"]
    dense = [la for la in net.layers if isinstance(la, nn.Dense)]
    bns = [la for la in net.layers if isinstance(la, nn.BatchNorm)]
    assert net.params["W2"] is dense[1].W and net.params["b3"] is dense[2].b
    assert net.params["gamma2"] is bns[1].gamma
    assert not any(a is bn.running_mean or a is bn.running_var
                   for a in net.params.values() for bn in bns)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_optimizer_updates_the_model_in_place(dtype):
    rng = np.random.default_rng(9)
    net = nn.MLP([3, 8, 2], dtype=dtype, seed=0)
    ids = {k: id(v) for k, v in net.params.items()}
    x = rng.standard_normal((16, 3))          # float64 input: converted to the model's dtype
    t = (x[:, 0] > 0).astype(int)
    before = net.predict(x).copy()
    grads = net.gradient(x, t)
    assert all(g.dtype == dtype for g in grads.values())
    opt = fo.Adam(lr=0.05)
    opt.update(net.params, grads)             # no dtype error: grads match the params
    assert {k: id(v) for k, v in net.params.items()} == ids
    assert net.layers[0].W is net.params["W1"]
    assert not np.array_equal(net.predict(x), before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mlp_learns_a_separable_problem(dtype):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((200, 2))
    t = (x[:, 0] + 2 * x[:, 1] > 0).astype(int)
    net = nn.MLP([2, 16, 2], dtype=dtype, seed=0, batchnorm=True, dropout=0.1)
    opt = fo.Adam(lr=0.05)
    first = net.loss(x, t)
    for _ in range(60):
        opt.update(net.params, net.gradient(x, t))
    assert net.loss(x, t) < first / 3
    assert net.accuracy(x, t) > 0.95
    assert net.accuracy(x, np.eye(2)[t]) == net.accuracy(x, t)


def test_initialisers():
    rng = np.random.default_rng(11)
    W = nn.he_normal(1000, 500, rng, np.float64)
    assert W.shape == (1000, 500) and abs(W.std() / np.sqrt(2 / 1000) - 1) < 0.01
    W = nn.xavier_normal(400, 500, rng, np.float32)
    assert W.dtype == np.float32 and abs(W.std() / np.sqrt(1 / 400) - 1) < 0.01
    net = nn.MLP([10, 5, 2], activation="tanh", seed=0)
    assert net.layers[0].W.std() < 0.6    # xavier (1/sqrt(10) ~ 0.32), not he (0.45)
    assert np.array_equal(nn.MLP([3, 4, 2], seed=5).params["W1"],
                          nn.MLP([3, 4, 2], seed=5).params["W1"])


def test_load_params_in_place():
    a, b = nn.MLP([3, 4, 2], seed=0), nn.MLP([3, 4, 2], seed=1)
    W1 = b.params["W1"]
    b.load_params(a.params)
    assert b.params["W1"] is W1 and np.array_equal(W1, a.params["W1"])
    with pytest.raises(ValueError, match="keys"):
        b.load_params({"W1": W1})


@pytest.mark.parametrize("make, exc, match", [
    (lambda: nn.MLP([3]), ValueError, "at least two"),
    (lambda: nn.MLP([3, 2], activation="gelu"), ValueError, "activation"),
    (lambda: nn.MLP([3, 2], loss="hinge"), ValueError, "loss"),
    (lambda: nn.MLP([3, 2], dtype=np.float16), TypeError, "float32 or float64"),
    (lambda: nn.Dense(3, 2, init="lecun"), ValueError, "init"),
    (lambda: nn.Affine(np.ones((3, 2)), np.ones(3)), ValueError, "W must be 2-D"),
    (lambda: nn.Dropout(1.0), ValueError, "ratio"),
    (lambda: nn.LeakyReLU(-1), ValueError, "alpha"),
    (lambda: nn.BatchNorm(3, momentum=1.0), ValueError, "momentum"),
    (lambda: nn.BatchNorm(3).forward(np.ones((2, 3, 1)), train=True), ValueError, "BatchNorm"),
    (lambda: nn.SoftmaxCrossEntropy().forward(np.ones((2, 3)), np.ones(2)), TypeError, "integers"),
    (lambda: nn.MLP([3, 2], seed=1, rng=np.random.default_rng()), ValueError, "rng or seed"),
])
def test_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()
