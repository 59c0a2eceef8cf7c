"""What every backend shares: arrays in, arrays out, and one training step.

A backend subclass changes only what its device needs: the array module,
moving data, compiling, and how gradients are obtained. The mathematics
(forward, hand-written backward, optimizer update) comes from ``nn`` and is
the same object on every backend.
"""

import numpy as np

from .errors import XpnetError
from .flat import FlatTraining
from .random import permutation_from_key, shuffle_key, uniform_from_counter


EPOCH_MODES = ("step", "scan")


class Backend:
    name = None
    xp = None
    # How this backend can obtain gradients; the first is the default.
    grad_modes = ("manual",)
    # How an epoch runs: a compiled step per minibatch, or the whole epoch as
    # one compiled scan. The first is the default.
    epoch_modes = ("step",)
    # Eager array modules with out= update parameters and optimizer state in
    # flat buffers of their own (the optimizer's update_flat); a compiler (XLA)
    # fuses the functional update instead.
    updates_in_place = False
    # CPU threads of the matrix products, where the backend chooses them (use_threads); None elsewhere.
    threads = None

    @classmethod
    def unavailable_reason(cls):
        """None when this backend can run here, else a short reason."""
        return None

    # -- arrays ---------------------------------------------------------------
    def asarray(self, a, dtype=None):
        """``a`` (host or device) as an array of this backend."""
        return self.xp.asarray(a, dtype=dtype)

    def to_host(self, a):
        """``a`` as a NumPy array on the host: a copy, which later in-place training steps leave alone."""
        return np.array(a)

    def tree_to_host(self, tree):
        return [{k: self.to_host(v) for k, v in layer.items()} for layer in tree]

    def tree_asarray(self, tree):
        return [{k: self.asarray(v) for k, v in layer.items()} for layer in tree]

    def owned(self, a):
        """``a`` on the device in a buffer of its own, which an in-place update may overwrite."""
        return self.xp.array(a, copy=True) if self.updates_in_place else self.asarray(a)

    def place(self, tree):
        """``tree`` (lists, dicts, arrays of this backend) where compiled code expects its inputs."""
        return tree

    def synchronize(self):
        """Wait until all queued device work has finished (for honest timing)."""

    def block(self, tree):
        """``tree`` once every array in it has been computed."""
        self.synchronize()
        return tree

    def device_description(self):
        return "CPU"

    # -- devices ----------------------------------------------------------------
    def use_devices(self, count):
        """Train on ``count`` devices (None: all). One, unless a backend can split batches."""
        if count not in (None, 1):
            raise XpnetError(
                f"--devices {count} needs --backend jax: the {self.name} backend trains on one device"
            )

    def use_threads(self, count=None, source=None):
        """CPU threads for the matrix products: None chooses; only the NumPy backend takes a number."""
        if count is not None:
            raise XpnetError(
                f"--threads {count} needs --backend numpy: the {self.name} backend's threads are its runtime's"
            )

    def check_batch_size(self, batch_size):
        """Raise XpnetError when ``batch_size`` cannot be split across the devices."""

    def shard_batch(self, a):
        """``a`` (a batch, leading axis = samples) laid out across the devices."""
        return a

    # -- randomness -----------------------------------------------------------
    def keep_mask(self, seed, step, layer, shape, keep_prob, dtype):
        """A 0/1 dropout mask, a pure function of (seed, step, layer).

        Counter-based: no generator state to carry, so the same seed gives the
        same masks whatever order steps run in, and a GPU kernel can compute
        the same numbers independently per element.
        """
        u = uniform_from_counter(self.xp, seed, step, layer, shape)
        return (u < keep_prob).astype(dtype)

    def epoch_permutation(self, seed, epoch, n):
        """The order in which epoch ``epoch`` visits the ``n`` samples, on the device.

        A pure function of (seed, epoch), counter-based like ``keep_mask``, and
        the same on every backend: a compiled whole-epoch scan draws exactly
        the order that the step-by-step loop does.
        """
        return permutation_from_key(self.xp, shuffle_key(seed, epoch), n)

    # -- compiling and gradients ----------------------------------------------
    def compile(self, fn, donate_argnums=()):
        """``fn`` made fast for this backend; eager backends return it as is."""
        return fn

    def check_grad_mode(self, grad):
        grad = grad or self.grad_modes[0]
        if grad not in self.grad_modes:
            raise XpnetError(
                f"--grad {grad} is not available on the {self.name} backend: "
                f"it supports {', '.join(self.grad_modes)} (autodiff needs --backend jax)"
            )
        return grad

    def check_epoch_mode(self, mode):
        mode = mode or self.epoch_modes[0]
        if mode not in EPOCH_MODES:
            raise XpnetError(f"unknown --epoch-mode {mode!r}: choose one of {', '.join(EPOCH_MODES)}")
        if mode not in self.epoch_modes:
            raise XpnetError(
                f"--epoch-mode {mode} needs --backend jax: the {self.name} backend runs "
                "one step at a time (use --epoch-mode step)"
            )
        return mode

    def loss_and_grads_fn(self, model, grad):
        """``f(params, x, y, masks) -> (loss, grads, outputs)``."""
        return model.loss_and_grads

    def train_step_fn(self, model, optimizer, *, seed, grad=None, augment=None):
        """One minibatch update as ``step(params, state, x_all, y_all, idx, lr, step_no)``.

        The whole dataset is an argument and the batch is gathered inside, so
        the data stays on the device and, on JAX, inside the compiled function.
        ``augment`` (an ``nn.augment.Augment`` or None) distorts the gathered
        batch, its random numbers keyed by (seed, step_no, sample). Returns the
        new parameters and optimizer state, the batch loss and the number of
        correct predictions, all still on the device.
        """
        batch = self.batch_fn(seed=seed, augment=augment)
        update = self.update_fn(model, optimizer, seed=seed, grad=grad)

        def step(params, state, x_all, y_all, idx, lr, step_no):
            x, y = batch(x_all, y_all, idx, step_no)
            return update(params, state, x, y, lr, step_no)

        return step

    def batch_fn(self, *, seed, augment=None):
        """``batch(x_all, y_all, idx, step_no) -> (x, y)``: the minibatch gathered, and distorted by ``augment``."""
        distort = self.distort_fn(augment, seed) if augment is not None else None

        def batch(x_all, y_all, idx, step_no):
            idx = self.shard_batch(idx)
            x, y = self.shard_batch(x_all[idx]), self.shard_batch(y_all[idx])
            if distort is not None:
                x = distort(x, step_no)  # the input as it is when augment.kind is none
            return x, y

        return batch

    def distort_fn(self, augment, seed):
        """``distort(x, step_no)``: a gathered batch distorted by ``augment``.

        The draws are always ``nn.augment``'s (written once); the warp is the
        backend's own kernel (``kernel_warp``) for float32 batches of 784
        pixels where it has one, else ``nn.augment.warp``.
        """
        xp = self.xp
        warp = self.kernel_warp(augment) if augment.active else None
        if warp is None:
            return lambda x, step_no: augment.apply(xp, x, seed, step_no)

        def distort(x, step_no):
            if x.dtype != xp.float32 or x.shape[1:] != (784,):
                return augment.apply(xp, x, seed, step_no)
            return warp(x, augment.draws(xp, seed, step_no, x.shape[0]))

        return distort

    def kernel_warp(self, augment):
        """``warp(x, draws)`` by a kernel of this backend's, ``nn.augment.warp`` within float32 roundings; None: none
        here."""
        return None

    def distortion_note(self, augment):
        """What ``distort_fn`` runs, for the run header's augmentation line where the device line does not say it."""
        return ""

    def update_fn(self, model, optimizer, *, seed, grad=None):
        """``update(params, state, x, y, lr, step_no)``: one step on a gathered batch, the rest of ``step``.

        Where the array module updates in place and the optimizer is one of
        ``nn``'s own (``kind``; a subclass may change the update), the step
        works on flat buffers (``backends.flat``) and returns views of them,
        the same views every step: callers that keep a step's parameters copy
        them (``nn.fit`` does, with ``to_host``).
        """
        grad = self.check_grad_mode(grad)
        loss_and_grads = self.loss_and_grads_fn(model, grad)
        xp = self.xp
        flat = FlatTraining(xp, model.sizes) if self.updates_in_place and getattr(optimizer, "kind", None) else None
        flat_updates = {}  # parameter dtype -> flat_update_fn's update, made when a step first meets it

        def update(params, state, x, y, lr, step_no):
            masks = model.dropout_masks(self, seed, step_no, x.shape[0], x.dtype)
            if flat is None:
                loss, grads, outputs = loss_and_grads(params, x, y, masks)
                params, state = optimizer.update(params, grads, state, lr)
            else:
                flat.adopt(params, state)
                loss, _, outputs = loss_and_grads(flat.params, x, y, masks, out=flat.grads)
                dtype = flat.flat_params.dtype
                if dtype not in flat_updates:
                    flat_updates[dtype] = self.flat_update_fn(optimizer, dtype)
                flat_updates[dtype](flat, lr)
                params, state = flat.params, flat.state
            correct = xp.sum(xp.argmax(outputs, axis=1) == y)
            return params, state, loss, correct

        return update

    def flat_update_fn(self, optimizer, dtype):
        """``update(flat, lr)``: ``optimizer``'s step over a ``FlatTraining``'s buffers of ``dtype``, in place."""

        def update(flat, lr):
            optimizer.update_flat(flat.flat_params, flat.flat_grads, flat.flat_state, lr, flat.scratch,
                                  flat.layout.n_weights)

        return update

    def make_train_step(self, model, optimizer, *, seed, grad=None, augment=None):
        """``train_step_fn`` compiled, its parameter and state buffers reused in place."""
        step = self.train_step_fn(model, optimizer, seed=seed, grad=grad, augment=augment)
        return self.compile(step, donate_argnums=(0, 1))

    def make_train_epoch(self, model, optimizer, *, seed, grad=None, n, batch_size, augment=None):
        """A whole epoch as one compiled call (``--epoch-mode scan``), where supported."""
        self.check_epoch_mode("scan")
        raise NotImplementedError(f"{type(self).__name__} lists scan in epoch_modes but does not implement it")

    def make_eval_step(self, model):
        """``f(params, x, y) -> (summed loss, correct count)`` for one chunk."""
        xp = self.xp

        def evaluate(params, x, y):
            x, y = self.shard_batch(x), self.shard_batch(y)
            loss, outputs = model.objective(params, x, y, penalty=False)
            correct = xp.sum(xp.argmax(outputs, axis=1) == y)
            return loss * x.shape[0], correct

        return self.compile(evaluate)

    def make_predict(self, model):
        """``f(params, x) -> class probabilities`` (or raw outputs for a linear head)."""
        return self.compile(model.predict)
