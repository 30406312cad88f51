"""``fastoptim.book``: the book's optimizer classes ("Deep Learning from Scratch",
``common/optimizer.py``) on the fused kernels, checked against the book's arithmetic
(``tests/book_code.py``), and the hints the top-level classes give for the book's and
Keras' keyword names.

Tolerances for the classes that are not bit-identical (AdaGrad, RMSprop, Adam, and
Nesterov against the look-ahead form): the book writes the same rule in another order of
operations, so each step may round differently by a few units in the last place; over
the 30-50 steps here, with values of order one, the measured differences are below
5e-15 (float64) and 3e-6 (float32), so the bounds are 1e-13 and 2e-5.
"""

import inspect
import pickle

import numpy as np
import pytest
from book_code import BOOK, LookAheadNesterov
from test_book import compare_naive, f

import fastoptim as fo
import fastoptim.book as B

EXACT = ("SGD", "Momentum")
CLOSE = ("AdaGrad", "RMSprop", "Adam")
ATOL = {np.float32: 2e-5, np.float64: 1e-13}

# The book's signatures, as its common/optimizer.py defines them
BOOK_SIGNATURES = {
    "SGD": "(lr=0.01)",
    "Momentum": "(lr=0.01, momentum=0.9)",
    "Nesterov": "(lr=0.01, momentum=0.9)",
    "AdaGrad": "(lr=0.01)",
    "RMSprop": "(lr=0.01, decay_rate=0.99)",
    "Adam": "(lr=0.001, beta1=0.9, beta2=0.999)",
}
OPTIONS = ", *, num_threads=None, backend='compiled', skip_nonfinite=False)"


def plain_signature(obj):
    """The signature without annotations, as a string."""
    sig = inspect.signature(obj)
    empty = inspect.Parameter.empty
    return str(sig.replace(parameters=[p.replace(annotation=empty)
                                       for p in sig.parameters.values()],
                           return_annotation=empty))


def oracle(name, **hyper):
    """The book's class for ``name``; for Nesterov, NAG in look-ahead form (the class
    fastoptim.book.Nesterov follows; the book's own is tested below)."""
    return (LookAheadNesterov if name == "Nesterov" else BOOK[name])(**hyper)


def test_import_star_gives_the_books_classes():
    ns = {}
    exec("from fastoptim.book import *", ns)  # noqa: S102 -- what the book's scripts do
    assert sorted(k for k in ns if not k.startswith("__")) == sorted(BOOK)


@pytest.mark.parametrize("name", sorted(BOOK_SIGNATURES))
def test_signatures_and_defaults_are_the_books(name):
    cls = getattr(B, name)
    assert plain_signature(cls) == BOOK_SIGNATURES[name][:-1] + OPTIONS
    # the oracle, written from the book, agrees (its Adam has one extra test keyword)
    sig = str(inspect.signature(BOOK[name])).replace(", eps_hat=None", "")
    assert sig == BOOK_SIGNATURES[name]
    opt = cls()
    assert repr(opt) == f"fastoptim.book.{name}{BOOK_SIGNATURES[name]}"
    if name in CLOSE:
        assert opt.eps == 1e-7 == B.EPS
    # the top-level class keeps torch.optim's defaults (SGD's lr 1e-3, AdaGrad's eps
    # 1e-10, ...): one of lr and eps differs
    top = getattr(fo, name)()
    assert (top.lr, getattr(top, "eps", None)) != (opt.lr, getattr(opt, "eps", None))


def _run(make, dtype, steps, size, seed, scale=1.0, as_list=False):
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(size).astype(dtype) for k in ("W", "b")}
    grads = [{k: (scale * rng.standard_normal(size)).astype(dtype) for k in params}
             for _ in range(steps)]
    opt = make()
    if as_list:
        plist = list(params.values())
        for g in grads:
            opt.update(plist, list(g.values()))
        return dict(zip(params, plist))
    for g in grads:
        opt.update(params, g)
    return params


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", EXACT)
@pytest.mark.parametrize("backend, num_threads, size", [
    ("compiled", None, 1000), ("compiled", 2, 300_000), ("numpy", None, 1000)])
def test_sgd_and_momentum_are_bit_identical_to_the_book(name, dtype, backend, num_threads,
                                                        size):
    hyper = {"lr": 0.05} if name == "SGD" else {"lr": 0.05, "momentum": 0.8}
    ours = _run(lambda: getattr(B, name)(**hyper, backend=backend, num_threads=num_threads),
                dtype, 30, size, seed=1)
    book = _run(lambda: oracle(name, **hyper), dtype, 30, size, seed=1)
    for k in ours:
        assert ours[k].dtype == dtype
        assert np.array_equal(ours[k], book[k]), k
    # the list form of update gives the same
    listed = _run(lambda: getattr(B, name)(**hyper), dtype, 30, size, seed=1, as_list=True)
    for k in ours:
        assert np.array_equal(listed[k], book[k]), k


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", [*CLOSE, "Nesterov"])
@pytest.mark.parametrize("hyper", ["default", "other"])
def test_the_other_rules_agree_with_the_book_to_rounding(name, dtype, hyper):
    kw = {} if hyper == "default" else {
        "AdaGrad": dict(lr=0.1), "RMSprop": dict(lr=0.02, decay_rate=0.9),
        "Adam": dict(lr=0.01, beta1=0.8, beta2=0.99),
        "Nesterov": dict(lr=0.02, momentum=0.7)}[name]
    ours = _run(lambda: getattr(B, name)(**kw), dtype, 50, 1000, seed=2)
    book = _run(lambda: oracle(name, **kw), dtype, 50, 1000, seed=2)
    for k in ours:
        np.testing.assert_allclose(ours[k], book[k], rtol=0, atol=ATOL[dtype])


@pytest.mark.parametrize("name", CLOSE)
def test_eps_is_the_books_where_it_matters(name):
    """Gradients of 1e-8, where the 1e-7 added to the root dominates: the book's eps and
    its place (for Adam: added to sqrt(v), not sqrt(v_hat)) decide the step. The
    top-level class with torch's eps moves the parameters far more."""
    ours = _run(lambda: getattr(B, name)(), np.float64, 30, 1000, seed=3, scale=1e-8)
    book = _run(lambda: oracle(name), np.float64, 30, 1000, seed=3, scale=1e-8)
    torch_like = _run(lambda: getattr(fo, name)(lr=getattr(B, name)().lr), np.float64, 30,
                      1000, seed=3, scale=1e-8)
    start = _run(lambda: B.SGD(lr=0.0), np.float64, 1, 1000, seed=3)
    for k in ours:
        moved, torch_moved = ours[k] - start[k], torch_like[k] - start[k]
        np.testing.assert_allclose(ours[k], book[k], rtol=0, atol=1e-13)
        np.testing.assert_allclose(moved, book[k] - start[k], rtol=1e-6)
        assert np.abs(torch_moved).max() > 2 * np.abs(moved).max()


def test_the_books_nesterov_is_not_nag_and_this_one_is():
    """The book's Nesterov updates v first: p += mu^3*v - (1+mu+mu^2)*lr*g (v before the
    step, the book's sign); the look-ahead form is p += mu^2*v - (1+mu)*lr*g.
    fastoptim.book.Nesterov follows the look-ahead form (equal to the book's LookAhead
    oracle to rounding, above) and so differs from the book's class."""
    mu, lr = 0.9, 0.1
    v_old, g = np.array([0.5, -0.25]), np.array([1.0, 2.0])
    for cls, expected in ((BOOK["Nesterov"], mu**3 * v_old - (1 + mu + mu**2) * lr * g),
                          (LookAheadNesterov, mu**2 * v_old - (1 + mu) * lr * g)):
        opt = cls(lr=lr, momentum=mu)
        opt.v = {"p": v_old.copy()}
        p = {"p": np.zeros(2)}
        opt.update(p, {"p": g})
        np.testing.assert_allclose(p["p"], expected, rtol=1e-15)
        np.testing.assert_allclose(opt.v["p"], mu * v_old - lr * g, rtol=1e-15)
    # on the book's f(x, y): this class follows the look-ahead paths, not the book's
    ours = compare_naive({"N": B.Nesterov(lr=0.1)})["N"]
    nag = compare_naive({"N": LookAheadNesterov(lr=0.1)})["N"]
    books = compare_naive({"N": BOOK["Nesterov"](lr=0.1)})["N"]
    np.testing.assert_allclose(ours, np.array(nag, dtype=float), rtol=0, atol=1e-13)
    assert np.abs(np.array(ours) - np.array(books, dtype=float)).max() > 0.1


def test_the_books_naive_compare_script():
    """ch06/optimizer_compare_naive.py with fastoptim.book's classes in place of the
    book's: Python floats in params, the script's hyper-parameters."""
    hyper = {"SGD": dict(lr=0.95), "Momentum": dict(lr=0.1), "AdaGrad": dict(lr=1.5),
             "Adam": dict(lr=0.3)}
    ours = compare_naive({k: getattr(B, k)(**v) for k, v in hyper.items()})
    book = compare_naive({k: BOOK[k](**v) for k, v in hyper.items()})
    for key in hyper:
        xs, ys = ours[key]
        assert all(type(v) is float for v in xs + ys)
        assert f(xs[-1], ys[-1]) < f(-7.0, 2.0) / 3
        if key in EXACT:
            assert ours[key] == tuple([float(v) for v in h] for h in book[key]), key
        else:
            np.testing.assert_allclose(ours[key], np.array(book[key], dtype=float),
                                       rtol=0, atol=1e-13)


def test_the_books_mnist_compare_script_on_digits():
    """ch06/optimizer_compare_mnist.py's loop (a 4x100 ReLU MLP, batches of 128, the
    four optimizers with their defaults) on scikit-learn's digits, 60 iterations here:
    SGD and Momentum end bit-identical to the book's classes, AdaGrad and Adam within
    rounding, and every loss goes down."""
    pytest.importorskip("sklearn")
    from fastoptim.demo import datasets, nn

    x, t = datasets.load_digits()
    x = x / 16.0
    rng = np.random.default_rng(0)
    batches = [rng.choice(len(x), 128) for _ in range(60)]
    for name in ("SGD", "Momentum", "AdaGrad", "Adam"):
        nets = []
        for make in (getattr(B, name), BOOK[name]):
            net = nn.MLP([64, 100, 100, 100, 100, 10], dtype=np.float64, seed=1)
            opt = make()
            first = net.loss(x, t)
            for idx in batches:
                opt.update(net.params, net.gradient(x[idx], t[idx]))
            assert net.loss(x, t) < first, name
            nets.append(net)
        ours, book = nets
        for k in ours.params:
            if name in EXACT:
                assert np.array_equal(ours.params[k], book.params[k]), (name, k)
            else:
                np.testing.assert_allclose(ours.params[k], book.params[k], rtol=0,
                                           atol=1e-12, err_msg=f"{name} {k}")


def test_the_books_attribute_names():
    adam = B.Adam(lr=0.002, beta1=0.8, beta2=0.99)
    assert (adam.lr, adam.beta1, adam.beta2, adam.betas) == (0.002, 0.8, 0.99, (0.8, 0.99))
    adam.beta1 = 0.7
    adam.beta2 = 0.95
    assert adam.betas == (0.7, 0.95)
    rms = B.RMSprop(decay_rate=0.9)
    assert rms.decay_rate == rms.alpha == 0.9
    rms.decay_rate = 0.5
    assert rms.alpha == 0.5
    with pytest.raises(ValueError, match=r"Invalid beta1: 1\.5"):
        B.Adam(beta1=1.5)
    with pytest.raises(ValueError, match=r"Invalid beta2: -0\.1"):
        adam.beta2 = -0.1
    assert adam.betas == (0.7, 0.95)
    with pytest.raises(ValueError, match=r"Invalid alpha: 2"):
        B.RMSprop(decay_rate=2)
    # a changed attribute changes the next step, as in the book
    p, q = {"w": np.ones(3)}, {"w": np.ones(3)}
    a, b = B.Adam(), B.Adam(beta1=0.5)
    a.beta1 = 0.5
    g = {"w": np.full(3, 0.5)}
    a.update(p, g)
    b.update(q, g)
    assert np.array_equal(p["w"], q["w"])


def test_state_dicts_and_checkpoints_keep_the_book_class(tmp_path):
    rng = np.random.default_rng(4)
    grads = [{"w": rng.standard_normal(50)} for _ in range(6)]
    straight = {"w": np.ones(50)}
    opt = B.Adam(lr=0.01)
    for g in grads:
        opt.update(straight, g)
    params = {"w": np.ones(50)}
    first = B.Adam(lr=0.01)
    for g in grads[:3]:
        first.update(params, g)
    sd = first.state_dict()
    assert sd["optimizer"] == "book.Adam"
    path = tmp_path / "book.ckpt"
    fo.save(first, path)
    second = fo.load(path)
    assert type(second) is B.Adam and second.eps == 1e-7
    for g in grads[3:]:
        second.update(params, g)
    assert np.array_equal(params["w"], straight["w"])
    # the top-level Adam adds eps elsewhere: its state_dict is refused, and back
    with pytest.raises(ValueError, match=r"belongs to a book\.Adam optimizer, not Adam"):
        fo.Adam().load_state_dict(sd)
    with pytest.raises(ValueError, match=r"belongs to a Adam optimizer, not book\.Adam"):
        B.Adam().load_state_dict(fo.Adam().state_dict())
    third = B.Adam()
    third.load_state_dict(pickle.loads(pickle.dumps(sd)))
    assert third.lr == 0.01


@pytest.mark.parametrize("call, match", [
    (lambda: fo.Adam(beta1=0.8), r"'beta1': beta1 is the book's name, fastoptim's "
     r"\(torch\.optim's\) is betas: pass betas=\(beta1, beta2\); for the book's keywords "
     r"and defaults use fastoptim\.book\.Adam"),
    (lambda: fo.AdamW(beta2=0.9), r"'beta2': .*pass betas=\(beta1, beta2\)$"),
    (lambda: fo.RMSprop(0.01, decay_rate=0.9), r"'decay_rate': .*is alpha: pass "
     r"alpha=decay_rate; .*fastoptim\.book\.RMSprop"),
    (lambda: fo.AdaDelta(decay_rate=0.9), r"is rho: pass rho=decay_rate$"),
    (lambda: fo.SGD(learning_rate=0.1), r"learning_rate is Keras' name, .*is lr: pass "
     r"lr=learning_rate"),
    (lambda: fo.Adam(epsilon=1e-7), r"pass eps=epsilon"),
    (lambda: fo.Adam(beta_1=0.9), r"pass betas=\(beta_1, beta_2\)"),
    (lambda: fo.RMSprop(rho=0.9), r"rho is Keras' name, .*pass alpha=rho"),
])
def test_foreign_keywords_name_fastoptims_spelling(call, match):
    with pytest.raises(TypeError, match=match):
        call()


def test_other_unknown_keywords_keep_pythons_error():
    with pytest.raises(TypeError, match=r"__init__\(\) got an unexpected keyword argument "
                                        r"'foo'"):
        fo.Adam(foo=1)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'eps'"):
        fo.SGD(eps=1e-8)  # a real keyword of other rules: not the book's nor Keras'
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'beta1'"):
        B.SGD(beta1=0.9)
