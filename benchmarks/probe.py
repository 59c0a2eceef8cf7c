"""What both kinds of child process share; standard library only.

The PyTorch reference imports this module from an interpreter that may have
nothing but torch, so NumPy and xpnet stay out of here.
"""

import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

# Accuracy thresholds whose wall time to reach is reported.
THRESHOLDS = (0.975, 0.98)


class Unsupported(Exception):
    """The variant asks for an option the installed code does not have."""


# -- measuring ----------------------------------------------------------------
def peak_rss_mib():
    """This process's peak resident set size (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def time_calls(fn, repeats, warmup=3, before=None):
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones; ``before``, when
    given, runs untimed ahead of every call.

    ``fn`` must return only once its work has finished (read back or synchronized).
    """
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        if before is not None:
            before()
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    return seconds


def speed_result(*, recipe, device, epoch_seconds, n_train, one_seconds, test_set_seconds, matmul_gflops,
                 device_memory_mib, threads, versions):
    """The speed phase's measurements, the same fields from every kind of child."""
    steady = epoch_seconds[1:]
    return {
        "recipe": recipe,
        "device": device,
        "first_epoch_seconds": epoch_seconds[0],
        "epoch_seconds": steady,
        "epoch_seconds_median": statistics.median(steady),
        "samples_per_second": n_train / statistics.median(steady),
        "infer_one_us": summary([s * 1e6 for s in one_seconds]),
        "infer_test_set_ms": summary([s * 1e3 for s in test_set_seconds]),
        "matmul_gflops": matmul_gflops,
        "device_memory_mib": device_memory_mib,
        "threads": threads,
        "versions": versions,
    }


def matmul_gflops(seconds, n):
    return 2 * n**3 / min(seconds) / 1e9


def training_flops_per_sample(sizes):
    """Multiply-adds of one training sample through dense layers ``sizes``, times 2.

    Forward 2*in*out per layer; backward 2*in*out for dW in every layer and
    2*in*out for dx in every layer but the first (nothing needs dx of the input).
    """
    pairs = list(zip(sizes[:-1], sizes[1:]))
    forward = sum(2 * i * o for i, o in pairs)
    backward = forward + sum(2 * i * o for i, o in pairs[1:])
    return forward + backward


def epoch_steps(n, batch):
    return math.ceil(n / batch)


def sweep_sizes(width):
    """The width sweep's model: 784-H-H/2-10, which is the default model at H = 128."""
    return (784, width, max(1, width // 2), 10)


def sweep_point(sizes, batch, n_train, step_seconds):
    """One sweep point from the seconds of one training step."""
    epoch_seconds = step_seconds * epoch_steps(n_train, batch)
    flops = training_flops_per_sample(sizes) * n_train
    return {
        "sizes": list(sizes),
        "batch": batch,
        "step_seconds": step_seconds,
        "epoch_seconds": epoch_seconds,
        "gflops": flops / epoch_seconds / 1e9,
    }


def accuracy_curve(epoch_seconds, test_accuracy):
    """[(epoch, wall seconds so far, test accuracy)], compile time included."""
    curve, elapsed = [], 0.0
    for epoch, (seconds, accuracy) in enumerate(zip(epoch_seconds, test_accuracy), start=1):
        elapsed += seconds
        curve.append({"epoch": epoch, "seconds": elapsed, "test_accuracy": accuracy})
    return curve


def time_to_reach(curve):
    """{"97.5": seconds or None} for each threshold: the first epoch at or above it."""
    reached = {}
    for threshold in THRESHOLDS:
        hit = next((p for p in curve if p["test_accuracy"] >= threshold), None)
        reached[f"{threshold * 100:.1f}"] = None if hit is None else hit["seconds"]
    return reached


# -- the machine --------------------------------------------------------------
def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def gpus():
    """GPU names from nvidia-smi, or [] when there is none."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def cpu_seconds():
    """(CPU seconds every process on the machine, and the hypervisor's other guests, have
    used since boot; CPU seconds of this process and its finished children), or None
    where /proc/stat is missing."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0])[:8]
    # Steal is time the hypervisor gave to other virtual machines: lost to this run all the same.
    machine_busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    own = sum(getattr(resource.getrusage(who), field)
              for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) for field in ("ru_utime", "ru_stime"))
    return machine_busy, own


def others_share(before, after, wall_seconds, cores):
    """The share of the machine's CPU capacity that other processes used between two ``cpu_seconds()``."""
    if before is None or after is None or wall_seconds <= 0:
        return None
    others = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, others / (wall_seconds * cores))


def load_average():
    """The 1, 5 and 15 minute load averages, or None where the OS has none."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def source_revision(root=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))):
    """The commit ``root`` (the project) is at, with " and uncommitted changes" where tracked files differ; None outside git.

    $XPNET_SOURCE_REVISION, where set, is taken instead: a copy of the tree whose git history is
    not its own (a lent GPU machine's was a day old) says which commit it is.
    """
    stated = os.environ.get("XPNET_SOURCE_REVISION", "").strip()
    if stated:
        return f"{stated} (as stated by XPNET_SOURCE_REVISION)"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                 capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + (" and uncommitted changes" if changed else "")


def machine():
    return {
        "cpu": cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_usable": usable_cores(),
        "arch": platform.machine(),
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "gpus": gpus(),
        "load_average_at_start": load_average(),
    }


def thread_env():
    """Environment variables that change thread counts, as they were for this run."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")
    return {name: os.environ[name] for name in names if name in os.environ}


# -- the child's side of the protocol ------------------------------------------
def tick():
    """One unit of work done: the parent's progress bar moves on."""
    print("tick", flush=True)


def child_main(run_phase):
    """``python -m benchmarks.<child> SPEC RESULT``: run one phase, write its JSON.

    ``run_phase(spec)`` returns the phase's measurements; the peak RSS of
    this whole process is added here, last.
    """
    spec_path, result_path = sys.argv[1:3]
    with open(spec_path) as f:
        spec = json.load(f)
    try:
        result = {"status": "ok", **run_phase(spec)}
    except Unsupported as exc:
        result = {"status": f"unsupported: {exc}"}
    result["peak_rss_mib"] = peak_rss_mib()
    with open(result_path, "w") as f:
        json.dump(result, f, allow_nan=False)
