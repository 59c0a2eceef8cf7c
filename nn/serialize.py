"""Model files: float32 weights plus the architecture as JSON, as ``.npz`` or ``.safetensors``.

The file name's extension picks the format. Both hold the same things:

    architecture    a JSON string: ``MLP.config()`` plus a format name and version
                    (an array in the ``.npz``; the metadata entry ``architecture``
                    in the ``.safetensors`` header)
    layers.{i}.w    float32 (in, out)
    layers.{i}.b    float32 (out,)

Loading never executes code: NumPy reads ``.npz`` with ``allow_pickle=False``,
``.safetensors`` is a JSON header plus raw bytes by design, and the
architecture is plain JSON whose every field is type-checked and then checked
against the weights. A file from a stranger is a valid model or one clear
error (XpnetError), whatever bytes it holds.

``load_model`` also takes a folder laid out like a Hugging Face Hub repo
(``model.safetensors`` + ``config.json``) and ``hf://owner/name`` (see ``nn.hub``).
"""

import io
import json
import math
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from backends import XpnetError

from .files import atomic_write_bytes
from .hub_download import REPO_CONFIG, REPO_WEIGHTS
from .model import MLP

FORMAT = "xpnet-mlp"
VERSION = 1
EXTENSIONS = (".npz", ".safetensors")

# What a damaged .npz makes NumPy's and zipfile's readers raise: a bad zip
# directory, a short read, an unparsable array header, an unknown compression
# method or encryption (RuntimeError), a header that claims an absurd array size.
_NPZ_ERRORS = (
    OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error, struct.error,
    NotImplementedError, RuntimeError, OverflowError, MemoryError, SyntaxError, RecursionError,
)
# The JSON types each architecture field may have (before MLP checks the values).
_FIELDS = {
    "sizes": "a list of whole numbers",
    "activations": "a list of activation names",
    "output": "a name",
    "loss": "a name",
    "dropout": "a number",
    "reg": "a name",
    "reg_lambda": "a number",
    "init": "a name",
}


def check_extension(path, flag="--out"):
    """The format for ``path`` from its extension; anything else is one clear error."""
    suffix = Path(path).suffix.lower()
    if suffix not in EXTENSIONS:
        raise XpnetError(f"{flag} {path}: a model file name must end in .npz or .safetensors")
    return suffix


def architecture_json(model):
    """The architecture record: what ``load_model`` rebuilds the MLP from."""
    return json.dumps({"format": FORMAT, "version": VERSION, **model.config()})


def model_tensors(params):
    """``layers.{i}.w`` / ``layers.{i}.b`` as contiguous host float32 arrays."""
    return {
        f"layers.{i}.{name}": np.ascontiguousarray(np.asarray(layer[name]), dtype=np.float32)
        for i, layer in enumerate(params)
        for name in ("w", "b")
    }


def save_model(path, model, params, training=None):
    """Write ``model`` and host or device ``params`` atomically; the extension picks the format.

    ``training``: a JSON-ready record of how the model was trained (the
    augmentation, the recipe), kept beside the architecture; loading
    ignores it, ``read_training_record`` reads it.
    """
    tensors = model_tensors(params)
    records = {"architecture": architecture_json(model)}
    if training is not None:
        records["training"] = json.dumps(training, allow_nan=False)
    if check_extension(path) == ".safetensors":
        from safetensors.numpy import save

        data = save(tensors, metadata=records)
    else:
        buffer = io.BytesIO()
        np.savez(buffer, **{k: np.array(v) for k, v in records.items()}, **tensors)
        data = buffer.getvalue()
    atomic_write_bytes(path, data)


def load_model(path):
    """(MLP, host float32 params) from a model file, a Hub-style folder or ``hf://owner/name``."""
    text = str(path)
    if text.startswith("hf:/"):  # also "hf:/owner/name": what pathlib makes of hf://owner/name
        from .hub_download import download

        text = "hf://" + text[4:].lstrip("/")
        return _load_repo_folder(download(text), shown=text)
    path = Path(path)
    if path.is_dir():
        return _load_repo_folder(path)
    if not path.is_file():
        raise XpnetError(f"model file {path} not found: train one with `uv run train.py --out {path}`")
    if path.suffix.lower() == ".safetensors":
        architecture, arrays = _read_safetensors(path)
    else:
        architecture, arrays = _read_npz(path)
    return _model_from_arrays(path, architecture, arrays)


def _read_npz(path):
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise XpnetError(f"cannot read {path} ({exc.strerror or exc}): check its permissions") from None
    if data[:1] == b"\x80":
        raise XpnetError(
            f"{path} is a pickle, which could run code on load: refused; use a model file written by xpnet"
        )
    if not data.startswith(b"PK\x03\x04"):
        raise XpnetError(f"{path} is not an .npz (zip) file: not an xpnet model file; train one with train.py")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except _NPZ_ERRORS as exc:
        if isinstance(exc, ValueError) and "pickle" in str(exc).lower():
            raise XpnetError(
                f"{path} holds pickled Python objects, which could run code on load: refused; "
                "use a model file written by xpnet"
            ) from None
        raise XpnetError(
            f"{path} is truncated or corrupt ({type(exc).__name__}): not a readable xpnet model file; train a new one"
        ) from None
    arrays.pop("training", None)  # how it was trained: read by read_training_record, not needed to load
    record = arrays.pop("architecture", None)
    if record is not None and (record.ndim != 0 or record.dtype.kind != "U"):
        raise XpnetError(f"{path} has an unreadable architecture record (not a JSON string): not an xpnet model file")
    return (None if record is None else str(record)), arrays


def read_safetensors(path):
    """(metadata dict, arrays) of a ``.safetensors`` file; damage is one XpnetError."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        data = Path(path).read_bytes()
        arrays = load(data)  # checks the header, dtypes, shapes and offsets first
        # A valid file: 8-byte little-endian header length, then the JSON header.
        header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
        metadata = header.get("__metadata__") or {}
    except (SafetensorError, OSError, ValueError, TypeError, KeyError, MemoryError, RecursionError) as exc:
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise XpnetError(f"{path} is truncated or corrupt ({reason}): not a readable .safetensors file") from None
    return metadata, arrays


def _read_safetensors(path):
    metadata, arrays = read_safetensors(path)
    return metadata.get("architecture"), arrays


def _load_repo_folder(folder, shown=None):
    """A folder laid out like a Hub model repo: the weights, and a config.json that must agree."""
    shown = shown or str(folder)
    weights, config_file = Path(folder) / REPO_WEIGHTS, Path(folder) / REPO_CONFIG
    if not weights.is_file():
        raise XpnetError(f"{shown} has no {REPO_WEIGHTS}: not an xpnet model repo (push one with train.py --push-to-hub)")
    architecture, arrays = _read_safetensors(weights)
    model, params = _model_from_arrays(weights, architecture, arrays)
    if config_file.is_file():
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            raise XpnetError(f"{config_file} is unreadable ({type(exc).__name__}): repair or delete it") from None
        if config != json.loads(architecture):
            raise XpnetError(
                f"{shown}: {REPO_CONFIG} and {REPO_WEIGHTS} describe different models; "
                f"the weights' own architecture is {model.sizes}: fix or delete {REPO_CONFIG}"
            )
    return model, params


def parse_architecture(path, text):
    """The MLP that an architecture record describes, after checking every field's type."""
    if text is None:
        raise XpnetError(f"{path} has no architecture record: not an xpnet model file")
    try:
        config = json.loads(text)
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
    except (ValueError, RecursionError) as exc:
        reason = " ".join(str(exc).split())[:120]
        raise XpnetError(f"{path} has an unreadable architecture record ({reason}): not an xpnet model file") from None
    if config.pop("format", None) != FORMAT or config.pop("version", None) != VERSION:
        raise XpnetError(f"{path} is not an xpnet model file of format {FORMAT} v{VERSION}")
    for name, value in config.items():
        if name not in _FIELDS:
            raise XpnetError(f"{path} has an unexpected architecture field {name!r}: not a model this xpnet can load")
        if not _has_type(name, value):
            raise XpnetError(f"{path}: architecture field {name!r} must be {_FIELDS[name]}, got {json.dumps(value)[:60]}")
    try:
        return MLP(**config)
    except XpnetError as exc:
        raise XpnetError(f"{path}: {exc}") from None


def _has_type(name, value):
    def is_number(v):
        return type(v) in (int, float) and math.isfinite(v)

    if name == "sizes":
        return isinstance(value, list) and all(type(n) is int for n in value)
    if name == "activations":
        return isinstance(value, str) or (isinstance(value, list) and all(isinstance(a, str) for a in value))
    if name in ("dropout", "reg_lambda"):
        return is_number(value)
    return isinstance(value, str)


def check_params(path, model, arrays, prefix="layers"):
    """Pop ``{prefix}.{i}.w/b`` from ``arrays`` as float32 params shaped for ``model``."""
    params = []
    for i, (fan_in, fan_out) in enumerate(zip(model.sizes[:-1], model.sizes[1:])):
        layer = {}
        for name, shape in (("w", (fan_in, fan_out)), ("b", (fan_out,))):
            key = f"{prefix}.{i}.{name}"
            if key not in arrays:
                raise XpnetError(f"{path} lacks {key}: the weights do not match the architecture {str(list(model.sizes))[:80]}")
            value = arrays.pop(key)
            if value.shape != shape or value.dtype.kind != "f":
                raise XpnetError(f"{path}: {key} is {value.dtype} {value.shape}, the architecture needs float {shape}")
            value = value.astype(np.float32)
            if not np.isfinite(value).all():
                raise XpnetError(f"{path}: {key} holds NaN or infinite values: not a usable model; train a new one")
            layer[name] = value
        params.append(layer)
    return params


def read_training_record(path):
    """The ``training`` record ``save_model`` wrote into a model file, or None."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        text = read_safetensors(path)[0].get("training")
    else:
        with np.load(path, allow_pickle=False) as archive:
            text = str(archive["training"]) if "training" in archive.files else None
    try:
        return None if text is None else json.loads(text)
    except ValueError:
        raise XpnetError(f"{path} has an unreadable training record: not written by this xpnet") from None


def _model_from_arrays(path, architecture, arrays):
    model = parse_architecture(path, architecture)
    params = check_params(path, model, arrays)
    if arrays:
        raise XpnetError(f"{path} has arrays the architecture does not use: {', '.join(map(ascii, sorted(arrays)[:5]))}")
    return model, params
