"""Train an MLP on MNIST from the command line, on any xpnet backend.

    uv run train.py                       # the default model on the best backend here
    uv run train.py --backend numpy --data ../mnist --epochs 10 --out m.npz
    uv run train.py --checkpoint-dir ck --out m.safetensors   # checkpoint every epoch
    uv run train.py --resume ck                               # continue exactly where ck stopped

Every problem with the input is reported as one line and exit status 2. The parts
live in cli/: the flags (train_args), the run they build (build), the output
files (outputs), what is printed (console) and Ctrl-C (interrupt).
"""

import os
import sys
import time
from pathlib import Path

from cli.build import build_run, initial_params, threads_to_resume_with
from cli.console import describe_run_header, epoch_line, progress_bar
from cli.interrupt import sigint_asks_to_stop
from cli.outputs import check_outputs, publish, write_metrics
from cli.train_args import build_parser, resumed_args


def main(argv=None):
    args = build_parser().parse_args(argv)
    import numpy as np

    import nn
    from cli.paths import free_checkpoint_folder
    from nn.checkpoint import data_fingerprint, describe_run, has_checkpoint, save_checkpoint
    from nn.data import load_mnist
    from nn.samples import load_samples
    from nn.serialize import save_model
    from nn.training import Diverged, Interrupted

    checkpoint = None
    threads = None  # (count, where it comes from) when not --threads's
    if args.resume:
        args, checkpoint = resumed_args(argv, args.resume)
        threads = threads_to_resume_with(args, checkpoint)
    check_outputs(args)
    be, grad, model, optimizer, schedule, stopping, augment = build_run(args, threads)
    initial = initial_params(args.init_from, model) if args.init_from and checkpoint is None else None
    extra = load_samples(args.extra_data) if args.extra_data else None  # a bad folder fails before MNIST loads
    epoch_mode = be.check_epoch_mode(args.epoch_mode)
    print(describe_run_header(model, optimizer, args, be, grad, epoch_mode), flush=True)
    print(augment.describe() + be.distortion_note(augment), flush=True)
    data = load_mnist(args.data)
    x_train, y_train, x_val, y_val = nn.split_validation(data.x_train, data.y_train, args.val_size)
    mixed = ""
    if extra is not None:
        x_train, y_train = np.concatenate([x_train, extra[0]]), np.concatenate([y_train, extra[1]])
        mixed = f" (incl. {len(extra[1]):,} of yours from {args.extra_data})"
    print(
        f"data: {len(x_train):,} train{mixed} / {len(x_val):,} validation / {len(data.x_test):,} test images",
        flush=True,
    )
    # A run fed by $MNIST_DATA records that folder: --resume later finds the same data without it.
    saved_args = {k: v for k, v in vars(args).items() if k not in ("resume", "checkpoint_dir")}
    saved_args["data"] = args.data or os.environ.get("MNIST_DATA") or None
    run_record = describe_run(model, optimizer, schedule, args={**saved_args, "backend": be.name, "grad": grad},
                              data=data_fingerprint(x_train, y_train, x_val, y_val), blas_threads=be.threads)
    start = checkpoint.resume(run_record, model, optimizer) if checkpoint else None
    if start is not None:
        stopping = start.early_stopping
        where = f"continuing at epoch {start.epoch + 1}" + (f", step {start.step}" if start.step else "")
        if start.stopped or start.epoch >= args.epochs:
            where = "nothing left to train"
        print(f"resuming {checkpoint.path}: {start.epoch} epochs done, {where}", flush=True)
    folder = args.checkpoint_dir or args.resume

    def save_epoch(state):
        save_checkpoint(folder, state, run_record)

    epoch_seconds = []

    def print_epoch(record):
        epoch_seconds.append(record["seconds"])
        print(epoch_line(record, args.epochs, epoch_seconds), flush=True)

    started = time.perf_counter()
    try:
        with sigint_asks_to_stop(epoch_mode) as stop_requested:
            params, history = nn.fit(
                be, model, optimizer, schedule, x_train, y_train, x_val, y_val,
                epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, grad=grad,
                early_stopping=stopping, progress_bar=progress_bar(args.progress), epoch_mode=epoch_mode,
                on_epoch=print_epoch,
                start=start, on_checkpoint=save_epoch if folder else None, stop_requested=stop_requested,
                augment=augment, initial_params=initial,
            )
    except Interrupted as exc:
        # Without --checkpoint-dir, Ctrl-C still keeps the work: beside the model file,
        # in a folder of its own, never over another run's checkpoint.
        folder = folder or str(free_checkpoint_folder(args.out, has_checkpoint))
        save_checkpoint(folder, exc.state, run_record)
        print(f"train.py: interrupted in epoch {exc.state.epoch + 1} after step {exc.state.step}; "
              f"checkpoint saved in {folder}; resume with: uv run train.py --resume {folder}", file=sys.stderr)
        return 130
    except Diverged as exc:
        if folder and Path(folder, "checkpoint.safetensors").is_file():
            raise Diverged(f"{exc}; the last good checkpoint in {folder} is untouched") from None
        raise
    train_seconds = time.perf_counter() - started
    if len(history) < args.epochs:
        print(f"early stop after epoch {len(history)}: no validation improvement for {args.patience} epochs")
    if stopping.best_params is not None and stopping.best_epoch != len(history):
        print(f"restored the weights of epoch {stopping.best_epoch} (best validation loss)")

    test_loss, test_accuracy = nn.evaluate(
        be, be.make_eval_step(model), params, be.asarray(data.x_test), be.asarray(data.y_test)
    )
    host_params = be.tree_to_host(params)
    save_model(args.out, model, host_params, training={
        "augment": augment.config(), "epochs": len(history), "seed": args.seed, "optimizer": args.optimizer,
        "lr": args.lr, "schedule": args.schedule, "batch_size": args.batch_size,
        **({"init_from": str(args.init_from)} if args.init_from else {}),
    })
    print(f"test accuracy {test_accuracy:.2%} (loss {test_loss:.4f}) in {train_seconds:.1f} s | model saved to {args.out}")

    best_epoch = stopping.best_epoch if stopping.best_params is not None else len(history)
    metrics = write_metrics(args, be, grad, epoch_mode, model, history, best_epoch, (test_loss, test_accuracy),
                            train_seconds)
    publish(args, model, host_params, metrics)
    return 0


def run(argv=None):
    from backends.errors import run_front_door

    return run_front_door(main, argv, "train.py", "interrupted; no model file was written")


if __name__ == "__main__":
    sys.exit(run())
