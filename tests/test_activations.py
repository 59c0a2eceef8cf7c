"""Activations: forward against closed forms, backward against finite
differences and jax.vjp, and the numerically delicate cases."""

import math
import warnings

import numpy as np
import pytest

from nn.activations import ACTIVATIONS, sigmoid, sigmoid_backward, softmax
from tests.reference import F32, central_diff, jax_x64, ref_activation

NAMES = sorted(ACTIVATIONS)


def _inputs(name, shape=(5, 7), seed=0):
    """Normal(0, 2) pre-activations; for the ReLUs at least 1e-3 off the kink
    (finite differences step 1e-6), with some entries right beside it."""
    z = np.random.default_rng(seed).normal(0.0, 2.0, shape)
    if name in ("relu", "leaky_relu"):
        z = np.sign(z) * np.maximum(np.abs(z), 1e-3)
        z.flat[:4] = [1e-3, -1e-3, 0.02, -0.02]
    return z


def _cotangent(shape=(5, 7), seed=100):
    return np.random.default_rng(seed).normal(0.0, 1.0, shape)


@pytest.mark.parametrize("name", NAMES)
def test_forward_and_backward_on_every_backend(be, name):
    z, r = _inputs(name).astype(np.float32), _cotangent().astype(np.float32)
    forward, backward = ACTIVATIONS[name]

    def both(r, z):
        y = forward(z)
        return y, backward(r, z, y)

    y, dz = (be.to_host(a) for a in be.compile(both)(be.asarray(r), be.asarray(z)))
    assert y.shape == dz.shape == z.shape and y.dtype == dz.dtype == np.float32
    np.testing.assert_allclose(y, ref_activation(name, z), **F32)
    # d/dz sum(r * f(z)) is exactly the vector-Jacobian product backward computes
    expected = central_diff(lambda zz: np.sum(r * ref_activation(name, zz)), np.float64(z))
    np.testing.assert_allclose(dz, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_float64_in_float64_out(name):
    z = _inputs(name)
    forward, backward = ACTIVATIONS[name]
    y = forward(z)
    assert y.dtype == np.float64
    assert backward(_cotangent(), z, y).dtype == np.float64
    np.testing.assert_allclose(y, ref_activation(name, z), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", NAMES)
def test_backward_matches_finite_differences(name):
    z, r = _inputs(name, seed=1), _cotangent()
    forward, backward = ACTIVATIONS[name]
    # d/dz sum(r * f(z)) is exactly the vector-Jacobian product backward computes.
    expected = central_diff(lambda zz: np.sum(r * ref_activation(name, zz)), z)
    np.testing.assert_allclose(backward(r, z, forward(z)), expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_backward_matches_jax_vjp(name):
    jax, jnp = jax_x64()
    z, r = _inputs(name, seed=2), _cotangent(seed=3)
    forward, backward = ACTIVATIONS[name]
    with jax.enable_x64(True):
        dz = jax.jit(lambda z, r: jax.vjp(forward, z)[1](r)[0])(jnp.asarray(z), jnp.asarray(r))
        assert dz.dtype == jnp.float64
        dz = np.asarray(dz)
    np.testing.assert_allclose(dz, backward(r, z, forward(z)), rtol=1e-12, atol=1e-14)


EXTREMES = [-1e4, -800.0, -50.0, -1.0, 0.0, 1.0, 50.0, 800.0, 1e4]


def _check_sigmoid_extremes(y, dz):
    assert y.shape == dz.shape == (len(EXTREMES),)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dz))
    assert np.all((y >= 0) & (y <= 1))
    # exp(-800) underflows even in float64: the limits are exact.
    assert y[0] == 0.0 and y[1] == 0.0 and y[-2] == 1.0 and y[-1] == 1.0
    assert y[4] == 0.5
    assert dz[0] == 0.0 and dz[-1] == 0.0
    # sigmoid(-50) = e^-50 / (1 + e^-50) ~ 2e-22 is representable and must not be lost.
    tiny = math.exp(-50.0) / (1.0 + math.exp(-50.0))
    np.testing.assert_allclose(y[2], tiny, rtol=1e-5)
    np.testing.assert_allclose(y[[3, 5]], [1 / (1 + math.e), 1 / (1 + math.exp(-1.0))], rtol=1e-6)
    assert np.all(np.diff(y) >= 0), "sigmoid must be monotone"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_has_no_overflow_on_numpy(dtype):
    z = np.array(EXTREMES, dtype=dtype)
    # Underflow of exp() to 0 is the intended result; overflow, 0/0 and
    # division by zero are not, and no RuntimeWarning may escape.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            y = sigmoid(z)
            dz = sigmoid_backward(np.ones_like(z), z, y)
    assert y.dtype == dtype
    _check_sigmoid_extremes(y, dz)


def test_sigmoid_extremes_on_every_backend(be):
    def both(z):
        y = sigmoid(z)
        return y, sigmoid_backward(be.xp.ones_like(z), z, y)

    y, dz = be.compile(both)(be.asarray(np.array(EXTREMES, dtype=np.float32)))
    _check_sigmoid_extremes(be.to_host(y), be.to_host(dz))


def test_softmax_of_huge_logits_is_exact_and_sums_to_one(be):
    z = np.array(
        [[1e4, -1e4, 0.0], [1e4, 1e4, -1e4], [-1e4, -1e4, -1e4], [3e4, 2e4, -3e4], [-1e4, 0.0, 1e4]],
        dtype=np.float32,
    )
    expected = np.array(
        [[1, 0, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3], [1, 0, 0], [0, 0, 1]], dtype=np.float64
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            y = be.to_host(be.compile(softmax)(be.asarray(z)))
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-7)


def test_softmax_is_shift_invariant_and_over_the_last_axis(be):
    z = np.random.default_rng(7).normal(0, 3, (5, 7))
    shifted = z + np.arange(5)[:, None] * 100.0  # a different large shift per row
    y = be.to_host(be.compile(softmax)(be.asarray(shifted.astype(np.float32))))
    np.testing.assert_allclose(y, ref_activation("softmax", z), rtol=1e-4, atol=1e-6)
