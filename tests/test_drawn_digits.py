"""benchmarks.drawn_digits: the thinning against shapes whose centre line is known, a fixed set per seed,
and on real MNIST a model trained on distorted digits reads the drawings better than a plain one."""

import numpy as np
import pytest

from benchmarks.drawn_digits import HAND, HAND_PARTS, STEADY_HAND, hand_with, linear_upsampling, make_drawn_set, thin
from nn.preprocess import BOX, ink_bbox


def _components(mask, diagonal=True):
    """Number of 8- (or 4-) connected components of a 2-D bool array (a flood fill, for the test only)."""
    seen, count = np.zeros_like(mask), 0
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        count += 1
        stack = [start]
        while stack:
            r, c = stack.pop()
            if 0 <= r < mask.shape[0] and 0 <= c < mask.shape[1] and mask[r, c] and not seen[r, c]:
                seen[r, c] = True
                stack += [(r + dr, c + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if diagonal or not dr * dc]
    return count


def test_a_thick_bar_thins_to_a_one_pixel_line_along_its_middle():
    bar = np.zeros((1, 28, 28), bool)
    bar[0, 12:17, 4:24] = True
    line = thin(bar)[0]
    rows, cols = np.nonzero(line)
    # Zhang-Suen eats about two pixels off each end of a bar five wide.
    assert set(rows) == {14} and cols.min() <= 7 and cols.max() >= 20


def test_a_ring_stays_one_closed_ring():
    ys, xs = np.mgrid[:28, :28]
    radius = np.hypot(ys - 13.5, xs - 13.5)
    ring = ((radius > 6) & (radius < 10))[None]
    skeleton = thin(ring)[0]
    assert _components(skeleton) == 1
    # The hole is still a hole: inside and outside (4-connected, as an 8-connected line's complement is).
    assert _components(~skeleton, diagonal=False) == 2
    assert skeleton.sum() < ring.sum() / 3


def test_the_same_seed_draws_the_same_set():
    rng = np.random.default_rng(0)
    x = np.zeros((30, 784), np.float32)
    for i in range(30):  # thick crosses and bars at random places: something to thin and draw
        image = np.zeros((28, 28), np.float32)
        r, c = rng.integers(6, 20, 2)
        image[r - 2 : r + 2, 4:24] = 1
        image[4:24, c - 2 : c + 2] = 1
        x[i] = image.ravel()
    y = np.arange(30) % 10
    a, b = make_drawn_set(x, y, n=12, seed=1), make_drawn_set(x, y, n=12, seed=1)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(make_drawn_set(x, y, n=12, seed=2)[0], a[0])
    for image in a[0]:  # gui.py's preprocessing: the longer side of the box is 20 px
        top, bottom, left, right = ink_bbox(image.reshape(28, 28), threshold=1e-6)
        assert max(bottom - top, right - left) <= BOX + 1
        assert 0 <= image.min() and image.max() <= 1


@pytest.mark.mnist
def test_training_on_distorted_digits_reads_drawings_better(mnist, tmp_path):
    import nn
    from backends import get_backend
    from nn.augment import Augment

    x, y = make_drawn_set(mnist.x_test, mnist.y_test, n=1000, seed=0)
    be = get_backend("numpy")
    readings = {}
    for kind in ("none", "elastic"):
        model = nn.MLP(sizes=(784, 128, 64, 10))
        params, _ = nn.fit(be, model, nn.Adam(weight_decay=0.1), nn.Schedule("cosine", 6e-3, 2), mnist.x_train,
                           mnist.y_train, epochs=2, batch_size=128, seed=0, augment=Augment(kind))
        predict = be.make_predict(model)
        readings[kind] = np.mean(np.argmax(be.to_host(predict(params, be.asarray(x))), axis=1) == y)
    print(f"\ndrawn digits read: plain {readings['none']:.2%}, elastic {readings['elastic']:.2%}")
    assert readings["none"] > 0.8  # the set is digits, not noise
    assert readings["elastic"] > readings["none"] + 0.01  # +1.8 points here after 2 epochs, +4 after 15


def test_the_finer_grid_is_linear_interpolation():
    from scipy.ndimage import map_coordinates

    image = np.random.default_rng(3).random((7, 7))
    finer = linear_upsampling(7, 3)
    # Fine pixel i's centre sits at (i + 0.5) / 3 - 0.5 on the coarse grid; beyond the edge pixels' centres, their value.
    at = (np.arange(21) + 0.5) / 3 - 0.5
    rows, cols = np.meshgrid(at, at, indexing="ij")
    expected = map_coordinates(image, [rows, cols], order=1, mode="nearest")
    np.testing.assert_allclose(finer @ image @ finer.T, expected, atol=1e-12)


def _principal_angle(image):
    """Degrees between the image's principal axis of ink and the vertical (second moments)."""
    ys, xs = np.mgrid[: image.shape[0], : image.shape[1]]
    mass = image.sum()
    cy, cx = (image * ys).sum() / mass, (image * xs).sum() / mass
    mu20, mu02 = (image * (xs - cx) ** 2).sum() / mass, (image * (ys - cy) ** 2).sum() / mass
    mu11 = (image * (xs - cx) * (ys - cy)).sum() / mass
    return np.degrees(0.5 * np.arctan2(2 * mu11, mu02 - mu20))


def test_each_part_changes_one_range_and_the_rotation_turns_a_bar_the_brush_does_not():
    bar = np.zeros((28, 28), np.float32)
    bar[5:23, 12:16] = 1
    x, y = np.tile(bar.ravel(), (16, 1)), np.zeros(16, np.int32)
    for part in HAND_PARTS:
        hand = hand_with(part)
        assert sum(a != b for a, b in zip(hand, STEADY_HAND)) == 1 and HAND[HAND_PARTS.index(part)] in hand
    def angles(part):
        drawn, _ = make_drawn_set(x, y, 16, 0, hand=hand_with(part))
        return [abs(_principal_angle(image.reshape(28, 28))) for image in drawn]

    turned, steady = angles("rotation"), angles("brush")
    assert max(steady) < 1.0  # a vertical bar stays vertical whatever the pen's width
    assert 8.0 < max(turned) <= HAND[0] + 1.0  # up to 20 degrees either way, and at least some of it drawn
