"""Checkpoints: a paused run in one file, ``DIR/checkpoint.safetensors``.

Arrays go in the safetensors body, everything else is JSON in its header
metadata (entry ``xpnet-checkpoint``); nothing is pickled, so reading a
checkpoint cannot run code, and a damaged one is one clear error.

    params.{i}.w / .b         the parameters
    optimizer.{path}          the optimizer state (Adam's t, m.{i}.w, ...; SGD's velocity)
    best.{i}.w / .b           early stopping's best parameters, when it keeps them
    partial.loss_sum/correct  the running sums of an epoch paused mid-way (Ctrl-C)

    JSON: epoch and step done, RNG counters (seed, epoch, step: the RNG is
    counter-based, so that is its whole state), early-stopping state, the
    metrics history and ``run``: what the caller needs to rebuild the run
    (train.py stores its flags, the model, optimizer and schedule there).

The file is replaced atomically (nn/files.py) after every epoch, so a kill
at any moment leaves the previous complete checkpoint in place.
"""

import json
import math
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np

from backends import XpnetError

from .files import atomic_write_bytes
from .serialize import check_params, read_safetensors
from .training import EarlyStopping, TrainState

FILE = "checkpoint.safetensors"
FORMAT, VERSION = "xpnet-checkpoint", 1
_STOPPING_FIELDS = ("patience", "min_delta", "restore_best", "best_loss", "best_epoch", "waited")


def checkpoint_path(folder):
    """The checkpoint file of ``folder`` (a folder, or the checkpoint file itself)."""
    folder = Path(folder)
    return folder if folder.name == FILE else folder / FILE


def has_checkpoint(folder):
    return checkpoint_path(folder).is_file()


def save_checkpoint(folder, state, run=None):
    """Write ``state`` (a host TrainState) and the JSON-ready ``run`` description atomically."""
    from safetensors.numpy import save

    tensors = {}
    _flatten(state.params, "params", tensors)
    _flatten(state.opt_state, "optimizer", tensors)
    stopping = state.early_stopping
    if stopping.best_params is not None:
        _flatten(stopping.best_params, "best", tensors)
    if state.partial is not None:
        tensors["partial.loss_sum"], tensors["partial.correct"] = (np.asarray(v) for v in state.partial)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "epoch": state.epoch,
        "step": state.step,
        "steps_per_epoch": state.steps_per_epoch,
        "stopped": bool(state.stopped),
        "rng": {"seed": state.seed, "epoch": state.epoch, "step": state.step,
                "global_step": state.epoch * state.steps_per_epoch + state.step},
        "early_stopping": {name: getattr(stopping, name) for name in _STOPPING_FIELDS},
        "history": state.history,
        "run": run or {},
    }
    path = checkpoint_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    # order="C", not ascontiguousarray: that turns 0-d arrays (Adam's t) into 1-d.
    data = save({k: np.asarray(v, order="C") for k, v in tensors.items()}, metadata={FORMAT: json.dumps(meta)})
    atomic_write_bytes(path, data)
    return path


def _flatten(tree, prefix, out):
    if isinstance(tree, dict):
        for key in sorted(tree):
            _flatten(tree[key], f"{prefix}.{key}", out)
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            _flatten(value, f"{prefix}.{i}", out)
    else:
        out[prefix] = np.asarray(tree)


class Checkpoint:
    """A checkpoint file read and checked; ``train_state`` rebuilds the TrainState."""

    def __init__(self, folder):
        self.path = checkpoint_path(folder)
        if not self.path.is_file():
            raise XpnetError(f"no checkpoint in {folder} (no {FILE}): train with --checkpoint-dir {folder} first")
        metadata, self._arrays = read_safetensors(self.path)
        self.meta = self._parse(metadata.get(FORMAT))

    @property
    def epoch(self):
        return self.meta["epoch"]

    @property
    def step(self):
        return self.meta["step"]

    @property
    def run(self):
        return self.meta["run"]

    def _bad(self, what):
        return XpnetError(f"{self.path} is not a usable xpnet checkpoint ({what}); start a new run")

    def _parse(self, text):
        if text is None:
            raise self._bad("no xpnet-checkpoint record in its metadata")
        try:
            meta = json.loads(text)
        except (ValueError, RecursionError):
            raise self._bad("its record is not JSON") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise self._bad(f"not format {FORMAT} v{VERSION}")
        counts = {k: meta.get(k) for k in ("epoch", "step", "steps_per_epoch")}
        if not all(type(v) is int and v >= 0 for v in counts.values()) or not counts["step"] < counts["steps_per_epoch"]:
            raise self._bad("epoch, step and steps_per_epoch must be whole numbers, step < steps_per_epoch")
        rng = meta.get("rng")
        if not isinstance(rng, dict) or type(rng.get("seed")) is not int:
            raise self._bad("no RNG seed")
        history = meta.get("history")
        if not isinstance(history, list) or len(history) != meta["epoch"] or [
            r.get("epoch") if isinstance(r, dict) else None for r in history
        ] != list(range(1, len(history) + 1)):
            raise self._bad(f"its history does not list epochs 1 to {meta['epoch']} once each")
        stopping = meta.get("early_stopping")
        if not isinstance(stopping, dict) or not _stopping_types_ok(stopping):
            raise self._bad("malformed early-stopping state")
        if type(meta.get("stopped")) is not bool or not isinstance(meta.get("run"), dict):
            raise self._bad("malformed run record")
        return meta

    def resume(self, run, model, optimizer):
        """``train_state`` after checking that ``run`` (``describe_run`` of the run about to
        continue) builds the same model, optimizer and schedule on the same data."""
        for part in ("model", "optimizer", "schedule", "data"):
            if self.run.get(part) != run.get(part):
                what = "the training data differ" if part == "data" else f"its {part} differs from the one built now"
                raise XpnetError(
                    f"cannot resume {self.path}: {what} (saved: {json.dumps(self.run.get(part))[:100]}); "
                    "resume with the data and the xpnet version it was written with"
                )
        return self.train_state(model, optimizer)

    def train_state(self, model, optimizer):
        """The TrainState for ``model`` and ``optimizer``; every array is checked against them."""
        arrays = dict(self._arrays)
        try:
            params = check_params(self.path, model, arrays, prefix="params")
        except XpnetError as exc:
            raise XpnetError(f"{exc} (the checkpoint does not belong to this model)") from None
        opt_state = self._restore("optimizer", optimizer.init(params), arrays)
        stopping_meta = self.meta["early_stopping"]
        best = check_params(self.path, model, arrays, prefix="best") if "best.0.w" in arrays else None
        stopping = EarlyStopping(**{k: stopping_meta[k] for k in _STOPPING_FIELDS}, best_params=best)
        partial = None
        if self.step > 0:
            partial = (self._pop(arrays, "partial.loss_sum", "f"), self._pop(arrays, "partial.correct", "iu"))
        if arrays:
            raise self._bad(f"arrays this run does not use: {', '.join(map(ascii, sorted(arrays)[:4]))}")
        return TrainState(
            seed=self.meta["rng"]["seed"], epoch=self.epoch, step=self.step,
            steps_per_epoch=self.meta["steps_per_epoch"], params=params, opt_state=opt_state,
            history=self.meta["history"], early_stopping=stopping, partial=partial, stopped=self.meta["stopped"],
        )

    def _pop(self, arrays, name, kinds):
        value = arrays.pop(name, None)
        if value is None or value.shape != () or value.dtype.kind not in kinds:
            raise self._bad(f"{name} missing or malformed")
        return value.copy()

    def _restore(self, prefix, template, arrays):
        """``template`` (a fresh optimizer state) with every leaf replaced by the saved array."""
        if isinstance(template, dict):
            return {k: self._restore(f"{prefix}.{k}", v, arrays) for k, v in template.items()}
        if isinstance(template, (list, tuple)):
            return type(template)(self._restore(f"{prefix}.{i}", v, arrays) for i, v in enumerate(template))
        value = arrays.pop(prefix, None)
        expected = np.asarray(template)
        if value is None or value.shape != expected.shape or value.dtype != expected.dtype:
            raise XpnetError(
                f"{self.path}: the optimizer state {prefix} is missing or has the wrong shape: "
                "the checkpoint was written with another optimizer or model"
            )
        return value.copy()


def _stopping_types_ok(stopping):
    def number(v):
        return type(v) in (int, float) and not math.isnan(v)

    return (
        type(stopping.get("patience")) is int and stopping["patience"] >= 0
        and number(stopping.get("min_delta")) and stopping["min_delta"] >= 0
        and type(stopping.get("restore_best")) is bool
        and number(stopping.get("best_loss"))
        and type(stopping.get("best_epoch")) is int
        and type(stopping.get("waited")) is int and stopping["waited"] >= 0
    )


def read_checkpoint(folder):
    """The checkpoint in ``folder``, checked; one XpnetError when it is absent or damaged."""
    return Checkpoint(folder)


def data_fingerprint(*arrays):
    """Sizes and a CRC-32 of the data (every label, every 16th row of the rest): enough to
    notice that a run is being resumed on other data, cheap on all of MNIST."""
    crc = 0
    for a in arrays:
        sample = a if a.ndim == 1 else a[::16]
        crc = zlib.crc32(np.ascontiguousarray(sample).tobytes(), crc)
    return {"sizes": [len(a) for a in arrays], "crc32": crc}


def describe_run(model, optimizer, schedule, **extra):
    """A JSON-ready description of a run for the ``run`` record of a checkpoint."""
    return {
        "model": model.config(),
        "optimizer": {"name": type(optimizer).__name__.lower(), **asdict(optimizer)},
        "schedule": asdict(schedule),
        **extra,
    }
