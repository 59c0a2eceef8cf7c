"""``uv run python -m benchmarks.busy``: NumPy epochs on an idle machine and beside a busy loop, in one run.

A busy-looping process (started here, stopped at the end) takes one core,
as another user's job would. ``train.py --backend numpy`` then runs with
its automatic BLAS threads (the cores idle when it starts) and with
``--threads`` set to every core, which is what OpenBLAS alone would do.
The goal (issue 15): busy at most 2x idle with the automatic choice.
"""

import subprocess
import sys
import time

# One core's worth of work that never sleeps, and never touches the disk.
BUSY_LOOP = "while True: pass"


def start_busy_loop():
    process = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    time.sleep(1.0)  # running, and seen as such by the next idle sample
    return process


def main(argv=None):
    import os

    from benchmarks.script import add_data_flag, check_json, median_epoch_seconds, script_parser, train_run, write_json
    from cli.flags import positive_int

    p = script_parser("python -m benchmarks.busy", __doc__)
    p.add_argument("--hidden", default="256,128", metavar="N,N", help="the model (default: train.py's)")
    p.add_argument("--augment", default="none", metavar="KIND", help="train.py's --augment (default: none)")
    p.add_argument("--epochs", type=positive_int, default=3, help="epochs per run; the first is not counted")
    add_data_flag(p)
    args = p.parse_args(argv)
    check_json(args)
    cores = os.cpu_count() or 1
    base = ["--backend", "numpy", "--hidden", args.hidden, "--augment", args.augment, "--epochs", str(args.epochs),
            *(["--data", args.data] if args.data else [])]
    # OPENBLAS_NUM_THREADS of this shell would decide both rows: leave the choice to train.py.
    env = {"OPENBLAS_NUM_THREADS": None}
    runs = [("idle", "auto", []), ("idle", f"--threads {cores}", ["--threads", str(cores)])]
    rows = []
    print("| machine | BLAS threads | chosen | epoch | vs idle (auto) |")
    print("| --- | --- | --- | --- | --- |")
    busy = None
    try:
        for machine, how, extra in runs + [("busy", how, extra) for _, how, extra in runs]:
            if machine == "busy" and busy is None:
                busy = start_busy_loop()
            figures = train_run(base + extra, env)
            chosen = figures["blas_threads"]
            rows.append({"machine": machine, "threads": how, "chosen": chosen,
                         "epoch_s": median_epoch_seconds(figures)})
            r = rows[-1]
            print(f"| {machine} | {how} | {chosen} | {r['epoch_s']:.2f} s | "
                  f"{r['epoch_s'] / rows[0]['epoch_s']:.2f}x |", flush=True)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    write_json(args, rows)
    return 0


if __name__ == "__main__":
    from benchmarks.script import run

    run(main, "python -m benchmarks.busy")
