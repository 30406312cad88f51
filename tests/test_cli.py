"""The fastoptim command: demo and paths with tiny settings (files written, CSV contents),
the optional-dependency guard, and a core import that stays NumPy-only."""

import csv
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import cli
from fastoptim.demo import datasets, loop, paths, plain, settings, train

ROOT = Path(__file__).resolve().parent.parent
EIGHT = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "AdaDelta", "Adam", "AdamW"]
ALL = [*EIGHT, "Lion", "Adamax", "NAdam", "RAdam", "ScheduleFreeAdamW", "LAMB"]


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    return header, rows


def assert_png(path):
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_demo_digits_every_optimizer(tmp_path, capsys):
    assert cli.main(["demo", "--epochs", "1", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    header, rows = read_csv(tmp_path / "loss_curves.csv")
    assert header == ["optimizer", "epoch", "train_loss", "test_loss", "test_accuracy",
                      "plain_train_loss"]
    assert [(r["optimizer"], r["epoch"]) for r in rows] == [
        (name, str(e)) for name in ALL for e in (0, 1)]
    # Same initial weights for everyone: the same loss at epoch 0.
    assert len({r["train_loss"] for r in rows if r["epoch"] == "0"}) == 1
    for r in rows:
        assert np.isfinite(float(r["train_loss"])) and 0 <= float(r["test_accuracy"]) <= 1
        # the plain NumPy loop is the same rule: its curve is fastoptim's, to rounding
        # (45 updates here; measured differences are below 1e-6)
        assert float(r["plain_train_loss"]) == pytest.approx(float(r["train_loss"]),
                                                             rel=1e-4), r
    assert_png(tmp_path / "loss_curves.png")
    table = out[re.search(r"optimizer +final loss", out).start():]  # names set the width
    groups = out.splitlines()[out.splitlines().index(table.splitlines()[0]) - 1]
    assert re.fullmatch(r" +-+ epoch ms -+  -+ update ms -+ +vs reference +plain loss",
                        groups), groups
    assert table.splitlines()[0].split() == [
        "optimizer", "final", "loss", "test", "acc", "fastoptim", "plain", "x", "plain",
        "reference", "fastoptim", "plain", "x", "plain", "reference", "result", "rel",
        "diff"]
    for name in ALL:
        line = next(li for li in table.splitlines() if li.startswith(name + " "))
        cells = line.split()
        assert len(cells) == 13 and cells[-2] == "bit-identical"
        epoch, plain_epoch, ref_epoch, update, plain_update, ref_update = map(
            float, (cells[3], cells[4], cells[6], cells[7], cells[8], cells[10]))
        # update: part of the epoch, for each of the three loops
        assert 0 < update <= epoch and 0 < plain_update <= plain_epoch
        assert 0 < ref_update <= ref_epoch
        assert re.fullmatch(r"\d+\.\dx", cells[5]) and re.fullmatch(r"\d+\.\dx", cells[9])
        assert float(cells[-1]) < 1e-4
    totals = re.search(r"epochs ([\d.]+) ms with fastoptim vs ([\d.]+) ms with the plain "
                       r"NumPy loop \(([\d.]+)x\); of which in update ([\d.]+) ms vs "
                       r"([\d.]+) ms \(([\d.]+)x\)", out)
    assert totals, out
    epoch, plain_epoch, epoch_x, update, plain_update, update_x = map(float,
                                                                      totals.groups())
    assert epoch_x == pytest.approx(plain_epoch / epoch, rel=0.05, abs=0.01)
    assert update_x == pytest.approx(plain_update / update, rel=0.1, abs=0.1)
    ref = re.search(r"^the NumPy reference \(fastoptim.reference, bit-identical to "
                    r"fastoptim\): epochs ([\d.]+) ms \([\d.]+x fastoptim's\), of which "
                    r"in update ([\d.]+) ms \([\d.]+x fastoptim's\)$", out, re.M)
    assert ref, out
    share = re.search(r"^(backprop dominates|updates dominate): updates are (\d+)% of "
                      r"fastoptim's epoch time.*\(with the plain NumPy loop, updates are "
                      r"(\d+)% of its epoch\)$", out, re.M)
    assert share, out
    assert abs(int(share.group(2)) - 100 * update / epoch) <= 1
    assert abs(int(share.group(3)) - 100 * plain_update / plain_epoch) <= 1
    assert (share.group(1) == "updates dominate") == (update / epoch >= 0.5)
    assert "fastoptim.demo.plain" in out and "wrote" in out


def test_demo_table_columns():
    row = {"optimizer": "Adam", "final_loss": 0.5, "metric": 0.9, "epoch_s": 0.002,
           "plain_epoch_s": 0.003, "ref_epoch_s": 0.004, "update_s": 0.0001,
           "plain_update_s": 0.0012, "ref_update_s": 0.0015, "identical": True,
           "plain_loss_rel_diff": 2.5e-7}
    lines = train._demo_table([row, {**row, "optimizer": "SGD", "identical": False,
                                     "plain_loss_rel_diff": 0.0}], False).splitlines()
    assert lines[3].split() == ["Adam", "0.5000", "90.0%", "2.00", "3.00", "1.5x", "4.00",
                                "0.10", "1.20", "12.0x", "1.50", "bit-identical", "2e-07"]
    assert lines[4].split()[-2:] == ["DIFFERENT", "0"]
    # each group title spans its own columns: epoch ms over the four after "test acc",
    # update ms over the next four
    head = lines[1]
    spans = [m.span() for m in re.finditer(r"-+ [\w ]+? -+|\S+(?: \S+)*", lines[0])]
    assert [lines[0][a:b].strip("- ") for a, b in spans] == [
        "epoch ms", "update ms", "vs reference", "plain loss"]
    ref1 = head.index("reference") + len("reference")
    ref2 = head.index("reference", ref1) + len("reference")
    assert spans[0] == (head.index("test acc") + len("test acc") + 2, ref1)
    assert spans[1] == (ref1 + 2, ref2)
    assert spans[2][1] == head.index("result") + len("result")
    assert spans[3][1] == len(head) == len(lines[0]) == len(lines[2])


def test_demo_dominance_line():
    assert train._dominance(1.0, 0.2, 2.0, 1.2).startswith(
        "backprop dominates: updates are 20% of fastoptim's epoch time, forward and "
        "backward passes (matrix products) the other 80%")
    assert "(with the plain NumPy loop, updates are 60% of its epoch)" in \
        train._dominance(1.0, 0.2, 2.0, 1.2)
    assert train._dominance(1.0, 0.7, 3.0, 2.8).startswith("updates dominate: updates are 70%")


def test_demo_trains_three_nets_taking_turns(tmp_path, capsys, monkeypatch):
    """fastoptim's optimizer, the plain NumPy one and the reference each run whole epochs
    of their own net (gradient + update), taking turns in every order; the epoch time is
    not a replay of updates."""
    seen, nets = [], {}
    real = loop.train_epoch

    def spy(net, opt, batches):
        which = ("reference" if isinstance(opt, loop.PlainReference) else
                 "plain" if isinstance(opt, plain.Adam) else
                 "fastoptim" if isinstance(opt, fo.Adam) else None)
        seen.append(which)
        assert nets.setdefault(which, net) is net        # one net per loop, its own
        return real(net, opt, batches)

    monkeypatch.setattr(loop, "train_epoch", spy)
    assert cli.main(["demo", "--epochs", "6", "--optimizers", "adam", "--no-progress",
                     "--out", str(tmp_path)]) == 0
    loops = ["fastoptim", "plain", "reference"]
    assert len(set(map(id, nets.values()))) == 3
    epochs = [seen[i:i + 3] for i in range(0, len(seen), 3)]
    assert epochs == [[loops[i] for i in order] for order in train.LOOP_ORDERS]
    # over six epochs each loop ran first, second and third twice
    for position in range(3):
        assert sorted(e[position] for e in epochs) == sorted(loops * 2)
    assert "bit-identical" in capsys.readouterr().out


def test_demo_fails_for_a_rule_without_a_plain_version(tmp_path, capsys, monkeypatch):
    monkeypatch.delitem(plain.PLAIN, "Lion")
    assert cli.main(["demo", "--optimizers", "sgd,lion", "--epochs", "1", "--no-progress",
                     "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "Lion has no plain NumPy version in fastoptim.demo.plain" in err
    assert not (tmp_path / "x").exists()                 # failed before any training


def test_demo_apartment_regression(tmp_path, capsys):
    assert cli.main(["demo", "--dataset", "apartment", "--epochs", "3", "--optimizers",
                     "sgd,Adam", "--out", str(tmp_path / "apt"), "--no-progress",
                     "--seed", "3"]) == 0
    header, rows = read_csv(tmp_path / "apt" / "loss_curves.csv")
    assert header == ["optimizer", "epoch", "train_loss", "train_rmse", "plain_train_loss"]
    assert [(r["optimizer"], int(r["epoch"])) for r in rows] == [
        (n, e) for n in ("SGD", "Adam") for e in range(4)]
    # RMSE in price units = sqrt(MSE of standardised prices) * std of the prices
    y_std = datasets.load_apartment()[1].std()
    for r in rows:
        assert float(r["train_rmse"]) == pytest.approx(
            np.sqrt(float(r["train_loss"])) * y_std, rel=1e-6)
        assert float(r["plain_train_loss"]) == pytest.approx(float(r["train_loss"]),
                                                             rel=1e-9)   # float64
    assert_png(tmp_path / "apt" / "loss_curves.png")
    assert "MLP 2-2-1" in capsys.readouterr().out


def test_demo_progress_bar(tmp_path, capsys):
    assert cli.main(["demo", "--epochs", "2", "--optimizers", "adagrad", "--out",
                     str(tmp_path), "--progress", "--hidden", "16,8"]) == 0
    err = capsys.readouterr().err
    assert "AdaGrad" in err and "2/2" in err and "epoch" in err


def test_demo_is_reproducible(tmp_path):
    args = ["demo", "--epochs", "1", "--optimizers", "momentum", "--no-progress"]
    assert cli.main(args + ["--out", str(tmp_path / "a")]) == 0
    assert cli.main(args + ["--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "a" / "loss_curves.csv").read_text() == \
        (tmp_path / "b" / "loss_curves.csv").read_text()


def test_paths(tmp_path, capsys):
    assert cli.main(["paths", "--steps", "5", "--functions", "book,saddle,beale,rosenbrock",
                     "--out", str(tmp_path)]) == 0
    header, rows = read_csv(tmp_path / "paths.csv")
    assert header == ["function", "optimizer", "step", "x", "y", "f"]
    seven = EIGHT[:7]
    functions = ["book", "saddle", "beale", "rosenbrock"]
    assert [(r["function"], r["optimizer"], int(r["step"])) for r in rows] == [
        (f, n, s) for f in functions for n in seven for s in range(6)]
    starts = {f: paths.PATH_FUNCTIONS[f]["start"] for f in functions}
    for r in rows:
        if r["step"] == "0":
            assert (float(r["x"]), float(r["y"])) == starts[r["function"]]
    assert_png(tmp_path / "paths.png")
    for f in functions:
        assert_png(tmp_path / f"paths_{f}.png")
    assert "f at the last step" in capsys.readouterr().out


def test_paths_use_the_real_optimizers():
    # The book's example: x**2/20 + y**2 from (-7, 2), here with AdamW's class.
    path = paths.optimizer_path("AdamW", "book", steps=4)
    opt = fo.AdamW(**settings.hyper("paths/book", "AdamW"))
    p = np.array([-7.0, 2.0])
    expected = [p.copy()]
    for _ in range(4):
        opt.update([p], [np.array([p[0] / 10, 2 * p[1]])])
        expected.append(p.copy())
    assert np.array_equal(path, np.array(expected))


@pytest.mark.parametrize("name", list(paths.PATH_FUNCTIONS))
def test_path_gradients_are_the_derivatives(name):
    fn = paths.PATH_FUNCTIONS[name]["fn"]
    rng = np.random.default_rng(0)
    for _ in range(5):
        p = rng.uniform(-1.5, 1.5, 2)
        _, g = fn(p)
        h = 1e-6
        num = [(fn(p + h * e)[0] - fn(p - h * e)[0]) / (2 * h) for e in np.eye(2)]
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-6)
    # the minimum (or the saddle point) has a zero gradient
    assert np.allclose(fn(np.array(paths.PATH_FUNCTIONS[name]["target"]))[1], 0)


def test_default_paths_end_near_the_minimum():
    # With the chosen learning rates every optimizer gets closer to the minimum than
    # its start on the three functions that have one.
    for f in ("book", "rosenbrock", "beale"):
        spec = paths.PATH_FUNCTIONS[f]
        f0 = spec["fn"](np.array(spec["start"]))[0]
        for name in settings.names():  # also those drawn only when asked for
            assert spec["fn"](paths.optimizer_path(name, f)[-1])[0] < f0 / 10, (f, name)


@pytest.mark.parametrize("argv, message", [
    (["demo", "--optimizers", "sgd,lbfgs"], "unknown optimizer 'lbfgs'"),
    (["paths", "--functions", "himmelblau"], "unknown function"),
    (["demo", "--optimizers", ","], "--optimizers is empty"),
])
def test_bad_choices(argv, message, tmp_path, capsys):
    assert cli.main(argv + ["--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["demo", "--epochs", "0"], ["demo", "--dataset", "mnist"],
                                  ["demo", "--hidden", "10,x"], ["paths", "--steps", "-1"]])
def test_bad_arguments_exit_2(argv):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_info(capsys):
    assert cli.main(["info"]) == 0
    assert "openmp" in capsys.readouterr().out


@pytest.mark.parametrize("argv, module, shown", [
    (["demo", "--epochs", "1"], "sklearn", "scikit-learn"),
    (["demo", "--epochs", "1"], "tqdm", "tqdm"),
    (["paths", "--steps", "1"], "matplotlib", "matplotlib"),
])
def test_missing_optional_library(argv, module, shown, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, module, None)      # import raises ImportError
    assert cli.main(argv + ["--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert shown in err and 'pip install "fastoptim[demo]"' in err
    assert not (tmp_path / "x").exists()


def _env():
    env = dict(os.environ)
    src = str(Path(fo.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_core_import_is_numpy_only():
    code = ("import sys, fastoptim, fastoptim.demo.nn, fastoptim.schedules, fastoptim.clip, "
            "fastoptim.demo.datasets, fastoptim.demo.train, fastoptim.demo.paths, "
            "fastoptim.demo.e2e, fastoptim.cli; "
            "print(sorted(m for m in ('matplotlib', 'sklearn', 'tqdm', 'scipy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_env(), check=True)
    assert out.stdout.strip() == "[]"


def test_python_dash_m(tmp_path):
    out = subprocess.run([sys.executable, "-m", "fastoptim", "paths", "--steps", "2",
                          "--functions", "saddle", "--optimizers", "sgd",
                          "--out", str(tmp_path)],
                         capture_output=True, text=True, env=_env())
    assert out.returncode == 0, out.stderr
    assert_png(tmp_path / "paths_saddle.png")


def test_console_script_is_declared():
    """In pyproject.toml (source tree) and, when installed, in the metadata (also when
    the tests run next to an installed wheel, without the source tree)."""
    pyproject = ROOT / "pyproject.toml"
    try:
        dist = importlib.metadata.distribution("fastoptim")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    assert pyproject.is_file() or dist is not None
    if pyproject.is_file():
        text = pyproject.read_text()
        assert re.search(r'^\[project\.scripts\]\s*\nfastoptim = "fastoptim\.cli:main"', text,
                         re.M)
    if dist is not None:
        assert any(ep.group == "console_scripts" and ep.name == "fastoptim"
                   and ep.value == "fastoptim.cli:main" for ep in dist.entry_points)
    assert callable(cli.main)


def test_apartment_table_is_the_seed_table():
    X, y = datasets.load_apartment()
    assert X.shape == (10, 2) and y.shape == (10,)
    # seed 004: ID 1 is (34 pyeong, 5 years, price 5), ID 8 is (60, 19, 6)
    assert tuple(X[0]) == (34, 5) and y[0] == 5 and tuple(X[7]) == (60, 19) and y[7] == 6


def test_demo_evaluates_schedule_free_at_the_average():
    """The demo's evaluation of a Schedule-Free optimizer sees x (opt.eval), then both
    nets go back to y, still bit-identical to each other."""
    from fastoptim.demo import loop

    class Net:
        def __init__(self):
            self.params = {"w": np.linspace(-1.0, 1.0, 5)}

    net, ref_net = Net(), Net()
    opt = fo.ScheduleFreeAdamW(lr=0.1)
    ref = loop.PlainReference(opt)
    for i in range(3):
        g = {"w": np.sin(net.params["w"] * (i + 2))}
        opt.update(net.params, g)
        ref.update(ref_net.params, {"w": np.sin(ref_net.params["w"] * (i + 2))})
    y = net.params["w"].copy()
    z = opt.state["w"]["z"]
    seen = loop.evaluated_at_average(net, opt, ref_net, ref,
                                     lambda n: n.params["w"].copy())
    np.testing.assert_allclose(seen, y + (1 - 1 / 0.9) * (z - y), rtol=1e-12)
    assert opt.train_mode and np.allclose(net.params["w"], y, rtol=1e-14, atol=1e-15)
    assert np.array_equal(net.params["w"], ref_net.params["w"])
    # any other rule: evaluated as it is
    adam = fo.Adam()
    assert loop.evaluated_at_average(net, adam, ref_net, loop.PlainReference(adam),
                                     lambda n: "as is") == "as is"
