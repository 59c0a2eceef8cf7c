"""The parent process: one child per (variant, phase), one after another.

Phases run in order (every variant's speed, then every variant's accuracy,
then the sweeps), so the rows of one table are measured close together in
time. Children print "tick" per unit of work, which moves the progress bar,
and write their measurements as JSON; this module gathers them into rows.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from backends import XpnetError, unavailable_reason

from .variants import REFERENCE

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("speed", "accuracy", "sweep")
TORCH_PYTHON_ENV = "XPNET_TORCH_PYTHON"
TORCH_HINT = f"pass --torch-python PATH or set {TORCH_PYTHON_ENV} to a Python that has torch"


@dataclass(frozen=True)
class Settings:
    speed_epochs: int  # the first one is the warm-up
    infer_repeats: int
    test_set_repeats: int
    matmul_n: int
    matmul_repeats: int
    accuracy_epochs: tuple
    widths: tuple
    batches: tuple
    sweep_steps: int  # timed steps per sweep "epoch"
    sweep_repeats: int  # timed "epochs" per sweep point, after one warm-up
    # Every variant's speed phase runs once per round, in turn; a row keeps its fastest
    # round, so a burst of outside load during one round does not decide a ratio.
    speed_rounds: int = 1


FULL = Settings(6, 1000, 10, 4096, 5, (5, 15), (64, 128, 256, 512, 1024, 2048, 4096),
                (32, 64, 128, 256, 512, 1024, 2048, 4096), 30, 3, speed_rounds=3)
QUICK = Settings(3, 200, 3, 2048, 3, (5,), (64, 512, 4096), (32, 256, 4096), 5, 2, speed_rounds=3)


def units(settings, phase, variant):
    """How many ticks a phase's child prints, for the progress bar."""
    if phase == "speed":
        return settings.speed_epochs + 2
    if phase == "accuracy":
        # The PyTorch reference trains once, for the longest requested run.
        return max(settings.accuracy_epochs) if variant.is_torch else sum(settings.accuracy_epochs)
    return len(settings.widths) + len(settings.batches)


# -- where PyTorch lives ---------------------------------------------------------
def find_torch_python(flag):
    """(interpreter, None) for a Python that imports torch, or (None, why not)."""
    path = flag or os.environ.get(TORCH_PYTHON_ENV)
    if not path:
        if importlib.util.find_spec("torch") is None:
            return None, f"not installed ({TORCH_HINT})"
        path = sys.executable
    elif not (Path(path).is_file() or shutil.which(path)):
        source = "--torch-python" if flag else TORCH_PYTHON_ENV
        raise XpnetError(f"{source} {path}: no such interpreter; {TORCH_HINT}")
    try:
        subprocess.run([path, "-c", "import torch"], capture_output=True, timeout=120, check=True)
    except (OSError, subprocess.SubprocessError):
        return None, f"not installed ({path} cannot import torch; {TORCH_HINT})"
    return path, None


# -- data --------------------------------------------------------------------------
def export_data(data, val_size, folder):
    """Write the splits as raw little-endian arrays that NumPy and torch both read."""
    import nn

    x_train, y_train, x_val, y_val = nn.split_validation(data.x_train, data.y_train, val_size)
    splits = {"train": (x_train, y_train), "val": (x_val, y_val), "test": (data.x_test, data.y_test)}
    for name, (x, y) in splits.items():
        x.astype("<f4").tofile(folder / f"x_{name}.f32")
        y.astype("<i4").tofile(folder / f"y_{name}.i32")
    return {name: len(x) for name, (x, _) in splits.items()}


# -- children ------------------------------------------------------------------------
def run_child(python, module, spec, folder, bar):
    """Run one child to the end; its result dict, or {"status": "failed: ..."}."""
    tag = f"{spec['variant']['name']}-{spec['phase']}-{spec['round']}"
    spec_path, result_path, err_path = (folder / f"{tag}.{ext}" for ext in ("spec.json", "result.json", "stderr"))
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    expected = bar.n + spec["units"]
    started = time.perf_counter()
    with open(err_path, "w") as err:
        child = subprocess.Popen([python, "-m", module, str(spec_path), str(result_path)],
                                 cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        for line in child.stdout:
            if line.strip() == "tick" and bar.n < expected:
                bar.update(1)
        child.wait()
    bar.update(max(0, expected - bar.n))
    if child.returncode != 0 or not result_path.exists():
        lines = [line for line in err_path.read_text().splitlines() if line.strip()]
        return {"status": f"failed: {lines[-1] if lines else f'exit status {child.returncode}'}",
                "stderr_tail": lines[-20:]}
    result = json.loads(result_path.read_text())
    result["wall_seconds"] = time.perf_counter() - started
    return result


def run(variants, settings, data, *, seed, batch, sizes, val_size, torch, progress):
    """Every variant through every phase; returns (results by variant and phase, settings as JSON).

    ``torch`` is what ``find_torch_python`` found: (interpreter, None) or (None, why not).
    """
    from tqdm import tqdm

    torch_python, torch_missing = torch
    reasons = {}
    for v in variants:
        reasons[v.name] = torch_missing if v.is_torch else unavailable_reason(v.backend)
    config = {
        "seed": seed,
        "batch": batch,
        "sizes": list(sizes),
        "speed": {"rounds": settings.speed_rounds, "epochs": settings.speed_epochs,
                  "infer_repeats": settings.infer_repeats,
                  "test_set_repeats": settings.test_set_repeats, "matmul_n": settings.matmul_n,
                  "matmul_repeats": settings.matmul_repeats},
        "accuracy": {"epochs": list(settings.accuracy_epochs)},
        "sweep": {"widths": list(settings.widths), "batches": list(settings.batches),
                  "steps": settings.sweep_steps, "repeats": settings.sweep_repeats},
    }
    runnable = [v for v in variants if reasons[v.name] is None]
    jobs = [("speed", v, r) for r in range(settings.speed_rounds) for v in runnable]
    jobs += [(phase, v, 0) for phase in PHASES[1:] for v in runnable]
    results = {v.name: {} for v in variants}
    speed_rounds = {v.name: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="xpnet-bench-") as tmp:
        folder = Path(tmp)
        counts = export_data(data, val_size, folder)
        bar = tqdm(total=sum(units(settings, p, v) for p, v, _ in jobs), unit="step",
                   disable=not progress, dynamic_ncols=True, leave=False)
        with bar:
            for phase, v, round_no in jobs:
                bar.set_description(f"{v.name} {phase}" + (f" {round_no + 1}" if phase == "speed" else ""))
                spec = {**config, "phase": phase, "round": round_no, "variant": v.to_json(),
                        "data_dir": str(folder), "counts": counts, "units": units(settings, phase, v)}
                if v.is_torch:
                    result = run_child(torch_python, "benchmarks.torch_reference", spec, folder, bar)
                else:
                    result = run_child(sys.executable, "benchmarks.worker", spec, folder, bar)
                if phase == "speed":
                    speed_rounds[v.name].append(result)
                else:
                    results[v.name][phase] = result
    for v in runnable:
        results[v.name]["speed"] = fastest_round(speed_rounds[v.name])
    for v in variants:
        if reasons[v.name] is not None:
            status = reasons[v.name] if v.is_torch else f"unavailable: {reasons[v.name]}"
            results[v.name] = {phase: {"status": status} for phase in PHASES}
    config["counts"] = counts
    config["torch_python_found"] = torch_python is not None
    return results, config


def fastest_round(rounds):
    """The round with the lowest median epoch, with every round's headline numbers beside it.

    One-digit inference takes its own fastest round: a few microseconds a
    call, it is slowed by other moments of the machine than the epoch is.
    """
    done = [r for r in rounds if r.get("status") == "ok"]
    if not done:
        return rounds[0]
    best = min(done, key=lambda r: r["epoch_seconds_median"])
    one = min(done, key=lambda r: r["infer_one_us"]["median"])["infer_one_us"]
    summary = [{"epoch_seconds_median": r["epoch_seconds_median"],
                "infer_one_us_median": r["infer_one_us"]["median"]} for r in done]
    return {**best, "infer_one_us": one, "rounds": summary}


# -- rows ------------------------------------------------------------------------------
def _ratio(value, reference):
    return None if value is None or not reference else value / reference


def rows(variants, results):
    """One flat row per variant: what the table prints and the JSON keeps."""
    out = []
    for v in variants:
        speed, acc, sweep = (results[v.name].get(p, {}) for p in PHASES)
        ok = speed.get("status") == "ok"
        first_run = acc["runs"][0] if acc.get("status") == "ok" else {}
        row = {
            "variant": v.name,
            "backend": v.backend,
            "options": v.describe(),
            "status": speed.get("status", "not run"),
            "phase_status": {p: results[v.name].get(p, {}).get("status", "not run") for p in PHASES},
            "device": speed.get("device"),
            "speed_recipe": speed.get("recipe"),
            "epoch_seconds_median": speed.get("epoch_seconds_median"),
            "epoch_seconds_min": min(speed["epoch_seconds"]) if ok else None,
            "epoch_seconds_max": max(speed["epoch_seconds"]) if ok else None,
            "epoch_seconds": speed.get("epoch_seconds"),
            "speed_rounds": speed.get("rounds"),
            "first_epoch_seconds": speed.get("first_epoch_seconds"),
            "samples_per_second": speed.get("samples_per_second"),
            "infer_one_us_median": speed["infer_one_us"]["median"] if ok else None,
            "infer_test_set_ms_median": speed["infer_test_set_ms"]["median"] if ok else None,
            "test_accuracy": first_run.get("test_accuracy"),
            "accuracy_epochs": first_run.get("epochs"),
            "accuracy_recipe": first_run.get("recipe"),
            "accuracy_runs": acc.get("runs", []),
            "peak_rss_mib": speed.get("peak_rss_mib") if ok else None,
            "peak_rss_mib_by_phase": {p: results[v.name][p].get("peak_rss_mib") for p in PHASES
                                      if results[v.name].get(p, {}).get("status") == "ok"},
            "device_memory_mib": speed.get("device_memory_mib"),
            "matmul_gflops": speed.get("matmul_gflops"),
            "threads": speed.get("threads"),
            "versions": speed.get("versions"),
            "sweep": {k: sweep[k] for k in ("width", "batch")} if sweep.get("status") == "ok" else None,
            "phase_seconds": {p: results[v.name][p]["wall_seconds"] for p in PHASES
                              if "wall_seconds" in results[v.name].get(p, {})},
            "errors": {p: results[v.name][p]["stderr_tail"] for p in PHASES
                       if "stderr_tail" in results[v.name].get(p, {})},
        }
        out.append(row)
    reference = next((r for r in out if r["variant"] == REFERENCE), {})
    for row in out:
        row["epoch_ratio_to_torch"] = _ratio(row["epoch_seconds_median"], reference.get("epoch_seconds_median"))
        row["infer_one_ratio_to_torch"] = _ratio(row["infer_one_us_median"], reference.get("infer_one_us_median"))
    ceiling = max((r["matmul_gflops"] for r in out if r["matmul_gflops"]), default=None)
    for row in out:
        for point in (row["sweep"] or {}).get("width", []) + (row["sweep"] or {}).get("batch", []):
            point["fraction_of_ceiling"] = _ratio(point["gflops"], ceiling)
    return out, ceiling
