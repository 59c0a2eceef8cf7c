"""``uv run python -m benchmarks``: every backend side by side with PyTorch.

    uv run --extra bench python -m benchmarks --quick
    uv run --extra bench python -m benchmarks --out benchmarks/results/DATE --torch-python ../torch/bin/python

Prints a markdown table, writes the JSON (``--json``) and, with ``--out``,
the table, the JSON and PNG charts into one folder.
"""

import datetime
import json
import sys
from pathlib import Path


# The model every backend is compared on (PyTorch's reference too): the
# plain MLP of the earlier results, not train.py's wider, augmented default.
BENCHMARK_SIZES = (784, 128, 64, 10)


def build_parser():
    import argparse

    from cli.flags import Parser, seed_value

    from .variants import VARIANTS

    p = Parser(prog="python -m benchmarks", description=__doc__.splitlines()[0].split(": ", 1)[1],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="all", metavar="NAMES",
                   help=f"comma-separated variants: {', '.join(v.name for v in VARIANTS)} or all (default: all; "
                        f"with --quick all but {', '.join(v.name for v in VARIANTS if v.comparison)})")
    p.add_argument("--quick", action="store_true",
                   help="few epochs, few sweep points, few steps: about two minutes on a 2-core CPU")
    p.add_argument("--json", default=None, metavar="PATH", help="write every measurement as JSON")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write benchmark.md, benchmark.json and the PNG charts into DIR")
    p.add_argument("--data", default=None, metavar="PATH",
                   help="MNIST folder or mnist.npz (default: $MNIST_DATA, else the cache, else download)")
    p.add_argument("--torch-python", default=None, metavar="PATH",
                   help="a Python interpreter that has torch (default: $XPNET_TORCH_PYTHON, else this one if it has torch)")
    p.add_argument("--seed", type=seed_value, default=0, help="seed of every training run (default: 0)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from cli.train_args import build_parser as train_parser
    from nn.data import load_mnist
    from nn.files import atomic_write_bytes

    from . import charts, probe, report, runner, variants

    # Output folders are checked before minutes of measuring, not after.
    from cli.paths import check_writable_file, check_writable_folder

    out = Path(args.out) if args.out else None
    if out:
        check_writable_folder("--out", out)
        out.mkdir(parents=True, exist_ok=True)
    if args.json:
        check_writable_file("--json", args.json, "benchmark.json")
    chosen = variants.select([n.strip() for n in args.backends.split(",") if n.strip()], quick=args.quick)
    defaults = train_parser().parse_args([])
    settings = runner.QUICK if args.quick else runner.FULL
    torch = runner.find_torch_python(args.torch_python) if any(v.is_torch for v in chosen) else (None, None)
    started = datetime.datetime.now(datetime.timezone.utc)
    machine = probe.machine()
    cpu_before = probe.cpu_seconds()
    data = load_mnist(args.data)
    results, config = runner.run(
        chosen, settings, data, seed=args.seed, batch=defaults.batch_size,
        sizes=BENCHMARK_SIZES, val_size=defaults.val_size,
        torch=torch, progress=args.progress,
    )
    rows, ceiling = runner.rows(chosen, results)
    wall_seconds = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()
    machine["load_average_at_end"] = probe.load_average()
    machine["cpu_share_of_other_processes"] = probe.others_share(
        cpu_before, probe.cpu_seconds(), wall_seconds, machine["cores_logical"])
    document = {
        "schema": 1,
        "created": started.isoformat(timespec="seconds"),
        "wall_seconds": wall_seconds,
        "mode": "quick" if args.quick else "full",
        "command": " ".join(["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])]),
        "source": probe.source_revision(),
        "machine": machine,
        "matmul_ceiling_gflops": ceiling,
        "config": config,
        "rows": rows,
    }
    # The measurements are written before anything renders them.
    payload = (json.dumps(document, indent=2, allow_nan=False) + "\n").encode()
    if args.json:
        atomic_write_bytes(args.json, payload)
    if out:
        atomic_write_bytes(out / "benchmark.json", payload)
    text = report.markdown(document)
    print(text)
    if out:
        atomic_write_bytes(out / "benchmark.md", text.encode())
        message = charts.draw(document, out)
        print(message, file=sys.stderr)
    return 0


def run(argv=None):
    from backends.errors import run_front_door

    return run_front_door(main, argv, "benchmarks")


if __name__ == "__main__":
    sys.exit(run())
