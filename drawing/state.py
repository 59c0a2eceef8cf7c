"""What the person has drawn and what the keys mean: a state machine on a NumPy canvas.

No pygame here: the event loop turns mouse and key events into calls such as
``press("draw", (x, y))`` or ``key("s")``, so every rule is tested with plain
values. Keys return a command for the loop (quit, save) instead of doing I/O.
"""

from dataclasses import dataclass
from enum import Enum

import numpy as np

from nn.preprocess import ink_bbox

from .brush import brush_radius, segment_coverage

DIGIT_KEYS = tuple("0123456789")
ERASER_SCALE = 2.0  # the eraser is wider than the pen: erasing is for whole parts


class Mode(Enum):
    IDLE = "idle"
    DRAWING = "drawing"
    ERASING = "erasing"
    AWAIT_LABEL = "await_label"  # after S: the next digit key names the drawing


class Quit:
    """Command: leave the window."""


class Undo:
    """Command: forget the last lesson (learning mode)."""


@dataclass(frozen=True)
class Save:
    """Command: save the current drawing as a sample of digit ``label``."""

    label: int


QUIT = Quit()
UNDO = Undo()


@dataclass
class DrawingState:
    """The canvas (float32 ink in [0, 1], rows x cols) and the interaction mode.

    ``version`` grows with every change of the canvas, so a viewer recomputes
    its prediction only when there is something new to see.
    """

    canvas: np.ndarray
    radius: float
    mode: Mode = Mode.IDLE
    last: tuple = None
    version: int = 0
    status: str = ""
    digit_labels: bool = False  # learning mode: a digit key names the drawing at once (no S first)

    @classmethod
    def blank(cls, side):
        return cls(canvas=np.zeros((side, side), np.float32), radius=brush_radius(side))

    # -- mouse -----------------------------------------------------------------
    def press(self, tool, pos):
        """Start a stroke of ``tool`` ("draw" or "erase") at ``pos`` (x, y)."""
        self.status = "save cancelled" if self.mode is Mode.AWAIT_LABEL else ""
        self.mode = Mode.DRAWING if tool == "draw" else Mode.ERASING
        self.last = pos
        self._paint(pos, pos)

    def move(self, pos, held=True):
        """The pointer moved to ``pos``; ``held`` says whether the button is still down.

        A stroke whose button-up was lost (released outside the window) ends
        at the first move without the button.
        """
        if self.mode not in (Mode.DRAWING, Mode.ERASING):
            return
        if not held:
            self.release()
            return
        self._paint(self.last, pos)
        self.last = pos

    def release(self):
        if self.mode in (Mode.DRAWING, Mode.ERASING):
            self.mode = Mode.IDLE
            self.last = None

    def _paint(self, start, end):
        erasing = self.mode is Mode.ERASING
        radius = self.radius * ERASER_SCALE if erasing else self.radius
        painted = segment_coverage(self.canvas.shape, start, end, radius)
        if painted is None:
            return
        region, coverage = painted
        patch = self.canvas[region]
        if erasing:
            np.minimum(patch, 1.0 - coverage, out=patch)
        else:
            np.maximum(patch, coverage, out=patch)
        self.version += 1

    # -- keys ------------------------------------------------------------------
    def key(self, name):
        """React to key ``name`` ("c", "s", "u", "q", "escape", "0".."9"); return QUIT, UNDO, a Save or None."""
        if self.mode is Mode.AWAIT_LABEL:
            if name in DIGIT_KEYS:
                self.mode = Mode.IDLE
                return Save(int(name))
            if name == "escape":
                self.mode = Mode.IDLE
                self.status = "save cancelled"
            return None
        if name in ("q", "escape"):
            return QUIT
        if name == "u":
            return UNDO
        if name in DIGIT_KEYS and self.digit_labels:
            if not self.has_ink:
                self.status = "nothing to learn from: draw a digit first"
                return None
            self.release()
            return Save(int(name))
        if name == "c":
            self.clear()
        elif name == "s":
            self.begin_save()
        return None

    def clear(self):
        self.canvas[:] = 0.0
        self.mode, self.last = Mode.IDLE, None
        self.version += 1
        self.status = ""

    def begin_save(self):
        if not self.has_ink:
            self.status = "nothing to save: draw a digit first"
            return
        self.release()
        self.mode = Mode.AWAIT_LABEL
        self.status = "save as which digit? type 0-9 (Esc cancels)"

    @property
    def has_ink(self):
        """Whether any pixel is inside a stroke (faint erasing leftovers do not count)."""
        return ink_bbox(self.canvas) is not None
