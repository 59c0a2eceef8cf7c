"""nn.preprocess: closed-form cases, then real MNIST digits drawn big the way a person would."""

import numpy as np
import pytest

from nn.preprocess import (
    BOX, CENTRE, SIDE, STROKE_RANGE, area_weights, centre_of_mass, disk_filter, even_stroke, fit_box, ink_bbox,
    stroke_width, to_mnist,
)

CANVAS = 392


def blank(side=CANVAS):
    return np.zeros((side, side), np.float32)


# --- closed forms ------------------------------------------------------------


def test_an_empty_canvas_gives_an_empty_image():
    assert ink_bbox(blank()) is None
    faint = np.full((CANVAS, CANVAS), 0.3, np.float32)  # grey haze, e.g. eraser leftovers: no stroke
    for canvas in (blank(), faint):
        out = to_mnist(canvas)
        assert out.shape == (SIDE, SIDE) and out.dtype == np.float32
        assert not out.any()


def test_area_weights_average_the_covered_source_pixels():
    np.testing.assert_allclose(area_weights(4, 0.5), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    # Three pixels onto two: each output pixel covers one and a half source pixels.
    np.testing.assert_allclose(area_weights(3, 2 / 3), [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]], atol=1e-6)
    # Enlarging repeats pixels: each output pixel lies inside one source pixel.
    np.testing.assert_allclose(area_weights(2, 2.0), [[1, 0], [1, 0], [0, 1], [0, 1]])


@pytest.mark.parametrize("top, left", [(116, 116), (10, 200), (230, 5)])
def test_a_square_fills_the_box_and_is_centred(top, left):
    canvas = blank()
    canvas[top : top + 160, left : left + 160] = 1.0
    out = to_mnist(canvas, stroke=None)
    rows, cols = np.flatnonzero(out.any(axis=1)), np.flatnonzero(out.any(axis=0))
    # A 20x20 block of full ink; its centre of mass (index 9.5 in the block) is
    # half a pixel from 14 either way, a tie that rounds to rows and columns 5..24.
    assert (rows[0], rows[-1], cols[0], cols[-1]) == (5, 24, 5, 24)
    np.testing.assert_array_equal(out[5:25, 5:25], 1.0)
    assert out.sum() == BOX * BOX


@pytest.mark.parametrize(
    "height, width, columns",
    [(200, 100, 10.0), (300, 75, 5.0), (210, 98, 20 * 98 / 210), (100, 200, 20.0), (60, 270, 20.0)],
)
def test_the_aspect_ratio_is_kept(height, width, columns):
    canvas = blank()
    canvas[40 : 40 + height, 30 : 30 + width] = 1.0
    fitted = fit_box(canvas[40 : 40 + height, 30 : 30 + width])
    tall = height >= width
    long_side, short_side = (fitted.shape[0], fitted.shape[1]) if tall else (fitted.shape[1], fitted.shape[0])
    assert long_side == BOX
    expected_short = columns if tall else BOX * height / width
    assert short_side == int(np.ceil(expected_short - 1e-6))
    # Area is conserved in box units: the short side covers exactly 20 * short / long pixels.
    np.testing.assert_allclose(fitted.sum(), BOX * expected_short, rtol=1e-5)
    np.testing.assert_allclose(to_mnist(canvas, stroke=None).sum(), BOX * expected_short, rtol=1e-5)
    partial = expected_short - np.floor(expected_short)
    edge = fitted[:, -1] if tall else fitted[-1, :]
    np.testing.assert_allclose(edge, partial if partial > 1e-6 else 1.0, atol=1e-5)


def _random_blob(rng, side=CANVAS):
    """One to three filled ellipses somewhere on the canvas: lopsided shapes of any size."""
    canvas = blank(side)
    ys, xs = np.mgrid[0:side, 0:side]
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(80, side - 80, size=2)
        ry, rx = rng.uniform(10, 70, size=2)
        canvas[((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1] = 1.0
    return canvas


def test_the_centre_of_mass_lands_on_pixel_14_14():
    rng = np.random.default_rng(0)
    unclipped = 0
    for _ in range(40):
        canvas = _random_blob(rng)
        out = to_mnist(canvas, stroke=None)
        top, bottom, left, right = ink_bbox(canvas)
        if not np.isclose(out.sum(), fit_box(canvas[top:bottom, left:right]).sum(), rtol=1e-5):
            continue  # a very lopsided blob lost ink over the border, as MNIST digits sometimes do
        unclipped += 1
        cy, cx = centre_of_mass(out)
        assert abs(cy - CENTRE) <= 0.5 and abs(cx - CENTRE) <= 0.5, (cy, cx)
    assert unclipped >= 35


def _off_a_tie(rng):
    """A blob whose digit's centre of mass is not half a pixel from the centre: there the whole-pixel
    shift of centre_by_mass rounds up or down with the last bit of the sums (a symmetric blob sits on
    such a tie, and the CPU's vector width decides), so scaling could move it a pixel for no fault."""
    while True:
        small = np.pad(_random_blob(rng, side=160), 40)  # ink at least 50 px from every edge
        if all(abs(c - CENTRE) < 0.49 for c in centre_of_mass(to_mnist(small))):
            return small


def test_where_and_how_big_it_is_drawn_changes_nothing():
    rng = np.random.default_rng(1)
    small = _off_a_tie(rng)
    reference = to_mnist(small)
    moved = np.roll(small, (40, -35), axis=(0, 1))
    doubled = np.kron(small, np.ones((2, 2), np.float32))
    np.testing.assert_allclose(to_mnist(moved), reference, atol=1e-6)
    np.testing.assert_allclose(to_mnist(doubled), reference, atol=1e-5)


# --- the pen's width ---------------------------------------------------------


def ring(side, inner, outer, softness=1.0):
    """A soft-edged annulus centred on a side x side image: a closed stroke of width outer - inner."""
    ys, xs = np.mgrid[0:side, 0:side] - (side - 1) / 2
    distance = np.hypot(ys, xs)
    middle, half = (inner + outer) / 2, (outer - inner) / 2
    return np.clip((half - np.abs(distance - middle)) / softness + 0.5, 0, 1).astype(np.float32)


@pytest.mark.parametrize("width", [3.0, 6.5, 12.0])
def test_the_stroke_width_of_a_ring_is_its_width(width):
    # A ring's two edges have length 2 pi r_in and 2 pi r_out; its ink is pi (r_out^2 - r_in^2).
    assert stroke_width(ring(200, 60, 60 + width)) == pytest.approx(width, rel=0.04)
    assert stroke_width(np.zeros((5, 5), np.float32)) is None


@pytest.mark.parametrize("radius", [1, 2.0, 3.4, 5])
@pytest.mark.parametrize("reduce", ["erosion", "dilation"])
def test_the_disk_filter_is_scipys_grey_morphology(radius, reduce):
    from scipy import ndimage

    image = np.random.default_rng(3).random((23, 31)).astype(np.float32)
    scipy_filter = ndimage.grey_erosion if reduce == "erosion" else ndimage.grey_dilation

    def reference(r):
        k = np.arange(-r, r + 1)
        disk = k[:, None] ** 2 + k[None, :] ** 2 <= r * r
        return scipy_filter(image, footprint=disk, mode="constant", cval=0.0)

    whole, fraction = int(radius), radius - int(radius)
    expected = reference(whole) if fraction == 0 else (1 - fraction) * reference(whole) + fraction * reference(whole + 1)
    got = disk_filter(image, radius, np.minimum if reduce == "erosion" else np.maximum)
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("width, expected", [(5.0, STROKE_RANGE[1]), (1.2, STROKE_RANGE[0])])
def test_a_thick_or_thin_pen_is_brought_to_the_nearest_end_of_the_range(width, expected):
    # A ring 300 px across drawn with a pen that reduces to `width` px in a 20 px digit.
    side = 300
    pen = width * side / BOX
    drawn = ring(side + 20, side / 2 - pen, side / 2, softness=3.0)
    digit = to_mnist(drawn)
    assert stroke_width(digit) == pytest.approx(expected, abs=0.25)
    assert stroke_width(to_mnist(drawn, stroke=None)) == pytest.approx(width, abs=0.25)


def test_a_pen_within_the_range_is_left_as_drawn():
    drawn = ring(320, 150 - 2.3 * 300 / BOX, 150, softness=3.0)
    assert even_stroke(drawn) is drawn
    np.testing.assert_array_equal(to_mnist(drawn), to_mnist(drawn, stroke=None))


def test_an_erosion_that_would_delete_thin_strokes_is_not_done():
    # A thick bar and a hairline: their mean width asks for an erosion that would wipe out the hairline.
    drawn = blank(200)
    drawn[20:180, 40:110] = 1.0
    drawn[20:180, 150:152] = 1.0
    assert stroke_width(fit_box(drawn[20:180, 40:152])) > STROKE_RANGE[1]
    assert even_stroke(drawn) is drawn


# --- real MNIST ------------------------------------------------------------------


@pytest.mark.mnist
def test_an_mnist_digit_blown_up_comes_back_unchanged(mnist):
    """MNIST is its own fixed point: enlarge a digit 7x and the preprocessing undoes it.

    Only digits whose faint fringe lies inside the box of their >= 0.5 pixels
    qualify: a fringe outside it is thrown away by design (on a real canvas it
    is the soft edge of the brush, outside the stroke).
    """
    images = mnist.x_test[:1000].reshape(-1, SIDE, SIDE)
    checked = 0
    for image in images:
        if ink_bbox(image) != ink_bbox(image, threshold=1e-9):
            continue
        checked += 1
        np.testing.assert_allclose(to_mnist(np.kron(image, np.ones((7, 7), np.float32)), stroke=None), image, atol=1e-5)
    assert checked >= 200


def _upsampling_weights(n_src, n_out):
    """Bilinear interpolation matrix (n_out, n_src) mapping pixel centres onto pixel centres."""
    position = np.clip((np.arange(n_out) + 0.5) * n_src / n_out - 0.5, 0, n_src - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, n_src - 1)
    frac = (position - low).astype(np.float32)
    weights = np.zeros((n_out, n_src), np.float32)
    np.add.at(weights, (np.arange(n_out), low), 1 - frac)
    np.add.at(weights, (np.arange(n_out), high), frac)
    return weights


def draw_like_a_person(digit, rng, side=CANVAS, softness=3.0):
    """An MNIST digit as someone might draw it on the canvas: anywhere, any size, any pen.

    Size: the digit's longer side covers 35-90% of the canvas. Pen: the
    blown-up digit's smooth grey surface is cut at a random level in
    [0.2, 0.65], which thins or thickens every stroke by up to a third of its
    width (MNIST's own pen widths already span 1.8-3.5 px between the 10th and
    90th percentiles), with the brush's soft edge. Place: uniform over the canvas.
    """
    top, bottom, left, right = ink_bbox(digit, threshold=1e-9)
    crop = np.pad(digit[top:bottom, left:right], 1)
    factor = rng.uniform(0.35, 0.9) * side / BOX
    height, width = (min(side, max(2, round(n * factor))) for n in crop.shape)
    smooth = _upsampling_weights(crop.shape[0], height) @ crop @ _upsampling_weights(crop.shape[1], width).T
    # The surface changes by ~1 per source pixel, i.e. per `factor` canvas pixels.
    ink = np.clip((smooth - rng.uniform(0.2, 0.65)) * factor / softness + 0.5, 0, 1)
    canvas = blank(side)
    y, x = rng.integers(0, side - height + 1), rng.integers(0, side - width + 1)
    canvas[y : y + height, x : x + width] = ink
    return canvas


@pytest.fixture(scope="session")
def mnist_classifier(mnist):
    """The default MLP after 2 epochs on the training set (NumPy): about 97% on the test set."""
    import nn
    from backends import get_backend

    be = get_backend("numpy")
    model = nn.MLP()
    params, _ = nn.fit(
        be, model, nn.Adam(), nn.Schedule("cosine", 3e-3, 2), mnist.x_train, mnist.y_train,
        epochs=2, batch_size=128, seed=0,
    )
    predict = be.make_predict(model)
    return lambda x: np.argmax(be.to_host(predict(params, be.asarray(x))), axis=1)


@pytest.mark.mnist
def test_digits_drawn_big_are_read_as_well_as_the_originals(mnist, mnist_classifier):
    """2,000 test digits (every fifth), each blown up onto the canvas at a random
    place, size and pen width and brought back to 28x28: the accuracy stays
    within 1.5 points of the accuracy on the untouched images."""
    rng = np.random.default_rng(0)
    x, y = mnist.x_test[::5], mnist.y_test[::5]
    drawn = np.stack([to_mnist(draw_like_a_person(image.reshape(SIDE, SIDE), rng)).ravel() for image in x])
    original_accuracy = np.mean(mnist_classifier(x) == y)
    drawn_accuracy = np.mean(mnist_classifier(drawn) == y)
    print(f"\n{len(y)} digits: untouched {original_accuracy:.2%}, drawn and preprocessed {drawn_accuracy:.2%}")
    assert original_accuracy > 0.95
    assert drawn_accuracy >= original_accuracy - 0.015, (original_accuracy, drawn_accuracy)
