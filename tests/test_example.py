"""The minimal, dependency-free example: examples/train_mlp.py trains a small NumPy MLP
with every optimizer. Run it with tiny settings, through both backends. (The README's
main job is now `fastoptim demo`, tested in test_cli.py.)"""

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "train_mlp.py"


def load_example():
    spec = importlib.util.spec_from_file_location("train_mlp", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_example_trains_with_every_optimizer(capsys):
    mod = load_example()
    fast = mod.main(["--epochs", "3"])
    out = capsys.readouterr().out
    assert list(fast) == ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "AdaDelta",
                          "Adam", "AdamW"]
    for name, r in fast.items():
        assert name in out
        assert r["accuracy"] > 0.45, (name, r)  # three classes: chance is 1/3
    # The same run through the NumPy reference gives the very same numbers.
    ref = mod.main(["--epochs", "3", "--backend", "numpy"])
    assert ref == fast


def test_example_rejects_unknown_backend():
    with pytest.raises(SystemExit):
        load_example().main(["--backend", "torch"])
