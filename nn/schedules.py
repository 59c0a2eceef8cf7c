"""Learning-rate schedules as pure functions of training progress.

``progress`` is measured in epochs and may be fractional (epoch 2, batch 100
of 430 is 2.23), so a schedule can change the rate every step.

    constant     lr
    exponential  lr * decay ** floor(progress)       (a step per epoch)
    cosine       lr * (1 + cos(pi * progress / epochs)) / 2
"""

import math
from dataclasses import dataclass

from backends import XpnetError

SCHEDULES = ("constant", "exponential", "cosine")


@dataclass(frozen=True)
class Schedule:
    kind: str
    base_lr: float
    epochs: int
    decay: float = 0.9

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise XpnetError(f"unknown schedule {self.kind!r}: choose one of {', '.join(SCHEDULES)}")
        if not (self.base_lr > 0 and math.isfinite(self.base_lr)):
            raise XpnetError(f"--lr {self.base_lr} must be a positive number, e.g. --lr 0.001")
        if not 0 < self.decay <= 1:
            raise XpnetError(f"--lr-decay {self.decay} must be in (0, 1]")
        if self.epochs < 1:
            raise XpnetError(f"--epochs {self.epochs} must be at least 1")

    def __call__(self, progress):
        if self.kind == "constant":
            return self.base_lr
        if self.kind == "exponential":
            return self.base_lr * self.decay ** math.floor(progress)
        return self.base_lr * 0.5 * (1.0 + math.cos(math.pi * min(progress / self.epochs, 1.0)))
