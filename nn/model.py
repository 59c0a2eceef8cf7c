"""A multi-layer perceptron: its forward pass and its hand-written backward.

The model object holds only hyperparameters; parameters are a separate
pytree (``[{"w", "b"}, ...]``) passed in and returned, so the same methods
run eagerly on NumPy or CuPy and traced under ``jax.jit`` or ``jax.grad``.
"""

from dataclasses import asdict, dataclass

from backends import XpnetError

from .activations import ACTIVATIONS, HIDDEN_ACTIVATIONS
from .init import INITIALIZERS, init_params
from .layers import dense, dense_backward, dropout, dropout_backward
from .losses import LOSSES, VALUE_AND_GRAD
from .regularizers import REGULARIZERS, penalty, penalty_grad


@dataclass(frozen=True)
class MLP:
    """sizes: (inputs, hidden..., classes); activations: one name per hidden
    layer, or one name for all of them.

    ``loss="ce"`` fuses the softmax into the loss; ``loss="mse"`` compares the
    ``output`` activation (softmax or linear) with one-hot targets.
    """

    sizes: tuple = (784, 128, 64, 10)
    activations: tuple = "relu"
    output: str = "softmax"
    loss: str = "ce"
    dropout: float = 0.0
    reg: str = "none"
    reg_lambda: float = 0.0
    init: str = "he"

    def __post_init__(self):
        object.__setattr__(self, "sizes", tuple(int(n) for n in self.sizes))
        names = self.activations
        if isinstance(names, str):
            names = (names,) * (len(self.sizes) - 2)
        object.__setattr__(self, "activations", tuple(names))
        if len(self.sizes) < 2 or any(n < 1 for n in self.sizes):
            raise XpnetError(
                f"layer sizes {list(self.sizes)} are invalid: every layer needs at least 1 unit"
            )
        if len(self.activations) != len(self.sizes) - 2:
            raise XpnetError(
                f"{len(self.sizes) - 2} hidden layers need as many activations, "
                f"got {len(self.activations)}"
            )
        for name in self.activations:
            if name not in HIDDEN_ACTIVATIONS:
                raise XpnetError(
                    f"unknown activation {name!r}: choose one of {', '.join(HIDDEN_ACTIVATIONS)}"
                )
        if self.output not in ("softmax", "linear"):
            raise XpnetError(f"unknown output {self.output!r}: choose softmax or linear")
        if self.loss not in LOSSES:
            raise XpnetError(f"unknown loss {self.loss!r}: choose ce or mse")
        if self.loss == "ce" and self.output != "softmax":
            raise XpnetError("cross-entropy needs the softmax output: use --loss mse for a linear output")
        if not 0.0 <= self.dropout < 1.0:
            raise XpnetError(f"dropout rate {self.dropout} must be in [0, 1)")
        if self.reg not in REGULARIZERS:
            raise XpnetError(f"unknown penalty {self.reg!r}: choose one of {', '.join(REGULARIZERS)}")
        if self.reg_lambda < 0:
            raise XpnetError(f"--reg-lambda {self.reg_lambda} must be >= 0")
        if self.init not in INITIALIZERS:
            raise XpnetError(f"unknown init {self.init!r}: choose one of {', '.join(INITIALIZERS)}")

    # -- description --------------------------------------------------------
    def config(self):
        """JSON-ready description; ``MLP(**config)`` rebuilds the model."""
        return {**asdict(self), "sizes": list(self.sizes), "activations": list(self.activations)}

    def init_params(self, seed):
        """Host float32 parameters; the backend moves them to its device."""
        return init_params(self.sizes, self.init, seed)

    # -- forward --------------------------------------------------------------
    def forward(self, params, x, masks=None):
        """Logits (the last layer's pre-activation) and the cache the backward needs.

        ``masks`` holds one 0/1 dropout mask per hidden layer while training,
        None otherwise. Dropout never touches the logits.
        """
        cache = []
        a = x
        for i, layer in enumerate(params[:-1]):
            z = dense(a, layer["w"], layer["b"])
            act, _ = ACTIVATIONS[self.activations[i]]
            y = act(z)
            cache.append((a, z, y))
            a = y if masks is None else dropout(y, masks[i], 1.0 - self.dropout)
        logits = dense(a, params[-1]["w"], params[-1]["b"])
        cache.append((a, None, None))
        return logits, cache

    def predict(self, params, x):
        """The network's output: class probabilities for a softmax head."""
        logits, _ = self.forward(params, x)
        return ACTIVATIONS[self.output][0](logits)

    def objective(self, params, x, y, masks=None, penalty=True):
        """(loss, logits): the data loss, plus the weight penalty when asked."""
        logits, _ = self.forward(params, x, masks)
        value = self._data_loss(logits, y)
        if penalty:
            value = value + self.penalty(params)
        return value, logits

    def penalty(self, params):
        return penalty(params, self.reg, self.reg_lambda)

    def _data_loss(self, logits, y):
        loss_fn, _ = LOSSES[self.loss]
        if self.loss == "ce":
            return loss_fn(logits, y)
        return loss_fn(ACTIVATIONS[self.output][0](logits), y)

    # -- backward -------------------------------------------------------------
    def loss_and_grads(self, params, x, y, masks=None, out=None):
        """(loss, grads, logits) with grads computed by hand, layer by layer.

        ``out``: a gradient tree to write into and return (NumPy, CuPy), as
        the flat buffers of ``backends.flat`` are; None makes new arrays.
        """
        logits, cache = self.forward(params, x, masks)
        if self.loss in VALUE_AND_GRAD:
            loss, dz = VALUE_AND_GRAD[self.loss](logits, y)
        else:
            loss, dz = self._data_loss(logits, y), self._output_grad(logits, y)
        loss = loss + self.penalty(params)
        keep = 1.0 - self.dropout
        grads = [None] * len(params) if out is None else out
        for i in reversed(range(len(params))):
            a_in = cache[i][0]
            dx, dw, db = dense_backward(dz, a_in, params[i]["w"], need_dx=i > 0, out=None if out is None else out[i])
            extra = penalty_grad(params[i]["w"], self.reg, self.reg_lambda)
            if out is None:
                grads[i] = {"w": dw if extra is None else dw + extra, "b": db}
            elif extra is not None:
                dw += extra
            if i > 0:
                _, z, y_act = cache[i - 1]
                if masks is not None:
                    dx = dropout_backward(dx, masks[i - 1], keep)
                _, act_backward = ACTIVATIONS[self.activations[i - 1]]
                dz = act_backward(dx, z, y_act)
        return loss, grads, logits

    def _output_grad(self, logits, y):
        """dLoss/dlogits through the output activation (cross-entropy has it fused: VALUE_AND_GRAD)."""
        _, loss_backward = LOSSES[self.loss]
        out_fn, out_backward = ACTIVATIONS[self.output]
        out = out_fn(logits)
        return out_backward(loss_backward(out, y), logits, out)

    # -- dropout ----------------------------------------------------------------
    def dropout_masks(self, be, seed, step, batch, dtype):
        """One keep-mask per hidden layer for training step ``step``, or None."""
        if self.dropout == 0.0:
            return None
        keep = 1.0 - self.dropout
        return [
            be.keep_mask(seed, step, i, (batch, units), keep, dtype)
            for i, units in enumerate(self.sizes[1:-1])
        ]
