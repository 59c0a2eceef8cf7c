"""The Hugging Face Hub, offline: a repo folder written, read back, and
resolved as hf://owner/name by the real huggingface_hub from a local cache."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends import XpnetError
from nn import MLP
from nn.hub import REPO_FILES, parse_uri, write_repo_folder
from nn.serialize import load_model
from tests.reference import assert_trees_close

ROOT = Path(__file__).resolve().parent.parent
MODEL = MLP(sizes=(784, 12, 10), activations="tanh", init="glorot")
METRICS = {"test_accuracy": 0.9731, "test_loss": 0.0912, "epochs": 3, "backend": "numpy", "device": "CPU",
           "args": {"optimizer": "adam", "lr": 0.003, "batch_size": 128}}


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return [{k: (v + rng.normal(0, 0.05, v.shape)).astype(np.float32) for k, v in layer.items()}
            for layer in MODEL.init_params(seed)]


@pytest.fixture
def repo(tmp_path):
    return write_repo_folder(tmp_path / "repo", MODEL, _params(), METRICS, "someone/digits")


def test_repo_folder_round_trip(repo):
    assert sorted(p.name for p in repo.iterdir()) == sorted(REPO_FILES)
    model, params = load_model(repo)  # a folder laid out like a Hub repo loads like a file
    assert model == MODEL
    assert_trees_close(params, _params(), exact=True)
    config = json.loads((repo / "config.json").read_text())
    assert config["sizes"] == [784, 12, 10] and config["activations"] == ["tanh"]


def test_model_card_is_read_by_huggingface_hub(repo):
    from huggingface_hub import ModelCard

    card = ModelCard.load(repo / "README.md")
    (result,) = card.data.eval_results
    assert (result.metric_type, result.metric_value, result.dataset_split) == ("accuracy", 0.9731, "test")
    assert "mnist" in card.data.tags and card.data.license == "mit"
    text = card.text
    assert "97.31%" in text and "MLP 784-12-10" in text
    assert 'load_model("hf://someone/digits")' in text and "gui.py --model hf://someone/digits" in text


def test_disagreeing_or_incomplete_repo_folders_are_refused(repo):
    config = json.loads((repo / "config.json").read_text())
    (repo / "config.json").write_text(json.dumps({**config, "sizes": [784, 99, 10]}))
    with pytest.raises(XpnetError, match="describe different models"):
        load_model(repo)
    (repo / "config.json").write_text("{not json")
    with pytest.raises(XpnetError, match="config.json"):
        load_model(repo)
    (repo / "model.safetensors").unlink()
    with pytest.raises(XpnetError, match="no model.safetensors"):
        load_model(repo)


@pytest.mark.parametrize("uri", ["hf://nobody", "hf://a/b/c", "hf:///x", "hf://owner/"])
def test_bad_hub_names(uri):
    with pytest.raises(XpnetError, match="owner/name"):
        parse_uri(uri)


def test_parse_uri_with_revision():
    assert parse_uri("hf://someone/digits@v2") == ("someone/digits", "v2")
    assert parse_uri("hf://someone/digits") == ("someone/digits", None)


def _offline_env(cache):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    env.pop("HF_TOKEN", None)
    return env


def _python(code, env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=120)


def test_hf_uri_resolves_through_huggingface_hub_offline(repo, tmp_path):
    """The huggingface_hub cache layout, filled by hand: what a download leaves behind."""
    cache, commit = tmp_path / "cache", "0123456789abcdef0123456789abcdef01234567"
    snapshot = cache / "models--someone--digits" / "snapshots" / commit
    shutil.copytree(repo, snapshot)
    (cache / "models--someone--digits" / "refs").mkdir()
    (cache / "models--someone--digits" / "refs" / "main").write_text(commit)

    loaded = _python(
        "from pathlib import Path\nfrom nn.serialize import load_model\n"
        "assert load_model(Path('hf://someone/digits'))[0].sizes == (784, 12, 10)  # pathlib keeps one slash\n"
        "model, params = load_model('hf://someone/digits')\n"
        "print(model.sizes, float(params[0]['w'].sum()))", _offline_env(cache))
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split(")")[0] == "(784, 12, 10"
    assert float(loaded.stdout.split()[-1]) == pytest.approx(float(_params()[0]["w"].sum()), rel=1e-6)

    missing = _python(
        "from backends import XpnetError\nfrom nn.serialize import load_model\n"
        "try:\n    load_model('hf://someone/other')\nexcept XpnetError as exc:\n    print(exc)",
        _offline_env(cache))
    assert missing.returncode == 0 and "could not download hf://someone/other" in missing.stdout, missing.stderr


def test_push_without_network_is_one_clear_error(tmp_path):
    result = _python(
        "from backends import XpnetError\nfrom nn import MLP\nfrom nn.hub import push_model\n"
        "model = MLP(sizes=(4, 3, 2))\n"
        "try:\n    push_model('someone/digits', model, model.init_params(0), {})\n"
        "except XpnetError as exc:\n    print(exc)", _offline_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("could not push to the Hub repo someone/digits")
    assert len(result.stdout.strip().splitlines()) == 1


def test_train_push_to_hub_offline_keeps_the_model_and_fails_in_one_line(tmp_path):
    from tests.digits import write_digits

    data = write_digits(tmp_path / "digits", n_train=300)
    out = tmp_path / "m.npz"
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--backend", "numpy", "--data", str(data), "--val-size", "100",
         "--epochs", "1", "--hidden", "16", "--out", str(out), "--no-progress", "--push-to-hub", "someone/digits"],
        capture_output=True, text=True, cwd=ROOT, env=_offline_env(tmp_path / "cache"), timeout=120)
    assert result.returncode == 2 and "could not push to the Hub repo someone/digits" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert load_model(out)[0].sizes == (784, 16, 10)  # the model file was written before the push
