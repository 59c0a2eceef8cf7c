"""The NumPy backend: the reference that always runs, with the hand-written backward."""

import functools

import numpy

from .base import Backend


class NumpyBackend(Backend):
    name = "numpy"
    xp = numpy
    updates_in_place = True

    def device_description(self):
        import platform

        return f"CPU ({platform.machine()}), NumPy {numpy.__version__}"

    def compile(self, fn, donate_argnums=()):
        # A diverging run overflows on its way to a non-finite loss; fit() reports
        # that in one line, so NumPy's per-operation warnings would only be noise.
        @functools.wraps(fn)
        def quiet(*args, **kwargs):
            with numpy.errstate(over="ignore", invalid="ignore", divide="ignore"):
                return fn(*args, **kwargs)

        return quiet


BACKEND_CLASS = NumpyBackend
