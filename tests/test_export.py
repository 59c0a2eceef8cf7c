"""ONNX export: onnxruntime on CPU computes the same probabilities as xpnet."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends import XpnetError, get_backend
from nn import MLP, Adam, Schedule, fit
from nn.activations import HIDDEN_ACTIVATIONS
from nn.export import ONNX_OPS, export_onnx, to_onnx
from nn.serialize import save_model

ROOT = Path(__file__).resolve().parent.parent
onnx = pytest.importorskip("onnx", reason="the onnx package is not installed (uv sync --extra onnx)")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed for this Python (dev group)")


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _perturbed(model, seed):
    rng = np.random.default_rng(seed)
    return [{k: (v + rng.normal(0, 0.05, v.shape)).astype(np.float32) for k, v in layer.items()}
            for layer in model.init_params(seed)]


def test_every_activation_has_an_onnx_op():
    assert set(HIDDEN_ACTIVATIONS) | {"softmax"} <= set(ONNX_OPS)


@pytest.fixture(scope="module")
def trained(mnist):
    """The default architecture, trained for one epoch on 12,000 real digits."""
    be = get_backend("numpy")
    model = MLP(sizes=(784, 128, 64, 10))
    params, _ = fit(be, model, Adam(), Schedule("constant", 2e-3, 1), mnist.x_train[:12_000], mnist.y_train[:12_000],
                    epochs=1, batch_size=128, seed=0)
    return model, be.tree_to_host(params)


def test_onnxruntime_matches_xpnet_on_1000_real_test_digits(trained, mnist, tmp_path):
    model, params = trained
    export_onnx(tmp_path / "m.onnx", model, params)
    x = mnist.x_test[:1000]
    expected = model.predict(params, x)
    (got,) = _session(tmp_path / "m.onnx").run(None, {"pixels": x})
    assert got.shape == (1000, 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert (got.argmax(1) == mnist.y_test[:1000]).mean() > 0.85  # a real classifier, not noise


@pytest.mark.parametrize(
    "model",
    [
        MLP(sizes=(784, 48, 32, 10), activations=("leaky_relu", "sigmoid"), init="glorot"),
        MLP(sizes=(784, 40, 10), activations=("tanh",), init="glorot", dropout=0.3),
        MLP(sizes=(784, 24, 16, 10), activations=("linear", "relu"), loss="mse", output="linear"),
        MLP(sizes=(784, 10)),
    ],
    ids=["leaky_relu-sigmoid", "tanh-dropout", "linear-relu-linear-output", "no-hidden-layer"],
)
def test_every_activation_and_output_exports_exactly(model, mnist, tmp_path):
    params = _perturbed(model, seed=len(model.sizes))
    path = tmp_path / "m.onnx"
    export_onnx(path, model, params)
    session = _session(path)
    assert [o.name for o in session.get_outputs()] == ["probabilities" if model.output == "softmax" else "outputs"]
    x = mnist.x_test[:1000]
    (got,) = session.run(None, {"pixels": x})
    np.testing.assert_allclose(got, model.predict(params, x), rtol=0, atol=1e-5)


def test_export_command_line(tmp_path):
    model = MLP(sizes=(784, 16, 10))
    params = _perturbed(model, 1)
    save_model(tmp_path / "m.safetensors", model, params)

    def export(*args):
        return subprocess.run([sys.executable, "-m", "nn.export", *map(str, args)], capture_output=True, text=True,
                              cwd=ROOT, timeout=120)

    result = export(tmp_path / "m.safetensors", tmp_path / "m.onnx")
    assert result.returncode == 0, result.stderr
    x = np.random.default_rng(0).random((5, 784), dtype=np.float32)
    np.testing.assert_allclose(_session(tmp_path / "m.onnx").run(None, {"pixels": x})[0],
                               model.predict(params, x), atol=1e-6)
    for args, needle in [
        ((tmp_path / "m.safetensors", tmp_path / "m.npz"), ".onnx"),  # arguments swapped by mistake
        ((tmp_path / "absent.npz", tmp_path / "x.onnx"), "not found"),
        ((tmp_path / "m.safetensors",), "required"),
    ]:
        result = export(*args)
        assert result.returncode == 2 and needle in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_missing_onnx_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(XpnetError, match="uv sync --extra onnx"):
        to_onnx(MLP(sizes=(4, 3)), MLP(sizes=(4, 3)).init_params(0))


def test_train_exports_onnx_next_to_a_safetensors_model(tmp_path):
    from nn.serialize import load_model
    from tests.digits import write_digits

    data = write_digits(tmp_path / "digits", n_train=400)
    out, graph = tmp_path / "m.safetensors", tmp_path / "m.onnx"
    train = [sys.executable, str(ROOT / "train.py"), "--backend", "numpy", "--data", str(data), "--val-size", "100",
             "--epochs", "1", "--hidden", "32", "--out", str(out), "--no-progress"]
    bad = subprocess.run([*train, "--export-onnx", str(tmp_path / "m.txt")], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "--export-onnx" in bad.stderr and not out.exists()  # refused before training
    result = subprocess.run([*train, "--export-onnx", str(graph)], capture_output=True, text=True, cwd=ROOT,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    model, params = load_model(out)
    x = np.random.default_rng(1).random((50, 784), dtype=np.float32)
    np.testing.assert_allclose(_session(graph).run(None, {"pixels": x})[0], model.predict(params, x), atol=1e-6)
