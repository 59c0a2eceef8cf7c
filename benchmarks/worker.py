"""One xpnet variant, one phase, in a process of its own: ``python -m benchmarks.worker SPEC RESULT``.

Everything runs through what users run: train.py's flags and defaults
build the backend, model, optimizer and schedule (``cli.build.build_run``), and
``nn.fit`` trains. Phases:

    speed     the default model with Adam 1e-3 constant; inference; a large matmul
    accuracy  train.py's default recipe, test accuracy after every epoch
    sweep     seconds per step as the hidden width and the batch size grow
"""

import inspect
import sys
from dataclasses import dataclass, field

import numpy as np

import nn
from backends import XpnetError
from cli.build import build_run
from cli.train_args import build_parser

from . import probe
from .variants import Variant

# The speed rows' recipe, the same for every library (issue 5).
SPEED_FLAGS = ("--optimizer", "adam", "--lr", "1e-3", "--schedule", "constant", "--weight-decay", "0", "--patience", "0",
               "--augment", "none")


def load_split(spec, split):
    """(x, y) of one split from the raw little-endian arrays the parent wrote."""
    n = spec["counts"][split]
    x = np.fromfile(f"{spec['data_dir']}/x_{split}.f32", dtype="<f4").reshape(n, -1)
    y = np.fromfile(f"{spec['data_dir']}/y_{split}.i32", dtype="<i4")
    return x, y


@dataclass
class Run:
    """What train.py would build from ``flags``, plus the variant's fit keywords."""

    args: object
    be: object
    model: object
    optimizer: object
    schedule: object
    stopping: object
    fit_kwargs: dict = field(default_factory=dict)

    def fit(self, x_train, y_train, x_val=None, y_val=None, early_stopping=None, on_epoch=None):
        try:
            return nn.fit(
                self.be, self.model, self.optimizer, self.schedule, x_train, y_train, x_val, y_val,
                epochs=self.args.epochs, batch_size=self.args.batch_size, seed=self.args.seed,
                early_stopping=early_stopping or self.stopping, on_epoch=on_epoch, **self.fit_kwargs,
            )
        except XpnetError as exc:
            raise probe.Unsupported(str(exc)) from None


def build(variant, flags):
    """A ``Run`` for ``variant`` with train.py's ``flags``; Unsupported if an option is unknown."""
    args = build_parser().parse_args(["--backend", variant.backend, "--no-progress", *flags])
    fit_options = dict(variant.fit)
    try:
        be, _, model, optimizer, schedule, stopping, augment = build_run(args)
        fit_options["grad"] = be.check_grad_mode(fit_options.get("grad"))
        if augment.active:
            fit_options["augment"] = augment
    except XpnetError as exc:
        raise probe.Unsupported(str(exc)) from None
    accepted = inspect.signature(nn.fit).parameters
    missing = [k for k in fit_options if k not in accepted]
    if missing:
        raise probe.Unsupported(f"nn.fit has no keyword {', '.join(missing)} in this version")
    if variant.backend_options:
        accepted = inspect.signature(type(be)).parameters
        missing = [k for k in variant.backend_options if k not in accepted]
        if missing:
            raise probe.Unsupported(f"the {be.name} backend has no option {', '.join(missing)}")
        be = type(be)(**variant.backend_options)
    return Run(args, be, model, optimizer, schedule, stopping, fit_options)


def describe_recipe(run):
    """The recipe train.py built, in one line, e.g. "Adam 0.003 cosine, batch 128, he init"."""
    args = run.args
    parts = [f"{args.optimizer.capitalize()} {args.lr:g} {args.schedule}", f"batch {args.batch_size}",
             f"{run.model.init} init"]
    if run.optimizer.weight_decay:
        parts.append(f"weight decay {run.optimizer.weight_decay:g}")
    if args.dropout:
        parts.append(f"dropout {args.dropout:g}")
    if args.reg != "none":
        parts.append(f"{args.reg} {args.reg_lambda:g}")
    if args.patience:
        parts.append(f"early stopping (patience {args.patience})")
    return ", ".join(parts)


def _hidden(sizes):
    return ",".join(str(n) for n in sizes[1:-1])


def _tick(_record):
    probe.tick()


# -- speed ---------------------------------------------------------------------
def speed(spec, variant):
    cfg = spec["speed"]
    run = build(variant, [*SPEED_FLAGS, "--hidden", _hidden(spec["sizes"]), "--epochs", str(cfg["epochs"]),
                          "--batch-size", str(spec["batch"]), "--seed", str(spec["seed"])])
    be = run.be
    x_train, y_train = load_split(spec, "train")
    x_val, y_val = load_split(spec, "val")
    x_test, _ = load_split(spec, "test")
    params, history = run.fit(x_train, y_train, x_val, y_val, on_epoch=_tick)
    seconds = [record["seconds"] for record in history]

    predict = be.make_predict(run.model)
    digit = x_test[:1]
    # What the GUI does: a host image in, host probabilities out.
    one = probe.time_calls(lambda: be.to_host(predict(params, be.asarray(digit))), cfg["infer_repeats"], warmup=20)
    x_test_device = be.asarray(x_test)
    whole = probe.time_calls(lambda: be.block(predict(params, x_test_device)), cfg["test_set_repeats"], warmup=1)
    probe.tick()
    matmul = matmul_gflops(be, cfg["matmul_n"], cfg["matmul_repeats"])
    probe.tick()
    return probe.speed_result(
        recipe=describe_recipe(run), device=be.device_description(), epoch_seconds=seconds,
        n_train=len(x_train), one_seconds=one, test_set_seconds=whole, matmul_gflops=matmul,
        device_memory_mib=device_memory_mib(be), threads=threads(be), versions=versions(),
    )


def matmul_gflops(be, n, repeats):
    """float32 (n, n) @ (n, n) on this backend's device, best of ``repeats``."""
    rng = np.random.default_rng(0)
    a = be.asarray(rng.standard_normal((n, n), dtype=np.float32))
    b = be.asarray(rng.standard_normal((n, n), dtype=np.float32))
    matmul = be.compile(lambda a, b: a @ b)
    seconds = probe.time_calls(lambda: be.block(matmul(a, b)), repeats, warmup=1)
    return probe.matmul_gflops(seconds, n)


def device_memory_mib(be):
    """Peak device memory where the library reports one; None on a CPU."""
    if be.name == "jax":
        stats = be.jax.devices()[0].memory_stats() or {}
        peak = stats.get("peak_bytes_in_use")
        return None if peak is None else peak / 2**20
    if be.name == "cupy" and be.xp is not np:
        # CuPy's pool keeps freed blocks, so its size at the end is its high-water mark.
        return be.xp.get_default_memory_pool().total_bytes() / 2**20
    return None


def threads(be):
    info = {"usable_cores": probe.usable_cores(), "env": probe.thread_env()}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        info["blas"] = "threadpoolctl not installed (uv sync --extra bench)"
    else:
        info["blas"] = [
            {k: pool.get(k) for k in ("internal_api", "version", "num_threads", "threading_layer")}
            for pool in threadpool_info()
        ]
    if be.name == "jax":
        info["xla"] = "XLA's own CPU thread pool (JAX does not report its size)"
    return info


def versions():
    found = {"numpy": np.__version__}
    for name in ("jax", "jaxlib", "cupy"):
        module = sys.modules.get(name)
        if module is not None:
            found[name] = getattr(module, "__version__", "?")
    return found


# -- accuracy ------------------------------------------------------------------
@dataclass
class TestSetWatch(nn.EarlyStopping):
    """Early stopping as configured, plus the test accuracy after every epoch.

    fit() hands the stopper each epoch's parameters after it has stopped that
    epoch's clock, so the test evaluation here never counts as training time.
    """

    evaluate_test: object = None
    test_accuracy: list = field(default_factory=list)

    def should_stop(self, be, epoch, val_loss, params):
        self.test_accuracy.append(self.evaluate_test(params))
        return super().should_stop(be, epoch, val_loss, params)


def accuracy(spec, variant):
    x_train, y_train = load_split(spec, "train")
    x_val, y_val = load_split(spec, "val")
    x_test, y_test = load_split(spec, "test")
    runs = []
    for epochs in spec["accuracy"]["epochs"]:
        # Plain MNIST, like the PyTorch reference: the default recipe's own augmentation is left out here.
        run = build(variant, ["--hidden", _hidden(spec["sizes"]), "--epochs", str(epochs), "--seed", str(spec["seed"]),
                              "--augment", "none"])
        be = run.be
        eval_step = be.make_eval_step(run.model)
        xt, yt = be.asarray(x_test), be.asarray(y_test)
        stop = run.stopping
        watch = TestSetWatch(stop.patience, stop.min_delta, stop.restore_best,
                             evaluate_test=lambda params: nn.evaluate(be, eval_step, params, xt, yt)[1])
        params, history = run.fit(x_train, y_train, x_val, y_val, early_stopping=watch, on_epoch=_tick)
        curve = probe.accuracy_curve([r["seconds"] for r in history], watch.test_accuracy)
        runs.append({
            "epochs": epochs,
            "epochs_run": len(history),
            "recipe": describe_recipe(run),
            "test_accuracy": nn.evaluate(be, eval_step, params, xt, yt)[1],
            "curve": curve,
            "seconds_to": probe.time_to_reach(curve),
        })
    return {"runs": runs}


# -- sweep ---------------------------------------------------------------------
def sweep(spec, variant):
    cfg = spec["sweep"]
    x_train, y_train = load_split(spec, "train")
    n_train = len(x_train)

    def point(sizes, batch):
        steps = max(1, min(cfg["steps"], n_train // batch))
        run = build(variant, [*SPEED_FLAGS, "--hidden", _hidden(sizes), "--batch-size", str(batch),
                              "--epochs", str(1 + cfg["repeats"]), "--seed", str(spec["seed"])])
        n = steps * batch
        # An "epoch" of exactly ``steps`` steps; the first one warms up (and compiles).
        _, history = run.fit(x_train[:n], y_train[:n])
        # The fastest repeat: the cost of the work, least disturbed by whatever else the machine did.
        step_seconds = min(r["seconds"] for r in history[1:]) / steps
        probe.tick()
        return {**probe.sweep_point(sizes, batch, n_train, step_seconds), "steps_timed": steps}

    return {
        "width": [point(probe.sweep_sizes(w), spec["batch"]) for w in cfg["widths"]],
        "batch": [point(spec["sizes"], b) for b in cfg["batches"]],
    }


PHASES = {"speed": speed, "accuracy": accuracy, "sweep": sweep}


def run_phase(spec):
    return PHASES[spec["phase"]](spec, Variant.from_json(spec["variant"]))


if __name__ == "__main__":
    probe.child_main(run_phase)
