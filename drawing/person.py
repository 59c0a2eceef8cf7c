"""A simulated person: one consistent handwriting style, drawn anew each time with a hand's jitter.

For the learning benchmark and tests of ``gui.py --learn``: each style is a
digit written in a way MNIST's writers seldom did, as strokes in canvas
fractions like ``drawing.demo.DIGITS``. A drawing moves every point by a
little noise and the whole digit by a small slant, size and place, then
goes through the window's own brush and preprocessing (``DrawingState``,
``nn.preprocess.to_mnist``), as a person's would.
"""

import numpy as np

from nn.preprocess import to_mnist

from .demo import resample
from .render import LAYOUT
from .state import DrawingState

STYLES = {
    # a 1 with a long flag, as written in much of Europe: the default model reads it as a 7
    "long-flag 1": (1, [[(0.24, 0.50), (0.58, 0.14), (0.56, 0.86)]]),
    # a 9 with a small loop high on a long stem: read as a 9, a 7 or a 1
    "small-loop 9": (9, [[(0.60, 0.22), (0.56, 0.15), (0.48, 0.16), (0.45, 0.24), (0.50, 0.29), (0.60, 0.24),
                          (0.55, 0.88)]]),
}


def draw_style(style, rng, side=LAYOUT.canvas[2]):
    """One drawing of ``style`` (a key of STYLES): (28x28 float32 image, its digit)."""
    digit, strokes = STYLES[style]
    angle = np.radians(rng.uniform(-8, 8))
    scale = rng.uniform(0.85, 1.1)
    shift = rng.uniform(-0.06, 0.06, 2)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    state = DrawingState.blank(side)
    for stroke in strokes:
        points = np.asarray(stroke, float) + rng.normal(0, 0.015, (len(stroke), 2))
        points = (points - 0.5) @ rotation.T * scale + 0.5 + shift
        pixels = resample(points) * side
        state.press("draw", tuple(pixels[0]))
        for p in pixels[1:]:
            state.move(tuple(p))
        state.release()
    return to_mnist(state.canvas), digit
