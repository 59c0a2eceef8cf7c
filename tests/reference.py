"""Independent references for the tests: float64 NumPy formulas written out
here (not imported from ``nn``), central finite differences, and tolerances.
"""

import numpy as np
import pytest

# float32 results compared with float64 references.
F32 = dict(rtol=2e-5, atol=2e-6)


# -- closed-form activations, losses ------------------------------------------
def ref_activation(name, z):
    z = np.asarray(z, dtype=np.float64)
    if name == "relu":
        return np.where(z > 0, z, 0.0)
    if name == "leaky_relu":
        return np.where(z > 0, z, 0.01 * z)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "tanh":
        return (np.exp(z) - np.exp(-z)) / (np.exp(z) + np.exp(-z))
    if name == "linear":
        return z.copy()
    if name == "softmax":
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)
    raise KeyError(name)


def ref_one_hot(labels, k):
    out = np.zeros((len(labels), k))
    out[np.arange(len(labels)), labels] = 1.0
    return out


def ref_ce(logits, labels):
    """mean_n( log sum_k exp z_nk - z_n,y_n ), written for moderate logits."""
    z = np.asarray(logits, dtype=np.float64)
    return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(z)), labels]))


def ref_mse(outputs, labels):
    o = np.asarray(outputs, dtype=np.float64)
    return float(np.mean((o - ref_one_hot(labels, o.shape[1])) ** 2))


def ref_mlp_logits(params, x, activations, masks=None, keep=1.0):
    """The MLP's logits by hand: x -> [act(xW+b) * mask/keep]... -> xW+b."""
    a = np.asarray(x, dtype=np.float64)
    for i, layer in enumerate(params[:-1]):
        a = ref_activation(activations[i], a @ np.float64(layer["w"]) + np.float64(layer["b"]))
        if masks is not None:
            a = a * np.asarray(masks[i], dtype=np.float64) / keep
    return a @ np.float64(params[-1]["w"]) + np.float64(params[-1]["b"])


# -- finite differences ---------------------------------------------------------
def central_diff(f, x, eps=1e-6):
    """d f / d x for scalar ``f`` of a float64 array ``x``, entry by entry."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f(x)
        flat[i] = old - eps
        down = f(x)
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


def tree_central_diff(f, params, eps=1e-6):
    """Finite-difference gradient of scalar ``f(params)`` for every entry of every leaf."""
    params = [{k: np.array(v, dtype=np.float64) for k, v in layer.items()} for layer in params]
    grads = []
    for layer in params:
        g = {}
        for k in layer:
            original = layer[k]

            def f_leaf(value, layer=layer, k=k):
                layer[k] = value
                return f(params)

            g[k] = central_diff(f_leaf, original, eps)
            layer[k] = original
        grads.append(g)
    return grads


def assert_trees_close(actual, expected, exact=False, **tol):
    """Two lists of per-layer dicts hold the same arrays: bit for bit when ``exact``, else within ``tol``."""
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert sorted(a) == sorted(e)
        for k in e:
            if exact:
                np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(e[k]), err_msg=f"layer {i} {k}")
            else:
                np.testing.assert_allclose(np.asarray(a[k]), np.asarray(e[k]), err_msg=f"layer {i} {k}", **tol)


def tree_f64(tree):
    return [{k: np.asarray(v, dtype=np.float64) for k, v in layer.items()} for layer in tree]


def tree_f32(tree):
    return [{k: np.asarray(v, dtype=np.float32) for k, v in layer.items()} for layer in tree]


# -- data ---------------------------------------------------------------------------
def blobs(n=300, features=10, classes=3, separation=1.5, seed=0):
    """Gaussian blobs: class centres ~ N(0, separation^2), unit noise; float32/int32."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, separation, (classes, features))
    y = rng.integers(0, classes, n).astype(np.int32)
    x = (centres[y] + rng.normal(0.0, 1.0, (n, features))).astype(np.float32)
    return x, y


def jax_x64():
    """``(jax, jax.numpy)`` for float64 reference gradients; skips without JAX."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    return jax, jnp


def backend_params(*ids):
    """A subset of conftest's backends, for
    ``@pytest.mark.parametrize("be", backend_params(...), indirect=True)``."""
    return [pytest.param(i, id=i, marks=[pytest.mark.gpu] if i == "cupy" else []) for i in ids]
