"""The dense layer and inverted dropout, forward beside backward."""

from backends import array_module


def dense(x, w, b):
    """z = x W + b, with x (N, in), W (in, out), b (out,)"""
    return x @ w + b


def dense_backward(dz, x, w, need_dx=True, out=None):
    """dW = x^T dz, db = sum_n dz, dx = dz W^T (skipped for the input layer).

    ``out``: ``{"w", "b"}`` arrays to write dW and db into (array modules
    with ``out=``: NumPy, CuPy), so a step allocates no gradient arrays.
    """
    xp = array_module(dz)
    dx = dz @ w.T if need_dx else None
    if out is None:
        return dx, x.T @ dz, xp.sum(dz, axis=0)
    return dx, xp.matmul(x.T, dz, out=out["w"]), xp.sum(dz, axis=0, out=out["b"])


def dropout(a, keep_mask, keep_prob):
    """y = a * mask / p, mask ~ Bernoulli(p): inverted scaling keeps E[y] = a,
    so inference uses the activations unchanged."""
    return a * (keep_mask * (1.0 / keep_prob)).astype(a.dtype)


def dropout_backward(dy, keep_mask, keep_prob):
    """dx = dy * mask / p"""
    return dy * (keep_mask * (1.0 / keep_prob)).astype(dy.dtype)
