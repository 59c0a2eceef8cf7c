"""The CUDA-on-CPU harness catches broken kernels, and runs every kernel test
once more under AddressSanitizer.

Each broken case is a real kernel made wrong on purpose: a barrier deleted,
an argument of the wrong type, too little shared memory, an out-of-bounds
write. A harness that let any of them through could not be trusted with the
kernels that ship.
"""

import numpy as np
import pytest

from backends.cupy_kernels import Kernels
from cuda_on_cpu import SETTINGS, EmulatedModule, cached_library
from test_cuda_kernels import RTOL, _emulated, randn, run_loss, step_scalars


@pytest.fixture(params=SETTINGS, ids=["-".join(s) for s in SETTINGS])
def kernels(request):
    """The kernels on the CPU harness only: for checks a GPU would not make."""
    return _emulated(request.param)



# -- the harness catches broken kernels --------------------------------------------------------
def test_every_shared_array_is_the_checked_dynamic_buffer():
    """Static __shared__ arrays would be per-thread in the harness: allow only `smem`."""
    from backends.cupy_kernels import HEADER, KERNEL_DIR, KERNEL_FILES

    for name in (HEADER, *KERNEL_FILES):
        for line in (KERNEL_DIR / name).read_text().splitlines():
            code = line.split("//")[0]
            if "__shared__" in code:
                assert code.strip() == "extern __shared__ float smem[];", f"{name}: {line.strip()}"


def column_sum_case(rows=40, cols=45):
    rng = np.random.default_rng(13)
    z, da = randn(rng, rows, cols), randn(rng, rows, cols)
    return z, z.copy(), da, np.float64(da).sum(axis=0)


def test_broken_missing_syncthreads_shows_up_under_some_thread_order():
    from backends.cupy_kernels import read_source

    source = read_source("activations.cu")
    assert source.count("__syncthreads();") == 1
    broken = cached_library(sources={"activations.cu": source.replace("__syncthreads();", "")})
    z, y, da, expected = column_sum_case()
    wrong = set()
    for order, poison in SETTINGS:
        kernels = Kernels(EmulatedModule(broken, thread_order=order, poison=poison))
        dz, db = np.empty_like(z), np.empty(z.shape[1], np.float32)
        kernels.act_backward(dz, db, da, z, y, step_scalars(), "linear")()
        if not np.allclose(db, expected, rtol=RTOL, atol=1e-5):
            wrong.add(order)
    # Thread row 0 adds the partial sums: run first, it reads poison; run last, it
    # happens to see them all. Only a changed order exposes the missing barrier.
    assert "forward" in wrong and "reverse" not in wrong


def test_broken_argument_types_are_refused(kernels):
    z = np.zeros((3, 4), np.float32)
    y, b, scalars = np.empty_like(z), np.zeros(4, np.float32), step_scalars()
    launch = kernels.bias_act_forward(z, y, y, b, scalars, "relu")
    kernel, good = launch.kernel, launch.args
    launch()
    cases = {
        5: 3,  # rows as a Python int: 64 bits where the kernel reads 32
        10: 0.5,  # keep_prob as a Python float (a double)
        0: z.astype(np.float64),
        3: np.zeros(4, np.int32),
        1: y[:, ::2],  # strided
        4: np.zeros(4, np.int32),  # const unsigned* given int32
    }
    for position, bad in cases.items():
        args = list(good)
        args[position] = bad
        with pytest.raises(TypeError, match=f"argument {position}"):
            kernel(launch.grid, launch.block, tuple(args), shared_mem=0)
    read_only = y.copy()
    read_only.flags.writeable = False
    with pytest.raises(TypeError, match="read-only"):
        kernel(launch.grid, launch.block, (z, read_only, *good[2:]))
    with pytest.raises(TypeError, match="takes 12 arguments"):
        kernel(launch.grid, launch.block, good[:-1])
    with pytest.raises(TypeError, match="float32"):  # the launch helper's own check, before any kernel
        kernels.bias_act_forward(z.astype(np.float64), y, y, b, scalars, "relu")


def test_broken_too_little_shared_memory_is_caught(kernels):
    from cuda_on_cpu import KernelLaunchError

    z, y, da, _ = column_sum_case()
    dz, db = np.empty_like(z), np.empty(z.shape[1], np.float32)
    launch = kernels.act_backward(dz, db, da, z, y, step_scalars(), "linear")
    launch.shared_mem -= 4
    with pytest.raises(KernelLaunchError, match="past the 1020 bytes"):
        launch()
    c, a = np.empty((20, 20), np.float32), np.ones((20, 20), np.float32)
    launch = kernels.sgemm("nn", c, a, a)
    launch.shared_mem //= 2
    with pytest.raises(KernelLaunchError, match="dynamic shared memory"):
        launch()


def test_broken_launch_configurations_are_refused(kernels):
    from cuda_on_cpu import KernelLaunchError

    rows, classes = 6, 10
    logits, labels = np.zeros((rows, classes), np.float32), np.zeros(rows, np.int32)
    with pytest.raises(KernelLaunchError, match="warp shuffle"):  # a partial warp, full mask
        run_loss(kernels, "ce", logits, labels, rows, block=48)
    launch = kernels.keep_mask(np.empty(10, np.float32), 1, 0.5)
    for grid, block, shared, message in (((0,), (32,), 0, "is 0"), ((1,), (2048,), 0, "1024 threads"),
                                         ((1,), (32,), 64 * 1024, "49152")):
        with pytest.raises(KernelLaunchError, match=message):
            launch.kernel(grid, block, launch.args, shared_mem=shared)


# -- AddressSanitizer: every kernel test once more, out-of-bounds accesses fatal -----------------
def test_library_is_instrumented_exactly_when_asked():
    from cuda_on_cpu import asan_requested

    assert EmulatedModule(cached_library()).library.cuda_on_cpu_asan() == int(asan_requested())


def _asan_environment():
    import os
    import subprocess

    from cuda_on_cpu import asan_requested, compiler

    if asan_requested():
        pytest.skip("already running under AddressSanitizer")
    if compiler() is None:
        pytest.skip("no C++ compiler (g++)")
    runtime = subprocess.run([compiler(), "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(runtime):
        pytest.skip("g++ has no AddressSanitizer runtime (libasan.so)")
    return {**os.environ, "LD_PRELOAD": runtime, "ASAN_OPTIONS": "detect_leaks=0", "XPNET_CUDA_ON_CPU_ASAN": "1"}


def sanitizer_report(stderr, lines=40):
    """The first ``lines`` lines of an AddressSanitizer report in ``stderr``, or "" when there is none."""
    start = stderr.find("ERROR: AddressSanitizer")
    if start < 0:
        return ""
    start = stderr.rfind("\n", 0, start) + 1
    return "\n".join(stderr[start:].splitlines()[:lines])


def test_sanitizer_report_is_the_reports_first_lines():
    stderr = "collected 3 items\n==12==ERROR: AddressSanitizer: heap-buffer-overflow\n" + "".join(
        f"    #{i} frame\n" for i in range(60))
    report = sanitizer_report(stderr)
    assert report.startswith("==12==ERROR: AddressSanitizer: heap-buffer-overflow") and len(report.splitlines()) == 40
    assert sanitizer_report("all fine\n") == ""


def test_kernels_under_address_sanitizer():
    import subprocess
    import sys
    from pathlib import Path

    env = _asan_environment()
    here = Path(__file__).resolve()
    # The emulated kernels only: on a GPU machine the tests marked gpu would load CuPy and the
    # CUDA driver under AddressSanitizer's preloaded runtime, which do not go together (the
    # whole suite's run on an H200 failed here).
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(here.parent / "test_cuda_kernels.py"), str(here),
         "-k", "not broken and not sanitizer", "-m", "not gpu"],
        capture_output=True, text=True, env=env, cwd=here.parent.parent, timeout=600,
    )
    assert result.returncode == 0 and "AddressSanitizer" not in result.stderr, (
        sanitizer_report(result.stderr) or result.stdout[-3000:] + result.stderr[-3000:])
    assert " passed" in result.stdout


def test_broken_out_of_bounds_write_is_fatal_under_address_sanitizer():
    import subprocess
    import sys
    from pathlib import Path

    from backends.cupy_kernels import read_source

    env = _asan_environment()
    source = read_source("activations.cu")
    assert source.count("i < size; i += gridDim.x") == 1
    broken = {"activations.cu": source.replace("i < size; i += gridDim.x", "i <= size; i += gridDim.x")}
    script = (
        "import numpy as np\n"
        "from cuda_on_cpu import EmulatedModule, build_library\n"
        "from backends.cupy_kernels import Kernels\n"
        f"library = build_library(sources={broken!r})\n"
        "Kernels(EmulatedModule(library)).keep_mask(np.empty(4099, np.float32), 1, 0.5)()\n"
    )
    root = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = f"{root}:{root / 'tests'}"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=root, timeout=300)
    assert result.returncode != 0 and "heap-buffer-overflow" in result.stderr, result.stderr[-3000:]


# -- the harness's own semantics -----------------------------------------------------------------
def cuda_shuffle(values, xor_kind, lane_arg, width):
    """What CUDA documents for a full-warp __shfl_down_sync / __shfl_xor_sync."""
    out = values.copy()
    for lane in range(32):
        group = lane // width
        source = lane ^ lane_arg if xor_kind else lane + lane_arg
        if xor_kind and source // width <= group:
            out[lane] = values[source]
        if not xor_kind and lane % width + lane_arg < width:
            out[lane] = values[source]
    return out


@pytest.mark.parametrize("order", ["forward", "reverse", "shuffled"])
def test_warp_shuffles_follow_cuda_semantics(order):
    module = EmulatedModule(cached_library(probes=True), thread_order=order)
    probe = module.get_function("shuffle_probe_f32")
    values = np.arange(64, dtype=np.float32) * 1.5
    for xor_kind, lane_arg, width in ((0, 1, 32), (0, 16, 32), (0, 3, 8), (1, 1, 32), (1, 16, 32), (1, 5, 8), (1, 12, 8)):
        out = np.full(64, np.nan, np.float32)
        probe((1,), (64,), (out, values, np.int32(xor_kind), np.int32(lane_arg), np.int32(width)))
        for warp in (0, 1):
            lanes = slice(32 * warp, 32 * warp + 32)
            np.testing.assert_array_equal(out[lanes], cuda_shuffle(values[lanes], xor_kind, lane_arg, width))


def test_broken_thread_leaving_before_a_barrier_is_caught():
    from cuda_on_cpu import KernelLaunchError

    probe = EmulatedModule(cached_library(probes=True)).get_function("early_exit_probe_f32")
    with pytest.raises(KernelLaunchError, match="1 threads exited while the others wait at __syncthreads"):
        probe((1,), (32,), (np.zeros(32, np.float32),))


def test_every_planted_mutation_still_matches_the_code_it_mutates():
    """The mutation script's list (python -m tests.cuda_on_cpu.mutate) cannot rot unnoticed."""
    import os

    from cuda_on_cpu.mutate import MUTANT_ENV, MUTATIONS, stale

    if os.environ.get(MUTANT_ENV):
        pytest.skip("a mutation is planted in this copy: its text is missing on purpose")

    assert stale() == []
    assert sum(not m.speed_only for m in MUTATIONS) >= 40
    assert len({(m.path, m.old, m.new) for m in MUTATIONS}) == len(MUTATIONS)
