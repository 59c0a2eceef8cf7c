"""The C warp of ``backends/cpu/augment.c`` against ``nn.augment.warp`` on NumPy, bit for bit.

Odd batch sizes; ink up to every edge, so that reads beyond the image
matter; the default distortions, affine only, and every range at its
largest (points far outside, a full erosion); the NumPy backend's batches
with and without the kernel; and broken builds (a clip one pixel short,
a neighbour a column off, an erosion short of one, fused multiply-adds)
caught. The same kernel as JAX calls it on the CPU (an XLA custom call,
``backends/cpu/augment_xla.c``): NumPy's bits from NumPy's draws, the JAX
backend's batches against XLA's own warp, and arrays of the wrong shape
refused.
"""

import numpy as np
import pytest

from backends import cpu_kernels, get_backend
from nn.augment import RANGES, Augment, draw, warp

WIDEST = {name: high for name, (_, _, high) in RANGES.items() if name != "clean"}
SETTINGS = {
    "default elastic": Augment("elastic"),
    "affine": Augment("affine", clean=0.5),
    "every range at its largest": Augment("elastic", **WIDEST, clean=0.1),
    "small field, full erosion": Augment("elastic", sigma=0.5, alpha=20, thin=1.0, thicken=0.3, clean=0.0),
}


@pytest.fixture
def kernels():
    if cpu_kernels.library() is None:
        pytest.skip(f"no CPU kernels here: {cpu_kernels.describe()}")


def _images(batch, seed=0):
    """Grey strokes over the whole 28x28 square, edges included."""
    rng = np.random.default_rng(seed)
    return (rng.random((batch, 784), dtype=np.float32) * (rng.random((batch, 784)) < 0.4)).astype(np.float32)


def _differences(warp_c, augment, batches=(1, 7, 129)):
    """Pixels that differ between the C warp and nn.augment's, over a few batches and steps."""
    count = 0
    for batch in batches:
        x = _images(batch, seed=batch)
        for step in (0, 3):
            draws = draw(np, 11, step, batch, augment)
            count += int(np.sum(warp_c(x, draws) != warp(np, x, draws)))
    return count


@pytest.mark.parametrize("setting", SETTINGS)
def test_the_c_warp_gives_nn_augments_bits(kernels, setting):
    augment = SETTINGS[setting]
    assert _differences(cpu_kernels.augment_warp(), augment) == 0
    x = _images(129)
    draws = draw(np, 11, 3, 129, augment)
    changed = ~draws[0]
    assert changed.any() and not np.array_equal(warp(np, x, draws)[changed], x[changed])  # it does distort


def test_the_numpy_backends_batches_are_the_same_with_and_without_the_kernel(kernels, monkeypatch):
    be = get_backend("numpy")
    augment = Augment("elastic")
    x_all, y_all = _images(300), np.arange(300) % 10
    idx = np.random.default_rng(1).permutation(300)[:65]

    def batches():
        batch = be.batch_fn(seed=4, augment=augment)
        return [batch(x_all, y_all, idx, step) for step in (0, 1)]

    with_kernel = batches()
    monkeypatch.setattr(cpu_kernels, "_loaded", (None, "turned off for the test"))
    for (x, y), (x_ref, y_ref) in zip(with_kernel, batches()):
        np.testing.assert_array_equal(x, x_ref)
        np.testing.assert_array_equal(y, y_ref)
    assert not np.array_equal(with_kernel[0][0], with_kernel[1][0])


BROKEN = {
    "a clip one pixel short": ("shift_x + move_x[r * SIDE + q], -1.0f, (float)SIDE)",
                               "shift_x + move_x[r * SIDE + q], -1.0f, (float)(SIDE - 1))"),
    "the upper neighbour a column off": ("up = row[q - (SIDE + 2)]", "up = row[q - (SIDE + 1)]"),
    "an erosion that forgets its right neighbour": ("smaller(smaller(smaller(smaller(centre, up), down), left), right)",
                                                    "smaller(smaller(smaller(centre, up), down), left)"),
}


@pytest.mark.parametrize("bug", [*BROKEN, "fused multiply-adds"])
def test_a_broken_warp_is_caught(kernels, monkeypatch, tmp_path, bug):
    optimizers, augment_c = cpu_kernels.SOURCES
    if bug == "fused multiply-adds":
        if " fma" not in cpu_kernels._cpu_signature():
            pytest.skip("this CPU has no fused multiply-add")
        monkeypatch.setattr(cpu_kernels, "FLAGS", tuple(f for f in cpu_kernels.FLAGS if f != "-ffp-contract=off")
                            + ("-ffp-contract=fast",))
    else:
        right, wrong = BROKEN[bug]
        source = augment_c.read_text()
        assert right in source
        mutated = tmp_path / "augment.c"
        mutated.write_text(source.replace(right, wrong))
        monkeypatch.setattr(cpu_kernels, "SOURCES", (optimizers, mutated))
    monkeypatch.setenv("XPNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cpu_kernels, "_loaded", None)
    broken = cpu_kernels.augment_warp()
    assert broken is not None
    assert sum(_differences(broken, augment) for augment in SETTINGS.values()) > 0


@pytest.fixture
def jax_warp(kernels):
    """The C warp as JAX on the CPU calls it (an XLA custom call), or a skip with the reason."""
    from backends import unavailable_reason

    if unavailable_reason("jax") is not None:
        pytest.skip(f"jax unavailable: {unavailable_reason('jax')}")
    import jax

    warp = cpu_kernels.xla_warp(jax)
    if warp is None:
        pytest.skip(f"no C warp in XLA here: {cpu_kernels.xla_describe()}")
    return jax, warp


@pytest.mark.parametrize("setting", SETTINGS)
def test_the_c_warp_inside_xla_gives_nn_augments_bits(jax_warp, setting):
    """Given NumPy's draws, the jitted custom call reads every argument as warp_f32 does: the same bits."""
    jax, warp_c = jax_warp
    augment = SETTINGS[setting]
    jitted = jax.jit(warp_c)
    for batch in (1, 7, 129):
        x = _images(batch, seed=batch)
        draws = draw(np, 11, 3, batch, augment)
        np.testing.assert_array_equal(np.asarray(jitted(x, draws)), warp(np, x, draws))


def test_the_jax_backends_batches_with_the_kernel_match_xlas_own_warp(jax_warp, monkeypatch):
    """The backend's jitted batch through the custom call against XLA's own nn.augment.warp (a float32 ulp or two
    apart: XLA fuses the arithmetic its own way), and different steps differ."""
    be = get_backend("jax")
    augment = Augment("elastic")
    x_all, y_all = _images(300), (np.arange(300) % 10).astype(np.int32)
    idx = np.random.default_rng(1).permutation(300)[:65].astype(np.int32)

    def batches():
        batch = be.compile(be.batch_fn(seed=4, augment=augment))
        return [np.asarray(batch(x_all, y_all, idx, np.int32(step))[0]) for step in (0, 1)]

    with_kernel = batches()
    monkeypatch.setattr(cpu_kernels, "_xla_loaded", (None, "turned off for the test"))
    for x, x_ref in zip(with_kernel, batches()):
        np.testing.assert_allclose(x, x_ref, rtol=0, atol=1e-5)
    assert not np.array_equal(with_kernel[0], with_kernel[1])


def test_the_custom_call_refuses_arrays_of_the_wrong_shape(jax_warp):
    jax, _ = jax_warp
    call = jax.ffi.ffi_call(cpu_kernels.XLA_TARGET, jax.ShapeDtypeStruct((4, 784), np.float32))
    with pytest.raises(Exception, match="params \\(batch, 8\\)"):
        jax.block_until_ready(call(np.zeros((4, 784), np.float32), np.zeros((4, 7), np.float32)))


def test_without_the_ffi_header_jax_keeps_xlas_own_warp(jax_warp, monkeypatch, tmp_path):
    jax, _ = jax_warp
    monkeypatch.setattr(jax.ffi, "include_dir", lambda: str(tmp_path))
    monkeypatch.setattr(cpu_kernels, "_xla_loaded", None)
    assert cpu_kernels.xla_warp(jax) is None
    assert cpu_kernels.xla_describe() == f"XLA's own warp: JAX {jax.__version__} ships no XLA FFI header"
    be = get_backend("jax")
    x = _images(5)
    distorted = be.compile(be.distort_fn(Augment("elastic"), 2))(x, np.int32(1))
    np.testing.assert_allclose(np.asarray(distorted), Augment("elastic").apply(np, x, 2, 1), rtol=0, atol=1e-5)
