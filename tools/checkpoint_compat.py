"""Checkpoints across Python and NumPy versions (run by .ci/run's support-window jobs).

    python tools/checkpoint_compat.py save DIR   # under one Python + NumPy
    python tools/checkpoint_compat.py load DIR   # under another

``save`` writes, for every optimizer class, a checkpoint of a fixed three-step run
(``<class>.<tag>.ckpt``, the tag naming this Python and NumPy). Under NumPy < 2.1 it also
writes ``<class>.<tag>.legacy.ckpt`` the way fastoptim 0.1.0 saved, ``np.savez(f,
allow_pickle=False, ...)``, which on those NumPy versions stores a stray ``allow_pickle``
member (checked here): the files users already have.

``load`` loads every checkpoint in DIR, checks its state bit for bit against the same run
made here, and that one more step from it equals one more step of the run that never
stopped. It fails if DIR holds no checkpoint. Inputs use only exactly rounded arithmetic
(no random numbers, no libm), so every NumPy and CPU target computes the same bits.
"""

import json
import os
import sys
import zipfile

import numpy as np

import fastoptim as fo
from fastoptim import checkpoint

CLASSES = [fo.SGD, fo.Momentum, fo.Nesterov, fo.AdaGrad, fo.RMSprop, fo.AdaDelta, fo.Adam,
           fo.AdamW]
OLD_SAVEZ = tuple(int(v) for v in np.__version__.split(".")[:2]) < (2, 1)
TAG = f"py{sys.version_info[0]}{sys.version_info[1]}-numpy{np.__version__}"


def params():
    return {"W": np.linspace(-1, 1, 30, dtype=np.float32).reshape(6, 5),
            "F": np.asfortranarray(np.linspace(-2, 3, 12).reshape(4, 3)),
            "b": np.linspace(0.5, 1.5, 7),
            "s": np.array(0.25, np.float32)}


def grads(step, ps):
    return {k: (v * np.asarray(0.125 * (step + 1), v.dtype) - np.asarray(0.3, v.dtype))
            for k, v in ps.items()}


def run(cls, steps):
    ps, opt = params(), cls(lr=0.01)
    for step in range(steps):
        opt.update(ps, grads(step, ps))
    return ps, opt


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


def save(directory):
    os.makedirs(directory, exist_ok=True)
    for cls in CLASSES:
        _, opt = run(cls, 3)
        fo.save(opt, os.path.join(directory, f"{cls.__name__}.{TAG}.ckpt"))
        if OLD_SAVEZ:  # what fastoptim 0.1.0 wrote under this NumPy
            header, arrays = checkpoint._pack(opt)
            blob = np.frombuffer(json.dumps(header).encode(), np.uint8)
            path = os.path.join(directory, f"{cls.__name__}.{TAG}.legacy.ckpt")
            with open(path, "wb") as f:
                np.savez(f, allow_pickle=False, header=blob, **arrays)
            assert "allow_pickle.npy" in zipfile.ZipFile(path).namelist(), path
    print(f"saved {len(os.listdir(directory))} checkpoints under {TAG} in {directory}")


def load(directory):
    names = sorted(n for n in os.listdir(directory) if n.endswith(".ckpt"))
    if not names:
        sys.exit(f"no checkpoints in {directory}")
    legacy = 0
    for name in names:
        cls = getattr(fo, name.split(".")[0])
        legacy += "allow_pickle.npy" in zipfile.ZipFile(os.path.join(directory, name)).namelist()
        loaded = fo.load(os.path.join(directory, name))
        ps, opt = run(cls, 3)
        assert type(loaded) is cls and loaded.hyperparams == opt.hyperparams, name
        for k, st in opt.state.items():
            assert loaded.state[k]["step"] == st["step"] == 3, (name, k)
            for n, buf in st.items():
                if n != "step":
                    assert same(loaded.state[k][n], buf), (name, k, n)
        resumed = {k: v.copy(order="K") for k, v in ps.items()}
        g = grads(3, ps)
        opt.update(ps, g)
        loaded.update(resumed, g)
        for k in ps:
            assert same(resumed[k], ps[k]), (name, k)
    writers = sorted({n.split(".", 1)[1].rsplit(".ckpt", 1)[0].replace(".legacy", "")
                      for n in names})
    print(f"loaded {len(names)} checkpoints written by {', '.join(writers)} under {TAG} "
          f"({legacy} with NumPy < 2.1's allow_pickle member): state bit-identical to this "
          f"run, and a step from each equal to never stopping")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("save", "load"):
        sys.exit(__doc__)
    {"save": save, "load": load}[sys.argv[1]](sys.argv[2])
