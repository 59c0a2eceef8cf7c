"""MNIST's own preprocessing, applied to a drawing: pure NumPy functions.

LeCun, Cortes and Burges built MNIST by fitting each black-and-white NIST
digit into a 20x20 box, keeping its aspect ratio, with anti-aliased grey
levels, then placing it in a 28x28 field with its centre of mass at the
centre. A large drawing goes through the same steps to become the input the
network was trained on:

    ink_bbox         the box around the ink: pixels >= 0.5, the stroke's edge
    fit_box          area-averaged reduction until the longer side is 20 px
    centre_by_mass   a whole-pixel shift putting the centre of mass on (14, 14)

One step is not MNIST's: ``even_stroke`` brings the pen's width into
``STROKE_RANGE`` first. NIST's writers used pens of similar width on forms of
one size; on a canvas the same brush makes a small digit's strokes thick and
a large one's thin once reduced to 20 px (1.3-5.4 px on the drawn-digit set,
against MNIST's 1.8-3.5 px between its 10th and 90th percentiles, drawing.brush), and the
models misread the thickest most (README, Drawn digits).

Measured on the 60,000 training digits (pixel centres at integer indices):
the box around the non-zero pixels has a longer side of 20 px in all but 13
of them, and the centre of mass sits at (14.00, 14.01) with a standard
deviation of 0.29 px on each axis: exactly the spread of a uniform +-0.5 px
rounding error. So MNIST was shifted by whole pixels onto index (14, 14),
and so is a drawing here. On a large canvas the stroke's edge is its 0.5
contour; reduced to 20 px, the partly covered pixels along that edge become
the faint grey ones at the border of MNIST's box.
"""

import numpy as np

SIDE = 28  # the network's input is SIDE x SIDE
BOX = 20  # the longer side of the digit after reduction
CENTRE = 14.0  # where the centre of mass lands, in pixel indices
INK = 0.5  # a pixel at least this dark is inside the stroke
# Pen widths (px, in a digit BOX px high) left as drawn; wider or narrower strokes are
# eroded or dilated to the nearest end. Chosen on the validation drawings among
# (2.0, 2.4), (1.6, 2.4), (1.8, 2.6), (1.8, 2.8) and single widths 2.0-2.8.
STROKE_RANGE = (1.8, 2.8)
FINE = 3  # the pen's width is changed on a box FINE times finer than BOX, where it spans several pixels
REACH_BACK = 1.5  # px: an eroded stroke grown back by its erosion and this much must cover the drawn one
MIN_CONTRAST = 0.1  # ink this little above the background is paper texture or noise, not a digit


def ink_bbox(canvas, threshold=INK):
    """(top, bottom, left, right), bottom/right exclusive, of pixels >= threshold; None when there are none."""
    ink = canvas >= threshold
    rows = np.flatnonzero(ink.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(ink.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def area_weights(n_src, scale):
    """Resampling matrix of shape (ceil(n_src * scale), n_src) that averages areas.

    Output pixel j covers source interval [j / scale, (j + 1) / scale); its
    weight on source pixel i is ``scale * |[i, i + 1) & that interval|``. Each
    output pixel is the mean of the ink it covers (times the covered fraction
    at the far edge), which is the anti-aliasing of a reduced binary image.
    """
    n_out = max(1, int(np.ceil(n_src * scale - 1e-6)))
    low = np.arange(n_out)[:, None] / scale
    high = low + 1.0 / scale
    src = np.arange(n_src)[None, :]
    overlap = np.clip(np.minimum(high, src + 1) - np.maximum(low, src), 0.0, None)
    return (overlap * scale).astype(np.float32)


def fit_box(image, box=BOX):
    """``image`` reduced (or enlarged) so its longer side is ``box`` px; aspect ratio kept."""
    height, width = image.shape
    scale = box / max(height, width)
    fitted = area_weights(height, scale) @ image.astype(np.float32) @ area_weights(width, scale).T
    return np.clip(fitted, 0.0, 1.0)


def centre_of_mass(image):
    """(row, column) of the grey-level centre of mass, in pixel indices; None for an empty image."""
    mass = float(image.sum())
    if mass <= 0:
        return None
    rows = image.sum(axis=1) @ np.arange(image.shape[0]) / mass
    cols = image.sum(axis=0) @ np.arange(image.shape[1]) / mass
    return float(rows), float(cols)


def centre_by_mass(image, side=SIDE, centre=CENTRE):
    """``image`` pasted into a ``side`` x ``side`` field, shifted by whole pixels so its
    centre of mass is within half a pixel of (centre, centre). Ink shifted off the
    field is dropped, as a lopsided digit in MNIST would lose it."""
    field = np.zeros((side, side), np.float32)
    com = centre_of_mass(image)
    if com is None:
        return field
    top, left = (int(np.floor(centre - c + 0.5)) for c in com)
    height, width = image.shape
    y0, y1 = max(top, 0), min(top + height, side)
    x0, x1 = max(left, 0), min(left + width, side)
    if y0 < y1 and x0 < x1:
        field[y0:y1, x0:x1] = image[y0 - top : y1 - top, x0 - left : x1 - left]
    return field


def ink_from_grey(grey):
    """A picture of a digit (2-D, grey levels in [0, 1], either polarity) as ink in [0, 1], light on dark.

    The image's border is its background: a light border means dark ink on
    paper, which is inverted. The background level becomes 0 and the
    strongest ink 1, so grey paper or a dim photo gives the same digit as a
    clean drawing. An image with less than ``MIN_CONTRAST`` between them has
    no ink.
    """
    grey = np.asarray(grey, np.float32)
    border = np.concatenate([grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]])
    if np.median(border) > 0.5:
        grey, border = 1 - grey, 1 - border
    background, strongest = float(np.median(border)), float(grey.max())
    if strongest - background < MIN_CONTRAST:
        return np.zeros_like(grey)
    return np.clip((grey - background) / (strongest - background), 0.0, 1.0)


def stroke_width(image, threshold=INK):
    """Mean width of the strokes, in pixels: 2 * ink / perimeter of the ``threshold`` mask.

    A stroke of width w and length L has ink w L and perimeter 2 L. The
    perimeter is counted along pixel edges, which overcounts a curve's length
    by 4 / pi on average over its directions. None for an image without ink.
    """
    mask = np.pad(image >= threshold, 1)
    edges = np.count_nonzero(mask[1:] != mask[:-1]) + np.count_nonzero(mask[:, 1:] != mask[:, :-1])
    return None if edges == 0 else 2 * float(image.sum()) / (edges * np.pi / 4)


def _whole_disk_filter(image, radius, reduce):
    padded = np.pad(image, radius)
    height, width = image.shape
    out = image.copy()
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if (dy or dx) and dy * dy + dx * dx <= radius * radius:
                reduce(out, padded[radius + dy : radius + dy + height, radius + dx : radius + dx + width], out=out)
    return out


def disk_filter(image, radius, reduce):
    """``reduce`` (np.minimum: grey erosion, np.maximum: dilation) over a disk of
    ``radius`` px around every pixel, outside the image 0; a fractional radius
    blends the two whole-pixel disks around it."""
    whole = int(np.floor(radius))
    fraction = radius - whole
    inner = _whole_disk_filter(image, whole, reduce)
    if fraction == 0:
        return inner
    return (1 - fraction) * inner + fraction * _whole_disk_filter(image, whole + 1, reduce)


def even_stroke(image, stroke=STROKE_RANGE, box=BOX):
    """``image`` (a cropped digit) with its pen width brought into ``stroke`` (px once
    its longer side is ``box`` px); unchanged when it is already there.

    The change happens on a box ``FINE`` times larger, by a grey erosion or
    dilation with a disk: every contour moves in or out by the same distance,
    so a stroke of even width keeps its shape. The distance allows for the
    box itself shrinking or growing by twice as much. An erosion that would
    wipe out part of the digit (thin strokes beside thick ones: the mean width
    asks for more than they have) is not done: grown back by as much, the
    eroded digit must cover every pixel of the drawn one.
    """
    fine = fit_box(image, box * FINE)
    width = stroke_width(fine)
    if width is None:
        return image
    width /= FINE
    goal = min(max(width, stroke[0]), stroke[1])
    if goal == width:
        return image
    distance = FINE * (width - goal) / (2 * (1 - goal / box))
    if distance > 0:
        changed = disk_filter(fine, distance, np.minimum)
        grown_back = disk_filter(changed, distance + REACH_BACK, np.maximum)
        if np.any((fine >= INK) & (grown_back < INK)):
            return image
    else:
        changed = disk_filter(np.pad(fine, int(np.ceil(-distance)) + 1), -distance, np.maximum)
    return changed


def to_mnist(canvas, bbox=None, stroke=STROKE_RANGE):
    """A drawing (2-D, ink in [0, 1], any size) as a float32 28x28 MNIST-style digit.

    ``bbox`` is ``ink_bbox(canvas)`` when the caller already has it. The pen's
    width is brought into ``stroke`` (``even_stroke``; None: as drawn, MNIST's
    own steps alone). A canvas without ink gives an all-zero image.
    """
    bbox = ink_bbox(canvas) if bbox is None else bbox
    if bbox is None:
        return np.zeros((SIDE, SIDE), np.float32)
    top, bottom, left, right = bbox
    drawn = canvas[top:bottom, left:right]
    digit = drawn if stroke is None else even_stroke(drawn, stroke)
    if digit is not drawn:
        return to_mnist(digit, stroke=None)  # cropped anew: the box grew or shrank with the pen
    return centre_by_mass(fit_box(drawn))
