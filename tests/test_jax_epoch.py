"""The whole-epoch scan (``epoch_mode="scan"``) against the step-by-step loop,
the epoch shuffle every backend shares, and compile-once across epochs,
data and learning rates. Synthetic blobs; JAX tests skip without JAX."""

import contextlib
import math

import numpy as np
import pytest

from backends import XpnetError, get_backend
from nn import MLP, SGD, Adam, Schedule, fit, split_validation
from tests.reference import blobs, ref_ce, ref_mlp_logits

X, Y = blobs(n=300, features=10, classes=3, separation=1.5, seed=0)
X_TR, Y_TR, X_VAL, Y_VAL = split_validation(X, Y, 90)  # 210 train = 6 batches of 32 + 18
DROPOUT_MODEL = MLP(sizes=(10, 9, 3), activations="tanh", dropout=0.3)
EPOCHS, BATCH = 3, 32


def _jax():
    return pytest.importorskip("jax")


def _fit(be, mode, model=DROPOUT_MODEL, **kw):
    params, history = fit(
        be, model, kw.pop("optimizer", Adam(weight_decay=0.01)), kw.pop("schedule", Schedule("cosine", 0.05, EPOCHS)),
        X_TR, Y_TR, kw.pop("x_val", X_VAL), kw.pop("y_val", Y_VAL),
        epochs=kw.pop("epochs", EPOCHS), batch_size=kw.pop("batch_size", BATCH), seed=0, epoch_mode=mode, **kw,
    )
    return be.tree_to_host(params), history


@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_scan_epoch_equals_the_step_loop(grad):
    """Same seed, dropout on, a partial last batch: the compiled epoch
    reproduces the per-step loop's parameters and per-epoch metrics."""
    _jax()
    be = get_backend("jax")
    step_params, step_history = _fit(be, "step", grad=grad)
    scan_params, scan_history = _fit(be, "scan", grad=grad)
    for a, b in zip(scan_params, step_params):
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)
    for scan, step in zip(scan_history, step_history):
        for key in ("train_loss", "val_loss", "lr"):
            assert scan[key] == pytest.approx(step[key], rel=1e-5)
        for key in ("train_accuracy", "val_accuracy"):
            assert abs(scan[key] - step[key]) <= 1.5 / len(X_TR)
    if grad == "manual":  # once is enough: dropout really was on, without it the run ends elsewhere
        plain, _ = _fit(be, "scan", model=MLP(sizes=(10, 9, 3), activations="tanh"), grad=grad)
        assert not np.allclose(plain[0]["w"], scan_params[0]["w"], rtol=1e-3, atol=1e-4)


def test_scan_epoch_counts_every_sample_once():
    """With a vanishing learning rate the parameters stay at their init, so
    the scanned epoch's loss is the float64 mean over all 210 samples,
    including the one-sample last batch (210 = 19 * 11 + 1)."""
    _jax()
    batch = 11
    assert len(X_TR) % batch == 1
    model = MLP(sizes=(10, 9, 3), activations="tanh")
    params, (record,) = _fit(get_backend("jax"), "scan", model=model, x_val=None, y_val=None, epochs=1,
                             batch_size=batch, optimizer=SGD(), schedule=Schedule("constant", 1e-30, 1))
    init = model.init_params(0)
    for a, b in zip(params, init):
        np.testing.assert_allclose(a["w"], b["w"], rtol=0, atol=1e-25)
    logits = ref_mlp_logits(init, X_TR, model.activations)
    assert record["train_loss"] == pytest.approx(ref_ce(logits, Y_TR), rel=2e-6)
    assert record["train_accuracy"] == pytest.approx(np.mean(np.argmax(logits, axis=1) == Y_TR), abs=1.5 / len(X_TR))


def test_scan_elsewhere_is_one_clear_error():
    be = get_backend("numpy")
    with pytest.raises(XpnetError, match="--epoch-mode scan needs --backend jax"):
        _fit(be, "scan")
    with pytest.raises(XpnetError, match="--epoch-mode"):
        _fit(be, "whole")
    assert be.check_epoch_mode(None) == "step"


# -- the epoch shuffle -------------------------------------------------------------
def _ref_mix32(h):
    h ^= h >> 16
    h = (h * 0x7FEB352D) & 0xFFFFFFFF
    h ^= h >> 15
    h = (h * 0x846CA68B) & 0xFFFFFFFF
    return h ^ (h >> 16)


def _ref_permutation(seed, epoch, n):
    """The documented construction in plain Python ints: the indices sorted
    by mix(mix(i ^ k) + k), k the (seed, epoch, shuffle-stream) key."""
    k = _ref_mix32(_ref_mix32(_ref_mix32(seed) ^ epoch) ^ ((0xFFFF * 0x9E3779B9) & 0xFFFFFFFF))
    return sorted(range(n), key=lambda i: _ref_mix32((_ref_mix32(i ^ k) + k) & 0xFFFFFFFF))


def test_epoch_permutation_is_the_same_on_every_backend(be):
    n = 1000
    orders = {}
    for seed, epoch in ((0, 0), (0, 1), (7, 0), (2**31 - 1, 12345)):
        order = be.to_host(be.epoch_permutation(seed, epoch, n))
        assert order.dtype == np.int32
        np.testing.assert_array_equal(order, _ref_permutation(seed, epoch, n))
        orders[seed, epoch] = order
    a, b, c = orders[0, 0], orders[0, 1], orders[7, 0]
    # a new epoch or seed reshuffles: about 1 in n positions agree by chance
    assert np.mean(a == b) < 0.01 and np.mean(a == c) < 0.01
    # no drift of the original order into the shuffled one
    assert abs(np.corrcoef(np.arange(n), a)[0, 1]) < 4 / math.sqrt(n)


def test_epoch_permutation_inside_jit_matches_the_host_key():
    """The scan draws the order on the device from a traced key."""
    jax = _jax()
    from backends.random import permutation_from_key, shuffle_key

    be = get_backend("jax")
    draw = jax.jit(lambda key: permutation_from_key(be.xp, key, 777))
    for seed, epoch in ((0, 3), (5, 0)):
        got = np.asarray(draw(np.uint32(shuffle_key(seed, epoch))))
        np.testing.assert_array_equal(got, be.to_host(be.epoch_permutation(seed, epoch, 777)))


# -- compile once ------------------------------------------------------------------
@contextlib.contextmanager
def _counting_compiles():
    """A list that grows by one per XLA compilation while the block runs."""
    jax = _jax()
    compiles = []

    def listener(event, duration_secs, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration_secs)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield compiles
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


@pytest.mark.parametrize("mode", ["scan", "step"])
def test_later_epochs_compile_nothing(mode):
    """Epoch 1 compiles (the counter sees it); epochs 2 and 3, with new
    permutations, step numbers and learning rates, compile nothing."""
    _jax()
    be = get_backend("jax")
    with _counting_compiles() as compiles:
        after_epoch = []
        _fit(be, mode, model=MLP(sizes=(10, 7, 3), activations="relu", dropout=0.2),
             on_epoch=lambda record: after_epoch.append(len(compiles)))
    assert after_epoch[0] > 0
    assert after_epoch == [after_epoch[0]] * EPOCHS


def test_new_data_and_learning_rates_reuse_the_compiled_epoch():
    _jax()
    be = get_backend("jax")
    model, optimizer = MLP(sizes=(10, 6, 3), activations="relu"), SGD(momentum=0.9)
    n = len(X_TR)
    steps = math.ceil(n / BATCH)
    train_epoch = be.make_train_epoch(model, optimizer, seed=0, n=n, batch_size=BATCH)
    x_other, y_other = blobs(n=n, features=10, classes=3, separation=1.5, seed=9)

    def one_epoch(x, y, epoch, lr):
        params = be.tree_asarray(model.init_params(0))
        state = be.place(optimizer.init(params))
        params, _, loss, _ = train_epoch(params, state, be.asarray(x), be.asarray(y), epoch, np.full(steps, lr))
        return be.tree_to_host(params), float(be.to_host(loss))

    with _counting_compiles() as compiles:
        first, first_loss = one_epoch(X_TR, Y_TR, 0, 0.05)
        compiled = len(compiles)
        assert compiled > 0
        other_lr, _ = one_epoch(X_TR, Y_TR, 0, 0.01)
        other_data, other_loss = one_epoch(x_other, y_other, 4, 0.05)
        assert len(compiles) == compiled
    # the new values did take effect
    assert not np.allclose(other_lr[0]["w"], first[0]["w"])
    assert not np.allclose(other_data[0]["w"], first[0]["w"]) and other_loss != first_loss


def test_new_learning_rates_reuse_the_compiled_step():
    _jax()
    be = get_backend("jax")
    model, optimizer = MLP(sizes=(10, 6, 3), activations="relu"), Adam()
    train_step = be.make_train_step(model, optimizer, seed=0)
    x, y, idx = be.asarray(X_TR), be.asarray(Y_TR), be.asarray(np.arange(BATCH, dtype=np.int32))
    params = be.tree_asarray(model.init_params(0))
    state = be.place(optimizer.init(params))
    with _counting_compiles() as compiles:
        params, state, _, _ = train_step(params, state, x, y, idx, 0.01, 0)
        compiled = len(compiles)
        for step_no, lr in enumerate((0.02, 0.003, 1e-4), start=1):
            params, state, _, _ = train_step(params, state, x, y, idx, lr, step_no)
        assert len(compiles) == compiled > 0


@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_every_matrix_product_is_traced_at_float32_precision(grad):
    """On a GPU, XLA multiplies float32 matrices in TF32 unless told otherwise (seen on an H200: a
    2048² matmul at 73.8 TFLOP/s against cuBLAS's 46.5 in float32); xpnet's float32 is float32 everywhere."""
    _jax()
    be = get_backend("jax")
    model = MLP(sizes=(10, 9, 3), activations="tanh")
    params = be.tree_asarray(model.init_params(0))
    x, y = be.asarray(X_TR[:32]), be.asarray(Y_TR[:32])
    step = be.compile(be.loss_and_grads_fn(model, grad))
    text = step.lower(params, x, y, None).as_text()
    products = [line for line in text.splitlines() if "dot_general" in line]
    # forward and backward of both layers: x W twice, dz W^T once, a^T dz twice
    assert len(products) >= 5
    assert all("precision = [HIGHEST, HIGHEST]" in line for line in products), products
