"""The rough edges a new user hits (issue 14): each error names the user's path or object
and says the fix in the user's terms."""

import os

import numpy as np
import pytest

import fastoptim as fo


def _stepped_adam():
    opt = fo.Adam(lr=0.01)
    opt.update({"w": np.ones(3)}, {"w": np.full(3, 0.5)})
    return opt


def test_save_into_missing_directory_names_the_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        fo.save(_stepped_adam(), os.path.join("ckpt", "opt.ckpt"))
    msg = str(info.value)
    assert repr(os.path.join("ckpt", "opt.ckpt")) in msg
    assert "'ckpt' does not exist" in msg and "create it first" in msg
    assert "fastoptim-tmp" not in msg
    assert os.listdir(tmp_path) == []  # nothing was written
    os.mkdir("ckpt")
    fo.save(_stepped_adam(), os.path.join("ckpt", "opt.ckpt"))  # the fix works
    assert fo.load(os.path.join("ckpt", "opt.ckpt")).state["w"]["step"] == 1


def test_save_under_a_file_says_it_is_not_a_directory(tmp_path):
    (tmp_path / "ckpt").write_text("")
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        fo.save(_stepped_adam(), tmp_path / "ckpt" / "opt.ckpt")


@pytest.mark.parametrize("kind", ["params", "grads"])
def test_generator_params_or_grads_suggest_list(kind):
    params, grads = [np.ones(3)], [np.full(3, 0.5)]
    if kind == "params":
        params = (p for p in params)
    else:
        grads = (g for g in grads)
    with pytest.raises(TypeError) as info:
        fo.SGD(lr=0.1).update(params, grads)
    msg = str(info.value)
    assert "got generator" in msg
    assert "pass a list (e.g. list(model.parameters())) or a dict" in msg


def test_list_hint_only_for_iterables():
    with pytest.raises(TypeError) as info:
        fo.SGD(lr=0.1).update(object(), [np.ones(3)])
    assert "list(model.parameters())" not in str(info.value)


@pytest.mark.parametrize("value, message", [("-2", "-2 must be >= 1"),
                                            ("0", "0 must be >= 1"),
                                            ("two", "'two' is not an integer")])
def test_bench_threads_is_validated_like_the_demo(value, message, capsys):
    from fastoptim import cli
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--threads", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --threads: {message}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("cpu", ["pentium", "avx9000"])
def test_fastoptim_cpu_warning_points_at_the_import_line(cpu, tmp_path):
    import subprocess
    import sys
    script = tmp_path / "user_script.py"
    script.write_text("import warnings\n"
                      "warnings.simplefilter('always')\n"
                      "with warnings.catch_warnings(record=True) as caught:\n"
                      "    import fastoptim\n"
                      "w, = [w for w in caught if 'FASTOPTIM_CPU' in str(w.message)]\n"
                      "print(w.filename, w.lineno, w.category.__name__)\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         env={**os.environ, "FASTOPTIM_CPU": cpu}, timeout=120)
    assert out.returncode == 0, out.stderr
    filename, lineno, category = out.stdout.split()
    assert os.path.samefile(filename, script) and lineno == "4"
    assert category == "RuntimeWarning"


@pytest.mark.parametrize("command", ["demo", "paths"])
@pytest.mark.parametrize("columns", ["80", "60"])
def test_optimizers_help_never_splits_a_class_name(command, columns, capsys, monkeypatch):
    import re

    from fastoptim import cli, rules
    monkeypatch.setenv("COLUMNS", columns)
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    section = out[out.index("\n  --optimizers OPTIMIZERS"):]
    section = section[:section.index("\n  --", 2)]
    for name in (r.class_name for r in rules.RULES):
        assert re.search(rf"(?<![\w]){name}(?![\w])", section), (name, section)


@pytest.mark.parametrize("regression", [False, True])
def test_demo_curves_have_both_legends_and_epoch_0(regression):
    pytest.importorskip("matplotlib")
    from fastoptim.demo import train
    key = "train_rmse" if regression else "test_accuracy"
    names = ["SGD", "Adam"]
    curves = {n: [{"optimizer": n, "epoch": e, "train_loss": 2.0 / (e + 1),
                   key: (0.1 + 0.08 * e if not regression else 5.0 / (e + 1))}
                  for e in range(4)] for n in names}
    fig = train._plot_curves(None, curves, names, regression, "t", [4, 3, 2], 3)
    loss_ax, metric_ax = fig.axes[:2]
    for ax in (loss_ax, metric_ax):
        legend = ax.get_legend()
        assert legend is not None
        assert [t.get_text() for t in legend.get_texts()] == names
        assert ax.get_xlim()[0] <= 0 and ax.get_xlim()[1] >= 3
    lo, hi = metric_ax.get_ylim()
    first = [c[0][key] for c in curves.values()]
    assert lo <= min(first) and hi >= max(first)  # epoch 0's point is drawn, not clipped


def _torch_like(array):
    """A DLPack producer whose type says it is torch's (as torch.Tensor's __module__ is
    "torch"): runs with or without torch installed."""
    from test_interop import Producer

    class Tensor(Producer):
        pass

    Tensor.__module__ = "torch"
    return Tensor(array)


@pytest.mark.parametrize("param, fix", [
    (np.ones(4, dtype=np.float16), r"p\.data = p\.data\.float\(\) \(or model\.float\(\)"),
    (np.ones((4, 6))[:, ::2], r"p\.data = p\.data\.contiguous\(\)"),
])
def test_torch_tensor_errors_give_the_torch_fix(param, fix):
    with pytest.raises(TypeError, match=fix) as info:
        fo.SGD(lr=0.1).update({"w": _torch_like(param)}, {"w": np.ones(param.shape)})
    msg = str(info.value)
    assert "parameter 'w' is a torch tensor" in msg
    assert "astype" not in msg and "ascontiguousarray" not in msg


def test_torch_gradient_dtype_error_gives_the_torch_cast():
    w = np.ones(3, dtype=np.float32)
    with pytest.raises(TypeError) as info:
        fo.SGD(lr=0.1).update({"w": w}, {"w": _torch_like(np.ones(3, dtype=np.float16))})
    msg = str(info.value)
    assert "gradient 'w' is a torch tensor of dtype float16" in msg
    assert msg.endswith("cast it with grad.float()") and "astype" not in msg
    assert (w == 1).all()


def test_numpy_producers_keep_the_numpy_fix():
    from test_interop import Producer
    with pytest.raises(TypeError, match=r"\.astype\(np\.float32\)"):
        fo.SGD(lr=0.1).update({"w": Producer(np.ones(4, dtype=np.float16))},
                              {"w": np.ones(4)})


def test_real_torch_tensors_give_the_torch_fix():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"p\.data\.float\(\)"):
        fo.SGD(lr=0.1).update({"w": torch.ones(4, dtype=torch.float16)},
                              {"w": torch.ones(4, dtype=torch.float16)})
    with pytest.raises(TypeError, match=r"not contiguous.*p\.data\.contiguous\(\)"):
        fo.SGD(lr=0.1).update({"w": torch.zeros(4, 6)[:, ::2]}, {"w": torch.ones(4, 3)})
