"""One model's parameters, gradients and optimizer state, each in one flat buffer.

The per-layer ``{"w", "b"}`` arrays that ``nn`` reads and ``nn.fit`` is
handed back are views of the buffers: an optimizer then updates all of a
role's numbers with a few calls over a few large slices (``update_flat``)
instead of a dozen calls per layer and parameter, and the backward writes
its gradients straight into theirs. Weights of every layer come first, then
the biases, so one index tells the optimizer where weight decay stops.
"""

_ALIGN = 32  # floats: each layer's block starts on a 128-byte boundary


def _aligned(n):
    return -(-n // _ALIGN) * _ALIGN


class FlatLayout:
    """Where each layer's ``w`` and ``b`` sit in one flat buffer: weights first."""

    def __init__(self, sizes):
        self.shapes = list(zip(sizes[:-1], sizes[1:]))
        offset, self.w_offsets, self.b_offsets = 0, [], []
        for fan_in, fan_out in self.shapes:
            self.w_offsets.append(offset)
            offset = _aligned(offset + fan_in * fan_out)
        self.n_weights = offset
        for _, fan_out in self.shapes:
            self.b_offsets.append(offset)
            offset = _aligned(offset + fan_out)
        self.size = offset

    def views(self, flat):
        """``[{"w": (in, out), "b": (out,)}, ...]`` sharing ``flat``'s memory."""
        return [
            {"w": flat[w : w + i * o].reshape(i, o), "b": flat[b : b + o]}
            for (i, o), w, b in zip(self.shapes, self.w_offsets, self.b_offsets)
        ]


class FlatTraining:
    """Flat buffers for the parameters, the gradients and every per-parameter tree of an optimizer's state.

    ``adopt(params, state)`` copies a parameter tree and its optimizer state
    in, unless they are the views handed out by the previous step; ``params``
    and ``state`` are those views. The
    padding between layers holds zeros: its gradient is never written, so
    every update leaves it 0.
    """

    def __init__(self, xp, sizes):
        self.xp, self.layout = xp, FlatLayout(sizes)
        self.params = self.state = None

    def adopt(self, params, state):
        if params is self.params and state is self.state:
            return
        dtype = params[0]["w"].dtype
        self.flat_params, self.params = self._pack(params, dtype)
        self.flat_grads, self.grads = self._pack(None, dtype)
        self.flat_state, self.state = {}, {}
        self.scratch = {}  # the optimizer's, made anew with the buffers it works on
        for key, value in state.items():
            if isinstance(value, list):  # a tree shaped like the parameters (moments, velocity)
                self.flat_state[key], self.state[key] = self._pack(value, dtype)
            else:  # a scalar such as Adam's step count, updated where it is
                self.flat_state[key] = self.state[key] = value

    def _pack(self, tree, dtype):
        flat = self.xp.zeros(self.layout.size, dtype=dtype)
        views = self.layout.views(flat)
        for view, layer in zip(views, tree or ()):
            view["w"][...] = layer["w"]
            view["b"][...] = layer["b"]
        return flat, views
