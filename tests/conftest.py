"""Shared fixtures: every backend-parametrized test runs on each backend here.

    numpy          the reference
    cupy-on-numpy  the CuPy backend's own code path with NumPy as its array
                   module: runs everywhere, so CI covers that code too
    jax            jax.numpy under jit
    cupy           a real GPU; skipped with the reason when there is none
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# JAX's persistent compilation cache, in a folder of this run's own (removed
# at exit) and inherited by the train.py processes the tests start: the
# tests build the same few models again and again, each time in new jitted
# closures that jax.jit's in-memory cache cannot recognize, and XLA compiles
# the same program anew (one checkpoint test took 32 s alone, under 4 s
# with the cache in the suite's run). From the cache, the compiled code is the same. Set before jax is
# imported, which reads these once.
_JAX_CACHE = tempfile.mkdtemp(prefix="xpnet-tests-jax-cache-")
atexit.register(shutil.rmtree, _JAX_CACHE, ignore_errors=True)
os.environ.update({"JAX_COMPILATION_CACHE_DIR": _JAX_CACHE, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                   "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"})

import numpy  # noqa: E402
import pytest  # noqa: E402

from backends import get_backend, unavailable_reason  # noqa: E402
from backends.cupy_backend import CupyBackend  # noqa: E402

BACKEND_IDS = ("numpy", "cupy-on-numpy", "jax", "cupy")


def make_backend(backend_id):
    if backend_id == "cupy-on-numpy":
        return CupyBackend(xp=numpy)
    reason = unavailable_reason(backend_id)
    if reason is not None:
        pytest.skip(f"{backend_id} backend unavailable: {reason}")
    return get_backend(backend_id)


def _backend_params():
    return [
        pytest.param(name, id=name, marks=[pytest.mark.gpu] if name == "cupy" else [])
        for name in BACKEND_IDS
    ]


@pytest.fixture(params=_backend_params())
def be(request):
    """One backend object per parameter; tests use ``be.xp`` for arrays."""
    return make_backend(request.param)


def mnist_dir():
    """The real MNIST folder from $MNIST_DATA, or None."""
    path = os.environ.get("MNIST_DATA")
    return Path(path) if path and Path(path).exists() else None


@pytest.fixture(scope="session")
def mnist():
    """Real MNIST (float32 pixels, int32 labels); skips with the reason when absent."""
    path = mnist_dir()
    if path is None:
        pytest.skip("real MNIST not found: set MNIST_DATA to a folder with the four IDX files")
    from nn.data import load_mnist

    return load_mnist(path)
