"""What the commands share: the user-facing error, the optional-library guard, argument
types, and the optimizer names (from the rule table)."""

import argparse
import importlib

from .. import rules

#: Every optimizer's class name, in the rule table's order.
OPTIMIZER_NAMES = tuple(r.class_name for r in rules.RULES)

DEMO_EXTRA = 'pip install "fastoptim[demo]"'

_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
          "ten", "eleven", "twelve")


class CLIError(Exception):
    """A user-facing error: printed as 'fastoptim: error: ...', exit status 2."""


def count_word(n):
    """8 -> 'eight' (for help texts), digits past twelve."""
    return _WORDS[n] if 0 <= n < len(_WORDS) else str(n)


def require(command, *modules):
    """Import the optional libraries a command needs, or fail with the install line."""
    loaded, missing = [], []
    for name in modules:
        try:
            loaded.append(importlib.import_module(name))
        except ImportError:
            missing.append(name.split(".")[0])
    if missing:
        pretty = {"sklearn": "scikit-learn"}
        names = ", ".join(pretty.get(m, m) for m in dict.fromkeys(missing))
        raise CLIError(f"'fastoptim {command}' needs {names}, which "
                       f"{'is' if len(missing) == 1 else 'are'} not installed; install the "
                       f"demo extra: {DEMO_EXTRA}")
    return loaded


def optimizer_list(text, default):
    """The class names a comma-separated ``--optimizers`` value names (any case, in the
    order given, each once), or ``default`` when it was not given."""
    if text is None:
        return list(default)
    by_lower = {n.lower(): n for n in OPTIMIZER_NAMES}
    names = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if part.lower() not in by_lower:
            raise CLIError(f"unknown optimizer {part!r}; choose from "
                           f"{', '.join(OPTIMIZER_NAMES)}")
        if by_lower[part.lower()] not in names:
            names.append(by_lower[part.lower()])
    if not names:
        raise CLIError("--optimizers is empty")
    return names


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def widths(text):
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give widths like 100 or 128,64") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: widths must be positive")
    return sizes
