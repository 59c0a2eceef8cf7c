"""MNIST from wherever the user has it: a folder of IDX files, an npz, a cache, or the Hub.

Order: the ``path`` argument (``--data``), ``$MNIST_DATA``, the cache
``mnist.npz`` (``cache_dir``, ``$XPNET_CACHE`` or ``~/.cache/xpnet``), then a
download from the Hugging Face Hub that is written to the cache. Files are
parsed by hand with NumPy so a bad file is reported as one line naming the
file and the fix (XpnetError), never as a traceback from deep inside a parser.
Only NumPy is imported here; ``datasets`` is imported when downloading.
"""

import gzip
import io
import os
import threading
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from backends.cache import cache_root
from backends.errors import XpnetError
from nn.files import atomic_write_bytes

IMAGE_MAGIC, LABEL_MAGIC = 0x00000803, 0x00000801
SIDE = 28
FILES = {  # split -> (images, labels), the names LeCun published
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
KEYS = ("x_train", "y_train", "x_test", "y_test")
HF_DATASET = "ylecun/mnist"
FIX = "pass --data PATH to a folder with the four MNIST IDX files or an mnist.npz, or set MNIST_DATA"
_GZIP_ERRORS = (OSError, EOFError, zlib.error, gzip.BadGzipFile)


@dataclass(frozen=True)
class Dataset:
    """Pixels float32 in [0, 1] of shape (N, 784); labels int32 of shape (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_mnist(path=None, *, cache_dir=None, timeout=8.0):
    """MNIST from ``path``, else $MNIST_DATA, else the cache, else a download (cached)."""
    if path is None and os.environ.get("MNIST_DATA"):
        return _load_path(Path(os.environ["MNIST_DATA"]), "MNIST_DATA")
    if path is not None:
        return _load_path(Path(path), "--data")
    cache = Path(cache_dir or cache_root()) / "mnist.npz"
    if cache.is_file():
        return _load_npz(cache, fix=f"delete {cache} to download it again, or {FIX}")
    return _download(cache, timeout)


def _load_path(path, source):
    if not path.exists():
        raise XpnetError(f"MNIST path {path} (from {source}) does not exist; {FIX}")
    if path.is_dir():
        return _load_idx_folder(path)
    if path.suffix == ".npz":
        return _load_npz(path, fix=f"re-create it with uint8 or [0, 1] float arrays, or {FIX}")
    raise XpnetError(f"MNIST path {path} is neither a folder nor an .npz file; {FIX}")


def data_files(path):
    """Every file ``load_mnist(path)`` may read: the path itself, or each spelling of the four IDX names in it."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    return [path / spelling for pair in FILES.values() for name in pair for spelling in _spellings(name)]


def _spellings(name):
    dotted = name.replace("-idx", ".idx")
    return (name, name + ".gz", dotted, dotted + ".gz")


# --- IDX files --------------------------------------------------------------


def _find(folder, name):
    """The file for ``name`` in any of the spellings people download it under."""
    for candidate in _spellings(name):
        if (folder / candidate).is_file():
            return folder / candidate
    found = sorted(p.name for p in folder.iterdir())
    shown = ", ".join(found[:8]) + (f" and {len(found) - 8} more" if len(found) > 8 else "")
    raise XpnetError(
        f"MNIST folder {folder} has no {name} (or {name}.gz); found: {shown or 'nothing'}; "
        f"put the four MNIST IDX files there or {FIX}"
    )


def _read_bytes(file):
    """The decompressed contents; gzip is recognised by its magic, not by the name."""
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise XpnetError(f"cannot read MNIST file {file} ({exc.strerror or exc}); fix its permissions or {FIX}") from None
    try:
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except _GZIP_ERRORS as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise XpnetError(f"MNIST file {file} is corrupt or truncated ({reason}); download it again or {FIX}") from None


def _read_idx(file, magic):
    data = _read_bytes(file)
    header = 16 if magic == IMAGE_MAGIC else 8
    found = int.from_bytes(data[:4], "big")
    if len(data) >= 4 and found != magic:
        kind = "images" if magic == IMAGE_MAGIC else "labels"
        hint = "; it looks like the images and labels files are swapped" if found in (IMAGE_MAGIC, LABEL_MAGIC) else ""
        raise XpnetError(
            f"MNIST file {file} has magic number 0x{found:08x}, expected 0x{magic:08x} for {kind}"
            f"{hint}; check the file names or download the files again"
        )
    if len(data) < header:
        raise XpnetError(f"MNIST file {file} is truncated: {len(data)} bytes, shorter than its header; download it again or {FIX}")
    dims = np.frombuffer(data, ">u4", count=header // 4)
    if magic == IMAGE_MAGIC and (dims[2], dims[3]) != (SIDE, SIDE):
        raise XpnetError(f"MNIST file {file} holds {dims[2]}x{dims[3]} images, expected 28x28; point --data at real MNIST")
    count = int(dims[1])
    size = count * (SIDE * SIDE if magic == IMAGE_MAGIC else 1)
    what = "pixels" if magic == IMAGE_MAGIC else "labels"
    if len(data) - header != size:
        problem = "is truncated" if len(data) - header < size else "has trailing bytes"
        raise XpnetError(
            f"MNIST file {file} {problem}: expected {size} bytes of {what}, got {len(data) - header}; "
            f"download it again or {FIX}"
        )
    values = np.frombuffer(data, np.uint8, offset=header)
    return values.reshape(count, SIDE * SIDE) if magic == IMAGE_MAGIC else values


def _load_idx_folder(folder):
    arrays = {}
    for split, (images_name, labels_name) in FILES.items():
        images_file, labels_file = _find(folder, images_name), _find(folder, labels_name)
        images, labels = _read_idx(images_file, IMAGE_MAGIC), _read_idx(labels_file, LABEL_MAGIC)
        if len(images) != len(labels):
            raise XpnetError(
                f"MNIST {split} split has {len(images)} images in {images_file.name} but {len(labels)} labels "
                f"in {labels_file.name}; the files do not belong together, download them again"
            )
        if labels.size and labels.max() > 9:
            raise XpnetError(f"MNIST file {labels_file} has label {labels.max()}, outside 0..9; download it again or {FIX}")
        arrays["x_" + split], arrays["y_" + split] = images, labels
    return _to_dataset(arrays)


# --- npz files --------------------------------------------------------------


def _load_npz(file, fix):
    """The common mnist.npz layout; pickled (object) arrays are refused, never executed."""
    if not zipfile.is_zipfile(file):
        raise XpnetError(f"{file} is not an .npz (zip) file; {fix}")
    try:
        with np.load(file, allow_pickle=False) as npz:
            missing = [key for key in KEYS if key not in npz.files]
            if missing:
                raise XpnetError(f"{file} lacks {', '.join(missing)} (it has {', '.join(npz.files) or 'nothing'}); {fix}")
            arrays = {key: npz[key] for key in KEYS}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if "pickle" in reason:
            raise XpnetError(f"{file} holds object arrays that need pickle, which is refused for safety; {fix}") from None
        raise XpnetError(f"{file} is not a readable .npz file ({reason}); {fix}") from None
    for split in ("train", "test"):
        x, y = arrays["x_" + split], arrays["y_" + split]
        if x.ndim == 3 and x.shape[1:] == (SIDE, SIDE):
            x = x.reshape(len(x), SIDE * SIDE)
        if x.ndim != 2 or x.shape[1] != SIDE * SIDE or y.shape != (x.shape[0],):
            raise XpnetError(
                f"{file}: x_{split} has shape {x.shape} and y_{split} {y.shape}, "
                f"expected (N, 28, 28) or (N, 784) images and (N,) labels; {fix}"
            )
        if x.dtype.kind == "f":
            if x.size and not (np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
                raise XpnetError(f"{file}: float x_{split} must hold pixels in [0, 1]; {fix}")
        elif x.dtype != np.uint8:
            raise XpnetError(f"{file}: x_{split} has dtype {x.dtype}, expected uint8 or float in [0, 1]; {fix}")
        if y.dtype.kind not in "iu" or (y.size and (y.min() < 0 or y.max() > 9)):
            raise XpnetError(f"{file}: y_{split} must hold integer labels 0..9 (dtype {y.dtype}); {fix}")
        arrays["x_" + split], arrays["y_" + split] = x, y
    return _to_dataset(arrays)


def _to_dataset(arrays):
    """float32 pixels in [0, 1] and int32 labels, the types every backend expects."""
    def pixels(x):
        return x.astype(np.float32) / np.float32(255) if x.dtype == np.uint8 else x.astype(np.float32)

    return Dataset(
        x_train=pixels(arrays["x_train"]), y_train=arrays["y_train"].astype(np.int32),
        x_test=pixels(arrays["x_test"]), y_test=arrays["y_test"].astype(np.int32),
    )


# --- download ---------------------------------------------------------------


def _download_error(reason):
    reason = " ".join(str(reason).split())[:300]
    return XpnetError(f"could not download MNIST from the Hugging Face Hub ({reason}); no internet? {FIX}")


def _check_reachable(timeout):
    """One bounded HTTP request to the Hub, so an offline machine fails in seconds.

    huggingface_hub retries a silent server for minutes; this asks once. It runs
    in a daemon thread because name resolution ignores socket timeouts. urllib
    honours the same proxy variables as the Hub client; any HTTP answer counts.
    """
    endpoint = (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    url = (endpoint if "//" in endpoint else "https://" + endpoint) + f"/api/datasets/{HF_DATASET}"
    outcome = []

    def ask():
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
            outcome.append(None)
        except urllib.error.HTTPError:  # the server answered, so it is reachable
            outcome.append(None)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            if isinstance(reason, TimeoutError):  # the socket gave up first: same as no answer
                return
            outcome.append(getattr(reason, "strerror", None) or str(reason) or type(reason).__name__)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(timeout)
    host = urlsplit(url).netloc
    if not outcome:
        raise _download_error(f"{host} did not answer within {timeout:g} s")
    if outcome[0] is not None:
        raise _download_error(f"cannot reach {host}: {outcome[0]}")


def _download(cache, timeout):
    offline = {"1", "on", "yes", "true"}
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in offline:
            raise _download_error(f"{var} is set and there is no cached copy at {cache}")
    _check_reachable(timeout)
    # huggingface_hub reads these when first imported; bound every request it makes.
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(int(timeout) or 1))
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(int(timeout) or 1))
    try:
        import datasets

        splits = datasets.load_dataset(HF_DATASET)
        arrays = {}
        for split in ("train", "test"):
            part = splits[split]
            arrays["x_" + split] = np.stack([np.asarray(img, np.uint8).reshape(SIDE * SIDE) for img in part["image"]])
            arrays["y_" + split] = np.asarray(list(part["label"]), np.uint8)
    except Exception as exc:  # datasets raises many types (HTTP, file system, parsing); all mean "no data"
        raise _download_error(f"{type(exc).__name__}: {exc}") from None
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # uint8 and uncompressed: ~55 MB that loads instantly next time
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache, buffer.getvalue())
    except (OSError, XpnetError) as exc:  # the download worked; only the next run pays for this
        warnings.warn(f"could not cache MNIST at {cache} ({exc}); set XPNET_CACHE to a writable folder", stacklevel=3)
    return _to_dataset(arrays)
