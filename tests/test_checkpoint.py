"""Checkpoints in the training loop: a run paused anywhere, written to disk,
read back and resumed ends exactly where the uninterrupted run ends.

Synthetic blobs (3 classes, 10 features), dropout on (so the counter-based
dropout RNG matters), Adam and SGD with momentum (optimizer state matters),
early stopping with patience (its best weights and counters matter).
"""

import math
import warnings

import numpy as np
import pytest

from backends import XpnetError, get_backend
from nn import MLP, SGD, Adam, EarlyStopping, Schedule, fit, split_validation
from nn.checkpoint import FILE, read_checkpoint, save_checkpoint
from nn.training import Diverged, Interrupted
from tests.reference import assert_trees_close, blobs

X, Y = blobs(n=300, features=10, classes=3, separation=1.5, seed=0)
X_TR, Y_TR, X_VAL, Y_VAL = split_validation(X, Y, 90)
MODEL = MLP(sizes=(10, 9, 3), activations="tanh", dropout=0.2)
EPOCHS, BATCH = 4, 32  # 210 samples: 7 steps per epoch
STEPS = math.ceil(len(X_TR) / BATCH)
OPTIMIZERS = {"adam": Adam(), "sgd-momentum": SGD(momentum=0.9, nesterov=True)}


def _fit(be, optimizer, **kw):
    # patience 5 never stops 4 epochs, but it keeps best weights and counters
    stopping = kw.pop("early_stopping", None) or EarlyStopping(patience=5)
    params, history = fit(be, MODEL, optimizer, kw.pop("schedule", Schedule("cosine", 0.02, EPOCHS)),
                          X_TR, Y_TR, X_VAL, kw.pop("y_val", Y_VAL), epochs=EPOCHS, batch_size=BATCH, seed=7,
                          early_stopping=stopping, **kw)
    return be.tree_to_host(params), history


def _stop_after(calls):
    """A stop_requested that says yes on its ``calls``-th question (one question per step)."""
    asked = []

    def stop_requested():
        asked.append(1)
        return len(asked) == calls

    return stop_requested


def _without_time(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def _assert_same(a, b, exact):
    assert_trees_close(a, b, exact=exact, rtol=1e-6, atol=1e-7)


def _exact(be):
    return be.xp is np  # bitwise on NumPy arrays; float32 tolerance where XLA or a GPU computes


# Paused at: the first step of epoch 2 (an epoch boundary), and mid-epoch 3.
BOUNDARY, MID_EPOCH = STEPS + 1, 2 * STEPS + 4
# Every JAX fit compiles its step anew (seconds each), so JAX runs the hardest case only.
CASES = [
    pytest.param(backend, opt, pause, id=f"{backend}-{opt}-{name}",
                 marks=[pytest.mark.gpu] if backend == "cupy" else [])
    for backend in ("numpy", "cupy-on-numpy", "cupy")
    for opt in OPTIMIZERS
    for name, pause in (("epoch-boundary", BOUNDARY), ("mid-epoch", MID_EPOCH))
] + [pytest.param("jax", "adam", MID_EPOCH, id="jax-adam-mid-epoch")]


@pytest.mark.parametrize("be, opt_name, pause_at", CASES, indirect=["be"])
def test_paused_and_resumed_run_equals_the_straight_run(be, opt_name, pause_at, tmp_path):
    optimizer = OPTIMIZERS[opt_name]
    straight, straight_history = _fit(be, optimizer)

    with pytest.raises(Interrupted) as paused:
        # A pause between two steps needs the per-step loop (JAX defaults to a whole-epoch scan).
        _fit(be, optimizer, stop_requested=_stop_after(pause_at), epoch_mode="step")
    state = paused.value.state
    assert (state.epoch, state.step) == divmod(pause_at - 1, STEPS)
    save_checkpoint(tmp_path, state, {"any": "run record"})

    checkpoint = read_checkpoint(tmp_path)
    assert (checkpoint.epoch, checkpoint.step) == (state.epoch, state.step)
    assert checkpoint.run == {"any": "run record"}
    resumed, history = _fit(be, optimizer, start=checkpoint.train_state(MODEL, optimizer))
    _assert_same(resumed, straight, _exact(be))
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    if _exact(be):
        assert _without_time(history) == _without_time(straight_history)


def test_scan_epochs_pause_at_epoch_boundaries_and_finish_a_mid_epoch_state_step_by_step(tmp_path):
    be, optimizer = get_backend("jax"), OPTIMIZERS["adam"]
    straight, _ = _fit(be, optimizer, epoch_mode="scan")

    with pytest.raises(Interrupted) as paused:  # scan asks once per epoch: the 3rd question is epoch 3's start
        _fit(be, optimizer, stop_requested=_stop_after(3), epoch_mode="scan")
    assert (paused.value.state.epoch, paused.value.state.step) == (2, 0)
    resumed, history = _fit(be, optimizer, start=paused.value.state, epoch_mode="scan")
    _assert_same(resumed, straight, exact=False)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]

    with pytest.raises(Interrupted) as paused:
        _fit(be, optimizer, stop_requested=_stop_after(MID_EPOCH), epoch_mode="step")
    resumed, history = _fit(be, optimizer, start=paused.value.state, epoch_mode="scan")
    _assert_same(resumed, straight, exact=False)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]


def test_a_checkpoint_after_every_epoch_holds_the_whole_state(tmp_path):
    be, optimizer = get_backend("numpy"), Adam()
    seen = []

    def on_checkpoint(state):
        save_checkpoint(tmp_path, state)
        seen.append((state.epoch, state.step, read_checkpoint(tmp_path).epoch))

    # Validation labels shifted by one: the validation loss rises, so early
    # stopping keeps epoch 1's weights and stops after epoch 3 (patience 2).
    wrong = (Y_VAL + 1) % 3
    stopping = EarlyStopping(patience=2)
    params, history = _fit(be, optimizer, y_val=wrong, early_stopping=stopping, on_checkpoint=on_checkpoint)
    assert seen == [(1, 0, 1), (2, 0, 2), (3, 0, 3)] and len(history) == 3
    state = read_checkpoint(tmp_path).train_state(MODEL, optimizer)
    assert state.stopped and state.early_stopping.best_epoch == 1 and state.early_stopping.waited == 2
    _assert_same(state.early_stopping.best_params, params, exact=True)  # fit returned the restored best
    assert state.opt_state["t"] == 3 * STEPS
    # Resuming a run that early stopping ended trains nothing and gives the same answer.
    again, again_history = _fit(be, optimizer, y_val=wrong, start=state)
    _assert_same(again, params, exact=True)
    assert _without_time(again_history) == _without_time(history)


def test_divergence_leaves_the_last_good_checkpoint_untouched(tmp_path):
    """The rate jumps to 1e6 in epoch 2: epoch 1's checkpoint stays, byte for byte."""
    be = get_backend("numpy")
    written = []

    def on_checkpoint(state):
        written.append(save_checkpoint(tmp_path, state).read_bytes())

    model = MLP(sizes=(10, 9, 3), activations="relu", loss="mse", output="linear")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's overflow warnings on the way
        with pytest.raises(Diverged, match="diverged in epoch 2"):
            fit(be, model, SGD(), lambda progress: 0.01 if progress < 1 else 1e6, X_TR, Y_TR,
                epochs=3, batch_size=BATCH, seed=0, on_checkpoint=on_checkpoint)
    assert len(written) == 1
    assert (tmp_path / FILE).read_bytes() == written[0]
    assert read_checkpoint(tmp_path).epoch == 1


def test_resume_refuses_a_state_from_another_run(tmp_path):
    be, optimizer = get_backend("numpy"), Adam()
    with pytest.raises(Interrupted) as paused:
        _fit(be, optimizer, stop_requested=_stop_after(3))
    save_checkpoint(tmp_path, paused.value.state)
    checkpoint = read_checkpoint(tmp_path)
    with pytest.raises(XpnetError, match="optimizer"):
        checkpoint.train_state(MODEL, SGD(momentum=0.9))
    with pytest.raises(XpnetError, match="does not belong to this model"):
        checkpoint.train_state(MLP(sizes=(10, 8, 3)), optimizer)
    with pytest.raises(XpnetError, match="seed"):  # another seed shuffles other batches
        fit(be, MODEL, optimizer, Schedule("cosine", 0.02, EPOCHS), X_TR, Y_TR, epochs=EPOCHS, batch_size=BATCH,
            seed=8, start=checkpoint.train_state(MODEL, optimizer))
    with pytest.raises(XpnetError, match="does not fit this run"):  # another batch size
        fit(be, MODEL, optimizer, Schedule("cosine", 0.02, EPOCHS), X_TR, Y_TR, epochs=EPOCHS, batch_size=16,
            seed=7, start=checkpoint.train_state(MODEL, optimizer))


def test_damaged_checkpoints_are_one_clear_error(tmp_path):
    be, optimizer = get_backend("numpy"), Adam()
    with pytest.raises(Interrupted) as paused:
        _fit(be, optimizer, stop_requested=_stop_after(9))
    path = save_checkpoint(tmp_path / "good", paused.value.state)
    data = path.read_bytes()
    for name, content in {
        "truncated": data[: len(data) // 2],
        "empty": b"",
        "a model file, not a checkpoint": (tmp_path / "good" / FILE).read_bytes().replace(b"xpnet-checkpoint", b"xpnet-chockpoint"),
    }.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / FILE).write_bytes(content)
        with pytest.raises(XpnetError) as info:
            read_checkpoint(folder).train_state(MODEL, optimizer)
        assert "\n" not in str(info.value), name
    with pytest.raises(XpnetError, match="no checkpoint"):
        read_checkpoint(tmp_path / "absent")
