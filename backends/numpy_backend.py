"""The NumPy backend: the reference that always runs, with the hand-written backward."""

import functools
from concurrent.futures import ThreadPoolExecutor

import numpy

from . import cpu_kernels
from . import threads as blas_threads
from .base import Backend


# With the C warp, models at least this large distort their batches in line (``_worth_a_core``).
AHEAD_BELOW_WEIGHTS = 400_000


class NumpyBackend(Backend):
    name = "numpy"
    xp = numpy
    updates_in_place = True
    # threads stays None until use_threads: the process's BLAS setting (a library
    # user's own choice) is left alone.

    def use_threads(self, count=None, source=None):
        """Train on ``count`` BLAS threads (None: as many as there are cores free now; ``source``
        says where a given count comes from, for the run header).

        Set process-wide when the training step is made: a distorting run
        keeps one of them for its batch worker (``AheadStep``).
        """
        self.threads, why = blas_threads.choose(count, source)
        self._threads_note = f"{self.threads} BLAS thread{'s' if self.threads > 1 else ''}: {why}"

    def device_description(self):
        import platform

        threads = f", {self._threads_note}" if self.threads else ""
        return f"CPU ({platform.machine()}), NumPy {numpy.__version__}{threads}, {cpu_kernels.describe()}"

    def compile(self, fn, donate_argnums=()):
        # A diverging run overflows on its way to a non-finite loss; fit() reports
        # that in one line, so NumPy's per-operation warnings would only be noise.
        @functools.wraps(fn)
        def quiet(*args, **kwargs):
            with numpy.errstate(over="ignore", invalid="ignore", divide="ignore"):
                return fn(*args, **kwargs)

        return quiet

    def make_predict(self, model):
        # One digit in the window is about 30 us: errstate's context would be a tenth
        # of it, and a softmax of finite logits never overflows.
        return model.predict

    def flat_update_fn(self, optimizer, dtype):
        # One compiled pass where a C compiler is at hand, the same bits as the ufuncs' sixteen.
        return cpu_kernels.fused_update(optimizer, dtype) or super().flat_update_fn(optimizer, dtype)

    def kernel_warp(self, augment):
        # The warp in C where a compiler is at hand (nn.augment's bits given the same field).
        return cpu_kernels.augment_warp()

    def make_train_step(self, model, optimizer, *, seed, grad=None, augment=None):
        ahead = augment is not None and augment.active and (self.threads or 0) >= 2 and self._worth_a_core(model)
        if self.threads:
            blas_threads.BlasThreads().set(self.threads - 1 if ahead else self.threads)
        if not ahead:
            return super().make_train_step(model, optimizer, seed=seed, grad=grad, augment=augment)
        return AheadStep(self.compile(self.batch_fn(seed=seed, augment=augment)),
                         self.compile(self.update_fn(model, optimizer, seed=seed, grad=grad)))

    @staticmethod
    def _worth_a_core(model):
        """Whether distorting batches in a thread of their own beats running the products on every core.

        Through nn.augment's ufuncs a batch takes several milliseconds: the
        worker always pays. With the C warp it takes about one, and the worker
        costs the products a BLAS thread, which a large model's step (784-800-10,
        635,000 weights) misses more than it gains; the default model (235,000)
        keeps its worker (README, What augmentation costs).
        """
        weights = sum(a * b for a, b in zip(model.sizes, model.sizes[1:]))
        return cpu_kernels.library() is None or weights < AHEAD_BELOW_WEIGHTS


class AheadStep:
    """A train step whose distorted batches are made one step ahead, in a thread of their own.

    Distorting a batch takes most of a millisecond with the C warp and
    several without it (gathers and ufuncs); both release the GIL, and
    neither depends on the weights: while the main thread runs step i's
    products, the worker draws batch i + 1 (``prefetch``, which ``nn.fit``
    calls before each step). The numbers are the same either way, keyed by
    (seed, step, sample); a step nobody prefetched makes its batch itself.
    The products run on one BLAS thread fewer: the worker's core is its
    own; for large models with the C warp at hand the batch is made in line
    instead (``NumpyBackend._worth_a_core``).
    """

    def __init__(self, batch, update):
        self.batch, self.update = batch, update
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xpnet-augment")
        self.ahead = {}  # step number -> (x_all, idx, future)

    def prefetch(self, x_all, y_all, idx, step_no):
        if step_no not in self.ahead:
            self.ahead[step_no] = (x_all, idx, self.worker.submit(self.batch, x_all, y_all, idx, step_no))

    def __call__(self, params, state, x_all, y_all, idx, lr, step_no):
        made = self.ahead.pop(step_no, None)
        if made is not None and made[0] is x_all and numpy.array_equal(made[1], idx):
            x, y = made[2].result()
        else:
            x, y = self.batch(x_all, y_all, idx, step_no)
        return self.update(params, state, x, y, lr, step_no)


BACKEND_CLASS = NumpyBackend
