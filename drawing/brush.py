"""A round soft brush dragged along a straight segment, as pixel coverage.

Mouse events arrive tens of pixels apart during a fast stroke; painting the
exact capsule between two samples (every pixel within ``radius`` of the
segment) leaves no gaps and no beads, whatever the speed.

The width is MNIST's. Its pen strokes, measured on the 60,000 training
digits as 2 * ink area / perimeter (``nn.preprocess.stroke_width``: the
perimeter counted along pixel edges of the >= 0.5 mask and corrected by
pi / 4, the mean over directions of a 4-neighbour contour's overcount), have a median width of 2.5 px for a digit
whose longer side is 20 px: an eighth of the digit's height. People fill
about two thirds of the canvas, so a stroke of 1/8 * 2/3 of the canvas side
reduces to MNIST's 2.5 px; smaller or larger drawings give the thinner and
thicker strokes (MNIST's own 10th-90th percentiles are 1.8-3.5 px).
"""

import numpy as np

STROKE_FRACTION = 1 / 8 * 2 / 3  # stroke width as a fraction of the canvas side
SOFTNESS = 3.0  # px over which the brush fades from full ink to none


def brush_radius(canvas_side):
    return STROKE_FRACTION * canvas_side / 2


def segment_coverage(shape, start, end, radius, softness=SOFTNESS):
    """(region, coverage) of a brush dragged from ``start`` to ``end`` (x, y pixel indices).

    ``region`` is a (rows, cols) pair of slices of an array of ``shape``;
    ``coverage`` is float32 ink in [0, 1] over it: 1 within ``radius`` of the
    segment minus half the softness, 0.5 at ``radius``, 0 beyond. None when
    the brush misses the canvas entirely.
    """
    (x0, y0), (x1, y1) = start, end
    reach = radius + softness
    height, width = shape
    top, bottom = max(0, int(np.floor(min(y0, y1) - reach))), min(height, int(np.ceil(max(y0, y1) + reach)) + 1)
    left, right = max(0, int(np.floor(min(x0, x1) - reach))), min(width, int(np.ceil(max(x0, x1) + reach)) + 1)
    if top >= bottom or left >= right:
        return None
    ys = np.arange(top, bottom, dtype=np.float32)[:, None]
    xs = np.arange(left, right, dtype=np.float32)[None, :]
    dx, dy = np.float32(x1 - x0), np.float32(y1 - y0)
    length2 = dx * dx + dy * dy
    # Where each pixel's nearest point on the segment is, as a fraction of its length.
    t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / length2, 0, 1) if length2 > 0 else np.float32(0)
    distance = np.hypot(xs - (x0 + t * dx), ys - (y0 + t * dy))
    coverage = np.clip((radius - distance) / softness + 0.5, 0, 1).astype(np.float32)
    return (slice(top, bottom), slice(left, right)), coverage
