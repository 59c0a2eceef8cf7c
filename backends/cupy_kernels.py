"""xpnet's own CUDA kernels: their source, how they are loaded, and typed launches.

The kernels live in ``backends/cuda/*.cu`` (one family per file, forward beside
backward) with the helpers they share in ``xpnet.cuh``. They are compiled once
per process, lazily, into one ``cupy.RawModule`` (CuPy caches the binary on
disk), so importing ``backends`` never touches CUDA.

A launch is prepared before it runs: each helper of :class:`Kernels` checks its
arrays (float32 or int32, C-contiguous), converts every scalar to the exact
NumPy type of the C++ parameter (``numpy.int32``, ``numpy.uint32``,
``numpy.float32``: a Python int would reach the kernel as 64 bits), works out
grid, block and dynamic shared memory, and returns a :class:`Launch`. Calling
the launch runs it, or records it while a CUDA graph is being captured. The
module can be anything with CuPy's ``RawModule.get_function`` and ``RawKernel``
call signature, which is how the tests run these very launches on a CPU.
"""

import math
import re
from pathlib import Path

import numpy

KERNEL_DIR = Path(__file__).resolve().parent / "cuda"
HEADER = "xpnet.cuh"
KERNEL_FILES = ("batch.cu", "augment.cu", "activations.cu", "losses.cu", "optimizers.cu", "sgemm.cu")
# The options CuPy itself compiles with; the compile tests use the same.
NVRTC_OPTIONS = ("-ftz=true", "--device-as-default-execution-space", "-std=c++17")

# nn activation names -> the XPNET_* codes of xpnet.cuh.
ACTIVATION_CODES = {"linear": 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4}

_INCLUDE = re.compile(r'^#include "xpnet\.cuh"\s*$', re.MULTILINE)
_ENTRY = re.compile(r'extern "C" __global__ void (\w+)\(')
_DEFINE = re.compile(r"^#define (\w+) \(?([^/\n]*?)\)?\s*(?://.*)?$", re.MULTILINE)


def read_source(name):
    return (KERNEL_DIR / name).read_text()


def kernel_source():
    """All kernels as one CUDA translation unit: the header once, then each file."""
    parts = [read_source(HEADER)]
    parts += [_INCLUDE.sub("", read_source(name)) for name in KERNEL_FILES]
    return "\n".join(parts)


def kernel_names(source=None):
    """The ``extern "C" __global__`` entry points, in source order."""
    return _ENTRY.findall(kernel_source() if source is None else source)


def _sgemm_constants():
    defines = dict(_DEFINE.findall(read_source("sgemm.cu")))
    tile, depth, threads = (int(defines[k]) for k in ("SGEMM_TILE", "SGEMM_DEPTH", "SGEMM_THREADS"))
    return tile, threads, 2 * depth * (tile + 1) * 4


SGEMM_TILE, SGEMM_THREADS, SGEMM_SHARED_BYTES = _sgemm_constants()
def _augment_constants():
    defines = dict(_DEFINE.findall(read_source("augment.cu")))
    return int(defines["AUG_PIXELS"]), 4 * int(defines["AUG_SHARED_FLOATS"])


AUGMENT_PIXELS, AUGMENT_SHARED_BYTES = _augment_constants()
# Grid-stride kernels never need more blocks than this to fill a GPU.
MAX_BLOCKS = 4096
ROWS_PER_BLOCK = 4  # loss kernels: one warp per row, 4 warps per block


def _blocks(work, threads, cap=MAX_BLOCKS):
    return max(1, min(cap, math.ceil(work / threads)))


def _check(name, array, dtype):
    if array.dtype != dtype or not array.flags.c_contiguous:
        raise TypeError(
            f"{name} must be a C-contiguous {numpy.dtype(dtype).name} array, "
            f"got {array.dtype} {'contiguous' if array.flags.c_contiguous else 'strided'}"
        )
    return array


def f32(*named):
    return tuple(_check(name, a, numpy.float32) for name, a in named)


def i32(name, array):
    return _check(name, array, numpy.int32)


def u32(name, array):
    return _check(name, array, numpy.uint32)


class Launch:
    """A kernel launch with every argument fixed: calling it launches it."""

    __slots__ = ("name", "kernel", "grid", "block", "args", "shared_mem")

    def __init__(self, name, kernel, grid, block, args, shared_mem):
        self.name, self.kernel, self.grid, self.block = name, kernel, grid, block
        self.args, self.shared_mem = args, shared_mem

    def __call__(self):
        self.kernel(self.grid, self.block, self.args, shared_mem=self.shared_mem)

    def __repr__(self):
        return f"Launch({self.name}, grid={self.grid}, block={self.block}, shared_mem={self.shared_mem})"


class _NoWork:
    """The launch of a kernel with an empty grid: CUDA refuses those, so skip it."""

    name = "nothing"

    def __call__(self):
        pass


class Kernels:
    """Typed launch helpers over a loaded module (``cupy.RawModule`` or a stand-in)."""

    def __init__(self, module):
        self.module = module
        self._functions = {}

    def launch(self, name, grid, block, args, shared_mem=0):
        if 0 in grid:
            return _NoWork()
        if name not in self._functions:
            self._functions[name] = self.module.get_function(name)
        return Launch(name, self._functions[name], grid, block, args, shared_mem)

    # -- batch.cu -------------------------------------------------------------------------
    def begin_step(self, step_f32, step_u32, batch_idx, idx, lr, step_no, slot, block=256):
        (step_f32,) = f32(("step_f32", step_f32))
        count = idx.shape[0]
        args = (step_f32, u32("step_u32", step_u32), i32("batch_idx", batch_idx), i32("idx", idx),
                numpy.int32(count), numpy.float32(lr), numpy.uint32(step_no & 0xFFFFFFFF), numpy.uint32(slot))
        return self.launch("begin_step_f32", (_blocks(count, block),), (block,), args)

    def gather_batch(self, x, y, x_all, y_all, batch_idx, step_u32, block=256):
        rows, cols = x.shape
        x, x_all = f32(("x", x), ("x_all", x_all))
        args = (x, i32("y", y), x_all, i32("y_all", y_all), i32("batch_idx", batch_idx),
                u32("step_u32", step_u32), numpy.int32(rows), numpy.int32(cols))
        return self.launch("gather_batch_f32", (_blocks(rows * cols, block),), (block,), args)

    # -- augment.cu -------------------------------------------------------------------------
    def augment(self, x, step_u32, seed_hash, settings, basis, block=256):
        """x (rows, 784), gathered, distorted in place for the step in ``step_u32``.

        ``settings``: nn.augment.Augment's plain values (``Augment.config()``);
        ``basis``: the elastic field's (28, k) basis on the device (``Augment.field_basis()``).
        """
        rows, cols = x.shape
        if cols != AUGMENT_PIXELS:
            raise ValueError(f"augment_f32 distorts 28x28 images (784 columns), got {cols}")
        side, modes = basis.shape
        if side * side != AUGMENT_PIXELS or not 1 <= modes <= side:
            raise ValueError(f"augment_f32 needs a (28, k) field basis with 1 <= k <= 28, got {basis.shape}")
        x, basis = f32(("x", x), ("basis", basis))
        args = (x, u32("step_u32", step_u32), numpy.uint32(seed_hash), numpy.int32(rows),
                numpy.int32(settings["kind"] == "elastic"), numpy.float32(settings["rotate"] * math.pi / 180),
                *(numpy.float32(settings[k]) for k in ("shear", "scale", "shift")), basis, numpy.int32(modes),
                *(numpy.float32(settings[k]) for k in ("alpha", "thicken", "thin", "clean")))
        return self.launch("augment_f32", (rows,), (block,), args, shared_mem=AUGMENT_SHARED_BYTES)

    # -- activations.cu -----------------------------------------------------------------
    def bias_act_forward(self, z, y, a, b, step_u32, act, seed_hash=0, layer=0, keep_prob=1.0, block=256):
        """z += b; y = act(z); a = dropout(y) when keep_prob < 1 (a may be y, y may be z)."""
        rows, cols = z.shape
        z, y, a, b = f32(("z", z), ("y", y), ("a", a), ("b", b))
        args = (z, y, a, b, u32("step_u32", step_u32), numpy.int32(rows), numpy.int32(cols),
                numpy.int32(ACTIVATION_CODES[act]), numpy.uint32(seed_hash), numpy.uint32(layer),
                numpy.float32(keep_prob), numpy.float32(1.0 / keep_prob))
        return self.launch("bias_act_forward_f32", (_blocks(rows * cols, block),), (block,), args)

    def act_backward(self, dz, db, da, z, y, step_u32, act, seed_hash=0, layer=0, keep_prob=1.0,
                     block=(32, 8)):
        """dz = dropout_backward(da) * act'(z, y); db = column sums of dz."""
        rows, cols = dz.shape
        dz, db, da, z, y = f32(("dz", dz), ("db", db), ("da", da), ("z", z), ("y", y))
        args = (dz, db, da, z, y, u32("step_u32", step_u32), numpy.int32(rows), numpy.int32(cols),
                numpy.int32(ACTIVATION_CODES[act]), numpy.uint32(seed_hash), numpy.uint32(layer),
                numpy.float32(keep_prob), numpy.float32(1.0 / keep_prob))
        grid = (math.ceil(cols / block[0]),)
        return self.launch("act_backward_f32", grid, block, args, shared_mem=block[0] * block[1] * 4)

    def keep_mask(self, mask, key, keep_prob, block=256):
        (mask,) = f32(("mask", mask))
        args = (mask, numpy.uint32(key), numpy.int32(mask.size), numpy.float32(keep_prob))
        return self.launch("keep_mask_f32", (_blocks(mask.size, block),), (block,), args)

    # -- losses.cu ------------------------------------------------------------------------
    def loss_rows(self, loss, dlogits, row_loss, row_correct, logits, labels, step_u32, softmax_output=True,
                  block=32 * ROWS_PER_BLOCK):
        """Per-row loss, hit and dlogits of ``ce`` or ``mse`` (block: a multiple of 32)."""
        rows, classes = logits.shape
        dlogits, row_loss, logits = f32(("dlogits", dlogits), ("row_loss", row_loss), ("logits", logits))
        args = [dlogits, row_loss, i32("row_correct", row_correct), logits, i32("labels", labels),
                u32("step_u32", step_u32), numpy.int32(rows), numpy.int32(classes)]
        if loss == "mse":
            args.append(numpy.int32(bool(softmax_output)))
        grid = (_blocks(rows, block // 32),)
        return self.launch("softmax_ce_f32" if loss == "ce" else "mse_f32", grid, (block,), tuple(args))

    def loss_finalize(self, loss_ring, correct_ring, adam_t, row_loss, row_correct, penalty_partials, step_u32,
                      row_divisor, l1=0.0, l2=0.0, advance_t=False, block=256):
        """loss = sum(row_loss) / (count * row_divisor) + penalty; correct = sum(row_correct)."""
        loss_ring, adam_t, row_loss, penalty_partials = f32(
            ("loss_ring", loss_ring), ("adam_t", adam_t), ("row_loss", row_loss), ("penalty_partials", penalty_partials))
        args = (loss_ring, i32("correct_ring", correct_ring), adam_t, row_loss, i32("row_correct", row_correct),
                penalty_partials, u32("step_u32", step_u32), numpy.int32(row_loss.shape[0]),
                numpy.int32(row_divisor), numpy.int32(penalty_partials.size // 2), numpy.float32(l1),
                numpy.float32(l2), numpy.int32(bool(advance_t)))
        return self.launch("loss_finalize_f32", (1,), (block,), args, shared_mem=2 * block * 4)

    # -- optimizers.cu ---------------------------------------------------------------------
    @staticmethod
    def update_blocks(n, block=256):
        """Blocks of an optimizer launch: the number of penalty partials it writes."""
        return _blocks(n, block, cap=1024)

    def sgd_update(self, params, velocity, penalty_partials, grads, step_f32, n_weights, momentum=0.0,
                   nesterov=False, weight_decay=0.0, l1=0.0, l2=0.0, block=256):
        params, velocity, penalty_partials, grads, step_f32 = f32(
            ("params", params), ("velocity", velocity), ("penalty_partials", penalty_partials),
            ("grads", grads), ("step_f32", step_f32))
        args = (params, velocity, penalty_partials, grads, step_f32, numpy.int32(params.size),
                numpy.int32(n_weights), numpy.float32(momentum), numpy.int32(bool(nesterov)),
                numpy.float32(weight_decay), numpy.float32(l1), numpy.float32(l2))
        return self._update("sgd_update_f32", args, params.size, penalty_partials, block)

    def adam_update(self, params, m, v, penalty_partials, grads, adam_t, step_f32, n_weights, beta1=0.9,
                    beta2=0.999, eps=1e-8, weight_decay=0.0, l1=0.0, l2=0.0, block=256):
        params, m, v, penalty_partials, grads, adam_t, step_f32 = f32(
            ("params", params), ("m", m), ("v", v), ("penalty_partials", penalty_partials), ("grads", grads),
            ("adam_t", adam_t), ("step_f32", step_f32))
        # (1 - beta) is rounded once from double, as NumPy does with Python floats.
        args = (params, m, v, penalty_partials, grads, adam_t, step_f32, numpy.int32(params.size),
                numpy.int32(n_weights), numpy.float32(beta1), numpy.float32(1.0 - beta1), numpy.float32(beta2),
                numpy.float32(1.0 - beta2), numpy.float32(math.log(beta1)), numpy.float32(math.log(beta2)),
                numpy.float32(eps), numpy.float32(weight_decay), numpy.float32(l1), numpy.float32(l2))
        return self._update("adam_update_f32", args, params.size, penalty_partials, block)

    def _update(self, name, args, n, penalty_partials, block):
        blocks = self.update_blocks(n, block)
        if penalty_partials.size != 2 * blocks:
            raise ValueError(f"penalty_partials needs 2 * {blocks} floats for {n} parameters, has {penalty_partials.size}")
        return self.launch(name, (blocks,), (block,), args, shared_mem=block * 4)

    # -- sgemm.cu --------------------------------------------------------------------------
    def sgemm(self, form, c, a, b):
        """C = A B ("nn"), A B^T ("nt") or A^T B ("tn"), all row-major, C overwritten."""
        c, a, b = f32(("C", c), ("A", a), ("B", b))
        m, n = c.shape
        k = a.shape[0] if form == "tn" else a.shape[1]
        expected_a = (k, m) if form == "tn" else (m, k)
        expected_b = (n, k) if form == "nt" else (k, n)
        if a.shape != expected_a or b.shape != expected_b:
            raise ValueError(f"sgemm {form}: C {c.shape} needs A {expected_a} and B {expected_b}, got {a.shape}, {b.shape}")
        grid = (math.ceil(n / SGEMM_TILE), math.ceil(m / SGEMM_TILE))
        args = (c, a, b, numpy.int32(m), numpy.int32(n), numpy.int32(k))
        return self.launch(f"sgemm_{form}_f32", grid, (SGEMM_THREADS, SGEMM_THREADS), args,
                           shared_mem=SGEMM_SHARED_BYTES)
