"""The CuPy backend: the hand-written forward and backward as our own CUDA kernels.

CuPy is imported here and nowhere else, and only when this backend is asked
for. Training runs on the kernels of ``backends/cuda`` (see cupy_step.py: one
plan of launches, captured as a CUDA graph); evaluation and prediction use
the ``nn`` code on CuPy arrays. ``CupyBackend(xp=numpy)`` runs the ``nn``
code path with NumPy arrays, which is how the shared test suite exercises this
class on machines without a GPU; the kernel path is tested there with the
CUDA-on-CPU harness passed as ``module``.
"""

import functools

import numpy

from .base import Backend
from .cupy_kernels import NVRTC_OPTIONS, Kernels, kernel_source
from .random import stream_key

_INSTALL_HINT = "install the extra that matches your CUDA: uv sync --extra cuda12 (or --extra cuda13)"


def _import_cupy():
    import cupy

    return cupy


def _first_line(exc):
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


@functools.lru_cache(maxsize=None)
def _cuda_unavailable_reason():
    """Asked once per process: import CuPy, see a device, run one tiny kernel."""
    try:
        cupy = _import_cupy()
    except ImportError:
        return f"CuPy is not installed ({_INSTALL_HINT})"
    except Exception as exc:  # a broken CUDA install fails in many ways
        return f"CuPy failed to import ({_first_line(exc)})"
    try:
        if not cupy.cuda.is_available():
            return "no usable CUDA device (no NVIDIA GPU or driver found)"
        # One launch proves driver, device and runtime compiler all work.
        if float((cupy.arange(4, dtype=cupy.float32) * 2).sum()) != 12.0:
            return "the CUDA device computes wrong results"
    except Exception as exc:
        return f"CUDA is present but a test kernel failed ({_first_line(exc)})"
    return None


@functools.lru_cache(maxsize=None)
def _raw_module(cupy):
    """Our kernels as one RawModule: compiled on first use, cached on disk by CuPy."""
    return cupy.RawModule(code=kernel_source(), options=NVRTC_OPTIONS)


class CupyBackend(Backend):
    name = "cupy"
    updates_in_place = True  # the fallback path's update; the fused step has flat buffers of its own

    def __init__(self, xp=None, *, module=None, cuda_graph=None):
        """``xp``: CuPy, or a stand-in for tests. ``module``: anything with
        ``RawModule.get_function`` holding our kernels (default: compiled from
        backends/cuda when ``xp`` is CuPy; none on plain NumPy). ``cuda_graph``:
        capture the training step as a CUDA graph (None: yes, where it works)."""
        self.xp = _import_cupy() if xp is None else xp
        self._module = module
        self._kernels = None
        self.cuda_graph = cuda_graph

    @classmethod
    def unavailable_reason(cls):
        return _cuda_unavailable_reason()

    def kernels(self):
        """Typed launchers of our kernels, or None on the plain-NumPy code path."""
        if self._kernels is None:
            if self._module is None:
                if self.xp is numpy:
                    return None
                self._module = _raw_module(self.xp)
            self._kernels = Kernels(self._module)
        return self._kernels

    def to_host(self, a):
        return numpy.array(a) if self.xp is numpy else self.xp.asnumpy(a)

    def synchronize(self):
        if self.xp is not numpy:
            self.xp.cuda.Device().synchronize()

    def device_description(self):
        if self.xp is numpy or not hasattr(self.xp.cuda, "runtime"):
            return "CPU (CuPy code path on NumPy arrays)"
        props = self.xp.cuda.runtime.getDeviceProperties(self.xp.cuda.Device().id)
        name = props["name"]
        graph = "CUDA graph" if self.cuda_graph is not False else "plain launches"
        return f"{name.decode() if isinstance(name, bytes) else name}, CuPy {self.xp.__version__}, {graph}"

    def keep_mask(self, seed, step, layer, shape, keep_prob, dtype):
        kernels = self.kernels()
        if kernels is None or numpy.dtype(dtype) != numpy.float32:
            return super().keep_mask(seed, step, layer, shape, keep_prob, dtype)
        mask = self.xp.empty(shape, dtype=self.xp.float32)
        kernels.keep_mask(mask, stream_key(int(seed), int(step), int(layer)), keep_prob)()
        return mask

    def make_train_step(self, model, optimizer, *, seed, grad=None, augment=None):
        from .cupy_step import FusedTrainStep, fused_step_unsupported

        grad = self.check_grad_mode(grad)
        kernels = self.kernels()
        if kernels is None or fused_step_unsupported(model, optimizer, augment) is not None:
            return super().make_train_step(model, optimizer, seed=seed, grad=grad, augment=augment)
        return FusedTrainStep(self.xp, kernels, model, optimizer, seed, cuda_graph=self.cuda_graph is not False,
                              augment=augment)


BACKEND_CLASS = CupyBackend
