"""MNIST loading: exact IDX/npz parsing, one-line errors for every bad file, cache and offline download."""

import gzip
import hashlib
import os
import socket
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

import nn.data as data
from backends.errors import XpnetError
from nn.data import load_mnist

REAL_MNIST = os.environ.get("MNIST_DATA")  # read before the fixture below hides it from the other tests

NAMES = {
    "train-images-idx3-ubyte": "x_train", "train-labels-idx1-ubyte": "y_train",
    "t10k-images-idx3-ubyte": "x_test", "t10k-labels-idx1-ubyte": "y_test",
}


@pytest.fixture(autouse=True)
def _no_real_sources(monkeypatch, tmp_path):
    """No test may read the user's MNIST_DATA, cache or Hub settings unless it sets them."""
    for var in ("MNIST_DATA", "XPNET_CACHE", "HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XPNET_CACHE", str(tmp_path / "default-cache"))


def _arrays(n_train=7, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def _idx_bytes(array):
    if array.ndim == 3:
        header = np.array([0x803, len(array), *array.shape[1:]], ">u4")
    else:
        header = np.array([0x801, len(array)], ">u4")
    return header.tobytes() + array.astype(np.uint8).tobytes()


def _write_idx(folder, arrays, gz=True, sep="-"):
    folder.mkdir(parents=True, exist_ok=True)
    for name, key in NAMES.items():
        raw = _idx_bytes(arrays[key])
        name = name.replace("-idx", sep + "idx")
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return folder


def _check_exact(ds, arrays):
    for split in ("train", "test"):
        x, y = getattr(ds, "x_" + split), getattr(ds, "y_" + split)
        assert x.dtype == np.float32 and y.dtype == np.int32
        assert x.shape == (len(arrays["x_" + split]), 784) and y.shape == (len(x),)
        np.testing.assert_array_equal(x, arrays["x_" + split].reshape(len(x), 784).astype(np.float32) / 255)
        np.testing.assert_array_equal(y, arrays["y_" + split])
        assert x.min() >= 0 and x.max() <= 1


def _error(path, **kwargs):
    with pytest.raises(XpnetError) as info:
        load_mnist(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message and message
    return message


# --- IDX folders --------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "raw"])
@pytest.mark.parametrize("sep", ["-", "."], ids=["dash", "dot"])
def test_idx_folder_loads_exactly(tmp_path, gz, sep):
    arrays = _arrays()
    ds = load_mnist(_write_idx(tmp_path / "mnist", arrays, gz=gz, sep=sep))
    _check_exact(ds, arrays)


def test_mnist_data_env_is_used_when_no_path(tmp_path, monkeypatch):
    arrays = _arrays(seed=1)
    monkeypatch.setenv("MNIST_DATA", str(_write_idx(tmp_path / "m", arrays)))
    _check_exact(load_mnist(), arrays)


def test_path_argument_beats_env(tmp_path, monkeypatch):
    arrays = _arrays(seed=2)
    monkeypatch.setenv("MNIST_DATA", str(tmp_path / "nowhere"))
    _check_exact(load_mnist(_write_idx(tmp_path / "m", arrays)), arrays)


def test_missing_path(tmp_path, monkeypatch):
    message = _error(tmp_path / "nope")
    assert "does not exist" in message and "--data" in message
    monkeypatch.setenv("MNIST_DATA", str(tmp_path / "gone"))
    with pytest.raises(XpnetError, match="MNIST_DATA"):
        load_mnist()


def test_folder_missing_a_file_names_it_and_what_was_found(tmp_path):
    folder = _write_idx(tmp_path / "m", _arrays())
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    message = _error(folder)
    assert "t10k-labels-idx1-ubyte" in message and "found:" in message
    assert "train-images-idx3-ubyte.gz" in message


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "found: nothing" in _error(tmp_path / "empty")


def test_truncated_raw_file(tmp_path):
    folder = _write_idx(tmp_path / "m", _arrays(), gz=False)
    file = folder / "train-images-idx3-ubyte"
    file.write_bytes(file.read_bytes()[:1000])
    message = _error(folder)
    assert "truncated" in message and f"{7 * 784} bytes of pixels, got {1000 - 16}" in message


def test_header_only_partially_present(tmp_path):
    folder = _write_idx(tmp_path / "m", _arrays(), gz=False)
    (folder / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00")
    assert "truncated" in _error(folder)


def test_trailing_bytes(tmp_path):
    folder = _write_idx(tmp_path / "m", _arrays(), gz=False)
    with open(folder / "t10k-labels-idx1-ubyte", "ab") as f:
        f.write(b"\x01\x02")
    assert "trailing bytes" in _error(folder)


def test_truncated_gzip(tmp_path):
    folder = _write_idx(tmp_path / "m", _arrays())
    file = folder / "train-images-idx3-ubyte.gz"
    file.write_bytes(file.read_bytes()[:-30])
    message = _error(folder)
    assert "corrupt or truncated" in message and str(file) in message


def test_corrupt_gzip(tmp_path):
    folder = _write_idx(tmp_path / "m", _arrays())
    file = folder / "train-labels-idx1-ubyte.gz"
    blob = bytearray(file.read_bytes())
    blob[12:20] = b"\xff" * 8  # deflate stream garbage after a valid gzip header
    file.write_bytes(bytes(blob))
    assert "is corrupt or truncated (" in _error(folder)


def test_swapped_images_and_labels(tmp_path):
    folder = _write_idx(tmp_path / "m", _arrays())
    images, labels = folder / "train-images-idx3-ubyte.gz", folder / "train-labels-idx1-ubyte.gz"
    a, b = images.read_bytes(), labels.read_bytes()
    images.write_bytes(b), labels.write_bytes(a)
    message = _error(folder)
    assert "0x00000801" in message and "expected 0x00000803" in message and "are swapped" in message


def test_wrong_magic(tmp_path):
    folder = _write_idx(tmp_path / "m", _arrays(), gz=False)
    file = folder / "t10k-images-idx3-ubyte"
    file.write_bytes(b"\x12\x34\x56\x78" + file.read_bytes()[4:])
    message = _error(folder)
    assert "0x12345678" in message and "are swapped" not in message


def test_images_not_28x28(tmp_path):
    arrays = _arrays()
    folder = _write_idx(tmp_path / "m", arrays)
    small = np.zeros((7, 14, 14), np.uint8)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(small)))
    assert "14x14" in _error(folder)


def test_label_count_mismatch(tmp_path):
    arrays = _arrays()
    arrays["y_test"] = arrays["y_test"][:3]
    message = _error(_write_idx(tmp_path / "m", arrays))
    assert "5 images" in message and "3 labels" in message


def test_labels_out_of_range(tmp_path):
    arrays = _arrays()
    arrays["y_train"][4] = 11
    assert "label 11" in _error(_write_idx(tmp_path / "m", arrays))


def test_plain_file_that_is_not_npz(tmp_path):
    (tmp_path / "mnist.txt").write_text("hello")
    assert "neither a folder nor an .npz" in _error(tmp_path / "mnist.txt")


# --- npz files ----------------------------------------------------------------


def test_npz_28x28_uint8(tmp_path):
    arrays = _arrays()
    np.savez(tmp_path / "mnist.npz", **arrays)
    _check_exact(load_mnist(tmp_path / "mnist.npz"), arrays)


def test_npz_flat_and_compressed(tmp_path):
    arrays = _arrays()
    flat = {k: v.reshape(len(v), 784) if k.startswith("x") else v.astype(np.int64) for k, v in arrays.items()}
    np.savez_compressed(tmp_path / "mnist.npz", **flat)
    _check_exact(load_mnist(tmp_path / "mnist.npz"), arrays)


def test_npz_float_pixels_kept(tmp_path):
    arrays = _arrays()
    floats = {k: (v.astype(np.float64) / 255 if k.startswith("x") else v) for k, v in arrays.items()}
    np.savez(tmp_path / "mnist.npz", **floats)
    _check_exact(load_mnist(tmp_path / "mnist.npz"), arrays)


def test_npz_float_pixels_out_of_range(tmp_path):
    arrays = _arrays()
    arrays["x_test"] = arrays["x_test"].astype(np.float32)  # 0..255, not 0..1
    np.savez(tmp_path / "mnist.npz", **arrays)
    assert "[0, 1]" in _error(tmp_path / "mnist.npz")


def test_npz_object_arrays_refused(tmp_path):
    arrays = _arrays()
    arrays["y_train"] = np.array([1, "two", None] * 2 + [3], dtype=object)
    np.savez(tmp_path / "mnist.npz", **arrays)  # numpy pickles object arrays
    assert "pickle" in _error(tmp_path / "mnist.npz")


def test_npz_missing_key(tmp_path):
    arrays = _arrays()
    del arrays["y_test"]
    np.savez(tmp_path / "mnist.npz", **arrays)
    message = _error(tmp_path / "mnist.npz")
    assert "lacks y_test" in message and "x_train" in message


@pytest.mark.parametrize("key, value, words", [
    ("x_train", np.zeros((7, 27, 28), np.uint8), "expected (N, 28, 28) or (N, 784) images and (N,) labels"),
    ("x_train", np.zeros(7, np.uint8), "expected (N, 28, 28) or (N, 784) images and (N,) labels"),
    ("y_train", np.zeros((7, 1), np.uint8), "expected (N, 28, 28) or (N, 784) images and (N,) labels"),
    ("y_test", np.zeros(4, np.uint8), "expected (N, 28, 28) or (N, 784) images and (N,) labels"),
    ("x_test", np.zeros((5, 784), np.int16), "dtype int16"),
    ("y_test", np.zeros(5, np.float32), "must hold integer labels 0..9"),
    ("y_test", np.full(5, 10, np.uint8), "must hold integer labels 0..9"),
], ids=["side27", "1d-images", "2d-labels", "count", "int16-pixels", "float-labels", "label10"])
def test_npz_bad_shapes_and_dtypes(tmp_path, key, value, words):
    arrays = _arrays()
    arrays[key] = value
    np.savez(tmp_path / "mnist.npz", **arrays)
    assert words in _error(tmp_path / "mnist.npz")


def test_npz_that_is_not_a_zip(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"\x80\x04garbage")
    assert "not an .npz" in _error(tmp_path / "mnist.npz")


# --- cache and download -------------------------------------------------------


def test_cache_is_used_when_no_path_or_env(tmp_path, monkeypatch):
    arrays = _arrays(seed=5)
    np.savez(tmp_path / "mnist.npz", **{k: v.reshape(len(v), -1) if k[0] == "x" else v for k, v in arrays.items()})
    monkeypatch.setattr(data, "_download", lambda *a: pytest.fail("downloaded despite a cache"))
    _check_exact(load_mnist(cache_dir=tmp_path), arrays)
    monkeypatch.setenv("XPNET_CACHE", str(tmp_path))
    _check_exact(load_mnist(), arrays)


def test_corrupt_cache_says_delete_it(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 half a file")
    message = _error(None, cache_dir=tmp_path)
    assert "delete" in message and "mnist.npz" in message


def _assert_fast_offline_error(cache_dir, **kwargs):
    start = time.monotonic()
    message = _error(None, cache_dir=cache_dir, **kwargs)
    assert time.monotonic() - start < 10
    assert "--data" in message and "MNIST_DATA" in message
    assert not (cache_dir / "mnist.npz").exists()
    return message


def test_download_fails_fast_when_hub_unreachable(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    assert "127.0.0.1:9" in _assert_fast_offline_error(tmp_path)


def test_download_fails_fast_when_hub_is_silent(tmp_path, monkeypatch):
    server = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    server.listen()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    try:
        assert "did not answer" in _assert_fast_offline_error(tmp_path, timeout=1.0)
    finally:
        server.close()


@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_offline_env_fails_immediately(tmp_path, monkeypatch, var):
    monkeypatch.setenv(var, "1")
    monkeypatch.setattr(data, "_check_reachable", lambda t: pytest.fail("touched the network while offline"))
    start = time.monotonic()
    assert var in _assert_fast_offline_error(tmp_path)
    assert time.monotonic() - start < 1


def _fake_datasets(monkeypatch, arrays, calls):
    def load_dataset(name):
        calls.append(name)
        return {split: {"image": list(arrays["x_" + split]), "label": arrays["y_" + split].tolist()}
                for split in ("train", "test")}

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.setattr(data, "_check_reachable", lambda timeout: None)


def test_download_converts_and_caches_atomically(tmp_path, monkeypatch):
    arrays, calls = _arrays(seed=9), []
    _fake_datasets(monkeypatch, arrays, calls)
    cache_dir = tmp_path / "new" / "cache"
    _check_exact(load_mnist(cache_dir=cache_dir), arrays)
    assert calls == ["ylecun/mnist"]
    assert sorted(os.listdir(cache_dir)) == ["mnist.npz"]  # no temp file left behind
    with np.load(cache_dir / "mnist.npz", allow_pickle=False) as npz:
        assert npz["x_train"].dtype == np.uint8 and npz["x_train"].shape == (7, 784)
    _check_exact(load_mnist(cache_dir=cache_dir), arrays)  # second run: from the cache
    assert calls == ["ylecun/mnist"]


def test_download_library_error_is_one_line(tmp_path, monkeypatch):
    def load_dataset(name):
        raise ConnectionError("HTTPSConnectionPool(host='huggingface.co'):\n  Max retries exceeded")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.setattr(data, "_check_reachable", lambda timeout: None)
    assert "Max retries exceeded" in _assert_fast_offline_error(tmp_path)


def test_module_imports_no_accelerator_library():
    code = "import sys, nn.data; print(sorted({'jax', 'cupy', 'datasets'} & set(sys.modules)))"
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.strip() == "[]"


# --- the real thing -----------------------------------------------------------


@pytest.mark.mnist
def test_real_mnist():
    if not REAL_MNIST or not Path(REAL_MNIST).exists():
        pytest.skip(f"real MNIST not found: set MNIST_DATA to a folder with the four IDX files (now {REAL_MNIST!r})")
    ds = load_mnist(REAL_MNIST)
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert ds.x_train.min() == 0 and ds.x_train.max() == 1
    counts = np.bincount(ds.y_train, minlength=10)
    assert len(counts) == 10 and counts.min() > 5000 and counts.max() < 7000
    assert ds.y_train[0] == 5 and ds.y_test[0] == 7
    # The canonical MD5 of the uncompressed train-images file, rebuilt from what we loaded.
    header = np.array([0x803, 60000, 28, 28], ">u4").tobytes()
    pixels = np.round(ds.x_train * 255).astype(np.uint8).tobytes()
    assert hashlib.md5(header + pixels).hexdigest() == "6bbc9ace898e44ae57da46a324031adb"
