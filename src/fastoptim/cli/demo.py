"""``fastoptim demo``: train an MLP with every optimizer (:mod:`fastoptim.demo.train`)."""

from ..demo import settings
from ..demo.train import DEMO_SETUPS
from ._common import OPTIMIZER_NAMES, count_word, optimizer_list, positive_int, require, widths


def add_parser(sub):
    demo = sub.add_parser(
        "demo", help="train an MLP with every optimizer; table, loss curves (PNG, CSV)",
        description="Train a NumPy MLP (fastoptim.demo.nn) with each optimizer from the "
                    "same initial weights on the same mini-batches, next to the same loop "
                    "with the plain NumPy optimizer a user writes (fastoptim.demo.plain: "
                    "the baseline of the speed-ups) and with the NumPy reference "
                    "(fastoptim.reference: must end bit-identical), the three loops taking "
                    "turns epoch by epoch; print final loss, accuracy, epoch time and the "
                    "time in the optimizer for all three, and which part of the epoch "
                    "dominates; write <out>/loss_curves.png and <out>/loss_curves.csv.")
    demo.add_argument("--dataset", choices=sorted(DEMO_SETUPS), default="digits",
                      help="digits: scikit-learn's bundled 8x8 digits (classification); "
                           "apartment: the 10-row price table of the lecture notes (MSE "
                           "regression). Default: digits")
    demo.add_argument("--epochs", type=positive_int, default=None,
                      help="passes over the training set (default: 30 for digits, 1000 for "
                           "apartment)")
    demo.add_argument("--optimizers", default=None,
                      help=f"comma-separated subset of {', '.join(OPTIMIZER_NAMES)} "
                           f"(default: all {count_word(len(OPTIMIZER_NAMES))})")
    demo.add_argument("--out", default="fastoptim-demo",
                      help="output directory (default: ./fastoptim-demo)")
    demo.add_argument("--seed", type=int, default=0,
                      help="seed for the split, the initial weights and the batches")
    demo.add_argument("--batch-size", type=positive_int, default=None,
                      help="mini-batch size (default: 32 for digits, 10 = all rows for "
                           "apartment)")
    demo.add_argument("--hidden", type=widths, default=None,
                      help="hidden layer widths, e.g. 100 or 128,64 (default: 100 for "
                           "digits, 2 for apartment as in the notes)")
    demo.add_argument("--dtype", choices=["float32", "float64"], default=None,
                      help="network dtype (default: float32 for digits, float64 for "
                           "apartment)")
    demo.add_argument("--threads", type=positive_int, default=None,
                      help="num_threads for the optimizers (default: OpenMP's maximum)")
    demo.add_argument("--progress", dest="progress", action="store_true", default=None,
                      help="always show a progress bar per optimizer (default: only when "
                           "stderr is a terminal)")
    demo.add_argument("--no-progress", dest="progress", action="store_false",
                      help="never show progress bars")
    demo.set_defaults(func=run)
    return demo


def run(args):
    need = ["matplotlib", "tqdm"] + (["sklearn"] if args.dataset == "digits" else [])
    require("demo", *need)
    from ..demo import train

    names = optimizer_list(args.optimizers, settings.names())
    train.run(args.dataset, names, epochs=args.epochs, batch_size=args.batch_size,
              hidden=args.hidden, dtype=args.dtype, seed=args.seed, threads=args.threads,
              progress=args.progress, out=args.out)
    return 0
