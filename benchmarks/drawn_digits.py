"""``uv run python -m benchmarks.drawn_digits MODEL...``: how well a model reads digits drawn like on gui.py's canvas.

The set is made from MNIST's test digits, not by smoothing them back down
but by laying ink as a pen does: each digit is thinned to its centre line
(Zhang-Suen, on a grid 3x finer than MNIST's), the line is rotated, sheared, scaled and placed anywhere on a
canvas of gui.py's size, and re-stroked with gui.py's own round brush at a
random width; the canvas then goes through gui.py's preprocessing
(``nn.preprocess.to_mnist``). A fixed seed gives the same set every time.

    uv run python -m benchmarks.drawn_digits model.npz other.npz --json drawn.json

``--undistorted`` draws with a steady hand (no slant, two thirds of the
canvas, the brush's own width); ``--only PART`` adds one range of the full
hand to it, to see what each part costs.

``--digits validation`` draws the set from the 5,000 training digits that
train.py holds out for validation instead: choose settings on that one, and
report the test one.
"""


import numpy as np

from nn.preprocess import STROKE_RANGE

CANVAS = 392  # gui.py's canvas side (drawing.layout)
# Ranges of the pen and the hand: rotation and shear as people slant, the
# size from 40% of the canvas to nearly all of it, the brush 0.7-1.3 times
# gui.py's width. After preprocessing, strokes are 1.3-5.4 px wide in a
# 20 px digit (MNIST's own median: 2.5 px).
# (rotation deg, shear, aspect change, size range, brush range), each either way.
HAND = (20.0, 0.3, 0.15, (0.4, 0.9), (0.7, 1.3))
# --undistorted: no slant, two thirds of the canvas, the brush's own width: what the redrawing alone costs.
STEADY_HAND = (0.0, 0.0, 0.0, (2 / 3, 2 / 3), (1.0, 1.0))
# --only PART: the steady hand with one of HAND's ranges, to see what each costs on its own.
HAND_PARTS = ("rotation", "shear", "aspect", "size", "brush")
# Thinned at 28 px, the binarised digit loses its shape where MNIST's pen
# left holes or gaps of a pixel or less: thick 2s, 6s and 8s lose their loops,
# open 4s close into 9s. On a 3x finer grid (linear interpolation, then the
# 0.5 threshold) the centre line keeps them (README, Drawn digits:
# --undistorted with --thin-factor 1 against 3).
THIN_FACTOR = 3
VALIDATION_SIZE = 5000  # train.py's --val-size default: these digits are never trained on


def hand_with(part):
    """STEADY_HAND with HAND's range for ``part`` (one of HAND_PARTS); the other ranges stay steady."""
    k = HAND_PARTS.index(part)
    return STEADY_HAND[:k] + (HAND[k],) + STEADY_HAND[k + 1 :]


def linear_upsampling(n, factor):
    """(n * factor, n) matrix ``M``: ``M @ image @ M.T`` is ``image`` linearly interpolated onto a finer grid."""
    position = np.clip((np.arange(n * factor) + 0.5) / factor - 0.5, 0, n - 1)
    low = np.minimum(np.floor(position).astype(int), n - 2)
    weight = position - low
    matrix = np.zeros((n * factor, n))
    matrix[np.arange(n * factor), low] = 1 - weight
    matrix[np.arange(n * factor), low + 1] = weight
    return matrix


def _neighbours(image):
    """P2..P9 of Zhang-Suen (N, NE, E, SE, S, SW, W, NW) of every pixel of a (batch, h, w) bool array."""
    p = np.pad(image, ((0, 0), (1, 1), (1, 1)))
    h, w = image.shape[1:]
    at = lambda dy, dx: p[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]  # noqa: E731
    return [at(-1, 0), at(-1, 1), at(0, 1), at(1, 1), at(1, 0), at(1, -1), at(0, -1), at(-1, -1)]


def thin(images):
    """Zhang & Suen's (1984) thinning of a (batch, h, w) bool array, all images at once, to 1-px lines."""
    skeleton = images.copy()
    for _ in range(100):
        changed = False
        for first in (True, False):
            n = _neighbours(skeleton)
            count = sum(v.astype(np.int8) for v in n)
            ring = n + n[:1]
            transitions = sum((~ring[i] & ring[i + 1]).astype(np.int8) for i in range(8))
            p2, p4, p6, p8 = n[0], n[2], n[4], n[6]
            if first:
                side = ~(p2 & p4 & p6) & ~(p4 & p6 & p8)
            else:
                side = ~(p2 & p4 & p8) & ~(p2 & p6 & p8)
            delete = skeleton & (count >= 2) & (count <= 6) & (transitions == 1) & side
            if delete.any():
                skeleton &= ~delete
                changed = True
        if not changed:
            return skeleton
    return skeleton


def draw_skeleton(skeleton, rng, side=CANVAS, hand=HAND):
    """One thinned 28x28 digit laid on a blank canvas as brush strokes, slanted, sized and placed at random."""
    from drawing.brush import brush_radius, segment_coverage

    rows, cols = np.nonzero(skeleton)
    points = np.stack([cols, rows], axis=1).astype(np.float64)
    points -= points.mean(axis=0)
    rotate_deg, shear_k, aspect_change, size, brush = hand
    theta = np.deg2rad(rng.uniform(-rotate_deg, rotate_deg))
    rotate = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    shear = np.array([[1.0, rng.uniform(-shear_k, shear_k)], [0.0, 1.0]])
    aspect = np.diag([1 + rng.uniform(-aspect_change, aspect_change), 1 + rng.uniform(-aspect_change, aspect_change)])
    warped = points @ (rotate @ shear @ aspect).T
    radius = brush_radius(side) * rng.uniform(*brush)
    extent = np.ptp(warped, axis=0).max() + 1
    warped *= (rng.uniform(*size) * side - 2 * radius) / extent
    low, high = warped.min(axis=0) - radius - 1, warped.max(axis=0) + radius + 1
    offset = np.array([rng.uniform(-low[k], side - high[k]) if side - high[k] > -low[k] else side / 2
                       for k in range(2)])
    at = {(r, c): tuple(warped[i] + offset) for i, (r, c) in enumerate(zip(rows, cols))}
    canvas = np.zeros((side, side), np.float32)
    # A segment to every 8-neighbour (each pair once), a dot where a pixel has none.
    for (r, c), start in at.items():
        ends = [at[(r + dr, c + dc)] for dr, dc in ((0, 1), (1, -1), (1, 0), (1, 1)) if (r + dr, c + dc) in at]
        for end in ends or [start]:
            painted = segment_coverage(canvas.shape, start, end, radius)
            if painted is not None:
                region, coverage = painted
                canvas[region] = np.maximum(canvas[region], coverage)
    return canvas


def make_drawn_set(x_digits, y_digits, n=5000, seed=0, thin_factor=THIN_FACTOR, hand=HAND, stroke=STROKE_RANGE):
    """(x float32 (n, 784) after gui.py's preprocessing, y int32 (n,)): test digits drawn anew.

    ``stroke`` is the preprocessing's pen-width range (None: the width as drawn)."""
    from nn.preprocess import to_mnist

    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(y_digits), size=min(n, len(y_digits)), replace=False))
    finer = linear_upsampling(28, thin_factor)
    skeletons = thin(finer @ x_digits[chosen].reshape(-1, 28, 28) @ finer.T >= 0.5)
    drawn = np.stack([to_mnist(draw_skeleton(s, rng, hand=hand), stroke=stroke).ravel() for s in skeletons])
    return drawn.astype(np.float32), y_digits[chosen].astype(np.int32)


def accuracy(model_path, x, y):
    from backends import get_backend
    from nn.serialize import load_model

    model, params = load_model(model_path)
    be = get_backend("numpy")
    probabilities = be.to_host(be.make_predict(model)(be.tree_asarray(params), be.asarray(x)))
    return float(np.mean(np.argmax(probabilities, axis=1) == y))


def main(argv=None):

    from benchmarks.script import add_data_flag, check_json, script_parser, write_json
    from cli.flags import positive_int, seed_value

    p = script_parser("python -m benchmarks.drawn_digits", __doc__)
    p.add_argument("models", nargs="+", metavar="MODEL", help="model files to measure")
    p.add_argument("--n", type=positive_int, default=5000, help="how many drawn digits (at most 10,000; 5,000 from validation)")
    p.add_argument("--digits", choices=("test", "validation"), default="test",
                   help="draw MNIST's test digits, or the training digits train.py holds out for validation (to choose settings on)")
    p.add_argument("--seed", type=seed_value, default=0, help="the set's seed: the same seed, the same drawings")
    p.add_argument("--thin-factor", type=positive_int, default=THIN_FACTOR,
                   help="thin the digits on a grid this many times finer than MNIST's")
    hand = p.add_mutually_exclusive_group()
    hand.add_argument("--undistorted", action="store_true",
                      help="no rotation, shear or stretch, two thirds of the canvas, the brush's own width")
    hand.add_argument("--only", choices=HAND_PARTS, default=None,
                      help="as --undistorted but with the full range of this one part of the hand")
    p.add_argument("--as-drawn", action="store_true",
                   help="leave the pen's width as drawn (gui.py brings it into nn.preprocess.STROKE_RANGE)")
    add_data_flag(p)
    args = p.parse_args(argv)
    from nn.data import load_mnist
    from nn.serialize import load_model

    check_json(args)
    for path in args.models:
        load_model(path)  # a bad file fails before the set is drawn
    data = load_mnist(args.data)
    if args.digits == "test":
        x_source, y_source = data.x_test, data.y_test
    else:
        x_source, y_source = data.x_train[-VALIDATION_SIZE:], data.y_train[-VALIDATION_SIZE:]
    hand = hand_with(args.only) if args.only else STEADY_HAND if args.undistorted else HAND
    x, y = make_drawn_set(x_source, y_source, args.n, args.seed, args.thin_factor, hand,
                          None if args.as_drawn else STROKE_RANGE)
    rows = []
    for path in args.models:
        mnist, drawn = accuracy(path, x_source, y_source), accuracy(path, x, y)
        rows.append({"model": str(path), f"mnist_{args.digits}_accuracy": mnist, "drawn_accuracy": drawn,
                     "gap_points": 100 * (mnist - drawn), "digits": args.digits, "n_drawn": len(y), "seed": args.seed,
                     "thin_factor": args.thin_factor, "undistorted": args.undistorted, "only": args.only,
                     "stroke_range": None if args.as_drawn else list(STROKE_RANGE)})
        print(f"{path}: MNIST {args.digits} {mnist:.2%}, drawn {drawn:.2%} ({len(y):,} digits), "
              f"gap {100 * (mnist - drawn):.2f} points", flush=True)
    write_json(args, rows)
    return 0


if __name__ == "__main__":
    from benchmarks.script import run

    run(main, "python -m benchmarks.drawn_digits")
