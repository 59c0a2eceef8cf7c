"""Weight initialisers. They run on the host with NumPy from a seed, so every
backend starts from the very same float32 numbers.

    he      W ~ Normal(0, sqrt(2 / fan_in))             (for ReLU-like units)
    glorot  W ~ Uniform(+-sqrt(6 / (fan_in + fan_out))) (for tanh, sigmoid)

Biases start at zero.
"""

import numpy as np

INITIALIZERS = ("he", "glorot")


def he(rng, fan_in, fan_out):
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))


def glorot(rng, fan_in, fan_out):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


def init_params(sizes, method, seed, dtype=np.float32):
    """Host parameters ``[{"w": (in, out), "b": (out,)}, ...]`` for ``sizes``."""
    draw = {"he": he, "glorot": glorot}[method]
    rng = np.random.default_rng(seed)
    return [
        {"w": draw(rng, fan_in, fan_out).astype(dtype), "b": np.zeros(fan_out, dtype)}
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:])
    ]
