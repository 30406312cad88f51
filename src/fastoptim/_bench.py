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
"""

import argparse
import json
import platform
import statistics
import sys
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


def run(rules, sizes, dtype, threads, with_torch, budget, progress, many=True):
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
            "fastoptim": fastoptim_step(rule, n, dtype, threads, "cython"),
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
    many_result = run_many(threads, torch_times, budget, progress) if many else None
    progress("")
    cfg = fo.get_config()
    return {"fastoptim": cfg["version"], "cpu": cpu_name(), "cpu_target": cfg["cpu_target"],
            "threads": threads, "openmp": cfg["openmp"], "dtype": np.dtype(dtype).name,
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


def run_many(threads, torch_times, budget, progress):
    """Many small arrays in one call: Adam float32, fastoptim (one update over a dict)
    vs the reference (a Python loop of NumPy steps) vs torch fused (a list of tensors)."""
    rows = []
    for i, (count, size) in enumerate(MANY, 1):
        progress(f"[many {i}/{len(MANY)}] adam {count} arrays x {size}")
        calls = {impl: many_step(impl, count, size, threads)
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
                    help="threads (default: OpenMP's maximum)")
    ap.add_argument("--no-torch", action="store_true", help="skip torch.optim even if installed")
    ap.add_argument("--budget", type=float, default=0.25,
                    help="seconds of measurement per case, roughly (default 0.25)")
    ap.add_argument("--no-many", action="store_true",
                    help="skip the many-small-arrays cases (1000x1000, 1000x1, 1x1)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)

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

    tty = sys.stderr.isatty()

    def progress(msg):
        if tty:
            sys.stderr.write("\r\033[K" + msg)
        elif msg:
            sys.stderr.write(msg + "\n")
        sys.stderr.flush()

    t0 = time.perf_counter()
    result = run(rules, sizes, args.dtype, threads, not args.no_torch, args.budget, progress,
                 many=not args.no_many)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"fastoptim {result['fastoptim']} ({result['cpu_target']}), {result['cpu']}, "
              f"{threads} thread(s), {result['dtype']}"
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
    else:
        sys.exit(main())
