"""A run's per-epoch history as the files people open: CSV for a spreadsheet, a PNG of the curves."""

import csv
import io
from pathlib import Path

from backends import XpnetError
from nn.files import atomic_write_bytes

COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")
PLOT_HOW = "matplotlib draws it: uv run --extra bench train.py ... --plot PATH"


def csv_path(metrics_json):
    """Where the CSV goes: beside ``--metrics-json``, same name, ``.csv``."""
    return Path(metrics_json).with_suffix(".csv")


def write_csv(path, history):
    """One row per epoch; a missing validation figure (no validation set) is an empty cell."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    for record in history:
        writer.writerow(["" if record[k] != record[k] else repr(record[k]) for k in COLUMNS])  # NaN: empty
    atomic_write_bytes(path, text.getvalue().encode())


def require_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise XpnetError(f"--plot needs matplotlib, which is not installed; {PLOT_HOW}") from None


def write_plot(path, history, title):
    """Loss and accuracy against the epoch, training and validation, side by side, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no window: a file is asked for
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]
    figure = Figure(figsize=(10, 4), dpi=100)
    for axes, name, scale in zip(figure.subplots(1, 2), ("loss", "accuracy"), (1, 100)):
        for part, style in (("train", "-o"), ("val", "-s")):
            values = [r[f"{part}_{name}"] * scale for r in history]
            if any(v == v for v in values):  # all NaN: no validation set
                axes.plot(epochs, values, style, markersize=3, label="validation" if part == "val" else "training")
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel("accuracy (%)" if name == "accuracy" else "loss")
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
