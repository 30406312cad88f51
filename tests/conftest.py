import sys

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import _dispatch, rules
from fastoptim._dispatch import kernels as _kernels

# every optimizer class, from the rule table
OPTIMIZERS = [getattr(fo, r.class_name) for r in rules.RULES]
DTYPES = [np.float32, np.float64]

# Non-default hyper-parameters per optimizer, so a wrong scalar cannot hide behind a
# default; each includes weight decay (coupled, or decoupled for AdamW).
HYPER = {
    fo.SGD: dict(lr=0.05, weight_decay=0.01),
    fo.Momentum: dict(lr=0.03, momentum=0.8, weight_decay=0.01, dampening=0.1),
    fo.Nesterov: dict(lr=0.03, momentum=0.85, weight_decay=0.01),
    fo.AdaGrad: dict(lr=0.1, eps=1e-8, weight_decay=0.01, lr_decay=0.05,
                     initial_accumulator_value=0.1),
    fo.RMSprop: dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.01),
    fo.AdaDelta: dict(lr=0.7, rho=0.8, eps=1e-5, weight_decay=0.01),
    fo.Adam: dict(lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.01),
    fo.AdamW: dict(lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.05),
    fo.Lion: dict(lr=0.003, betas=(0.8, 0.95), weight_decay=0.05),
    fo.Adamax: dict(lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.01),
    fo.NAdam: dict(lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.01,
                   momentum_decay=0.01),
    # rho_t > 5 from step 6 on: runs of 10+ steps take both of RAdam's branches
    fo.RAdam: dict(lr=0.01, betas=(0.85, 0.99), eps=1e-7, weight_decay=0.01),
    fo.LAMB: dict(lr=0.02, betas=(0.8, 0.99), eps=1e-5, weight_decay=0.01),
    # warmup over the first 3 steps, polynomial weighting: every scalar moves
    fo.ScheduleFreeAdamW: dict(lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.01,
                               warmup_steps=3, r=0.5, weight_lr_power=1.5),
}


@pytest.fixture
def no_serial_threshold():
    """Run every size through the parallel loop (normally only large arrays are)."""
    old = _kernels.set_parallel_thresholds(light=0, heavy=0)
    yield
    _kernels.set_parallel_thresholds(**old)


def snapshot(opt, params):
    """Deep copies of every parameter and every state buffer, and the step counts."""
    ps = {k: np.array(v, copy=True) for k, v in dict(params).items()}
    st = {k: {n: (np.array(b, copy=True) if isinstance(b, np.ndarray) else b)
              for n, b in s.items()} for k, s in opt.state.items()}
    return ps, st


def assert_same(a, b):
    """Bit-for-bit equal (NaN equal to NaN), same dtype and shape."""
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a, b, equal_nan=True)


def assert_snapshot_equal(s1, s2):
    (p1, st1), (p2, st2) = s1, s2
    assert p1.keys() == p2.keys() and st1.keys() == st2.keys()
    for k in p1:
        assert_same(p1[k], p2[k])
    for k in st1:
        assert st1[k].keys() == st2[k].keys()
        for n in st1[k]:
            if isinstance(st1[k][n], np.ndarray):
                assert_same(st1[k][n], st2[k][n])
            else:
                assert st1[k][n] == st2[k][n]


# CPU targets: every per-target test is parametrized over all of them; those this run may
# not touch (not built, the CPU lacks them, or FASTOPTIM_CPU caps them away) are skipped
# with the reason, never imported. See fastoptim._dispatch.
def target_params():
    """pytest params for every CPU target, best first, unsupported ones skipped."""
    out = []
    for t in _dispatch.PREFERENCE:
        reason = _dispatch.unavailable_reason(t)
        marks = [pytest.mark.skip(reason=f"{t}: {reason}")] if reason else []
        out.append(pytest.param(t, id=t, marks=marks))
    return out


@pytest.fixture(params=target_params())
def target(request, monkeypatch):
    """The kernel module of one CPU target (every supported one in turn, the others
    skipped with the reason), and everything -- the optimizer classes, the functional
    API -- running on it for the test: the engine's compiled kernels are bound in one
    place, ``fastoptim._engine.COMPILED.kernels``."""
    from fastoptim import _engine

    module = _dispatch.load(request.param)
    monkeypatch.setattr(_engine.COMPILED, "kernels", module)
    return module


@pytest.fixture
def parallel_everything(target):
    """``target`` with both serial thresholds at 0: the parallel split runs on arrays of
    any size."""
    old = target.set_parallel_thresholds(light=0, heavy=0)
    yield target
    target.set_parallel_thresholds(**old)


def forbidden_kernel_modules(modules, supported):
    """The names in ``modules`` of kernel modules for targets outside ``supported``."""
    return sorted(f"fastoptim._kernels_{t}" for t in _dispatch.PREFERENCE
                  if t not in supported and f"fastoptim._kernels_{t}" in modules)


def pytest_sessionfinish(session, exitstatus):
    """Fail the run if anything imported a kernel module this run may not touch (on a
    CPU without it the import would have crashed; under FASTOPTIM_CPU it is capped)."""
    bad = forbidden_kernel_modules(sys.modules, _dispatch.supported())
    if bad:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        msg = (f"kernel modules for unsupported CPU targets were imported: "
               f"{', '.join(bad)} (supported: {', '.join(_dispatch.supported())})")
        if reporter is not None:
            reporter.write_line(f"ERROR: {msg}", red=True, bold=True)
        else:
            sys.stderr.write(f"ERROR: {msg}\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
