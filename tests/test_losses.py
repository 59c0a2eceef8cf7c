"""Losses: values against the closed forms, gradients against finite
differences and jax.grad, and cross-entropy at logits of +-1e4."""

import math
import warnings

import numpy as np
import pytest

from nn.losses import (
    LOSSES,
    mse,
    softmax_cross_entropy,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_value_and_grad,
)
from tests.reference import central_diff, jax_x64, ref_ce, ref_mse

REFERENCE = {"ce": ref_ce, "mse": ref_mse}
N, K = 5, 7


def _case(seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    outputs = rng.normal(0.0, scale, (N, K))
    labels = rng.integers(0, K, N).astype(np.int32)
    return outputs, labels


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_value_matches_closed_form(be, loss):
    outputs, labels = _case()
    outputs = outputs.astype(np.float32)
    fn, _ = LOSSES[loss]
    value = be.to_host(be.compile(fn)(be.asarray(outputs), be.asarray(labels)))
    assert value.shape == ()
    np.testing.assert_allclose(value, REFERENCE[loss](outputs, labels), rtol=1e-5)


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_float64_value_and_gradient(loss):
    outputs, labels = _case(seed=1)
    fn, grad_fn = LOSSES[loss]
    value, grad = fn(outputs, labels), grad_fn(outputs, labels)
    assert np.asarray(value).dtype == np.float64 and grad.dtype == np.float64
    np.testing.assert_allclose(value, REFERENCE[loss](outputs, labels), rtol=1e-13)


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_gradient_matches_finite_differences(loss):
    outputs, labels = _case(seed=2)
    _, grad_fn = LOSSES[loss]
    expected = central_diff(lambda o: REFERENCE[loss](o, labels), outputs)
    np.testing.assert_allclose(grad_fn(outputs, labels), expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_gradient_matches_jax_grad(loss):
    jax, jnp = jax_x64()
    outputs, labels = _case(seed=3)
    fn, grad_fn = LOSSES[loss]
    with jax.enable_x64(True):
        grad = jax.jit(jax.grad(fn))(jnp.asarray(outputs), jnp.asarray(labels))
        assert grad.dtype == jnp.float64
        grad = np.asarray(grad)
    np.testing.assert_allclose(grad, grad_fn(outputs, labels), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_gradient_on_every_backend(be, loss):
    outputs, labels = _case(seed=4)
    outputs = outputs.astype(np.float32)
    _, grad_fn = LOSSES[loss]
    grad = be.to_host(be.compile(grad_fn)(be.asarray(outputs), be.asarray(labels)))
    assert grad.dtype == np.float32 and grad.shape == (N, K)
    expected = central_diff(lambda o: REFERENCE[loss](o, labels), np.float64(outputs))
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-7)


def test_mse_is_the_mean_over_every_entry():
    # outputs = onehot + c everywhere: every squared error is c^2, so the mean is c^2.
    labels = np.array([0, 2, 1, 2, 0])
    outputs = np.eye(3)[labels] + 0.3
    np.testing.assert_allclose(mse(outputs, labels), 0.09, rtol=1e-14)


def test_cross_entropy_of_uniform_logits_is_log_k(be):
    labels = np.array([0, 6, 3, 1, 5], dtype=np.int32)
    logits = np.full((N, K), 2.5, dtype=np.float32)
    value = be.to_host(be.compile(softmax_cross_entropy)(be.asarray(logits), be.asarray(labels)))
    np.testing.assert_allclose(value, math.log(K), rtol=1e-6)


def test_cross_entropy_survives_logits_of_1e4(be):
    big = 1e4
    # Each row: +1e4 at one class, -1e4 elsewhere. Rows 0 and 2 put the
    # label on the big logit (loss = log(1 + 2 e^-2e4) = 0), rows 1 and 3 on
    # a small one (loss = 1e4 - (-1e4) = 2e4), row 4 ties two classes (log 2).
    argmax = np.array([0, 1, 2, 0, 0])
    labels = np.array([0, 0, 2, 2, 1], dtype=np.int32)
    logits = np.full((N, 3), -big)
    logits[np.arange(N), argmax] = big
    logits[4, 1] = big
    probs = np.zeros((N, 3))
    probs[np.arange(4), argmax[:4]] = 1.0
    probs[4, :2] = 0.5
    expected_loss = (2 * 2 * big + math.log(2)) / N
    expected_grad = (probs - np.eye(3)[labels]) / N

    x, t = be.asarray(logits.astype(np.float32)), be.asarray(labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            value = be.to_host(be.compile(softmax_cross_entropy)(x, t))
            grad = be.to_host(be.compile(softmax_cross_entropy_backward)(x, t))
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(value, expected_loss, rtol=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-12)


def test_cross_entropy_correct_with_huge_margin_is_zero_and_wrong_is_the_margin(be):
    logits = np.array([[1e4, -1e4, -1e4]] * N, dtype=np.float32)
    for labels, expected in ((np.zeros(N, np.int32), 0.0), (np.ones(N, np.int32), 2e4)):
        value = be.to_host(be.compile(softmax_cross_entropy)(be.asarray(logits), be.asarray(labels)))
        assert np.isfinite(value)
        np.testing.assert_allclose(value, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_value_and_grad_equals_the_two_functions_and_the_references(be, dtype):
    if dtype == np.float64 and be.name == "jax":
        pytest.skip("JAX computes in float32 unless x64 is enabled")
    rng = np.random.default_rng(5)
    logits = rng.normal(0.0, 4.0, (37, 10)).astype(dtype)
    logits[3] = 1e4  # a row of ties at a huge logit stays finite
    labels = rng.integers(0, 10, 37).astype(np.int32)
    x, t = be.asarray(logits), be.asarray(labels)
    value, grad = (be.to_host(a) for a in be.compile(softmax_cross_entropy_value_and_grad)(x, t))
    assert grad.dtype == dtype
    assert value == be.to_host(be.compile(softmax_cross_entropy)(x, t))
    np.testing.assert_array_equal(grad, be.to_host(be.compile(softmax_cross_entropy_backward)(x, t)))
    moderate, moderate_labels = np.delete(logits, 3, axis=0), np.delete(labels, 3)
    value, grad = (be.to_host(a) for a in be.compile(softmax_cross_entropy_value_and_grad)(
        be.asarray(moderate), be.asarray(moderate_labels)))
    tight = dtype == np.float64
    np.testing.assert_allclose(value, ref_ce(moderate, moderate_labels), rtol=1e-12 if tight else 1e-5)
    expected = central_diff(lambda o: ref_ce(o, moderate_labels), np.float64(moderate))
    np.testing.assert_allclose(grad, expected, rtol=1e-6 if tight else 1e-4, atol=1e-9 if tight else 1e-7)
