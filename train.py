"""Train an MLP on MNIST from the command line, on any xpnet backend.

    uv run train.py                       # the default model on the best backend here
    uv run train.py --backend numpy --data ../mnist --epochs 10 --out m.npz
    uv run train.py --checkpoint-dir ck --out m.safetensors   # checkpoint every epoch
    uv run train.py --resume ck                               # continue exactly where ck stopped

Every problem with the input is reported as one line and exit status 2.
"""

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from cli.console import describe_run_header, epoch_line, version
from cli.flags import (
    DefaultsFormatter,
    Parser,
    augment_value,
    hidden_sizes,
    names,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    seed_value,
)

DEFAULT_OUT = "model.npz"
# The distortion parameters, each a flag --aug-NAME (nn.augment.RANGES has their help and ranges).
AUGMENT_PARAMS = ("rotate", "shear", "scale", "shift", "sigma", "alpha", "thicken", "thin", "clean")
# The flags that define a run: --resume keeps the checkpoint's, and refuses others.
RUN_FLAGS = (
    "seed", "hidden", "activation", "loss", "output", "init", "dropout", "reg", "reg_lambda", "epochs",
    "batch_size", "optimizer", "lr", "schedule", "lr_decay", "momentum", "nesterov", "weight_decay",
    "val_size", "patience", "min_delta", "restore_best", "augment", *(f"aug_{name}" for name in AUGMENT_PARAMS),
)
# The default recipe, Adam from 6e-3 on a cosine to 0 with decoupled
# (AdamW-style) decay 0.1, was chosen on the median test accuracy of 3 seeds
# after 5 and 15 epochs (README, The default recipe). SGD's rate is an order of
# magnitude larger, so it keeps no decay unless asked.
DEFAULT_LR = 6e-3
ADAM_WEIGHT_DECAY = 0.1
# The default model is the one gui.py loads, so it trains on distorted digits
# (elastic, the nn.augment defaults) for 30 epochs, 784-256-128-10: chosen on
# drawings of validation digits, then measured on drawn test digits and MNIST's
# test set, 3 seeds, within 60 s on a 2-core CPU (README, Reading drawings).
DEFAULT_AUGMENT, DEFAULT_EPOCHS, DEFAULT_HIDDEN = "elastic", 30, [256, 128]


def build_parser():
    from nn.activations import HIDDEN_ACTIVATIONS
    from nn.regularizers import REGULARIZERS
    from nn.schedules import SCHEDULES

    p = Parser(
        prog="train.py",
        description="Train an MLP on MNIST with xpnet. The defaults (elastic distortions, 30 epochs) reach about "
                    "99.0% test accuracy and read drawn digits.",
        formatter_class=DefaultsFormatter,
    )
    p.add_argument("--version", action="version", version=f"xpnet {version()}")
    run = p.add_argument_group("backend and data")
    run.add_argument("--backend", default=None, metavar="NAME",
                     help="numpy, jax, cupy or auto (default: $XPNET_BACKEND, else auto: cupy if a GPU works, else jax, else numpy)")
    run.add_argument("--grad", choices=("manual", "autodiff"), default=None,
                     help="how gradients are obtained: the hand-written backward, or jax.grad (JAX only; JAX's default)")
    run.add_argument("--data", default=None, metavar="PATH",
                     help="folder with the four MNIST IDX files (gzipped or not) or an mnist.npz; default: $MNIST_DATA, else download and cache")
    run.add_argument("--extra-data", default=None, metavar="FOLDER",
                     help="also train on your own digits saved by gui.py (S then the digit key); never used for validation or test")
    run.add_argument("--seed", type=seed_value, default=0,
                     help="seeds init, shuffling, dropout and augmentation: same seed, same run (0 to 2^32-1)")
    run.add_argument("--cuda-graph", action=argparse.BooleanOptionalAction, default=None,
                     help="cupy: capture one training step as a CUDA graph and replay it per batch "
                          "(default: on where capture works); --no-cuda-graph launches the kernels one by one")
    run.add_argument("--epoch-mode", choices=("step", "scan"), default=None,
                     help="one compiled step per minibatch, or each whole epoch as one compiled jax.lax.scan "
                          "(JAX only; same result, no progress bar) (default: scan on jax, else step)")
    run.add_argument("--devices", type=positive_int, default=None, metavar="N",
                     help="JAX: split each batch across N devices of this process (default: all of them)")
    run.add_argument("--threads", type=positive_int, default=None, metavar="N",
                     help="NumPy: BLAS threads (default: $OPENBLAS_NUM_THREADS, else the cores idle at the start, "
                          "so a busy machine is not made to spin against itself)")

    dist = p.add_argument_group("several machines (JAX, jax.distributed)")
    dist.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                      help="address of process 0, the same on every process (default: $XPNET_COORDINATOR)")
    dist.add_argument("--num-processes", type=positive_int, default=None, metavar="N",
                      help="how many processes take part (default: $XPNET_NUM_PROCESSES)")
    dist.add_argument("--process-id", type=non_negative_int, default=None, metavar="I",
                      help="this process's rank, 0 to N-1 (default: $XPNET_PROCESS_ID)")
    dist.add_argument("--distributed-timeout", type=positive_int, default=300, metavar="SECONDS",
                      help="how long to wait for every process to join before giving up")

    arch = p.add_argument_group("model")
    arch.add_argument("--hidden", type=hidden_sizes, default=DEFAULT_HIDDEN, metavar="N,N",
                      help=f"hidden layer widths, comma-separated (default: {','.join(map(str, DEFAULT_HIDDEN))})")
    arch.add_argument("--activation", type=names, default=["relu"], metavar="NAME",
                      help=f"hidden activation, one for all or one per layer: {', '.join(HIDDEN_ACTIVATIONS)} (default: relu)")
    arch.add_argument("--loss", choices=("ce", "mse"), default="ce",
                      help="softmax cross-entropy, or mean squared error against one-hot targets")
    arch.add_argument("--output", choices=("softmax", "linear"), default="softmax",
                      help="output activation (cross-entropy needs softmax)")
    arch.add_argument("--init", choices=("he", "glorot"), default=None,
                      help="weight init (default: he for relu-like activations, else glorot)")
    arch.add_argument("--init-from", default=None, metavar="MODEL",
                      help="start from this saved model's weights instead (fine-tuning); the architecture flags "
                           "must build the same network")
    arch.add_argument("--dropout", type=non_negative_float, default=0.0,
                      help="dropout rate on hidden activations while training (never on the logits)")
    arch.add_argument("--reg", choices=REGULARIZERS, default="none", help="weight penalty (biases are never penalised)")
    arch.add_argument("--reg-lambda", type=non_negative_float, default=1e-4, help="strength of --reg")

    from nn.augment import KINDS, RANGES, Augment

    aug = p.add_argument_group("augmentation: every training batch distorted anew, per sample (nn/augment.py)")
    aug.add_argument("--augment", choices=KINDS, default=DEFAULT_AUGMENT,
                     help="none; affine (rotation, shear, x/y scale, shift, stroke width); elastic (affine plus "
                          "Simard's elastic field)")
    for name in AUGMENT_PARAMS:
        what, low, high = RANGES[name]
        aug.add_argument(f"--aug-{name}", type=augment_value(name), default=getattr(Augment(), name),
                         metavar="X", help=f"{what}, {low:g} to {high:g}")

    opt = p.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=positive_int, default=DEFAULT_EPOCHS, help="maximum number of epochs")
    opt.add_argument("--batch-size", type=positive_int, default=128, help="minibatch size")
    opt.add_argument("--optimizer", choices=("sgd", "adam"), default="adam", help="update rule")
    opt.add_argument("--lr", type=positive_float, default=DEFAULT_LR, help="initial learning rate")
    opt.add_argument("--schedule", choices=SCHEDULES, default="cosine",
                     help="learning-rate schedule: cosine decays to 0 over --epochs, step by step")
    opt.add_argument("--lr-decay", type=positive_float, default=0.9, help="per-epoch factor of --schedule exponential")
    opt.add_argument("--momentum", type=non_negative_float, default=0.0, help="SGD momentum")
    opt.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD)")
    opt.add_argument("--weight-decay", type=non_negative_float, default=None,
                     help=f"decoupled weight decay on weights (default: {ADAM_WEIGHT_DECAY} with adam, 0 with sgd)")

    stop = p.add_argument_group("validation and early stopping")
    stop.add_argument("--val-size", type=non_negative_int, default=5000,
                      help="images held out from the END of the training set for validation (never the test set)")
    stop.add_argument("--patience", type=non_negative_int, default=0,
                      help="stop after this many epochs without validation-loss improvement (0: never; "
                           "the cosine schedule already ends the run at a rate of 0)")
    stop.add_argument("--min-delta", type=non_negative_float, default=0.0,
                      help="smallest validation-loss decrease that counts as an improvement")
    stop.add_argument("--no-restore-best", dest="restore_best", action="store_false",
                      help="keep the last epoch's weights instead of the best validation epoch's")

    out = p.add_argument_group("output")
    out.add_argument("--out", default=DEFAULT_OUT, metavar="PATH",
                     help="where to save the trained model: .npz or .safetensors, chosen by the extension")
    out.add_argument("--metrics-json", default=None, metavar="PATH",
                     help="write final figures and the per-epoch history as JSON, and the history as CSV beside it "
                          "(m.json: m.csv)")
    out.add_argument("--plot", default=None, metavar="PATH",
                     help="draw loss and accuracy per epoch, training and validation, as a PNG (needs matplotlib: "
                          "the bench extra)")
    out.add_argument("--export-onnx", default=None, metavar="PATH",
                     help="also write the model as an ONNX graph (needs the onnx extra)")
    out.add_argument("--push-to-hub", default=None, metavar="OWNER/NAME",
                     help="upload config.json, model.safetensors and a model card to this Hugging Face Hub repo")

    out.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")

    resume = p.add_argument_group("checkpoints")
    resume.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                        help="save a checkpoint after every epoch (Ctrl-C also saves one: here, else next to --out)")
    resume.add_argument("--resume", default=None, metavar="DIR",
                        help="continue the run checkpointed in DIR exactly; it keeps its own settings")
    return p


def build_run(args):
    """Backend, model, optimizer and schedule from the flags; fails before any data is read."""
    import nn
    from backends import XpnetError, get_backend

    activations = args.activation * len(args.hidden) if len(args.activation) == 1 else args.activation
    if len(activations) != len(args.hidden):
        raise XpnetError(
            f"--activation lists {len(activations)} names for {len(args.hidden)} hidden layers: give one, or one per layer"
        )
    _check_memory(args)
    init = args.init or ("he" if all(a in ("relu", "leaky_relu") for a in activations) else "glorot")
    model = nn.MLP(
        sizes=(784, *args.hidden, 10),
        activations=tuple(activations),
        output=args.output,
        loss=args.loss,
        dropout=args.dropout,
        reg=args.reg,
        reg_lambda=args.reg_lambda if args.reg != "none" else 0.0,
        init=init,
    )
    if args.optimizer == "adam":
        if args.momentum or args.nesterov:
            raise XpnetError("--momentum and --nesterov belong to --optimizer sgd; Adam keeps its own moments")
        decay = ADAM_WEIGHT_DECAY if args.weight_decay is None else args.weight_decay
        optimizer = nn.Adam(weight_decay=decay)
    else:
        decay = args.weight_decay or 0.0
        optimizer = nn.SGD(momentum=args.momentum, nesterov=args.nesterov, weight_decay=decay)
    schedule = nn.Schedule(args.schedule, args.lr, args.epochs, args.lr_decay)
    be = get_backend(_start_distributed(args))
    if args.cuda_graph is not None:
        if be.name == "cupy":
            be.cuda_graph = args.cuda_graph
        elif args.cuda_graph:
            raise XpnetError(f"--cuda-graph needs --backend cupy (the {be.name} backend has no CUDA graphs)")
    be.use_devices(args.devices)
    be.use_threads(args.threads)
    be.check_batch_size(args.batch_size)
    grad = be.check_grad_mode(args.grad)
    stopping = nn.EarlyStopping(args.patience, args.min_delta, args.restore_best)
    return be, grad, model, optimizer, schedule, stopping, augment_from_args(args)


def training_bytes(args):
    """A lower bound on the memory a run needs: weights, gradients and two optimizer moments in float32,
    plus each layer's activations and their gradients for one batch."""
    sizes = (784, *args.hidden, 10)
    params = sum((n_in + 1) * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    activations = args.batch_size * sum(sizes)
    return 4 * (4 * params + 4 * activations)


def _check_memory(args):
    from backends import XpnetError

    needed = training_bytes(args)
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): nothing to compare with
        return
    if needed > physical:
        raise XpnetError(
            f"--hidden {','.join(map(str, args.hidden))} with --batch-size {args.batch_size} needs at least "
            f"{needed / 2**30:,.1f} GiB, more than this machine's {physical / 2**30:,.1f} GiB: choose smaller layers"
        )


def augment_from_args(args):
    from nn.augment import Augment

    return Augment(args.augment, **{name: getattr(args, f"aug_{name}") for name in AUGMENT_PARAMS})


def _env_int(name, flag):
    text = os.environ.get(name)
    if text is None or not text.strip():
        return None
    try:
        return int(text)
    except ValueError:
        from backends import XpnetError

        raise XpnetError(f"${name}={text!r} must be a whole number (like {flag})") from None


def _start_distributed(args):
    """Join a jax.distributed run when a coordinator is given; returns the backend name to use.

    jax.distributed.initialize() must come before any other JAX call, so
    this runs before the backend is made.
    """
    from backends import XpnetError

    coordinator = args.coordinator or os.environ.get("XPNET_COORDINATOR") or None
    num_processes = args.num_processes if args.num_processes is not None else _env_int("XPNET_NUM_PROCESSES", "--num-processes")
    process_id = args.process_id if args.process_id is not None else _env_int("XPNET_PROCESS_ID", "--process-id")
    if coordinator is None:
        if num_processes is not None or process_id is not None:
            raise XpnetError("--num-processes and --process-id need --coordinator HOST:PORT (or $XPNET_COORDINATOR)")
        return args.backend
    backend = (args.backend or os.environ.get("XPNET_BACKEND") or "jax").strip().lower()
    if backend not in ("jax", "auto"):
        raise XpnetError(f"--coordinator runs jax.distributed: use --backend jax, not {backend}")
    from backends.jax_backend import start_distributed

    start_distributed(coordinator, num_processes, process_id, timeout=args.distributed_timeout)
    return "jax"


def _progress_bar(enabled):
    if not enabled or not sys.stderr.isatty():  # a log file gets one line per epoch, not \r frames
        return lambda iterable, **_: iterable
    from tqdm import tqdm

    return lambda iterable, desc: tqdm(iterable, desc=desc, leave=False, unit="batch", dynamic_ncols=True)


def main(argv=None):
    args = build_parser().parse_args(argv)
    import numpy as np

    import nn
    from cli.paths import free_checkpoint_folder
    from nn.checkpoint import data_fingerprint, describe_run, has_checkpoint, save_checkpoint
    from nn.data import load_mnist
    from nn.files import atomic_write_bytes
    from nn.samples import load_samples
    from nn.serialize import save_model
    from nn.training import Diverged, Interrupted

    checkpoint = None
    if args.resume:
        args, checkpoint = _resumed_args(argv, args.resume)
    _check_outputs(args)
    be, grad, model, optimizer, schedule, stopping, augment = build_run(args)
    initial = _initial_params(args.init_from, model) if args.init_from and checkpoint is None else None
    extra = load_samples(args.extra_data) if args.extra_data else None  # a bad folder fails before MNIST loads
    epoch_mode = be.check_epoch_mode(args.epoch_mode)
    print(describe_run_header(model, optimizer, args, be, grad, epoch_mode), flush=True)
    print(augment.describe(), flush=True)
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
                              data=data_fingerprint(x_train, y_train, x_val, y_val))
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
        with _sigint_asks_to_stop(epoch_mode) as stop_requested:
            params, history = nn.fit(
                be, model, optimizer, schedule, x_train, y_train, x_val, y_val,
                epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, grad=grad,
                early_stopping=stopping, progress_bar=_progress_bar(args.progress), epoch_mode=epoch_mode,
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

    metrics = {
        "backend": be.name,
        "device": be.device_description(),
        **({"blas_threads": be.threads} if be.threads else {}),
        "grad": grad,
        "epoch_mode": epoch_mode,
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "epochs": len(history),
        "epoch_seconds": [record["seconds"] for record in history],
        "train_seconds": train_seconds,
        "best_epoch": stopping.best_epoch if stopping.best_params is not None else len(history),
        # No validation split leaves its figures NaN, which JSON cannot hold: null.
        "history": [{k: _json_number(v) for k, v in record.items()} for record in history],
        "model": model.config(),
        "args": {k: v for k, v in vars(args).items()},
    }
    if args.metrics_json:
        from cli.history import csv_path, write_csv

        text = json.dumps(metrics, indent=2, allow_nan=False, default=_json_default)
        atomic_write_bytes(args.metrics_json, (text + "\n").encode())
        write_csv(csv_path(args.metrics_json), history)
    if args.plot:
        from cli.history import write_plot

        write_plot(args.plot, history, f"xpnet MLP {'-'.join(map(str, model.sizes))}, {be.name}, "
                                       f"test accuracy {test_accuracy:.2%}")
        print(f"curves drawn in {args.plot}")
    _publish(args, model, host_params, metrics)
    return 0


def _json_number(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _publish(args, model, params, metrics):
    """--export-onnx and --push-to-hub, after the model file is safely written."""
    from backends import XpnetError

    if args.export_onnx:
        from nn.export import export_onnx

        export_onnx(args.export_onnx, model, params)
        print(f"ONNX graph written to {args.export_onnx}")
    if args.push_to_hub:
        from nn.hub import push_model

        try:
            print(f"pushed to {push_model(args.push_to_hub, model, params, metrics)}")
        except XpnetError as exc:
            metrics_flag = f" --metrics-json {args.metrics_json}" if args.metrics_json else ""
            raise XpnetError(f"{exc}; the model is saved in {args.out}: push it later with "
                             f"`uv run python -m nn.hub push {args.out} {args.push_to_hub}{metrics_flag}`") from None


def _check_outputs(args):
    """Refuse unusable or clashing output paths before any data is read or training time spent."""
    from backends import XpnetError
    from cli.paths import check_no_clash, check_writable_file, check_writable_folder
    from nn.checkpoint import checkpoint_path, has_checkpoint
    from nn.data import data_files
    from nn.serialize import check_extension

    check_extension(args.out)
    if args.export_onnx:
        from nn.export import check_extension as check_onnx
        from nn.export import require_onnx

        check_onnx(args.export_onnx, "--export-onnx")
        require_onnx()
    if args.push_to_hub:
        from nn.hub import check_can_push

        # A token, and the Hub answering, before the training time is spent.
        check_can_push(args.push_to_hub, what=f"--push-to-hub {args.push_to_hub}",
                       otherwise=f"drop it and push the saved model later with "
                                 f"`uv run python -m nn.hub push MODEL {args.push_to_hub}`")
    if args.checkpoint_dir and not args.resume and has_checkpoint(args.checkpoint_dir):
        raise XpnetError(
            f"--checkpoint-dir {args.checkpoint_dir} already holds a checkpoint: continue that run with "
            f"--resume {args.checkpoint_dir}, or choose another folder"
        )
    if args.plot:
        from cli.history import require_matplotlib

        require_matplotlib()
    from cli.history import csv_path

    files = [("--out", args.out), ("--metrics-json", args.metrics_json), ("--export-onnx", args.export_onnx),
             ("--plot", args.plot), ("the history CSV beside --metrics-json",
                                     csv_path(args.metrics_json) if args.metrics_json else None)]
    for flag, path in files:
        if path is not None:
            check_writable_file(flag, path)
    folder = args.checkpoint_dir or args.resume
    if folder:
        check_writable_folder("--checkpoint-dir" if args.checkpoint_dir else "--resume", folder)
    data = args.data or os.environ.get("MNIST_DATA") or None
    data_flag = "--data" if args.data else "$MNIST_DATA"
    inputs = [(data_flag, file) for file in (data_files(data) if data else [])] + [("--extra-data", args.extra_data)]
    inputs.append(("--init-from", args.init_from))
    if args.resume:
        inputs.append(("--resume", checkpoint_path(args.resume)))
    check_no_clash(inputs, files)
    if folder:  # the checkpoint is written there: no other output may be that file
        check_no_clash([], [*files, ("the checkpoint", checkpoint_path(folder))])


def _flag(dest):
    return "--no-restore-best" if dest == "restore_best" else "--" + dest.replace("_", "-")


def _resumed_args(argv, folder):
    """The checkpoint's flags, with the ones given now on top; a run-defining flag that differs is an error."""
    from backends import XpnetError
    from nn.checkpoint import read_checkpoint

    checkpoint = read_checkpoint(folder)
    parser = build_parser()
    defaults = vars(parser.parse_args([]))
    saved = checkpoint.run.get("args")
    if isinstance(saved, dict) and "augment" not in saved:  # written before --augment existed: none then
        saved = {**{k: defaults[k] for k in RUN_FLAGS if k.startswith("aug_")}, "augment": "none", **saved}
    if not isinstance(saved, dict) or any(
        k not in saved or (defaults[k] is not None and type(saved[k]) is not type(defaults[k])) for k in RUN_FLAGS
    ):
        raise XpnetError(f"{checkpoint.path} has no usable record of its run's flags: start a new run")
    prefilled = argparse.Namespace(**{k: v for k, v in saved.items() if k in defaults and k != "resume"})
    args = parser.parse_args(argv, namespace=prefilled)
    conflicts = [
        f"{_flag(k)} {getattr(args, k)} (the checkpoint has {saved[k]})" for k in RUN_FLAGS if getattr(args, k) != saved[k]
    ]
    if conflicts:
        further = (f"; to train the finished model further, start a new run from it: --init-from {args.out}"
                   if getattr(args, "epochs") != saved["epochs"] else "")
        raise XpnetError(
            f"--resume {folder} continues the run with its own settings; drop the conflicting "
            f"{'flags' if len(conflicts) > 1 else 'flag'}: {'; '.join(conflicts)}{further}"
        )
    return args, checkpoint


def _initial_params(path, model):
    """The weights of the model file ``path``, which must be the network this run builds."""
    from backends import XpnetError
    from nn.serialize import load_model

    saved, params = load_model(path)
    mine = {k: getattr(model, k) for k in ("sizes", "activations", "output", "loss")}
    theirs = {k: getattr(saved, k) for k in mine}
    if mine != theirs:
        hidden = ",".join(map(str, saved.sizes[1:-1]))
        raise XpnetError(
            f"--init-from {path} is a {'-'.join(map(str, saved.sizes))} {','.join(saved.activations)} network "
            f"({saved.output} output, {saved.loss} loss), this run builds {'-'.join(map(str, model.sizes))} "
            f"{','.join(model.activations)} ({model.output}, {model.loss}): pass --hidden {hidden} --activation "
            f"{','.join(saved.activations)} --output {saved.output} --loss {saved.loss}"
        )
    return params


@contextmanager
def _sigint_asks_to_stop(epoch_mode):
    """While training, the first Ctrl-C asks fit to stop after the current step (in scan mode: the
    current epoch, one compiled call); a second aborts at once."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested.is_set
        return
    finishing = "this epoch (one compiled call in scan mode)" if epoch_mode == "scan" else "this step"
    message = f"\nCtrl-C: finishing {finishing}, then saving a checkpoint (Ctrl-C again to abort at once)\n"

    def handle(signum, frame):
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()
        os.write(2, message.encode())

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield requested.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


def _json_default(value):
    raise TypeError(f"not JSON serialisable: {value!r}")


def run(argv=None):
    from backends.errors import run_front_door

    return run_front_door(main, argv, "train.py", "interrupted; no model file was written")


if __name__ == "__main__":
    sys.exit(run())
