"""The rule table (fastoptim.rules) is the one description of every rule: the classes,
the functional API, the kernels' dispatch, the stubs and the checkpoint registry are made
from it and agree with it; the backend names; the compiled engine's protocol (it writes
nothing and names what it does not take, never calling back into Python)."""

import inspect
import warnings
from pathlib import Path

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import _engine, _stubs, checkpoint, functional, reference, rules
from fastoptim._dispatch import kernels

PKG = Path(fo.__file__).resolve().parent


def test_kernels_were_built_from_this_table():
    assert kernels.RULE_NAMES == tuple(r.name for r in rules.KERNEL_ROWS)
    assert rules.KERNEL_ROWS[:len(rules.RULES)] == rules.RULES  # the rules keep their ids


@pytest.mark.parametrize("row", rules.VARIANTS, ids=lambda r: r.name)
def test_every_layer_has_the_variant(row):
    """A variant row (a structural option on) has a kernel, a reference function and a
    functional form, with the same scalars, and runs in its rule's class."""
    parent = rules.BY_NAME[row.variant_of[0]]
    cls = getattr(fo, parent.class_name)
    assert row.class_name == parent.class_name and not hasattr(fo, row.name)
    assert row.hyper == parent.hyper and set(row.variant_of[1]) <= set(parent.structural)
    opt = cls(**{n: (True if isinstance(parent.defaults[n], bool) else 0.5)
                 for n in row.variant_of[1]})
    assert opt.rule is row and opt._rule_id == row.id and type(opt).rule is parent
    for fn in (getattr(reference, row.name), getattr(kernels, row.name)):
        sig = inspect.signature(fn).parameters.values()
        assert [p.name for p in sig if p.kind == p.KEYWORD_ONLY] == [*row.scalar_names,
                                                                    "num_threads"]
    fparams = inspect.signature(getattr(functional, row.name)).parameters
    assert list(fparams)[:2 + len(row.state)] == ["param", "grad", *row.state]
    assert not set(row.structural) - set(row.takes) & set(fparams)
    assert row.formula in getattr(functional, row.name).__doc__


@pytest.mark.parametrize("rule", rules.RULES, ids=lambda r: r.name)
def test_every_layer_has_the_rule(rule):
    cls = getattr(fo, rule.class_name)
    assert cls.rule is rule and cls._rule == rule.name
    assert cls.__module__ == "fastoptim.optimizers"
    assert issubclass(cls, getattr(fo, rule.base) if rule.base else fo.Optimizer)
    assert callable(getattr(reference, rule.name))
    assert callable(getattr(kernels, rule.name))
    assert rule.name in functional.__all__ and rule.class_name in fo.__all__
    assert checkpoint.CLASSES[rule.class_name] is cls
    # the class's signature is the row's: its hyper-parameters, their defaults, the
    # first `positional` of them positional, then the shared options
    params = list(inspect.signature(cls).parameters.values())
    assert [p.name for p in params] == [*rule.hyper_names, "num_threads", "backend",
                                        "skip_nonfinite", "groups"]
    for i, (p, h) in enumerate(zip(params, rule.hyper)):
        assert p.default == h.default
        assert p.kind == (p.POSITIONAL_OR_KEYWORD if i < rule.positional else p.KEYWORD_ONLY)
    # the functional signature: param, grad, the state buffers, then keywords
    fparams = inspect.signature(getattr(functional, rule.name)).parameters
    assert list(fparams)[:2 + len(rule.state)] == ["param", "grad", *rule.state]
    assert ("step" in fparams) == (rule.stepped or bool(rule.stepped_by))
    if rule.stepped_by and not rule.stepped:
        assert fparams["step"].default is None  # needed only with those options
    # the reference and the kernel take the same scalars
    for fn in (getattr(reference, rule.name), getattr(kernels, rule.name)):
        names = [p.name for p in inspect.signature(fn).parameters.values()
                 if p.kind == p.KEYWORD_ONLY]
        assert names == [*rule.scalar_names, "num_threads"]
    # the docstrings are composed from the row
    assert rule.formula in cls.__doc__ and rule.formula in getattr(functional, rule.name).__doc__
    for h in rule.hyper:
        assert f"{h.name} : {h.type}, default {h.default!r}" in cls.__doc__


@pytest.mark.parametrize("name, text", sorted(_stubs.all_stubs(rules.KERNEL_ROWS).items()))
def test_generated_stubs_are_installed(name, text):
    assert (PKG / name).read_text() == text


def test_bad_calls_get_pythons_own_errors():
    # torch.optim's call, parameters first, gets fastoptim's own error instead of
    # "got multiple values for argument 'lr'" (tests/test_book.py has the cases)
    with pytest.raises(TypeError, match=r"fastoptim optimizers take the parameters in "
                                        r"update\(params, grads\), not in the constructor"
                                        r".*use opt = fo.Adam\(lr=0.001\)"):
        fo.Adam([np.ones(2)], lr=1e-3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'beta1'"):
        fo.Adam(beta1=0.9)
    with pytest.raises(TypeError, match="positional argument"):
        fo.SGD(0.1, 0.0)


@pytest.mark.parametrize("make", [
    lambda: fo.SGD(backend="cython"),
    lambda: functional.sgd(np.ones(2), np.ones(2), backend="cython"),
    lambda: fo.clip_grad_norm([np.ones(2)], 1.0, backend="cython"),
], ids=["class", "functional", "clip"])
def test_the_old_backend_name_warns_and_means_compiled(make):
    with pytest.warns(DeprecationWarning, match='"cython" is deprecated.*"compiled"') as rec:
        out = make()
    assert rec[0].filename == __file__  # points at the caller's line
    if isinstance(out, fo.Optimizer):
        assert out.backend == "compiled"


def test_setting_the_old_backend_name_warns():
    opt = fo.Adam()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        opt.backend = "cython"
    assert [w.category for w in rec] == [DeprecationWarning]
    assert rec[0].filename == __file__ and opt.backend == "compiled"


# -- the compiled engine's protocol --------------------------------------------------

def _call(target, rule, params, grads, slots, scalars):
    return target.update_many(rule.id, params, grads, slots, scalars, 1, [], [], [],
                              False, None)


def test_update_many_writes_nothing_and_names_what_it_does_not_take(target):
    rule = rules.get("adam")
    good = np.ones(4)
    rec = _engine.new_record(good, rule.state)
    strided = np.ones(8)[::2]
    params = [good.copy(), strided, np.ones(3), good.copy()]
    grads = [np.ones(4), np.ones(4), np.ones(3), good]
    slots = {0: rec, 1: _engine.new_record(good, rule.state),
             3: _engine.new_record(good, rule.state)}
    slots[3][1] = params[3]  # a state buffer that is its parameter
    before = [p.copy() for p in params]
    out = _call(target, rule, params, grads, slots, {})
    # position 1: a strided parameter; 2: no record yet; 3: state aliasing its parameter;
    # step 1 has no scalars
    assert out == ([1, 2, 3], [1])
    assert all(np.array_equal(a, b) for a, b in zip(params, before))
    assert int(rec[0]) == 0
    # with the scalars and good arrays only it runs, and says which steps it took
    steps = []
    out = target.update_many(rule.id, [params[0]], [grads[0]], {0: rec},
                             {1: rule.scalars(1, **rule.defaults)}, 1, [], [], steps,
                             False, None)
    assert out is True and steps == [1] and int(rec[0]) == 1


def test_update_many_reports_a_key_mismatch(target):
    rule = rules.get("sgd")
    rec = _engine.new_record(np.ones(2), rule.state)
    out = _call(target, rule, {"a": np.ones(2)}, {"b": np.ones(2)}, {"a": rec},
                {1: (0.1, 0.0)})
    assert out == (None, None)


@pytest.mark.parametrize("rule", rules.KERNEL_ROWS, ids=lambda r: r.name)
def test_step_scalars_follow_the_stepped_flag(rule):
    """A rule marked not ``stepped`` has the same scalars at every step (the engine then
    passes them once for all steps); a stepped one's change with the step."""
    # the engine's: no maximize, no structural option the row's scalars do not take
    own = {k: v for k, v in rule.defaults.items()
           if k != "maximize" and (k not in rule.structural or k in rule.takes)}
    at = rule.step_scalars(**own)
    assert len(at(1)) == len(rule.scalar_names)
    assert rule.scalars(7, **rule.defaults) == at(7)
    assert (at(1) != at(2)) == rule.stepped
    # the engine's scalars: the rule's, then the gradient's sign
    assert rule.stepper(rule.defaults)(7) == (*at(7), 1.0)
    assert rule.stepper(dict(rule.defaults, maximize=True))(7) == (*at(7), -1.0)
