"""BLAS threads: the automatic choice counts the cores left idle, and the count never changes a result."""

import os

import numpy as np
import pytest

from backends import XpnetError, threads
from conftest import mnist_dir
from test_cli import run_train


def _fake_cpu(monkeypatch, cores, idle_share):
    """/proc/stat as it reads with ``idle_share`` of ``cores`` cores idle between two reads."""
    readings = iter([(0, 0), (int(1000 * idle_share), 1000)])
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(readings))
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.setattr(threads.time, "sleep", lambda seconds: None)
    monkeypatch.delenv(threads.BLAS_ENV, raising=False)


@pytest.mark.parametrize("cores, idle_share, expected", [
    (2, 1.0, 2),      # an idle machine: every core
    (2, 0.5, 1),      # one busy loop on two cores
    (2, 0.3, 1),      # both busy: still one
    (4, 0.6, 2),      # 2.4 cores idle
    (4, 0.65, 3),     # 2.6 cores idle
])
def test_the_automatic_choice_is_the_cores_idle_rounded(monkeypatch, cores, idle_share, expected):
    _fake_cpu(monkeypatch, cores, idle_share)
    chosen, why = threads.choose()
    assert chosen == expected
    assert why == f"{expected} of {cores} cores free"


def test_a_requested_count_is_taken_as_it_is_and_zero_refused():
    assert threads.choose(3) == (3, "--threads 3")
    with pytest.raises(XpnetError, match="--threads 0"):
        threads.choose(0)


def test_idle_cores_reads_a_number_of_cores_on_this_machine():
    idle = threads.idle_cores(0.05)
    if idle is None:
        pytest.skip("no /proc/stat here")
    assert 0 <= idle <= (os.cpu_count() or 1) + 0.01


@pytest.mark.parametrize("value, asked", [("3", 3), ("1", 1), ("", None), ("0", None), ("many", None)])
def test_a_count_in_openblas_num_threads_is_taken_as_asked(monkeypatch, value, asked):
    _fake_cpu(monkeypatch, 2, 1.0)
    monkeypatch.setenv(threads.BLAS_ENV, value)
    assert threads.asked_in_environment() == asked
    assert threads.choose() == ((asked, f"OPENBLAS_NUM_THREADS={asked}") if asked else (2, "2 of 2 cores free"))
    assert threads.choose(1) == (1, "--threads 1")


@pytest.mark.mnist
@pytest.mark.skipif(mnist_dir() is None, reason="real MNIST not found: set MNIST_DATA to the four IDX files")
@pytest.mark.parametrize("augment", ["none", "elastic"])
def test_one_blas_thread_or_two_train_the_same_weights(tmp_path, augment):
    """Distorting, two threads are one for BLAS and one for the batch worker: the same bits. Plain,
    OpenBLAS splits a product's sums differently on two threads: the same run to float32 rounding."""
    from nn.serialize import load_model

    weights = []
    for count in (1, 2):
        out = tmp_path / f"{count}.npz"
        result = run_train("--backend", "numpy", "--data", mnist_dir(), "--epochs", "1", "--hidden", "256,128",
                           "--augment", augment, "--threads", count, "--out", out, "--no-progress")
        assert result.returncode == 0, result.stderr
        assert f"{count} BLAS thread{'s' if count > 1 else ''}: --threads {count}" in result.stdout
        weights.append(load_model(out)[1])
    for one, two in zip(*weights):
        for name in one:
            if augment == "elastic":
                np.testing.assert_array_equal(one[name], two[name])
            else:
                np.testing.assert_allclose(one[name], two[name], rtol=0, atol=1e-3)


def test_threads_on_another_backend_is_one_line(tmp_path):
    pytest.importorskip("jax")
    result = run_train("--backend", "jax", "--threads", "2", "--epochs", "1", "--out", tmp_path / "m.npz")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "train.py: error: --threads 2 needs --backend numpy: the jax backend's threads are its runtime's"]
