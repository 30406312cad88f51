"""`fastoptim bench` runs, prints its table, and its JSON has what docs/performance.rst quotes.
(Smoke tests: tiny sizes, a tiny budget; no time is asserted.)"""

import json
import subprocess
import sys

import numpy as np
import pytest

from fastoptim import _bench, cli


def test_bench_json(capsys):
    assert cli.main(["bench", "--sizes", "1e3,2e3", "--rules", "sgd,adam", "--no-torch",
                     "--budget", "0.01", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [(r["rule"], r["n"]) for r in result["rows"]] == [
        ("sgd", 1000), ("adam", 1000), ("sgd", 2000), ("adam", 2000)]
    for r in result["rows"]:
        assert r["bytes"] == _bench.bytes_per_element(r["rule"], np.float32) * r["n"]
        for k in ("fastoptim", "reference", "roofline"):
            assert r[f"{k}_s"] > 0 and r[f"{k}_gbs"] > 0
        assert r["speedup_vs_reference"] == r["reference_s"] / r["fastoptim_s"]
        assert "torch_s" not in r
    assert [(m["arrays"], m["size"]) for m in result["many"]["rows"]] == _bench.MANY
    assert result["torch"] is None


def test_bench_table_through_python_m():
    out = subprocess.run([sys.executable, "-m", "fastoptim", "bench", "--sizes", "1e3",
                          "--rules", "momentum", "--dtype", "float64", "--no-torch",
                          "--no-many", "--budget", "0.01"],
                         capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert "float64" in lines[0] and "torch not installed" in lines[0]
    assert lines[1].startswith("| rule | n | fastoptim | GB/s | % roofline | state B/param | "
                               "× reference")
    assert lines[3].startswith("| momentum | 1e+03 |")
    assert "[1/1] momentum" in out.stderr  # progress


def test_bench_rejects_bad_arguments(capsys):
    for argv in (["bench", "--rules", "lbfgs"], ["bench", "--sizes", "big"],
                 ["bench", "--sizes", "0"]):
        try:
            cli.main(argv)
        except SystemExit as exc:
            assert exc.code == 2
        else:
            raise AssertionError(f"{argv} was accepted")
    assert "unknown rule" in capsys.readouterr().err


def test_bytes_per_element_matches_the_issue():
    assert [_bench.bytes_per_element(r, np.float32) for r in _bench.RULES] == \
        [12, 20, 20, 20, 20, 28, 28, 28, 20, 28, 28, 28, 28, 40]
    # LAMB's two phases: Adam's 28 bytes, then the parameter and both moments read again
    assert _bench.bytes_per_element("lamb+ema", np.float32) == 48
    assert _bench.bytes_per_element("adam", np.float64) == 56


def test_bench_takes_the_moving_average(capsys):
    """``<rule>+ema``: the class with ema on, its bytes one buffer more, its roofline
    over one buffer more (five for a variant with three state buffers), no torch."""
    assert cli.main(["bench", "--sizes", "1e3", "--rules", "sgd+ema,adam_amsgrad+ema",
                     "--no-many", "--budget", "0.01", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["rule"] for r in rows] == ["sgd+ema", "adam_amsgrad+ema"]
    assert all("torch_s" not in r for r in rows)
    assert _bench.bytes_per_element("sgd+ema", np.float32) == 20
    assert _bench.bytes_per_element("adam_amsgrad+ema", np.float32) == 44
    assert _bench.options("adam_amsgrad+ema") == {"amsgrad": True, "ema": 0.999}
    assert _bench._inplace("adam_amsgrad+ema") == 5
    step = _bench.fastoptim_step("adam_amsgrad+ema", 10, np.float32, 1, "compiled")
    step()
    opt = next(c.cell_contents for c in step.__closure__
               if type(c.cell_contents).__name__ == "Adam")
    assert opt.rule.state == ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "ema")
    for bad in ("schedulefree_adamw+ema", "adam+ema+ema", "+ema"):
        assert not _bench.known(bad)
        with pytest.raises(SystemExit):
            cli.main(["bench", "--rules", bad])


def test_bench_takes_the_variants(capsys):
    """The options that add a state buffer are benchmarked as their variants: the class
    with the option on, its bytes one buffer more than the rule's."""
    assert cli.main(["bench", "--sizes", "1e3", "--rules", "adam,adam_amsgrad,"
                     "rmsprop_centered_momentum", "--no-torch", "--no-many", "--budget",
                     "0.01", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["rule"] for r in rows] == ["adam", "adam_amsgrad", "rmsprop_centered_momentum"]
    assert _bench.bytes_per_element("adam_amsgrad", np.float32) == 36
    assert _bench.bytes_per_element("rmsprop_centered_momentum", np.float32) == 36
    assert _bench.options("rmsprop_momentum") == {"momentum": 0.9}
    assert _bench.torch_kwargs("adamw_amsgrad") == ("AdamW", {"lr": 1e-3, "amsgrad": True})
    step = _bench.fastoptim_step("rmsprop_centered", 10, np.float32, 1, "compiled")
    step()
    assert step.__closure__  # made; the row it runs:
    opt = next(c.cell_contents for c in step.__closure__
               if type(c.cell_contents).__name__ == "RMSprop")
    assert opt.rule.name == "rmsprop_centered"


def test_bench_takes_bfloat16_state(capsys):
    """``<rule>+bf16``: the class with state_dtype="bfloat16", its bytes with 4 per state
    buffer, its roofline the float32 rule's scaled by the bytes, its state's bytes per
    parameter in the row (and the table), no torch."""
    assert cli.main(["bench", "--sizes", "1e3", "--rules", "adam,adam+bf16,momentum+ema+bf16",
                     "--no-many", "--budget", "0.01", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["rule"] for r in rows] == ["adam", "adam+bf16", "momentum+ema+bf16"]
    assert [r["state_bytes_per_param"] for r in rows] == [8.0, 4.0, 2.0 + 4.0]
    assert all("torch_s" not in r for r in rows[1:])
    assert _bench.bytes_per_element("adam+bf16", np.float32) == 20
    assert _bench.bytes_per_element("momentum+ema+bf16", np.float32) == 12 + 4 + 8
    step = _bench.fastoptim_step("adam+bf16", 10, np.float32, 1, "compiled")
    step()
    assert step.optimizer.state_dtype == "bfloat16"
    assert _bench.roofline_step("adam+bf16", 10, np.float32, 1).scale == 20 / 28
    assert _bench.bytes_per_element("adam+int8", np.float32) == 16
    assert _bench.known("adam_amsgrad+ema+int8") and not _bench.known("adamax+int8")
    for bad in ("lamb+bf16", "adam+bf16+ema", "adam+bf16+bf16", "adamax+int8",
                "adam+int8+bf16"):
        assert not _bench.known(bad)
        with pytest.raises(SystemExit):
            cli.main(["bench", "--rules", bad])
    assert cli.main(["bench", "--sizes", "1e3", "--rules", "adam+bf16", "--no-many",
                     "--budget", "0.01"]) == 0
    assert "state B/param" in capsys.readouterr().out
