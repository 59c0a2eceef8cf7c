"""The training loop on synthetic Gaussian blobs (3 classes, 10 features):
it learns on every backend, is reproducible, agrees across backends,
counts every sample, stops early, and reports divergence."""

import math
import warnings

import numpy as np
import pytest

from backends import XpnetError, get_backend
from nn import MLP, SGD, Adam, EarlyStopping, Schedule, evaluate, fit, split_validation
from tests.reference import assert_trees_close, backend_params, blobs, ref_activation, ref_ce, ref_mlp_logits

X, Y = blobs(n=300, features=10, classes=3, separation=1.5, seed=0)
X_TR, Y_TR, X_VAL, Y_VAL = split_validation(X, Y, 90)  # 210 train: not a multiple of 32
MODEL = MLP(sizes=(10, 9, 3), activations="tanh")
EPOCHS, BATCH = 4, 32
OPT = SGD(momentum=0.9)
SCHEDULE = Schedule("cosine", 0.05, EPOCHS)


def _backend_id(be):
    return "cupy-on-numpy" if be.name == "cupy" and be.xp is np else be.name


def _fit(be, seed=0, model=MODEL, **kw):
    params, history = fit(be, model, kw.pop("optimizer", OPT), kw.pop("schedule", SCHEDULE),
                          X_TR, Y_TR, kw.pop("x_val", X_VAL), kw.pop("y_val", Y_VAL),
                          epochs=kw.pop("epochs", EPOCHS), batch_size=kw.pop("batch_size", BATCH),
                          seed=seed, **kw)
    return be.tree_to_host(params), history


_RUNS = {}


def _fit_once(be, seed=0):
    """The standard run, fitted once per backend and shared by several tests."""
    key = (_backend_id(be), seed)
    if key not in _RUNS:
        _RUNS[key] = _fit(be, seed)
    return _RUNS[key]


def _ref_metrics(params, x, y, model=MODEL):
    logits = ref_mlp_logits(params, x, model.activations)
    return ref_ce(logits, y), float(np.mean(np.argmax(logits, axis=1) == y))


def _without_time(history):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


def test_fit_learns_the_blobs(be):
    params, history = _fit_once(be)
    assert [r["epoch"] for r in history] == list(range(1, EPOCHS + 1))
    assert history[-1]["train_loss"] < 0.3 * history[0]["train_loss"]
    assert history[-1]["train_accuracy"] >= 0.95
    assert history[-1]["val_accuracy"] >= 0.95
    # the reported validation metrics are those of the returned parameters
    val_loss, val_accuracy = _ref_metrics(params, X_VAL, Y_VAL)
    assert history[-1]["val_loss"] == pytest.approx(val_loss, rel=1e-4)
    assert history[-1]["val_accuracy"] == pytest.approx(val_accuracy, abs=1.5 / len(Y_VAL))
    assert history[-1]["lr"] == pytest.approx(SCHEDULE(EPOCHS - 1 / math.ceil(len(X_TR) / BATCH)))


def test_same_seed_gives_the_same_run(be):
    params, history = _fit_once(be)
    again, history_again = _fit(be, seed=0)
    exact = _backend_id(be) != "cupy"  # a GPU may reorder float sums
    if exact:
        assert _without_time(history_again) == _without_time(history)
    assert_trees_close(again, params, exact=exact, rtol=1e-5, atol=1e-6)


def test_different_seeds_give_different_runs():
    be = get_backend("numpy")
    params, history = _fit_once(be, seed=0)
    other, other_history = _fit_once(be, seed=1)
    assert not np.allclose(other[0]["w"], params[0]["w"])
    assert other_history[0]["train_loss"] != history[0]["train_loss"]
    assert other_history[-1]["val_accuracy"] >= 0.9  # and it learns too


@pytest.mark.parametrize("be", backend_params("cupy-on-numpy", "jax", "cupy"), indirect=True)
def test_backends_agree_with_numpy(be):
    """Same host init, same host permutation, no dropout: only float32
    rounding (and jax.grad instead of the manual backward) differs."""
    params, history = _fit_once(be)
    ref_params, ref_history = _fit_once(get_backend("numpy"))
    for a, b in zip(params, ref_params):
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5)
    for r, ref in zip(history, ref_history):
        assert r["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-4)
        assert r["val_loss"] == pytest.approx(ref["val_loss"], rel=1e-4)
        assert abs(r["train_accuracy"] - ref["train_accuracy"]) <= 1.5 / len(X_TR)


@pytest.mark.parametrize("be", backend_params("cupy-on-numpy", "cupy"), indirect=True)
def test_dropout_runs_match_numpy_on_the_cupy_code_path(be):
    """NumPy and CuPy draw the same dropout masks, so whole runs agree."""
    model = MLP(sizes=(10, 9, 3), activations="tanh", dropout=0.3)
    ref_params, ref_history = _fit(get_backend("numpy"), model=model, epochs=2)
    plain, _ = _fit(get_backend("numpy"), epochs=2)
    assert not np.allclose(ref_params[0]["w"], plain[0]["w"]), "dropout must change the run"
    params, history = _fit(be, model=model, epochs=2)
    exact = be.xp is np  # the very same code and masks on NumPy arrays
    for a, b in zip(params, ref_params):
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=0 if exact else 1e-4, atol=0 if exact else 1e-5)
    assert [r["train_loss"] for r in history] == pytest.approx([r["train_loss"] for r in ref_history],
                                                               rel=0 if exact else 1e-4)


def test_history_counts_every_sample_once(be):
    """With a vanishing learning rate the parameters stay at their init, so
    the epoch's training loss must be the mean over all samples at the init,
    including the last, one-sample batch (210 = 19 * 11 + 1)."""
    batch = 11
    assert len(X_TR) % batch == 1
    params, history = _fit(be, x_val=None, y_val=None, epochs=1, batch_size=batch,
                           schedule=Schedule("constant", 1e-30, 1))
    init = MODEL.init_params(0)
    for a, b in zip(params, init):
        np.testing.assert_allclose(a["w"], b["w"], rtol=0, atol=1e-25)
        np.testing.assert_allclose(a["b"], b["b"], rtol=0, atol=1e-25)
    loss, accuracy = _ref_metrics(init, X_TR, Y_TR)
    (record,) = history
    assert record["train_loss"] == pytest.approx(loss, rel=2e-6)
    assert record["train_accuracy"] == pytest.approx(accuracy, abs=1.5 / len(X_TR))
    assert math.isnan(record["val_loss"]) and math.isnan(record["val_accuracy"])


def test_early_stopping_restores_the_best_epoch():
    """Validation labels shifted by one class: the better the fit, the worse
    the validation loss, so it rises after the first epoch."""
    be = get_backend("numpy")
    wrong = (Y_VAL + 1) % 3
    stop = EarlyStopping(patience=1)
    params, history = _fit(be, y_val=wrong, epochs=6, early_stopping=stop)
    assert history[1]["val_loss"] > history[0]["val_loss"], "the construction needs a rising val loss"
    assert len(history) == 2 and stop.best_epoch == 1
    # the returned parameters are the first epoch's, bit for bit ...
    first, _ = _fit(be, y_val=wrong, epochs=1)
    for a, b in zip(params, first):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    # ... and they give the best validation loss recorded
    val_loss, _ = evaluate(be, be.make_eval_step(MODEL), be.tree_asarray(params), X_VAL, wrong)
    assert val_loss == pytest.approx(min(r["val_loss"] for r in history), rel=1e-6)
    assert val_loss == pytest.approx(_ref_metrics(params, X_VAL, wrong)[0], rel=1e-5)

    last, _ = _fit(be, y_val=wrong, epochs=6, early_stopping=EarlyStopping(patience=1, restore_best=False))
    second, _ = _fit(be, y_val=wrong, epochs=2)
    np.testing.assert_array_equal(last[0]["w"], second[0]["w"])

    _, full = _fit(be, y_val=wrong, epochs=3, early_stopping=EarlyStopping(patience=0))
    assert len(full) == 3


def test_split_validation_holds_out_the_last_samples():
    x = np.arange(33).reshape(11, 3)
    y = np.arange(11) * 10
    x_tr, y_tr, x_val, y_val = split_validation(x, y, 4)
    np.testing.assert_array_equal(y_val, [70, 80, 90, 100])
    np.testing.assert_array_equal(x_val, x[7:])
    np.testing.assert_array_equal(y_tr, y[:7])
    np.testing.assert_array_equal(x_tr, x[:7])
    x_tr, y_tr, x_val, y_val = split_validation(x, y, 0)
    assert len(x_tr) == 11 and len(x_val) == 0 and len(y_val) == 0
    for bad in (-1, 11, 12):
        with pytest.raises(XpnetError, match="--val-size"):
            split_validation(x, y, bad)


def test_diverging_run_raises():
    be = get_backend("numpy")
    model = MLP(sizes=(10, 9, 3), activations="relu", loss="mse", output="linear")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's overflow warnings on the way
        with pytest.raises(XpnetError, match="diverged"):
            _fit(be, model=model, optimizer=SGD(), schedule=Schedule("constant", 1e6, 2), epochs=2)


@pytest.mark.parametrize("bad", [dict(epochs=0), dict(batch_size=0)])
def test_fit_rejects_bad_sizes(bad):
    with pytest.raises(XpnetError):
        _fit(get_backend("numpy"), **bad)


@pytest.mark.parametrize("output", ["softmax", "linear"])
def test_mse_trains(output):
    be = get_backend("numpy")
    model = MLP(sizes=(10, 9, 3), activations="tanh", loss="mse", output=output)
    params, history = _fit(be, model=model, optimizer=Adam(), schedule=Schedule("constant", 0.02, 6), epochs=6)
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert history[-1]["val_accuracy"] >= 0.85  # chance is 1/3
    probs = be.make_predict(model)(params, X_VAL)
    expected = ref_mlp_logits(params, X_VAL, model.activations)
    if output == "softmax":
        expected = ref_activation("softmax", expected)
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-5)


def test_what_training_hands_out_stays_put_while_it_goes_on(be):
    """Eager backends update in place: the caller's start, each epoch's checkpoint, the best epoch's
    weights and the result are each buffers of their own, unchanged by the steps that follow."""
    start = MODEL.init_params(5)
    start_copy = [{k: a.copy() for k, a in layer.items()} for layer in start]
    saved = []  # (the TrainState fit handed out, a copy of its params made at once)

    def keep(state):
        saved.append((state, [{k: np.array(a) for k, a in layer.items()} for layer in state.params]))

    stopping = EarlyStopping(patience=10, restore_best=True)
    params, history = fit(be, MODEL, Adam(), SCHEDULE, X_TR, Y_TR, X_VAL, Y_VAL, epochs=EPOCHS, batch_size=BATCH,
                          seed=0, initial_params=start, on_checkpoint=keep, early_stopping=stopping)
    assert_trees_close(start, start_copy, rtol=0, atol=0)
    assert len(saved) == EPOCHS
    for state, copy in saved:
        assert_trees_close(state.params, copy, rtol=0, atol=0)
    assert not np.array_equal(saved[0][1][0]["w"], saved[-1][1][0]["w"])  # and training did move them
    best = saved[stopping.best_epoch - 1][1]
    assert_trees_close(be.tree_to_host(params), best, rtol=0, atol=0)  # the best epoch's weights come back


class _FunctionalAdam(Adam):
    """nn's Adam as a subclass: ``kind`` None, so the backend runs its functional ``update``."""


class _FunctionalSGD(SGD):
    """As _FunctionalAdam, for SGD."""


@pytest.mark.parametrize("flat_opt, functional_opt", [
    (Adam(weight_decay=0.1), _FunctionalAdam(weight_decay=0.1)),
    (SGD(momentum=0.9, nesterov=True, weight_decay=0.01), _FunctionalSGD(momentum=0.9, nesterov=True,
                                                                         weight_decay=0.01)),
], ids=["adam-wd", "nesterov-wd"])
@pytest.mark.parametrize("be", backend_params("numpy", "cupy-on-numpy"), indirect=True)
def test_the_flat_buffer_step_trains_as_the_functional_update_does(be, flat_opt, functional_opt):
    """A whole fit (penalty and dropout on, a partial last batch) on the flat buffers equals, bit for bit,
    the same fit on the functional update, the reference JAX traces."""
    model = MLP(sizes=(10, 9, 7, 3), activations="relu", dropout=0.2, reg="l2", reg_lambda=1e-3)
    flat, flat_history = _fit(be, model=model, optimizer=flat_opt)
    functional, functional_history = _fit(be, model=model, optimizer=functional_opt)
    assert functional_opt.kind is None and flat_opt.kind is not None
    assert_trees_close(flat, functional, rtol=0, atol=0)
    assert _without_time(flat_history) == _without_time(functional_history)
