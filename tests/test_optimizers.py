"""SGD and Adam: three updates on every backend against the textbook
recurrences written out here in float64."""

import math

import numpy as np
import pytest

from backends import XpnetError, get_backend
from backends.flat import FlatTraining
from nn import SGD, Adam, optimizers
from tests.reference import assert_trees_close, backend_params, tree_f64

LRS = (0.1, 0.05, 0.02)  # a different rate each step: lr is an argument


def _tree(seed, scale=1.0):
    """Two layers with odd shapes; non-zero biases so decaying them would show."""
    rng = np.random.default_rng(seed)
    return [
        {"w": rng.normal(0, scale, (7, 3)).astype(np.float32), "b": rng.normal(0, scale, 3).astype(np.float32)},
        {"w": rng.normal(0, scale, (3, 5)).astype(np.float32), "b": rng.normal(0, scale, 5).astype(np.float32)},
    ]


PARAMS = _tree(0)
GRADS = [_tree(10 + i) for i in range(len(LRS))]


def ref_sgd(params, grads_seq, lrs, momentum=0.0, nesterov=False, weight_decay=0.0):
    p = tree_f64(params)
    v = [{k: np.zeros_like(a) for k, a in layer.items()} for layer in p]
    for grads, lr in zip(tree_f64_seq(grads_seq), lrs):
        for pl, vl, gl in zip(p, v, grads):
            for k in pl:
                g = gl[k]
                if momentum:
                    vl[k] = momentum * vl[k] + g
                    d = g + momentum * vl[k] if nesterov else vl[k]
                else:
                    d = g
                decay = weight_decay * pl[k] if k == "w" else 0.0
                pl[k] = pl[k] - lr * (d + decay)
    return p


def ref_adam(params, grads_seq, lrs, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    p = tree_f64(params)
    m = [{k: np.zeros_like(a) for k, a in layer.items()} for layer in p]
    v = [{k: np.zeros_like(a) for k, a in layer.items()} for layer in p]
    for t, (grads, lr) in enumerate(zip(tree_f64_seq(grads_seq), lrs), start=1):
        for pl, ml, vl, gl in zip(p, m, v, grads):
            for k in pl:
                g = gl[k]
                ml[k] = beta1 * ml[k] + (1 - beta1) * g
                vl[k] = beta2 * vl[k] + (1 - beta2) * g * g
                m_hat = ml[k] / (1 - beta1**t)
                v_hat = vl[k] / (1 - beta2**t)
                decay = weight_decay * pl[k] if k == "w" else 0.0
                pl[k] = pl[k] - lr * (m_hat / (np.sqrt(v_hat) + eps) + decay)
    return p


def tree_f64_seq(seq):
    return [tree_f64(t) for t in seq]


def _run(be, opt, params=PARAMS, grads_seq=GRADS, lrs=LRS):
    params = be.tree_asarray(params)
    state = opt.init(params)
    update = be.compile(opt.update)
    for grads, lr in zip(grads_seq, lrs):
        params, state = update(params, be.tree_asarray(grads), state, lr)
    return be.tree_to_host(params), state


CASES = {
    "sgd": (SGD(), dict()),
    "momentum": (SGD(momentum=0.9), dict(momentum=0.9)),
    "nesterov": (SGD(momentum=0.9, nesterov=True), dict(momentum=0.9, nesterov=True)),
    "sgd-wd": (SGD(weight_decay=0.1), dict(weight_decay=0.1)),
    "nesterov-wd": (SGD(momentum=0.8, nesterov=True, weight_decay=0.3),
                    dict(momentum=0.8, nesterov=True, weight_decay=0.3)),
    "adam": (Adam(), dict()),
    "adam-wd": (Adam(beta1=0.8, beta2=0.99, weight_decay=0.2), dict(beta1=0.8, beta2=0.99, weight_decay=0.2)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_three_steps_match_the_recurrence(be, case):
    opt, kwargs = CASES[case]
    reference = ref_adam if isinstance(opt, Adam) else ref_sgd
    expected = reference(PARAMS, GRADS, LRS, **kwargs)
    got, _ = _run(be, opt)
    assert got[0]["w"].dtype == np.float32
    assert_trees_close(got, expected, rtol=1e-5, atol=1e-6)
    # and the steps are not negligible: the parameters really moved
    assert np.abs(got[0]["w"] - PARAMS[0]["w"]).max() > 0.01


@pytest.mark.parametrize("opt", [SGD(weight_decay=0.1), SGD(momentum=0.9, weight_decay=0.1),
                                 Adam(weight_decay=0.1)], ids=["sgd", "momentum", "adam"])
def test_weight_decay_shrinks_weights_and_never_biases(opt):
    # (on NumPy only: the recurrence tests above check the same on every backend)
    zeros = [[{k: np.zeros_like(a) for k, a in layer.items()} for layer in PARAMS]] * len(LRS)
    got, _ = _run(get_backend("numpy"), opt, grads_seq=zeros)
    shrink = math.prod(1 - lr * 0.1 for lr in LRS)
    for before, after in zip(PARAMS, got):
        np.testing.assert_array_equal(after["b"], before["b"])
        np.testing.assert_allclose(after["w"], before["w"] * shrink, rtol=1e-6)


def test_adam_first_step_moves_each_weight_by_lr(be):
    rng = np.random.default_rng(3)
    # gradients from 1e-3 to 10 in size, both signs: bias correction makes
    # the first step m_hat / sqrt(v_hat) = g / |g|, whatever the scale.
    grads = [{k: (rng.choice([-1, 1], a.shape) * 10.0 ** rng.uniform(-3, 1, a.shape)).astype(np.float32)
              for k, a in layer.items()} for layer in PARAMS]
    lr = 0.1
    got, state = _run(be, Adam(), grads_seq=[grads], lrs=[lr])
    assert float(be.to_host(state["t"])) == 1
    for before, after, g in zip(PARAMS, got, grads):
        for k in before:
            np.testing.assert_allclose(after[k] - before[k], -lr * np.sign(g[k]), rtol=1e-4)


# JAX arrays cannot be changed in place; the eager backends could be.
@pytest.mark.parametrize("be", backend_params("numpy", "cupy-on-numpy", "cupy"), indirect=True)
def test_update_is_functional(be):
    """Nothing is updated in place: the caller's params and state survive."""
    for opt in (SGD(momentum=0.9), Adam()):
        params = be.tree_asarray(PARAMS)
        state = opt.init(params)
        before = be.tree_to_host(params)
        new, new_state = opt.update(params, be.tree_asarray(GRADS[0]), state, 0.1)
        assert_trees_close(be.tree_to_host(params), before, rtol=0, atol=0)
        key = "velocity" if "velocity" in state else "m"
        assert np.all(be.tree_to_host(state[key])[0]["w"] == 0)
        assert np.any(be.tree_to_host(new_state[key])[0]["w"] != 0)


def test_plain_sgd_keeps_no_state():
    assert SGD().init(PARAMS) == {}


@pytest.mark.parametrize(
    "make",
    [
        lambda: SGD(momentum=1.5),
        lambda: SGD(momentum=1.0),
        lambda: SGD(momentum=-0.1),
        lambda: SGD(nesterov=True),
        lambda: SGD(weight_decay=-1e-4),
        lambda: Adam(weight_decay=-1.0),
        lambda: Adam(beta1=1.0),
        lambda: Adam(beta2=-0.5),
        lambda: Adam(eps=0.0),
    ],
    ids=["momentum>1", "momentum=1", "momentum<0", "nesterov-without-momentum", "sgd-negative-wd",
         "adam-negative-wd", "beta1=1", "beta2<0", "eps=0"],
)
def test_invalid_hyperparameters_raise(make):
    with pytest.raises(XpnetError):
        make()


SIZES = (7, 3, 5)  # PARAMS' layer sizes


def _flat_step(opt, flat, grads, lr):
    """One ``update_flat`` on ``flat`` (a ``backends.flat.FlatTraining``) with a gradient tree copied in."""
    for view, layer in zip(flat.grads, grads):
        view["w"][...] = layer["w"]
        view["b"][...] = layer["b"]
    opt.update_flat(flat.flat_params, flat.flat_grads, flat.flat_state, lr, flat.scratch, flat.layout.n_weights)


def _flat_run(xp, opt, dtype, steps=4):
    """(functional params and state, flat params and state) after ``steps`` updates from the same start."""
    to = lambda tree: [{k: xp.asarray(a.astype(dtype)) for k, a in layer.items()} for layer in tree]  # noqa: E731
    grads_seq = [to(_tree(20 + i)) for i in range(steps)]
    functional = to(PARAMS)
    state = opt.init(functional)
    flat = FlatTraining(xp, SIZES)
    start = to(PARAMS)
    flat.adopt(start, opt.init(start))
    views = flat.params
    for i, grads in enumerate(grads_seq):
        lr = 0.05 / (i + 1)
        functional, state = opt.update(functional, grads, state, lr)
        _flat_step(opt, flat, grads, lr)
        flat.adopt(flat.params, flat.state)  # its own views: nothing copied, the same buffers
        assert flat.params is views
    return (functional, state), (flat.params, flat.state)


@pytest.mark.parametrize("span", [None, 4], ids=["one-span", "spans-of-4"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("be", backend_params("numpy", "cupy-on-numpy", "cupy"), indirect=True)
def test_the_flat_update_gives_the_functional_updates_bits(be, case, dtype, span, monkeypatch):
    """Parameters and optimizer state, bit for bit, after four steps; with spans of 4 numbers the
    buffers are cut mid-layer, and the weights' end falls inside a span (it must not straddle it)."""
    if span is not None:
        monkeypatch.setattr(optimizers, "SPAN", span)
    opt, _ = CASES[case]
    (functional, state), (flat, flat_state) = _flat_run(be.xp, opt, dtype)
    pairs = [(flat, functional)] + [(flat_state[k], state[k]) for k in state if k != "t"]
    for got_tree, want_tree in pairs:
        for got_layer, want_layer in zip(got_tree, want_tree):
            for k in want_layer:
                assert be.to_host(got_layer[k]).dtype == dtype
                np.testing.assert_array_equal(be.to_host(got_layer[k]), be.to_host(want_layer[k]))
    if "t" in state:
        assert float(be.to_host(flat_state["t"])) == float(be.to_host(state["t"])) == 4


def test_adams_bias_correction_is_exact_in_float64():
    """One step of every t up to 2000 against 1 / (1 - b^t) in exact rational arithmetic (Python's
    fractions), where the old float32 ``1 - b2**t`` was 1e-5 off at t = 1."""
    from fractions import Fraction

    opt = Adam(beta1=0.9, beta2=0.999)
    for t in (1, 2, 3, 10, 100, 2000):
        m_scale, v_scale = opt.bias_scales(np.array(t, np.float32), np.float64)
        for scale, beta in ((m_scale, opt.beta1), (v_scale, opt.beta2)):
            exact = 1 / (1 - Fraction(beta) ** t)
            assert abs(Fraction(float(scale)) / exact - 1) < 1e-14
        m32, v32 = opt.bias_scales(np.array(t, np.float32), np.float32)
        assert abs(float(v32) / float(1 / (1 - Fraction(0.999) ** t)) - 1) < 3e-7  # float32 rounding, not 1e-5


@pytest.mark.parametrize("be", backend_params("numpy", "cupy-on-numpy", "cupy", "jax"), indirect=True)
def test_adam_flushes_subnormal_moments_every_16_steps_on_both_paths(be):
    """Moments below float32's smallest normal become 0 at steps 16, 32, ...: the functional update (on
    every backend) and the in-place one agree, and between flushes nothing is touched."""
    tiny = np.finfo(np.float32).tiny
    opt = Adam()
    zero_grads = [{k: np.zeros_like(a) for k, a in layer.items()} for layer in PARAMS]
    for t_before, flushed in ((14, False), (15, True)):
        state = opt.init(PARAMS)
        state["t"] = np.array(t_before, np.float32)
        state["m"] = [{k: np.full_like(a, tiny * 0.5 / 0.9) for k, a in layer.items()} for layer in PARAMS]
        state["v"] = [{k: np.full_like(a, 1e-3) for k, a in layer.items()} for layer in PARAMS]
        host_state = {"t": state["t"].copy(), "m": [{k: a.copy() for k, a in l.items()} for l in state["m"]],
                      "v": [{k: a.copy() for k, a in l.items()} for l in state["v"]]}
        _, functional = be.compile(opt.update)(be.tree_asarray(PARAMS), be.tree_asarray(zero_grads),
                                                {"t": be.asarray(state["t"]), "m": be.tree_asarray(state["m"]),
                                                 "v": be.tree_asarray(state["v"])}, 0.1)
        m = be.to_host(functional["m"][0]["w"])
        kept = np.float32(opt.beta1) * state["m"][0]["w"]  # 0.9 * m: still subnormal between flushes
        assert ((kept > 0) & (kept < tiny)).all()
        if flushed:
            assert (m == 0).all()
        elif be.name != "jax" and be.xp is np:  # NumPy's arithmetic keeps subnormals
            np.testing.assert_array_equal(m, kept)
        else:
            # XLA on a CPU and CuPy's kernels (flush-to-zero) flush subnormal results every step;
            # XLA on a GPU keeps them (both seen on an H200): the update's own flush is what is promised.
            assert (m == 0).all() or np.array_equal(m, kept)
        if be.updates_in_place:
            flat = FlatTraining(np, SIZES)
            flat.adopt([{k: a.copy() for k, a in layer.items()} for layer in PARAMS], host_state)
            _flat_step(opt, flat, zero_grads, 0.1)
            np.testing.assert_array_equal(flat.state["m"][0]["w"], np.zeros_like(kept) if flushed else kept)
