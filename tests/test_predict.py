"""predict.py as a user meets it: pictures of real test digits in either polarity are named, --data gives
train.py's own test accuracy, and bad input is one line, exit 2, nothing written."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import mnist_dir
from nn.preprocess import ink_from_grey

ROOT = Path(__file__).resolve().parent.parent


def run_front(script, *args):
    environment = {k: v for k, v in os.environ.items() if k != "XPNET_BACKEND"}
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=environment, timeout=600)


def assert_one_line_error(result, *needles):
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]


def test_dark_ink_on_light_paper_reads_as_light_ink_on_dark():
    rng = np.random.default_rng(0)
    ink = np.zeros((40, 30), np.float32)
    ink[8:32, 10:20] = rng.uniform(0.3, 1.0, (24, 10))
    ink[8, 10] = 1.0  # the strongest ink, mapped to 1
    paper, pen = 0.9, 0.1  # grey paper, a dark pen: grey = paper - ink * (paper - pen)
    photo = paper - ink * (paper - pen)
    np.testing.assert_allclose(ink_from_grey(photo), ink, atol=1e-6)
    # light ink on a dim background: the background becomes 0, the brightest stroke 1
    np.testing.assert_allclose(ink_from_grey(0.2 + 0.6 * ink), ink, atol=1e-6)
    assert not ink_from_grey(np.full((20, 20), 0.7) + rng.uniform(0, 0.05, (20, 20))).any()  # paper texture only


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 784-64-10 model after one NumPy epoch on real MNIST, written by train.py with its metrics."""
    path = mnist_dir()
    if path is None:
        pytest.skip("real MNIST not found: set MNIST_DATA to a folder with the four IDX files")
    folder = tmp_path_factory.mktemp("predict")
    model, metrics = folder / "model.npz", folder / "metrics.json"
    result = run_front("train.py", "--backend", "numpy", "--hidden", "64", "--epochs", "1", "--augment", "none",
                       "--data", path, "--out", model, "--metrics-json", metrics, "--no-progress")
    assert result.returncode == 0, result.stderr
    return model, json.loads(metrics.read_text()), path


@pytest.mark.mnist
def test_the_whole_test_set_gives_the_accuracy_train_py_reported(trained, tmp_path):
    model, metrics, data = trained
    out = tmp_path / "read.json"
    result = run_front("predict.py", model, "--data", data, "--json", out)
    assert result.returncode == 0, result.stderr
    read = json.loads(out.read_text())
    assert read["test_accuracy"] == metrics["test_accuracy"]
    confusion = np.array(read["confusion"])
    assert confusion.sum() == 10_000 and np.trace(confusion) / 10_000 == read["test_accuracy"]
    assert f"test accuracy {metrics['test_accuracy']:.2%}" in result.stdout


@pytest.mark.mnist
def test_pictures_of_test_digits_are_named_in_either_polarity(trained, mnist, tmp_path):
    from backends import get_backend
    from nn.serialize import load_model

    model_path = trained[0]
    model, params = load_model(model_path)
    be = get_backend("numpy")
    probabilities = be.to_host(be.make_predict(model)(params, mnist.x_test[:200]))
    # Digits the model reads at once and surely, one per class where it can: the picture is what is tested.
    sure = [int(np.flatnonzero((mnist.y_test[:200] == d) & (probabilities.argmax(1) == d) &
                               (probabilities.max(1) > 0.99))[0]) for d in (0, 3, 7)]
    paths, digits = [], []
    for i in sure:
        grey = np.kron(mnist.x_test[i].reshape(28, 28), np.ones((6, 5)))  # bigger, and not square
        light_on_dark = (grey * 255).round().astype(np.uint8)
        pen_on_paper = 255 - light_on_dark
        for name, image in ((f"{i}.png", Image.fromarray(light_on_dark)),
                            (f"{i}-paper.jpg", Image.fromarray(pen_on_paper).convert("RGB")),
                            (f"{i}-sheet.png", Image.fromarray(np.dstack([np.zeros_like(grey, np.uint8)] * 3
                                                                         + [light_on_dark]), "RGBA"))):
            image.save(tmp_path / name, quality=95) if name.endswith(".jpg") else image.save(tmp_path / name)
            paths.append(tmp_path / name)
            digits.append(int(mnist.y_test[i]))
    out = tmp_path / "read.json"
    result = run_front("predict.py", model_path, *paths, "--json", out)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(paths)
    for line, path, digit in zip(lines, paths, digits):
        assert line.startswith(f"{path}: {digit} (") and "top 3:" in line, line
    rows = json.loads(out.read_text())
    assert [row["digit"] for row in rows] == digits
    assert all(abs(sum(row["probabilities"]) - 1) < 1e-5 for row in rows)


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((50, 50), 255, np.uint8)).save(blank)
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    import nn
    from nn.serialize import save_model

    model = tmp_path / "model.npz"
    save_model(model, nn.MLP(sizes=(784, 8, 10)), nn.MLP(sizes=(784, 8, 10)).init_params(0))
    cases = [
        ((model, tmp_path / "missing.png"), ["missing.png", "does not exist"]),
        ((model, text), ["notes.png", "not a readable image"]),
        ((model, tmp_path), ["is a folder"]),
        ((model,), ["IMAGE", "--data"]),
        ((model, blank, "--data", tmp_path), ["one of the two"]),
        ((model, blank, "--json", model), ["--json", "MODEL"]),
        ((tmp_path / "none.npz", blank), ["none.npz"]),
    ]
    for args, needles in cases:
        before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
        assert_one_line_error(run_front("predict.py", *args), *needles)
        assert {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


@pytest.mark.mnist
def test_the_readmes_python_example_trains_saves_loads_and_reads(tmp_path):
    """The README's "Use it from Python" block, run as written in an empty folder."""
    if mnist_dir() is None:
        pytest.skip("real MNIST not found: set MNIST_DATA to a folder with the four IDX files")
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Use it from Python", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    # The example runs in an empty folder: a relative MNIST_DATA is made absolute first.
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "MNIST_DATA": str(Path(mnist_dir()).resolve())}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            env=environment, timeout=600)
    assert result.returncode == 0, result.stderr
    accuracy = float(result.stdout.split("test accuracy ")[1].split("%")[0])
    assert accuracy > 96 and result.stdout.strip().endswith("[7 2 1]"), result.stdout  # MNIST's first test digits
    assert (tmp_path / "mine.npz").exists()
