"""Your own digits: 28x28 labelled samples that gui.py saves and train.py --extra-data reads.

One small ``.npz`` per sample, named ``digit-<label>-<time>.npz`` so a folder
listing reads like a contact sheet, holding ``image`` (uint8 28x28, white ink
on black as in MNIST) and ``label`` (the digit, 0-9). The label inside the
file is the truth; the name is for people. Files are written atomically and
read with ``allow_pickle=False``: a bad file is one line naming it and the fix.
"""

import io
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

from backends.errors import XpnetError

from .files import atomic_write_bytes
from .preprocess import SIDE


def save_sample(folder, image, label):
    """Write ``image`` (float ink in [0, 1], 28x28) as a sample of digit ``label``; return its path."""
    folder = Path(folder)
    image = np.asarray(image)
    if image.shape != (SIDE, SIDE) or not 0 <= int(label) <= 9:
        raise ValueError(f"a sample is a 28x28 image of a digit 0-9, got {image.shape} labelled {label}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise XpnetError(f"cannot create the samples folder {folder} ({exc.strerror}); pass --samples DIR") from None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = folder / f"digit-{label}-{stamp}.npz", 1
    while path.exists():  # two saves within a second
        n += 1
        path = folder / f"digit-{label}-{stamp}-{n}.npz"
    buffer = io.BytesIO()
    pixels = np.rint(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    np.savez(buffer, image=pixels, label=np.int64(label))
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_samples(folder):
    """(images float32 (N, 784) in [0, 1], labels int32 (N,)) from every ``*.npz`` in ``folder``."""
    folder = Path(folder)
    fix = "save samples with gui.py (draw, press S, then the digit) and pass that folder"
    if not folder.is_dir():
        problem = "does not exist" if not folder.exists() else "is not a folder"
        raise XpnetError(f"--extra-data {folder} {problem}; {fix}")
    files = sorted(folder.glob("*.npz"))
    if not files:
        raise XpnetError(f"--extra-data folder {folder} holds no .npz samples; {fix}")
    images, labels = zip(*(_read_sample(file) for file in files))
    x = np.stack(images).reshape(len(files), SIDE * SIDE).astype(np.float32) / np.float32(255)
    return x, np.asarray(labels, np.int32)


def _read_sample(file):
    fix = "delete it or save it again with gui.py"
    if not zipfile.is_zipfile(file):
        raise XpnetError(f"sample {file} is not an .npz (zip) file; {fix}")
    try:
        with np.load(file, allow_pickle=False) as npz:
            if "image" not in npz.files or "label" not in npz.files:
                raise XpnetError(f"sample {file} lacks 'image' or 'label' (it has {', '.join(npz.files) or 'nothing'}); {fix}")
            image, label = npz["image"], npz["label"]
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if "pickle" in reason:
            reason = "it holds pickled objects, refused for safety"
        raise XpnetError(f"sample {file} is not a readable .npz ({reason}); {fix}") from None
    if image.shape != (SIDE, SIDE) or image.dtype != np.uint8:
        raise XpnetError(f"sample {file} has a {image.dtype} {image.shape} image, expected uint8 (28, 28); {fix}")
    if label.shape != () or label.dtype.kind not in "iu" or not 0 <= int(label) <= 9:
        raise XpnetError(f"sample {file} has label {label.tolist()!r}, expected one whole number 0-9; {fix}")
    return image, int(label)
