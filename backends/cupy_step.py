"""The CuPy training step: static device buffers, a fixed plan of our own kernel
launches, and that plan captured once as a CUDA graph and replayed per batch.

Parameters, gradients and optimizer state each live in one flat float32
buffer (weights of every layer first, then the biases, so one index bound
tells the optimizer kernel which elements get weight decay and penalties);
the per-layer ``{"w", "b"}`` arrays handed back to ``nn.fit`` are views of it.
Every other buffer (the batch, pre-activations, activations, gradients) is
allocated once for the largest batch. Nothing inside the plan allocates,
copies to the host or synchronises, which is what lets it be captured.

Per step, outside the graph, ``begin_step_f32`` writes the learning rate, the
step number, the batch's row count and its sample indices into device memory.
A last partial batch is padded, not dropped: the padding rows are zeros whose
gradient is exactly zero, and the loss divides by the true row count, so every
sample is trained on and the numbers equal the NumPy backend's.
"""

import logging

import numpy

from .cupy_kernels import ACTIVATION_CODES, Kernels
from .flat import FlatLayout
from .random import _mix32_int

log = logging.getLogger("xpnet")

RING = 4096  # steps whose loss and correct count stay readable


def fused_step_unsupported(model, optimizer, augment=None):
    """Why the kernel step cannot run this model, optimizer and augmentation, or None.

    The optimizer says what it is (``kind``: nn.optimizers' SGD and Adam); backends do not import nn.
    """
    if getattr(optimizer, "kind", None) not in ("sgd", "adam"):
        return f"no update kernel for {type(optimizer).__name__}"
    if any(name not in ACTIVATION_CODES for name in model.activations):
        return "an activation without a kernel"
    if augment is not None and augment.active and model.sizes[0] != 784:
        return "augment_f32 distorts 28x28 images only"
    return None


class FusedTrainStep:
    """``step(params, state, x_all, y_all, idx, lr, step_no)`` on our kernels.

    The contract of ``Backend.make_train_step``, with one difference callers
    must know: the parameter and state arrays returned are the same views every
    step, updated in place, and a step's loss and correct count stay valid for
    ``RING`` steps.
    """

    def __init__(self, xp, kernels: Kernels, model, optimizer, seed, cuda_graph=True, augment=None):
        self.xp, self.kernels, self.model, self.optimizer = xp, kernels, model, optimizer
        # augment: an nn.augment.Augment, read as plain values (backends do not import nn).
        self.augment = augment.config() if augment is not None and augment.active else None
        self.field_basis = xp.asarray(augment.field_basis()) if self.augment is not None else None
        self.seed_hash = _mix32_int(int(seed))
        self.layout = FlatLayout(model.sizes)
        self.adam = optimizer.kind == "adam"
        f32 = xp.float32
        n = self.layout.size
        self.flat_params, self.flat_grads = xp.zeros(n, dtype=f32), xp.zeros(n, dtype=f32)
        self.moments = [xp.zeros(n, dtype=f32) for _ in range(2 if self.adam else 1)]
        self.adam_t = xp.zeros(1, dtype=f32)
        self.params = self.layout.views(self.flat_params)
        self.grads = self.layout.views(self.flat_grads)
        self.partials = xp.zeros(2 * kernels.update_blocks(n), dtype=f32)
        self.step_f32, self.step_u32 = xp.zeros(1, dtype=f32), xp.zeros(4, dtype=xp.uint32)
        self.loss_ring, self.correct_ring = xp.zeros(RING, dtype=f32), xp.zeros(RING, dtype=xp.int32)
        self.state = self._state_views()
        self.want_graph = cuda_graph
        self.graph = None
        self.graph_failed = False
        self.plan, self.plan_key, self.rows = None, None, 0
        self.calls = 0

    # -- the step -------------------------------------------------------------------------
    def __call__(self, params, state, x_all, y_all, idx, lr, step_no):
        if params is not self.params:
            self._load(params, state)
        count = idx.shape[0]
        if self.plan is None or count > self.rows or self.plan_key != (id(x_all), id(y_all)):
            self._build_plan(x_all, y_all, max(count, self.rows))
        slot = self.calls % RING
        self.calls += 1
        self.kernels.begin_step(self.step_f32, self.step_u32, self.batch_idx, idx, lr, step_no, slot)()
        if self.graph is not None:
            self.graph.launch()
        else:
            for launch in self.plan:
                launch()
            if self.want_graph and not self.graph_failed:
                self._capture()  # the step just run was the warm-up
        loss = self.loss_ring[slot : slot + 1].reshape(())
        correct = self.correct_ring[slot : slot + 1].reshape(())
        return self.params, self.state, loss, correct

    def _capture(self):
        """Record the plan as one CUDA graph; on any failure keep plain launches."""
        stream = self.xp.cuda.Stream(non_blocking=True)
        try:
            with stream:
                stream.begin_capture()
                try:
                    for launch in self.plan:
                        launch()
                finally:
                    graph = stream.end_capture()
        except Exception as exc:  # capture fails in driver-specific ways
            self.graph_failed = True
            log.warning("CUDA graph capture failed (%s: %s); using plain kernel launches",
                        type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            return
        self.graph = graph

    # -- parameters and state in, views out ---------------------------------------------
    def _state_views(self):
        if self.adam:
            m, v = (self.layout.views(buf) for buf in self.moments)
            return {"t": self.adam_t.reshape(()), "m": m, "v": v}
        if self.optimizer.momentum == 0:
            return {}
        return {"velocity": self.layout.views(self.moments[0])}

    def _load(self, params, state):
        """Copy a parameter tree (and the optimizer's state tree) into the flat buffers."""
        trees = [(self.params, params)]
        if self.adam:
            self.adam_t[...] = state["t"]
            trees += [(self.state["m"], state["m"]), (self.state["v"], state["v"])]
        elif "velocity" in self.state:
            trees.append((self.state["velocity"], state["velocity"]))
        for views, values in trees:
            for view, value in zip(views, values):
                view["w"][...] = value["w"]
                view["b"][...] = value["b"]

    # -- the plan: every launch of one step, in order --------------------------------------
    def _build_plan(self, x_all, y_all, rows):
        xp, k, model = self.xp, self.kernels, self.model
        f32 = xp.float32
        if x_all.dtype != numpy.float32 or y_all.dtype != numpy.int32:
            raise TypeError(f"the CuPy step needs float32 images and int32 labels, got {x_all.dtype} and {y_all.dtype}")
        self.rows, self.plan_key, self._data = rows, (id(x_all), id(y_all)), (x_all, y_all)
        self.graph = None  # buffers change: a new graph is captured after the next plain step
        sizes = model.sizes
        hidden = len(sizes) - 2
        keep = 1.0 - model.dropout
        self.batch_idx = xp.zeros(rows, dtype=xp.int32)
        x, y = xp.zeros((rows, sizes[0]), dtype=f32), xp.zeros(rows, dtype=xp.int32)
        z = [xp.zeros((rows, n), dtype=f32) for n in sizes[1:]]
        act_out = [xp.zeros((rows, n), dtype=f32) for n in sizes[1:-1]]
        dropped = [xp.zeros((rows, n), dtype=f32) for n in sizes[1:-1]] if keep < 1 else act_out
        grad_in = [xp.zeros((rows, n), dtype=f32) for n in sizes[1:-1]]  # dA, turned into dZ in place
        dlogits = xp.zeros((rows, sizes[-1]), dtype=f32)
        row_loss, row_correct = xp.zeros(rows, dtype=f32), xp.zeros(rows, dtype=xp.int32)
        self._buffers = (x, y, z, act_out, dropped, grad_in, dlogits, row_loss, row_correct)
        inputs = [x, *dropped]
        P, G = self.params, self.grads

        plan = [k.gather_batch(x, y, x_all, y_all, self.batch_idx, self.step_u32)]
        if self.augment is not None:
            plan.append(k.augment(x, self.step_u32, self.seed_hash, self.augment, self.field_basis))
        for i in range(hidden + 1):
            plan.append(k.sgemm("nn", z[i], inputs[i], P[i]["w"]))
            if i < hidden:
                plan.append(k.bias_act_forward(z[i], act_out[i], dropped[i], P[i]["b"], self.step_u32,
                                               model.activations[i], self.seed_hash, i, keep))
            else:
                plan.append(k.bias_act_forward(z[i], z[i], z[i], P[i]["b"], self.step_u32, "linear"))
        logits = z[hidden]
        plan.append(k.loss_rows(model.loss, dlogits, row_loss, row_correct, logits, y, self.step_u32,
                                softmax_output=model.output == "softmax"))
        # The output bias gradient: column sums of dlogits (dz = da in place, linear).
        plan.append(k.act_backward(dlogits, G[hidden]["b"], dlogits, logits, logits, self.step_u32, "linear"))
        grad_out = [*grad_in, dlogits]
        for i in reversed(range(hidden + 1)):
            plan.append(k.sgemm("tn", G[i]["w"], inputs[i], grad_out[i]))
            if i > 0:
                plan.append(k.sgemm("nt", grad_in[i - 1], grad_out[i], P[i]["w"]))
                plan.append(k.act_backward(grad_in[i - 1], G[i - 1]["b"], grad_in[i - 1], z[i - 1], act_out[i - 1],
                                           self.step_u32, model.activations[i - 1], self.seed_hash, i - 1, keep))
        l1, l2 = _penalty_coefficients(model)
        plan.append(self._update(l1, l2))
        plan.append(k.loss_finalize(self.loss_ring, self.correct_ring, self.adam_t, row_loss, row_correct,
                                    self.partials, self.step_u32, sizes[-1] if model.loss == "mse" else 1,
                                    l1, l2, advance_t=self.adam))
        self.plan = [launch for launch in plan if launch.name != "nothing"]

    def _update(self, l1, l2):
        opt, k, n_weights = self.optimizer, self.kernels, self.layout.n_weights
        if self.adam:
            m, v = self.moments
            return k.adam_update(self.flat_params, m, v, self.partials, self.flat_grads, self.adam_t, self.step_f32,
                                 n_weights, opt.beta1, opt.beta2, opt.eps, opt.weight_decay, l1, l2)
        return k.sgd_update(self.flat_params, self.moments[0], self.partials, self.flat_grads, self.step_f32,
                            n_weights, opt.momentum, opt.nesterov, opt.weight_decay, l1, l2)


def _penalty_coefficients(model):
    """(l1, l2) of nn.regularizers' penalty: lam on each term the model uses."""
    lam = model.reg_lambda
    return (lam if model.reg in ("l1", "l1_l2") else 0.0, lam if model.reg in ("l2", "l1_l2") else 0.0)


