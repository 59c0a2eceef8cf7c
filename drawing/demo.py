"""Digits drawn by a script: mouse events as a person's hand would make them.

Used by ``gui.py --screenshot``, the frame-time benchmark and the tests.
Paths are in canvas fractions ((0, 0) top left, (1, 1) bottom right) and
are sampled every few percent of the canvas, about as far apart as mouse
events during a brisk stroke, so the brush's interpolation is exercised.
"""

import numpy as np
import pygame

from .render import LAYOUT

SPACING = 0.03  # canvas fractions between mouse samples (~12 px on a 392 px canvas)
BUTTON_MASKS = {1: (1, 0, 0), 3: (0, 0, 1)}


def _arc(cx, cy, rx, ry, start_deg, end_deg):
    """Points of an elliptical arc; angles clockwise on screen from the +x axis (y points down)."""
    angles = np.radians(np.linspace(start_deg, end_deg, 48))
    return list(zip(cx + rx * np.cos(angles), cy + ry * np.sin(angles)))


DIGITS = {  # each digit: a list of strokes, each a polyline through these points
    "1": [[(0.40, 0.30), (0.55, 0.16), (0.53, 0.84)]],
    "2": [_arc(0.49, 0.35, 0.19, 0.18, 195, 385) + [(0.30, 0.82), (0.72, 0.81)]],
    "3": [_arc(0.48, 0.33, 0.16, 0.15, 200, 450) + _arc(0.48, 0.64, 0.19, 0.17, 270, 500)],
    "4": [[(0.50, 0.16), (0.27, 0.60), (0.76, 0.58)], [(0.63, 0.34), (0.61, 0.86)]],
    "5": [[(0.68, 0.18), (0.36, 0.19), (0.33, 0.46)] + _arc(0.48, 0.62, 0.20, 0.19, 235, 485)],
    "7": [[(0.28, 0.20), (0.72, 0.19), (0.58, 0.48), (0.46, 0.84)]],
    "9": [_arc(0.48, 0.33, 0.17, 0.15, 0, 360) + [(0.63, 0.55), (0.60, 0.86)]],
    # a 1 with a long flag, as much of Europe writes it (drawing.person's "long-flag 1"): read as a 7
    "1-flag": [[(0.24, 0.50), (0.58, 0.14), (0.56, 0.86)]],
}


def resample(path, spacing=SPACING):
    """``path`` as points ``spacing`` apart along its length (plus its last point)."""
    points = np.asarray(path, float)
    lengths = np.hypot(*np.diff(points, axis=0).T)
    along = np.concatenate([[0.0], np.cumsum(lengths)])
    stops = np.append(np.arange(0.0, along[-1], spacing), along[-1])
    return np.stack([np.interp(stops, along, points[:, 0]), np.interp(stops, along, points[:, 1])], axis=1)


def stroke_events(path, layout=LAYOUT, button=1, per_frame=1):
    """Per-frame event lists for one stroke along ``path``: press, moves, release."""
    x, y, side, _ = layout.canvas
    pixels = [(x + round(u * side), y + round(v * side)) for u, v in resample(path)]
    frames = [[pygame.event.Event(pygame.MOUSEBUTTONDOWN, pos=pixels[0], button=button)]]
    previous = pixels[0]
    for start in range(1, len(pixels), per_frame):
        batch = []
        for pos in pixels[start : start + per_frame]:
            rel = (pos[0] - previous[0], pos[1] - previous[1])
            batch.append(pygame.event.Event(pygame.MOUSEMOTION, pos=pos, rel=rel, buttons=BUTTON_MASKS[button]))
            previous = pos
        frames.append(batch)
    frames.append([pygame.event.Event(pygame.MOUSEBUTTONUP, pos=pixels[-1], button=button)])
    return frames


def digit_events(digit, layout=LAYOUT, per_frame=1):
    """Per-frame event lists drawing ``digit`` (a key of DIGITS) stroke by stroke."""
    return [frame for path in DIGITS[digit] for frame in stroke_events(path, layout, per_frame=per_frame)]


def key_events(key):
    """One frame in which ``key`` (a pygame.K_* constant) is pressed and released."""
    return [[pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode="", scancode=0),
             pygame.event.Event(pygame.KEYUP, key=key, mod=0, unicode="", scancode=0)]]
