"""``fastoptim paths``: optimizer trajectories on 2-D test functions
(:mod:`fastoptim.demo.paths`)."""

from ..demo import settings
from ..demo.paths import PATH_FUNCTIONS
from ._common import OPTIMIZER_NAMES, CLIError, count_word, optimizer_list, positive_int, require


def add_parser(sub):
    default = settings.path_names()
    left_out = [n for n in OPTIMIZER_NAMES if n not in default]
    paths = sub.add_parser(
        "paths", help="optimizer trajectories on 2-D test functions (PNG, CSV)",
        description="Run each optimizer from one start on 2-D test functions and draw the "
                    "paths over contour lines: <out>/paths.png (all functions), "
                    "<out>/paths_<function>.png (a panel per optimizer) and "
                    "<out>/paths.csv.")
    paths.add_argument("--functions", default=None,
                       help=f"comma-separated subset of {', '.join(PATH_FUNCTIONS)} "
                            "(default: all)")
    paths.add_argument("--optimizers", default=None,
                       help=f"comma-separated subset of {', '.join(OPTIMIZER_NAMES)} "
                            f"(default: the {count_word(len(default))} of the notes"
                            + (f", without {', '.join(left_out)})" if left_out else ")"))
    paths.add_argument("--steps", type=positive_int, default=None,
                       help="steps per path (default: per function, 30 to 1000)")
    paths.add_argument("--out", default="fastoptim-paths",
                       help="output directory (default: ./fastoptim-paths)")
    paths.set_defaults(func=run)
    return paths


def run(args):
    require("paths", "matplotlib")
    names = optimizer_list(args.optimizers, settings.path_names())
    if args.functions is None:
        functions = list(PATH_FUNCTIONS)
    else:
        functions = [f.strip().lower() for f in args.functions.split(",") if f.strip()]
        bad = [f for f in functions if f not in PATH_FUNCTIONS]
        if bad or not functions:
            raise CLIError(f"unknown function(s) {', '.join(map(repr, bad))}; choose from "
                           f"{', '.join(PATH_FUNCTIONS)}")
    from ..demo import paths

    paths.run(names, functions, steps=args.steps, out=args.out)
    return 0
