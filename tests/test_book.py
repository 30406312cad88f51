"""The book drop-in ("Deep Learning from Scratch", ch06): numbers as the values of a
params dict or list (Python floats and ints, NumPy float64/float32 scalars) are updated
the way the book's optimizers update them -- the value is rebound, state is kept per
key -- with the numbers of a one-element array; and torch.optim's constructor call
(parameters first) gets an error that says what to do.
"""

import collections
import inspect
import math

import numpy as np
import pytest
from book_code import BookAdaGrad, BookAdam, BookMomentum, BookSGD

import fastoptim as fo
from fastoptim import functional as F

# ---------------------------------------------------------------------------------------
# The book's ch06/optimizer_compare_naive.py, as the book writes it (without the plots)
# ---------------------------------------------------------------------------------------

def f(x, y):
    return x**2 / 20.0 + y**2


def df(x, y):
    return x / 10.0, 2.0 * y


def compare_naive(optimizers):
    """The script's loop, unchanged: Python floats in ``params``, the history lists
    filled with ``params['x']`` and ``params['y']`` themselves."""
    init_pos = (-7.0, 2.0)
    params = {}
    params['x'], params['y'] = init_pos[0], init_pos[1]
    grads = {}
    grads['x'], grads['y'] = 0, 0
    histories = {}
    for key in optimizers:
        optimizer = optimizers[key]
        x_history = []
        y_history = []
        params['x'], params['y'] = init_pos[0], init_pos[1]
        for i in range(30):  # noqa: B007 (the book's loop, as it writes it)
            x_history.append(params['x'])
            y_history.append(params['y'])
            grads['x'], grads['y'] = df(params['x'], params['y'])
            optimizer.update(params, grads)
        histories[key] = (x_history, y_history)
    return histories


def compare_with_arrays(optimizers):
    """The same loop with one-element float64 arrays (and copies in the history, since
    arrays are updated in place)."""
    histories = {}
    for key, optimizer in optimizers.items():
        params = {"x": np.array([-7.0]), "y": np.array([2.0])}
        xs, ys = [], []
        for _ in range(30):
            xs.append(float(params["x"][0]))
            ys.append(float(params["y"][0]))
            gx, gy = df(params["x"], params["y"])
            optimizer.update(params, {"x": gx, "y": gy})
        histories[key] = (xs, ys)
    return histories


def book_optimizers(**extra):
    # the script's hyper-parameters (ch06/optimizer_compare_naive.py)
    opts = collections.OrderedDict()
    opts["SGD"] = fo.SGD(lr=0.95, **extra)
    opts["Momentum"] = fo.Momentum(lr=0.1, **extra)
    opts["AdaGrad"] = fo.AdaGrad(lr=1.5, **extra)
    opts["Adam"] = fo.Adam(lr=0.3, **extra)
    return opts


def the_books():
    opts = collections.OrderedDict()
    opts["SGD"] = BookSGD(lr=0.95)
    opts["Momentum"] = BookMomentum(lr=0.1)
    opts["AdaGrad"] = BookAdaGrad(lr=1.5)
    opts["Adam"] = BookAdam(lr=0.3)
    return opts


@pytest.mark.parametrize("backend", ["compiled", "numpy"])
def test_the_books_script_runs_unchanged(backend):
    hist = compare_naive(book_optimizers(backend=backend))
    for key, (xs, ys) in hist.items():
        # a Python float stays a Python float, so the history holds 30 values, not 30
        # references to one array (issue 14's paths collapsed to a dot)
        assert all(type(v) is float for v in xs + ys), key
        assert len(set(zip(xs, ys))) == 30, key
        assert (xs[0], ys[0]) == (-7.0, 2.0)
        assert f(xs[-1], ys[-1]) < f(-7.0, 2.0) / 3, key  # it goes downhill
    # the same numbers, bit for bit, as one-element float64 arrays
    assert hist == compare_with_arrays(book_optimizers(backend=backend))


def test_the_books_script_draws_the_books_picture():
    ours = compare_naive(book_optimizers())
    book = compare_naive(the_books())
    # SGD is the book's rule; Momentum stores v with the other sign (docs/rules.rst,
    # "the sign of the velocity"), and negation is exact: both bit for bit
    for key in ("SGD", "Momentum"):
        assert ours[key] == tuple([float(v) for v in h] for h in book[key]), key
    # AdaGrad: fastoptim's eps is torch's 1e-10, not the book's 1e-7 (measured: the paths
    # differ by 3.7e-7). Adam: fastoptim's eps is 1e-8 and is added to sqrt(v) as
    # eps_hat = eps*sqrt(1-beta2^t) (the paper's efficient form, docs/rules.rst); the
    # book adds its 1e-7 to sqrt(v) as it is, i.e. an eps of 1e-7/sqrt(1-beta2^t) on the
    # bias-corrected form (3.2e-6 at t=1, 5.8e-7 at t=30), which matters where |g| gets
    # small on the y path (measured: 9.5e-6 on coordinates up to 7). Tolerance 1e-4:
    # ten times the measured difference, far below the scale of the picture.
    for key in ("AdaGrad", "Adam"):
        for a, b in zip(ours[key], book[key]):
            np.testing.assert_allclose(a, np.array(b, dtype=float), rtol=0, atol=1e-4)
    # with the book's eps AdaGrad differs only in rounding (lr*(g/d) against lr*g/d)
    ours = compare_naive({"AdaGrad": fo.AdaGrad(lr=1.5, eps=1e-7)})
    np.testing.assert_allclose(ours["AdaGrad"], np.array(book["AdaGrad"], dtype=float),
                               rtol=0, atol=1e-14)
    # and with the book's Adam given fastoptim's eps_hat, so does Adam (the book's
    # m += (1-beta1)*(g-m) rounds differently from beta1*m + (1-beta1)*g): the whole
    # difference above is where eps goes
    ours = compare_naive({"Adam": fo.Adam(lr=0.3)})
    book = compare_naive({"Adam": BookAdam(lr=0.3, eps_hat=1e-8)})
    np.testing.assert_allclose(ours["Adam"], np.array(book["Adam"], dtype=float),
                               rtol=0, atol=1e-14)


# ---------------------------------------------------------------------------------------
# Numbers as the values of params: types, state, the transaction
# ---------------------------------------------------------------------------------------

ALL = [fo.SGD, fo.Momentum, fo.Nesterov, fo.AdaGrad, fo.RMSprop, fo.AdaDelta, fo.Adam,
       fo.AdamW]


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
@pytest.mark.parametrize("backend", ["compiled", "numpy"])
def test_each_kind_of_number_keeps_its_type_and_the_arrays_numbers(cls, backend):
    params = {"f": -7.0, "i": 3, "d": np.float64(2.5), "s": np.float32(-1.5),
              "w": np.linspace(-1, 1, 5)}
    twins = {"f": np.array([-7.0]), "i": np.array([3.0]), "d": np.array([2.5]),
             "s": np.array([-1.5], np.float32), "w": np.linspace(-1, 1, 5)}
    opt, ref = cls(backend=backend), cls(backend=backend)
    for step in range(4):
        grads = {"f": 0.5 * params["f"], "i": -0.25, "d": np.float64(params["d"]),
                 "s": np.float32(0.75) * params["s"], "w": np.full(5, 0.1 * step)}
        tgrads = {k: np.asarray(v, dtype=twins[k].dtype).reshape(twins[k].shape)
                  for k, v in grads.items()}
        assert opt.update(params, grads) is True
        ref.update(twins, tgrads)
        assert type(params["f"]) is float and type(params["i"]) is float
        assert type(params["d"]) is np.float64 and type(params["s"]) is np.float32
        for k in ("f", "i", "d", "s"):
            assert np.asarray(params[k]).tobytes() == twins[k].tobytes(), (k, step)
            for name, buf in opt.state[k].items():
                if name != "step":
                    assert buf.dtype == twins[k].dtype and buf.shape == ()
                    assert buf.tobytes() == ref.state[k][name].tobytes()
        assert opt.state[k]["step"] == step + 1


def test_a_list_is_rebound_a_tuple_refused():
    lst = [1.0, np.ones(2)]
    fo.SGD(lr=0.5).update(lst, [2.0, np.ones(2)])
    assert lst[0] == 0.0 and type(lst[0]) is float
    tup = (1.0, np.ones(2))
    opt = fo.SGD(lr=0.5)
    with pytest.raises(TypeError, match=r"parameter 0 is a Python float in a tuple: .*"
                                        r"rebinding it .*pass the parameters in a list or a "
                                        r"dict, or keep each in a NumPy array"):
        opt.update(tup, (2.0, np.ones(2)))
    assert tup[1].tolist() == [1.0, 1.0] and opt.state == {}
    with pytest.raises(TypeError, match=r"parameter 0 is a NumPy float32 scalar in a tuple"):
        opt.update((np.float32(1),), (np.float32(1),))


def test_other_mappings_are_rebound_in_the_callers_object():
    params = collections.OrderedDict(x=1.0, w=np.ones(2))
    fo.SGD(lr=0.5).update(params, {"x": 1.0, "w": np.ones(2)})
    assert params["x"] == 0.5 and params["w"].tolist() == [0.5, 0.5]


def bad_calls():
    ok = np.ones(3)
    return [
        ({"x": 1.0, "w": ok.astype(np.int64)}, {"x": 1.0, "w": ok}, TypeError,
         r"parameter 'w' has dtype int64"),
        ({"x": 1.0, "w": ok}, {"x": "0.5", "w": ok}, TypeError,
         r"gradient 'x' must be a NumPy array, got str"),
        ({"x": np.float32(1.0), "w": ok}, {"x": np.float64(1.0), "w": ok}, TypeError,
         r"gradient 'x' has dtype float64 but its parameter is float32"),
        ({"x": 1.0, "w": ok}, {"x": np.ones(1), "w": ok}, ValueError,
         r"gradient 'x' has shape \(1,\) but its parameter has shape \(\)"),
        ({"x": 1.0, "w": ok, "b": True}, {"x": 1.0, "w": ok, "b": 1.0}, TypeError,
         r"parameter 'b' must be a NumPy array .*got bool.*takes Python floats"),
    ]


@pytest.mark.parametrize("backend", ["compiled", "numpy"])
@pytest.mark.parametrize("case", range(5))
def test_all_or_nothing_with_numbers(case, backend):
    params, grads, exc, match = bad_calls()[case]
    opt = fo.Adam(lr=0.1, backend=backend)
    good = {"x": params["x"], "w": np.ones(3)}
    opt.update(good, {"x": 1.0, "w": np.ones(3)})
    params["x"] = x0 = good["x"]
    if params["w"].dtype == np.float64:
        params["w"] = good["w"]
    w0, state0 = good["w"].copy(), opt.state_dict()
    with pytest.raises(exc, match=match):
        opt.update(params, grads)
    assert params["x"] is x0 and np.array_equal(good["w"], w0)
    after = opt.state_dict()["state"]
    assert after.keys() == state0["state"].keys()
    for k, st in after.items():
        for n, v in st.items():
            assert np.array_equal(v, state0["state"][k][n]), (k, n)


@pytest.mark.parametrize("backend", ["compiled", "numpy"])
def test_nan_in_nan_out_and_skip_nonfinite(backend):
    params = {"x": float("nan"), "y": 1.0}
    fo.Adam(backend=backend).update(params, {"x": 1.0, "y": 1.0})
    assert math.isnan(params["x"]) and params["y"] < 1.0
    params = {"x": 1.0, "y": 2.0}
    x0 = params["x"]
    opt = fo.Adam(skip_nonfinite=True, backend=backend)
    assert opt.update(params, {"x": 1.0, "y": float("inf")}) is False
    assert params["x"] is x0 and params["y"] == 2.0  # nothing rebound
    assert opt.state == {} and opt.skipped_steps == 1
    assert opt.update(params, {"x": 1.0, "y": 1.0}) is True
    assert params["x"] < 1.0 and opt.state["x"]["step"] == 1


def test_state_dict_and_checkpoints_round_trip(tmp_path):
    def grads(p):
        return {"x": p["x"] / 10.0, "y": np.float32(2.0) * p["y"]}

    straight = {"x": -7.0, "y": np.float32(2.0)}
    opt = fo.Adam(lr=0.3)
    for _ in range(6):
        opt.update(straight, grads(straight))
    for how in ("state_dict", "checkpoint"):
        params = {"x": -7.0, "y": np.float32(2.0)}
        first = fo.Adam(lr=0.3)
        for _ in range(3):
            first.update(params, grads(params))
        if how == "state_dict":
            second = fo.Adam()
            second.load_state_dict(first.state_dict())
        else:
            fo.save(first, tmp_path / "opt.ckpt")
            second = fo.load(tmp_path / "opt.ckpt")
        assert second.state["y"]["exp_avg"].dtype == np.float32
        for _ in range(3):
            second.update(params, grads(params))
        assert params == straight and type(params["y"]) is np.float32, how


def test_a_python_float_gradient_for_a_0d_array_parameter():
    p32, p64 = np.array(1.0, np.float32), np.array(1.0)
    fo.SGD(lr=0.1).update({"a": p32, "b": p64}, {"a": 0.5, "b": 0.5})
    assert p32 == np.float32(1.0) - np.float32(0.1) * np.float32(0.5)
    assert p64 == 1.0 - 0.1 * 0.5


def test_errors_for_numbers_where_they_cannot_be_rebound():
    with pytest.raises(TypeError, match=r"got float; a number passed alone cannot be "
                                        r"updated .*pass \{'x': x\}"):
        fo.SGD().update(1.0, 1.0)
    # the functional API updates arrays in place; no np.asarray advice for a number (a
    # 0-d array kept in a history list and updated in place changes every entry)
    with pytest.raises(TypeError, match=r"param must be a NumPy array .*got float; .*"
                                        r"1-element array that you keep") as info:
        F.sgd(1.0, 1.0, lr=0.1)
    assert "asarray" not in str(info.value)


# ---------------------------------------------------------------------------------------
# torch.optim's constructor call
# ---------------------------------------------------------------------------------------

def _parameters():
    yield np.ones(2)


@pytest.mark.parametrize("call, shown", [
    (lambda: fo.Adam([np.ones(2)], lr=1e-3), "fo.Adam(lr=0.001)"),
    (lambda: fo.SGD([np.ones(2)], 0.1), "fo.SGD(lr=0.1)"),
    (lambda: fo.Momentum({"w": np.ones(2)}, lr=0.1, momentum=0.5),
     "fo.Momentum(lr=0.1, momentum=0.5)"),
    (lambda: fo.AdamW(_parameters(), lr=1e-3, weight_decay=0.1),
     "fo.AdamW(lr=0.001, weight_decay=0.1)"),
    (lambda: fo.RMSprop(np.ones(3)), "fo.RMSprop()"),
    (lambda: fo.SGD([1.0, 2.0], lr=0.1), "fo.SGD(lr=0.1)"),
    (lambda: fo.Adam([{"params": [np.ones(2)], "lr": 0.1}]), "fo.Adam()"),
], ids=["list", "lr-positional", "dict", "generator", "ndarray", "floats", "groups"])
def test_torch_style_constructor_call(call, shown):
    with pytest.raises(TypeError) as info:
        call()
    msg = str(info.value)
    assert msg.startswith("fastoptim optimizers take the parameters in "
                          "update(params, grads), not in the constructor")
    assert f"use opt = {shown} and call opt.update(params, grads)" in msg
    assert "param groups, pass groups=[{'params': [...], 'lr': ...}]" in msg


def test_constructor_calls_that_work_still_work():
    assert fo.SGD(0.1).lr == 0.1
    assert fo.Adam(1e-3, (0.9, 0.99)).betas == (0.9, 0.99)
    assert fo.Momentum(0.1, 0.9).momentum == 0.9
    assert fo.Adam(np.float64(0.1)).lr == 0.1
    assert fo.Adam(lr=0.1, betas=[0.8, 0.9]).betas == (0.8, 0.9)
    # not parameters: the hyper-parameter's own error
    for bad, match in [((0.9, 0.99), r"lr must be a real number, got \(0\.9, 0\.99\)"),
                       ("0.1", "lr must be a real number"), (None, "lr must be a real")]:
        with pytest.raises(TypeError, match=match):
            fo.Adam(bad)
    assert str(inspect.signature(fo.Momentum)) == (
        "(lr=0.001, momentum=0.9, *, weight_decay=0.0, dampening=0.0, ema=0.0, "
        "state_dtype=None, maximize=False, num_threads=None, backend='compiled', "
        "skip_nonfinite=False, groups=None)")
