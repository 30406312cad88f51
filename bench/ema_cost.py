"""The ``ema`` option's cost in one update: Adam, Adam(ema=0.999) and
AdamW(amsgrad=True) -- which moves the same bytes as Adam with ema (one more buffer read
and written) -- on one float32 array, interleaved (60 rounds of 3 calls each; medians of
the last 90 calls), per size and thread count.

    python bench/ema_cost.py [--sizes 2e5,2e6,1e7] [--threads 1,2]
"""

import argparse
import statistics
import time

import numpy as np

import fastoptim as fo


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2e5,2e6,1e7")
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args(argv)
    cfg = fo.get_config()
    print(f"fastoptim {cfg['version']} ({cfg['cpu_target']}); median us per update")
    print(f"{'n':>10}{'threads':>8}{'adam':>10}{'adam+ema':>10}{'amsgrad':>10}"
          f"{'ema/amsgrad':>13}")
    for n in (int(float(s)) for s in args.sizes.split(",")):
        for nt in (int(t) for t in args.threads.split(",")):
            opts = [fo.Adam(num_threads=nt), fo.Adam(num_threads=nt, ema=0.999),
                    fo.AdamW(num_threads=nt, amsgrad=True)]
            params = [[np.ones(n, np.float32)] for _ in opts]
            grads = [np.full(n, 1e-3, np.float32)]
            times = [[] for _ in opts]
            for _ in range(60):
                for i, opt in enumerate(opts):
                    for _ in range(3):
                        t0 = time.perf_counter_ns()
                        opt.update(params[i], grads)
                        times[i].append(time.perf_counter_ns() - t0)
            med = [statistics.median(t[90:]) / 1e3 for t in times]
            print(f"{n:>10}{nt:>8}{med[0]:>10.0f}{med[1]:>10.0f}{med[2]:>10.0f}"
                  f"{med[1] / med[2]:>13.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
