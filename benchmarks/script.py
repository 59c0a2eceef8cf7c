"""What the one-table benchmark scripts share: the parser, ``--json`` checked first and written last."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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


def train_run(argv, env=None):
    """``train.py *argv`` in a process of its own, as a user runs it: its --metrics-json figures.

    ``env`` replaces variables of this process's environment (a value of None removes one).
    """
    from backends import XpnetError

    environment = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    with tempfile.TemporaryDirectory() as folder:
        metrics = Path(folder) / "metrics.json"
        outputs = ["--no-progress", "--metrics-json", str(metrics), "--out", str(Path(folder) / "model.npz")]
        result = subprocess.run([sys.executable, str(ROOT / "train.py"), *argv, *outputs], cwd=ROOT,
                                capture_output=True, text=True, env=environment)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no message"])[-1]
            raise XpnetError(f"train.py {' '.join(argv)} failed: {last}")
        return json.loads(metrics.read_text())


def median_epoch_seconds(figures):
    """The median epoch after the first (which compiles on JAX), from ``train_run``'s figures."""
    import statistics

    seconds = figures["epoch_seconds"]
    return statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
