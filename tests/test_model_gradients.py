"""The MLP's hand-written backward against finite differences and jax.grad,
on every backend; dropout masks and where dropout applies."""

import numpy as np
import pytest

from backends import get_backend
from nn import MLP
from nn.layers import dropout, dropout_backward
from tests.reference import (
    assert_trees_close,
    backend_params,
    jax_x64,
    ref_activation,
    ref_ce,
    ref_mlp_logits,
    ref_mse,
    tree_central_diff,
    tree_f32,
    tree_f64,
)

SIZES = (7, 6, 5, 3)
N = 5
CONFIGS = {
    "ce-relu": dict(activations="relu"),
    "ce-leaky_relu": dict(activations="leaky_relu"),
    "ce-sigmoid": dict(activations="sigmoid"),
    "ce-tanh": dict(activations="tanh"),
    "ce-linear": dict(activations="linear"),
    "mse-softmax": dict(activations=("tanh", "relu"), loss="mse", output="softmax"),
    "mse-linear": dict(activations=("relu", "sigmoid"), loss="mse", output="linear"),
    "dropout": dict(activations=("relu", "tanh"), dropout=0.4),
    "l1": dict(activations="tanh", reg="l1", reg_lambda=0.05),
    "l2": dict(activations="sigmoid", reg="l2", reg_lambda=0.05),
    "l1_l2": dict(activations="leaky_relu", reg="l1_l2", reg_lambda=0.05),
    "all": dict(activations=("leaky_relu", "tanh"), loss="mse", output="linear",
                dropout=0.3, reg="l1_l2", reg_lambda=0.02),
}
# Subsets for the checks that cost an XLA compile each (the suite must stay
# fast): between them every loss, output, penalty and dropout path.
JAX_CONFIGS = ("ce-relu", "mse-softmax", "all")
BACKEND_CONFIGS = ("mse-softmax", "all")
MASK_SHAPE = (301, 199)  # one shape for every mask test: one compile on JAX


def _case(name, seed=0):
    """(model, float64 params, x, y, masks) with every assumption the
    finite differences need checked: no pre-activation near a ReLU kink,
    no weight near the kink of |w|, non-trivial dropout masks."""
    model = MLP(sizes=SIZES, **CONFIGS[name])
    rng = np.random.default_rng(seed)
    params = tree_f64(model.init_params(seed))
    for layer in params:
        layer["w"] = np.sign(layer["w"]) * np.maximum(np.abs(layer["w"]), 0.05)
        layer["b"] = rng.normal(0.0, 0.3, layer["b"].shape)
    x = rng.normal(0.0, 1.0, (N, SIZES[0]))
    y = np.array([0, 2, 1, 2, 0], dtype=np.int32)
    masks = None
    if model.dropout:
        masks = [np.float64(rng.uniform(size=(N, n)) < 1 - model.dropout) for n in SIZES[1:-1]]
        for m in masks:
            assert 0 < m.mean() < 1
    _, cache = model.forward(params, x, masks)
    for _, z, _ in cache[:-1]:
        assert np.min(np.abs(z)) > 1e-3, "a pre-activation sits on a kink: pick another seed"
    return model, params, x, y, masks


def _ref_objective(model, params, x, y, masks):
    """The objective written out independently of nn."""
    logits = ref_mlp_logits(params, x, model.activations, masks, 1 - model.dropout)
    data = ref_ce(logits, y) if model.loss == "ce" else ref_mse(ref_activation(model.output, logits), y)
    lam, w = model.reg_lambda, [p["w"] for p in params]
    l1 = lam * sum(np.abs(a).sum() for a in w) if model.reg in ("l1", "l1_l2") else 0.0
    l2 = 0.5 * lam * sum((a * a).sum() for a in w) if model.reg in ("l2", "l1_l2") else 0.0
    return data + l1 + l2, logits


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_objective_matches_reference(name):
    model, params, x, y, masks = _case(name)
    value, logits = model.objective(params, x, y, masks)
    ref_value, ref_logits = _ref_objective(model, params, x, y, masks)
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    if model.reg != "none":
        plain, _ = model.objective(params, x, y, masks, penalty=False)
        assert plain < value


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_grads_match_finite_differences_for_every_entry(name):
    model, params, x, y, masks = _case(name)
    loss, grads, logits = model.loss_and_grads(params, x, y, masks)
    value, ref_logits = model.objective(params, x, y, masks)
    np.testing.assert_allclose(loss, value, rtol=1e-14)
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-14)
    expected = tree_central_diff(lambda p: model.objective(p, x, y, masks)[0], params)
    assert_trees_close(grads, expected, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name", JAX_CONFIGS)
def test_grads_match_jax_grad(name):
    jax, jnp = jax_x64()
    model, params, x, y, masks = _case(name)
    _, grads, _ = model.loss_and_grads(params, x, y, masks)
    with jax.enable_x64(True):
        j = lambda t: None if t is None else [jnp.asarray(a) for a in t]  # noqa: E731
        jp = [{k: jnp.asarray(v) for k, v in layer.items()} for layer in params]
        grad = jax.jit(jax.grad(lambda p, x, y, m: model.objective(p, x, y, m)[0]))
        auto = grad(jp, jnp.asarray(x), jnp.asarray(y), j(masks))
        assert auto[0]["w"].dtype == jnp.float64
        auto = [{k: np.asarray(v) for k, v in layer.items()} for layer in auto]
    assert_trees_close(grads, auto, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name", BACKEND_CONFIGS)
def test_every_backend_and_grad_mode_gives_the_float64_grads(be, name):
    model, params, x, y, masks = _case(name)
    params32 = tree_f32(params)
    x32 = x.astype(np.float32)
    # The reference: float64 grads at the float32-rounded point.
    ref_loss, ref_grads, ref_logits = model.loss_and_grads(tree_f64(params32), np.float64(x32), y, masks)
    args = (be.tree_asarray(params32), be.asarray(x32), be.asarray(y),
            None if masks is None else [be.asarray(np.float32(m)) for m in masks])
    results = {}
    for mode in be.grad_modes:  # manual everywhere, and jax.grad on JAX
        loss, grads, logits = be.compile(be.loss_and_grads_fn(model, mode))(*args)
        grads = results[mode] = be.tree_to_host(grads)
        assert grads[0]["w"].dtype == np.float32
        np.testing.assert_allclose(be.to_host(loss), ref_loss, rtol=1e-5)
        np.testing.assert_allclose(be.to_host(logits), ref_logits, rtol=1e-5, atol=1e-6)
        assert_trees_close(grads, ref_grads, rtol=1e-4, atol=1e-6)
    if "autodiff" in results:
        assert be.check_grad_mode(None) == "autodiff"
        assert_trees_close(results["autodiff"], results["manual"], rtol=1e-5, atol=1e-7)


# -- dropout -----------------------------------------------------------------------
def test_keep_masks_are_binary_with_the_keep_fraction(be):
    shape = MASK_SHAPE
    for p in (0.3, 0.75):
        mask = be.to_host(be.keep_mask(5, 2, 1, shape, p, be.xp.float32))
        assert mask.shape == shape and mask.dtype == np.float32
        assert set(np.unique(mask)) <= {0.0, 1.0}
        sigma = np.sqrt(p * (1 - p) / mask.size)
        assert abs(mask.mean() - p) < 5 * sigma
        # every row keeps about p of its units: no stripes from a weak hash
        row_sigma = np.sqrt(p * (1 - p) / shape[1])
        assert 0.7 * row_sigma < mask.mean(axis=1).std() < 1.3 * row_sigma
        # neighbouring elements are uncorrelated
        assert abs(np.corrcoef(mask.ravel()[:-1], mask.ravel()[1:])[0, 1]) < 0.03


def test_keep_mask_is_a_pure_function_of_seed_step_layer(be):
    shape, p = MASK_SHAPE, 0.5

    def mask(seed, step, layer):
        return be.to_host(be.keep_mask(seed, step, layer, shape, p, be.xp.float32))

    base = mask(11, 3, 0)
    np.testing.assert_array_equal(mask(11, 3, 0), base)
    for other in (mask(11, 4, 0), mask(11, 3, 1), mask(12, 3, 0)):
        # independent masks disagree on about 2 p (1 - p) = half the entries
        assert 0.4 < np.mean(other != base) < 0.6
    # the same numbers inside a compiled step with a traced step number
    compiled = be.compile(lambda step: be.keep_mask(11, step, 0, shape, p, be.xp.float32))
    np.testing.assert_array_equal(be.to_host(compiled(be.asarray(np.int32(3)))), base)


# (the jax backend draws its masks with jax.random instead, by design)
@pytest.mark.parametrize("be", backend_params("cupy-on-numpy", "cupy"), indirect=True)
def test_numpy_and_cupy_masks_are_bit_identical(be):
    reference = get_backend("numpy")
    for seed, step, layer in ((0, 0, 0), (7, 123456, 2), (2**31 - 1, 10**6, 5)):
        expected = reference.keep_mask(seed, step, layer, (13, 17), 0.6, np.float32)
        got = be.to_host(be.keep_mask(seed, step, layer, (13, 17), 0.6, be.xp.float32))
        np.testing.assert_array_equal(got, expected)


def test_dropout_is_inverted(be):
    p, (n, width) = 0.7, MASK_SHAPE
    a = np.linspace(-2.0, 3.0, width)
    big = np.tile(a, (n, 1)).astype(np.float32)
    mask = be.keep_mask(1, 0, 0, big.shape, p, be.xp.float32)
    out = be.to_host(dropout(be.asarray(big), mask, p))
    mask = be.to_host(mask)
    np.testing.assert_allclose(out, big * mask / p, rtol=1e-6)
    # E[mask / p] = 1: the mean over many draws is a, to within 5 sigma
    sigma = np.abs(a) * np.sqrt((1 - p) / (p * n))
    assert np.all(np.abs(out.mean(axis=0) - a) <= 5 * sigma + 1e-6)
    dy = np.ones_like(big)
    np.testing.assert_allclose(be.to_host(dropout_backward(be.asarray(dy), be.asarray(mask), p)), mask / p, rtol=1e-6)


def test_dropout_never_touches_the_logits(be):
    model = MLP(sizes=SIZES, activations=("tanh", "relu"), dropout=0.9)
    params = model.init_params(3)
    rng = np.random.default_rng(4)
    x = rng.normal(0.0, 1.0, (N, SIZES[0])).astype(np.float32)
    masks = [(rng.uniform(size=(N, n)) < 0.5).astype(np.float32) for n in SIZES[1:-1]]
    forward = be.compile(model.forward)
    logits, cache = forward(be.tree_asarray(params), be.asarray(x), [be.asarray(m) for m in masks])
    last_in = be.to_host(cache[-1][0])
    last_act = be.to_host(cache[-2][2])
    np.testing.assert_allclose(last_in, last_act * masks[-1] / 0.1, rtol=1e-5, atol=1e-6)
    # the logits are the dense layer of the dropped-out activation, and nothing more
    expected = np.float64(last_in) @ params[-1]["w"] + params[-1]["b"]
    np.testing.assert_allclose(be.to_host(logits), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        be.to_host(logits), ref_mlp_logits(params, x, model.activations, masks, 0.1), rtol=1e-5, atol=1e-5
    )


def test_predict_uses_no_dropout(be):
    model = MLP(sizes=SIZES, activations=("relu", "sigmoid"), dropout=0.9)
    params = model.init_params(5)
    x = np.random.default_rng(6).normal(0.0, 1.0, (N, SIZES[0])).astype(np.float32)
    predict = be.make_predict(model)
    probs = be.to_host(predict(be.tree_asarray(params), be.asarray(x)))
    expected = ref_activation("softmax", ref_mlp_logits(params, x, model.activations))
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(be.to_host(predict(be.tree_asarray(params), be.asarray(x))), probs)
