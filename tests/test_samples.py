"""Your own samples: gui.py writes them, train.py --extra-data reads them, bad ones are one line."""

import numpy as np
import pytest
from test_cli import _assert_one_line_error, run_train, tiny_mnist  # noqa: F401  (tiny_mnist is a fixture)

from backends import XpnetError
from nn.samples import load_samples, save_sample


def _digit(seed):
    return np.random.default_rng(seed).random((28, 28), dtype=np.float32)


def test_saved_samples_come_back_with_their_labels_and_pixels(tmp_path):
    folder = tmp_path / "samples"  # created on the first save
    paths = [save_sample(folder, _digit(i), label) for i, label in enumerate([3, 3, 7])]
    assert all(path.is_file() and path.parent == folder for path in paths)
    assert len(list(folder.glob("digit-3-*.npz"))) == 2  # two saves in the same second do not collide
    x, y = load_samples(folder)
    assert x.shape == (3, 784) and x.dtype == np.float32
    assert y.dtype == np.int32 and sorted(y.tolist()) == [3, 3, 7]
    expected = {tuple(np.rint(_digit(i) * 255).ravel() / 255): label for i, label in enumerate([3, 3, 7])}
    for image, label in zip(x, y):
        assert expected[tuple(np.asarray(image, np.float64))] == label


def _bad_sample(kind, path):
    if kind == "not a zip":
        path.write_text("hello")
    elif kind == "pickle":
        np.savez(path, image=np.array([object()], dtype=object), label=np.int64(1))
    elif kind == "shape":
        np.savez(path, image=np.zeros((14, 14), np.uint8), label=np.int64(1))
    elif kind == "label":
        np.savez(path, image=np.zeros((28, 28), np.uint8), label=np.int64(12))
    elif kind == "keys":
        np.savez(path, pixels=np.zeros((28, 28), np.uint8))


@pytest.mark.parametrize("kind, words", [
    ("not a zip", "not an .npz"), ("pickle", "pickled"), ("shape", "(14, 14)"), ("label", "label 12"),
    ("keys", "lacks"),
])
def test_a_bad_sample_file_is_named_with_the_fix(tmp_path, kind, words):
    save_sample(tmp_path, _digit(0), 4)
    bad = tmp_path / "digit-9-bad.npz"
    _bad_sample(kind, bad)
    with pytest.raises(XpnetError) as caught:
        load_samples(tmp_path)
    message = str(caught.value)
    assert words in message and str(bad) in message and "\n" not in message


def test_a_missing_empty_or_non_folder_is_refused(tmp_path):
    with pytest.raises(XpnetError, match="does not exist"):
        load_samples(tmp_path / "nowhere")
    with pytest.raises(XpnetError, match="no .npz samples"):
        load_samples(tmp_path)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(XpnetError, match="not a folder"):
        load_samples(tmp_path / "file.txt")


@pytest.mark.parametrize("setup, words", [("missing", "does not exist"), ("bad file", "not an .npz")])
def test_train_extra_data_errors_are_one_line_and_exit_2(tmp_path, setup, words):
    folder = tmp_path / "mine"
    if setup == "bad file":
        folder.mkdir()
        (folder / "digit-1-x.npz").write_text("not a sample")
    named = "--extra-data" if setup == "missing" else "digit-1-x.npz"
    _assert_one_line_error(run_train("--extra-data", folder, "--backend", "numpy"), named, words)


def test_train_mixes_the_samples_into_training_only(tiny_mnist, tmp_path):  # noqa: F811
    folder = tmp_path / "mine"
    for i in range(5):
        save_sample(folder, _digit(i), i)
    result = run_train("--data", tiny_mnist, "--extra-data", folder, "--backend", "numpy", "--epochs", "1",
                       "--val-size", "50", "--batch-size", "64", "--no-progress", "--out", tmp_path / "m.npz")
    assert result.returncode == 0, result.stderr
    # 300 training images: the last 50 validate, the 5 samples join the other 250.
    assert "data: 255 train (incl. 5 of yours" in result.stdout and "/ 50 validation / 50 test" in result.stdout
