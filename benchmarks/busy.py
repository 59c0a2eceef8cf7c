"""``uv run python -m benchmarks.busy``: NumPy epochs on an idle machine and beside a busy loop, in one run.

A busy-looping process (started here, stopped at the end) takes one core,
as another user's job would. ``train.py --backend numpy`` then runs with
its automatic BLAS threads (the cores idle when it starts) and with
``--threads`` set to every core, which is what OpenBLAS alone would do.
The goal (issue 15): busy at most 2x idle with the automatic choice.
Idle and busy take turns ``--rounds`` times (the load stopped in between),
each row its fastest round: on a VM whose speed drifts within minutes, one
pass compares two different machines.
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
    p.add_argument("--rounds", type=positive_int, default=2, help="idle and busy passes, taking turns")
    add_data_flag(p)
    args = p.parse_args(argv)
    check_json(args)
    cores = os.cpu_count() or 1
    base = ["--backend", "numpy", "--hidden", args.hidden, "--augment", args.augment, "--epochs", str(args.epochs),
            *(["--data", args.data] if args.data else [])]
    # OPENBLAS_NUM_THREADS of this shell would decide both rows: leave the choice to train.py.
    env = {"OPENBLAS_NUM_THREADS": None}
    runs = [("auto", []), (f"--threads {cores}", ["--threads", str(cores)])]
    seconds = {(machine, how): [] for machine in ("idle", "busy") for how, _ in runs}
    chosen = {}
    for _ in range(args.rounds):
        for machine in ("idle", "busy"):
            busy = start_busy_loop() if machine == "busy" else None
            try:
                for how, extra in runs:
                    figures = train_run(base + extra, env)
                    chosen[machine, how] = figures["blas_threads"]
                    seconds[machine, how].append(median_epoch_seconds(figures))
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    rows = [{"machine": machine, "threads": how, "chosen": chosen[machine, how], "epoch_s": min(times),
             "rounds_s": times} for (machine, how), times in seconds.items()]
    print(f"| machine | BLAS threads | chosen | epoch (fastest of {args.rounds}) | vs idle (auto) |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['machine']} | {r['threads']} | {r['chosen']} | {r['epoch_s']:.2f} s | "
              f"{r['epoch_s'] / rows[0]['epoch_s']:.2f}x |")
    write_json(args, rows)
    return 0


if __name__ == "__main__":
    from benchmarks.script import run

    run(main, "python -m benchmarks.busy")
