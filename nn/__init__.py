"""The mathematics of xpnet, written once against a backend's array module.

Nothing here imports CuPy or JAX: the arrays passed in decide where the work
runs (see ``backends.array_module``).
"""

from .model import MLP
from .optimizers import OPTIMIZERS, SGD, Adam
from .schedules import SCHEDULES, Schedule
from .training import EarlyStopping, evaluate, fit, split_validation

__all__ = [
    "MLP",
    "OPTIMIZERS",
    "SCHEDULES",
    "SGD",
    "Adam",
    "EarlyStopping",
    "Schedule",
    "evaluate",
    "fit",
    "split_validation",
]
