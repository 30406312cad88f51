"""``fastoptim bench --e2e``: epochs of a training loop, timed (see :func:`run_e2e`).

Epochs of ``fastoptim.demo.nn.MLP`` with Adam, the wall time of forward, backward and
``update`` together, with the plain NumPy Adam a user writes (:mod:`fastoptim.demo.plain`,
the baseline), the NumPy reference (``fastoptim.reference``), fastoptim's default,
``num_threads=1`` and the default under ``OMP_WAIT_POLICY=passive``, each with NumPy's
BLAS at its default thread count and at one thread, in worker processes (``python -m
fastoptim.demo.e2e --e2e-worker``, one per environment). ``bench/test_bench_e2e.py``
times the same epochs with pytest-benchmark.
"""

import hashlib
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from .._bench import cpu_name
from . import plain
from .loop import PlainReference, train_epoch

E2E_MODELS = ("64-100-10", "784-256-10", "784-1024-1024-10")
# the optimizer rows of the e2e table, in its column order
E2E_CONFIGS = ("plain", "reference", "fastoptim", "serial", "passive")
E2E_LABELS = {"plain": "plain NumPy Adam", "reference": "fastoptim.reference (NumPy)",
              "fastoptim": "fastoptim default", "serial": "fastoptim num_threads=1",
              "passive": "default, OMP_WAIT_POLICY=passive"}
E2E_BLAS = ("default", "1")
# Variables that decide a row's OpenMP wait policy or BLAS thread count. Every worker
# starts with them cleared, then gets its own: what a row says is what it ran.
BLAS_ENV = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
            "VECLIB_MAXIMUM_THREADS")
WAIT_ENV = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def parse_model(text):
    """'784-256-10' -> [784, 256, 10] (input, hidden..., classes)."""
    try:
        sizes = [int(s) for s in str(text).split("-")]
    except ValueError:
        raise ValueError(f"model {text!r}: give layer widths like 784-256-10") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"model {text!r}: at least two positive widths, like 64-100-10")
    return sizes


def e2e_data(sizes, samples, batch_size, seed=0):
    """Synthetic float32 data for an MLP of ``sizes``: standard normal inputs, labels of a
    random linear teacher (so the loss can fall), cut into mini-batches (views)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((samples, sizes[0])).astype(np.float32)
    t = (x @ rng.standard_normal((sizes[0], sizes[-1])).astype(np.float32)).argmax(axis=1)
    return [(x[i:i + batch_size], t[i:i + batch_size]) for i in range(0, samples, batch_size)]


def e2e_optimizer(config):
    """Adam (lr 1e-3) for a row: 'plain' (``fastoptim.demo.plain.Adam``, the plain NumPy
    Adam a user writes), 'reference' (PlainReference: ``fastoptim.reference.adam``),
    'serial' (num_threads=1), 'fastoptim' or 'passive' (the library's default; 'passive'
    differs by its process's environment)."""
    import fastoptim as fo

    if config == "plain":
        return plain.Adam()
    if config == "reference":
        return PlainReference(fo.Adam())
    if config == "serial":
        return fo.Adam(num_threads=1)
    if config in ("fastoptim", "passive"):
        return fo.Adam()
    raise ValueError(f"unknown e2e config {config!r}; choose from {E2E_CONFIGS}")


def _params_digest(net):
    h = hashlib.sha256()
    for key in sorted(net.params):
        h.update(key.encode())
        h.update(np.ascontiguousarray(net.params[key]).tobytes())
    return h.hexdigest()


def _blas_threads():
    """NumPy's BLAS thread count as threadpoolctl sees it, or None without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    counts = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
    return max(counts) if counts else None


def _e2e_worker():
    """A persistent worker of ``run_e2e`` (``python -m fastoptim.demo.e2e --e2e-worker``).

    Reads its spec (JSON) from the first line of stdin, builds each model's data and, for
    each of its configs, a net (same initial weights everywhere) and an optimizer, and
    answers ``{"ready": ...}``. Then one JSON request per line: ``{"model": i, "config":
    name}`` runs one epoch and answers its times; ``{"digest": i}`` answers a hash of
    every config's parameters. It exits when stdin closes (the parent finished or died).
    """
    from . import nn

    spec = json.loads(sys.stdin.readline())
    out = sys.stdout

    def send(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    runs = {}
    for i, text in enumerate(spec["models"]):
        sizes = parse_model(text)
        batches = e2e_data(sizes, spec["samples"], spec["batch_size"], spec["seed"])
        for config in spec["configs"]:
            net = nn.MLP(sizes, seed=spec["seed"])
            runs[(i, config)] = (net, e2e_optimizer(config), batches)
    import fastoptim as fo

    try:
        send({"ready": True, "pid": os.getpid(), "blas_threads": _blas_threads(),
              "threads": fo.get_config()["threads"],
              "environment": {k: os.environ[k] for k in BLAS_ENV + WAIT_ENV
                              if k in os.environ}})
        for line in sys.stdin:
            req = json.loads(line)
            if "digest" in req:
                send({c: _params_digest(runs[(req["digest"], c)][0])
                      for c in spec["configs"]})
                continue
            net, opt, batches = runs[(req["model"], req["config"])]
            epoch_s, update_s = train_epoch(net, opt, batches)
            send({"epoch_s": epoch_s, "update_s": update_s, "loss": float(net.last_loss)})
    except BrokenPipeError:  # the parent is gone: so are we
        os._exit(1)


class _Worker:
    """The parent's end of one ``_e2e_worker``: a process with its own environment, asked
    one request at a time; every wait has a timeout, and ``close`` always ends it."""

    def __init__(self, env_vars, spec):
        env = {k: v for k, v in os.environ.items() if k not in BLAS_ENV + WAIT_ENV}
        env.update(env_vars)
        # the worker imports the fastoptim this process runs, wherever it comes from
        pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (pkg_root, env.get("PYTHONPATH")) if p)
        self.env_vars = dict(env_vars)
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastoptim.demo.e2e", "--e2e-worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, env=env)
        self._buf = b""
        self._send(spec)
        self.info = None

    def _send(self, obj):
        try:
            self.proc.stdin.write((json.dumps(obj) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise RuntimeError(self._died()) from None

    def _died(self):
        self._err.seek(0)
        tail = self._err.read().decode(errors="replace")[-2000:]
        return (f"e2e worker {self.env_vars or '(default environment)'} exited "
                f"(status {self.proc.poll()}): {tail.strip() or 'no error output'}")

    def receive(self, timeout):
        """The next JSON line from the worker, waiting at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"e2e worker {self.env_vars or '(default environment)'} "
                                   f"did not answer within {timeout:g} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    self.proc.wait(timeout=10)
                    raise RuntimeError(self._died())
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def ask(self, request, timeout):
        self._send(request)
        return self.receive(timeout)

    def close(self):
        """Close its stdin (it exits), wait a little, kill it if it does not."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc.stdout.close()
        self._err.close()


def run_e2e(models=E2E_MODELS, epochs=3, samples=4096, batch_size=64, progress=None,
            configs=E2E_CONFIGS, blas=E2E_BLAS, seed=0, timeout=300.0, settle=0.15):
    """Epoch wall times of MLP training with Adam: every model x BLAS setting x config.

    One persistent worker process per environment -- (BLAS default or 1 thread) x
    (OpenMP wait policy as installed, or ``OMP_WAIT_POLICY=passive``), variables that only
    count at process start -- builds its nets and data once; the parent asks for one
    epoch of one configuration at a time, in rounds over every configuration of a model
    (order reversed every other round), so that noise hits every configuration alike.
    Round 0 is a warm-up (first touch of the optimizer state, thread pools starting) and
    is not counted; each configuration's epoch time is the median of ``epochs`` rounds,
    its ``update`` time the median of the same epochs' time in ``opt.update``. Before each
    timed epoch the parent waits ``settle`` seconds: after a matrix product OpenBLAS's
    threads spin for up to ~0.1 s (libgomp's for a few ms after a parallel region), and
    the previous epoch's spinning, in another process, must not be charged to this one.

    Configurations (Adam, lr 1e-3, batches of ``batch_size``): ``plain``
    (:class:`fastoptim.demo.plain.Adam`: Adam as a user writes it in NumPy, the baseline
    of ``speedup_vs_plain``), ``reference`` (:class:`PlainReference`:
    ``fastoptim.reference.adam``, the specification, on each parameter), ``fastoptim``
    (``fo.Adam()``, the installed default threading), ``serial`` (``num_threads=1``),
    ``passive`` (the default, in a process started with ``OMP_WAIT_POLICY=passive``).
    After the last round, every configuration but ``plain`` of one BLAS setting must hold
    parameters bit-identical to the reference's (``same_trajectory``); ``plain``, the same
    rule rounded differently, gets ``None`` there.
    """
    progress = progress or (lambda msg: None)
    models = [str(m) for m in models]
    for m in models:
        parse_model(m)
    bad = [c for c in configs if c not in E2E_CONFIGS]
    if bad or not configs:
        raise ValueError(f"unknown e2e config(s) {bad}; choose from {E2E_CONFIGS}")
    bad = [b for b in blas if b not in E2E_BLAS]
    if bad or not blas:
        raise ValueError(f"unknown BLAS setting(s) {bad}; choose from {E2E_BLAS}")
    import fastoptim as fo

    spec = {"models": models, "samples": samples, "batch_size": batch_size, "seed": seed}
    # (blas, wait) -> (environment, configs it runs)
    plan = {}
    for b in blas:
        benv = {} if b == "default" else {k: b for k in BLAS_ENV}
        plain = [c for c in configs if c != "passive"]
        if plain:
            plan[(b, "default")] = (benv, plain)
        if "passive" in configs:
            plan[(b, "passive")] = ({**benv, "OMP_WAIT_POLICY": "passive"}, ["passive"])
    where = {(key[0], c): key for key, (_, cs) in plan.items() for c in cs}
    workers = {}
    start = time.perf_counter()
    try:
        for key, (env, cs) in plan.items():
            workers[key] = _Worker(env, {**spec, "configs": cs})
        for key, w in workers.items():
            w.info = w.receive(timeout)
            if not w.info.get("ready"):
                raise RuntimeError(f"e2e worker {key}: unexpected answer {w.info}")
        cases = [(b, c) for b in blas for c in configs]
        times = {}
        digests = {}
        for mi, model in enumerate(models):
            for rnd in range(epochs + 1):
                progress(f"[e2e {mi + 1}/{len(models)}] {model}: "
                         + ("warm-up" if rnd == 0 else f"epoch {rnd}/{epochs}"))
                for b, c in (cases if rnd % 2 == 0 else cases[::-1]):
                    if rnd and settle:
                        time.sleep(settle)
                    res = workers[where[(b, c)]].ask({"model": mi, "config": c}, timeout)
                    if rnd:
                        times.setdefault((mi, b, c), []).append(res)
            for key, w in workers.items():
                for c, d in w.ask({"digest": mi}, timeout).items():
                    digests[(mi, key[0], c)] = d
    finally:
        for w in workers.values():
            w.close()
    progress("")

    rows = []
    for mi, model in enumerate(models):
        for b in blas:
            ref_digest = digests.get((mi, b, "reference"))
            group = []
            for c in configs:
                runs = times[(mi, b, c)]
                epoch_s = statistics.median(r["epoch_s"] for r in runs)
                update_s = statistics.median(r["update_s"] for r in runs)
                w = workers[where[(b, c)]]
                group.append({
                    "model": model, "sizes": parse_model(model), "blas": b,
                    "blas_threads": w.info["blas_threads"], "config": c,
                    "label": E2E_LABELS[c], "environment": w.env_vars,
                    "omp_threads": w.info["threads"],
                    "epoch_s": epoch_s, "update_s": update_s,
                    "update_share": update_s / epoch_s,
                    "epochs_s": [r["epoch_s"] for r in runs],
                    "updates_s": [r["update_s"] for r in runs],
                    "final_loss": runs[-1]["loss"],
                    "same_trajectory": (None if ref_digest is None or c == "plain"
                                        else digests[(mi, b, c)] == ref_digest)})
            ref = next((r for r in group if r["config"] == "reference"), None)
            base = next((r for r in group if r["config"] == "plain"), None)
            for r in group:
                r["speedup_vs_reference"] = (ref["epoch_s"] / r["epoch_s"]
                                             if ref is not None else None)
                r["speedup_vs_plain"] = (base["epoch_s"] / r["epoch_s"]
                                         if base is not None else None)
            rows.extend(group)
    cfg = fo.get_config()
    return {"mode": "e2e", "fastoptim": cfg["version"], "cpu": cpu_name(),
            "cpu_target": cfg["cpu_target"], "openmp": cfg["openmp"],
            "threads": cfg["threads"], "optimizer": "Adam", "dtype": "float32",
            "samples": samples, "batch_size": batch_size, "epochs": epochs,
            "settle_s": settle,
            "models": models, "configs": list(configs), "blas": list(blas),
            "workers": [{"blas": k[0], "wait": k[1], "environment": w.env_vars,
                         "pid": w.info["pid"], "returncode": w.proc.returncode}
                        for k, w in workers.items()],
            "rows": rows, "seconds": round(time.perf_counter() - start, 1)}


def _fmt_epoch(s):
    ms = s * 1e3
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.1f} ms" if ms >= 10 else f"{ms:.2f} ms"


def e2e_baseline(configs):
    """The configuration the table's ratios divide by: the plain NumPy loop when it ran,
    else the reference (None: neither ran)."""
    return next((c for c in ("plain", "reference") if c in configs), None)


def e2e_table(result):
    """The markdown table: a row per model and BLAS setting, a column per configuration;
    each cell the median epoch, its share in ``update`` and (but in the baseline's
    column) the baseline's epoch over this one (:func:`e2e_baseline`)."""
    configs = result["configs"]
    base = e2e_baseline(configs)
    speedup = f"speedup_vs_{base}"
    head = ["model", "BLAS threads", *(E2E_LABELS[c] for c in configs)]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    by = {(r["model"], r["blas"], r["config"]): r for r in result["rows"]}
    for model in result["models"]:
        for b in result["blas"]:
            first = by[(model, b, configs[0])]
            n = first["blas_threads"]
            blas_cell = ("default" if b == "default" else b) + (f" ({n})" if n else "")
            cells = [model, blas_cell]
            for c in configs:
                r = by[(model, b, c)]
                cell = f"{_fmt_epoch(r['epoch_s'])} ({r['update_share']:.0%} in update)"
                if c != base and base is not None:
                    cell += f" {r[speedup]:.2f}×"
                if r["same_trajectory"] is False:
                    cell += " DIFFERENT"
                cells.append(cell)
            lines.append(" | ".join(cells))
    return "\n".join("| " + line + " |" for line in lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["--e2e-worker"]:
        _e2e_worker()
    else:
        sys.exit("usage: python -m fastoptim.demo.e2e --e2e-worker (run by fastoptim bench "
                 "--e2e)")
