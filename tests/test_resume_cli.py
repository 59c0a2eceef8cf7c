"""train.py checkpoints as a user meets them: a run killed with SIGKILL or
stopped with Ctrl-C, then resumed with --resume DIR alone, ends bit for bit
where the uninterrupted run ends; a diverging run leaves every file alone.

The data: synthetic digits (tests/digits.py), sized so that an epoch takes
a few tenths of a second and a kill lands inside the epoch it aims at.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from backends import unavailable_reason
from nn.checkpoint import FILE
from nn.serialize import load_model, read_safetensors
from tests.digits import write_digits

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 4
RUN = ["--epochs", EPOCHS, "--batch-size", 8, "--hidden", "64,32", "--dropout", 0.1, "--val-size", 500,
       "--patience", 3, "--no-progress"]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("digits"), n_train=5000)


def _command(*args):
    return [sys.executable, str(ROOT / "train.py"), *map(str, args)]


def _env():
    env = dict(os.environ)
    env.pop("XPNET_BACKEND", None)
    return env


def _train(*args, env=None):
    return subprocess.run(_command(*args), capture_output=True, text=True, cwd=ROOT, env=env or _env(), timeout=300)


def _saved_epoch(folder):
    """(epoch, step) of the checkpoint in ``folder``, or None while there is none."""
    if not (Path(folder) / FILE).is_file():
        return None
    metadata, _ = read_safetensors(Path(folder) / FILE)  # complete: the write is atomic
    meta = json.loads(metadata["xpnet-checkpoint"])
    return meta["epoch"], meta["step"]


def _start_and_wait(args, folder, until_epoch):
    """Start train.py and return it once the checkpoint of ``until_epoch`` exists."""
    process = subprocess.Popen(_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=ROOT, env=_env())
    deadline = time.monotonic() + 240
    while (_saved_epoch(folder) or (0, 0))[0] < until_epoch:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"train.py ended or stalled before epoch {until_epoch}: {process.communicate()[1][-2000:]}")
        time.sleep(0.002)
    return process


def _final_arrays(folder):
    """Every array of the final checkpoint and its metadata, seconds left out."""
    metadata, arrays = read_safetensors(Path(folder) / FILE)
    meta = json.loads(metadata["xpnet-checkpoint"])
    for record in meta["history"]:
        record.pop("seconds")
    return arrays, meta


def _assert_same_run(reference, other, exact):
    ref_arrays, ref_meta = _final_arrays(reference)
    arrays, meta = _final_arrays(other)
    assert sorted(arrays) == sorted(ref_arrays)
    for name in ref_arrays:
        if exact:
            np.testing.assert_array_equal(arrays[name], ref_arrays[name], err_msg=name)
        else:
            np.testing.assert_allclose(arrays[name], ref_arrays[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert [r["epoch"] for r in meta["history"]] == list(range(1, EPOCHS + 1))  # no gap, no duplicate
    if exact:
        assert meta["history"] == ref_meta["history"]


def _metrics(path):
    """--metrics-json without what differs between runs that compute the same (times, paths)."""
    figures = json.loads(Path(path).read_text())
    for record in figures["history"]:
        record.pop("seconds")
    return {k: v for k, v in figures.items() if k not in ("epoch_seconds", "train_seconds", "args", "device")}


@pytest.fixture(scope="module")
def straight(digits, tmp_path_factory):
    """The uninterrupted runs, one per backend, shared by the tests below."""
    runs = {}

    def get(backend):
        if backend not in runs:
            folder = tmp_path_factory.mktemp(f"straight-{backend}")
            result = _train("--backend", backend, "--data", digits, *RUN, "--checkpoint-dir", folder / "ck",
                            "--out", folder / "model.safetensors", "--metrics-json", folder / "metrics.json")
            assert result.returncode == 0, result.stderr
            runs[backend] = folder
        return runs[backend]

    return get


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_run_killed_in_epoch_3_and_resumed_equals_the_straight_run(backend, digits, straight, tmp_path):
    reason = unavailable_reason(backend)
    if reason:
        pytest.skip(f"{backend} backend unavailable: {reason}")
    reference = straight(backend)
    ck = tmp_path / "ck"
    process = _start_and_wait(["--backend", backend, "--data", digits, *RUN, "--checkpoint-dir", ck,
                               "--out", tmp_path / "model.safetensors", "--metrics-json", tmp_path / "metrics.json"],
                              ck, until_epoch=2)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert _saved_epoch(ck) == (2, 0), "the kill must land in epoch 3: make the epochs longer"
    assert not (tmp_path / "model.safetensors").exists()

    result = _train("--resume", ck)  # nothing else: the checkpoint knows the run
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stdout and "epoch 3/4" in result.stdout and "epoch 2/4" not in result.stdout
    exact = backend == "numpy"
    _assert_same_run(reference / "ck", ck, exact)
    figures, ref_figures = (_metrics(folder / "metrics.json") for folder in (tmp_path, reference))
    assert figures["best_epoch"] == ref_figures["best_epoch"] and figures["epochs"] == EPOCHS
    if exact:
        assert figures == ref_figures
    model, params = load_model(tmp_path / "model.safetensors")
    ref_model, ref_params = load_model(reference / "model.safetensors")
    assert model == ref_model
    for a, b in zip(params, ref_params):
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=0 if exact else 1e-5, atol=0 if exact else 1e-6)


def test_a_resumed_numpy_run_keeps_the_blas_threads_it_started_with(digits, tmp_path):
    """Another count of threads rounds the validation pass's products differently (seen on a 16-core
    machine whose free cores changed between the runs): resumed, a run takes the count it started
    with, unless --threads or OPENBLAS_NUM_THREADS says otherwise now."""
    ck = tmp_path / "ck"
    started = _train("--backend", "numpy", "--data", digits, *RUN, "--epochs", 1, "--checkpoint-dir", ck,
                     "--out", tmp_path / "m.npz", env={**_env(), "OPENBLAS_NUM_THREADS": "3"})
    assert started.returncode == 0, started.stderr
    assert "3 BLAS threads: OPENBLAS_NUM_THREADS=3" in started.stdout
    quiet = {k: v for k, v in _env().items() if k != "OPENBLAS_NUM_THREADS"}

    def resumed(*flags, env=quiet):
        result = _train("--resume", ck, *flags, env=env)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert f"3 BLAS threads: as the run started (--resume {ck})" in resumed()
    assert "2 BLAS threads: --threads 2" in resumed("--threads", 2)
    assert "1 BLAS thread: OPENBLAS_NUM_THREADS=1" in resumed(env={**quiet, "OPENBLAS_NUM_THREADS": "1"})


def _interrupt_in_epoch_2(*args):
    """train.py started, Ctrl-C once its first per-epoch line says epoch 2 is under way."""
    process = subprocess.Popen(_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=ROOT, env=_env())
    for line in process.stdout:
        if line.startswith("epoch 1/"):
            break
    time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(digits, straight, tmp_path):
    reference = straight("numpy")
    out = tmp_path / "model.safetensors"
    # No --checkpoint-dir: Ctrl-C still saves one, beside the model file.
    returncode, stderr = _interrupt_in_epoch_2("--backend", "numpy", "--data", digits, *RUN, "--out", out)
    assert returncode == 130, stderr
    folder = tmp_path / "model.checkpoint"
    last = stderr.strip().splitlines()[-1]
    assert "interrupted in epoch" in last and f"uv run train.py --resume {folder}" in last, stderr
    assert "Traceback" not in stderr and not out.exists()
    epoch, step = _saved_epoch(folder)
    assert (epoch, step) >= (1, 0) and epoch < EPOCHS

    # Another run with the same --out, interrupted too, keeps the first one's checkpoint.
    first = (folder / FILE).read_bytes()
    returncode, stderr = _interrupt_in_epoch_2("--backend", "numpy", "--data", digits, *RUN, "--seed", 1, "--out", out)
    assert returncode == 130, stderr
    assert f"--resume {tmp_path / 'model.2.checkpoint'}" in stderr.strip().splitlines()[-1], stderr
    assert (folder / FILE).read_bytes() == first and (tmp_path / "model.2.checkpoint" / FILE).is_file()

    # resumed into a folder of its own, so the final checkpoints can be compared
    result = _train("--resume", folder)
    assert result.returncode == 0, result.stderr
    _assert_same_run(reference / "ck", folder, exact=True)
    assert out.exists()


def test_resume_refuses_conflicting_flags_and_damaged_checkpoints(digits, straight, tmp_path):
    ck = straight("numpy") / "ck"
    result = _train("--resume", ck, "--lr", "0.1", "--epochs", "4")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--lr 0.1" in result.stderr and "--epochs" not in result.stderr  # --epochs 4 agrees

    result = _train("--backend", "numpy", "--data", digits, "--checkpoint-dir", ck)
    assert result.returncode == 2 and "--resume" in result.stderr, result.stderr

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / FILE).write_bytes((ck / FILE).read_bytes()[:-100])
    result = _train("--resume", damaged)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_diverging_run_writes_no_checkpoint_and_keeps_the_model_file(digits, tmp_path):
    out = tmp_path / "model.safetensors"
    out.write_bytes(b"the previous, good model")
    ck = tmp_path / "ck"
    result = _train("--backend", "numpy", "--data", digits, "--val-size", "500", "--optimizer", "sgd", "--lr", "1e6",
                    "--schedule", "constant", "--epochs", "2", "--out", out, "--checkpoint-dir", ck, "--no-progress")
    assert result.returncode == 2, result.stderr
    assert "diverged" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert out.read_bytes() == b"the previous, good model"
    assert not (ck / FILE).exists()


def test_in_scan_mode_ctrl_c_finishes_the_epoch_and_a_second_ctrl_c_aborts_it_at_once(digits, tmp_path):
    reason = unavailable_reason("jax")
    if reason:
        pytest.skip(reason)
    out = tmp_path / "model.npz"
    # A wide net at batch 8: each scanned epoch is one compiled call of a few seconds here.
    process = subprocess.Popen(
        _command("--backend", "jax", "--epoch-mode", "scan", "--data", digits, "--epochs", 3, "--batch-size", 8,
                 "--hidden", "1024,1024", "--val-size", 500, "--no-progress", "--out", out),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=_env())
    for line in process.stdout:
        if line.startswith("epoch 1/"):
            break
    process.send_signal(signal.SIGINT)
    said = []
    for line in process.stderr:  # the handler speaks while the compiled epoch still runs
        said.append(line)
        if line.startswith("Ctrl-C:"):
            break
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    said = "".join(said) + stderr
    assert process.returncode == 130, said
    assert "finishing this epoch (one compiled call in scan mode)" in said
    assert "epoch 2/" not in stdout  # aborted inside epoch 2, not after it
    assert "interrupted; no model file was written" in said and not out.exists()


def test_resume_remembers_data_given_by_mnist_data_and_points_more_epochs_to_init_from(digits, tmp_path):
    folder, out = tmp_path / "ck", tmp_path / "model.npz"
    env = {**_env(), "MNIST_DATA": str(digits)}
    args = ["--backend", "numpy", "--epochs", 2, "--batch-size", 64, "--hidden", "16", "--val-size", 500,
            "--augment", "none", "--no-progress", "--checkpoint-dir", folder, "--out", out]
    result = subprocess.run(_command(*args), capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    without = {k: v for k, v in env.items() if k != "MNIST_DATA"}
    # Without $MNIST_DATA now (and no network), --resume still finds the run's data: nothing left to train.
    again = subprocess.run(_command("--resume", folder, "--out", tmp_path / "again.npz"), capture_output=True,
                           text=True, cwd=ROOT, env=without, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "nothing left to train" in again.stdout
    more = _train("--resume", folder, "--epochs", 4)
    assert more.returncode == 2 and "--init-from" in more.stderr and "Traceback" not in more.stderr
