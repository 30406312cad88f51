"""``fastoptim info``: the build and thread configuration (:func:`fastoptim.show_config`)."""


def add_parser(sub):
    info = sub.add_parser("info", help="print the build and thread configuration")
    info.set_defaults(func=run)
    return info


def run(args):
    from .. import show_config

    show_config()
    return 0
