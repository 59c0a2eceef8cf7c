"""The C warp of ``backends/cpu/augment.c`` against ``nn.augment.warp`` on NumPy.

Given the same fields, bit for bit: odd batch sizes; ink up to every edge,
so that reads beyond the image matter; the default distortions, affine
only, and every range at its largest (points far outside, a full erosion).
The field the kernel makes from the noise itself against a float64
product, the fused warp against the two steps, and a build without the
CPU's own vectors against the native one. The NumPy backend's
batches with and without the kernel; broken builds (a clip one pixel short,
a neighbour a column off, an erosion short of one, fused multiply-adds, a
field product that reads the wrong block) caught. The same kernel as JAX
calls it on the CPU (an XLA custom call, ``backends/cpu/augment_xla.c``):
the NumPy path's bits from NumPy's draws, the JAX backend's batches against
XLA's own warp, and arrays of the wrong shape refused.
"""

import numpy as np
import pytest

from backends import cpu_kernels, get_backend
from backends.cpu_kernels import _address
from nn.augment import RANGES, Augment, draw, warp

WIDEST = {name: high for name, (_, _, high) in RANGES.items() if name != "clean"}
SETTINGS = {
    "default elastic": Augment("elastic"),
    "affine": Augment("affine", clean=0.5),
    "every range at its largest": Augment("elastic", **WIDEST, clean=0.1),
    "small field, full erosion": Augment("elastic", sigma=0.5, alpha=20, thin=1.0, thicken=0.3, clean=0.0),
}
ELASTIC = {name: augment for name, augment in SETTINGS.items() if augment.kind == "elastic"}


@pytest.fixture
def lib():
    if cpu_kernels.library() is None:
        pytest.skip(f"no CPU kernels here: {cpu_kernels.describe()}")
    return cpu_kernels.library()


def _images(batch, seed=0):
    """Grey strokes over the whole 28x28 square, edges included."""
    rng = np.random.default_rng(seed)
    return (rng.random((batch, 784), dtype=np.float32) * (rng.random((batch, 784)) < 0.4)).astype(np.float32)


def _warp_given_fields(lib, x, draws, fields):
    """``warp_f32`` of ``lib`` by these displacement fields (or none)."""
    params, _ = cpu_kernels.warp_arguments(np, draws)
    kept = [np.ascontiguousarray(f.reshape(len(x), 784), np.float32) for f in fields or ()]  # alive for the call
    dx, dy = (_address(f) for f in kept) if kept else (None, None)
    out = np.empty_like(x)
    lib.warp_f32(_address(x), _address(out), len(x), _address(params), dx, dy)
    return out


def _c_field(lib, field):
    """(dx, dy) of ``elastic_field_f32`` of ``lib`` for an ``nn.augment.Field``."""
    noise = np.ascontiguousarray(field.noise)
    batch, k = noise.shape[0], field.left.shape[1]
    dx, dy = np.empty((batch, 784), np.float32), np.empty((batch, 784), np.float32)
    lib.elastic_field_f32(_address(noise), batch, _address(field.left), _address(field.right), k, _address(dx),
                          _address(dy))
    return dx.reshape(batch, 28, 28), dy.reshape(batch, 28, 28)


def _draw_cases(augment, batches=(1, 7, 129)):
    for batch in batches:
        for step in (0, 3):
            yield _images(batch, seed=batch), draw(np, 11, step, batch, augment)


def _differences(lib, augment):
    """Pixels that differ between ``lib``'s warp and nn.augment's given nn.augment's fields, over a few batches."""
    count = 0
    for x, draws in _draw_cases(augment):
        fields = None if draws[4] is None else draws[4].smoothed(np)
        count += int(np.sum(_warp_given_fields(lib, x, draws, fields) != warp(np, x, draws)))
    return count


def _field_error(lib, augment):
    """The largest gap between ``lib``'s field and the float64 product left @ noise @ right, over a few batches,
    in units of float32 summation's error bound (2k roundings of the sums of absolute terms)."""
    worst = 0.0
    for _, draws in _draw_cases(augment):
        noise, left, right = (np.asarray(a, np.float64) for a in draws[4])
        exact, size = left @ noise @ right, np.abs(left) @ np.abs(noise) @ np.abs(right)
        bound = 2 * left.shape[1] * np.finfo(np.float32).eps * size + np.finfo(np.float32).tiny
        for axis, got in enumerate(_c_field(lib, draws[4])):
            worst = max(worst, float((np.abs(got - exact[:, axis]) / bound[:, axis]).max()))
    return worst


@pytest.mark.parametrize("setting", SETTINGS)
def test_the_c_warp_gives_nn_augments_bits_given_its_fields(lib, setting):
    augment = SETTINGS[setting]
    assert _differences(lib, augment) == 0
    x = _images(129)
    draws = draw(np, 11, 3, 129, augment)
    changed = ~draws[0]
    assert changed.any() and not np.array_equal(warp(np, x, draws)[changed], x[changed])  # it does distort


@pytest.mark.parametrize("setting", ELASTIC)
def test_the_c_field_equals_the_float64_product(lib, setting):
    assert _field_error(lib, ELASTIC[setting]) <= 1


@pytest.mark.parametrize("setting", SETTINGS)
def test_the_fused_warp_is_its_field_then_its_warp_and_near_nn_augments(lib, setting):
    augment, warp_c = SETTINGS[setting], cpu_kernels.augment_warp()
    for x, draws in _draw_cases(augment):
        fields = None if draws[4] is None else _c_field(lib, draws[4])
        fused = warp_c(x, draws)
        np.testing.assert_array_equal(fused, _warp_given_fields(lib, x, draws, fields))
        np.testing.assert_allclose(fused, warp(np, x, draws), rtol=0, atol=1e-4)


def test_the_c_warp_gives_the_same_bits_without_the_cpus_own_vectors(lib, monkeypatch, tmp_path):
    """Built without -march=native (the compiler's baseline vectors) the field and the warp come out the same: each
    vector lane rounds as a scalar would, whatever the vectors' width."""
    native = [cpu_kernels.augment_warp()(x, draws) for augment in SETTINGS.values() for x, draws in _draw_cases(augment)]
    monkeypatch.setattr(cpu_kernels, "NATIVE", ())
    monkeypatch.setenv("XPNET_CACHE", str(tmp_path))
    monkeypatch.setattr(cpu_kernels, "_loaded", None)
    assert cpu_kernels.library() is not lib
    baseline = [cpu_kernels.augment_warp()(x, draws) for augment in SETTINGS.values() for x, draws in _draw_cases(augment)]
    for got, expected in zip(baseline, native, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_the_numpy_backends_batches_match_with_and_without_the_kernel(lib, monkeypatch):
    """A field's float32 roundings apart; the labels exactly; different steps differ."""
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
        np.testing.assert_allclose(x, x_ref, rtol=0, atol=1e-4)
        np.testing.assert_array_equal(y, y_ref)
    assert not np.array_equal(with_kernel[0][0], with_kernel[1][0])


BROKEN = {
    "a clip one pixel short": ("shift_x + move_x[r * SIDE + q], -1.0f, (float)SIDE)",
                               "shift_x + move_x[r * SIDE + q], -1.0f, (float)(SIDE - 1))"),
    "the upper neighbour a column off": ("up = row[q - (SIDE + 2)]", "up = row[q - (SIDE + 1)]"),
    "an erosion that forgets its right neighbour": ("smaller(smaller(smaller(smaller(centre, up), down), left), right)",
                                                    "smaller(smaller(smaller(centre, up), down), left)"),
    "a field product that reads the wrong block": ("a3 += w * rows[i][3]", "a3 += w * rows[i][2]"),
}


@pytest.mark.parametrize("bug", [*BROKEN, "fused multiply-adds"])
def test_a_broken_warp_is_caught(lib, monkeypatch, tmp_path, bug):
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
    broken = cpu_kernels.library()
    assert broken is not None and broken is not lib
    if bug == "a field product that reads the wrong block":
        assert _field_error(broken, Augment("elastic")) > 1
    else:
        assert sum(_differences(broken, augment) for augment in SETTINGS.values()) > 0


@pytest.fixture
def jax_warp(lib):
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
    """Given NumPy's draws, the jitted custom call reads every argument as the NumPy backend's call does: the same
    bits (and a field's roundings from nn.augment's)."""
    jax, warp_c = jax_warp
    augment = SETTINGS[setting]
    jitted = jax.jit(warp_c)
    for x, draws in _draw_cases(augment):
        got = np.asarray(jitted(x, draws))
        np.testing.assert_array_equal(got, cpu_kernels.augment_warp()(x, draws))
        np.testing.assert_allclose(got, warp(np, x, draws), rtol=0, atol=1e-4)


def test_the_jax_backends_batches_with_the_kernel_match_xlas_own_warp(jax_warp, monkeypatch):
    """The backend's jitted batch through the custom call against XLA's own nn.augment.warp (a few float32
    roundings apart: XLA fuses the arithmetic and sums the field its own way), and different steps differ."""
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
    x, params = np.zeros((4, 784), np.float32), np.zeros((4, 8), np.float32)
    left, right = np.zeros((28, 8), np.float32), np.zeros((8, 28), np.float32)
    with pytest.raises(Exception, match="noise \\(batch, 2, k, k\\)"):
        jax.block_until_ready(call(x, params, np.zeros((4, 2, 7, 7), np.float32), left, right))
    with pytest.raises(Exception, match="noise \\(batch, 2, k, k\\)"):
        jax.block_until_ready(call(x, params, np.zeros((4, 2, 8, 8), np.float32), left, right[:7]))


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
