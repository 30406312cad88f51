"""`fastoptim bench --e2e`: a tiny run (one small model, one epoch) has the table and the
JSON docs/performance.rst quotes, its worker processes got the environments their rows name, and
they exit -- after the run, and when their parent dies. Every wait has a timeout. No
time is asserted; the invariants checked (an update is part of its epoch, the ratios are
what the times give, every configuration ends bit-identical) hold on any machine."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import cli
from fastoptim.demo import e2e, loop, nn

TINY = ["--e2e", "--models", "8-16-4", "--epochs", "1", "--samples", "96",
        "--batch-size", "32", "--settle", "0", "--timeout", "60"]


def _env():
    env = dict(os.environ)
    src = str(Path(fo.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _gone(pid):
    """True once ``pid`` has exited (a zombie counts: it runs no more)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, IndexError):
        return True


def _wait_gone(pid, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return False


def test_e2e_json(capsys):
    assert cli.main(["bench", *TINY, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mode"] == "e2e" and result["models"] == ["8-16-4"]
    assert result["configs"] == list(e2e.E2E_CONFIGS)
    rows = result["rows"]
    assert [(r["blas"], r["config"]) for r in rows] == [
        (b, c) for b in e2e.E2E_BLAS for c in e2e.E2E_CONFIGS]
    for r in rows:
        assert r["sizes"] == [8, 16, 4] and len(r["epochs_s"]) == 1
        assert 0 < r["update_s"] < r["epoch_s"]          # the update is part of the epoch
        assert r["update_share"] == r["update_s"] / r["epoch_s"]
        assert np.isfinite(r["final_loss"])
        # bit-identical to the reference; the plain loop is the same rule, not checked
        assert r["same_trajectory"] is (None if r["config"] == "plain" else True)
    for b in e2e.E2E_BLAS:
        group = {r["config"]: r for r in rows if r["blas"] == b}
        for r in group.values():
            assert r["speedup_vs_reference"] == group["reference"]["epoch_s"] / r["epoch_s"]
            assert r["speedup_vs_plain"] == group["plain"]["epoch_s"] / r["epoch_s"]
        # the plain Adam's loss is the reference's, to rounding
        assert group["plain"]["final_loss"] == pytest.approx(group["reference"]["final_loss"],
                                                             rel=1e-5)
        assert group["passive"]["environment"].get("OMP_WAIT_POLICY") == "passive"
        assert "OMP_WAIT_POLICY" not in group["fastoptim"]["environment"]
    one = [r for r in rows if r["blas"] == "1"]
    assert all(r["environment"]["OPENBLAS_NUM_THREADS"] == "1" for r in one)
    if one[0]["blas_threads"] is not None:               # threadpoolctl installed
        assert all(r["blas_threads"] == 1 for r in one)
    # four workers ((BLAS default, 1) x (wait policy default, passive)); all exited cleanly
    assert len(result["workers"]) == 4
    for w in result["workers"]:
        assert w["returncode"] == 0 and _gone(w["pid"])


def test_e2e_table_through_python_m():
    out = subprocess.run([sys.executable, "-m", "fastoptim", "bench", *TINY],
                         capture_output=True, text=True, env=_env(), timeout=180)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("fastoptim ") and "threads by default" in lines[0]
    assert "median of 1 epochs" in lines[1]
    assert "× = plain NumPy Adam epoch / this epoch (above 1: faster than the plain NumPy " \
        "loop)" in lines[1]
    assert lines[2] == ("| model | BLAS threads | plain NumPy Adam | "
                        "fastoptim.reference (NumPy) | fastoptim default | "
                        "fastoptim num_threads=1 | default, OMP_WAIT_POLICY=passive |")
    body = [li for li in lines if li.startswith("| 8-16-4 |")]
    assert len(body) == 2 and body[1].startswith("| 8-16-4 | 1")
    for li in body:
        cells = [c.strip() for c in li.strip("|").split("|")]
        assert all(" ms (" in c and "% in update)" in c for c in cells[2:])
        assert not cells[2].endswith("×")                # the baseline's own column
        assert all(c.endswith("×") for c in cells[3:])
    assert "fastoptim.demo.plain.Adam, Adam as a user writes it" in out.stdout
    assert "the NumPy specification fastoptim matches bit for bit" in out.stdout
    assert "every fastoptim configuration ended with parameters bit-identical" in out.stdout
    assert "[e2e 1/1] 8-16-4: warm-up" in out.stderr


def test_e2e_table_baseline():
    """The ratios divide by the plain loop's epoch, or by the reference's when the plain
    loop did not run (run_e2e(configs=...))."""
    def row(config, epoch_s):
        return {"model": "8-4", "blas": "1", "blas_threads": 1, "config": config,
                "epoch_s": epoch_s, "update_share": 0.5, "same_trajectory": None,
                "speedup_vs_plain": None, "speedup_vs_reference": None}

    rows = [row("plain", 0.004), row("reference", 0.006), row("fastoptim", 0.002)]
    for r in rows:
        r["speedup_vs_plain"] = 0.004 / r["epoch_s"]
        r["speedup_vs_reference"] = 0.006 / r["epoch_s"]
    result = {"configs": ["plain", "reference", "fastoptim"], "models": ["8-4"],
              "blas": ["1"], "rows": rows}
    body = e2e.e2e_table(result).splitlines()[-1]
    assert body == ("| 8-4 | 1 (1) | 4.00 ms (50% in update) | 6.00 ms (50% in update) "
                    "0.67× | 2.00 ms (50% in update) 2.00× |")
    result = {**result, "configs": ["reference", "fastoptim"], "rows": rows[1:]}
    assert e2e.e2e_table(result).splitlines()[-1] == (
        "| 8-4 | 1 (1) | 6.00 ms (50% in update) | 2.00 ms (50% in update) 3.00× |")
    assert e2e.e2e_baseline(["serial"]) is None


@pytest.mark.parametrize("argv, message", [
    (["--models", "784-x-10"], "--models"),
    (["--models", "10"], "at least two"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--threads", "2"], "--threads does not apply"),
    (["--settle", "-1"], "--settle"),
])
def test_e2e_rejects_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--e2e", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_run_e2e_rejects_unknown_configs():
    with pytest.raises(ValueError, match="unknown e2e config"):
        e2e.run_e2e(["8-4"], configs=["reference", "torch"])
    with pytest.raises(ValueError, match="unknown BLAS setting"):
        e2e.run_e2e(["8-4"], blas=["2"])


def test_worker_answer_times_out_and_close_ends_it():
    w = e2e._Worker({}, {"models": ["8-4"], "samples": 16, "batch_size": 8, "seed": 0,
                         "configs": ["serial"]})
    try:
        # a fresh worker cannot answer within 1 ms (it is still starting Python)
        with pytest.raises(TimeoutError, match="did not answer within"):
            w.receive(0.001)
        assert w.receive(60)["ready"]
        res = w.ask({"model": 0, "config": "serial"}, 60)
        assert 0 < res["update_s"] < res["epoch_s"]
    finally:
        w.close()
    assert w.proc.returncode == 0


def test_worker_error_is_reported():
    w = e2e._Worker({}, {"models": ["8-4"], "samples": 16, "batch_size": 8, "seed": 0,
                         "configs": ["lion"]})
    try:
        with pytest.raises(RuntimeError, match="unknown e2e config 'lion'"):
            w.receive(60)
    finally:
        w.close()


PARENT = textwrap.dedent("""
    import sys
    from fastoptim.demo import e2e
    spec = {"models": [sys.argv[1]], "samples": int(sys.argv[2]), "batch_size": 64,
            "seed": 0, "configs": ["reference"]}
    w = e2e._Worker({"OPENBLAS_NUM_THREADS": "1"}, spec)   # steadier on a busy machine
    w.receive(60)
    print(w.proc.pid, flush=True)
    if sys.argv[3] == "busy":
        w._send({"model": 0, "config": "reference"})
    print("sent", flush=True)
    sys.stdin.readline()                                 # wait to be killed
""")


@pytest.mark.parametrize("state", ["idle", "busy"])
def test_workers_die_with_their_parent(state):
    """SIGKILL the parent (no cleanup runs): its worker exits, idle (stdin closes) or in
    the middle of an epoch (its answer finds no reader)."""
    # busy: an epoch of ~0.5 s or more, and the kill comes right after the request
    model, samples = ("8-4", "64") if state == "idle" else ("784-1024-10", "4096")
    parent = subprocess.Popen([sys.executable, "-c", PARENT, model, samples, state],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=_env())
    try:
        pid = int(parent.stdout.readline())
        assert parent.stdout.readline() == "sent\n"
        assert not _gone(pid)
    finally:
        parent.kill()
        parent.wait(timeout=30)
        parent.stdin.close()
        parent.stdout.close()
    assert _wait_gone(pid, timeout=60), f"worker {pid} outlived its parent"


def test_plain_reference_is_bit_identical_to_every_optimizer():
    rng = np.random.default_rng(1)
    for name in ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "AdaDelta", "Adam",
                 "AdamW"]:
        cls = getattr(fo, name)
        for dtype in (np.float32, np.float64):
            hyper = {"weight_decay": 0.01} if name != "AdaDelta" else {"lr": 0.5}
            opt, ref = cls(**hyper), loop.PlainReference(cls(**hyper))
            p = {"W": rng.standard_normal((5, 7)).astype(dtype),
                 "b": rng.standard_normal(7).astype(dtype)}
            q = {k: v.copy() for k, v in p.items()}
            for _ in range(4):
                g = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in p.items()}
                opt.update(p, g)
                ref.update(q, g)
            for k in p:
                assert np.array_equal(p[k], q[k]), (name, dtype, k)
                assert q[k].dtype == dtype
            assert ref.step == 4


def test_train_epoch_times_one_pass():
    sizes = e2e.parse_model("6-5-3")
    batches = e2e.e2e_data(sizes, 50, 16)
    assert [len(x) for x, _ in batches] == [16, 16, 16, 2]
    assert all(x.dtype == np.float32 and x.shape[1] == 6 and t.max() < 3
               for x, t in batches)
    net = nn.MLP(sizes, seed=0)
    calls = []

    class Counting:
        def update(self, params, grads):
            calls.append(sorted(grads))
            assert params is net.params
    epoch_s, update_s = loop.train_epoch(net, Counting(), batches)
    assert calls == [sorted(net.params)] * 4 and 0 < update_s < epoch_s
