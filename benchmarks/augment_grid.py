"""``uv run python -m benchmarks.augment_grid OUT.png``: MNIST digits beside their augmented versions.

One row per digit 0-9 from the test set: the original, then the batches of
``--steps`` training steps (the same nn.augment code that trains, with
``--augment``'s defaults and the clean fraction set to 0, so every copy is
distorted). Drawn with pygame, a dependency already, so no extra is needed.
"""

import os
import sys

import numpy as np

CELL, GAP = 56, 4  # 28 px at 2x, and the gap between cells


def grid(x, y, kind="elastic", steps=8, seed=0):
    """(10 * 28, (1 + steps) * 28) float32: digit d's first test image, then its distorted copies."""
    from nn.augment import Augment, augment_batch

    augment = Augment(kind, clean=0.0)
    digits = np.stack([x[np.flatnonzero(y == d)[0]] for d in range(10)])
    columns = [digits] + [augment_batch(np, digits, seed, step, augment) for step in range(steps)]
    return np.stack(columns, axis=1).reshape(10, 1 + steps, 28, 28)


def save_png(cells, path):
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    import pygame

    from nn.files import atomic_write_bytes

    rows, cols = cells.shape[:2]
    canvas = np.full((rows * (CELL + GAP) + GAP, cols * (CELL + GAP) + GAP), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            ink = np.kron(cells[r, c], np.ones((2, 2), np.float32))
            top, left = GAP + r * (CELL + GAP), GAP + c * (CELL + GAP)
            canvas[top:top + CELL, left:left + CELL] = (255 * (1 - ink)).astype(np.uint8)  # dark ink on white
    # A separator after the originals' column.
    canvas[:, GAP + CELL + GAP // 2 - 1: GAP + CELL + GAP // 2 + 1] = 120
    surface = pygame.surfarray.make_surface(np.repeat(canvas.T[:, :, None], 3, axis=2))
    import io

    buffer = io.BytesIO()
    pygame.image.save(surface, buffer, "grid.png")
    atomic_write_bytes(path, buffer.getvalue())


def main(argv=None):

    from cli.flags import Parser, positive_int

    p = Parser(prog="python -m benchmarks.augment_grid", description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("out", metavar="OUT.png", help="where to write the picture")
    p.add_argument("--augment", choices=("affine", "elastic"), default="elastic", help="which distortions")
    p.add_argument("--steps", type=positive_int, default=8, help="distorted copies per digit")
    p.add_argument("--data", default=None, metavar="PATH", help="MNIST (default: $MNIST_DATA, else the cache)")
    args = p.parse_args(argv)
    from cli.paths import check_writable_file
    from nn.data import load_mnist

    check_writable_file("OUT.png", args.out)
    data = load_mnist(args.data)
    save_png(grid(data.x_test, data.y_test, args.augment, args.steps), args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from backends.errors import run_front_door

    sys.exit(run_front_door(main, None, "python -m benchmarks.augment_grid"))
