"""PNG charts of a benchmark document (matplotlib, the optional ``bench`` extra)."""

from pathlib import Path

from .probe import THRESHOLDS
from .report import SHARED_MACHINE


def draw(doc, folder):
    """Draw every chart into ``folder``; returns one line saying what was written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "charts skipped: matplotlib is not installed (uv sync --extra bench)"
    folder = Path(folder)
    written = []
    for name, draw_one in (("sweep_width.png", _sweep_width), ("sweep_batch.png", _sweep_batch),
                           ("accuracy_time.png", _accuracy_time)):
        fig = draw_one(plt, doc)
        if fig is not None:
            fig.savefig(folder / name, dpi=120)
            plt.close(fig)
            written.append(name)
    return f"charts: {', '.join(written) or 'none (nothing measured)'} in {folder}"


def _colors(doc):
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
    return {row["variant"]: palette[i % len(palette)] for i, row in enumerate(doc["rows"])}


def _title(doc, what):
    m = doc["machine"]
    title = f"{what}\n{m['cpu']}, {m['cores_usable']} cores, {doc['created'][:10]} ({doc['mode']} run)"
    share = m.get("cpu_share_of_other_processes")
    if share is not None and share > SHARED_MACHINE:
        title += f"; other processes took {share:.0%} of the CPU during the run"
    return title


def _sweep(plt, doc, kind, x_of, xlabel, what):
    rows = [r for r in doc["rows"] if r["sweep"]]
    if not rows:
        return None
    colors = _colors(doc)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5), constrained_layout=True)
    for row in rows:
        points = row["sweep"][kind]
        xs = [x_of(p) for p in points]
        style = {"color": colors[row["variant"]], "marker": "o", "label": row["variant"], "linewidth": 2}
        left.plot(xs, [p["epoch_seconds"] for p in points], **style)
        right.plot(xs, [100 * p["fraction_of_ceiling"] for p in points], **style)
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel(xlabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    left.set_yscale("log")
    left.yaxis.set_major_formatter(plt.FuncFormatter(lambda value, _: f"{value:g}"))
    left.set_ylabel(f"seconds per epoch ({doc['config']['counts']['train']:,} images, log scale)")
    left.set_title("cost per epoch (lower is faster)")
    right.set_ylabel(f"% of the matmul ceiling ({doc['matmul_ceiling_gflops']:,.0f} GFLOP/s)")
    right.set_ylim(bottom=0)
    right.set_title("share of the machine's float32 matmul throughput")
    fig.suptitle(_title(doc, what))
    return fig


def _sweep_width(plt, doc):
    return _sweep(plt, doc, "width", lambda p: p["sizes"][1],
                  f"hidden width H (model 784-H-H/2-10, batch {doc['config']['batch']})",
                  "Seconds per epoch as the hidden width grows")


def _sweep_batch(plt, doc):
    sizes = "-".join(str(n) for n in doc["config"]["sizes"])
    return _sweep(plt, doc, "batch", lambda p: p["batch"], f"batch size (model {sizes})",
                  "Seconds per epoch as the batch grows")


def _accuracy_time(plt, doc):
    rows = [r for r in doc["rows"] if r["accuracy_runs"]]
    if not rows:
        return None
    colors = _colors(doc)
    lengths = sorted({run["epochs"] for r in rows for run in r["accuracy_runs"]})
    fig, axes = plt.subplots(1, len(lengths), figsize=(8 * len(lengths), 6), sharey=True,
                             squeeze=False, constrained_layout=True)
    lowest = min(p["test_accuracy"] for r in rows for run in r["accuracy_runs"] for p in run["curve"])
    for ax, epochs in zip(axes[0], lengths):
        for row in rows:
            for run in row["accuracy_runs"]:
                if run["epochs"] != epochs:
                    continue
                ax.plot([p["seconds"] for p in run["curve"]], [100 * p["test_accuracy"] for p in run["curve"]],
                        color=colors[row["variant"]], marker="o", markersize=4, linewidth=2,
                        label=f"{row['variant']}: {run['recipe']}")
        for threshold in THRESHOLDS:
            ax.axhline(100 * threshold, color="grey", linestyle=":", linewidth=1)
            ax.annotate(f"{threshold:.1%}", (0.005, 100 * threshold), xycoords=("axes fraction", "data"),
                        ha="left", va="bottom", color="grey")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(plt.LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_title(f"runs of {epochs} epochs (one point per epoch)")
        ax.set_xlabel("wall seconds of training, compile included (log scale)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    axes[0][0].set_ylim(max(90.0, 100 * lowest - 0.3), None)
    axes[0][0].set_ylabel("test accuracy after each epoch (%)")
    fig.suptitle(_title(doc, "Test accuracy against wall time, each library's default recipe"))
    return fig
