"""What the one-table benchmark scripts share: the parser, ``--json`` checked first and written last."""

import sys


def script_parser(prog, doc):
    """A front-door parser for ``python -m benchmarks.NAME``, its description the docstring's first line
    (after the command it shows), with ``--json PATH``."""
    from cli.flags import Parser

    p = Parser(prog=prog, description=doc.splitlines()[0].split(": ", 1)[-1].strip("`. "))
    p.add_argument("--json", default=None, metavar="PATH", help="also write the rows as JSON")
    return p


def add_data_flag(p):
    p.add_argument("--data", default=None, metavar="PATH", help="MNIST (default: $MNIST_DATA, else the cache)")


def check_json(args):
    """Refuse an unwritable ``--json`` before any measuring."""
    if args.json:
        from cli.paths import check_writable_file

        check_writable_file("--json", args.json)


def write_json(args, rows):
    if args.json:
        from nn.files import atomic_write_json

        atomic_write_json(args.json, rows)


def run(main, prog):
    """``main`` under the house rule (bad input: one line, exit 2), for ``if __name__ == "__main__"``."""
    from backends.errors import run_front_door

    sys.exit(run_front_door(main, None, prog))
