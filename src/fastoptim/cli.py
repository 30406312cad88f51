"""The ``fastoptim`` command line: ``fastoptim bench`` (and ``python -m fastoptim``)."""

import sys

COMMANDS = {
    "bench": ("fastoptim._bench", "time every rule against the reference, the memory "
                                  "roofline and torch.optim"),
}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {doc}" for name, (_, doc) in COMMANDS.items()]
        msg = "usage: fastoptim COMMAND [options]\n\ncommands:\n" + "\n".join(lines)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"fastoptim: unknown command {argv[0]!r}\n\n{msg}", file=sys.stderr)
            return 2
        print(msg)
        return 0 if argv else 2
    import importlib

    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
