"""The training loop: epochs of shuffled minibatches, validation, early stopping.

It is written once for every backend: the backend supplies the compiled
step (or, on JAX, the compiled epoch), this module decides what happens
between steps and epochs. Within an epoch nothing is read back to the host;
losses and correct counts accumulate on the device and are read once at
the end of the epoch.
"""

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np

from backends import XpnetError


def split_validation(x, y, val_size):
    """(x_train, y_train, x_val, y_val): the last ``val_size`` samples held out."""
    if not 0 <= val_size < len(x):
        raise XpnetError(
            f"--val-size {val_size} must be between 0 and {len(x) - 1} (the training set has {len(x)} images)"
        )
    cut = len(x) - val_size
    return x[:cut], y[:cut], x[cut:], y[cut:]


@dataclass
class EarlyStopping:
    """Stop when the validation loss has not improved by ``min_delta`` for
    ``patience`` epochs (0 switches it off); then, with ``restore_best``,
    go back to the parameters of the best epoch."""

    patience: int = 0
    min_delta: float = 0.0
    restore_best: bool = True
    best_loss: float = math.inf
    best_epoch: int = -1
    best_params: list = field(default=None, repr=False)
    waited: int = 0

    def __post_init__(self):
        if self.patience < 0:
            raise XpnetError(f"--patience {self.patience} must be >= 0 (0 turns early stopping off)")
        if self.min_delta < 0:
            raise XpnetError(f"--min-delta {self.min_delta} must be >= 0")

    def should_stop(self, be, epoch, val_loss, params):
        if self.patience == 0:
            return False
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.waited = val_loss, epoch, 0
            if self.restore_best:
                # A host copy: the device buffers are donated to the next step.
                self.best_params = be.tree_to_host(params)
            return False
        self.waited += 1
        return self.waited >= self.patience


# -- resuming: where a run stands, and why it stopped ---------------------------
@dataclass
class TrainState:
    """Where a run stands, on the host: everything ``fit`` needs to continue it exactly.

    ``epoch`` epochs are complete and ``step`` steps of the next one are done
    (0 at an epoch boundary; then ``partial`` is None, else it holds that
    epoch's running (loss sum, correct count)). The random numbers are
    counter-based — the sample order is seeded by (seed, epoch), dropout by
    (seed, global step) — so ``seed``, ``epoch`` and ``step`` are the whole
    RNG state. ``stopped``: early stopping ended the run.
    """

    seed: int
    epoch: int
    step: int
    steps_per_epoch: int
    params: list
    opt_state: dict
    history: list
    early_stopping: EarlyStopping
    partial: tuple = None
    stopped: bool = False


class Interrupted(Exception):
    """``stop_requested`` said yes: training paused between two steps at ``state``."""

    def __init__(self, state):
        super().__init__(f"interrupted in epoch {state.epoch + 1} after step {state.step}")
        self.state = state


class Diverged(XpnetError):
    """The training loss became NaN or infinite."""


def map_arrays(fn, tree):
    """``fn`` on every array of a nested dict/list (an optimizer state, a params list)."""
    if isinstance(tree, dict):
        return {k: map_arrays(fn, v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(map_arrays(fn, v) for v in tree)
    return fn(tree)


def evaluate(be, eval_step, params, x, y, chunk=10_000):
    """(mean loss, accuracy) over every sample of (x, y), read back once."""
    n = x.shape[0]
    if n == 0:
        return math.nan, math.nan
    loss_sum, correct = 0.0, 0
    for start in range(0, n, chunk):
        batch_loss, batch_correct = eval_step(params, x[start : start + chunk], y[start : start + chunk])
        loss_sum = loss_sum + batch_loss
        correct = correct + batch_correct
    return float(be.to_host(loss_sum)) / n, int(be.to_host(correct)) / n


def _identity_bar(iterable, **_):
    return iterable


def _scan_epochs(be, model, optimizer, schedule, n, batch_size, seed, grad, augment):
    """``run_epoch(params, state, x, y, epoch)``: one compiled call per epoch (the backend's scan)."""
    train_epoch = be.make_train_epoch(model, optimizer, seed=seed, grad=grad, n=n, batch_size=batch_size,
                                      augment=augment)
    steps = math.ceil(n / batch_size)

    def run_epoch(params, state, x, y, epoch):
        # The schedule stays a host function: its rates for this epoch go in as one array.
        lrs = np.array([schedule(epoch + i / steps) for i in range(steps)], dtype=np.float32)
        return train_epoch(params, state, x, y, epoch, lrs)

    return run_epoch


def fit(
    be,
    model,
    optimizer,
    schedule,
    x_train,
    y_train,
    x_val=None,
    y_val=None,
    *,
    epochs,
    batch_size,
    seed,
    grad=None,
    early_stopping=None,
    progress_bar=_identity_bar,
    on_epoch=None,
    epoch_mode=None,
    start=None,
    on_checkpoint=None,
    stop_requested=None,
    augment=None,
    initial_params=None,
):
    """Train ``model`` and return (params on the device, per-epoch history).

    Host arrays in: they are moved to the device once. Every epoch visits each
    training sample exactly once; the last batch is simply smaller.

    ``epoch_mode``: "step" dispatches one compiled step per minibatch; "scan"
    (JAX only) runs each whole epoch as one compiled call, with the same
    result; None takes the backend's default (scan on JAX, else step).

    Resuming: ``start`` (a TrainState, e.g. from ``nn.checkpoint``) continues
    a run where it stood, with its own early stopping (``start.early_stopping``
    takes the place of ``early_stopping``), and gives the very same result as
    the uninterrupted run. ``on_checkpoint(state)`` gets a
    host TrainState after every finished epoch; ``stop_requested()`` is asked
    before every step, and when it says yes fit raises Interrupted with the
    state of that moment. In scan mode it is asked once per epoch, and a
    state saved inside an epoch finishes that epoch step by step.

    Fine-tuning: ``initial_params`` (host params of ``model``'s shapes) take the
    place of ``model.init_params(seed)``; the optimizer starts afresh.
    """
    if batch_size < 1:
        raise XpnetError(f"--batch-size {batch_size} must be >= 1")
    if epochs < 1:
        raise XpnetError(f"--epochs {epochs} must be >= 1")
    epoch_mode = be.check_epoch_mode(epoch_mode)
    be.check_batch_size(batch_size)
    early_stopping = early_stopping or EarlyStopping()
    x, y = be.asarray(x_train), be.asarray(y_train)
    has_val = x_val is not None and len(x_val) > 0
    if has_val:
        xv, yv = be.asarray(x_val), be.asarray(y_val)

    train_step = be.make_train_step(model, optimizer, seed=seed, grad=grad, augment=augment)
    # A step that can make its next batch while it runs (the NumPy backend, distorting) says so.
    prefetch = getattr(train_step, "prefetch", None)
    n = x.shape[0]
    scan_epoch = (_scan_epochs(be, model, optimizer, schedule, n, batch_size, seed, grad, augment)
                  if epoch_mode == "scan" else None)
    eval_step = be.make_eval_step(model)

    steps = math.ceil(n / batch_size)
    # Buffers of the run's own: an in-place update must not write into the caller's arrays.
    if start is None:
        params = map_arrays(be.owned, model.init_params(seed) if initial_params is None else initial_params)
        state = be.place(optimizer.init(params))
        history, first_epoch, first_step, partial, stopped = [], 0, 0, None, False
    else:
        _check_start(start, seed, steps)
        params, state = map_arrays(be.owned, start.params), be.place(map_arrays(be.owned, start.opt_state))
        history, early_stopping = list(start.history), start.early_stopping
        first_epoch, first_step, stopped = start.epoch, start.step, start.stopped
        partial = start.partial and map_arrays(be.asarray, start.partial)

    def snapshot(epoch, step, running=None, stopped=False):
        # params and state are read when called: the values of that moment.
        return TrainState(seed, epoch, step, steps, be.tree_to_host(params), map_arrays(be.to_host, state),
                          list(history), copy.copy(early_stopping),
                          running and map_arrays(be.to_host, running), stopped)

    for epoch in range(first_epoch, first_epoch if stopped else epochs):
        started = time.perf_counter()
        resumed = epoch == first_epoch and first_step > 0
        if scan_epoch is not None and not resumed:
            if stop_requested is not None and stop_requested():
                _interrupt(snapshot(epoch, 0))
            params, state, loss_sum, correct = scan_epoch(params, state, x, y, epoch)
        else:
            order = be.epoch_permutation(seed, epoch, n)
            loss_sum, correct = partial if resumed else (0.0, 0)
            for i in progress_bar(range(first_step if resumed else 0, steps), desc=f"epoch {epoch + 1}/{epochs}"):
                if stop_requested is not None and stop_requested():
                    _interrupt(snapshot(epoch, i, (loss_sum, correct) if i else None))
                idx = order[i * batch_size : (i + 1) * batch_size]
                if prefetch is not None and i + 1 < steps:
                    prefetch(x, y, order[(i + 1) * batch_size : (i + 2) * batch_size], epoch * steps + i + 1)
                lr = schedule(epoch + i / steps)
                params, state, loss, batch_correct = train_step(params, state, x, y, idx, lr, epoch * steps + i)
                loss_sum = loss_sum + loss * idx.shape[0]
                correct = correct + batch_correct
        train_loss = float(be.to_host(loss_sum)) / n
        train_accuracy = int(be.to_host(correct)) / n
        val_loss, val_accuracy = evaluate(be, eval_step, params, xv, yv) if has_val else (math.nan, math.nan)
        seconds = time.perf_counter() - started
        if not math.isfinite(train_loss):
            raise Diverged(
                f"training diverged in epoch {epoch + 1} (loss is {train_loss}): "
                "lower --lr or use --optimizer adam; no model file was written"
            )
        record = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "train_accuracy": train_accuracy,
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "lr": schedule(epoch + 1 - 1 / steps),
            "seconds": seconds,
        }
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        stop = has_val and early_stopping.should_stop(be, epoch + 1, val_loss, params)
        if on_checkpoint is not None:
            on_checkpoint(snapshot(epoch + 1, 0, stopped=stop))
        if stop:
            break
    if early_stopping.best_params is not None and early_stopping.best_epoch != len(history):
        params = be.tree_asarray(early_stopping.best_params)
    return params, history


def _check_start(start, seed, steps):
    if start.seed != seed or start.steps_per_epoch != steps or len(start.history) != start.epoch:
        raise XpnetError(
            f"the saved state (seed {start.seed}, {start.steps_per_epoch} steps per epoch, "
            f"{len(start.history)} epochs of history for epoch {start.epoch}) does not fit this run "
            f"(seed {seed}, {steps} steps per epoch): resume with the settings and data it was saved with"
        )
    if not 0 <= start.step < steps or (start.step > 0) != (start.partial is not None):
        raise XpnetError(f"the saved state's step {start.step} is not a point inside an epoch of {steps} steps")


def _interrupt(state):
    """Raise Interrupted, or Diverged when the epoch in progress has already gone non-finite."""
    if state.partial is not None and not math.isfinite(float(state.partial[0])):
        raise Diverged(
            f"training diverged in epoch {state.epoch + 1} (loss is {float(state.partial[0])}): "
            "lower --lr or use --optimizer adam; no model file was written"
        )
    raise Interrupted(state)
