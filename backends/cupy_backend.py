"""The CuPy backend: the hand-written forward and backward on an NVIDIA GPU.

CuPy is imported here and nowhere else, and only when this backend is asked
for. ``CupyBackend(xp=numpy)`` runs this very code path with NumPy arrays,
which is how the test suite exercises it on machines without a GPU.
"""

import numpy

from .base import Backend

_INSTALL_HINT = "install the extra that matches your CUDA: uv sync --extra cuda12 (or --extra cuda13)"


def _import_cupy():
    import cupy

    return cupy


class CupyBackend(Backend):
    name = "cupy"

    def __init__(self, xp=None):
        self.xp = _import_cupy() if xp is None else xp

    @classmethod
    def unavailable_reason(cls):
        try:
            cupy = _import_cupy()
        except ImportError:
            return f"CuPy is not installed ({_INSTALL_HINT})"
        except Exception as exc:  # a broken CUDA install fails in many ways
            return f"CuPy failed to import ({type(exc).__name__}: {str(exc).splitlines()[0]})"
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return f"no usable CUDA driver ({first_line})"
        if count == 0:
            return "no CUDA device detected"
        return None

    def to_host(self, a):
        if self.xp is numpy:
            return numpy.asarray(a)
        return self.xp.asnumpy(a)

    def synchronize(self):
        if self.xp is not numpy:
            self.xp.cuda.Device().synchronize()

    def device_description(self):
        if self.xp is numpy:
            return "CPU (CuPy code path on NumPy arrays)"
        props = self.xp.cuda.runtime.getDeviceProperties(self.xp.cuda.Device().id)
        name = props["name"]
        return f"{name.decode() if isinstance(name, bytes) else name}, CuPy {self.xp.__version__}"


BACKEND_CLASS = CupyBackend
