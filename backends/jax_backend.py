"""The JAX backend: the whole training step compiled by XLA with ``jax.jit``.

Gradients come from ``jax.grad`` of the model's forward pass by default; the
hand-written backward from ``nn`` also runs here (``--grad manual``), traced
and compiled the same way, so the two can be compared on equal terms.
"""

import numpy

from .base import Backend


class JaxBackend(Backend):
    name = "jax"
    grad_modes = ("autodiff", "manual")

    def __init__(self):
        import jax
        import jax.numpy as jnp

        self.jax = jax
        self.xp = jnp

    @classmethod
    def unavailable_reason(cls):
        try:
            import jax  # noqa: F401
        except ImportError:
            return "JAX is not installed (uv sync installs it)"
        return None

    def to_host(self, a):
        return numpy.asarray(self.jax.device_get(a))

    def synchronize(self):
        # JAX dispatches asynchronously; this waits for every queued computation.
        self.jax.effects_barrier()

    def block(self, tree):
        return self.jax.block_until_ready(tree)

    def device_description(self):
        device = self.jax.devices()[0]
        return f"{device.platform.upper()} ({device.device_kind}), JAX {self.jax.__version__}"

    def compile(self, fn, donate_argnums=()):
        return self.jax.jit(fn, donate_argnums=donate_argnums)

    def keep_mask(self, seed, step, layer, shape, keep_prob, dtype):
        random = self.jax.random
        key = random.fold_in(random.fold_in(random.key(seed), step), layer)
        return random.bernoulli(key, keep_prob, shape).astype(dtype)

    def loss_and_grads_fn(self, model, grad):
        if grad == "manual":
            return model.loss_and_grads
        value_and_grad = self.jax.value_and_grad(model.objective, has_aux=True)

        def loss_and_grads(params, x, y, masks):
            (loss, logits), grads = value_and_grad(params, x, y, masks)
            return loss, grads, logits

        return loss_and_grads


BACKEND_CLASS = JaxBackend
