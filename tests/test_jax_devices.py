"""Data parallelism through JAX's sharding, and the jax.distributed flags.

Several devices are four CPU devices forced by XLA_FLAGS in a subprocess
(the flag must be set before JAX starts). Several machines cannot be run
here: those tests check that train.py validates the settings and hands them
to jax.distributed.initialize unchanged.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends import XpnetError, get_backend

ROOT = Path(__file__).resolve().parent.parent

FOUR_DEVICES = r"""
import json, re
import numpy as np
import jax
from backends import XpnetError, get_backend
from nn import MLP, SGD, Schedule, fit
from tests.reference import blobs

x, y = blobs(n=210, features=10, classes=3, separation=1.5, seed=0)  # 6 batches of 32 + 18
model = MLP(sizes=(10, 16, 3), activations="tanh", dropout=0.2)
out = {"devices": len(jax.devices()), "runs": {}}
for count in (1, 4):
    for mode in ("step", "scan"):
        be = get_backend("jax")
        be.use_devices(count)
        params, history = fit(be, model, SGD(momentum=0.9), Schedule("cosine", 0.1, 2), x, y,
                              epochs=2, batch_size=32, seed=0, epoch_mode=mode)
        out["runs"][f"{count}-{mode}"] = {
            "mesh": be.mesh.size,
            "params": [{k: v.tolist() for k, v in layer.items()} for layer in be.tree_to_host(params)],
            "train_loss": [r["train_loss"] for r in history],
        }

# What XLA made of a step on the default mesh (all four devices).
be = get_backend("jax")
optimizer = SGD(momentum=0.9)
step = be.make_train_step(model, optimizer, seed=0)
params = be.tree_asarray(model.init_params(0))
args = (params, be.place(optimizer.init(params)), be.asarray(x), be.asarray(y),
        be.asarray(np.arange(32, dtype=np.int32)), 0.1, 0)
hlo = step.lower(*args).compile().as_text()
out["all_reduce"] = "all-reduce" in hlo
out["dot_shapes"] = sorted({m for m in re.findall(r"= f32\[([\d,]+)\]\S* dot\(", hlo)})

errors = []
try:
    fit(be, model, optimizer, Schedule("constant", 0.1, 1), x, y, epochs=1, batch_size=30, seed=0)
except XpnetError as exc:
    errors.append(str(exc))
try:
    be.use_devices(5)
except XpnetError as exc:
    errors.append(str(exc))
out["errors"] = errors
print(json.dumps(out))
"""


def _four_device_env():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    return env


@pytest.fixture(scope="module")
def four_devices():
    pytest.importorskip("jax")
    result = subprocess.run([sys.executable, "-c", FOUR_DEVICES], capture_output=True, text=True,
                            cwd=ROOT, env=_four_device_env(), timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_four_devices_give_the_parameters_of_one(four_devices):
    """Batches split 4 ways (and the partial last batch of 18, which does
    not split, replicated), dropout on: same run as on one device, up to
    the order of the float32 sums in the gradient all-reduce."""
    assert four_devices["devices"] == 4
    runs = four_devices["runs"]
    assert runs["1-step"]["mesh"] == 1 and runs["4-step"]["mesh"] == 4
    reference = runs["1-step"]
    for name in ("1-scan", "4-step", "4-scan"):
        for got, want in zip(runs[name]["params"], reference["params"]):
            for k in want:
                np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=name)
        assert runs[name]["train_loss"] == pytest.approx(reference["train_loss"], rel=1e-5)


def test_each_device_computes_a_quarter_of_the_batch(four_devices):
    """XLA's partitioner, not our code, splits the batch of 32 into 4 x 8
    rows and reduces the gradients with an all-reduce."""
    assert four_devices["all_reduce"]
    dims = [int(d) for shape in four_devices["dot_shapes"] for d in shape.split(",")]
    assert 8 in dims and 32 not in dims, four_devices["dot_shapes"]


def test_uneven_batches_and_too_many_devices_are_one_clear_error(four_devices):
    batch_error, devices_error = four_devices["errors"]
    assert "--batch-size 30" in batch_error and "4 devices" in batch_error and "32" in batch_error
    assert "--devices 5" in devices_error and "4 CPU devices" in devices_error


def test_devices_need_jax():
    with pytest.raises(XpnetError, match="--devices 2 needs --backend jax"):
        get_backend("numpy").use_devices(2)
    get_backend("numpy").use_devices(1)  # one device is every backend's


# -- jax.distributed ----------------------------------------------------------------
@pytest.fixture
def initialize_calls(monkeypatch):
    """jax.distributed.initialize replaced by a recorder; XPNET_* cleared."""
    jax = pytest.importorskip("jax")
    for name in ("XPNET_COORDINATOR", "XPNET_NUM_PROCESSES", "XPNET_PROCESS_ID", "XPNET_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr("backends.jax_backend._answers", lambda host, port, timeout: True)  # a coordinator is up
    return calls


def _build_run(*argv):
    from cli.build import build_run
    from cli.train_args import build_parser

    return build_run(build_parser().parse_args(list(argv)))


def test_distributed_flags_reach_jax_distributed(initialize_calls):
    be = _build_run("--coordinator", "10.0.0.1:1234", "--num-processes", "2", "--process-id", "1")[0]
    assert initialize_calls == [dict(coordinator_address="10.0.0.1:1234", num_processes=2, process_id=1,
                                     initialization_timeout=300)]
    assert be.name == "jax"


def test_distributed_settings_from_the_environment(initialize_calls, monkeypatch):
    monkeypatch.setenv("XPNET_COORDINATOR", "node0:5000")
    monkeypatch.setenv("XPNET_NUM_PROCESSES", "4")
    monkeypatch.setenv("XPNET_PROCESS_ID", "3")
    _build_run("--backend", "jax")
    _build_run("--process-id", "0", "--distributed-timeout", "7")  # a flag wins over its variable
    assert initialize_calls == [
        dict(coordinator_address="node0:5000", num_processes=4, process_id=3, initialization_timeout=300),
        dict(coordinator_address="node0:5000", num_processes=4, process_id=0, initialization_timeout=7),
    ]


@pytest.mark.parametrize(
    "argv, env, needle",
    [
        (["--coordinator", "node0"], {}, "HOST:PORT"),
        (["--coordinator", "node0:99999", "--num-processes", "2", "--process-id", "0"], {}, "HOST:PORT"),
        (["--coordinator", "node0:5000", "--num-processes", "2"], {}, "--process-id"),
        (["--coordinator", "node0:5000", "--num-processes", "2", "--process-id", "2"], {}, "between 0 and 1"),
        (["--num-processes", "2", "--process-id", "0"], {}, "need --coordinator"),
        (["--backend", "numpy", "--coordinator", "node0:5000", "--num-processes", "2", "--process-id", "0"],
         {}, "--backend jax"),
        (["--coordinator", "node0:5000", "--process-id", "0"], {"XPNET_NUM_PROCESSES": "two"}, "XPNET_NUM_PROCESSES"),
    ],
)
def test_bad_distributed_settings_are_one_clear_error(initialize_calls, monkeypatch, argv, env, needle):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(XpnetError, match=needle):
        _build_run(*argv)
    assert initialize_calls == []


def test_a_coordinator_that_cannot_be_reached_is_one_clear_error(monkeypatch):
    jax = pytest.importorskip("jax")

    def refuse(**kwargs):
        raise RuntimeError("DEADLINE_EXCEEDED: Barrier timed out\nmore detail")

    monkeypatch.setattr(jax.distributed, "initialize", refuse)
    monkeypatch.setattr("backends.jax_backend._answers", lambda host, port, timeout: True)
    with pytest.raises(XpnetError, match="jax.distributed could not start.*DEADLINE_EXCEEDED") as info:
        _build_run("--coordinator", "node0:5000", "--num-processes", "2", "--process-id", "1")
    assert "\n" not in str(info.value)


def test_cli_rejects_a_batch_that_does_not_split_before_reading_data(tmp_path):
    pytest.importorskip("jax")
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--backend", "jax", "--batch-size", "30",
         "--data", str(tmp_path / "absent")],
        capture_output=True, text=True, cwd=ROOT, env=_four_device_env(), timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "--batch-size 30" in line and "4 devices" in line


def test_a_coordinator_that_never_answers_is_one_line_after_the_timeout(tmp_path):
    import socket

    pytest.importorskip("jax")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("XPNET_")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
         "--process-id", "1", "--distributed-timeout", "2", "--out", str(tmp_path / "m.npz")],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"process 1: waiting for 2 processes at 127.0.0.1:{port} (up to 2 s" in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"no coordinator answered at 127.0.0.1:{port} within 2 s" in lines[0]
