"""``uv run python -m tests.cuda_on_cpu.mutate``: how many planted GPU bugs the CPU checks catch.

Each mutation below is one realistic bug in a kernel (``backends/cuda``) or
in the CuPy glue (``backends/cupy_kernels.py``, ``backends/cupy_step.py``),
with a line saying what it is. One at a time, in a scratch copy of the
repository, the mutation is planted and the CUDA tests run (the harness,
the kernels against float64 NumPy, the emulated CuPy backend against the
NumPy backend, the compile checks); a failing run has caught it. The kill
rate is caught / planted. Mutations that cost only speed are listed apart:
no numeric test can see them, only the compile checks (the PTX lint for
double precision) can.

    uv run python -m tests.cuda_on_cpu.mutate --jobs 2     # every mutation, two at a time: about 40 minutes on 2 cores
    uv run python -m tests.cuda_on_cpu.mutate --only 3,17  # a few, by number
    uv run python -m tests.cuda_on_cpu.mutate --list       # the list, nothing run
"""

import argparse
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Set while a mutation is planted: the check that the list matches the code skips itself then.
MUTANT_ENV = "XPNET_MUTANT"
TESTS = ("tests/test_cuda_harness.py", "tests/test_cuda_kernels.py", "tests/test_cupy_glue.py",
         "tests/test_cuda_compile.py")


@dataclass(frozen=True)
class Mutation:
    path: str
    old: str
    new: str
    what: str
    speed_only: bool = False


K = "backends/cuda/"
M = Mutation
MUTATIONS = (
    # xpnet.cuh: activations, random numbers, reductions
    M(K + "xpnet.cuh", "z > 0.0f ? z : z * XPNET_LEAKY_SLOPE", "z > 0.0f ? z * XPNET_LEAKY_SLOPE : z",
      "leaky ReLU's slope on the positive side"),
    M(K + "xpnet.cuh", "return z >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);",
      "return z >= 0.0f ? 1.0f / (1.0f + e) : 1.0f / (1.0f + e);", "sigmoid's stable branch for z < 0 wrong"),
    M(K + "xpnet.cuh", "case XPNET_TANH: return dy * (1.0f - y * y);", "case XPNET_TANH: return dy * (1.0f - y);",
      "tanh's derivative 1 - y instead of 1 - y^2"),
    M(K + "xpnet.cuh", "case XPNET_SIGMOID: return dy * y * (1.0f - y);", "case XPNET_SIGMOID: return dy * (1.0f - y);",
      "sigmoid's derivative missing a factor y"),
    M(K + "xpnet.cuh", "case XPNET_RELU: return dy * (z > 0.0f ? 1.0f : 0.0f);",
      "case XPNET_RELU: return dy * (z > 0.0f ? 1.0f : 0.01f);", "ReLU's backward leaks"),
    M(K + "xpnet.cuh", "    h ^= h >> 15;", "    h ^= h >> 13;", "the hash's middle shift differs from backends/random.py"),
    M(K + "xpnet.cuh", "return mix32(mix32(seed_hash ^ step) ^ (layer * 0x9E3779B9u));",
      "return mix32(mix32(seed_hash + step) ^ (layer * 0x9E3779B9u));", "stream key combines seed and step with +"),
    M(K + "xpnet.cuh", "return (float)(bits >> 8) * 5.9604644775390625e-8f;",
      "return (float)(bits >> 9) * 5.9604644775390625e-8f;", "uniforms from 23 bits: in [0, 0.5)"),
    M(K + "xpnet.cuh", "return uniform_from_counter(key, counter) < keep_prob ? inv_keep : 0.0f;",
      "return uniform_from_counter(key, counter) <= keep_prob ? inv_keep : 0.0f;", "dropout keeps u == keep (<=)"),
    M(K + "xpnet.cuh", "for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync",
      "for (int offset = 16; offset > 1; offset >>= 1) v += __shfl_xor_sync", "warp sum stops one shuffle early"),
    M(K + "xpnet.cuh", "v = fmaxf(v, __shfl_xor_sync(XPNET_FULL_MASK, v, offset));",
      "v = fminf(v, __shfl_xor_sync(XPNET_FULL_MASK, v, offset));", "warp max takes the minimum"),
    M(K + "xpnet.cuh", "        if (t < stride) buf[t] += buf[t + stride];\n        __syncthreads();\n",
      "        if (t < stride) buf[t] += buf[t + stride];\n", "block sum's tree without its barrier (a race)"),
    M(K + "xpnet.cuh", "if (t < stride) buf[t] += buf[t + stride];", "if (t <= stride) buf[t] += buf[t + stride];",
      "block sum's tree adds one element twice"),
    # batch.cu
    M(K + "batch.cu", "        step_u32[XPNET_SLOT] = slot;\n", "", "begin_step forgets the result slot"),
    M(K + "batch.cu", "x[i] = r < count ? x_all[(size_t)batch_idx[r] * cols + c] : 0.0f;",
      "x[i] = x_all[(size_t)batch_idx[r] * cols + c];", "padding rows of a partial batch not zeroed"),
    M(K + "batch.cu", "const int r = (int)(i / cols);\n        const int c = (int)(i % cols);",
      "const int r = (int)(i % cols);\n        const int c = (int)(i / cols);", "gather swaps row and column"),
    M(K + "batch.cu", "for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < count; i += gridDim.x * blockDim.x)",
      "for (int i = threadIdx.x; i < count; i += gridDim.x * blockDim.x)",
      "begin_step's grid-stride loop ignores the block index"),
    # activations.cu
    M(K + "activations.cu", "const float zi = z[i] + b[i % cols];", "const float zi = z[i] + b[i / cols];",
      "bias indexed by row instead of column"),
    M(K + "activations.cu", "if (dropout) a[i] = yi * dropout_scale(", "if (dropout) a[i] = zi * dropout_scale(",
      "dropout applied to the pre-activation"),
    M(K + "activations.cu", "if (dropout) a[i] = yi * dropout_scale(key, (unsigned)i, keep_prob, inv_keep);",
      "if (dropout) a[i] = yi * dropout_scale(key, (unsigned)(i % cols), keep_prob, inv_keep);",
      "the dropout mask repeats every row (counter per column)"),
    M(K + "activations.cu", "            partial += d;", "            partial += g;", "bias gradient sums before the activation's derivative"),
    M(K + "activations.cu", "if (dropout) g = g * dropout_scale(key, (unsigned)i, keep_prob, inv_keep);",
      "if (dropout) g = g * dropout_scale(key, (unsigned)i + 1u, keep_prob, inv_keep);",
      "backward recomputes another mask than the forward drew"),
    M(K + "activations.cu", "    smem[threadIdx.y * blockDim.x + threadIdx.x] = partial;\n    __syncthreads();\n",
      "    smem[threadIdx.y * blockDim.x + threadIdx.x] = partial;\n",
      "column sums read before the other rows wrote them (missing barrier)"),
    M(K + "activations.cu", "for (int r = threadIdx.y; r < rows; r += blockDim.y)", "for (int r = threadIdx.y; r < rows; r += 1)",
      "backward's row stride counts rows several times"),
    M(K + "activations.cu", "mask[i] = uniform_from_counter(key, (unsigned)i) < keep_prob ? 1.0f : 0.0f;",
      "mask[i] = uniform_from_counter(key, (unsigned)i + 1u) < keep_prob ? 1.0f : 0.0f;",
      "keep_mask off by one counter"),
    M(K + "activations.cu", "        for (int k = 0; k < (int)blockDim.y; ++k) total += smem[k * blockDim.x + threadIdx.x];\n"
      "        db[col] = total;\n    }\n",
      "        db[col] = 0.0f;\n    }\n    __syncthreads();\n    if (col < cols) db[col] += partial;\n",
      "bias gradient summed by a plain += from every thread row (needs an atomic)"),
    # losses.cu
    M(K + "losses.cu", "if (other > best || (other == best && other_index < best_index)) {",
      "if (other > best || (other == best && other_index > best_index)) {", "argmax ties take the last index"),
    M(K + "losses.cu", "if (r >= count) {  // padding", "if (r > count) {  // padding", "the first padding row counted"),
    M(K + "losses.cu", "            if (z[k] > best) { best = z[k]; best_index = k; }",
      "            if (z[k] >= best) { best = z[k]; best_index = k; }", "a lane's own argmax ties take the later class"),
    M(K + "losses.cu", "dz[k] = (p - (k == label ? 1.0f : 0.0f)) / (float)count;",
      "dz[k] = (p - (k == label ? 1.0f : 0.0f)) / (float)rows;", "cross-entropy averaged over padded rows"),
    M(K + "losses.cu", "return logf(sum) - (z[label] - zmax);", "return logf(sum) - z[label];",
      "cross-entropy loss forgets the max shift"),
    M(K + "losses.cu", "                         dot += g * out;", "                         dot += g;",
      "MSE through softmax: the dot product misses p"),
    M(K + "losses.cu", "(float)(2.0 / ((double)count * (double)classes))",
      "(float)(2.0 / ((double)rows * (double)classes))", "MSE scale over padded rows"),
    M(K + "losses.cu", "for (int r = threadIdx.x; r < rows && r < count; r += blockDim.x) {",
      "for (int r = threadIdx.x; r < rows; r += blockDim.x) {", "loss sum includes padding rows"),
    M(K + "losses.cu", "(l1 * abs_sum + 0.5f * l2 * square_sum)", "(l1 * abs_sum + l2 * square_sum)",
      "L2 penalty without its 1/2"),
    M(K + "losses.cu", "if (advance_t) adam_t[0] += 1.0f;", "if (advance_t) adam_t[0] = 1.0f;",
      "Adam's step counter reset instead of advanced"),
    # optimizers.cu
    M(K + "optimizers.cu", "extra = extra + l1 * (float)((w > 0.0f) - (w < 0.0f));",
      "extra = extra + l1 * (w >= 0.0f ? 1.0f : -1.0f);", "L1 pushes an exactly-zero weight"),
    M(K + "optimizers.cu", "direction = nesterov ? g + momentum * v : v;", "direction = nesterov ? momentum * v : v;",
      "Nesterov forgets the gradient term"),
    M(K + "optimizers.cu", "            velocity[i] = v;\n", "", "momentum never stores its velocity"),
    M(K + "optimizers.cu", "one_minus_beta2 * (g * g)", "one_minus_beta2 * g", "Adam's second moment of g, not g^2"),
    M(K + "optimizers.cu", "const float t = adam_t[0] + 1.0f;", "const float t = adam_t[0];",
      "Adam's bias correction one step behind"),
    M(K + "optimizers.cu", "(sqrtf(vi * v_scale) + eps)", "sqrtf(vi * v_scale + eps)", "eps inside the square root"),
    M(K + "optimizers.cu", "    if (!is_weight) return step;\n", "", "weight decay and penalties on the biases too"),
    M(K + "optimizers.cu", "penalty_partials[2 * blockIdx.x + 1] = square_sum;", "penalty_partials[2 * blockIdx.x] = square_sum;",
      "penalty partials written to the wrong slot"),
    M(K + "optimizers.cu", "    abs_sum = block_sum(abs_sum, smem);\n    square_sum = block_sum(square_sum, smem);\n"
      "    if (threadIdx.x == 0) {\n        penalty_partials[2 * blockIdx.x] = abs_sum;\n"
      "        penalty_partials[2 * blockIdx.x + 1] = square_sum;\n    }\n",
      "    if (threadIdx.x == 0) penalty_partials[2 * blockIdx.x] = penalty_partials[2 * blockIdx.x + 1] = 0.0f;\n"
      "    __syncthreads();\n    penalty_partials[2 * blockIdx.x] += abs_sum;\n"
      "    penalty_partials[2 * blockIdx.x + 1] += square_sum;\n",
      "penalty partials summed by a plain += from every thread (needs an atomic)"),
    # sgemm.cu
    # (Not listed: dropping B's `value = 0.0f` before its edge load is an equivalent mutant. A's slice
    # is zero past K and columns past N are never stored, so what leaks into B's padding multiplies 0.)
    M(K + "sgemm.cu", "if (gn < N && gk2 < K) value", "if (gn < N) value", "B read past K at the edge"),
    M(K + "sgemm.cu", "if (gm < M && gk < K) value", "if (gm < M) value", "A read past K at the edge"),
    M(K + "sgemm.cu", "        }\n        __syncthreads();\n    }\n", "        }\n    }\n",
      "next slice overwrites the tiles while others still read them (missing barrier)"),
    M(K + "sgemm.cu", "TRANS_A ? A[(size_t)gk * M + gm]", "TRANS_A ? A[(size_t)gk * K + gm]", "A^T read with the wrong pitch"),
    M(K + "sgemm.cu", "if (m < M && n < N) C[", "if (m < M) C[", "C written past N"),
    # augment.cu
    M(K + "augment.cu", "const float k = (u[2] * 2.0f - 1.0f) * shear;", "const float k = (u[1] * 2.0f - 1.0f) * shear;",
      "shear drawn from the rotation's uniform"),
    M(K + "augment.cu", "aug_pixel(stroked, iy, ix + 1) * fx", "aug_pixel(image, iy, ix + 1) * fx",
      "one bilinear tap reads the image before the stroke change"),
    M(K + "augment.cu", "src_x = fminf(fmaxf(src_x, -1.0f), (float)AUG_SIDE);", "src_x = fminf(fmaxf(src_x, 0.0f), (float)AUG_SIDE);",
      "coordinates clipped at 0: the left edge smears inwards"),
    M(K + "augment.cu", "    }\n    __syncthreads();\n\n    // Per-sample parameters", "    }\n\n    // Per-sample parameters",
      "image read by neighbours before it is loaded (missing barrier)"),
    M(K + "augment.cu", "return (r >= 0 && r < AUG_SIDE && c >= 0 && c < AUG_SIDE)", "return (r >= 0 && r < AUG_SIDE && c >= 0)",
      "a missing bounds check: a pixel past the right edge reads the next row"),
    M(K + "augment.cu", "(basis[j * modes + l] * alpha)", "(basis[j * modes + l])", "the elastic field without alpha"),
    M(K + "augment.cu", "uniform_from_counter(field_key, (unsigned)(r * noise_size + q))",
      "uniform_from_counter(field_key, (unsigned)q)", "every image of a batch gets the same field"),
    # the CuPy glue
    M("backends/cupy_kernels.py", "numpy.float32(keep_prob), numpy.float32(1.0 / keep_prob))\n        return self.launch(\"bias_act_forward_f32\"",
      "numpy.float32(keep_prob), numpy.float32(keep_prob))\n        return self.launch(\"bias_act_forward_f32\"",
      "inverted dropout's scale passed as p instead of 1/p"),
    M("backends/cupy_kernels.py", "shared_mem=block[0] * block[1] * 4)", "shared_mem=block[0] * 4)",
      "act_backward launched with one row of shared memory"),
    M("backends/cupy_kernels.py", "shared_mem=2 * block * 4)", "shared_mem=block * 4)",
      "loss_finalize launched with half its shared memory"),
    M("backends/cupy_kernels.py", "grid = (math.ceil(n / SGEMM_TILE), math.ceil(m / SGEMM_TILE))",
      "grid = (math.ceil(m / SGEMM_TILE), math.ceil(n / SGEMM_TILE))", "sgemm grid with M and N swapped"),
    M("backends/cupy_kernels.py", "numpy.uint32(step_no & 0xFFFFFFFF)", "numpy.uint32(step_no & 0xFFFF)",
      "step number cut to 16 bits"),
    M("backends/cupy_kernels.py", "numpy.float32(math.log(beta1)), numpy.float32(math.log(beta2))",
      "numpy.float32(math.log(beta2)), numpy.float32(math.log(beta1))", "Adam's two log betas swapped"),
    M("backends/cupy_step.py", "        slot = self.calls % RING\n", "        slot = 0\n",
      "every step writes its loss to the same slot"),
    M("backends/cupy_step.py", "or self.plan_key != (id(x_all), id(y_all))", "",
      "the plan (and graph) kept for new training data"),
    # speed only: no number changes
    M(K + "xpnet.cuh", "#define XPNET_LEAKY_SLOPE 0.01f", "#define XPNET_LEAKY_SLOPE 0.01",
      "a double literal: leaky ReLU computed in double", speed_only=True),
    # (exp for expf and sqrt for sqrtf are no such bug: CUDA's float overloads take a float argument.)
    M(K + "xpnet.cuh", "return z >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);",
      "return z >= 0.0f ? 1.0 / (1.0f + e) : e / (1.0f + e);", "a double literal: sigmoid divided in double",
      speed_only=True),
    M(K + "losses.cu", "(l1 * abs_sum + 0.5f * l2 * square_sum)", "(l1 * abs_sum + 0.5 * l2 * square_sum)",
      "a double literal: the L2 penalty in double", speed_only=True),
    M(K + "sgemm.cu", "#define SGEMM_PITCH (SGEMM_TILE + 1)", "#define SGEMM_PITCH (SGEMM_TILE)",
      "sgemm tiles without the padding column (bank conflicts)", speed_only=True),
)


def scratch_copy(folder):
    """The tracked files of the repository (as they are now, edits included), copied into ``folder``."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in files.decode().split("\0"):
        if not name or not (ROOT / name).is_file():
            continue
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)


def stale(root=ROOT):
    """The mutations whose text does not occur exactly once in their file (the code moved on)."""
    return [m for m in MUTATIONS if (root / m.path).read_text().count(m.old) != 1]


def plant(folder, mutation):
    path = folder / mutation.path
    text = path.read_text()
    path.write_text(text.replace(mutation.old, mutation.new))
    return text


def run_tests(folder, timeout, mutant=""):
    """(True when the CUDA tests fail, i.e. the mutation is caught; the first failure)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", MUTANT_ENV: mutant}
    try:
        result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *TESTS],
                                cwd=folder, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return True, "timed out (a hang counts as caught)"
    failed = [line for line in result.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    if failed:
        return result.returncode != 0, failed[0]
    return result.returncode != 0, (result.stdout.strip().splitlines() or [""])[-1]


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tests.cuda_on_cpu.mutate", description=__doc__.splitlines()[0])
    p.add_argument("--only", default=None, metavar="N,N", help="numbers of the mutations to run (default: all)")
    p.add_argument("--list", action="store_true", help="print the mutations and stop")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    p.add_argument("--timeout", type=int, default=900, help="seconds for one test run")
    p.add_argument("--jobs", type=int, default=1, help="mutations tested at once, each in a copy of its own")
    args = p.parse_args(argv)
    outdated = stale()
    if outdated:
        raise SystemExit("mutations whose text is not in their file exactly once (update the list): "
                         + "; ".join(m.what for m in outdated))
    numbered = list(enumerate(MUTATIONS, 1))
    if args.only:
        wanted = {int(n) for n in args.only.split(",")}
        numbered = [(n, m) for n, m in numbered if n in wanted]
    if args.list:
        for n, m in numbered:
            print(f"{n:3d} {'speed ' if m.speed_only else ''}{m.path}: {m.what}")
        return 0
    with tempfile.TemporaryDirectory(prefix="xpnet-mutate-") as tmp:
        folders = [Path(tmp) / f"copy{j}" for j in range(args.jobs)]
        for folder in folders:
            scratch_copy(folder)
        caught, why = run_tests(folders[0], args.timeout)
        if caught:
            raise SystemExit(f"the CUDA tests fail before any mutation ({why}): fix them first")
        free = queue.Queue()
        for folder in folders:
            free.put(folder)

        def one(item):
            n, mutation = item
            folder = free.get()
            try:
                started = time.perf_counter()
                original = plant(folder, mutation)
                try:
                    caught, why = run_tests(folder, args.timeout, mutant=str(n))
                finally:
                    (folder / mutation.path).write_text(original)
            finally:
                free.put(folder)
            row = {"number": n, "path": mutation.path, "what": mutation.what, "speed_only": mutation.speed_only,
                   "caught": caught, "by": why, "seconds": round(time.perf_counter() - started, 1)}
            print(f"{n:3d} {'caught  ' if caught else 'SURVIVED'} {mutation.path}: {mutation.what}"
                  f"{'  [speed only]' if mutation.speed_only else ''}  ({why[:90]})", flush=True)
            return row

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(one, numbered))
    for label, rows in (("bugs", [r for r in results if not r["speed_only"]]),
                        ("speed-only", [r for r in results if r["speed_only"]])):
        if rows:
            killed = sum(r["caught"] for r in rows)
            print(f"{label}: {killed} of {len(rows)} caught, kill rate {killed / len(rows):.0%}")
    if args.json:
        from nn.files import atomic_write_json

        atomic_write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
