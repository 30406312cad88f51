"""``fastoptim bench``'s measurements: how fast this machine's optimizer steps are, and
how close to the memory roofline (the command itself: :mod:`fastoptim.cli.bench`).

For each rule and size it times one ``update`` of a single parameter with fastoptim,
with the NumPy reference (``backend="numpy"``) and, when torch is installed, with the
torch.optim implementation users compare against (each rule's ``Rule.torch`` in
:mod:`fastoptim.rules`; fused where torch has a fused CPU kernel). Next to them it times
the *streaming roofline*: the same buffers read and written in place with no arithmetic
(``k`` buffers updated from one read-only buffer), i.e. the same bytes moved as fast as
this machine moves them. Every case is measured in blocks of back-to-back calls per
implementation, alternating over three rounds, and reported as the median (see
``measure``); torch runs in a process of its own.

Bytes per element: :meth:`fastoptim.rules.Rule.state_bytes` -- the parameter read and
written, the gradient read, and each state buffer read and written (float32: 12 bytes,
plus 8 per state buffer; float64 doubles them; a bfloat16 state buffer, ``+bf16``, 4).
With bfloat16 or 8-bit state (``+int8``: 1 byte per state element; the absmax, 4 bytes
per 256, left out) the roofline is the float32 rule's streaming time scaled by the
ratio of their bytes (the same arrays, fewer bytes each: the stream kernel moves float
buffers of one length). Each row also gives the state's bytes per parameter element, as
the optimizer reports them (``Optimizer.state_nbytes_per_param``).

``fastoptim bench --e2e`` measures the training loop instead: :mod:`fastoptim.demo.e2e`.
"""

import inspect
import json
import platform
import statistics
import sys
import time

import numpy as np

from . import rules as _rules

#: Every rule's name, in the table's order (``--rules`` chooses among them).
RULES = [r.name for r in _rules.RULES]
#: The variants of the structural options (``adam_amsgrad``, ...), which ``--rules`` may
#: name too: the rule's class with the options on (:data:`OPTIONS_ON`).
VARIANTS = [r.name for r in _rules.VARIANTS]
#: The value each structural option takes in a variant's benchmark (ema: with ``+ema``).
OPTIONS_ON = {"amsgrad": True, "centered": True, "momentum": 0.9, "ema": 0.999}
#: ``adam+ema``: a rule or variant with the parameters' moving average (``ema``).
EMA_SUFFIX = "+ema"
#: ``adam+bf16``, ``adam+int8``: a rule or variant (with or without ``+ema``, which comes
#: first) with bfloat16 or 8-bit state (``state_dtype="bfloat16"``, ``"int8"``).
BF16_SUFFIX = "+bf16"
INT8_SUFFIX = "+int8"


def _split_format(rule):
    """(``rule`` without ``+bf16`` or ``+int8``, its state_dtype)."""
    if rule.endswith(BF16_SUFFIX):
        return rule[:-len(BF16_SUFFIX)], "bfloat16"
    if rule.endswith(INT8_SUFFIX):
        return rule[:-len(INT8_SUFFIX)], "int8"
    return rule, None


def known(rule):
    """Whether ``--rules`` may name ``rule``: a rule, a variant, either with ``+ema``
    (not Schedule-Free, which has no ema), then optionally ``+bf16`` (not LAMB)."""
    rule, fmt = _split_format(rule)
    base = rule[:-len(EMA_SUFFIX)] if rule.endswith(EMA_SUFFIX) else rule
    if base not in RULES and base not in VARIANTS:
        return False
    if fmt is not None and "state_dtype" not in _row(base).hyper_names:
        return False
    if fmt == "int8" and _row(base).int8_maps is None:
        return False
    return base == rule or not _row(base).schedule_free


def state_dtype(rule):
    """The state_dtype ``rule`` names (None, or "bfloat16" with ``+bf16``)."""
    return _split_format(rule)[1]


def _row(rule):
    """The row of the rule table (or of its variants) called ``rule``; with ``+ema``,
    that row keeping the moving average (``+bf16`` names no other row)."""
    rule = _split_format(rule)[0]
    if rule.endswith(EMA_SUFFIX):
        return _row(rule[:-len(EMA_SUFFIX)]).with_ema()
    return _rules.BY_KERNEL[rule] if rule in _rules.BY_KERNEL else _rules.get(rule)


def options(rule):
    """The keywords that make ``rule``'s class run it: {} for a rule, the structural
    options for a variant, and ``ema`` with ``+ema``."""
    row = _row(rule)
    own = row.ema_of if row.ema_of is not None else row
    out = {o: OPTIONS_ON[o] for o in own.variant_of[1]} if own.variant_of else {}
    if row.ema_of is not None:
        out["ema"] = OPTIONS_ON["ema"]
    return out


def _torch_of(rule):
    """(torch.optim class, keywords) of ``rule``, or () where torch.optim has none (its
    moving average, swa_utils.AveragedModel, is a pass of its own: not compared; nor is
    bfloat16 state, which torch.optim keeps only for bfloat16 parameters)."""
    row = _row(rule)
    if row.ema_of is not None or state_dtype(rule) is not None:
        return ()
    return _rules.BY_NAME[row.variant_of[0]].torch if row.variant_of else row.torch


def bytes_per_element(rule, dtype):
    """Bytes one ``update`` of ``rule`` moves per element of ``dtype``."""
    from . import formats  # the kernels' module: imported when a case is timed

    fmt = state_dtype(rule)
    size = np.dtype(dtype).itemsize
    return _row(rule).state_bytes(size, None if fmt is None else formats.itemsize(fmt, size))


def _inplace(rule):
    """Buffers updated in place per element (parameter + state); the gradient is read."""
    return 1 + len(_row(rule).state)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def torch_kwargs(rule):
    """The torch.optim class name and keywords equivalent to ``rule`` with its defaults
    (from ``Rule.torch``: the class and the keywords that differ from torch's defaults;
    ``lr`` is always the rule's default)."""
    name, extra = _torch_of(rule)
    return name, {"lr": _row(rule).defaults["lr"], **extra, **options(rule)}


def torch_optimizer(rule, params):
    """The torch.optim optimizer over ``params`` equivalent to ``rule``: fused where the
    class has a fused implementation (``fused=True``), else ``foreach=True``."""
    import torch

    name, kwargs = torch_kwargs(rule)
    cls = getattr(torch.optim, name)
    impl = "fused" if "fused" in inspect.signature(cls).parameters else "foreach"
    return cls(params, **kwargs, **{impl: True})


def torch_step(rule, n, dtype, threads):
    """A torch.optim step over one tensor of n elements, or None without torch or for a
    rule torch.optim does not have (``Rule.torch`` empty)."""
    if not _torch_of(rule):
        return None
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    tdtype = torch.float32 if np.dtype(dtype) == np.float32 else torch.float64
    p = torch.zeros(n, dtype=tdtype)
    p.grad = torch.full((n,), 1e-3, dtype=tdtype)
    opt = torch_optimizer(rule, [p])
    return opt.step


def fastoptim_step(rule, n, dtype, threads, backend):
    import fastoptim as fo

    cls = getattr(fo, _row(rule).class_name)
    fmt = {"state_dtype": state_dtype(rule)} if state_dtype(rule) else {}
    opt = cls(**options(rule), **fmt, num_threads=threads, backend=backend)
    params = [np.zeros(n, dtype)]
    grads = [np.full(n, 1e-3, dtype)]

    def step():
        return opt.update(params, grads)
    step.optimizer = opt
    return step


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

    opt = fo.Adam(num_threads=threads, backend="compiled" if impl == "fastoptim" else "numpy")
    params = {f"p{i}": np.zeros(size, np.float32) for i in range(count)}
    grads = {k: np.full(size, 1e-3, np.float32) for k in params}
    return lambda: opt.update(params, grads)


MANY = [(1000, 1000), (1000, 1), (1, 1)]


def roofline_step(rule, n, dtype, threads):
    from fastoptim._dispatch import kernels

    row = _row(rule)
    if state_dtype(rule) is not None:  # the float32 rule's, scaled by the bytes (above)
        plain = _split_format(rule)[0]
        f32 = roofline_step(plain, n, dtype, threads)
        scale = bytes_per_element(rule, dtype) / bytes_per_element(plain, dtype)

        def scaled():
            f32()
        scaled.scale = scale
        return scaled
    k = _inplace(rule)
    read = np.full(n, 1e-3, dtype)
    bufs = [np.zeros(n, dtype) for _ in range(k)]
    # the same thread count the rule's update would use for this size
    nt = kernels._effective_threads(n * np.dtype(dtype).itemsize // 4, threads,
                                    row.cost == "heavy")
    if row.trust_ratio:
        # two passes (rules.Rule.state_bytes): the first moves a rule's bytes without the
        # average, the second the parameter read and written once more from one read
        # (the phase's p, m, v read and p written: the same bytes), and the average
        ema = "ema" in row.state
        first, second = bufs[:k - ema], [bufs[0], *bufs[k - ema:]]

        def two_passes():
            kernels.stream(read, *first, num_threads=nt)
            kernels.stream(read, *second, num_threads=nt)
        return two_passes
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
        torch_times = _torch_in_subprocess([c for c in cases if _torch_of(c[0])],
                                           dtype, threads, budget, many)
    for i, (rule, n) in enumerate(cases, 1):
        progress(f"[{i}/{len(cases)}] {rule} n={n:.0e} {np.dtype(dtype).name}")
        calls = {
            "fastoptim": fastoptim_step(rule, n, dtype, threads if fixed else None, "compiled"),
            "reference": fastoptim_step(rule, n, dtype, threads, "numpy"),
            "roofline": roofline_step(rule, n, dtype, threads),
        }
        med, reps = measure(calls, budget)
        med["roofline"] *= getattr(calls["roofline"], "scale", 1.0)
        if (rule, n) in torch_times:
            med["torch"] = torch_times[(rule, n)]
        nbytes = bytes_per_element(rule, dtype) * n
        row = {"rule": rule, "n": n, "dtype": np.dtype(dtype).name, "threads": threads,
               "repeats": reps, "bytes": nbytes,
               **{f"{k}_s": v for k, v in med.items()},
               **{f"{k}_gbs": nbytes / v / 1e9 for k, v in med.items()}}
        row["state_bytes_per_param"] = calls["fastoptim"].optimizer.state_nbytes_per_param
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
    head = ["rule", "n", "fastoptim", "GB/s", "% roofline", "state B/param", "× reference"]
    if has_torch:
        head += ["torch", "× torch"]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in result["rows"]:
        cells = [r["rule"], f"{r['n']:.0e}", _fmt_time(r["fastoptim_s"]),
                 f"{r['fastoptim_gbs']:.1f}", f"{r['roofline_pct']:.0f}%",
                 f"{r['state_bytes_per_param']:g}", f"{r['speedup_vs_reference']:.1f}"]
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


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--torch-worker":
        _torch_worker(sys.argv[2])
    else:  # as before the command moved to fastoptim.cli.bench
        from fastoptim.cli.bench import main

        sys.exit(main())
