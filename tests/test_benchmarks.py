"""benchmarks/: the JSON a run writes, the rows it cannot run, and its arithmetic.

One tiny end-to-end run (a 784-16-8-10 model on 600 random images, a child
process per phase) checks the document's shape; the PyTorch reference runs
only where $XPNET_TORCH_PYTHON names an interpreter that has torch.
"""

import json
import os

import numpy as np
import pytest

from backends import XpnetError
from benchmarks import __main__ as cli
from benchmarks import probe, report, runner, worker
from benchmarks.variants import Variant, select
from nn.data import Dataset

TINY = runner.Settings(
    speed_epochs=2, infer_repeats=3, test_set_repeats=1, matmul_n=64, matmul_repeats=1,
    accuracy_epochs=(1, 2), widths=(8, 32), batches=(16,), sweep_steps=2, sweep_repeats=1, speed_rounds=2,
)
SIZES = (784, 16, 8, 10)
REQUIRED = ("backend", "epoch_seconds_median", "samples_per_second", "infer_one_us_median",
            "test_accuracy", "peak_rss_mib")


def tiny_data(seed=0):
    rng = np.random.default_rng(seed)
    return Dataset(
        rng.random((700, 784), dtype=np.float32), rng.integers(0, 10, 700).astype(np.int32),
        rng.random((200, 784), dtype=np.float32), rng.integers(0, 10, 200).astype(np.int32),
    )


def tiny_run(names):
    chosen = select(names)
    results, config = runner.run(chosen, TINY, tiny_data(), seed=0, batch=32, sizes=SIZES, val_size=100,
                                 torch=runner.find_torch_python(None), progress=False)
    rows, ceiling = runner.rows(chosen, results)
    return {"schema": 1, "created": "2026-01-01T00:00:00+00:00", "wall_seconds": 1.0, "mode": "test", "command": "test",
            "machine": probe.machine(), "matmul_ceiling_gflops": ceiling, "config": config, "rows": rows}


@pytest.fixture(scope="module")
def numpy_doc():
    """A tiny run of numpy and torch, with no interpreter named for torch."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(runner.TORCH_PYTHON_ENV, raising=False)
        if runner.find_torch_python(None)[0] is not None:
            pytest.skip("this interpreter has torch, so the torch rows would run")
        return tiny_run(["numpy", "torch"])


def test_tiny_run_has_every_field_and_torch_says_not_installed(numpy_doc):
    doc = numpy_doc
    by_name = {r["variant"]: r for r in doc["rows"]}
    numpy_row, torch_row = by_name["numpy"], by_name["torch"]
    assert numpy_row["status"] == "ok", numpy_row
    assert set(numpy_row["phase_status"].values()) == {"ok"}
    for key in REQUIRED:
        assert numpy_row[key] is not None, key
    assert numpy_row["samples_per_second"] == pytest.approx(600 / numpy_row["epoch_seconds_median"])
    rounds = [r["epoch_seconds_median"] for r in numpy_row["speed_rounds"]]
    assert len(rounds) == 2 and numpy_row["epoch_seconds_median"] == min(rounds)
    assert numpy_row["infer_one_us_median"] == min(r["infer_one_us_median"] for r in numpy_row["speed_rounds"])
    assert 0.0 <= numpy_row["test_accuracy"] <= 1.0
    assert [run["epochs"] for run in numpy_row["accuracy_runs"]] == [1, 2]
    assert len(numpy_row["accuracy_runs"][1]["curve"]) == 2
    assert [p["sizes"] for p in numpy_row["sweep"]["width"]] == [[784, 8, 4, 10], [784, 32, 16, 10]]
    assert all(p["fraction_of_ceiling"] > 0 for p in numpy_row["sweep"]["batch"])
    assert torch_row["status"].startswith("not installed")
    assert torch_row["backend"] == "torch" and torch_row["epoch_seconds_median"] is None
    # The document is plain JSON and renders as markdown with the torch row explained.
    json.loads(json.dumps(doc, allow_nan=False))
    text = report.markdown(doc)
    assert "| torch | not installed" in text and "| numpy | defaults |" in text


def test_unsupported_options_are_reported_not_raised():
    with pytest.raises(probe.Unsupported, match="no keyword no_such_option"):
        worker.build(Variant("x", "numpy", fit={"no_such_option": 1}), [])
    with pytest.raises(probe.Unsupported, match="autodiff"):
        worker.build(Variant("x", "numpy", fit={"grad": "autodiff"}), [])
    with pytest.raises(probe.Unsupported, match="no option no_such_option"):
        worker.build(Variant("x", "numpy", backend_options={"no_such_option": 1}), [])


def test_speed_recipe_is_adam_1e3_constant_without_decay():
    run = worker.build(Variant("numpy", "numpy"), list(worker.SPEED_FLAGS))
    assert (run.args.lr, run.args.schedule, run.optimizer.weight_decay, run.stopping.patience) == (1e-3, "constant", 0.0, 0)
    assert worker.describe_recipe(run) == "Adam 0.001 constant, batch 128, he init"


def test_missing_torch_interpreter_is_one_line_exit_2(capsys, tmp_path):
    missing = tmp_path / "no-python"
    assert cli.run(["--torch-python", str(missing), "--backends", "torch", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no such interpreter" in err and str(missing) in err


def test_unknown_variant_is_one_line_exit_2(capsys):
    assert cli.run(["--backends", "numpy,tensorflow"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "tensorflow" in err and "numpy" in err


def test_training_flops_match_the_closed_form():
    # 784-128-64-10: forward 2*(784*128 + 128*64 + 64*10), backward 2*(all) + 2*(128*64 + 64*10).
    forward = 2 * (100352 + 8192 + 640)
    backward = 2 * (100352 + 8192 + 640) + 2 * (8192 + 640)
    assert probe.training_flops_per_sample((784, 128, 64, 10)) == forward + backward == 454_400


def test_jax_epoch_is_compared_with_the_arithmetic_limit():
    # 784-128-64-10, 55,000 training + 5,000 validation images, a 200 GFLOP/s ceiling.
    forward = 2 * (100352 + 8192 + 640)
    doc = {
        "matmul_ceiling_gflops": 200.0,
        "config": {"sizes": [784, 128, 64, 10], "counts": {"train": 55_000, "val": 5_000, "test": 10_000}},
        "rows": [{"variant": "jax", "status": "ok", "options": "defaults",
                  "epoch_seconds_median": 0.27, "epoch_ratio_to_torch": 0.4}],
    }
    exact = 454_400 * 55_000 + forward * 5_000
    assert report.epoch_flops(doc) == exact
    assert report.epoch_flops(doc, exact=False) == 3 * forward * 55_000 + forward * 5_000
    line = report.jax_goals_section(doc).splitlines()[-1]
    assert f"{0.27 / (exact / 200e9):.2f}× the exact limit" in line
    assert "0.40× torch (goal ≤ 0.35×, not met)" in line


def test_time_to_reach_takes_the_first_epoch_at_or_above():
    curve = probe.accuracy_curve([2.0, 0.5, 0.5, 0.5], [0.97, 0.975, 0.979, 0.99])
    assert [p["seconds"] for p in curve] == [2.0, 2.5, 3.0, 3.5]
    assert probe.time_to_reach(curve) == {"97.5": 2.5, "98.0": 3.5}
    assert probe.time_to_reach(curve[:1]) == {"97.5": None, "98.0": None}


@pytest.mark.skipif(not os.environ.get(runner.TORCH_PYTHON_ENV),
                    reason=f"set {runner.TORCH_PYTHON_ENV} to a Python with torch to run the PyTorch reference")
def test_torch_reference_runs_every_phase():
    doc = tiny_run(["torch"])
    (row,) = doc["rows"]
    assert set(row["phase_status"].values()) == {"ok"}, row["errors"]
    for key in REQUIRED:
        assert row[key] is not None, key
    assert row["epoch_ratio_to_torch"] == 1.0
    assert [len(run["curve"]) for run in row["accuracy_runs"]] == [1, 2]


def test_charts_are_drawn(numpy_doc, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is the optional bench extra")
    from benchmarks import charts

    message = charts.draw(numpy_doc, tmp_path)
    for name in ("sweep_width.png", "sweep_batch.png", "accuracy_time.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", message


def test_select_keeps_table_order():
    assert [v.name for v in select(["torch", "numpy"])] == ["numpy", "torch"]
    quick = [v.name for v in select(["all"], quick=True)]
    assert "jax-step" not in quick and {"numpy", "jax", "torch"} <= set(quick)
    assert [v.name for v in select(["jax-step"], quick=True)] == ["jax-step"]
    with pytest.raises(XpnetError):
        select(["nope"])


def test_jax_parts_times_every_piece_of_a_scan_epoch(capsys):
    from benchmarks import jax_parts

    assert jax_parts.main(["--n", "1000", "--batch", "32", "--repeats", "1", "--large", "256"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    pieces = [row.split(" | ")[0][2:] for row in rows]
    assert [p.split()[0] for p in pieces] == ["forward", "weight", "shuffle", "gather", "whole", "large"]
    assert all(float(row.split(" | ")[1]) > 0 for row in rows)


def test_source_revision_names_the_commit_and_uncommitted_changes(tmp_path, monkeypatch):
    import shutil
    import subprocess
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    # A temporary folder inside someone's repository must still read as "not a repository".
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    monkeypatch.delenv("XPNET_SOURCE_REVISION", raising=False)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    assert probe.source_revision(str(tmp_path)) is None  # not a repository
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "a.txt").write_text("one")
    subprocess.run([*git, "add", "a.txt"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "one"], cwd=tmp_path, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    clean = probe.source_revision(str(tmp_path))
    assert head.startswith(clean) and len(clean) >= 7
    (tmp_path / "untracked.txt").write_text("not part of the source")
    assert probe.source_revision(str(tmp_path)) == clean
    (tmp_path / "a.txt").write_text("two")
    assert probe.source_revision(str(tmp_path)) == clean + " and uncommitted changes"
    # A copy whose git history is not its own (a lent GPU machine's) is told which commit it is.
    monkeypatch.setenv("XPNET_SOURCE_REVISION", "5a5ad21")
    assert probe.source_revision(str(tmp_path)) == "5a5ad21 (as stated by XPNET_SOURCE_REVISION)"


def test_report_names_the_source_revision_when_the_document_has_it(numpy_doc):
    assert " at commit abc1234 and uncommitted changes," in report.markdown(dict(numpy_doc, source="abc1234 and uncommitted changes"))
    assert " at commit" not in report.markdown({k: v for k, v in numpy_doc.items() if k != "source"})
