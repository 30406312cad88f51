"""Checkpoints on disk: fastoptim.save / fastoptim.load.

Round trips for every optimizer (continuing from a loaded checkpoint is bit-identical to
never stopping), atomic replacement (a writer killed with SIGKILL mid-save, many times,
always leaves the previous checkpoint loadable and intact), clear errors for corrupted or
tampered files and for state that does not fit the parameters later passed to update.
"""

import json
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import checkpoint
from fastoptim.checkpoint import CheckpointError

from conftest import HYPER, OPTIMIZERS, assert_same, assert_snapshot_equal, snapshot

SRC = os.path.dirname(os.path.dirname(os.path.abspath(fo.__file__)))


def model(rng):
    """Str keys, both dtypes, C and F order, 0-d and empty arrays."""
    return {"W1": rng.standard_normal((6, 5)).astype(np.float32),
            "b1": rng.standard_normal(5).astype(np.float32),
            "W2": np.asfortranarray(rng.standard_normal((5, 3))),
            "s": np.array(0.25),
            "e": np.zeros((0, 3), np.float32)}


def grads(rng, params):
    return {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in params.items()}


def copy_params(params):
    return {k: v.copy(order="K") for k, v in params.items()}


def trained(cls, steps=3, seed=0):
    rng = np.random.default_rng(seed)
    params = model(rng)
    opt = cls(**HYPER[cls])
    for _ in range(steps):
        opt.update(params, grads(rng, params))
    return opt, params


def only_checkpoint_left(directory, name):
    return sorted(os.listdir(directory)) == [name]


# -- round trips -------------------------------------------------------------------------

@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_round_trip_continues_bit_identically(cls, tmp_path):
    _round_trip(cls, HYPER[cls], tmp_path)


# the structural options: the variant's extra buffers are saved, and the loaded optimizer
# runs the variant again
@pytest.mark.parametrize("cls, options", [
    (fo.Adam, dict(amsgrad=True)), (fo.AdamW, dict(amsgrad=True)),
    (fo.RMSprop, dict(centered=True)), (fo.RMSprop, dict(momentum=0.6)),
    (fo.RMSprop, dict(momentum=0.6, centered=True))],
    ids=["Adam-amsgrad", "AdamW-amsgrad", "RMSprop-centered", "RMSprop-momentum",
         "RMSprop-centered-momentum"])
def test_round_trip_of_the_variants(cls, options, tmp_path):
    second = _round_trip(cls, {**HYPER[cls], **options}, tmp_path)
    assert second.rule.name == cls.rule.row_for(options).name != cls.rule.name
    for st in second.state.values():
        assert list(st) == ["step", *second.rule.state]


def _round_trip(cls, hyper, tmp_path):
    rng = np.random.default_rng(1)
    params = model(rng)
    gs = [grads(rng, params) for _ in range(8)]
    straight = copy_params(params)
    opt = cls(**hyper)
    for g in gs:
        opt.update(straight, g)

    resumed = copy_params(params)
    first = cls(**hyper)
    for g in gs[:4]:
        first.update(resumed, g)
    path = tmp_path / "opt.ckpt"
    fo.save(first, path)
    assert only_checkpoint_left(tmp_path, "opt.ckpt")  # no temporary file left
    second = fo.load(path)
    assert type(second) is cls and second.hyperparams == first.hyperparams
    assert second.num_threads is None and second.backend == "compiled"
    assert_snapshot_equal(snapshot(second, resumed), snapshot(first, resumed))
    for k, st in second.state.items():  # the state keeps its parameter's memory order
        for n, b in st.items():
            if n != "step":
                assert b.flags.f_contiguous == resumed[k].flags.f_contiguous
    for g in gs[4:]:
        second.update(resumed, g)
    for k in params:
        assert_same(resumed[k], straight[k])
    assert_snapshot_equal(snapshot(second, resumed), snapshot(opt, straight))
    return second


def test_int_keys_list_form_and_loading_options(tmp_path):
    rng = np.random.default_rng(2)
    ps = [rng.standard_normal(7), rng.standard_normal((2, 3)).astype(np.float32)]
    opt = fo.Momentum(lr=0.1, momentum=0.5)
    opt.update(ps, [np.ones(7), np.ones((2, 3), np.float32)])
    opt.update({np.int64(5): np.ones(3)}, {np.int64(5): np.ones(3)})  # a NumPy int key
    fo.save(opt, str(tmp_path / "m"))
    back = fo.load(tmp_path / "m", num_threads=1, backend="numpy")
    assert back.num_threads == 1 and back.backend == "numpy"
    assert list(back.state) == [0, 1, 5] and all(type(k) is int for k in back.state)
    assert [back.state[k]["step"] for k in (0, 1, 5)] == [1, 1, 1]
    for k in (0, 1, 5):
        assert_same(back.state[k]["velocity"], opt.state[k]["velocity"])
    back.update(ps, [np.ones(7), np.ones((2, 3), np.float32)])  # list form continues
    assert back.state[0]["step"] == 2


def test_empty_and_stateless_optimizers(tmp_path):
    fo.save(fo.AdamW(lr=0.1 + 0.2, betas=(0.0, 0.5), eps=0.0), tmp_path / "a")
    back = fo.load(tmp_path / "a")
    assert back.state == {} and back.lr == 0.1 + 0.2 and back.betas == (0.0, 0.5)
    assert back.eps == 0.0 and back.weight_decay == 1e-2
    sgd = fo.SGD(lr=0.5)
    sgd.update({"w": np.ones(3)}, {"w": np.ones(3)})
    fo.save(sgd, tmp_path / "s")
    assert fo.load(tmp_path / "s").state == {"w": {"step": 1}}


def test_overwrite_and_file_mode(tmp_path):
    path = tmp_path / "c"
    opt, _ = trained(fo.Adam)
    fo.save(opt, path)
    opt.lr = 0.5
    fo.save(opt, path)  # replaces the file
    assert fo.load(path).lr == 0.5
    assert only_checkpoint_left(tmp_path, "c")
    if os.name == "posix":  # created like open() would create it: 0o666 minus the umask
        umask = os.umask(0o022)
        os.umask(umask)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask


def test_file_is_a_plain_npz_without_pickles(tmp_path):
    opt, _ = trained(fo.RMSprop)
    fo.save(opt, tmp_path / "c")
    with np.load(tmp_path / "c", allow_pickle=False) as z:
        header = json.loads(z["header"].tobytes())
        assert header["format"] == "fastoptim-checkpoint" and header["version"] == 1
        assert header["optimizer"] == "RMSprop"
        assert [p["key"] for p in header["params"]] == ["W1", "b1", "W2", "s", "e"]
        assert_same(z[header["params"][2]["buffers"]["square_avg"]],
                    opt.state["W2"]["square_avg"])


# -- refused before anything is written ------------------------------------------------

@pytest.mark.parametrize("key", [(1, 2), 1.5, None, True, b"W"],
                         ids=["tuple", "float", "None", "bool", "bytes"])
def test_unsupported_keys_are_refused_at_save(tmp_path, key):
    opt = fo.Adam()
    opt.update({"ok": np.ones(2), key: np.ones(3)}, {"ok": np.ones(2), key: np.ones(3)})
    path = tmp_path / "c"
    with pytest.raises(TypeError, match=r"cannot save parameter key .* checkpoint keys "
                                        r"must be str or int"):
        fo.save(opt, path)
    assert os.listdir(tmp_path) == []


def test_other_objects_are_refused_at_save(tmp_path):
    class MyAdam(fo.Adam):
        pass

    with pytest.raises(TypeError, match="cannot save a MyAdam"):
        fo.save(MyAdam(), tmp_path / "c")
    with pytest.raises(TypeError, match="expects a fastoptim optimizer, got dict"):
        fo.save(fo.Adam().state_dict(), tmp_path / "c")
    with pytest.raises(IsADirectoryError):
        fo.save(fo.Adam(), tmp_path)
    assert os.listdir(tmp_path) == []


# -- mismatches after loading: a clear error and nothing changed -----------------------

@pytest.mark.parametrize("cls", [c for c in OPTIMIZERS if c is not fo.SGD],
                         ids=lambda c: c.__name__)
def test_loaded_state_that_does_not_fit_the_parameters(cls, tmp_path):
    opt, params = trained(cls)
    fo.save(opt, tmp_path / "c")
    for bad_key, bad in [("W1", np.ones((5, 6), np.float32)),   # shape
                         ("b1", np.ones(5)),                      # dtype
                         ("s", np.ones(1))]:                      # 0-d became 1-d
        loaded = fo.load(tmp_path / "c")
        ps = {**copy_params(params), bad_key: bad}
        gs = {k: np.ones_like(v) for k, v in ps.items()}
        before = snapshot(loaded, ps)
        with pytest.raises(ValueError, match=rf"optimizer state '\w+' of parameter "
                                             rf"'{bad_key}' has shape .* but the parameter "
                                             r"now has shape"):
            loaded.update(ps, gs)
        assert_snapshot_equal(snapshot(loaded, ps), before)


def test_a_checkpoint_of_another_kind(tmp_path):
    opt, params = trained(fo.Adam)
    fo.save(opt, tmp_path / "c")
    assert type(fo.load(tmp_path / "c")) is fo.Adam  # load returns the saved kind
    sgd = fo.Momentum(lr=0.1)
    sgd.update(copy_params(params), {k: np.ones_like(v) for k, v in params.items()})
    before = sgd.state_dict()
    with pytest.raises(ValueError, match="belongs to a Adam optimizer, not Momentum"):
        sgd.load_state_dict(checkpoint.read_state_dict(tmp_path / "c"))
    after = sgd.state_dict()
    assert after["hyperparams"] == before["hyperparams"]
    for k in before["state"]:
        assert_same(after["state"][k]["velocity"], before["state"][k]["velocity"])
    # the same kind loads into an existing optimizer
    adam = fo.Adam()
    adam.load_state_dict(checkpoint.read_state_dict(tmp_path / "c"))
    assert adam.hyperparams == opt.hyperparams


# -- corrupted and tampered files ------------------------------------------------------

def write_npz(path, header_dict=None, **arrays):
    """An .npz as ``np.savez`` writes it (an uncompressed zip of ``<name>.npy``), member by
    member, so that every name is a member on every NumPy (``np.savez`` takes
    ``allow_pickle`` as its own keyword from NumPy 2.1 on)."""
    if header_dict is not None:
        arrays["header"] = np.frombuffer(json.dumps(header_dict).encode(), np.uint8)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            with zf.open(f"{name}.npy", "w") as m:
                np.lib.format.write_array(m, np.asanyarray(arr), allow_pickle=True)


def saved(tmp_path):
    opt, _ = trained(fo.Adam)
    path = tmp_path / "c"
    fo.save(opt, path)
    with np.load(path) as z:
        header = json.loads(z["header"].tobytes())
        arrays = {k: z[k] for k in z.files if k != "header"}
    return path, header, arrays


class Evil:
    """Unpickling this creates a marker file: loading must never get that far."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def tamper_cases(tmp_path):
    path, header, arrays = saved(tmp_path)
    data = path.read_bytes()
    member = header["params"][0]["buffers"]["exp_avg"]
    cases = {}

    def case(name, match, make):
        cases[name] = (make, match)

    def flipped(p):
        raw = bytearray(data)
        i = raw.index(arrays[member].tobytes()[:64]) + 17
        raw[i] ^= 0x40
        p.write_bytes(bytes(raw))

    def edit(fn):
        def make(p):
            h = json.loads(json.dumps(header))
            a = dict(arrays)
            fn(h, a)
            write_npz(p, h, **a)
        return make

    case("flipped data byte", r"truncated or corrupted \(BadZipFile: Bad CRC-32 for file "
                              r"'p0\.exp_avg\.npy'", flipped)
    case("truncated", r"it is truncated or corrupted \(BadZipFile",
         lambda p: p.write_bytes(data[:len(data) // 2]))
    case("empty file", r"the file is empty", lambda p: p.write_bytes(b""))
    case("not a zip", r"it is not an \.npz \(zip\) archive",
         lambda p: p.write_bytes(b"just some text\n" * 20))
    case("a single .npy", r"single \.npy array, not an \.npz archive",
         lambda p: p.write_bytes(_npy_bytes(tmp_path, np.ones(3))))
    case("no header", r"has no header", lambda p: write_npz(p, None, **arrays))
    case("header not JSON", r"header is not JSON",
         lambda p: write_npz(p, None, header=np.frombuffer(b"{oops", np.uint8), **arrays))
    case("other format", r"does not say format", edit(lambda h, a: h.update(format="x")))
    case("newer version", r"format version 3 was written by a newer fastoptim",
         edit(lambda h, a: h.update(version=3)))
    case("version 2 without groups", r"header has the fields .* expected .*'groups'",
         edit(lambda h, a: h.update(version=2)))
    case("unknown optimizer", r"unknown optimizer 'Shampoo'",
         edit(lambda h, a: h.update(optimizer="Shampoo")))
    case("other kind's state", r"has state \['exp_avg', 'exp_avg_sq'\] but a Momentum "
                               r"keeps \['velocity'\]",
         edit(lambda h, a: h.update(optimizer="Momentum")))
    case("hyper-parameter out of range", r"Invalid beta1: 1\.5",
         edit(lambda h, a: h["hyperparams"].update(betas=[1.5, 0.9])))
    case("hyper-parameter missing", r"hyperparams must have exactly the keys",
         edit(lambda h, a: h["hyperparams"].pop("eps")))
    case("negative step", r"bad step -1",
         edit(lambda h, a: h["params"][0].update(step=-1)))
    case("shape lie", r"has shape \(6, 5\) and dtype float32, but the header says "
                      r"\[5, 6\]",
         edit(lambda h, a: h["params"][0].update(shape=[5, 6])))
    case("missing member", r"state 'exp_avg' of parameter 'W1' is missing",
         edit(lambda h, a: a.pop(member)))
    case("extra member", r"unexpected members \['payload'\]",
         edit(lambda h, a: a.update(payload=np.ones(2))))
    # NumPy < 2.1 stored savez's allow_pickle=False as a 0-d bool member; anything else by
    # that name is as foreign as any other member
    for what, value in (("True", np.array(True)), ("1-d", np.array([False])),
                        ("int", np.array(0)), ("float32", np.array(0, np.float32))):
        case(f"allow_pickle {what}", r"unexpected members \['allow_pickle'\]",
             edit(lambda h, a, value=value: a.update(allow_pickle=value)))
    case("allow_pickle and another", r"unexpected members \['payload'\]",
         edit(lambda h, a: a.update(allow_pickle=np.array(False), payload=np.ones(2))))
    case("member used twice", r"used twice",
         edit(lambda h, a: h["params"][1]["buffers"].update(exp_avg=member)))
    case("duplicate key", r"key 'W1' appears twice",
         edit(lambda h, a: h["params"][1].update(key="W1")))
    case("bad key type", r"bad key",
         edit(lambda h, a: h["params"][1].update(key_type="tuple")))
    case("integer state", r"but the header says",
         edit(lambda h, a: a.update({member: a[member].astype(np.int32)})))
    case("buffers of different shapes", r"'exp_avg_sq' of parameter 'W1' has shape \(6, 5\)",
         edit(lambda h, a: (h["params"][0].update(shape=[2, 2]),
                            a.update({member: np.zeros((2, 2), np.float32)}))))
    marker = tmp_path / "pwned"
    case("pickled object member", r"Object arrays cannot be loaded when allow_pickle=False",
         edit(lambda h, a: a.update(
             {member: np.array([Evil(str(marker))], dtype=object)})))
    return path, cases, marker


def _npy_bytes(tmp_path, arr):
    p = tmp_path / "x.npy"
    np.save(p, arr)
    return p.read_bytes()


def test_corrupted_and_tampered_files_give_clear_errors(tmp_path):
    path, cases, marker = tamper_cases(tmp_path)
    good = path.read_bytes()
    for name, (make, match) in cases.items():
        bad = tmp_path / f"bad-{name.replace(' ', '-')}"
        make(bad)
        with pytest.raises(CheckpointError, match=match):
            fo.load(bad)
        assert path.read_bytes() == good
    assert not marker.exists()  # no code from a file ever ran
    with pytest.raises(FileNotFoundError):
        fo.load(tmp_path / "nothing-here")
    assert issubclass(CheckpointError, ValueError)


# -- files written under any supported NumPy ---------------------------------------------

OLD_SAVEZ = tuple(int(x) for x in np.__version__.split(".")[:2]) < (2, 1)


def test_save_writes_only_the_header_and_the_state_on_every_numpy(tmp_path):
    path, header, arrays = saved(tmp_path)
    members = sorted(zipfile.ZipFile(path).namelist())
    assert members == sorted(["header.npy"] + [f"{m}.npy" for m in arrays])
    assert "allow_pickle.npy" not in members


def test_numpy_before_2_1_stores_savez_allow_pickle_as_a_member(tmp_path):
    """The fact behind the old-layout files: np.savez(f, allow_pickle=False, ...), as
    fastoptim 0.x called it, adds a member on NumPy < 2.1 and not from 2.1 on."""
    np.savez(tmp_path / "x.npz", allow_pickle=False, a=np.ones(2))
    with np.load(tmp_path / "x.npz") as z:
        assert ("allow_pickle" in z.files) == OLD_SAVEZ
        if OLD_SAVEZ:
            stray = z["allow_pickle"]
            assert stray.dtype == np.bool_ and stray.shape == () and not stray.item()


@pytest.mark.parametrize("how", ["fabricated", "np.savez"])
def test_a_checkpoint_written_by_old_numpy_loads(tmp_path, how):
    """A file with NumPy < 2.1's stray member (written member by member on any NumPy,
    and through np.savez itself, which writes that member on old NumPy) loads as the
    same checkpoint without it."""
    path, header, arrays = saved(tmp_path)
    old = tmp_path / "old"
    members = {"header": np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays}
    if how == "fabricated":
        write_npz(old, allow_pickle=np.array(False), **members)
    else:
        with open(old, "wb") as f:
            np.savez(f, allow_pickle=False, **members)
    assert ("allow_pickle.npy" in zipfile.ZipFile(old).namelist()) == (
        how == "fabricated" or OLD_SAVEZ)
    a, b = fo.load(path), fo.load(old)
    assert type(a) is type(b) and a.hyperparams == b.hyperparams
    for k, st in a.state.items():
        assert b.state[k]["step"] == st["step"]
        for n, buf in st.items():
            if n != "step":
                assert_same(b.state[k][n], buf)


# -- atomic writes: kill the writer mid-save ----------------------------------------------

WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    import fastoptim as fo

    path, n, version = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    base = np.arange(n, dtype=np.float32)
    opt = fo.Adam()
    while True:
        version += 1
        opt.load_state_dict({
            "optimizer": "Adam",
            "hyperparams": {"lr": version * 1e-3, "betas": (0.9, 0.999), "eps": 1e-8,
                            "weight_decay": 0.0},
            "state": {"w": {"step": version, "exp_avg": base + version,
                            "exp_avg_sq": base * 2 + version},
                      "b": {"step": version, "exp_avg": np.full(3, version, np.float64),
                            "exp_avg_sq": np.zeros(3)}}})
        fo.save(opt, path)
        print(version, flush=True)
""")


def check_version(path, n, allowed):
    """The checkpoint at ``path`` is complete, consistent, and one of ``allowed``."""
    opt = fo.load(path)
    version = opt.state["w"]["step"]
    assert version in allowed
    base = np.arange(n, dtype=np.float32)
    assert opt.lr == version * 1e-3 and opt.state["b"]["step"] == version
    assert_same(opt.state["w"]["exp_avg"], base + version)
    assert_same(opt.state["w"]["exp_avg_sq"], base * 2 + version)
    assert_same(opt.state["b"]["exp_avg"], np.full(3, version, np.float64))
    return version


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_writer_killed_mid_save_leaves_the_previous_checkpoint(tmp_path):
    n, kills = 1 << 20, 8  # 8 MB per save
    path = tmp_path / "ckpt"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    rnd = random.Random(6)
    version, left_temp = 0, 0
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n),
                                 str(version)], stdout=subprocess.PIPE, text=True, env=env)
        try:
            first = proc.stdout.readline()  # one complete save in this process
            assert first.strip(), "the writer died before its first save"
            # saves follow each other back to back: the kill lands mid-save most times
            try:
                proc.wait(timeout=rnd.uniform(0.0, 0.15))
            except subprocess.TimeoutExpired:
                pass
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            reported = [int(line) for line in [first, *proc.stdout.read().split()]]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        last = reported[-1]
        # killed after os.replace but before the print: the next version, complete
        version = check_version(path, n, allowed={last, last + 1})
        temps = [f for f in os.listdir(tmp_path) if f != "ckpt"]
        assert all(f.startswith(".ckpt.") and f.endswith(".fastoptim-tmp") for f in temps)
        left_temp += bool(temps)
    # at least one kill hit a save between creating its temporary file and the rename
    assert left_temp >= 1
    # the next save removes temporary files whose writer is gone
    fo.save(fo.load(path), path)
    assert only_checkpoint_left(tmp_path, "ckpt")
    check_version(path, n, allowed={version})


@pytest.mark.skipif(os.name != "posix", reason="stale temporary files are removed on POSIX")
def test_stale_temporary_files(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid names no process now (pids are not reused this fast)
    stale = f".c.{dead.pid}.0123456789abcdef.fastoptim-tmp"
    live = f".c.{os.getppid()}.0123456789abcdef.fastoptim-tmp"     # its writer runs
    other = f".c.1.{dead.pid}.0123456789abcdef.fastoptim-tmp"      # belongs to "c.1"
    mine = f".c.{os.getpid()}.0123456789abcdef.fastoptim-tmp"      # this process's
    unrelated = ["c.bak", f".c.{dead.pid}.xyz.fastoptim-tmp", "notes.txt"]
    for name in [stale, live, other, mine, *unrelated]:
        (tmp_path / name).write_bytes(b"partial")
    fo.save(fo.SGD(), tmp_path / "c")
    assert sorted(os.listdir(tmp_path)) == sorted(["c", live, other, mine, *unrelated])


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "c"
    opt, _ = trained(fo.Adam)
    fo.save(opt, path)
    good = path.read_bytes()

    def boom(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "fsync", boom)
    opt.lr = 0.5
    with pytest.raises(OSError, match="No space left"):
        fo.save(opt, path)
    assert path.read_bytes() == good
    assert only_checkpoint_left(tmp_path, "c")
    assert zipfile.is_zipfile(path)


def test_schedule_free_optimizer_state_is_in_the_header(tmp_path):
    """A Schedule-Free checkpoint's header has "optimizer_state" (JSON numbers: float64
    exactly); without it, or with it on another kind, the file is refused."""
    opt = fo.ScheduleFreeAdamW(lr=0.3, warmup_steps=3, r=1.5)
    params = {"w": np.linspace(-1, 1, 7)}
    for i in range(4):
        opt.update(params, {"w": np.cos(params["w"] * (i + 1))})
        opt.lr = opt.lr / 3  # an lr with a long binary expansion in lr_max / weight_sum
    path = tmp_path / "sf"
    fo.save(opt, path)
    with np.load(path) as z:
        header = json.loads(z["header"].tobytes())
        arrays = {k: z[k] for k in z.files if k != "header"}
    assert header["optimizer_state"] == opt.optimizer_state
    assert fo.load(path).optimizer_state == opt.optimizer_state  # bit for bit
    bad = tmp_path / "bad"
    write_npz(bad, {k: v for k, v in header.items() if k != "optimizer_state"}, **arrays)
    with pytest.raises(checkpoint.CheckpointError, match="optimizer_state"):
        fo.load(bad)
    path2, adam_header, adam_arrays = saved(tmp_path)
    write_npz(bad, {**adam_header, "optimizer_state": header["optimizer_state"]},
              **adam_arrays)
    with pytest.raises(checkpoint.CheckpointError, match="fields"):
        fo.load(bad)
