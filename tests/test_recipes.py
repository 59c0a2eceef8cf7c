"""benchmarks.recipes: each published row is a train.py command; the table is what those runs measured.
The augmentation-cost and busy-machine scripts run train.py the same way."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import recipes
from tests.digits import write_digits

ROOT = Path(__file__).resolve().parent.parent


def test_every_recipe_is_a_valid_train_py_command():
    from cli.train_args import augment_from_args, build_parser

    for recipe in recipes.RECIPES:
        args = build_parser().parse_args(recipes.command(recipe, recipe.epochs)[1:])
        augment = augment_from_args(args)
        assert args.hidden == [int(n) for n in recipe.flags[1].split(",")]
        assert augment.kind == recipe.flags[3]
    simard = augment_from_args(build_parser().parse_args(
        recipes.command(recipes.RECIPES[2], 1)[1:]))
    assert (simard.sigma, simard.alpha) == (4.0, 34.0)  # Simard's published field


def test_a_recipe_run_writes_the_table_from_its_metrics(tmp_path):
    data = write_digits(tmp_path / "digits", n_train=5300)
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.recipes", "--only", "simard-affine", "--epochs", "1", "--backend", "numpy",
         "--data", str(data), "--out", str(tmp_path / "out")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "out" / "recipes.json").read_text())
    metrics = json.loads((tmp_path / "out" / "simard-affine.json").read_text())
    assert rows[0]["error_percent"] == pytest.approx(100 * (1 - metrics["test_accuracy"]), abs=1e-3)
    assert rows[0]["epochs"] == 1 and metrics["args"]["augment"] == "affine" and metrics["model"]["sizes"][1] == 800
    assert "| Simard et al. 2003, 784-800-10 CE, affine | 1.10% |" in (tmp_path / "out" / "recipes.md").read_text()


def test_an_unknown_recipe_is_one_line_exit_2():
    result = subprocess.run([sys.executable, "-m", "benchmarks.recipes", "--only", "lenet"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "lenet" in result.stderr


def test_augment_cost_times_plain_and_augmented_epochs(tmp_path):
    from benchmarks.augment_cost import epoch_seconds

    data = write_digits(tmp_path / "digits", 5200, 10)
    for augment in ("none", "elastic"):
        assert epoch_seconds("numpy", "8", augment, 2, str(data)) > 0


def test_augment_cost_times_one_batch_on_each_path():
    from benchmarks.augment_cost import batch_microseconds

    timed = batch_microseconds(["numpy"], repeats=3)
    assert len(timed) == 2 and all(us > 0 for us in timed.values())


def test_the_busy_benchmark_times_idle_and_busy_and_stops_its_load(tmp_path, monkeypatch):
    import benchmarks.busy as busy

    data = write_digits(tmp_path / "digits", 5200, 10)
    loads = []
    start = busy.start_busy_loop
    monkeypatch.setattr(busy, "start_busy_loop", lambda: loads.append(start()) or loads[-1])
    out = tmp_path / "busy.json"
    assert busy.main(["--hidden", "8", "--epochs", "2", "--rounds", "2", "--data", str(data), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    cores = os.cpu_count() or 1
    assert [(r["machine"], r["threads"]) for r in rows] == [
        ("idle", "auto"), ("idle", f"--threads {cores}"), ("busy", "auto"), ("busy", f"--threads {cores}")]
    assert rows[1]["chosen"] == rows[3]["chosen"] == cores
    assert all(1 <= r["chosen"] <= cores and r["epoch_s"] == min(r["rounds_s"]) > 0 for r in rows)
    assert all(len(r["rounds_s"]) == 2 for r in rows)
    assert len(loads) == 2 and all(load.poll() is not None for load in loads)  # a load each round, each gone
