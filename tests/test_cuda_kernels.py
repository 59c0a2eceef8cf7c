"""xpnet's CUDA kernels, executed on the CPU by the CUDA-on-CPU harness.

Each kernel is compared with a float64 NumPy reference at odd sizes (not
multiples of the block or tile), with empty and single-row batches, several
block sizes, four thread orders and shared memory poisoned three ways. The
launches are the real ones of backends.cupy_kernels.Kernels. The same tests
run once more on a GPU when there is one (the ``gpu`` parameter: arrays are
mirrored to the device around each launch).
"""

import numpy as np
import pytest

from backends.cupy_kernels import Kernels
from backends.random import _mix32_int, stream_key, uniform_from_counter
from cuda_on_cpu import SETTINGS, EmulatedModule, KernelLaunchError, cached_library
from reference import ref_activation, ref_one_hot

ACTS = ("linear", "relu", "leaky_relu", "sigmoid", "tanh")
SHAPES = ((0, 7), (1, 1), (1, 33), (37, 19), (70, 65))
RTOL = 1e-5


# Race mode (switches at memory accesses), in shuffled order: an unsynchronised += loses updates.
RACING = ("shuffled", "nan", "races")


def _emulated(setting):
    order, poison, *races = setting
    return Kernels(EmulatedModule(cached_library(races=bool(races)), thread_order=order, poison=poison, seed=7))


@pytest.fixture(params=[*(pytest.param(s, id="-".join(s)) for s in (*SETTINGS, RACING)),
                        pytest.param("gpu", marks=pytest.mark.gpu)])
def kernels(request):
    """The kernels on the CPU harness in each setting, and on a real GPU."""
    if request.param != "gpu":
        return _emulated(request.param)
    from backends import unavailable_reason

    reason = unavailable_reason("cupy")
    if reason is not None:
        pytest.skip(f"no GPU to run the kernels on: {reason}")
    import cupy

    from backends.cupy_backend import _raw_module

    return Kernels(HostMirrorModule(cupy, _raw_module(cupy)))


class HostMirrorModule:
    """A RawModule whose kernels take NumPy arrays: copied to the device for the
    launch (one device array per host array, so aliasing is kept) and back."""

    def __init__(self, cupy, module):
        self.cupy, self.module = cupy, module

    def get_function(self, name):
        kernel, cupy = self.module.get_function(name), self.cupy

        def launch(grid, block, args, shared_mem=0):
            device = {}
            for a in args:
                if isinstance(a, np.ndarray) and id(a) not in device:
                    device[id(a)] = (a, cupy.asarray(a))
            kernel(grid, block, tuple(device[id(a)][1] if id(a) in device else a for a in args), shared_mem=shared_mem)
            cupy.cuda.Device().synchronize()
            for host, on_device in device.values():
                if host.flags.writeable:
                    host[...] = on_device.get()

        return launch


def close(actual, expected, scale=None, rtol=RTOL):
    """|actual - expected| <= rtol * scale (default |expected|) + a float32 floor."""
    expected = np.asarray(expected, dtype=np.float64)
    scale = np.abs(expected) if scale is None else scale
    np.testing.assert_array_less(np.abs(np.float64(actual) - expected), rtol * scale + 1e-30)


def step_scalars(count=0, step=0, slot=0):
    return np.array([step, count, slot, 0], dtype=np.uint32)


def randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def ref_act_derivative(name, z, y):
    """f'(z) in float64, from the kernel's inputs: z for the piecewise ones, the
    kept output y for sigmoid and tanh (as the hand-written backward does)."""
    z, y = np.float64(z), np.float64(y)
    if name == "relu":
        return (z > 0) * 1.0
    if name == "leaky_relu":
        return np.where(z > 0, 1.0, 0.01)
    if name == "sigmoid":
        return y * (1 - y)
    if name == "tanh":
        return 1 - y * y
    return np.ones_like(z)


def numpy_keep_mask(seed, step, layer, shape, keep):
    return (uniform_from_counter(np, seed, step, layer, shape) < keep).astype(np.float32)


# -- activations.cu -------------------------------------------------------------------------
@pytest.mark.parametrize("act", ACTS)
def test_bias_act_forward(kernels, act):
    rng = np.random.default_rng(1)
    for block, (rows, cols) in zip((32, 96, 256, 64, 1024), SHAPES):
        z, b = randn(rng, rows, cols, scale=3), randn(rng, cols)
        z_in, y = z.copy(), np.empty_like(z)
        kernels.bias_act_forward(z, y, y, b, step_scalars(), act, block=block)()
        ref_z = np.float64(z_in) + b
        close(z, ref_z, scale=np.abs(ref_z) + np.abs(b))
        close(y, ref_activation(act, ref_z), scale=np.abs(ref_activation(act, ref_z)) + np.abs(ref_z))


def test_output_layer_bias_in_place(kernels):
    """The logits pass y = z: the linear epilogue writes one buffer."""
    rng = np.random.default_rng(2)
    z, b = randn(rng, 9, 10), randn(rng, 10)
    expected = np.float64(z) + b
    kernels.bias_act_forward(z, z, z, b, step_scalars(), "linear")()
    close(z, expected, scale=np.abs(expected) + np.abs(b))


@pytest.mark.parametrize("act", ACTS)
def test_act_backward_with_bias_column_sum(kernels, act):
    rng = np.random.default_rng(3)
    for block, (rows, cols) in zip(((32, 1), (32, 4), (32, 8), (64, 2), (32, 32)), SHAPES):
        z = randn(rng, rows, cols, scale=2)
        y = ref_activation(act, z).astype(np.float32)
        da = randn(rng, rows, cols)
        dz, db = np.empty_like(z), np.full(cols, np.nan, np.float32)
        kernels.act_backward(dz, db, da, z, y, step_scalars(), act, block=block)()
        ref_dz = np.float64(da) * ref_act_derivative(act, z, y)
        # 1 - y*y cancels for |y| near 1: its rounding error scales with y^2.
        scale = np.abs(ref_dz) + np.abs(np.float64(da) * y * y)
        close(dz, ref_dz, scale=scale)
        close(db, ref_dz.sum(axis=0), scale=scale.sum(axis=0))


# -- dropout: the same counter hash as backends/random.py, bit for bit ---------------------------
@pytest.mark.parametrize("seed, step, layer", [(0, 0, 0), (7, 12345, 2), (2**31 + 5, 2**32 + 3, 1)])
def test_keep_mask_equals_numpy_bit_for_bit(kernels, seed, step, layer):
    for size, keep in ((1, 0.5), (1000, 0.9), (4099, 0.2)):
        mask = np.full(size, np.nan, np.float32)
        kernels.keep_mask(mask, stream_key(seed, step, layer), keep)()
        np.testing.assert_array_equal(mask, numpy_keep_mask(seed, step, layer, (size,), keep))


def test_keep_mask_boundary_uses_float32_comparison(kernels):
    """A uniform equal to float32(keep) is dropped in NumPy (float32 compare); here too."""
    key = stream_key(3, 1, 0)
    u = uniform_from_counter(np, 3, 1, 0, (50_000,))
    keep = float(np.sort(u)[25_000])  # exactly representable, so some u == keep
    mask = np.empty(50_000, np.float32)
    kernels.keep_mask(mask, key, keep)()
    np.testing.assert_array_equal(mask, (u < np.float32(keep)).astype(np.float32))


def test_fused_dropout_boundary_uses_float32_comparison(kernels):
    """keep exactly equal to one of the layer's uniforms: NumPy drops that unit (u < keep); the fused
    forward and backward kernels must too."""
    seed, step, layer, rows, cols = 5, 9, 0, 31, 33
    u = uniform_from_counter(np, seed, step, layer, (rows, cols))
    keep = float(np.sort(u.ravel())[rows * cols // 2])
    assert (u == np.float32(keep)).any()
    z, b = np.ones((rows, cols), np.float32), np.zeros(cols, np.float32)
    y, a = np.empty_like(z), np.empty_like(z)
    scalars = step_scalars(step=step)
    kernels.bias_act_forward(z, y, a, b, scalars, "linear", _mix32_int(seed), layer, keep)()
    np.testing.assert_array_equal(a != 0, u < np.float32(keep))
    dz, db = np.empty_like(z), np.empty(cols, np.float32)
    kernels.act_backward(dz, db, np.ones_like(z), z, y, scalars, "linear", _mix32_int(seed), layer, keep)()
    np.testing.assert_array_equal(dz != 0, u < np.float32(keep))


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_fused_dropout_matches_numpy_masks(kernels, act):
    """The step number comes from device memory and the key is derived on the device."""
    rng = np.random.default_rng(4)
    seed, step, layer, keep = 11, 77, 1, 0.7
    rows, cols = 13, 37
    z, b = randn(rng, rows, cols), randn(rng, cols)
    z_in, y, a = z.copy(), np.empty_like(z), np.empty_like(z)
    scalars = step_scalars(step=step)
    kernels.bias_act_forward(z, y, a, b, scalars, act, _mix32_int(seed), layer, keep)()
    mask = numpy_keep_mask(seed, step, layer, (rows, cols), keep)
    ref_y = ref_activation(act, np.float64(z_in) + b)
    close(a, ref_y * mask * np.float32(1 / keep), scale=np.abs(ref_y) * 2 + 1e-6)
    np.testing.assert_array_equal(a == 0, (mask == 0) | (y == 0))

    da, dz, db = randn(rng, rows, cols), np.empty_like(z), np.empty(cols, np.float32)
    kernels.act_backward(dz, db, da, z, y, scalars, act, _mix32_int(seed), layer, keep)()
    ref_dz = np.float64(da) * mask / keep * ref_act_derivative(act, z, y)
    close(dz, ref_dz, scale=np.abs(ref_dz) + np.abs(np.float64(da) * y * y) / keep)


# -- losses.cu ----------------------------------------------------------------------------------
def ref_softmax(z):
    z = np.float64(z)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def run_loss(kernels, loss, logits, labels, count, softmax_output=True, block=128):
    rows, classes = logits.shape
    dlogits = np.full_like(logits, np.nan)
    row_loss, row_correct = np.full(rows, np.nan, np.float32), np.full(rows, -1, np.int32)
    kernels.loss_rows(loss, dlogits, row_loss, row_correct, logits, labels, step_scalars(count=count),
                      softmax_output, block=block)()
    return dlogits, row_loss, row_correct


@pytest.mark.parametrize("rows, count, classes, block", [(0, 0, 10, 32), (1, 1, 10, 64), (37, 37, 10, 128),
                                                         (37, 30, 45, 96), (5, 5, 1, 32)])
def test_softmax_cross_entropy(kernels, rows, count, classes, block):
    rng = np.random.default_rng(5)
    logits = randn(rng, rows, classes, scale=4)
    if rows > 2:
        logits[2] *= 3000  # +-1e4: the max shift keeps exp() finite
    labels = rng.integers(0, classes, rows).astype(np.int32)
    dlogits, row_loss, row_correct = run_loss(kernels, "ce", logits, labels, count, block=block)
    p, onehot = ref_softmax(logits[:count]), ref_one_hot(labels[:count], classes)
    z = np.float64(logits[:count])
    ref_rows = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) - (z - z.max(1, keepdims=True))[np.arange(count), labels[:count]]
    close(row_loss[:count], ref_rows, scale=np.abs(ref_rows) + np.abs(z).max(axis=1, initial=0))
    close(dlogits[:count], (p - onehot) / count, scale=(p + onehot) / count + 1e-9)
    np.testing.assert_array_equal(row_correct[:count], np.argmax(logits[:count], axis=1) == labels[:count])
    assert not dlogits[count:].any() and not row_loss[count:].any() and not row_correct[count:].any()


def test_argmax_ties_take_the_first_index(kernels):
    logits = np.array([[1, 5, 5, 0], [7, 7, 7, 7], [0, 0, 0, 2]], np.float32)
    labels = np.array([1, 0, 3], np.int32)
    _, _, row_correct = run_loss(kernels, "ce", logits, labels, 3)
    np.testing.assert_array_equal(row_correct, [1, 1, 1])
    _, _, row_correct = run_loss(kernels, "ce", logits, np.array([2, 3, 3], np.int32), 3)
    np.testing.assert_array_equal(row_correct, [0, 0, 1])


def test_argmax_ties_a_lane_apart_or_a_warp_apart_take_the_first_index(kernels):
    """Lane k reads classes k and k + 32: a tie there is settled in the lane's own loop (strict >),
    a tie across lanes in the shuffle (lower index); NumPy's argmax takes the first either way."""
    rng = np.random.default_rng(8)
    logits = randn(rng, 4, 45)
    for row, (first, second) in enumerate([(3, 35), (35, 3), (2, 33), (12, 44)]):
        logits[row, [first, second]] = 9.0
    expected = np.argmax(logits, axis=1)
    assert list(expected) == [3, 3, 2, 12]
    for labels in (expected, expected + 32):
        _, _, row_correct = run_loss(kernels, "ce", logits, labels.astype(np.int32), 4)
        np.testing.assert_array_equal(row_correct, labels == expected)


@pytest.mark.parametrize("softmax_output", [True, False])
@pytest.mark.parametrize("rows, count, classes", [(1, 1, 10), (37, 33, 10), (6, 6, 40)])
def test_mse(kernels, softmax_output, rows, count, classes):
    rng = np.random.default_rng(6)
    logits, labels = randn(rng, rows, classes, scale=2), rng.integers(0, classes, rows).astype(np.int32)
    dlogits, row_loss, row_correct = run_loss(kernels, "mse", logits, labels, count, softmax_output)
    out = ref_softmax(logits[:count]) if softmax_output else np.float64(logits[:count])
    diff = out - ref_one_hot(labels[:count], classes)
    dout = 2 * diff / diff.size
    ref_dz = out * (dout - (dout * out).sum(1, keepdims=True)) if softmax_output else dout
    close(row_loss[:count], (diff**2).sum(1), scale=(diff**2).sum(1) + 1e-7)
    close(dlogits[:count], ref_dz, scale=np.abs(ref_dz) + np.abs(dout) + 1e-9)
    np.testing.assert_array_equal(row_correct[:count], np.argmax(logits[:count], axis=1) == labels[:count])
    assert not dlogits[count:].any()


@pytest.mark.parametrize("block", [32, 64, 256])
def test_loss_finalize(kernels, block):
    rng = np.random.default_rng(8)
    rows, count, partials = 300, 291, 7
    row_loss = rng.random(rows).astype(np.float32)
    row_correct = rng.integers(0, 2, rows).astype(np.int32)
    penalty = rng.random(2 * partials).astype(np.float32)
    loss_ring, correct_ring = np.full(8, np.nan, np.float32), np.full(8, -1, np.int32)
    adam_t = np.array([4.0], np.float32)
    kernels.loss_finalize(loss_ring, correct_ring, adam_t, row_loss, row_correct, penalty,
                          step_scalars(count=count, slot=5), row_divisor=10, l1=1e-3, l2=2e-2,
                          advance_t=True, block=block)()
    expected = np.float64(row_loss[:count]).sum() / (count * 10) + 1e-3 * penalty[0::2].sum() + 0.5 * 2e-2 * np.float64(penalty[1::2]).sum()
    close(loss_ring[5], expected)
    assert correct_ring[5] == row_correct[:count].sum() and adam_t[0] == 5.0
    assert np.isnan(loss_ring[[0, 1, 2, 3, 4, 6, 7]]).all()


# -- optimizers.cu ----------------------------------------------------------------------------
def flat_problem(rng, n=1000, n_weights=737):
    params, grads = randn(rng, n), randn(rng, n)
    return params, grads, n_weights


def ref_penalized(params, grads, n_weights, l1, l2):
    g = np.float64(grads).copy()
    w = np.float64(params[:n_weights])
    g[:n_weights] += l1 * np.sign(w) + l2 * w
    return g


def check_partials(kernels, partials, params, n_weights):
    w = np.float64(params[:n_weights])
    close(partials[0::2].sum(), np.abs(w).sum())
    close(partials[1::2].sum(), (w * w).sum())


@pytest.mark.parametrize("momentum, nesterov, wd, l1, l2", [
    (0.0, False, 0.0, 0.0, 0.0), (0.9, False, 1e-2, 0.0, 0.0), (0.9, True, 0.0, 1e-3, 0.0), (0.5, False, 0.0, 1e-3, 1e-2),
])
def test_sgd_update(kernels, momentum, nesterov, wd, l1, l2):
    rng = np.random.default_rng(9)
    params, grads, n_weights = flat_problem(rng)
    velocity = randn(rng, params.size)
    p0, v0 = np.float64(params), np.float64(velocity)
    blocks = kernels.update_blocks(params.size, 128)
    partials = np.full(2 * blocks, np.nan, np.float32)
    lr = np.array([0.05], np.float32)
    kernels.sgd_update(params, velocity, partials, grads, lr, n_weights, momentum, nesterov, wd, l1, l2, block=128)()
    g = ref_penalized(p0, grads, n_weights, l1, l2)
    direction = g
    if momentum:
        v = momentum * v0 + g
        direction = g + momentum * v if nesterov else v
        close(velocity, v, scale=np.abs(v) + np.abs(g))
    direction[:n_weights] += wd * p0[:n_weights]
    close(params, p0 - 0.05 * direction, scale=np.abs(p0) + 0.05 * np.abs(direction))
    check_partials(kernels, partials, p0, n_weights)


@pytest.mark.parametrize("t, wd, l2", [(0.0, 0.0, 0.0), (41.0, 1e-2, 1e-3)])
def test_adam_update(kernels, t, wd, l2):
    rng = np.random.default_rng(10)
    params, grads, n_weights = flat_problem(rng, n=333, n_weights=300)
    m, v = randn(rng, params.size) * 0.1, np.abs(randn(rng, params.size)) * 0.01
    p0, m0, v0 = np.float64(params), np.float64(m), np.float64(v)
    adam_t = np.array([t], np.float32)
    partials = np.full(2 * kernels.update_blocks(params.size, 64), np.nan, np.float32)
    kernels.adam_update(params, m, v, partials, grads, adam_t, np.array([3e-3], np.float32), n_weights,
                        weight_decay=wd, l2=l2, block=64)()
    g = ref_penalized(p0, grads, n_weights, 0.0, l2)
    b1, b2, eps, step = 0.9, 0.999, 1e-8, t + 1
    m1, v1 = b1 * m0 + (1 - b1) * g, b2 * v0 + (1 - b2) * g * g
    update = m1 / (1 - b1**step) / (np.sqrt(v1 / (1 - b2**step)) + eps)
    update[:n_weights] += wd * p0[:n_weights]
    close(m, m1, scale=np.abs(m1) + np.abs(g) * 0.1)
    close(v, v1, scale=v1 + 1e-12)
    close(params, p0 - 3e-3 * update, scale=np.abs(p0) + 3e-3 * np.abs(update) * 10)
    assert adam_t[0] == t  # advanced by loss_finalize, after the update
    check_partials(kernels, partials, p0, n_weights)


@pytest.mark.parametrize("update", ["sgd", "adam"])
def test_an_exactly_zero_weight_gets_no_l1_push(kernels, update):
    """L1's subgradient at w = 0 is sign(0) = 0 (as nn.regularizers and np.sign): a kernel that tests
    ``w >= 0`` instead would push every zero weight, which random weights never show."""
    params = np.array([0.0, -0.0, 0.0, 0.5, -0.5, 0.0], np.float32)
    grads = np.array([0.0, 0.0, 1e-3, 0.0, 0.0, -1e-3], np.float32)
    n_weights, l1, lr = 6, 0.1, 0.01
    partials = np.full(2 * kernels.update_blocks(params.size, 64), np.nan, np.float32)
    got = params.copy()
    if update == "sgd":
        kernels.sgd_update(got, np.zeros_like(got), partials, grads, np.array([lr], np.float32), n_weights,
                           l1=l1, block=64)()
        want = np.float64(params) - lr * (np.float64(grads) + l1 * np.sign(np.float64(params)))
    else:
        kernels.adam_update(got, np.zeros_like(got), np.zeros_like(got), partials, grads, np.array([0.0], np.float32),
                            np.array([lr], np.float32), n_weights, l1=l1, block=64)()
        g = np.float64(grads) + l1 * np.sign(np.float64(params))
        want = np.float64(params) - lr * g / (np.abs(g) + 1e-8)  # the first step: m_hat = g, v_hat = g^2
    assert got[0] == 0 and got[1] == 0  # no gradient, no push: the zero weights stay where they are
    close(got, want, scale=np.abs(want) + 1e-9)


# -- sgemm.cu ----------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["nn", "nt", "tn"])
@pytest.mark.parametrize("m, n, k", [(1, 1, 1), (67, 45, 33), (64, 64, 16), (130, 3, 70), (5, 9, 0), (1, 130, 17)])
def test_sgemm(kernels, form, m, n, k):
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a = randn(rng, *((k, m) if form == "tn" else (m, k)))
    b = randn(rng, *((n, k) if form == "nt" else (k, n)))
    c = np.full((m, n), np.nan, np.float32)
    kernels.sgemm(form, c, a, b)()
    a64 = np.float64(a.T if form == "tn" else a)
    b64 = np.float64(b.T if form == "nt" else b)
    close(c, a64 @ b64, scale=np.abs(a64) @ np.abs(b64) + 1e-30)


# -- batch.cu ----------------------------------------------------------------------------------
def test_begin_step_and_gather_pad_a_partial_batch(kernels):
    rng = np.random.default_rng(12)
    x_all, y_all = randn(rng, 50, 13), rng.integers(0, 10, 50).astype(np.int32)
    order = rng.permutation(50).astype(np.int32)
    rows = 16
    step_f32, step_u32 = np.zeros(1, np.float32), np.zeros(4, np.uint32)
    batch_idx = np.arange(rows, dtype=np.int32)  # stale indices from an earlier step
    idx = order[48:]  # the last, partial batch: 2 of 16 rows
    kernels.begin_step(step_f32, step_u32, batch_idx, idx, 0.125, 2**32 + 70_009, 3)()
    assert step_f32[0] == np.float32(0.125) and list(step_u32[:3]) == [70_009, 2, 3]  # 32 bits, not 16
    x, y = np.full((rows, 13), np.nan, np.float32), np.full(rows, -1, np.int32)
    kernels.gather_batch(x, y, x_all, y_all, batch_idx, step_u32, block=64)()
    np.testing.assert_array_equal(x[:2], x_all[idx])
    np.testing.assert_array_equal(y[:2], y_all[idx])
    assert not x[2:].any() and not y[2:].any()


@pytest.mark.parametrize("count, block", [(700, 256), (97, 32)])
def test_begin_step_copies_a_batch_of_several_blocks(kernels, count, block):
    """A batch larger than one block (batch 1024 on a GPU is 4 blocks): every index is copied."""
    idx = np.random.default_rng(count).permutation(5 * count)[:count].astype(np.int32)
    batch_idx = np.full(count, -1, np.int32)
    step_f32, step_u32 = np.zeros(1, np.float32), np.zeros(4, np.uint32)
    kernels.begin_step(step_f32, step_u32, batch_idx, idx, 0.5, 7, 0, block=block)()
    np.testing.assert_array_equal(batch_idx, idx)
    assert step_u32[1] == count


# -- augment.cu --------------------------------------------------------------------------------
AUGMENTS = {
    "elastic": dict(kind="elastic"),
    "affine-no-clean": dict(kind="affine", clean=0.0, rotate=40.0, shear=0.5, scale=0.3, shift=4.0),
    "elastic-strong-stroke": dict(kind="elastic", sigma=3.0, alpha=60.0, thicken=1.0, thin=1.0, clean=0.1),
}


@pytest.mark.parametrize("rows, count", [(1, 1), (5, 5), (37, 33)])
@pytest.mark.parametrize("name", AUGMENTS)
def test_augment_equals_the_numpy_reference(kernels, name, rows, count):
    from nn.augment import Augment, augment_batch

    augment = Augment(**AUGMENTS[name])
    rng = np.random.default_rng(rows)
    x = rng.random((rows, 784)).astype(np.float32) * (rng.random((rows, 784)) < 0.4)
    step_u32 = np.array([1234 + rows, count, 0, 0], np.uint32)
    got = x.copy()
    kernels.augment(got, step_u32, _mix32_int(5), augment.config(), augment.field_basis())()
    want = augment_batch(np, x[:count], 5, 1234 + rows, augment)
    np.testing.assert_allclose(got[:count], want, atol=2e-5, rtol=0)
    np.testing.assert_array_equal(got[count:], x[count:])  # padding rows untouched


BROKEN_AUGMENTS = {
    "no bounds check": ("return (r >= 0 && r < AUG_SIDE && c >= 0 && c < AUG_SIDE) ? image[r * AUG_SIDE + c] : 0.0f;",
                        "return image[r * AUG_SIDE + c];"),
    "shift sign flipped": ("+ AUG_CENTRE - tx;", "+ AUG_CENTRE + tx;"),
    "field drawn from the parameter stream": ("stream_key(seed_hash, step, AUG_FIELD_LAYER)",
                                              "stream_key(seed_hash, step, AUG_PARAMS_LAYER)"),
    "no barrier before the sampling": ("    __syncthreads();\n\n    // One bilinear", "\n    // One bilinear"),
    "stroke blend toward the wrong side": ("fmaxf(blend, 0.0f) * (dilated - v)", "fmaxf(blend, 0.0f) * (eroded - v)"),
}


@pytest.mark.parametrize("bug", BROKEN_AUGMENTS)
def test_broken_augment_is_caught(bug):
    from backends.cupy_kernels import read_source
    from cuda_on_cpu import build_library
    from nn.augment import Augment, augment_batch

    source = read_source("augment.cu")
    old, new = BROKEN_AUGMENTS[bug]
    assert old in source
    kernels = Kernels(EmulatedModule(build_library(sources={"augment.cu": source.replace(old, new)}),
                                     thread_order="reverse", poison="nan", seed=7))
    augment = Augment("elastic", clean=0.0, shift=4.0)
    x = np.random.default_rng(0).random((6, 784)).astype(np.float32)
    got = x.copy()
    try:
        kernels.augment(got, np.array([3, 6, 0, 0], np.uint32), _mix32_int(1), augment.config(),
                        augment.field_basis())()
    except KernelLaunchError:  # the harness refused the broken kernel's access outright: caught too
        return
    assert not np.allclose(got, augment_batch(np, x, 1, 3, augment), atol=2e-5), bug


# The column sums of act_backward written as many GPU newcomers would: every thread row adds its
# partial straight into db, a read-modify-write from blockDim.y threads at once (atomicAdd needed).
UNSYNCHRONISED_SUM = (
    "    extern __shared__ float smem[];\n    smem[threadIdx.y * blockDim.x + threadIdx.x] = partial;\n"
    "    __syncthreads();\n    if (threadIdx.y == 0 && col < cols) {\n        float total = 0.0f;\n"
    "        for (int k = 0; k < (int)blockDim.y; ++k) total += smem[k * blockDim.x + threadIdx.x];\n"
    "        db[col] = total;\n    }\n",
    "    if (threadIdx.y == 0 && col < cols) db[col] = 0.0f;\n    __syncthreads();\n"
    "    if (col < cols) db[col] += partial;\n",
)


@pytest.mark.parametrize("races", [False, True])
def test_an_unsynchronised_sum_loses_updates_only_in_race_mode(races):
    """Cooperative fibers run each += whole, so the racy sum still adds up; race mode switches between
    its read and its write, and updates are lost."""
    from backends.cupy_kernels import read_source
    from cuda_on_cpu import build_library

    source = read_source("activations.cu")
    old, new = UNSYNCHRONISED_SUM
    assert old in source
    library = build_library(sources={"activations.cu": source.replace(old, new)}, races=races)
    kernels = Kernels(EmulatedModule(library, thread_order="shuffled", poison="nan", seed=7))
    rng = np.random.default_rng(3)
    z, da = randn(rng, 37, 19), randn(rng, 37, 19)
    dz, db = np.empty_like(z), np.full(19, np.nan, np.float32)
    kernels.act_backward(dz, db, da, z, z.copy(), step_scalars(), "linear", block=(32, 8))()
    lost = np.abs(np.float64(db) - np.float64(da).sum(axis=0)).max() > 1e-3
    assert lost == races


# The edge-value checks, each shown to fail on the bug of its kind (planted in a scratch build).
PLANTED_EDGE_BUGS = {
    "dropout keeps u == keep": ("xpnet.cuh", "uniform_from_counter(key, counter) < keep_prob ? inv_keep",
                                "uniform_from_counter(key, counter) <= keep_prob ? inv_keep",
                                test_fused_dropout_boundary_uses_float32_comparison),
    "a lane's ties take the later class": ("losses.cu", "if (z[k] > best) { best = z[k];",
                                           "if (z[k] >= best) { best = z[k];",
                                           test_argmax_ties_a_lane_apart_or_a_warp_apart_take_the_first_index),
}


@pytest.mark.parametrize("bug", PLANTED_EDGE_BUGS)
def test_the_edge_value_checks_fail_on_a_planted_bug(bug, tmp_path, monkeypatch):
    import shutil

    import backends.cupy_kernels as cupy_kernels
    from cuda_on_cpu import build_library

    name, old, new, check = PLANTED_EDGE_BUGS[bug]
    folder = tmp_path / "cuda"
    shutil.copytree(cupy_kernels.KERNEL_DIR, folder)
    text = (folder / name).read_text()
    assert old in text
    (folder / name).write_text(text.replace(old, new))
    import cuda_on_cpu

    monkeypatch.setattr(cuda_on_cpu, "KERNEL_DIR", folder)
    kernels = Kernels(EmulatedModule(build_library(), thread_order="forward", poison="nan", seed=7))
    with pytest.raises(AssertionError):
        check(kernels)
