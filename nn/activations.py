"""Activations, each forward with its derivative right beside it.

Every backward has the signature ``backward(dy, z, y) -> dz`` where ``z`` is
the input and ``y = forward(z)`` the output kept from the forward pass, so
each backward uses whichever of the two is cheaper.
"""

from backends import array_module

LEAKY_SLOPE = 0.01


def relu(z):
    """y = max(z, 0)"""
    return array_module(z).maximum(z, 0)


def relu_backward(dy, z, y):
    """dz = dy * [z > 0]"""
    return dy * (z > 0).astype(dy.dtype)


def leaky_relu(z):
    """y = z if z > 0 else 0.01 z"""
    xp = array_module(z)
    return xp.where(z > 0, z, z * LEAKY_SLOPE)


def leaky_relu_backward(dy, z, y):
    """dz = dy * (1 if z > 0 else 0.01)"""
    xp = array_module(z)
    return dy * xp.where(z > 0, 1.0, LEAKY_SLOPE).astype(dy.dtype)


def sigmoid(z):
    """y = 1 / (1 + exp(-z)), evaluated without overflow for large |z|."""
    xp = array_module(z)
    # exp of a non-positive number never overflows: use e = exp(-|z|) and
    # pick 1/(1+e) or e/(1+e) by the sign of z.
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_backward(dy, z, y):
    """dz = dy * y (1 - y)"""
    return dy * y * (1 - y)


def tanh(z):
    """y = tanh(z)"""
    return array_module(z).tanh(z)


def tanh_backward(dy, z, y):
    """dz = dy * (1 - y^2)"""
    return dy * (1 - y * y)


def linear(z):
    """y = z"""
    return z


def linear_backward(dy, z, y):
    """dz = dy"""
    return dy


def softmax(z):
    """y_i = exp(z_i - max z) / sum_j exp(z_j - max z), over the last axis."""
    # The array methods, not xp.max / xp.sum: NumPy's module functions add
    # a dispatch layer that was a fifth of reading one digit (measured).
    e = array_module(z).exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward(dy, z, y):
    """dz_i = y_i (dy_i - sum_j dy_j y_j): the Jacobian-vector product."""
    xp = array_module(dy)
    return y * (dy - xp.sum(dy * y, axis=-1, keepdims=True))


# name -> (forward, backward); the names are what model files and the CLI use.
ACTIVATIONS = {
    "relu": (relu, relu_backward),
    "leaky_relu": (leaky_relu, leaky_relu_backward),
    "sigmoid": (sigmoid, sigmoid_backward),
    "tanh": (tanh, tanh_backward),
    "linear": (linear, linear_backward),
    "softmax": (softmax, softmax_backward),
}
HIDDEN_ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh", "linear")
