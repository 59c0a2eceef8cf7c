"""A trained model as "28x28 digit in, ten probabilities out", on the backend asked for.

NumPy is the default in gui.py: one digit is a few hundred thousand
multiply-adds, far below what a GPU launch or a JIT compile costs, and the
window must open on any machine.
"""

import numpy as np

from backends import XpnetError
from nn.preprocess import SIDE
from nn.serialize import load_model

CLASSES = 10


class Predictor:
    def __init__(self, model, params, be, source="the model"):
        if model.sizes[0] != SIDE * SIDE or model.sizes[-1] != CLASSES:
            raise XpnetError(
                f"{source} maps {model.sizes[0]} inputs to {model.sizes[-1]} classes; gui.py needs an MNIST "
                f"model (784 inputs, 10 classes): train one with `uv run train.py --out {source}`"
            )
        self.model, self.be = model, be
        self._params = be.tree_asarray(params)
        self._predict = be.make_predict(model)

    def set_params(self, params):
        """Read with these weights (host arrays of the same model) from now on."""
        self._params = self.be.tree_asarray(params)

    def host_params(self):
        return self.be.tree_to_host(self._params)

    def __call__(self, image):
        """Probabilities (float64, shape (10,), summing to 1) for one float32 28x28 image."""
        x = self.be.asarray(np.asarray(image, np.float32).reshape(1, SIDE * SIDE))
        out = np.asarray(self.be.to_host(self._predict(self._params, x))[0], np.float64)
        if self.model.output != "softmax":
            # A linear head trained with MSE aims at one-hot targets: read its
            # non-negative part as unnormalised probabilities.
            out = np.clip(out, 0.0, None)
            total = out.sum()
            return out / total if total > 0 else np.full(CLASSES, 1.0 / CLASSES)
        return out


def load_predictor(path, be):
    """(Predictor, None), or (None, a one-line reason) when ``path`` is no usable model.

    A missing or broken model is something for the window to explain, not a
    crash: the person can still draw, and reads how to train one.
    """
    try:
        model, params = load_model(path)
        return Predictor(model, params, be, source=str(path)), None
    except XpnetError as exc:
        return None, str(exc)
