"""Every .cu file compiles for real GPUs, with no register spills and no warning.

Two compilers: NVRTC, what ``cupy.RawModule`` runs at first use, for
sm_75, sm_80 and sm_90 with the options CuPy compiles with (through
``cupy.cuda.nvrtc`` where CuPy is installed, else through ctypes from the
``nvidia-cuda-nvrtc`` wheel of the dev group, which is how CI runs it); and
``nvcc -cubin -Xptxas -v`` for sm_75 and sm_90, whose ptxas report is read
for spills. Either skips with the reason where it is missing.
"""

import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from backends.cupy_kernels import HEADER, KERNEL_DIR, KERNEL_FILES, NVRTC_OPTIONS, kernel_names, kernel_source, read_source

NVRTC_ARCHS = ("sm_75", "sm_80", "sm_90")
NVCC_ARCHS = ("sm_75", "sm_90")


def nvrtc_module():
    try:
        from cupy.cuda import nvrtc
    except ImportError:
        from tests.cuda_on_cpu.nvrtc import Nvrtc

        try:
            nvrtc = Nvrtc()
        except OSError as exc:
            pytest.skip(f"neither CuPy nor libnvrtc here ({exc})")
    try:
        nvrtc.getVersion()
    except Exception as exc:
        pytest.skip(f"NVRTC is not loadable ({type(exc).__name__}): install nvidia-cuda-nvrtc for your CUDA")
    return nvrtc


def nvcc_path():
    candidates = [shutil.which("nvcc")]
    candidates += [str(Path(os.environ[v]) / "bin" / "nvcc") for v in ("CUDA_HOME", "CUDA_PATH") if v in os.environ]
    candidates += ["/usr/local/cuda/bin/nvcc"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("nvcc not found (PATH, CUDA_HOME, the default CUDA folder): no nvcc compile check here")


def nvrtc_build(nvrtc, source, name, arch):
    """(CUBIN or None, problem or None): NVRTC's error, or its log when that warns (warnings count as errors)."""
    program = nvrtc.createProgram(source, name, [read_source(HEADER).encode()], [HEADER.encode()])
    try:
        try:
            nvrtc.compileProgram(program, [*NVRTC_OPTIONS, f"-arch={arch}"])
        except nvrtc.NVRTCError as exc:
            return None, f"NVRTC {arch} {name}: {exc}\n{nvrtc.getProgramLog(program)}"
        log = nvrtc.getProgramLog(program)
        if "warning" in log.lower():
            return None, f"NVRTC {arch} {name} warns:\n{log}"
        return nvrtc.getCUBIN(program), None
    finally:
        nvrtc.destroyProgram(program)


def nvrtc_compile(nvrtc, source, name, arch):
    cubin, problem = nvrtc_build(nvrtc, source, name, arch)
    if problem:
        pytest.fail(problem)
    return cubin


# Bugs that only NVRTC sees: nvcc compiles each file alone, with the host's headers.
NVRTC_ONLY_BUGS = {
    "a host-only macro": ("case XPNET_RELU: return z > 0.0f ? z : 0.0f;",
                          "case XPNET_RELU: return z > 0.0f ? z : -INFINITY;", "INFINITY"),
    "smem declared in a C++ helper too": (
        "extern \"C\" __global__ void sgemm_nn_f32(",
        "__device__ float* shared_too() { extern __shared__ float smem[]; return smem; }\n"
        "extern \"C\" __global__ void sgemm_nn_f32(", "linkage"),
}


@pytest.mark.parametrize("bug", sorted(NVRTC_ONLY_BUGS))
def test_nvrtc_refuses_a_planted_bug_of_its_kind(bug):
    nvrtc = nvrtc_module()
    old, new, needle = NVRTC_ONLY_BUGS[bug]
    source = kernel_source()
    assert old in source, old
    cubin, problem = nvrtc_build(nvrtc, source.replace(old, new, 1), "xpnet_kernels.cu", "sm_90")
    assert cubin is None and needle.lower() in problem.lower(), problem


@pytest.mark.parametrize("arch", NVRTC_ARCHS)
@pytest.mark.parametrize("name", KERNEL_FILES)
def test_each_file_compiles_with_nvrtc(name, arch):
    nvrtc = nvrtc_module()
    assert len(nvrtc_compile(nvrtc, read_source(name), name, arch)) > 0


@pytest.mark.parametrize("arch", NVRTC_ARCHS)
def test_the_module_cupy_loads_compiles_with_nvrtc(arch):
    """The one translation unit cupy.RawModule compiles, with all entry points."""
    nvrtc = nvrtc_module()
    cubin = nvrtc_compile(nvrtc, kernel_source(), "xpnet_kernels.cu", arch)
    for name in kernel_names():
        assert name.encode() in cubin, name


_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(sm_\d+)'")
_SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
_REGISTERS = re.compile(r"Used (\d+) registers")


def _per_kernel(text, pattern):
    """{kernel: the groups of ``pattern``'s first match after its entry line} from ``ptxas -v`` output."""
    found, current = {}, None
    for line in text.splitlines():
        entry = _ENTRY.search(line)
        if entry:
            current = entry.group(1)
        match = pattern.search(line)
        if match and current is not None:
            found[current] = tuple(int(g) for g in match.groups())
            current = None
    return found


def ptxas_registers(text):
    """{kernel: registers per thread} from ``ptxas -v`` output."""
    return {kernel: used for kernel, (used,) in _per_kernel(text, _REGISTERS).items()}


def ptxas_report(text):
    """{kernel: (spill store bytes, spill load bytes)} from ``ptxas -v`` output."""
    return _per_kernel(text, _SPILLS)


def test_ptxas_report_parser_sees_spills():
    text = ("ptxas info    : Compiling entry function 'a_f32' for 'sm_90'\n"
            "ptxas info    : Function properties for a_f32\n"
            "    8 bytes stack frame, 12 bytes spill stores, 16 bytes spill loads\n")
    assert ptxas_report(text) == {"a_f32": (12, 16)}


@pytest.mark.parametrize("arch", NVCC_ARCHS)
@pytest.mark.parametrize("name", KERNEL_FILES)
def test_each_file_compiles_with_nvcc_without_spills(name, arch, tmp_path):
    nvcc = nvcc_path()
    result = subprocess.run(
        [nvcc, "-cubin", f"-arch={arch}", "-Xptxas", "-v", "-ftz=true", f"-I{KERNEL_DIR}",
         "-o", str(tmp_path / "out.cubin"), str(KERNEL_DIR / name)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = ptxas_report(result.stderr + result.stdout)
    assert set(report) == set(kernel_names(read_source(name))), report
    spilled = {kernel: spills for kernel, spills in report.items() if spills != (0, 0)}
    assert not spilled, f"register spills (store, load bytes) for {arch}: {spilled}"


def nvcc_cubin_report(nvcc, arch, tmp_path, source=None):
    """ptxas -v's report for the whole module (``source``: a replacement text of it)."""
    path = tmp_path / "xpnet_kernels.cu"
    path.write_text(source or kernel_source())
    result = subprocess.run([nvcc, "-cubin", f"-arch={arch}", "-Xptxas", "-v", "-ftz=true", "-o",
                             str(tmp_path / "out.cubin"), str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stderr + result.stdout


REGISTER_FILE = 65536  # 32-bit registers per SM (and per block), sm_75 to sm_90


def block_fits(registers, threads):
    """Whether a block of ``threads`` threads launches at ``registers`` per thread: registers are
    given out in units of 8 per thread and whole warps (a 1024-thread block allows 64)."""
    return registers <= 255 and math.ceil(registers / 8) * 8 * math.ceil(threads / 32) * 32 <= REGISTER_FILE


def blocks_the_backend_launches():
    """{kernel: thread counts per block}, recorded from training runs of the CuPy backend's code."""
    import numpy as np

    import nn
    from cuda_on_cpu import EmulatedKernel
    from nn.augment import Augment
    from test_cupy_glue import CONFIGS, emulated_backend, train

    seen = {}
    launch = EmulatedKernel.__call__

    def record(kernel, grid, block, args, **kw):
        dims = (block,) if isinstance(block, int) else tuple(block)
        seen.setdefault(kernel.name, set()).add(math.prod(dims))
        return launch(kernel, grid, block, args, **kw)

    EmulatedKernel.__call__ = record
    try:
        for config in CONFIGS:
            train(emulated_backend(), config)
        rng = np.random.default_rng(0)
        x, y = rng.random((40, 784), dtype=np.float32), rng.integers(0, 10, 40).astype(np.int32)
        nn.fit(emulated_backend(), nn.MLP(sizes=(784, 12, 10)), nn.Adam(), nn.Schedule("constant", 0.01, 1), x, y,
               epochs=1, batch_size=16, seed=2, augment=Augment("elastic"))
        emulated_backend().keep_mask(0, 1, 0, (5, 7), 0.5, np.float32)
    finally:
        EmulatedKernel.__call__ = launch
    return seen


@pytest.fixture(scope="module")
def launched_blocks():
    return blocks_the_backend_launches()


@pytest.mark.parametrize("arch", NVCC_ARCHS)
def test_every_block_the_backend_launches_fits_the_kernels_registers(arch, tmp_path, launched_blocks):
    registers = ptxas_registers(nvcc_cubin_report(nvcc_path(), arch, tmp_path))
    assert set(launched_blocks) <= set(registers) and len(launched_blocks) >= 10, launched_blocks
    too_big = {(k, t, registers[k]) for k, counts in launched_blocks.items() for t in counts
               if not block_fits(registers[k], t)}
    assert not too_big, f"{arch}: (kernel, threads per block, registers) that would not launch: {too_big}"


def test_the_register_check_refuses_a_block_too_big_for_its_registers():
    assert block_fits(64, 1024) and not block_fits(65, 1024) and block_fits(255, 256) and not block_fits(256, 32)
    assert block_fits(72, 896) and not block_fits(73, 896)


# A global array indexed by a product of two run-time values needs 64-bit arithmetic: rows x cols
# passes 2^31 at 784 inputs and 2.8 million rows, which a dataset on the device can have.
_PARAM = re.compile(r"(?:const )?(?:float|int|unsigned)\* (\w+)")
_PRODUCT = re.compile(r"\b[a-z_]\w*(?:\[[^\]]*\])? \* [a-z_]\w*")


# Pointer parameters whose whole extent is a compile-time size, so no product indexing them can overflow.
BOUNDED_PARAMS = {"basis": "the elastic field's basis: 28 x modes floats, modes <= 28"}


def unwidened_products(source):
    """Lines where a kernel's pointer parameter is indexed or offset by ``a * b`` without (size_t)."""
    found = []
    for kernel in re.finditer(r'extern "C" __global__ void \w+\(([^)]*)\)', source):
        for name in set(_PARAM.findall(kernel.group(1))) - set(BOUNDED_PARAMS):
            for line in source.splitlines():
                code = line.split("//", 1)[0]
                for use in re.finditer(rf"\b{name}(?:\[([^;]*)\]| \+ ([^;,)]*))", code):
                    index = use.group(1) or use.group(2) or ""
                    if _PRODUCT.search(index) and "(size_t)" not in index:
                        found.append(line.strip())
    return sorted(set(found))


def test_global_indices_from_products_are_64_bit():
    assert unwidened_products(kernel_source()) == []


def test_the_index_check_sees_a_product_left_in_32_bits():
    source = kernel_source()
    widened = "x_all[(size_t)batch_idx[r] * cols + c]"
    assert widened in source
    assert unwidened_products(source.replace(widened, "x_all[batch_idx[r] * cols + c]")) == [
        "x[i] = r < count ? x_all[batch_idx[r] * cols + c] : 0.0f;"]


# PTX instructions on doubles: a literal without its f suffix (0.01 for 0.01f) or a double
# function (exp for expf) promotes a float expression to double precision, which costs a
# consumer GPU 32-64x and changes no number a test compares. Where a kernel does it on
# purpose, the number of such instructions is listed here with the reason: one more fails.
F64_ALLOWED = {
    "losses.cu": (6, "mse_f32's 2 / (N K), rounded once from double as NumPy rounds a Python float"),
    "augment.cu": (6, "cosf/sinf's slow argument reduction (|x| > 105615), never taken for angles up to 90 degrees"),
}
_F64 = re.compile(r"\.f64\b")


def f64_instructions(ptx):
    """The instructions of a PTX listing that compute or convert in double precision."""
    code = (line.split("//", 1)[0].strip() for line in ptx.splitlines())
    return [line for line in code if _F64.search(line) and not line.startswith(".reg")]


def _ptx(nvcc, source_path, include, tmp_path):
    out = tmp_path / "out.ptx"
    result = subprocess.run([nvcc, "-ptx", "-arch=sm_90", "-ftz=true", f"-I{include}", "-o", str(out),
                             str(source_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return out.read_text()


@pytest.mark.parametrize("name", KERNEL_FILES)
def test_no_kernel_computes_in_double_precision_unless_listed(name, tmp_path):
    found = f64_instructions(_ptx(nvcc_path(), KERNEL_DIR / name, KERNEL_DIR, tmp_path))
    allowed, reason = F64_ALLOWED.get(name, (0, ""))
    assert len(found) == allowed, f"{name}: {len(found)} double-precision instructions, {allowed} expected: {found}"


def test_the_double_precision_lint_sees_a_literal_without_its_suffix(tmp_path):
    shutil.copytree(KERNEL_DIR, tmp_path / "cuda")
    header = tmp_path / "cuda" / HEADER
    text = header.read_text()
    assert "#define XPNET_LEAKY_SLOPE 0.01f" in text
    header.write_text(text.replace("#define XPNET_LEAKY_SLOPE 0.01f", "#define XPNET_LEAKY_SLOPE 0.01"))
    found = f64_instructions(_ptx(nvcc_path(), tmp_path / "cuda" / "activations.cu", tmp_path / "cuda", tmp_path))
    assert any("mul" in line and ".f64" in line for line in found), found
