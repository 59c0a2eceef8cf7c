"""Model files: round trips across backends, and every bad file is one clear error."""

import io
import json
import os
import pickle
import stat
import zipfile

import numpy as np
import pytest

from backends import XpnetError, get_backend
from nn import MLP
from nn.serialize import load_model, save_model


def _trained_params(model, seed=3):
    # Any non-trivial weights do: perturb the init so biases are non-zero too.
    rng = np.random.default_rng(seed)
    return [
        {k: (v + rng.normal(0, 0.1, v.shape)).astype(np.float32) for k, v in layer.items()}
        for layer in model.init_params(seed)
    ]


def test_round_trip_is_exact(tmp_path):
    model = MLP(sizes=(13, 7, 5, 4), activations=("tanh", "leaky_relu"), loss="mse", output="linear",
                dropout=0.25, reg="l2", reg_lambda=1e-3, init="glorot")
    params = _trained_params(model)
    save_model(tmp_path / "m.npz", model, params)
    loaded_model, loaded = load_model(tmp_path / "m.npz")
    assert loaded_model == model
    for a, b in zip(params, loaded):
        for k in ("w", "b"):
            assert b[k].dtype == np.float32
            np.testing.assert_array_equal(a[k], b[k])


def test_model_from_any_backend_predicts_the_same_classes_on_numpy(be, tmp_path):
    model = MLP(sizes=(20, 9, 6))
    params = be.tree_asarray(_trained_params(model))
    x = np.random.default_rng(0).normal(size=(31, 20)).astype(np.float32)
    on_backend = be.to_host(be.make_predict(model)(params, be.asarray(x)))
    save_model(tmp_path / "m.npz", model, be.tree_to_host(params))

    numpy_be = get_backend("numpy")
    loaded_model, loaded = load_model(tmp_path / "m.npz")
    on_numpy = numpy_be.make_predict(loaded_model)(numpy_be.tree_asarray(loaded), x)
    np.testing.assert_array_equal(on_numpy.argmax(1), on_backend.argmax(1))
    np.testing.assert_allclose(on_numpy, on_backend, rtol=1e-4, atol=1e-6)


def test_save_replaces_atomically_and_leaves_no_temp_files(tmp_path):
    model = MLP(sizes=(4, 3, 2))
    target = tmp_path / "m.npz"
    target.write_bytes(b"old model")
    save_model(target, model, _trained_params(model))
    assert load_model(target)[0] == model
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX file modes only")
def test_saved_model_gets_the_mode_a_plain_open_would_give(tmp_path):
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    target = tmp_path / "m.npz"
    save_model(target, MLP(sizes=(4, 3, 2)), _trained_params(MLP(sizes=(4, 3, 2))))
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def _npz_bytes(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _valid_arrays(model=MLP(sizes=(4, 3, 2))):
    arrays = {"architecture": np.array(json.dumps({"format": "xpnet-mlp", "version": 1, **model.config()}))}
    for i, layer in enumerate(_trained_params(model)):
        arrays[f"layers.{i}.w"], arrays[f"layers.{i}.b"] = layer["w"], layer["b"]
    return arrays


class _Payload:
    def __reduce__(self):
        return (print, ("this ran while loading",))


def _changed_arrays(changes):
    """The valid arrays with some replaced (or, given None, removed)."""
    arrays = _valid_arrays()
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    return arrays


def _with(**changes):
    return _npz_bytes(**_changed_arrays(changes))


def _architecture(**changes):
    config = {"format": "xpnet-mlp", "version": 1, **MLP(sizes=(4, 3, 2)).config(), **changes}
    return np.array(json.dumps(config))


BAD_FILES = {
    "raw pickle": (pickle.dumps(_Payload()), "pickle"),
    "pickled array inside npz": (
        _with(architecture=np.array([_Payload()], dtype=object)), "pickle"
    ),
    "truncated": (_npz_bytes(**_valid_arrays())[:200], "corrupt"),
    "not a model": (b"hello, I am a text file\n", "xpnet"),
    "no architecture": (_with(architecture=None), "architecture"),
    "architecture not JSON": (_with(architecture=np.array("{oops")), "architecture"),
    "unknown activation": (_with(architecture=_architecture(activations=["swish"])), "swish"),
    "wrong weight shape": (_with(**{"layers.0.w": np.zeros((5, 3), np.float32)}), "layers.0.w"),
    "missing layer": (_with(**{"layers.1.b": None}), "layers.1.b"),
    "integer weights": (_with(**{"layers.0.b": np.zeros(3, np.int64)}), "layers.0.b"),
    "sizes disagree with weights": (_with(architecture=_architecture(sizes=[4, 8, 2])), "layers.0.w"),
    "unexpected field": (_with(architecture=_architecture(colour="blue")), "colour"),
    "extra arrays": (_with(**{"layers.7.w": np.zeros(2, np.float32)}), "layers.7.w"),
}


def test_missing_model_file_says_how_to_train_one(tmp_path):
    with pytest.raises(XpnetError, match="train.py"):
        load_model(tmp_path / "absent.npz")


def test_valid_file_is_a_zip_of_plain_arrays(tmp_path):
    model = MLP(sizes=(4, 3, 2))
    save_model(tmp_path / "m.npz", model, _trained_params(model))
    with zipfile.ZipFile(tmp_path / "m.npz") as archive:
        names = sorted(archive.namelist())
    assert names == ["architecture.npy", "layers.0.b.npy", "layers.0.w.npy", "layers.1.b.npy", "layers.1.w.npy"]


# -- .safetensors: the same model, the same refusals --------------------------


def _safetensors_bytes(arrays=None, architecture=None, metadata=None):
    from safetensors.numpy import save

    arrays = dict(_valid_arrays() if arrays is None else arrays)
    record = arrays.pop("architecture", None)
    if metadata is None:
        metadata = {"architecture": str(record if architecture is None else architecture)}
    return save(arrays, metadata=metadata)


def _safe_with(**changes):
    return _safetensors_bytes(_changed_arrays(changes))


BAD_SAFETENSORS = {
    "raw pickle": (pickle.dumps(_Payload()), "corrupt"),
    "truncated": (_safetensors_bytes()[:-40], "corrupt"),
    "header only": (_safetensors_bytes()[:100], "corrupt"),
    "npz under the wrong name": (_npz_bytes(**_valid_arrays()), "corrupt"),
    "no architecture": (_safetensors_bytes(metadata={}), "architecture"),
    "architecture not JSON": (_safetensors_bytes(architecture="{oops"), "architecture"),
    "unknown activation": (_safetensors_bytes(architecture=_architecture(activations=["swish"])), "swish"),
    "sizes not numbers": (_safetensors_bytes(architecture=_architecture(sizes=[4, "3", 2])), "sizes"),
    "wrong weight shape": (_safe_with(**{"layers.0.w": np.zeros((5, 3), np.float32)}), "layers.0.w"),
    "missing layer": (_safe_with(**{"layers.1.b": None}), "layers.1.b"),
    "integer weights": (_safe_with(**{"layers.0.b": np.zeros(3, np.int64)}), "layers.0.b"),
    "NaN weights": (_safe_with(**{"layers.0.b": np.full(3, np.nan, np.float32)}), "NaN"),
    "sizes disagree with weights": (_safetensors_bytes(architecture=_architecture(sizes=[4, 8, 2])), "layers.0.w"),
    "extra arrays": (_safe_with(**{"layers.7.w": np.zeros(2, np.float32)}), "layers.7.w"),
}


def test_safetensors_round_trip_and_metadata(tmp_path):
    from safetensors import safe_open

    model = MLP(sizes=(13, 7, 5, 4), activations=("sigmoid", "relu"), dropout=0.1, init="glorot")
    params = _trained_params(model)
    save_model(tmp_path / "m.safetensors", model, params)
    loaded_model, loaded = load_model(tmp_path / "m.safetensors")
    assert loaded_model == model
    for a, b in zip(params, loaded):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    # Any safetensors reader sees plain float32 tensors and the architecture as JSON.
    with safe_open(tmp_path / "m.safetensors", framework="np") as handle:
        assert sorted(handle.keys()) == [f"layers.{i}.{k}" for i in range(3) for k in ("b", "w")]
        assert handle.get_tensor("layers.0.w").dtype == np.float32
        assert json.loads(handle.metadata()["architecture"])["sizes"] == [13, 7, 5, 4]


def test_the_extension_picks_the_format(tmp_path):
    model = MLP(sizes=(4, 3, 2))
    save_model(tmp_path / "m.npz", model, _trained_params(model))
    save_model(tmp_path / "m.SAFETENSORS", model, _trained_params(model))
    assert zipfile.is_zipfile(tmp_path / "m.npz") and not zipfile.is_zipfile(tmp_path / "m.SAFETENSORS")
    with pytest.raises(XpnetError, match=r"\.npz or \.safetensors"):
        save_model(tmp_path / "m.bin", model, _trained_params(model))
    assert not (tmp_path / "m.bin").exists()


def test_single_npy_file_is_refused(tmp_path):
    np.save(tmp_path / "w.npy", np.zeros(3, np.float32))
    (tmp_path / "w.npz").write_bytes((tmp_path / "w.npy").read_bytes())
    with pytest.raises(XpnetError, match="not an .npz"):
        load_model(tmp_path / "w.npz")


def _bad_cases():
    return [pytest.param(".npz", name, id=f"npz-{name}") for name in BAD_FILES] + [
        pytest.param(".safetensors", name, id=f"safetensors-{name}") for name in BAD_SAFETENSORS
    ]


@pytest.mark.parametrize("suffix, name", _bad_cases())
def test_bad_model_file_is_one_clear_line(suffix, name, tmp_path, capsys):
    content, needle = (BAD_FILES if suffix == ".npz" else BAD_SAFETENSORS)[name]
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    with pytest.raises(XpnetError) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message
    assert needle.lower() in message.lower()
    assert "this ran while loading" not in capsys.readouterr().out
