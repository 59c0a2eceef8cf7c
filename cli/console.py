"""What train.py prints: the version, the run's header, one line per epoch, the progress bar."""

import math
import sys
from pathlib import Path


def version():
    """xpnet's release: the installed package's, else the checkout's pyproject.toml."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version("xpnet")
    except PackageNotFoundError:  # run from a checkout that was never installed
        import tomllib

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        return tomllib.loads(pyproject.read_text())["project"]["version"]


def describe_run_header(model, optimizer, args, be, grad, epoch_mode):
    """The run's header: where it runs, then the model with its parameter count and regularisation."""
    layers = "-".join(str(n) for n in model.sizes)
    acts = ",".join(sorted(set(model.activations)))
    weights = sum(a * b + b for a, b in zip(model.sizes, model.sizes[1:]))
    regularisation = [f"dropout {model.dropout:g}"] if model.dropout else []
    regularisation += [f"{model.reg} {model.reg_lambda:g}"] if model.reg != "none" else []
    regularisation += [f"weight decay {optimizer.weight_decay:g}"] if optimizer.weight_decay else []
    return (
        f"xpnet {version()} | backend {be.name} ({be.device_description()}), grad {grad}, epoch {epoch_mode}\n"
        f"model: MLP {layers} {acts}, {model.output} output, {model.loss} loss, {weights:,} parameters, "
        f"{model.init} init; {', '.join(regularisation) or 'no regularisation'}\n"
        f"training: {args.optimizer} lr {args.lr:g} {args.schedule}, batch {args.batch_size}, "
        f"{args.epochs} epoch{'s' if args.epochs != 1 else ''}, seed {args.seed}"
    )


def epoch_line(record, epochs, seconds):
    """The epoch's line; ``seconds``: every epoch's time so far, for the time left (the first one compiles)."""
    left = epochs - record["epoch"]
    steady = sorted(seconds[1:] or seconds)
    eta = f"  {clock(left * steady[len(steady) // 2])} left" if left > 0 else ""
    val = (
        f"  val loss {record['val_loss']:.4f} acc {record['val_accuracy']:.2%}"
        if not math.isnan(record["val_loss"])
        else ""
    )
    return (
        f"epoch {record['epoch']:>{len(str(epochs))}}/{epochs}  "
        f"train loss {record['train_loss']:.4f} acc {record['train_accuracy']:.2%}{val}  "
        f"lr {record['lr']:.2e}  {record['seconds']:.2f} s{eta}"
    )


def clock(seconds):
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}" if minutes >= 60 else f"{minutes}:{seconds:02d}"


def progress_bar(enabled):
    """A tqdm bar over each epoch's batches where stderr is a terminal; else the batches as they are."""
    if not enabled or not sys.stderr.isatty():  # a log file gets one line per epoch, not \r frames
        return lambda iterable, **_: iterable
    from tqdm import tqdm

    return lambda iterable, desc: tqdm(iterable, desc=desc, leave=False, unit="batch", dynamic_ncols=True)
