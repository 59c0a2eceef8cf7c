"""nn.augment against independent references: np.rot90, np.roll, scipy's
map_coordinates and grey morphology, the closed-form field RMS against a
large sample; the same augmented batch on every backend; augmented training
paused and resumed equals the straight run."""

import math

import numpy as np
import pytest
from scipy import ndimage

from backends import XpnetError, get_backend
from nn import MLP, Adam, Schedule, fit
from nn.augment import (
    Augment,
    augment_batch,
    bilinear_sample,
    elastic_field,
    field_basis,
    gaussian_matrix,
    rms_displacement,
    sample_parameters,
    sampling_coordinates,
    stroke_width,
)
from nn.training import Interrupted
from tests.reference import assert_trees_close

RNG = np.random.default_rng(0)
IMAGES = RNG.random((7, 28, 28)).astype(np.float32)
ZERO, ONE = np.zeros(7, np.float32), np.ones(7, np.float32)
IDENTITY = (ONE, ZERO, ZERO, ONE)
STILL = Augment("elastic", rotate=0, shear=0, scale=0, shift=0, alpha=0, thicken=0, thin=0, clean=0)


def _warp(inverse, shift=(ZERO, ZERO)):
    return bilinear_sample(np, IMAGES, *sampling_coordinates(np, inverse, shift))


def test_zero_parameters_give_the_input_exactly():
    x = IMAGES.reshape(7, 784)
    np.testing.assert_array_equal(augment_batch(np, x, 3, 11, STILL), x)
    np.testing.assert_array_equal(_warp(IDENTITY), IMAGES)


def test_ninety_degrees_is_rot90():
    quarter_turn = (ZERO, -ONE, ONE, ZERO)  # A^-1 of a +90 degree rotation
    np.testing.assert_array_equal(_warp(quarter_turn), np.rot90(IMAGES, axes=(1, 2)))


@pytest.mark.parametrize("dx, dy", [(1, 0), (0, -2), (3, 1)])
def test_whole_pixel_shift_is_roll_with_zeros_coming_in(dx, dy):
    expected = np.roll(IMAGES, (dy, dx), axis=(1, 2))
    rows, cols = np.arange(28)[:, None] - dy, np.arange(28)[None, :] - dx
    expected = np.where((rows >= 0) & (rows < 28) & (cols >= 0) & (cols < 28), expected, 0)
    np.testing.assert_array_equal(_warp(IDENTITY, (ONE * dx, ONE * dy)), expected)


def test_bilinear_sampling_equals_scipy_map_coordinates():
    # Points inside, near and beyond the edges, on a non-square image so x and y cannot be swapped unseen.
    images = RNG.random((3, 11, 17)).astype(np.float32)
    src_x = RNG.uniform(-2.5, 19.5, (3, 400)).astype(np.float32)
    src_y = RNG.uniform(-2.5, 13.5, (3, 400)).astype(np.float32)
    got = bilinear_sample(np, images, src_x, src_y)
    for b in range(3):
        want = ndimage.map_coordinates(images[b].astype(np.float64), [src_y[b], src_x[b]], order=1, mode="grid-constant")
        np.testing.assert_allclose(got[b], want, atol=2e-6)


def test_elastic_field_rms_matches_the_closed_form():
    for sigma, alpha in ((4.0, 34.0), (5.0, 36.0), (8.0, 20.0)):
        dx, dy = elastic_field(np, 1, 0, 1500, sigma, alpha)
        sample_rms = math.sqrt(np.mean(np.concatenate([dx, dy]).astype(np.float64) ** 2))
        assert sample_rms == pytest.approx(rms_displacement(sigma, alpha), rel=0.03)
    # Simard's sigma 4, alpha 34 on 28 px with zero padding: 1.28 px (AUGMENT.md 1.1).
    assert rms_displacement(4.0, 34.0) == pytest.approx(1.28, abs=0.01)


def test_the_field_drawn_in_the_eigenbasis_has_simards_covariance():
    """Simard's field alpha G N G^T (N uniform in [-1, 1]) has Cov[F(r, q), F(r', q')] = alpha^2 / 3 *
    (G G^T)[r, r'] (G G^T)[q, q']: the closed form against field_basis and against a large sample."""
    sigma, alpha = 5.0, 36.0
    g = gaussian_matrix(np, sigma).astype(np.float64)
    basis = field_basis(sigma).astype(np.float64)
    assert basis.shape == (28, 8)  # 8 of 28 modes for sigma 5
    np.testing.assert_allclose(basis @ basis.T, g @ g.T, atol=2e-4 * np.abs(g @ g.T).max())
    assert field_basis(0.5).shape == (28, 28)  # a narrow Gaussian keeps every mode
    dx, dy = elastic_field(np, 3, 7, 4000, sigma, alpha)
    samples = np.concatenate([dx, dy]).astype(np.float64).reshape(-1, 784)
    centre, corner = 14 * 28 + 14, 3 * 28 + 5
    for pixel in (centre, corner):
        sampled = samples.T @ samples[:, pixel] / len(samples)
        r, q = divmod(pixel, 28)
        closed = alpha**2 / 3 * np.outer((g @ g.T)[r], (g @ g.T)[q]).ravel()
        np.testing.assert_allclose(sampled, closed, atol=0.04 * closed.max())


def test_stroke_width_blends_toward_scipy_grey_morphology():
    plus = ndimage.generate_binary_structure(2, 1)
    blend = np.array([1.0, 0.5, 0.0, -0.5, -1.0, 0.25, -0.25], np.float32)
    got = stroke_width(np, IMAGES, blend)
    for b, t in enumerate(blend):
        image = IMAGES[b].astype(np.float64)
        morph = ndimage.grey_dilation if t > 0 else ndimage.grey_erosion
        target = morph(image, footprint=plus, mode="constant", cval=0.0)
        np.testing.assert_allclose(got[b], image + abs(t) * (target - image), atol=1e-6)


def test_parameters_are_per_sample_per_step_and_clean_rows_stay_clean():
    augment = Augment("elastic")
    clean, inverse, _, _ = sample_parameters(np, 0, 5, 4000, augment)
    assert clean.mean() == pytest.approx(augment.clean, abs=0.02)
    assert len(np.unique(inverse[0])) > 3990  # every sample its own rotation
    x = RNG.random((256, 784)).astype(np.float32)
    out = augment_batch(np, x, 0, 5, augment)
    clean = sample_parameters(np, 0, 5, 256, augment)[0]
    np.testing.assert_array_equal(out[clean], x[clean])
    assert (out[~clean] != x[~clean]).any(axis=1).all()
    assert not np.array_equal(augment_batch(np, x, 0, 6, augment), out)  # another step, another batch
    assert not np.array_equal(augment_batch(np, x, 1, 5, augment), out)  # another seed too
    assert out.min() >= 0 and out.max() <= 1


def test_real_digits_keep_their_ink_on_the_canvas(mnist):
    x = mnist.x_test[:512]
    out = augment_batch(np, x, 0, 0, Augment("elastic"))
    ratio = out.sum(axis=1) / x.sum(axis=1)
    assert ratio.min() > 0.3 and ratio.max() < 3.0  # nothing erased, nothing pushed out of the frame


def test_the_same_seed_draws_the_same_batch_on_every_backend(be):
    augment = Augment("elastic")
    x = RNG.random((37, 784)).astype(np.float32)
    want = augment_batch(np, x, 3, 12, augment)
    draw = be.compile(lambda batch, step: augment.apply(be.xp, batch, 3, step))
    got = be.to_host(draw(be.asarray(x), be.asarray(np.int32(12))))
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("bad", [{"kind": "warp"}, {"rotate": -1}, {"clean": 1.5}, {"sigma": 0}, {"alpha": math.nan}])
def test_bad_settings_are_one_clear_error(bad):
    with pytest.raises(XpnetError):
        Augment(**{"kind": "affine", **bad})


def test_augmented_run_paused_and_resumed_equals_the_straight_run():
    rng = np.random.default_rng(1)
    x, y = rng.random((150, 784)).astype(np.float32), rng.integers(0, 10, 150).astype(np.int32)
    be, model, augment = get_backend("numpy"), MLP(sizes=(784, 16, 10)), Augment("elastic")

    def run(**kw):
        params, history = fit(be, model, Adam(), Schedule("cosine", 0.01, 2), x, y, epochs=2, batch_size=32,
                              seed=4, augment=augment, **kw)
        return params, history

    straight, _ = run()
    asked = []
    with pytest.raises(Interrupted) as paused:
        run(stop_requested=lambda: asked.append(1) or len(asked) == 7)
    resumed, _ = run(start=paused.value.state)
    assert_trees_close(resumed, straight, exact=True)
    plain, _ = fit(be, model, Adam(), Schedule("cosine", 0.01, 2), x, y, epochs=2, batch_size=32, seed=4)
    assert not np.allclose(plain[0]["w"], straight[0]["w"])  # augmentation really was on


def test_numpy_batches_made_ahead_in_a_thread_equal_the_batches_made_in_line():
    from threadpoolctl import threadpool_limits

    from backends.numpy_backend import AheadStep

    rng = np.random.default_rng(5)
    x, y = rng.random((150, 784)).astype(np.float32), rng.integers(0, 10, 150).astype(np.int32)
    model, augment = MLP(sizes=(784, 16, 10)), Augment("elastic")
    in_line, ahead = get_backend("numpy"), get_backend("numpy")
    ahead.use_threads(2)  # two or more: a worker thread draws the next batch

    def run(be, **kw):
        return fit(be, model, Adam(), Schedule("cosine", 0.01, 2), x, y, epochs=2, batch_size=32, seed=4,
                   augment=augment, **kw)

    with threadpool_limits(limits=None):  # the BLAS count use_threads sets is put back after
        assert isinstance(ahead.make_train_step(model, Adam(), seed=4, augment=augment), AheadStep)
        straight = run(in_line)[0]
        assert_trees_close(run(ahead)[0], straight, exact=True)
        asked = []
        with pytest.raises(Interrupted) as paused:
            run(ahead, stop_requested=lambda: asked.append(1) or len(asked) == 6)
        assert_trees_close(run(ahead, start=paused.value.state)[0], straight, exact=True)


def test_numpy_makes_a_large_models_batches_in_line_when_the_c_warp_is_there(monkeypatch):
    """The worker costs the products a BLAS thread: kept for small models, or for any without the C warp."""
    from threadpoolctl import threadpool_limits

    from backends import cpu_kernels
    from backends.numpy_backend import AHEAD_BELOW_WEIGHTS, AheadStep

    be, augment = get_backend("numpy"), Augment("elastic")
    be.use_threads(2)
    large = MLP(sizes=(784, AHEAD_BELOW_WEIGHTS // 784 + 1, 10))
    with threadpool_limits(limits=None):
        assert isinstance(be.make_train_step(MLP(sizes=(784, 16, 10)), Adam(), seed=0, augment=augment), AheadStep)
        in_line = be.make_train_step(large, Adam(), seed=0, augment=augment)
        assert isinstance(in_line, AheadStep) == (cpu_kernels.library() is None)
        monkeypatch.setattr(cpu_kernels, "_loaded", (None, "turned off for the test"))
        assert isinstance(be.make_train_step(large, Adam(), seed=0, augment=augment), AheadStep)


def test_a_batch_made_ahead_for_other_samples_is_not_used():
    from backends.numpy_backend import AheadStep

    be, augment = get_backend("numpy"), Augment("elastic")
    x, y = RNG.random((20, 784)).astype(np.float32), np.arange(20) % 10
    seen = []
    step = AheadStep(be.batch_fn(seed=1, augment=augment), lambda *a: seen.append(a[2]))
    distort = be.distort_fn(augment, 1)
    step.prefetch(x, y, np.arange(8), 3)
    step(None, None, x, y, np.arange(8, 16), 0.1, 3)
    np.testing.assert_array_equal(seen[0], distort(x[8:16], 3))
    step.prefetch(x, y, np.arange(8), 4)
    step(None, None, x, y, np.arange(8), 0.1, 4)
    np.testing.assert_array_equal(seen[1], distort(x[:8], 4))


def test_jax_scan_with_augmentation_equals_the_step_loop():
    pytest.importorskip("jax")
    rng = np.random.default_rng(2)
    x, y = rng.random((100, 784)).astype(np.float32), rng.integers(0, 10, 100).astype(np.int32)
    be, model = get_backend("jax"), MLP(sizes=(784, 12, 10))
    runs = [
        be.tree_to_host(fit(be, model, Adam(), Schedule("cosine", 0.01, 2), x, y, epochs=2, batch_size=32, seed=0,
                            augment=Augment("elastic"), epoch_mode=mode)[0])
        for mode in ("step", "scan")
    ]
    numpy_run = fit(get_backend("numpy"), model, Adam(), Schedule("cosine", 0.01, 2), x, y, epochs=2, batch_size=32,
                    seed=0, augment=Augment("elastic"))[0]
    assert_trees_close(runs[1], runs[0], rtol=1e-5, atol=1e-6)
    assert_trees_close(runs[0], numpy_run, rtol=1e-4, atol=1e-5)


def test_the_readme_grid_shows_originals_then_distinct_distortions(tmp_path):
    from benchmarks.augment_grid import grid, save_png

    x = RNG.random((40, 784)).astype(np.float32)
    y = np.arange(40) % 10
    cells = grid(x, y, steps=3)
    assert cells.shape == (10, 4, 28, 28)
    np.testing.assert_array_equal(cells[:, 0].reshape(10, 784), x[:10])
    assert not np.array_equal(cells[:, 1], cells[:, 2])  # every step draws anew
    save_png(cells, tmp_path / "grid.png")
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_augmented_jax_epochs_compile_once():
    jax = pytest.importorskip("jax")
    rng = np.random.default_rng(3)
    x, y = rng.random((96, 784)).astype(np.float32), rng.integers(0, 10, 96).astype(np.int32)
    compiles, after_epoch = [], []

    def listener(event, duration_secs, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration_secs)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        fit(get_backend("jax"), MLP(sizes=(784, 8, 10)), Adam(), Schedule("cosine", 0.01, 3), x, y, epochs=3,
            batch_size=32, seed=0, augment=Augment("elastic"), epoch_mode="scan",
            on_epoch=lambda record: after_epoch.append(len(compiles)))
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert after_epoch[0] > 0 and after_epoch == [after_epoch[0]] * 3
