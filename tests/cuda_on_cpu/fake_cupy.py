"""A "cupy-shaped NumPy": the CuPy backend's ``xp`` for tests without a GPU.

It has only the names listed in ``CUPY_NAMES`` (every one of which real CuPy
has; tests/test_cupy_glue.py checks that against an installed CuPy), so the
backend cannot lean on something CuPy lacks. Its arrays are ``DeviceArray``,
NumPy arrays that know when a CUDA graph is being captured: creating one then
(an allocation) or reading one back to the host (a synchronisation) is a
``CaptureViolation``, recorded and raised. ``cuda.Stream.begin_capture`` starts
recording the launches of an ``EmulatedModule`` whose recorder is this
``cuda``; ``end_capture`` returns a graph that replays them.

Work is ordered as CUDA orders it, not run at once: every kernel launch and
graph replay joins its stream's queue, and a queue runs only where CUDA
would wait for it: a synchronisation of that stream or of the device, or
an array operation or copy to the host on that stream (the current one).
The legacy default stream and the blocking streams share one queue (they
wait for each other); a non-blocking stream has its own. So work issued on
a stream that nothing waits for is simply not done when the numbers are
read, as on a GPU where it would still be running.
"""

import numpy

# Module-level names of CuPy that the stand-in provides; the backend must
# make do with these.
CUPY_NAMES = frozenset({
    "asarray", "asnumpy", "empty", "zeros", "zeros_like", "ones", "arange", "float32", "int32", "uint32",
    "ndarray", "cuda", "RawModule", "sum", "argmax", "maximum", "exp", "log", "where", "abs", "sqrt",
    "sign", "tanh", "mean", "max", "argsort", "__version__",
    # nn.optimizers' update_flat (the fallback step), backends.flat and Backend.owned
    "array", "empty_like", "multiply", "divide", "copyto", "expm1", "less", "finfo",
})


class CaptureViolation(AssertionError):
    """Something inside a captured CUDA graph that a real capture would break on."""


class FakeCuda:
    """``cupy.cuda`` for the stand-in: streams with queues, capture, devices."""

    def __init__(self):
        self.recording = None  # a list of launches while a graph is captured
        self.violations = []
        self.fail_capture = False  # make begin_capture raise, as a driver may
        self.graphs_launched = 0
        self.null_stream = FakeStream(self, non_blocking=False)
        self._current = [self.null_stream]
        self._queues = {}  # queue key -> launches not yet run

    def __getattr__(self, name):
        raise AttributeError(f"cupy.cuda.{name} is not part of the cupy-shaped stand-in")

    @property
    def capturing(self):
        return self.recording is not None

    def violation(self, what):
        if self.capturing:
            self.violations.append(what)
            raise CaptureViolation(f"{what} inside a captured CUDA graph")

    def Stream(self, null=False, non_blocking=False):
        return self.null_stream if null else FakeStream(self, non_blocking)

    def Device(self, device=0):
        return FakeDevice(self)

    def is_available(self):
        return True

    # -- queues -------------------------------------------------------------------------------
    def get_current_stream(self):
        return self._current[-1]

    def enqueue(self, launch, stream=None):
        """A kernel launch: into the graph being captured, else onto its stream's queue."""
        if self.recording is not None:
            self.recording.append(launch)
        else:
            self._queues.setdefault((stream or self.get_current_stream()).queue_key, []).append(launch)

    def run_queue(self, stream=None):
        """Run what ``stream`` (default: the current one) still owes, in issue order."""
        queue = self._queues.pop((stream or self.get_current_stream()).queue_key, [])
        for launch in queue:
            launch()

    def run_all_queues(self):
        while self._queues:
            for launch in self._queues.pop(next(iter(self._queues))):
                launch()


class FakeDevice:
    id = 0

    def __init__(self, cuda):
        self._cuda = cuda

    def synchronize(self):
        self._cuda.violation("a device synchronisation")
        self._cuda.run_all_queues()


class FakeStream:
    def __init__(self, cuda, non_blocking):
        self._cuda, self.non_blocking = cuda, non_blocking

    @property
    def queue_key(self):
        # Blocking streams and the legacy default stream wait for one another: one queue.
        return id(self) if self.non_blocking else "legacy"

    def __enter__(self):
        self._cuda._current.append(self)
        return self

    def __exit__(self, *exc):
        self._cuda._current.pop()
        return False

    def begin_capture(self, mode=None):
        if not self.non_blocking:
            raise RuntimeError("capture on a blocking stream would serialise with the legacy stream")
        if self._cuda.fail_capture:
            raise RuntimeError("cudaErrorStreamCaptureUnsupported: operation not permitted when stream is capturing")
        self._cuda.recording = []

    def end_capture(self):
        launches, self._cuda.recording = self._cuda.recording, None
        return FakeGraph(self._cuda, launches)

    def is_capturing(self):
        return self._cuda.capturing

    def synchronize(self):
        self._cuda.violation("a stream synchronisation")
        self._cuda.run_queue(self)


class FakeGraph:
    def __init__(self, cuda, launches):
        self._cuda, self.launches = cuda, launches

    def launch(self, stream=None):
        self._cuda.graphs_launched += 1
        for launch in self.launches:
            self._cuda.enqueue(launch, stream)


class DeviceArray(numpy.ndarray):
    """A NumPy array standing in for a cupy.ndarray."""

    cuda = None  # the FakeCuda watching for violations, set by CupyShapedNumpy

    def __array_finalize__(self, obj):
        if DeviceArray.cuda is not None:
            DeviceArray.cuda.violation("creating an array")

    def _host(self, what):
        if DeviceArray.cuda is not None:
            DeviceArray.cuda.violation(what)
            DeviceArray.cuda.run_queue()  # a copy to the host waits for the current stream

    # An array operation is work on the current stream: it comes after what that stream owes.
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _run_current_queue()
        inputs = tuple(numpy.asarray(a) if isinstance(a, DeviceArray) else a for a in inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(numpy.asarray(a) if isinstance(a, DeviceArray) else a for a in kwargs["out"])
        result = getattr(ufunc, method)(*inputs, **kwargs)
        if isinstance(result, numpy.ndarray) and not isinstance(result, DeviceArray):
            return result.view(DeviceArray)
        return result

    def __array_function__(self, func, types, args, kwargs):
        _run_current_queue()
        return super().__array_function__(func, types, args, kwargs)

    def __setitem__(self, key, value):
        _run_current_queue()
        super().__setitem__(key, value)

    def __getitem__(self, key):
        _run_current_queue()
        return super().__getitem__(key)

    def get(self):
        self._host("a copy to the host")
        return numpy.array(self).view(numpy.ndarray)

    def item(self, *args):
        self._host("reading a value on the host")
        return super().item(*args)

    def __float__(self):
        self._host("reading a value on the host")
        return super().__float__()

    def __int__(self):
        self._host("reading a value on the host")
        return super().__int__()

    def __bool__(self):
        self._host("reading a value on the host")
        return super().__bool__()


def _run_current_queue():
    if DeviceArray.cuda is not None and DeviceArray.cuda.recording is None:
        DeviceArray.cuda.run_queue()


def _device(fn):
    def wrapped(*args, **kwargs):
        return numpy.asarray(fn(*args, **kwargs)).view(DeviceArray)

    wrapped.__name__ = fn.__name__
    return wrapped


class CupyShapedNumpy:
    """``xp`` with CuPy's names only, backed by NumPy (any other name raises)."""

    __name__ = "cupy-shaped numpy"

    def __init__(self):
        self.cuda = FakeCuda()
        DeviceArray.cuda = self.cuda
        self.ndarray = DeviceArray
        for name in ("asarray", "empty", "zeros", "zeros_like", "ones", "arange"):
            setattr(self, name, _device(getattr(numpy, name)))

    def asnumpy(self, a):
        if isinstance(a, DeviceArray):
            return a.get()
        return numpy.asarray(a)

    def __getattr__(self, name):
        if name not in CUPY_NAMES:
            raise AttributeError(f"cupy has no attribute {name!r} as far as this stand-in knows")
        return getattr(numpy, name)
