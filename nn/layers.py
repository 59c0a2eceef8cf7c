"""The dense layer and inverted dropout, forward beside backward."""

from backends import array_module


def dense(x, w, b):
    """z = x W + b, with x (N, in), W (in, out), b (out,)"""
    return x @ w + b


def dense_backward(dz, x, w, need_dx=True):
    """dW = x^T dz, db = sum_n dz, dx = dz W^T (skipped for the input layer)."""
    xp = array_module(dz)
    dx = dz @ w.T if need_dx else None
    return dx, x.T @ dz, xp.sum(dz, axis=0)


def dropout(a, keep_mask, keep_prob):
    """y = a * mask / p, mask ~ Bernoulli(p): inverted scaling keeps E[y] = a,
    so inference uses the activations unchanged."""
    return a * (keep_mask * (1.0 / keep_prob)).astype(a.dtype)


def dropout_backward(dy, keep_mask, keep_prob):
    """dx = dy * mask / p"""
    return dy * (keep_mask * (1.0 / keep_prob)).astype(dy.dtype)
