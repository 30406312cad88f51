"""Float32 against bfloat16 and 8-bit optimizer state, side by side in one run: per rule
and size, one ``update`` of one float32 parameter with ``state_dtype=None``,
``"bfloat16"`` and (the rules that have it) ``"int8"``, and the streaming roofline of
each (the float32 rule's streaming time -- the same arrays read and written with no
arithmetic -- and, for the other formats, that time scaled by the ratio of the bytes
they move; 8-bit state's absmax, 4 bytes per 256 elements, is left out). Rounds
alternate the order; medians of the calls after the first round.

    python bench/state_formats.py [--rules adam,momentum,...] [--sizes 1e7,1e8]
                                  [--threads 2] [--rounds 7]

Prints ms per update, GB/s (the bytes of ``fastoptim.rules.Rule.state_bytes``), the
percentage of each format's own roofline, the state's bytes per parameter as the
optimizer reports them, and each format's speed-up over float32 state. No test asserts a
time; bench/test_bench_state.py is the pytest-benchmark form.
"""

import argparse
import statistics
import time

import numpy as np

import fastoptim as fo
from fastoptim import _bench

RULES = "adam,adamw,momentum,nesterov,rmsprop,adagrad,lion,adadelta"
SUFFIX = {"float32": "", "bfloat16": "+bf16", "int8": "+int8"}


def _time(fn):
    t0 = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t0) * 1e-9


def case(rule, n, threads, rounds):
    """{"float32": (update s, roofline s, state B/param), "bfloat16": (...), ...}."""
    fmts = ["float32", "bfloat16"] + (["int8"] if _bench._row(rule).int8_maps else [])
    steps = {fmt: _bench.fastoptim_step(rule + SUFFIX[fmt], n, np.float32, threads,
                                        "compiled") for fmt in fmts}
    roof = _bench.roofline_step(rule, n, np.float32,
                                threads or fo.get_config()["threads"])
    calls = {**steps, "roofline": roof}
    for fn in calls.values():  # first touch of every page
        fn()
    reps = max(3, int(2e8 // (n * 28)))  # about 0.2 GB of traffic per block
    times = {k: [] for k in calls}
    names = list(calls)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            times[name].extend(_time(calls[name]) for _ in range(reps))
    med = {k: statistics.median(v[reps:]) for k, v in times.items()}
    out = {}
    for fmt in fmts:
        scale = _bench.bytes_per_element(rule + SUFFIX[fmt], np.float32) / \
            _bench.bytes_per_element(rule, np.float32)
        out[fmt] = (med[fmt], med["roofline"] * scale,
                    steps[fmt].optimizer.state_nbytes_per_param)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", default=RULES)
    ap.add_argument("--sizes", default="1e7,1e8")
    ap.add_argument("--threads", type=int, default=None,
                    help="num_threads (default: fastoptim's default policy)")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)
    cfg = fo.get_config()
    print(f"fastoptim {cfg['version']} ({cfg['cpu_target']}, {_bench.cpu_name()}, "
          f"{cfg['threads']} threads); float32 parameters, medians")
    head = ["rule", "n", "state", "ms", "GB/s", "% roofline", "state B/param",
            "× float32 state"]
    print("| " + " | ".join(head) + " |")
    print("| " + " | ".join("---" for _ in head) + " |")
    for n in (int(float(s)) for s in args.sizes.split(",")):
        for rule in args.rules.split(","):
            res = case(rule, n, args.threads, args.rounds)
            for fmt, (t, roof, per) in res.items():
                name = rule + SUFFIX[fmt]
                gbs = _bench.bytes_per_element(name, np.float32) * n / t / 1e9
                ratio = res["float32"][0] / t
                print(f"| {rule} | {n:.0e} | {fmt} | {t * 1e3:.2f} | {gbs:.1f} | "
                      f"{100 * roof / t:.0f}% | {per:g} | {ratio:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
