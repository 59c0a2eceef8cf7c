"""Model files: float32 weights plus the architecture as JSON, in one ``.npz``.

Loading never executes code: NumPy reads the file with ``allow_pickle=False``,
and the architecture is plain JSON checked against the weights, so a file
from a stranger is either a valid model or one clear error.

Layout: ``architecture`` (a JSON string: ``MLP.config()`` and a format
version) and ``layers.{i}.w`` (in, out) / ``layers.{i}.b`` (out,).
"""

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from backends import XpnetError

from .files import atomic_write_bytes
from .model import MLP

FORMAT = "xpnet-mlp"
VERSION = 1


def save_model(path, model, params):
    """Write ``model`` and host or device ``params`` (anything np.asarray takes) atomically."""
    arrays = {"architecture": np.array(json.dumps({"format": FORMAT, "version": VERSION, **model.config()}))}
    for i, layer in enumerate(params):
        for name in ("w", "b"):
            arrays[f"layers.{i}.{name}"] = np.asarray(layer[name], dtype=np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_model(path):
    """(MLP, host float32 params) from a file written by ``save_model``."""
    path = Path(path)
    if not path.is_file():
        raise XpnetError(f"model file {path} not found: train one with `uv run train.py --out {path}`")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise XpnetError(
                f"{path} holds pickled Python objects, which could run code on load: refused; "
                "use a model file written by xpnet"
            ) from None
        raise XpnetError(f"{path} is not a readable xpnet model file ({exc}); train a new one") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise XpnetError(f"{path} is truncated or corrupt ({type(exc).__name__}); train a new one") from None
    return _model_from_arrays(path, arrays)


def _model_from_arrays(path, arrays):
    if "architecture" not in arrays:
        raise XpnetError(f"{path} has no architecture record: not an xpnet model file")
    try:
        config = json.loads(str(arrays.pop("architecture")))
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise XpnetError(f"{path} has an unreadable architecture record ({exc}): not an xpnet model file") from None
    if config.pop("format", None) != FORMAT or config.pop("version", None) != VERSION:
        raise XpnetError(f"{path} is not an xpnet model file of format {FORMAT} v{VERSION}")
    try:
        model = MLP(**config)
    except XpnetError as exc:
        raise XpnetError(f"{path}: {exc}") from None
    except TypeError as exc:
        raise XpnetError(f"{path} has an unexpected architecture field ({exc})") from None

    params = []
    for i, (fan_in, fan_out) in enumerate(zip(model.sizes[:-1], model.sizes[1:])):
        layer = {}
        for name, shape in (("w", (fan_in, fan_out)), ("b", (fan_out,))):
            key = f"layers.{i}.{name}"
            if key not in arrays:
                raise XpnetError(f"{path} lacks {key}: the weights do not match the architecture {list(model.sizes)}")
            value = arrays.pop(key)
            if value.shape != shape or value.dtype.kind != "f":
                raise XpnetError(
                    f"{path}: {key} is {value.dtype} {value.shape}, the architecture needs float {shape}"
                )
            layer[name] = value.astype(np.float32)
        params.append(layer)
    if arrays:
        raise XpnetError(f"{path} has arrays the architecture does not use: {', '.join(sorted(arrays))}")
    return model, params
