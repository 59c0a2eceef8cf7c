"""Optimizers, simplest first, all under one functional contract:

    state = opt.init(params)
    params, state = opt.update(params, grads, state, lr)

Nothing is updated in place, so ``update`` runs eagerly on NumPy and CuPy and
traced inside ``jax.jit``. ``lr`` is an argument, not a field, so a schedule
changes it every step without recompiling anything. Weight decay is
decoupled (Loshchilov & Hutter): ``w -= lr * weight_decay * w``, applied to
weights and never to biases.

``update_flat(params, grads, state, lr, scratch, n_weights)`` is the same
update for array modules with ``out=`` (NumPy, CuPy) on flat buffers
(``backends.flat``: every parameter in one 1-D array, weights before
``n_weights``, biases after it, and each moment tree likewise): the same
operations in the same order, so the same bits, written into the buffers a
span at a time with three span-sized scratch buffers (two float, one
boolean; ``scratch``, a dict the first call fills) instead of a dozen new
arrays per parameter and step. Both set moments that fall below float32's
(or float64's) smallest normal number to 0: ``_flushed`` says why. Where a C
compiler is at hand the NumPy backend runs ``update_flat``'s float32
operations as one compiled pass instead (``backends/cpu/optimizers.c``),
tested against it bit for bit.
"""

import math
from dataclasses import dataclass

from backends import XpnetError, array_module

from .tree import tree_map


def _decay(name, param, weight_decay):
    """The decoupled weight-decay term for one parameter (0 for biases)."""
    return weight_decay * param if (weight_decay and name == "w") else 0.0


# The flat update works through its buffers this many numbers at a time, so
# its dozen passes over a span run in the CPU's cache, not over buffers of up
# to hundreds of megabytes (README, A NumPy step, split).
SPAN = 1 << 16


def _spans(xp, params, n_weights, scratch):
    """(slice, weights?, three scratch buffers) for each span of at most SPAN numbers; none straddles n_weights."""
    if "span" not in scratch:
        n = min(SPAN, params.shape[0])
        scratch["span"] = (xp.empty(n, params.dtype), xp.empty(n, params.dtype), xp.empty(n, dtype=bool))
    for begin, end, weights in ((0, n_weights, True), (n_weights, params.shape[0], False)):
        for start in range(begin, end, SPAN):
            stop = min(start + SPAN, end)
            yield slice(start, stop), weights, [b[: stop - start] for b in scratch["span"]]


# Adam flushes its moments every FLUSH_EVERY steps: a subnormal then lives
# at most that long, and the three extra passes cost a sixteenth.
FLUSH_EVERY = 16


def _flushed(xp, moment, now=True):
    """``moment`` with values below its dtype's smallest normal number set to 0 (when ``now``).

    The moment of a weight whose gradient is nearly always 0 (a border
    pixel's) decays geometrically after each rare non-zero one and lingers
    among the subnormal numbers, on which x86 CPUs are many times slower:
    they doubled a NumPy epoch of the default recipe by its fourth epoch
    (README, A NumPy step, split). XLA on CPUs flushes them to zero anyway.
    """
    below = xp.abs(moment) < xp.finfo(moment.dtype).tiny
    return xp.where(below & now, xp.zeros((), moment.dtype), moment)


def _flush_in_place(xp, moment, magnitude, below):
    """``_flushed`` into ``moment`` itself, with a float and a boolean scratch buffer of its shape."""
    xp.abs(moment, out=magnitude)
    xp.less(magnitude, xp.finfo(moment.dtype).tiny, out=below)
    xp.copyto(moment, 0, where=below)


def _step_in_place(xp, param, direction, lr, decay, first):
    """``param -= lr * (direction + decay * param)`` (decay 0 for biases), as ``update`` computes it."""
    if decay:
        xp.multiply(param, decay, out=first)
        first += direction
    else:
        xp.copyto(first, direction)
    first *= lr
    param -= first


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

    @property
    def kind(self):
        """What a backend reads to pick a fused kernel for this update: None for a subclass, whose
        update may be another."""
        return "sgd" if type(self) is SGD else None

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
            velocity = tree_map(lambda v, g: _flushed(array_module(v), self.momentum * v + g), state["velocity"], grads)
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

    def update_flat(self, params, grads, state, lr, scratch, n_weights):
        xp = array_module(params)
        for span, weights, (first, second, below) in _spans(xp, params, n_weights, scratch):
            g = grads[span]
            direction = g
            if self.momentum:
                velocity = state["velocity"][span]
                velocity *= self.momentum
                velocity += g
                _flush_in_place(xp, velocity, first, below)
                direction = velocity
                if self.nesterov:
                    xp.multiply(velocity, self.momentum, out=second)
                    second += g
                    direction = second
            _step_in_place(xp, params[span], direction, lr, self.weight_decay if weights else 0.0, first)


@dataclass(frozen=True)
class Adam:
    """m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  t += 1
    w -= lr * ( m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps) + wd * w )
    """

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0

    @property
    def kind(self):
        """As ``SGD.kind``."""
        return "adam" if type(self) is Adam else None

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

    def bias_scales(self, t, dtype):
        """(1 / (1 - b1^t), 1 / (1 - b2^t)) as 0-d arrays of ``dtype``.

        ``1 - b^t`` computed as it reads loses five digits to cancellation in
        float32 (b2 = 0.999: 1e-5 relative at t = 1); ``-expm1(t log b)`` keeps
        them, to float32 or float64 rounding, whichever the parameters use.
        """
        t = t.astype(dtype)
        expm1 = array_module(t).expm1
        return 1 / -expm1(t * math.log(self.beta1)), 1 / -expm1(t * math.log(self.beta2))

    def update(self, params, grads, state, lr):
        b1, b2 = self.beta1, self.beta2
        xp = array_module(state["t"])
        t = state["t"] + 1
        now = t % FLUSH_EVERY == 0
        m = tree_map(lambda m, g: _flushed(xp, b1 * m + (1 - b1) * g, now), state["m"], grads)
        v = tree_map(lambda v, g: _flushed(xp, b2 * v + (1 - b2) * (g * g), now), state["v"], grads)
        m_scale, v_scale = self.bias_scales(t, params[0]["w"].dtype)
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

    def advance_flat(self, state, scratch, dtype):
        """The step count of ``update_flat``'s ``state`` advanced in place: (m_scale, v_scale, flush now?).

        A fused update (``backends.cpu_kernels``) calls it as ``update_flat`` does, so both count alike.
        """
        state["t"] += 1
        m_scale, v_scale = self.bias_scales(state["t"], dtype)
        # The step count on the host too, read from the device once: a read every step would wait
        # for the device (CuPy) in the middle of the training loop.
        scratch["t"] = scratch["t"] + 1 if "t" in scratch else int(state["t"])
        return m_scale, v_scale, scratch["t"] % FLUSH_EVERY == 0

    def update_flat(self, params, grads, state, lr, scratch, n_weights):
        b1, b2 = self.beta1, self.beta2
        xp = array_module(params)
        m_scale, v_scale, now = self.advance_flat(state, scratch, params.dtype)
        for span, weights, (first, second, below) in _spans(xp, params, n_weights, scratch):
            g, m, v = grads[span], state["m"][span], state["v"][span]
            m *= b1
            xp.multiply(g, 1 - b1, out=first)
            m += first
            if now:
                _flush_in_place(xp, m, first, below)
            v *= b2
            xp.multiply(g, g, out=first)
            first *= 1 - b2
            v += first
            if now:
                _flush_in_place(xp, v, first, below)
            xp.multiply(v, v_scale, out=first)
            xp.sqrt(first, out=first)
            first += self.eps
            xp.multiply(m, m_scale, out=second)
            xp.divide(second, first, out=second)
            _step_in_place(xp, params[span], second, lr, self.weight_decay if weights else 0.0, first)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}
