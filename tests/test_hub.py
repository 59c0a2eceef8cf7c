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


def _train_args(tmp_path):
    from tests.digits import write_digits

    data = write_digits(tmp_path / "digits", n_train=300)
    return ["--backend", "numpy", "--data", str(data), "--val-size", "100", "--epochs", "1", "--hidden", "16",
            "--out", str(tmp_path / "m.npz"), "--no-progress", "--push-to-hub", "someone/digits"]


@pytest.mark.parametrize("case", ["offline", "no token", "no answer"])
def test_train_push_to_hub_is_refused_before_training_when_it_cannot_work(case, tmp_path):
    env = _offline_env(tmp_path / "cache")
    env["HF_HOME"] = str(tmp_path / "hf-home")  # no token stored by `hf auth login` there
    if case != "offline":
        env.pop("HF_HUB_OFFLINE")
    if case == "no answer":  # a token, and a Hub that refuses the connection at once
        env.update(HF_TOKEN="hf_not_a_real_token", HF_ENDPOINT="http://127.0.0.1:9")
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), *_train_args(tmp_path)], capture_output=True,
                            text=True, cwd=ROOT, env=env, timeout=120)
    needle = {"offline": "HF_HUB_OFFLINE", "no token": "needs a Hugging Face token", "no answer": "did not answer"}
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert needle[case] in result.stderr and "python -m nn.hub push MODEL someone/digits" in result.stderr
    assert "data:" not in result.stdout and not (tmp_path / "m.npz").exists()  # nothing trained, nothing written


class _FakeHub:
    """huggingface_hub.HfApi as the tests need it: records what would be uploaded, or fails like a network."""

    uploaded, fail = {}, False

    def __init__(self, token=None):
        pass

    def create_repo(self, repo_id, private=False, exist_ok=False):
        if _FakeHub.fail:
            raise ConnectionError("connection reset by peer")
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, repo_id, folder_path, commit_message):
        _FakeHub.uploaded = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}


def test_a_push_that_fails_at_the_end_keeps_the_model_and_says_how_to_push_it(tmp_path, monkeypatch, capsys):
    import nn.hub
    import train

    monkeypatch.setattr(nn.hub, "check_can_push", lambda repo, **_: None)
    monkeypatch.setattr("huggingface_hub.HfApi", _FakeHub)
    monkeypatch.setattr(_FakeHub, "fail", True)
    assert train.run(_train_args(tmp_path)) == 2
    line = capsys.readouterr().err.strip()
    assert "could not push to the Hub repo someone/digits" in line and len(line.splitlines()) == 1
    assert f"push it later with `uv run python -m nn.hub push {tmp_path / 'm.npz'} someone/digits`" in line
    assert load_model(tmp_path / "m.npz")[0].sizes == (784, 16, 10)


def test_python_m_nn_hub_push_uploads_a_saved_model_with_its_card(tmp_path, monkeypatch, capsys):
    import nn.hub
    from nn.serialize import save_model

    model = MLP(sizes=(784, 8, 10))
    save_model(tmp_path / "m.npz", model, model.init_params(0))
    (tmp_path / "metrics.json").write_text(json.dumps({"test_accuracy": 0.9731}))
    monkeypatch.setattr(nn.hub, "check_can_push", lambda repo, **_: None)
    monkeypatch.setattr("huggingface_hub.HfApi", _FakeHub)
    assert nn.hub.main(["push", str(tmp_path / "m.npz"), "someone/digits", "--metrics-json",
                        str(tmp_path / "metrics.json")]) == 0
    assert capsys.readouterr().out.strip() == "pushed to https://huggingface.co/someone/digits"
    assert set(_FakeHub.uploaded) == set(REPO_FILES)
    assert b"97.31" in _FakeHub.uploaded["README.md"]  # the accuracy on the card
    offline = subprocess.run([sys.executable, "-m", "nn.hub", "push", str(tmp_path / "m.npz"), "someone/digits"],
                             capture_output=True, text=True, cwd=ROOT, env=_offline_env(tmp_path), timeout=120)
    assert offline.returncode == 2 and "Traceback" not in offline.stderr
    assert offline.stderr.startswith("python -m nn.hub: error: pushing to someone/digits needs the network")
