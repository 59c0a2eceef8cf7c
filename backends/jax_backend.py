"""The JAX backend: the whole training step compiled by XLA with ``jax.jit``.

Gradients come from ``jax.grad`` of the model's forward pass by default; the
hand-written backward from ``nn`` also runs here (``--grad manual``), traced
and compiled the same way, so the two can be compared on equal terms.

Two things only this backend does:

- ``make_train_epoch``: a whole epoch (shuffle, every minibatch, the metric
  sums) as one compiled ``jax.lax.scan``, called once per epoch.
- Data parallelism by JAX's own sharding: a one-axis ``Mesh`` named
  ``batch`` over the devices, parameters and dataset replicated, each batch
  split along the mesh. XLA's partitioner inserts the gradient all-reduce;
  there is no hand-written ``psum``. Under ``jax.distributed`` the mesh spans
  the devices of every process.
"""

import math
import time

import numpy

from . import cpu_kernels
from .base import Backend
from .errors import XpnetError
from .random import permutation_from_key, shuffle_key

MESH_AXIS = "batch"


class JaxBackend(Backend):
    name = "jax"
    grad_modes = ("autodiff", "manual")
    epoch_modes = ("scan", "step")

    def __init__(self):
        import jax
        import jax.numpy as jnp

        self.jax = jax
        self.xp = jnp
        self.use_devices(None)

    @classmethod
    def unavailable_reason(cls):
        try:
            import jax  # noqa: F401
        except ImportError:
            return "JAX is not installed (uv sync installs it)"
        return None

    # -- devices ----------------------------------------------------------------
    def use_devices(self, count):
        """A mesh of ``count`` local devices per process (None: all of them)."""
        jax = self.jax
        local = jax.local_devices()
        if count is None:
            count = len(local)
        if not 1 <= count <= len(local):
            raise XpnetError(
                f"--devices {count}: this process sees {len(local)} {local[0].platform.upper()} "
                f"device{'s' if len(local) > 1 else ''}; use 1 to {len(local)}, or leave --devices out to use all"
            )
        by_process = {}
        for device in jax.devices():
            by_process.setdefault(device.process_index, []).append(device)
        chosen = [d for p in sorted(by_process) for d in by_process[p][:count]]
        self.mesh = jax.sharding.Mesh(numpy.array(chosen), (MESH_AXIS,))
        self._replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        self._split = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec(MESH_AXIS))
        self._permutation = jax.jit(
            lambda key, n: permutation_from_key(self.xp, key, n), static_argnums=1, out_shardings=self._replicated
        )

    def check_batch_size(self, batch_size):
        size = self.mesh.size
        if batch_size % size:
            raise XpnetError(
                f"--batch-size {batch_size} does not split evenly across {size} devices: "
                f"use a multiple of {size} (e.g. {math.ceil(batch_size / size) * size}) or change --devices"
            )

    def shard_batch(self, a):
        # A batch that does not divide (the epoch's partial last batch, an odd
        # evaluation chunk) stays replicated: every device computes it whole.
        if self.mesh.size == 1 or a.shape[0] % self.mesh.size:
            return a
        return self.jax.lax.with_sharding_constraint(a, self._split)

    # -- arrays -----------------------------------------------------------------
    def asarray(self, a, dtype=None):
        """``a`` replicated on every device of the mesh (of every process)."""
        if isinstance(a, self.jax.Array):
            if a.sharding == self._replicated:
                return a if dtype is None else a.astype(dtype)
            a = self.to_host(a)
        host = numpy.asarray(a, dtype=dtype)
        host = host.astype(self.jax.dtypes.canonicalize_dtype(host.dtype), copy=False)
        # Callback form: under jax.distributed each process fills only its own devices.
        return self.jax.make_array_from_callback(host.shape, self._replicated, lambda index: host[index])

    def place(self, tree):
        # Arrays made by jax.numpy (Adam's step count) sit uncommitted on one
        # device while results come back replicated on the mesh: placing both
        # alike avoids a second trace of the compiled step.
        return self.jax.tree.map(self.asarray, tree)

    def to_host(self, a):
        if isinstance(a, self.jax.Array) and not a.is_fully_addressable:
            a = a.addressable_data(0)  # replicated: this process holds the whole value
        return numpy.asarray(self.jax.device_get(a))

    def synchronize(self):
        # JAX dispatches asynchronously; this waits for every queued computation.
        self.jax.effects_barrier()

    def block(self, tree):
        return self.jax.block_until_ready(tree)

    def device_description(self):
        device = self.mesh.devices.flat[0]
        count = f"{self.mesh.size} x " if self.mesh.size > 1 else ""
        return f"{count}{device.platform.upper()} ({device.device_kind}), JAX {self.jax.__version__}"

    # -- compiling and gradients -------------------------------------------------
    def compile(self, fn, donate_argnums=()):
        # Every argument and result lives replicated on the mesh (batches are
        # split inside, by ``shard_batch``). Fixing that here means a freshly
        # made array and a result fed back in look alike: one compilation.
        # On a GPU, XLA multiplies float32 matrices in TF32 (a 10-bit mantissa)
        # unless told otherwise; xpnet's float32 means float32 on every backend,
        # so the matrix products are traced at full precision.
        def full_precision(*args, **kwargs):
            with self.jax.default_matmul_precision("float32"):
                return fn(*args, **kwargs)

        return self.jax.jit(
            full_precision, donate_argnums=donate_argnums, in_shardings=self._replicated,
            out_shardings=self._replicated
        )

    def epoch_permutation(self, seed, epoch, n):
        return self._permutation(self.asarray(numpy.uint32(shuffle_key(seed, epoch))), n)

    def keep_mask(self, seed, step, layer, shape, keep_prob, dtype):
        random = self.jax.random
        key = random.fold_in(random.fold_in(random.key(seed), step), layer)
        return random.bernoulli(key, keep_prob, shape).astype(dtype)

    def _on_one_cpu(self):
        return self.mesh.size == 1 and self.mesh.devices.flat[0].platform == "cpu"

    def kernel_warp(self, augment):
        # On one CPU device the warp is augment.c's, called from inside the
        # compiled step: XLA's CPU code for nn.augment.warp makes its gathers
        # and the stroke's neighbour reads into scalar loops (README, What
        # augmentation costs). On a GPU, or several devices, XLA warps.
        return cpu_kernels.xla_warp(self.jax) if self._on_one_cpu() else None

    def distortion_note(self, augment):
        if not (augment.active and self._on_one_cpu()):
            return ""  # a GPU, several devices, or no augmentation: nn.augment under XLA, as written
        self.kernel_warp(augment)  # finds or builds the kernel, as the step will
        return f"; {cpu_kernels.xla_describe()}"

    def loss_and_grads_fn(self, model, grad):
        if grad == "manual":
            return model.loss_and_grads
        value_and_grad = self.jax.value_and_grad(model.objective, has_aux=True)

        def loss_and_grads(params, x, y, masks):
            (loss, logits), grads = value_and_grad(params, x, y, masks)
            return loss, grads, logits

        return loss_and_grads

    def make_train_epoch(self, model, optimizer, *, seed, grad=None, n, batch_size, augment=None):
        """``epoch(params, state, x_all, y_all, epoch_no, lrs)``: one compiled call per epoch.

        Inside: the epoch's order drawn on the device (``epoch_permutation``'s
        counter-based shuffle, its key an argument), then ``jax.lax.scan`` over
        the ``n // batch_size`` whole batches, index rows of shape (steps,
        batch) gathered from the dataset, which is an argument, never a
        captured constant. The partial last batch (``n % batch_size`` samples)
        runs as one more step of its own shape in the same compiled function,
        so every sample is seen once per epoch and the result equals the
        step-by-step loop: same order, same step numbers for dropout, same
        learning rates (``lrs``, one per step, a traced array), same sums.

        Returns (params, state, summed loss, correct count), on the device;
        nothing is read back until the caller asks. The epoch number, the
        learning rates and the data are all traced arguments: a new epoch, a
        new schedule or new data of the same shape reuse the compiled code.
        """
        step = self.train_step_fn(model, optimizer, seed=seed, grad=grad, augment=augment)
        whole, rest = divmod(n, batch_size)
        steps = whole + (rest > 0)
        jnp, lax = self.xp, self.jax.lax

        def epoch(params, state, x_all, y_all, key, lrs, first_step):
            order = permutation_from_key(jnp, key, n)

            def body(carry, batch):
                params, state, loss_sum, correct = carry
                idx, lr, step_no = batch
                params, state, loss, batch_correct = step(params, state, x_all, y_all, idx, lr, step_no)
                return (params, state, loss_sum + loss * batch_size, correct + batch_correct), None

            carry = (params, state, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
            batches = (
                order[: whole * batch_size].reshape(whole, batch_size),
                lrs[:whole],
                first_step + jnp.arange(whole, dtype=jnp.int32),
            )
            (params, state, loss_sum, correct), _ = lax.scan(body, carry, batches)
            if rest:
                params, state, loss, batch_correct = step(
                    params, state, x_all, y_all, order[whole * batch_size :], lrs[whole], first_step + whole
                )
                loss_sum, correct = loss_sum + loss * rest, correct + batch_correct
            return params, state, loss_sum, correct

        compiled = self.compile(epoch, donate_argnums=(0, 1))

        def run(params, state, x_all, y_all, epoch_no, lrs):
            if len(lrs) != steps:
                raise ValueError(f"expected {steps} learning rates, one per step, got {len(lrs)}")
            return compiled(
                params, state, x_all, y_all,
                self.asarray(numpy.uint32(shuffle_key(seed, epoch_no))),
                self.asarray(numpy.asarray(lrs, dtype=numpy.float32)),
                self.asarray(numpy.int32(epoch_no * steps)),
            )

        return run


def start_distributed(coordinator, num_processes, process_id, timeout=300):
    """``jax.distributed.initialize`` with checked settings, before any other JAX use.

    coordinator: "HOST:PORT" of process 0, reachable from every process;
    timeout: seconds to wait for all of them to join.
    """
    host, sep, port = (coordinator or "").rpartition(":")
    if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
        raise XpnetError(f"--coordinator {coordinator!r} must be HOST:PORT, e.g. 10.0.0.1:1234")
    if num_processes is None or process_id is None:
        raise XpnetError("--coordinator needs --num-processes N and --process-id I as well (or XPNET_NUM_PROCESSES, XPNET_PROCESS_ID)")
    if num_processes < 1:
        raise XpnetError(f"--num-processes {num_processes} must be >= 1")
    if not 0 <= process_id < num_processes:
        raise XpnetError(f"--process-id {process_id} must be between 0 and {num_processes - 1} (--num-processes {num_processes})")
    import jax

    print(f"process {process_id}: waiting for {num_processes} processes at {coordinator} "
          f"(up to {timeout} s, --distributed-timeout)", flush=True)
    # This JAX ends the process with a fatal log, not an exception, when the
    # coordinator never answers: the other processes look for it first.
    if process_id != 0 and not _answers(host, int(port), timeout):
        raise XpnetError(
            f"no coordinator answered at {coordinator} within {timeout} s (process {process_id} of {num_processes}): "
            "start process 0 there first with the same --coordinator, or raise --distributed-timeout"
        )
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator, num_processes=num_processes, process_id=process_id,
            initialization_timeout=timeout,
        )
    except Exception as exc:  # a refused or timed-out connection, an already running JAX
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise XpnetError(
            f"jax.distributed could not start within {timeout} s (coordinator {coordinator}, process {process_id} "
            f"of {num_processes}): {first_line[:200]}; start every process with the same --coordinator, or "
            "raise --distributed-timeout"
        ) from None


def _answers(host, port, timeout):
    """Whether something accepts a TCP connection at host:port within ``timeout`` seconds."""
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(2.0, deadline - time.monotonic()))):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)


BACKEND_CLASS = JaxBackend
