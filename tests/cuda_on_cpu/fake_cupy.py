"""A "cupy-shaped NumPy": the CuPy backend's ``xp`` for tests without a GPU.

It has only the names listed in ``CUPY_NAMES`` (every one of which real CuPy
has; tests/test_cupy_glue.py checks that against an installed CuPy), so the
backend cannot lean on something CuPy lacks. Its arrays are ``DeviceArray``,
NumPy arrays that know when a CUDA graph is being captured: creating one then
(an allocation) or reading one back to the host (a synchronisation) is a
``CaptureViolation``, recorded and raised. ``cuda.Stream.begin_capture`` starts
recording the launches of an ``EmulatedModule`` whose recorder is this
``cuda``; ``end_capture`` returns a graph that replays them.
"""

import numpy

# Module-level names of CuPy that the stand-in provides; the backend must
# make do with these.
CUPY_NAMES = frozenset({
    "asarray", "asnumpy", "empty", "zeros", "zeros_like", "ones", "arange", "float32", "int32", "uint32",
    "ndarray", "cuda", "RawModule", "sum", "argmax", "maximum", "exp", "log", "where", "abs", "sqrt",
    "sign", "tanh", "mean", "max", "argsort", "__version__",
    # nn.optimizers' update_in_place (the fallback step) and Backend.owned
    "array", "empty_like", "multiply", "divide", "copyto", "expm1", "less", "finfo",
})


class CaptureViolation(AssertionError):
    """Something inside a captured CUDA graph that a real capture would break on."""


class FakeCuda:
    """``cupy.cuda`` for the stand-in: streams, capture, devices."""

    def __init__(self):
        self.recording = None  # a list of launches while a graph is captured
        self.violations = []
        self.fail_capture = False  # make begin_capture raise, as a driver may
        self.graphs_launched = 0

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
        return FakeStream(self, non_blocking)

    def Device(self, device=0):
        return FakeDevice(self)

    def is_available(self):
        return True


class FakeDevice:
    id = 0

    def __init__(self, cuda):
        self._cuda = cuda

    def synchronize(self):
        self._cuda.violation("a device synchronisation")


class FakeStream:
    def __init__(self, cuda, non_blocking):
        self._cuda, self.non_blocking = cuda, non_blocking

    def __enter__(self):
        return self

    def __exit__(self, *exc):
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


class FakeGraph:
    def __init__(self, cuda, launches):
        self._cuda, self.launches = cuda, launches

    def launch(self, stream=None):
        self._cuda.graphs_launched += 1
        for launch in self.launches:
            launch()


class DeviceArray(numpy.ndarray):
    """A NumPy array standing in for a cupy.ndarray."""

    cuda = None  # the FakeCuda watching for violations, set by CupyShapedNumpy

    def __array_finalize__(self, obj):
        if DeviceArray.cuda is not None:
            DeviceArray.cuda.violation("creating an array")

    def _host(self, what):
        if DeviceArray.cuda is not None:
            DeviceArray.cuda.violation(what)

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
