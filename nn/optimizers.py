"""Optimizers, simplest first, all under one functional contract:

    state = opt.init(params)
    params, state = opt.update(params, grads, state, lr)

Nothing is updated in place, so ``update`` runs eagerly on NumPy and CuPy and
traced inside ``jax.jit``. ``lr`` is an argument, not a field, so a schedule
changes it every step without recompiling anything. Weight decay is
decoupled (Loshchilov & Hutter): ``w -= lr * weight_decay * w``, applied to
weights and never to biases.
"""

from dataclasses import dataclass

from backends import XpnetError, array_module

from .tree import tree_map


def _decay(name, param, weight_decay):
    """The decoupled weight-decay term for one parameter (0 for biases)."""
    return weight_decay * param if (weight_decay and name == "w") else 0.0


def _check(name, value, low, high=None):
    if value < low or (high is not None and value >= high):
        bound = f">= {low}" if high is None else f"in [{low}, {high})"
        raise XpnetError(f"{name} {value} must be {bound}")


@dataclass(frozen=True)
class SGD:
    """Plain:     w -= lr * g
    Momentum:  v = mu v + g;  w -= lr * v
    Nesterov:  v = mu v + g;  w -= lr * (g + mu v)
    """

    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0

    def __post_init__(self):
        _check("--momentum", self.momentum, 0.0, 1.0)
        _check("--weight-decay", self.weight_decay, 0.0)
        if self.nesterov and self.momentum == 0:
            raise XpnetError("--nesterov needs a momentum > 0: add e.g. --momentum 0.9")

    def init(self, params):
        if self.momentum == 0:
            return {}
        return {"velocity": tree_map(array_module(params[0]["w"]).zeros_like, params)}

    def update(self, params, grads, state, lr):
        if self.momentum == 0:
            direction, state = grads, {}
        else:
            velocity = tree_map(lambda v, g: self.momentum * v + g, state["velocity"], grads)
            if self.nesterov:
                direction = tree_map(lambda g, v: g + self.momentum * v, grads, velocity)
            else:
                direction = velocity
            state = {"velocity": velocity}
        new_params = [
            {k: p[k] - lr * (d[k] + _decay(k, p[k], self.weight_decay)) for k in p}
            for p, d in zip(params, direction)
        ]
        return new_params, state


@dataclass(frozen=True)
class Adam:
    """m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  t += 1
    w -= lr * ( m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps) + wd * w )
    """

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self):
        _check("beta1", self.beta1, 0.0, 1.0)
        _check("beta2", self.beta2, 0.0, 1.0)
        _check("--weight-decay", self.weight_decay, 0.0)
        if not self.eps > 0:
            raise XpnetError(f"eps {self.eps} must be > 0: it keeps the update finite where v is 0")

    def init(self, params):
        xp = array_module(params[0]["w"])
        # m and v get buffers of their own: JAX donates each one separately.
        return {
            "t": xp.zeros((), dtype=xp.float32),
            "m": tree_map(xp.zeros_like, params),
            "v": tree_map(xp.zeros_like, params),
        }

    def update(self, params, grads, state, lr):
        b1, b2 = self.beta1, self.beta2
        xp = array_module(state["t"])
        t = state["t"] + 1
        m = tree_map(lambda m, g: b1 * m + (1 - b1) * g, state["m"], grads)
        v = tree_map(lambda v, g: b2 * v + (1 - b2) * (g * g), state["v"], grads)
        m_scale = 1 / (1 - b1**t)
        v_scale = 1 / (1 - b2**t)
        new_params = [
            {
                k: p[k]
                - lr
                * (
                    (m_l[k] * m_scale) / (xp.sqrt(v_l[k] * v_scale) + self.eps)
                    + _decay(k, p[k], self.weight_decay)
                )
                for k in p
            }
            for p, m_l, v_l in zip(params, m, v)
        ]
        return new_params, {"t": t, "m": m, "v": v}


OPTIMIZERS = {"sgd": SGD, "adam": Adam}
