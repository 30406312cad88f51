"""The ``fastoptim`` command: ``fastoptim demo``, ``fastoptim paths``, ``fastoptim bench``,
``fastoptim info``; one module per command (:mod:`fastoptim.cli.demo`, ``.paths``,
``.bench``, ``.info``), each adding its subparser and running it. ``main`` is the entry
point (``fastoptim = fastoptim.cli:main``; ``python -m fastoptim`` runs it too).

``demo`` and ``paths`` need the optional ``demo`` extra (matplotlib, scikit-learn, tqdm):
``pip install "fastoptim[demo]"``. They import those libraries only when they run, so
importing the command stays NumPy-only; ``import fastoptim`` does not import it at all.
"""

import argparse
import sys

from .. import __version__
from ..demo import DemoError
from . import bench, demo, info, paths
from ._common import DEMO_EXTRA, OPTIMIZER_NAMES, CLIError

__all__ = ["main", "build_parser", "CLIError", "OPTIMIZER_NAMES", "DEMO_EXTRA"]

#: The commands, in the order of the help.
COMMANDS = (demo, paths, bench, info)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fastoptim",
        description="Fused, OpenMP-parallel optimizer steps for NumPy arrays: demos.")
    parser.add_argument("--version", action="version", version=f"fastoptim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv=None):
    """Entry point of the ``fastoptim`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # its own parser (fastoptim.cli.bench), core-only dependencies
        return bench.main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (CLIError, DemoError) as exc:
        print(f"fastoptim: error: {exc}", file=sys.stderr)
        return 2
