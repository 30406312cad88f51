"""``fastoptim bench``: every rule's step timed against the NumPy reference, the memory
roofline and torch.optim (:mod:`fastoptim._bench`), or with ``--e2e`` whole training
epochs (:mod:`fastoptim.demo.e2e`). Core dependencies only (NumPy); torch if installed.
"""

import argparse
import json
import sys
import time

from .._bench import RULES, VARIANTS, known, many_table, run, table
from ..demo.e2e import (
    BLAS_ENV,
    E2E_LABELS,
    E2E_MODELS,
    e2e_baseline,
    e2e_table,
    parse_model,
    run_e2e,
)
from ._common import count_word, positive_int


def add_parser(sub):
    # a placeholder for the main help: ``fastoptim bench`` has a parser of its own
    # (``main``), to which fastoptim.cli.main hands everything after ``bench``
    return sub.add_parser("bench", add_help=False,
                          help="time every rule against the NumPy reference, the memory "
                               "roofline and torch.optim (see 'fastoptim bench --help')")


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
    base = e2e_baseline(result["configs"])
    print(f"Adam float32, {result['samples']} rows in batches of {result['batch_size']}: "
          f"epoch wall time (forward + backward + update), median of {result['epochs']} "
          f"epochs interleaved across every configuration"
          + (f"; × = {E2E_LABELS[base]} epoch / this epoch (above 1: faster than "
             f"{'the plain NumPy loop' if base == 'plain' else 'the reference'})"
             if base else ""))
    print(e2e_table(result))
    print("plain NumPy Adam: fastoptim.demo.plain.Adam, Adam as a user writes it in NumPy "
          "(book-style; the same rule, rounded differently); fastoptim.reference: "
          "fastoptim.reference.adam on each parameter, the NumPy specification fastoptim "
          "matches bit for bit (its float32 scalars converted per call, no argument "
          "checks); BLAS 1: " + "=1, ".join(BLAS_ENV) + "=1 at process start")
    bad = [r for r in result["rows"] if r["same_trajectory"] is False]
    if bad:
        print("WARNING: parameters differ from the reference's for "
              + ", ".join(f"{r['model']} BLAS {r['blas']} {r['config']}" for r in bad))
    elif any(r["same_trajectory"] for r in result["rows"]):
        print("every fastoptim configuration ended with parameters bit-identical to the "
              "reference's of its BLAS setting")
    return 0


def main(argv=None):
    """``fastoptim bench ARGS`` (its own parser: ``argv`` is what follows ``bench``)."""
    import fastoptim as fo

    ap = argparse.ArgumentParser(
        prog="fastoptim bench",
        description="Time every optimizer step on this machine against the NumPy "
                    "reference, the memory roofline and (if installed) torch.optim.")
    ap.add_argument("--rules", default=",".join(RULES),
                    help=f"comma-separated rules (default: all {count_word(len(RULES))}); "
                         f"also the variants of the options that add a state buffer: "
                         f"{', '.join(VARIANTS)}; and any of these but "
                         f"schedulefree_adamw with +ema (the moving average): adam+ema; "
                         f"then any but lamb with +bf16 (bfloat16 state, the float32 "
                         f"rows only): adam+bf16, adam+ema+bf16; and adam, adamw, "
                         f"momentum, nesterov, rmsprop, adagrad, lion (and their "
                         f"variants) with +int8 (8-bit state)")
    ap.add_argument("--sizes", default="1e5,1e6,1e7",
                    help="comma-separated element counts (default: 1e5,1e6,1e7)")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--threads", type=positive_int, default=None,
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
        "(forward + backward + update): the plain NumPy Adam a user writes "
        "(fastoptim.demo.plain), the NumPy reference (fastoptim.reference), fastoptim's "
        "default, num_threads=1 and the default under OMP_WAIT_POLICY=passive, each with "
        "NumPy's BLAS at its default and at 1 thread, in worker processes (one per "
        "environment), epochs interleaved across them. The options above do not apply.")
    e2e.add_argument("--e2e", action="store_true",
                     help="time training epochs instead of single updates (~45 s on 2 "
                          "idle cores)")
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
    bad = [r for r in rules if not known(r)]
    if bad:
        ap.error(f"unknown rule(s) {bad}; choose from {RULES + VARIANTS}, each but "
                 f"schedulefree_adamw also with +ema, then each but lamb also with +bf16 "
                 f"(bfloat16 state), the rules of the 8-bit optimizers with +int8")
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
