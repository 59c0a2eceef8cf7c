"""train.py as a user meets it: bad input is one line and exit 2; real runs learn."""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import mnist_dir

ROOT = Path(__file__).resolve().parent.parent


def run_train(*args, env=None, timeout=600):
    environment = {**os.environ, **(env or {})}
    environment.pop("XPNET_BACKEND", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *map(str, args)],
        capture_output=True, text=True, cwd=ROOT, env=environment, timeout=timeout,
    )


def _write_idx(folder, name, magic, dims, payload, truncate=None):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    data = header + payload
    (folder / name).write_bytes(gzip.compress(data[:truncate] if truncate else data))


@pytest.fixture
def tiny_mnist(tmp_path):
    """A valid 4-file IDX folder with a few random digits, for CLI runs that must not download."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 300), ("t10k", 50)):
        _write_idx(tmp_path, f"{prefix}-images-idx3-ubyte.gz", 0x803, (n, 28, 28),
                   rng.integers(0, 256, n * 784, dtype=np.uint8).tobytes())
        _write_idx(tmp_path, f"{prefix}-labels-idx1-ubyte.gz", 0x801, (n,),
                   rng.integers(0, 10, n, dtype=np.uint8).tobytes())
    return tmp_path


def _assert_one_line_error(result, *needles):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--hidden", "0"], ["--hidden", "at least 1"]),
        (["--hidden", "12,x"], ["--hidden"]),
        (["--lr", "-1"], ["--lr", "positive"]),
        (["--lr", "nan"], ["--lr"]),
        (["--epochs", "0"], ["--epochs"]),
        (["--backend", "nosuch"], ["nosuch", "numpy"]),
        (["--activation", "swish"], ["swish", "relu"]),
        (["--activation", "relu,tanh,relu"], ["--activation"]),
        (["--loss", "ce", "--output", "linear"], ["softmax"]),
        (["--dropout", "1"], ["dropout"]),
        (["--optimizer", "sgd", "--nesterov"], ["momentum"]),
        (["--backend", "numpy", "--grad", "autodiff"], ["autodiff", "jax"]),
        (["--no-such-flag"], ["--no-such-flag"]),
        (["--augment", "warp"], ["--augment", "elastic"]),
        (["--augment", "affine", "--aug-rotate", "100"], ["--aug-rotate", "0 to 90"]),
        (["--aug-clean", "nan"], ["--aug-clean"]),
        (["--aug-sigma", "0"], ["--aug-sigma", "0.5"]),
        (["--seed", "-1"], ["--seed", "0 to"]),
        (["--hidden", "128,,64"], ["--hidden", "empty"]),
        (["--hidden", "200000,200000"], ["--hidden", "GiB"]),
    ],
)
def test_bad_flags_fail_fast_with_one_line(args, needles, tmp_path):
    result = run_train(*args, "--data", tmp_path / "never-read")
    _assert_one_line_error(result, *needles)


def test_cupy_without_gpu_says_why_and_what_is_available():
    from backends import unavailable_reason

    if unavailable_reason("cupy") is None:
        pytest.skip("a usable GPU is present: the cupy backend is available")
    result = run_train("--backend", "cupy")
    _assert_one_line_error(result, "cupy", "available", "numpy")


def test_missing_data_path(tmp_path):
    _assert_one_line_error(run_train("--backend", "numpy", "--data", tmp_path / "nonexistent"), "nonexistent")


def test_truncated_idx_file(tiny_mnist):
    images = tiny_mnist / "train-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(gzip.decompress(images.read_bytes())[:5000]))
    _assert_one_line_error(run_train("--backend", "numpy", "--data", tiny_mnist), "truncated")


def test_val_size_too_large(tiny_mnist):
    _assert_one_line_error(run_train("--backend", "numpy", "--data", tiny_mnist, "--val-size", "300"), "--val-size")


def test_diverging_run_keeps_the_previous_model(tiny_mnist, tmp_path):
    out = tmp_path / "model.npz"
    out.write_bytes(b"a good model")
    result = run_train("--backend", "numpy", "--data", tiny_mnist, "--val-size", "50", "--optimizer", "sgd", "--lr", "1e6",
                       "--schedule", "constant", "--epochs", "2", "--out", out, "--no-progress")
    _assert_one_line_error(result, "diverged")
    assert out.read_bytes() == b"a good model"


def test_pickle_model_file_is_refused_on_load(tmp_path):
    import pickle

    from backends import XpnetError
    from nn.serialize import load_model

    path = tmp_path / "evil.npz"
    path.write_bytes(pickle.dumps({"w": 1}))
    with pytest.raises(XpnetError, match="pickle"):
        load_model(path)


def test_tiny_run_writes_model_and_metrics(tiny_mnist, tmp_path):
    out, metrics = tmp_path / "m.npz", tmp_path / "m.json"
    result = run_train("--backend", "numpy", "--data", tiny_mnist, "--val-size", "50", "--epochs", "2",
                       "--batch-size", "64", "--out", out, "--metrics-json", metrics, "--no-progress")
    assert result.returncode == 0, result.stderr
    figures = json.loads(metrics.read_text())
    assert figures["backend"] == "numpy" and figures["epochs"] == 2
    assert len(figures["epoch_seconds"]) == 2 and len(figures["history"]) == 2
    assert 0.0 <= figures["test_accuracy"] <= 1.0
    assert "epoch 2/2" in result.stdout and "test accuracy" in result.stdout

    from nn.serialize import load_model

    model, params = load_model(out)
    assert model.sizes == (784, 256, 128, 10) and params[0]["w"].dtype == np.float32


@pytest.mark.parametrize("out_name", ["m.npz", "m.safetensors"])
def test_augmented_run_records_its_augmentation_in_header_metrics_and_model_file(out_name, tiny_mnist, tmp_path):
    from nn.augment import Augment
    from nn.serialize import load_model, read_training_record

    out, metrics = tmp_path / out_name, tmp_path / "m.json"
    result = run_train("--backend", "numpy", "--data", tiny_mnist, "--val-size", "50", "--epochs", "1",
                       "--augment", "affine", "--aug-rotate", "7.5", "--out", out, "--metrics-json", metrics,
                       "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "augment affine: rotate 7.5 deg" in result.stdout
    record = read_training_record(out)["augment"]
    assert Augment.from_config(record) == Augment("affine", rotate=7.5)
    assert json.loads(metrics.read_text())["args"]["augment"] == "affine"
    load_model(out)  # the record does not get in the way of loading


def test_run_without_validation_writes_null_validation_figures(tiny_mnist, tmp_path):
    metrics = tmp_path / "m.json"
    result = run_train("--backend", "numpy", "--data", tiny_mnist, "--val-size", "0", "--epochs", "1",
                       "--out", tmp_path / "m.npz", "--metrics-json", metrics, "--no-progress")
    assert result.returncode == 0, result.stderr
    record = json.loads(metrics.read_text())["history"][0]
    assert record["val_loss"] is None and record["val_accuracy"] is None
    assert record["train_loss"] > 0


@pytest.mark.mnist
@pytest.mark.skipif(mnist_dir() is None, reason="real MNIST not found: set MNIST_DATA to the four IDX files")
def test_default_model_learns_real_mnist_on_numpy(tmp_path):
    metrics = tmp_path / "m.json"
    result = run_train("--backend", "numpy", "--data", mnist_dir(), "--epochs", "5", "--out", tmp_path / "m.npz",
                       "--metrics-json", metrics, "--no-progress")
    assert result.returncode == 0, result.stderr
    figures = json.loads(metrics.read_text())
    assert figures["epochs"] == 5
    assert figures["test_accuracy"] >= 0.97, figures["test_accuracy"]


# -- nothing lost: an output never replaces an input or another output ---------------
def _snapshot(folder):
    return {p: p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def _clash_cases(tmp_path, tiny_mnist):
    dataset = tmp_path / "D.npz"
    np.savez(dataset, x_train=np.zeros((4, 28, 28), np.uint8), y_train=np.zeros(4, np.uint8),
             x_test=np.zeros((4, 28, 28), np.uint8), y_test=np.zeros(4, np.uint8))
    (tmp_path / "m.npz").write_bytes(b"a good model")
    (tmp_path / "link.npz").symlink_to(tmp_path / "m.npz")
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "7-a.npz").write_bytes(b"a sample")
    (tmp_path / "ck").mkdir()
    (tmp_path / "folder.npz").mkdir()
    return {
        "data is out": (["--data", dataset, "--out", dataset], ["--out", "--data"]),
        "out is metrics": (["--data", tiny_mnist, "--out", tmp_path / "m.npz", "--metrics-json", tmp_path / "m.npz"],
                           ["--metrics-json", "--out"]),
        "metrics is a symlink to out": (["--data", tiny_mnist, "--out", tmp_path / "m.npz",
                                         "--metrics-json", tmp_path / "link.npz"], ["--metrics-json", "--out"]),
        "out inside the samples folder": (["--data", tiny_mnist, "--extra-data", samples, "--out", samples / "m.npz"],
                                          ["--extra-data", "inside"]),
        "metrics is a data file": (["--data", tiny_mnist, "--metrics-json", tiny_mnist / "t10k-labels-idx1-ubyte.gz"],
                                    ["--metrics-json", "--data"]),
        "out is the checkpoint file": (["--data", tiny_mnist, "--checkpoint-dir", tmp_path / "ck",
                                        "--out", tmp_path / "ck" / "checkpoint.safetensors"], ["checkpoint"]),
        "out is a folder": (["--data", tiny_mnist, "--out", tmp_path / "folder.npz"], ["folder"]),
        "out in a missing folder": (["--data", tiny_mnist, "--out", tmp_path / "nope" / "m.npz"], ["does not exist"]),
        "metrics is a folder": (["--data", tiny_mnist, "--metrics-json", samples], ["--metrics-json", "folder"]),
        "checkpoint dir is a file": (["--data", tiny_mnist, "--checkpoint-dir", tmp_path / "m.npz"], ["not a folder"]),
    }


CLASHES = ["data is out", "out is metrics", "metrics is a symlink to out",
           "out inside the samples folder", "metrics is a data file", "out is the checkpoint file",
           "out is a folder", "out in a missing folder", "metrics is a folder", "checkpoint dir is a file"]


@pytest.mark.parametrize("case", CLASHES)
def test_an_output_never_replaces_an_input_or_another_output(case, tmp_path, tiny_mnist):
    args, needles = _clash_cases(tmp_path, tiny_mnist)[case]
    before = _snapshot(tmp_path)
    result = run_train("--backend", "numpy", "--epochs", "1", *args)
    _assert_one_line_error(result, *needles)
    assert "data:" not in result.stdout  # refused before any data was read
    assert _snapshot(tmp_path) == before


def test_the_same_file_through_a_relative_path_is_a_clash(tmp_path, tiny_mnist):
    (tmp_path / "m.npz").write_bytes(b"a good model")
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--backend", "numpy", "--data", str(tiny_mnist),
         "--out", "m.npz", "--metrics-json", "./m.npz"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    _assert_one_line_error(result, "--metrics-json", "--out")
    assert (tmp_path / "m.npz").read_bytes() == b"a good model"


@pytest.mark.parametrize("command, needles", [
    (["gui.py", "--screenshot", "docs"], ["--screenshot", "folder"]),
    (["-m", "benchmarks", "--out", "README.md"], ["--out", "not a folder"]),
    (["-m", "benchmarks", "--json", "docs"], ["--json", "folder"]),
    (["-m", "benchmarks.gui_frames", "--frames", "0"], ["--frames"]),
    (["-m", "benchmarks.jax_parts", "--n", "-5"], ["--n"]),
    (["-m", "benchmarks.drawn_digits", "model.npz", "--n", "0"], ["--n"]),
    (["-m", "benchmarks.step_split", "--repeats", "0"], ["--repeats"]),
    (["-m", "benchmarks.augment_cost", "--json", "docs"], ["--json", "folder"]),
    (["predict.py", "model.npz", "x.png", "--json", "docs"], ["--json", "folder"]),
    (["-m", "nn.hub", "push", "model.npz", "not-a-repo"], ["hf://owner/name"]),
])
def test_other_front_doors_refuse_bad_outputs_and_ranges_in_one_line(command, needles):
    before = _snapshot(ROOT / "docs")
    result = subprocess.run([sys.executable, *command], capture_output=True, text=True, cwd=ROOT, timeout=120,
                            env={**os.environ, "SDL_VIDEODRIVER": "dummy"})
    _assert_one_line_error(result, *needles)
    assert _snapshot(ROOT / "docs") == before


def test_the_header_summarises_the_model_and_version_names_the_release(tiny_mnist, tmp_path):
    import tomllib

    from nn.serialize import load_model

    out = tmp_path / "m.npz"
    result = run_train("--backend", "numpy", "--data", tiny_mnist, "--hidden", "16,8", "--dropout", "0.2", "--reg", "l2",
                       "--reg-lambda", "1e-4", "--epochs", "1", "--val-size", "50", "--no-progress", "--out", out)
    assert result.returncode == 0, result.stderr
    summary = next(line for line in result.stdout.splitlines() if line.startswith("model: "))
    _, params = load_model(out)
    count = sum(a.size for layer in params for a in layer.values())  # what the file holds
    assert f"{count:,} parameters" in summary
    assert "dropout 0.2" in summary and "l2 0.0001" in summary and "weight decay 0.1" in summary
    assert "\naugment elastic: rotate 25 deg" in result.stdout  # the default augmentation, in force
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    shown = run_train("--version")
    assert shown.returncode == 0 and shown.stdout.strip() == f"xpnet {version}"


def test_init_from_starts_at_the_saved_weights_and_refuses_another_network(tiny_mnist, tmp_path):
    from nn.serialize import load_model

    first, tuned = tmp_path / "first.npz", tmp_path / "tuned.npz"
    common = ["--backend", "numpy", "--data", tiny_mnist, "--val-size", "50", "--epochs", "1", "--no-progress",
              "--augment", "none", "--hidden", "16"]
    assert run_train(*common, "--out", first).returncode == 0
    # A rate so small that one epoch cannot move the weights: what comes out is what went in.
    result = run_train(*common, "--seed", "7", "--lr", "1e-9", "--init-from", first, "--out", tuned)
    assert result.returncode == 0, result.stderr
    (_, start), (_, end) = load_model(first), load_model(tuned)
    for a, b in zip(start, end):
        np.testing.assert_allclose(a["w"], b["w"], atol=1e-6)
    before = first.read_bytes()
    _assert_one_line_error(run_train(*common[:-1], "32", "--init-from", first, "--out", tmp_path / "x.npz"),
                           "--init-from", "784-16-10", "--hidden 16")
    _assert_one_line_error(run_train(*common, "--init-from", first, "--out", first), "--out", "--init-from")
    assert first.read_bytes() == before and not (tmp_path / "x.npz").exists()


def test_the_history_comes_as_csv_beside_the_json_and_as_a_plot(tiny_mnist, tmp_path):
    import csv

    from PIL import Image

    metrics, plot = tmp_path / "m.json", tmp_path / "curves.png"
    result = run_train("--backend", "numpy", "--data", tiny_mnist, "--hidden", "16", "--epochs", "3", "--val-size", "50",
                       "--augment", "none", "--no-progress", "--out", tmp_path / "m.npz", "--metrics-json", metrics,
                       "--plot", plot)
    assert result.returncode == 0, result.stderr
    history = json.loads(metrics.read_text())["history"]
    rows = list(csv.DictReader((tmp_path / "m.csv").open()))
    assert len(rows) == len(history) == 3
    for row, record in zip(rows, history):
        assert {k: float(v) for k, v in row.items()} == pytest.approx({k: record[k] for k in row})
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.size == (1000, 400)


def test_plot_without_matplotlib_is_refused_before_training(tiny_mnist, tmp_path, monkeypatch, capsys):
    import train

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    code = train.run(["--backend", "numpy", "--data", str(tiny_mnist), "--epochs", "1", "--no-progress",
                      "--out", str(tmp_path / "m.npz"), "--plot", str(tmp_path / "c.png")])
    captured = capsys.readouterr()
    assert code == 2 and "--plot needs matplotlib" in captured.err and "--extra bench" in captured.err
    assert "data:" not in captured.out and not (tmp_path / "m.npz").exists()
