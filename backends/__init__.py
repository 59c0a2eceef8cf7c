"""Compute backends: where arrays live and how gradients are obtained.

A backend is an object (``be``) with an array module ``be.xp`` that ``nn``
code is written against. Importing this package imports neither CuPy nor
JAX: each backend module is imported when it is first asked for, so
``python train.py --help`` stays instant on any machine.

    numpy  always available; hand-written backward
    jax    jax.numpy under jit; gradients by jax.grad (or the hand-written backward)
    cupy   an NVIDIA GPU; the hand-written backward
"""

import importlib
import os

from .errors import XpnetError

NAMES = ("numpy", "jax", "cupy")
_MODULES = {"numpy": "numpy_backend", "jax": "jax_backend", "cupy": "cupy_backend"}
# auto prefers a real GPU, then XLA's compiled CPU code, then plain NumPy.
_AUTO_ORDER = ("cupy", "jax", "numpy")


def _backend_class(name):
    module = importlib.import_module(f".{_MODULES[name]}", __name__)
    return module.BACKEND_CLASS


def unavailable_reason(name):
    """Why backend ``name`` cannot run here, or None when it can."""
    return _backend_class(name).unavailable_reason()


def available_backends():
    """Names of the backends that can run on this machine, best first."""
    return [name for name in _AUTO_ORDER if unavailable_reason(name) is None]


def get_backend(name=None):
    """The backend called ``name``; None means $XPNET_BACKEND, else ``auto``.

    ``auto`` takes the first usable of cupy, jax, numpy and never fails.
    Asking for a named backend that cannot run raises XpnetError saying why
    and which backends can.
    """
    name = (name or os.environ.get("XPNET_BACKEND") or "auto").strip().lower()
    if name == "auto":
        for candidate in _AUTO_ORDER:
            if unavailable_reason(candidate) is None:
                return _backend_class(candidate)()
        raise AssertionError("the numpy backend is always available")
    if name not in _MODULES:
        raise XpnetError(
            f"unknown backend {name!r}: choose one of {', '.join(NAMES)} or auto"
        )
    reason = unavailable_reason(name)
    if reason is not None:
        raise XpnetError(
            f"the {name} backend cannot run here: {reason}; "
            f"available: {', '.join(available_backends())} (or use --backend auto)"
        )
    return _backend_class(name)()


def array_module(*arrays):
    """The array module (numpy, cupy or jax.numpy) that ``arrays`` belong to.

    Chainer's ``get_array_module`` idea, found by the array's type, so that it
    never imports a library the caller has not already loaded. JAX tracers
    count as JAX arrays, which is what lets ``nn`` code run under ``jax.jit``.
    """
    import numpy  # imported here, not above: gui.py sets BLAS defaults before NumPy loads

    for a in arrays:
        module = _MODULE_OF_TYPE.get(type(a))
        if module is None:
            module = _MODULE_OF_TYPE[type(a)] = _module_of(type(a))
        if module is not numpy:
            return module
    return numpy


# Looked up once per array type: nn asks for every operation, and a digit
# read by the GUI is a few dozen of them (measured: 10 of a forward's 32 us).
_MODULE_OF_TYPE = {}


def _module_of(array_type):
    import sys

    root = array_type.__module__.partition(".")[0]
    if root in ("jax", "jaxlib"):
        return sys.modules["jax.numpy"]
    if root == "cupy":
        return sys.modules["cupy"]
    import numpy

    return numpy


__all__ = [
    "NAMES",
    "XpnetError",
    "array_module",
    "available_backends",
    "get_backend",
    "unavailable_reason",
]
