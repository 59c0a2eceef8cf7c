"""The window, drawn by pure functions onto any pygame.Surface.

Everything on screen comes from a ``View`` (canvas, preview, probabilities,
messages) and the ``Layout``; nothing is remembered between frames except
fonts and two scratch surfaces. Tests render onto an off-screen Surface and
check pixels where the layout says things are.
"""

import math
from dataclasses import dataclass

import numpy as np
import pygame

from nn.preprocess import SIDE

BACKGROUND = (24, 26, 33)
PANEL = (36, 39, 48)
PAPER = (10, 11, 14)
INK = (245, 245, 240)
TEXT = (225, 228, 235)
DIM = (125, 131, 146)
ACCENT = (88, 204, 138)
UNSURE = (240, 178, 72)
BAR = (104, 118, 150)
TRACK = (52, 56, 68)
HELP_BAR = (16, 17, 22)

HELP = "left drag: draw   right drag: erase   C: clear   S then 0-9: save   Q/Esc: quit"


@dataclass(frozen=True)
class Layout:
    """Where things are, as (x, y, width, height)."""

    window: tuple = (900, 484)
    canvas: tuple = (16, 40, 392, 392)
    preview: tuple = (432, 40, 140, 140)  # 28 x 5 px: every input pixel is a 5x5 square
    verdict: tuple = (588, 40, 296, 140)
    bars: tuple = (432, 192, 452, 240)  # ten rows of 24 px
    help: tuple = (0, 448, 900, 36)
    label_width: int = 26
    percent_width: int = 66
    bar_height: int = 14

    def bar_track(self, digit):
        """The full-length track of the bar of ``digit``; the bar fills it from the left."""
        x, y, width, height = self.bars
        row = height // 10
        return pygame.Rect(
            x + self.label_width,
            y + digit * row + (row - self.bar_height) // 2,
            width - self.label_width - self.percent_width,
            self.bar_height,
        )


LAYOUT = Layout()


@dataclass
class View:
    """What one frame shows. ``probabilities`` is None when there is nothing to judge."""

    canvas: np.ndarray
    preview: np.ndarray = None  # float32 28x28, None on an empty canvas
    probabilities: np.ndarray = None
    unsure_below: float = 0.6
    notice: str = "draw a digit"  # shown instead of a verdict when there are no probabilities
    model_error: str = None
    model_path: str = "model.npz"
    status: str = ""
    help: str = None  # the key help of the bottom bar (None: HELP)


class Resources:
    """Fonts and scratch surfaces, made once; pygame.font must be initialised."""

    def __init__(self, layout=LAYOUT):
        self.glyph = pygame.font.Font(None, 150)
        self.large = pygame.font.Font(None, 40)
        self.medium = pygame.font.Font(None, 26)
        self.small = pygame.font.Font(None, 21)
        self.canvas = _grey_surface(layout.canvas[2:], PAPER, INK)
        self.preview = _grey_surface((SIDE, SIDE), (0, 0, 0), (255, 255, 255))


def _grey_surface(size, dark, light):
    """An 8-bit surface whose palette runs from ``dark`` (0) to ``light`` (255)."""
    surface = pygame.Surface(size, depth=8)
    ramp = np.linspace(0.0, 1.0, 256)[:, None]
    surface.set_palette([tuple(c) for c in np.rint(np.add(dark, ramp * np.subtract(light, dark))).astype(int)])
    return surface


def _grey_levels(image):
    """float ink in [0, 1] as uint8, transposed to pygame's (x, y) order."""
    return np.rint(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8).T


def percent(p):
    """``p`` as a percentage rounded down to 0.1%: 0.99996 is "99.9%", never a claimed 100%."""
    return f"{math.floor(p * 1000 + 1e-9) / 10:.1f}%"


def draw_window(surface, view, res, layout=LAYOUT):
    surface.fill(BACKGROUND)
    captions = (
        (layout.canvas, "your drawing"),
        (layout.preview, "network input"),
        (layout.verdict, "prediction"),
    )
    for rect, caption in captions:
        surface.blit(res.small.render(caption, True, DIM), (rect[0], rect[1] - 22))
    draw_canvas(surface, view.canvas, res, layout)
    draw_preview(surface, view.preview, res, layout)
    if view.model_error is not None:
        draw_model_message(surface, view, res, layout)
    else:
        draw_verdict(surface, view, res, layout)
        draw_bars(surface, view.probabilities, res, layout)
    draw_help(surface, view.status, res, layout, view.help or HELP)


def draw_canvas(surface, canvas, res, layout=LAYOUT):
    pygame.surfarray.blit_array(res.canvas, _grey_levels(canvas))
    surface.blit(res.canvas, layout.canvas[:2])


def draw_preview(surface, preview, res, layout=LAYOUT):
    rect = pygame.Rect(layout.preview)
    pygame.surfarray.blit_array(res.preview, _grey_levels(np.zeros((SIDE, SIDE)) if preview is None else preview))
    surface.blit(pygame.transform.scale(res.preview, rect.size), rect)
    pygame.draw.rect(surface, TRACK, rect.inflate(2, 2), 1)


def draw_verdict(surface, view, res, layout=LAYOUT):
    rect = pygame.Rect(layout.verdict)
    pygame.draw.rect(surface, PANEL, rect, border_radius=6)
    p = view.probabilities
    if p is None:
        text = res.large.render(view.notice, True, DIM)
        surface.blit(text, text.get_rect(center=rect.center))
        return
    ranked = np.argsort(p)[::-1]
    top, second = int(ranked[0]), int(ranked[1])
    sure = p[top] >= view.unsure_below
    glyph = res.glyph.render(str(top) if sure else "?", True, ACCENT if sure else UNSURE)
    glyph_box = pygame.Rect(rect.x, rect.y, rect.height, rect.height)
    surface.blit(glyph, glyph.get_rect(center=glyph_box.center))
    if sure:
        lines = ((res.large, f"{percent(p[top])} sure", TEXT), (res.medium, f"next: {second} ({percent(p[second])})", DIM))
    else:
        lines = (
            (res.large, "not sure", UNSURE),
            (res.medium, f"{top} ({percent(p[top])}) or {second} ({percent(p[second])})?", TEXT),
        )
    y = rect.centery - 30
    for font, line, colour in lines:
        surface.blit(font.render(line, True, colour), (glyph_box.right, y))
        y += 38


def draw_bars(surface, probabilities, res, layout=LAYOUT):
    """Ten rows: the digit, its bar, its percentage; the most probable in the accent colour."""
    top = None if probabilities is None else int(np.argmax(probabilities))
    for digit in range(10):
        track = layout.bar_track(digit)
        highlight = digit == top
        label = res.medium.render(str(digit), True, ACCENT if highlight else (TEXT if top is not None else DIM))
        surface.blit(label, label.get_rect(midleft=(layout.bars[0] + 4, track.centery)))
        pygame.draw.rect(surface, TRACK, track)
        if probabilities is None:
            continue
        p = float(probabilities[digit])
        filled = track.copy()
        filled.width = round(p * track.width)
        if filled.width:
            pygame.draw.rect(surface, ACCENT if highlight else BAR, filled)
        number = res.small.render(percent(p), True, TEXT if highlight else DIM)
        surface.blit(number, number.get_rect(midright=(layout.bars[0] + layout.bars[2], track.centery)))


def model_help_lines(error, path):
    """What the window says instead of the bars when there is no usable model."""
    local = str(path) != "model.npz" and "://" not in str(path)  # a URL is not a place train.py writes to
    command = f"uv run train.py --out {path}" if local else "uv run train.py"
    return [
        (error, DIM),
        ("", DIM),
        ("Train one (no GPU needed):", TEXT),
        (f"    {command}", ACCENT),
        ("then start gui.py again. You can draw meanwhile.", TEXT),
    ]


def draw_model_message(surface, view, res, layout=LAYOUT):
    """The verdict panel says there is no model; the bars' place says how to get one."""
    verdict = pygame.Rect(layout.verdict)
    pygame.draw.rect(surface, PANEL, verdict, border_radius=6)
    heading = res.large.render("no model loaded", True, UNSURE)
    surface.blit(heading, heading.get_rect(center=verdict.center))
    area = pygame.Rect(layout.bars)
    pygame.draw.rect(surface, PANEL, area, border_radius=6)
    cursor = area.y + 14
    for text, colour in model_help_lines(view.model_error, view.model_path):
        for line in wrap(text, res.medium, area.width - 28) or [""]:
            surface.blit(res.medium.render(line, True, colour), (area.x + 14, cursor))
            cursor += res.medium.get_linesize() + 2


def draw_help(surface, status, res, layout=LAYOUT, keys=HELP):
    rect = pygame.Rect(layout.help)
    pygame.draw.rect(surface, HELP_BAR, rect)
    text = res.small.render(keys, True, DIM)
    surface.blit(text, text.get_rect(midleft=(rect.x + 16, rect.centery)))
    if status:
        room = rect.width - text.get_width() - 48
        shown = status if res.small.size(status)[0] <= room else "..." + status[-(room // 9) :]
        note = res.small.render(shown, True, ACCENT)
        surface.blit(note, note.get_rect(midright=(rect.right - 16, rect.centery)))


def wrap(text, font, width):
    """``text`` broken at spaces into lines no wider than ``width`` pixels in ``font``."""
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and font.size(candidate)[0] > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + [line] if line else lines
