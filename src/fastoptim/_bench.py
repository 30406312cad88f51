"""``fastoptim bench``: how fast this machine's optimizer steps are, and how close to the
memory roofline.

For each rule and size it times one ``update`` of a single parameter with fastoptim,
with the NumPy reference (``backend="numpy"``) and, when torch is installed, with the
torch.optim implementation users compare against (fused where torch has a fused CPU
kernel). Next to them it times the *streaming roofline*: the same buffers read and
written in place with no arithmetic (``k`` buffers updated from one read-only buffer),
i.e. the same bytes moved as fast as this machine moves them. Every case is measured in
blocks of back-to-back calls per implementation, alternating over three rounds, and
reported as the median (see ``measure``); torch runs in a process of its own.

Bytes per element (float32; float64 doubles them): SGD 12; Momentum, Nesterov, AdaGrad,
RMSprop 20; AdaDelta, Adam, AdamW 28.

``fastoptim bench --e2e`` measures the training loop instead (see ``run_e2e``): epochs of
``fastoptim.demo.nn.MLP`` with Adam, the wall time of forward, backward and ``update``
together, with the NumPy reference, fastoptim's default, ``num_threads=1`` and the
default under ``OMP_WAIT_POLICY=passive``, each with NumPy's BLAS at its default thread
count and at one thread.
"""

import argparse
import hashlib
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

RULES = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam", "adamw"]
CLASSES = {"sgd": "SGD", "momentum": "Momentum", "nesterov": "Nesterov",
           "adagrad": "AdaGrad", "rmsprop": "RMSprop", "adadelta": "AdaDelta",
           "adam": "Adam", "adamw": "AdamW"}
# buffers updated in place per element (parameter + state); the gradient is read
INPLACE = {"sgd": 1, "momentum": 2, "nesterov": 2, "adagrad": 2, "rmsprop": 2,
           "adadelta": 3, "adam": 3, "adamw": 3}


def bytes_per_element(rule, dtype):
    return (2 * INPLACE[rule] + 1) * np.dtype(dtype).itemsize


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def torch_step(rule, n, dtype, threads):
    """A torch.optim step over one tensor of n elements, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    tdtype = torch.float32 if np.dtype(dtype) == np.float32 else torch.float64
    p = torch.zeros(n, dtype=tdtype)
    p.grad = torch.full((n,), 1e-3, dtype=tdtype)
    optim = torch.optim
    make = {
        "sgd": lambda: optim.SGD([p], lr=1e-3, fused=True),
        "momentum": lambda: optim.SGD([p], lr=1e-3, momentum=0.9, fused=True),
        "nesterov": lambda: optim.SGD([p], lr=1e-3, momentum=0.9, nesterov=True, fused=True),
        "adagrad": lambda: optim.Adagrad([p], lr=1e-2, fused=True),
        "rmsprop": lambda: optim.RMSprop([p], lr=1e-2, foreach=True),
        "adadelta": lambda: optim.Adadelta([p], lr=1.0, foreach=True),
        "adam": lambda: optim.Adam([p], lr=1e-3, fused=True),
        "adamw": lambda: optim.AdamW([p], lr=1e-3, fused=True),
    }[rule]
    opt = make()
    return opt.step


def fastoptim_step(rule, n, dtype, threads, backend):
    import fastoptim as fo

    cls = getattr(fo, CLASSES[rule])
    opt = cls(num_threads=threads, backend=backend)
    params = [np.zeros(n, dtype)]
    grads = [np.full(n, 1e-3, dtype)]
    return lambda: opt.update(params, grads)


def many_step(impl, count, size, threads):
    """Adam float32 over ``count`` arrays of ``size`` elements in one update call."""
    if impl == "torch":
        import torch

        torch.set_num_threads(threads)
        ps = [torch.zeros(size) for _ in range(count)]
        for p in ps:
            p.grad = torch.full((size,), 1e-3)
        return torch.optim.Adam(ps, lr=1e-3, fused=True).step
    import fastoptim as fo

    opt = fo.Adam(num_threads=threads, backend="cython" if impl == "fastoptim" else "numpy")
    params = {f"p{i}": np.zeros(size, np.float32) for i in range(count)}
    grads = {k: np.full(size, 1e-3, np.float32) for k in params}
    return lambda: opt.update(params, grads)


MANY = [(1000, 1000), (1000, 1), (1, 1)]


def roofline_step(rule, n, dtype, threads):
    from fastoptim._dispatch import kernels

    k = INPLACE[rule]
    read = np.full(n, 1e-3, dtype)
    bufs = [np.zeros(n, dtype) for _ in range(k)]
    # the same thread count the rule's update would use for this size
    nt = kernels._effective_threads(n * np.dtype(dtype).itemsize // 4, threads,
                                    rule not in ("sgd", "momentum", "nesterov"))
    return lambda: kernels.stream(read, *bufs, num_threads=nt)


def measure(calls, budget, rounds=3, skip=2):
    """Medians (seconds) of the callables in ``calls`` (name -> fn), timed in blocks.

    Each round runs every callable in a block of back-to-back calls (the steady state of
    a training loop), the first ``skip`` calls of a block untimed; rounds alternate the
    order of the blocks. Blocks rather than strict interleaving: one implementation's
    memory traffic would otherwise evict the next one's data from cache, and a core
    left idle by a single-threaded call would make the next parallel call pay for
    waking it up -- costs that say more about the neighbour than about the step.
    """
    for fn in calls.values():  # warm up: first touch of every page
        fn()
    first = {}
    for name, fn in calls.items():
        t0 = time.perf_counter()
        fn()
        first[name] = time.perf_counter() - t0
    times = {name: [] for name in calls}
    names = list(calls)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            fn = calls[name]
            reps = int(min(400, max(3, budget / rounds / max(first[name], 1e-7) / len(calls))))
            for _ in range(skip):
                fn()
            for _ in range(reps):
                t0 = time.perf_counter_ns()
                fn()
                times[name].append((time.perf_counter_ns() - t0) * 1e-9)
    return ({name: statistics.median(t) for name, t in times.items()},
            min(len(t) for t in times.values()))


def run(rules, sizes, dtype, threads, with_torch, budget, progress, many=True, fixed=False):
    """``threads``: torch's and the roofline's count; fastoptim's too when ``fixed``,
    else fastoptim runs with ``num_threads=None`` (its default threading policy, what a
    user gets), up to ``threads``."""
    import fastoptim as fo

    rows = []
    cases = [(r, n) for n in sizes for r in rules]
    torch_times = {}
    if with_torch and _torch_version() is not None:
        progress(f"torch.optim: {len(cases)} cases in a separate process")
        torch_times = _torch_in_subprocess(cases, dtype, threads, budget, many)
    for i, (rule, n) in enumerate(cases, 1):
        progress(f"[{i}/{len(cases)}] {rule} n={n:.0e} {np.dtype(dtype).name}")
        calls = {
            "fastoptim": fastoptim_step(rule, n, dtype, threads if fixed else None, "cython"),
            "reference": fastoptim_step(rule, n, dtype, threads, "numpy"),
            "roofline": roofline_step(rule, n, dtype, threads),
        }
        med, reps = measure(calls, budget)
        if (rule, n) in torch_times:
            med["torch"] = torch_times[(rule, n)]
        nbytes = bytes_per_element(rule, dtype) * n
        row = {"rule": rule, "n": n, "dtype": np.dtype(dtype).name, "threads": threads,
               "repeats": reps, "bytes": nbytes,
               **{f"{k}_s": v for k, v in med.items()},
               **{f"{k}_gbs": nbytes / v / 1e9 for k, v in med.items()}}
        row["roofline_pct"] = 100.0 * med["roofline"] / med["fastoptim"]
        row["speedup_vs_reference"] = med["reference"] / med["fastoptim"]
        if "torch" in med:
            row["speedup_vs_torch"] = med["torch"] / med["fastoptim"]
        rows.append(row)
    many_result = (run_many(threads, torch_times, budget, progress, fixed)
                   if many else None)
    progress("")
    cfg = fo.get_config()
    return {"fastoptim": cfg["version"], "cpu": cpu_name(), "cpu_target": cfg["cpu_target"],
            "threads": threads, "openmp": cfg["openmp"], "dtype": np.dtype(dtype).name,
            "threading": f"num_threads={threads}" if fixed else cfg["threading"],
            "torch": _torch_version() if torch_times else None, "rows": rows,
            "many": many_result}


def _torch_in_subprocess(cases, dtype, threads, budget, many):
    """Time torch.optim in a process of its own. torch ships its own OpenMP runtime; in
    one process, its worker threads and fastoptim's spin on the same two cores after each
    call, and interleaved timings of either become meaningless (milliseconds per call)."""
    import subprocess

    spec = json.dumps({"cases": cases, "dtype": np.dtype(dtype).name, "threads": threads,
                       "budget": budget, "many": MANY if many else []})
    out = subprocess.run([sys.executable, "-m", "fastoptim._bench", "--torch-worker", spec],
                         capture_output=True, text=True, check=True)
    return {(r, n): t for r, n, t in json.loads(out.stdout)}


def _torch_worker(spec):
    spec = json.loads(spec)
    out = []
    for rule, n in spec["cases"]:
        step = torch_step(rule, n, spec["dtype"], spec["threads"])
        med, _ = measure({"torch": step}, spec["budget"] / 3)  # same per-impl share
        out.append((rule, n, med["torch"]))
    for count, size in spec.get("many", []):
        med, _ = measure({"torch": many_step("torch", count, size, spec["threads"])},
                         spec["budget"] / 3)
        out.append((f"many{count}x{size}", 0, med["torch"]))
    print(json.dumps(out))


def run_many(threads, torch_times, budget, progress, fixed=False):
    """Many small arrays in one call: Adam float32, fastoptim (one update over a dict)
    vs the reference (a Python loop of NumPy steps) vs torch fused (a list of tensors)."""
    rows = []
    for i, (count, size) in enumerate(MANY, 1):
        progress(f"[many {i}/{len(MANY)}] adam {count} arrays x {size}")
        calls = {impl: many_step(impl, count, size, threads if fixed else None)
                 for impl in ("fastoptim", "reference")}
        med, reps = measure(calls, budget)
        key = (f"many{count}x{size}", 0)
        if key in torch_times:
            med["torch"] = torch_times[key]
        rows.append({"arrays": count, "size": size, "repeats": reps,
                     **{f"{k}_s": v for k, v in med.items()}})
    by = {(r["arrays"], r["size"]): r for r in rows}
    extra = {k: (by[(1000, 1)][f"{k}_s"] - by[(1, 1)][f"{k}_s"]) / 999
             for k in ("fastoptim", "reference", "torch") if f"{k}_s" in by[(1, 1)]}
    return {"rows": rows, "per_extra_array_s": extra}


def _torch_version():
    try:
        import torch
        return torch.__version__
    except ImportError:
        return None


def _fmt_time(s):
    return f"{s * 1e6:.1f} µs" if s < 1e-3 else f"{s * 1e3:.2f} ms"


def table(result):
    has_torch = any("torch_s" in r for r in result["rows"])
    head = ["rule", "n", "fastoptim", "GB/s", "% roofline", "× reference"]
    if has_torch:
        head += ["torch", "× torch"]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in result["rows"]:
        cells = [r["rule"], f"{r['n']:.0e}", _fmt_time(r["fastoptim_s"]),
                 f"{r['fastoptim_gbs']:.1f}", f"{r['roofline_pct']:.0f}%",
                 f"{r['speedup_vs_reference']:.1f}"]
        if has_torch:
            cells += [_fmt_time(r["torch_s"]), f"{r['speedup_vs_torch']:.2f}"] \
                if "torch_s" in r else ["—", "—"]
        lines.append(" | ".join(cells))
    return "\n".join("| " + line + " |" for line in lines)


def many_table(many):
    has_torch = "torch_s" in many["rows"][0]
    head = ["Adam float32, one update", "fastoptim", "reference loop", "× reference"]
    if has_torch:
        head += ["torch fused (list)", "× torch"]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in many["rows"]:
        cells = [f"{r['arrays']} arrays × {r['size']}", _fmt_time(r["fastoptim_s"]),
                 _fmt_time(r["reference_s"]), f"{r['reference_s'] / r['fastoptim_s']:.1f}"]
        if has_torch:
            cells += [_fmt_time(r["torch_s"]), f"{r['torch_s'] / r['fastoptim_s']:.1f}"]
        lines.append(" | ".join(cells))
    ex = many["per_extra_array_s"]
    cells = ["each extra array", f"{ex['fastoptim'] * 1e9:.0f} ns",
             f"{ex['reference'] * 1e9:.0f} ns", ""]
    if has_torch:
        cells += [f"{ex['torch'] * 1e9:.0f} ns", ""]
    lines.append(" | ".join(cells))
    return "\n".join("| " + line + " |" for line in lines)


# ---------------------------------------------------------------------------------------
# End to end: epochs of a training loop (fastoptim bench --e2e, bench/test_bench_e2e.py)
# ---------------------------------------------------------------------------------------

E2E_MODELS = ("64-100-10", "784-256-10", "784-1024-1024-10")
# the optimizer rows of the e2e table, in its column order
E2E_CONFIGS = ("reference", "fastoptim", "serial", "passive")
E2E_LABELS = {"reference": "NumPy reference", "fastoptim": "fastoptim default",
              "serial": "fastoptim num_threads=1",
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


class PlainReference:
    """A rule's update as a plain NumPy training loop writes it: the function of
    ``fastoptim.reference`` on each parameter with the step's scalars, state made on first
    use, no argument checks (so none of fastoptim's checking is charged to the baseline).

    The rule and hyper-parameters are those of the fastoptim optimizer ``like``; starting
    from the same parameters and gradients, both end bit-identical.
    """

    def __init__(self, like):
        from . import _core, reference

        self._names, self._scalars, self._scalar_names = _core.RULES[like._rule]
        self._fn = getattr(reference, like._rule)
        self._hyper = like.hyperparams
        self.step = 0
        self.state = {}

    def update(self, params, grads):
        self.step += 1
        kw = dict(zip(self._scalar_names, self._scalars(self.step, **self._hyper)))
        for key, p in params.items():
            state = self.state.get(key)
            if state is None:
                state = self.state[key] = [np.zeros_like(p) for _ in self._names]
            self._fn(p, grads[key], *state, **kw)
        return True


def train_epoch(net, opt, batches):
    """One pass over ``batches`` (pairs of inputs and labels): per batch the gradient
    (forward and backward, ``net.gradient``) then ``opt.update``. Returns (seconds for the
    whole epoch, seconds of it inside ``opt.update``)."""
    clock = time.perf_counter
    in_update = 0.0
    start = clock()
    for x, t in batches:
        grads = net.gradient(x, t)
        t0 = clock()
        opt.update(net.params, grads)
        in_update += clock() - t0
    return clock() - start, in_update


def e2e_data(sizes, samples, batch_size, seed=0):
    """Synthetic float32 data for an MLP of ``sizes``: standard normal inputs, labels of a
    random linear teacher (so the loss can fall), cut into mini-batches (views)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((samples, sizes[0])).astype(np.float32)
    t = (x @ rng.standard_normal((sizes[0], sizes[-1])).astype(np.float32)).argmax(axis=1)
    return [(x[i:i + batch_size], t[i:i + batch_size]) for i in range(0, samples, batch_size)]


def e2e_optimizer(config):
    """Adam (lr 1e-3) for a row: 'reference' (PlainReference), 'serial' (num_threads=1),
    'fastoptim' or 'passive' (the library's default; 'passive' differs by its process's
    environment)."""
    import fastoptim as fo

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
    """A persistent worker of ``run_e2e`` (``python -m fastoptim._bench --e2e-worker``).

    Reads its spec (JSON) from the first line of stdin, builds each model's data and, for
    each of its configs, a net (same initial weights everywhere) and an optimizer, and
    answers ``{"ready": ...}``. Then one JSON request per line: ``{"model": i, "config":
    name}`` runs one epoch and answers its times; ``{"digest": i}`` answers a hash of
    every config's parameters. It exits when stdin closes (the parent finished or died).
    """
    from .demo import nn

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
        pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (pkg_root, env.get("PYTHONPATH")) if p)
        self.env_vars = dict(env_vars)
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastoptim._bench", "--e2e-worker"],
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

    Configurations (Adam, lr 1e-3, batches of ``batch_size``): ``reference``
    (:class:`PlainReference`: ``fastoptim.reference.adam`` on each parameter, a plain
    NumPy loop), ``fastoptim`` (``fo.Adam()``, the installed default threading), ``serial``
    (``num_threads=1``), ``passive`` (the default, in a process started with
    ``OMP_WAIT_POLICY=passive``). After the last round, every configuration of one BLAS
    setting must hold bit-identical parameters (``same_trajectory``).
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
                    "same_trajectory": (None if ref_digest is None
                                        else digests[(mi, b, c)] == ref_digest)})
            ref = next((r for r in group if r["config"] == "reference"), None)
            for r in group:
                r["speedup_vs_reference"] = (ref["epoch_s"] / r["epoch_s"]
                                             if ref is not None else None)
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


def e2e_table(result):
    configs = result["configs"]
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
                if c != "reference" and r["speedup_vs_reference"] is not None:
                    cell += f" {r['speedup_vs_reference']:.2f}×"
                if r["same_trajectory"] is False:
                    cell += " DIFFERENT"
                cells.append(cell)
            lines.append(" | ".join(cells))
    return "\n".join("| " + line + " |" for line in lines)


def _e2e_main(args, ap, progress):
    try:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        for m in models:
            parse_model(m)
    except ValueError as exc:
        ap.error(f"--models: {exc}")
    if not models:
        ap.error("--models is empty")
    if args.threads is not None:
        ap.error("--threads does not apply to --e2e, which measures the default and "
                 "num_threads=1")
    for name in ("epochs", "samples", "batch_size"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.settle < 0 or not args.timeout > 0:
        ap.error("--settle must be >= 0 and --timeout > 0")
    result = run_e2e(models, epochs=args.epochs, samples=args.samples,
                     batch_size=args.batch_size, progress=progress, timeout=args.timeout,
                     settle=args.settle)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"fastoptim {result['fastoptim']} ({result['cpu_target']}), {result['cpu']}, "
          f"OpenMP {'on' if result['openmp'] else 'OFF'} ({result['threads']} threads "
          f"by default); {result['seconds']} s")
    print(f"Adam float32, {result['samples']} rows in batches of {result['batch_size']}: "
          f"epoch wall time (forward + backward + update), median of {result['epochs']} "
          f"epochs interleaved across every configuration; × = reference epoch / this "
          f"epoch (above 1: faster than plain NumPy)")
    print(e2e_table(result))
    print("NumPy reference: fastoptim.reference.adam on each parameter in the same loop "
          "(a plain NumPy optimizer); BLAS 1: "
          + "=1, ".join(BLAS_ENV) + "=1 at process start")
    bad = [r for r in result["rows"] if r["same_trajectory"] is False]
    if bad:
        print("WARNING: parameters differ from the reference's for "
              + ", ".join(f"{r['model']} BLAS {r['blas']} {r['config']}" for r in bad))
    else:
        print("every configuration ended with parameters bit-identical to the reference's "
              "of its BLAS setting")
    return 0


def main(argv=None):
    import fastoptim as fo

    ap = argparse.ArgumentParser(
        prog="fastoptim bench",
        description="Time every optimizer step on this machine against the NumPy "
                    "reference, the memory roofline and (if installed) torch.optim.")
    ap.add_argument("--rules", default=",".join(RULES),
                    help="comma-separated rules (default: all eight)")
    ap.add_argument("--sizes", default="1e5,1e6,1e7",
                    help="comma-separated element counts (default: 1e5,1e6,1e7)")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--threads", type=int, default=None,
                    help="a fixed thread count for fastoptim, torch and the roofline "
                         "(default: OpenMP's maximum; fastoptim with num_threads=None, "
                         "i.e. its default threading policy)")
    ap.add_argument("--no-torch", action="store_true", help="skip torch.optim even if installed")
    ap.add_argument("--budget", type=float, default=0.25,
                    help="seconds of measurement per case, roughly (default 0.25)")
    ap.add_argument("--no-many", action="store_true",
                    help="skip the many-small-arrays cases (1000x1000, 1000x1, 1x1)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    e2e = ap.add_argument_group(
        "end to end (--e2e)",
        "Train fastoptim.demo.nn.MLP with Adam on synthetic data and time whole epochs "
        "(forward + backward + update): the NumPy reference, fastoptim's default, "
        "num_threads=1 and the default under OMP_WAIT_POLICY=passive, each with NumPy's "
        "BLAS at its default and at 1 thread, in worker processes (one per environment), "
        "epochs interleaved across them. The options above do not apply.")
    e2e.add_argument("--e2e", action="store_true",
                     help="time training epochs instead of single updates (~60 s)")
    e2e.add_argument("--models", default=",".join(E2E_MODELS),
                     help="comma-separated MLP widths (default: " + ",".join(E2E_MODELS) + ")")
    e2e.add_argument("--epochs", type=int, default=3,
                     help="timed epochs per configuration, after one warm-up (default 3)")
    e2e.add_argument("--samples", type=int, default=4096,
                     help="training rows per epoch (default 4096)")
    e2e.add_argument("--batch-size", type=int, default=64, help="mini-batch (default 64)")
    e2e.add_argument("--settle", type=float, default=0.15,
                     help="seconds of quiet before each timed epoch, so that the last "
                          "epoch's spinning thread pools are asleep (default 0.15)")
    e2e.add_argument("--timeout", type=float, default=300.0,
                     help="seconds to wait for any one answer of a worker (default 300)")
    args = ap.parse_args(argv)

    tty = sys.stderr.isatty()

    def progress(msg):
        if tty:
            sys.stderr.write("\r\033[K" + msg)
        elif msg:
            sys.stderr.write(msg + "\n")
        sys.stderr.flush()

    if args.e2e:
        return _e2e_main(args, ap, progress)

    rules = [r.strip().lower() for r in args.rules.split(",") if r.strip()]
    bad = [r for r in rules if r not in RULES]
    if bad:
        ap.error(f"unknown rule(s) {bad}; choose from {RULES}")
    try:
        sizes = [int(float(s)) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--sizes must be numbers, got {args.sizes!r}")
    if any(n < 1 for n in sizes):
        ap.error("--sizes must be >= 1")
    threads = args.threads or fo.get_config()["threads"]

    t0 = time.perf_counter()
    result = run(rules, sizes, args.dtype, threads, not args.no_torch, args.budget, progress,
                 many=not args.no_many, fixed=args.threads is not None)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"fastoptim {result['fastoptim']} ({result['cpu_target']}), {result['cpu']}, "
              f"{threads} thread(s) ({result['threading']}), {result['dtype']}"
              + (f", torch {result['torch']}" if result["torch"] else ", torch not installed")
              + f"; {result['seconds']} s")
        print(table(result))
        if result["many"]:
            print()
            print(many_table(result["many"]))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--torch-worker":
        _torch_worker(sys.argv[2])
    elif sys.argv[1:] == ["--e2e-worker"]:
        _e2e_worker()
    else:
        sys.exit(main())
