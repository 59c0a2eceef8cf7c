"""The real CupyBackend on a cupy-shaped NumPy, with the kernels run by the
CUDA-on-CPU harness in place of cupy.RawModule: whole training runs equal the
NumPy backend's, the captured graph allocates nothing and never synchronises,
and every cupy name the backend uses exists in CuPy."""

import ast
import logging
from pathlib import Path

import numpy as np
import pytest

import nn
from backends import get_backend
from backends.cupy_backend import CupyBackend
from cuda_on_cpu import EmulatedModule, cached_library
from cuda_on_cpu.fake_cupy import CUPY_NAMES, CaptureViolation, CupyShapedNumpy
from reference import assert_trees_close, blobs

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {
    "relu-ce-adam": (dict(activations="relu"), nn.Adam()),
    "tanh,sigmoid-mse-nesterov-l2": (dict(activations=("tanh", "sigmoid"), loss="mse", reg="l2", reg_lambda=1e-3, init="glorot"),
                                     nn.SGD(momentum=0.9, nesterov=True, weight_decay=1e-3)),
    "leaky-mse-linear-momentum-l1_l2-dropout": (dict(activations="leaky_relu", loss="mse", output="linear", reg="l1_l2",
                                                     reg_lambda=1e-3, dropout=0.3), nn.SGD(momentum=0.5)),
    "linear,relu-ce-adamw-l1-dropout": (dict(activations=("linear", "relu"), reg="l1", reg_lambda=1e-4, dropout=0.2),
                                        nn.Adam(weight_decay=1e-2)),
    "plain-sgd": (dict(activations="sigmoid", init="glorot"), nn.SGD()),
}


def emulated_backend(cuda_graph=None, thread_order="shuffled"):
    xp = CupyShapedNumpy()
    module = EmulatedModule(cached_library(), thread_order=thread_order, poison="nan", recorder=xp.cuda)
    return CupyBackend(xp=xp, module=module, cuda_graph=cuda_graph)


def train(be, config, epochs=2, n=50, batch_size=16, seed=3):
    """nn.fit on (x, y) blobs: 4 steps per epoch, the last of 2 rows (padded)."""
    kwargs, optimizer = CONFIGS[config]
    model = nn.MLP(sizes=(13, 17, 9, 5), **kwargs)
    x, y = blobs(n=n, features=13, classes=5, seed=seed)
    steps = []
    make = be.make_train_step

    def spy(*args, **kw):
        steps.append(make(*args, **kw))
        return steps[-1]

    be.make_train_step = spy
    params, history = nn.fit(be, model, optimizer, nn.Schedule("cosine", 0.05, epochs), x, y, x[:20], y[:20],
                             epochs=epochs, batch_size=batch_size, seed=seed)
    return be.tree_to_host(params), history, steps[0]


def assert_same_training(be, config):
    expected, expected_history, _ = train(get_backend("numpy"), config)
    params, history, step = train(be, config)
    assert type(step).__name__ == "FusedTrainStep" and step.graph is not None
    for got, want in zip(params, expected):
        for k in ("w", "b"):
            np.testing.assert_allclose(got[k], want[k], rtol=2e-4, atol=2e-5, err_msg=k)
    for got, want in zip(history, expected_history):
        for key in ("train_loss", "val_loss"):
            assert got[key] == pytest.approx(want[key], rel=1e-4), key
        assert got["train_accuracy"] == want["train_accuracy"] and got["val_accuracy"] == want["val_accuracy"]


@pytest.mark.parametrize("config", CONFIGS)
def test_kernel_training_equals_the_numpy_backend(config):
    be = emulated_backend()
    assert_same_training(be, config)
    assert be.xp.cuda.graphs_launched == 7 and be.xp.cuda.violations == []  # 8 steps: 1 warm-up, 7 replays


@pytest.mark.mnist
def test_kernel_training_on_real_mnist_equals_the_numpy_backend(mnist):
    """Real shapes: 784 inputs (49 SGEMM slices), batch 100 with a padded last batch of 12."""
    model, x, y = nn.MLP(sizes=(784, 48, 32, 10), dropout=0.1), mnist.x_train[:512], mnist.y_train[:512]
    runs = []
    for be in (get_backend("numpy"), emulated_backend()):
        runs.append(nn.fit(be, model, nn.Adam(), nn.Schedule("cosine", 3e-3, 1), x, y, mnist.x_test[:200],
                           mnist.y_test[:200], epochs=1, batch_size=100, seed=5))
    (expected, expected_history), (params, history) = runs
    for got, want in zip(params, expected):
        np.testing.assert_allclose(np.asarray(got["w"]), want["w"], rtol=2e-4, atol=2e-5)
    assert history[0]["train_loss"] == pytest.approx(expected_history[0]["train_loss"], rel=1e-4)
    assert history[0]["val_accuracy"] == expected_history[0]["val_accuracy"]


def test_augmented_kernel_training_equals_the_numpy_backend():
    """augment_f32 inside the captured step: the same distorted batches as nn.augment on NumPy, step after
    step (the step number is read from device memory, so each replay draws anew), a padded last batch."""
    from nn.augment import Augment

    rng = np.random.default_rng(4)
    x, y = rng.random((70, 784)).astype(np.float32) * (rng.random((70, 784)) < 0.3), rng.integers(0, 10, 70)
    model, augment = nn.MLP(sizes=(784, 12, 10)), Augment("elastic", clean=0.1)
    runs, steps = [], []
    for be in (get_backend("numpy"), emulated_backend()):
        make = be.make_train_step
        be.make_train_step = lambda *a, **kw: steps.append(make(*a, **kw)) or steps[-1]  # noqa: B023
        runs.append(nn.fit(be, model, nn.Adam(), nn.Schedule("cosine", 0.01, 2), x, y.astype(np.int32),
                           epochs=2, batch_size=32, seed=2, augment=augment))
    assert type(steps[1]).__name__ == "FusedTrainStep" and steps[1].graph is not None
    (expected, expected_history), (params, history) = runs
    assert_trees_close(params, expected, rtol=2e-4, atol=2e-5)
    for got, want in zip(history, expected_history):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-4)
    plain = nn.fit(emulated_backend(), model, nn.Adam(), nn.Schedule("cosine", 0.01, 2), x, y.astype(np.int32),
                   epochs=2, batch_size=32, seed=2)[0]
    assert not np.allclose(np.asarray(plain[0]["w"]), expected[0]["w"], atol=1e-4)  # augmentation was on


def test_graph_replay_equals_plain_launches_bit_for_bit():
    config = "linear,relu-ce-adamw-l1-dropout"
    with_graph, history_graph, _ = train(emulated_backend(cuda_graph=True, thread_order="forward"), config)
    be = emulated_backend(cuda_graph=False, thread_order="reverse")
    plain, history_plain, step = train(be, config)
    assert step.graph is None and be.xp.cuda.graphs_launched == 0
    for a, b in zip(with_graph, plain):
        np.testing.assert_array_equal(a["w"], b["w"])
        np.testing.assert_array_equal(a["b"], b["b"])
    assert [h["train_loss"] for h in history_graph] == [h["train_loss"] for h in history_plain]


def test_each_steps_loss_stays_readable_after_later_steps():
    """The result ring: a loss and a correct count handed out stay what they were while the next steps run
    (nn.fit sums them at once, but a caller may keep them)."""
    model, optimizer = nn.MLP(sizes=(13, 6, 5)), nn.Adam()
    x, y = blobs(n=40, features=13, classes=5)
    results = {}
    for be in (get_backend("numpy"), emulated_backend()):
        xd, yd = be.asarray(x), be.asarray(y)
        params, state = be.tree_asarray(model.init_params(0)), be.place(optimizer.init(model.init_params(0)))
        step, kept = be.make_train_step(model, optimizer, seed=0), []
        for i in range(4):
            idx = be.asarray(np.arange(8 * i, 8 * i + 8, dtype=np.int32))
            params, state, loss, correct = step(params, state, xd, yd, idx, 0.01, i)
            kept.append((loss, correct))
        results[be.name] = [(float(be.to_host(loss)), int(be.to_host(correct))) for loss, correct in kept]
    assert len({loss for loss, _ in results["cupy"]}) == 4
    for (got, hits), (want, want_hits) in zip(results["cupy"], results["numpy"]):
        assert got == pytest.approx(want, rel=1e-5) and hits == want_hits


def test_an_allocation_inside_the_captured_step_is_caught(caplog):
    """Prove the check can fail: a plan that allocates cannot be captured."""
    be = emulated_backend()
    model, optimizer = nn.MLP(sizes=(13, 6, 5)), nn.Adam()
    x, y = (be.asarray(a) for a in blobs(n=20, features=13, classes=5))
    params = be.tree_asarray(model.init_params(0))
    step = be.make_train_step(model, optimizer, seed=0)
    idx = be.asarray(np.arange(8, dtype=np.int32))
    step(params, optimizer.init(params), x, y, idx, 0.01, 0)  # warm-up, then capture
    assert step.graph is not None
    step.plan.insert(3, lambda: be.xp.zeros(4))
    step.graph = None
    with caplog.at_level(logging.WARNING, logger="xpnet"):
        step._capture()
    assert step.graph is None and be.xp.cuda.violations == ["creating an array"]
    assert len(caplog.records) == 1 and "CaptureViolation" in caplog.records[0].getMessage()
    value = x[:1, 0].reshape(())
    be.xp.cuda.recording = []
    with pytest.raises(CaptureViolation, match="reading a value"):  # a host read is one too
        float(value)
    be.xp.cuda.recording = None


@pytest.mark.parametrize("replay_on", ["a non-blocking stream", "a blocking stream"])
def test_a_graph_replayed_on_another_stream_than_begin_step_gives_wrong_numbers(monkeypatch, replay_on):
    """begin_step writes the step's learning rate and indices on the current stream; a replay on a
    non-blocking stream is ordered after nothing and read by nothing: not done when the loss is read."""
    from cuda_on_cpu.fake_cupy import FakeGraph

    be = emulated_backend()
    other = be.xp.cuda.Stream(non_blocking=replay_on == "a non-blocking stream")
    replay = FakeGraph.launch
    monkeypatch.setattr(FakeGraph, "launch", lambda graph, stream=None: replay(graph, stream=other))
    if replay_on == "a blocking stream":  # waits for the legacy stream and it for it, as in CUDA
        assert_same_training(be, "relu-ce-adam")
        return
    expected, _, _ = train(get_backend("numpy"), "relu-ce-adam")
    params, history, step = train(be, "relu-ce-adam")
    assert step.graph is not None and be.xp.cuda.graphs_launched == 7
    assert not np.allclose(params[0]["w"], expected[0]["w"], rtol=2e-4, atol=2e-5)


def test_capture_failure_falls_back_to_plain_launches_with_one_log_line(caplog):
    expected, _, _ = train(emulated_backend(cuda_graph=False), "relu-ce-adam")
    be = emulated_backend()
    be.xp.cuda.fail_capture = True
    with caplog.at_level(logging.WARNING, logger="xpnet"):
        params, _, step = train(be, "relu-ce-adam")
    assert step.graph is None and step.graph_failed
    assert [r.getMessage().count("\n") for r in caplog.records] == [0]
    assert "using plain kernel launches" in caplog.records[0].getMessage()
    for a, b in zip(params, expected):
        np.testing.assert_array_equal(a["w"], b["w"])


def test_backend_keep_mask_equals_numpy_bit_for_bit():
    be, reference = emulated_backend(), get_backend("numpy")
    for seed, step, layer, shape, keep in ((0, 0, 0, (1, 1), 0.5), (9, 123456, 3, (37, 129), 0.8)):
        got = be.to_host(be.keep_mask(seed, step, layer, shape, keep, np.float32))
        np.testing.assert_array_equal(got, reference.keep_mask(seed, step, layer, shape, keep, np.float32))


def test_unsupported_optimizer_uses_the_nn_code_path():
    class Halved(nn.SGD):
        pass

    be = emulated_backend()
    step = be.make_train_step(nn.MLP(sizes=(4, 3, 2)), Halved(), seed=0)
    assert type(step).__name__ != "FusedTrainStep"


def _cupy_names_used():
    """Every ``xp.NAME...`` / ``cupy.NAME...`` chain in the CuPy backend's modules."""
    names = set()
    for path in (ROOT / "backends").glob("cupy_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            chain = []
            while isinstance(node, ast.Attribute):
                chain.insert(0, node.attr)
                node = node.value
            if isinstance(node, ast.Name):
                chain.insert(0, node.id)
            for root in ("xp", "cupy"):
                if root in chain[:-1]:
                    names.add(".".join(chain[chain.index(root) + 1 :]))
    return {name for name in names if not any(other.startswith(name + ".") for other in names)}


def test_every_cupy_name_the_backend_uses_exists():
    used = _cupy_names_used()
    assert {"zeros", "cuda.Stream", "RawModule", "asnumpy"} <= used, used
    assert {name.split(".")[0] for name in used} <= CUPY_NAMES, used
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed: checked against the stand-in's list only")
    missing = []
    for name in used | CUPY_NAMES:
        obj = cupy
        for part in name.split("."):
            obj = getattr(obj, part, None)
        if obj is None:
            missing.append(name)
    assert not missing, f"not in CuPy {cupy.__version__}: {missing}"


# -- on a real GPU ---------------------------------------------------------------------------------
@pytest.fixture
def gpu():
    from backends import unavailable_reason

    reason = unavailable_reason("cupy")
    if reason is not None:
        pytest.skip(f"needs a GPU: {reason}")


@pytest.mark.gpu
@pytest.mark.parametrize("config", CONFIGS)
def test_gpu_training_equals_the_numpy_backend(gpu, config):
    assert_same_training(CupyBackend(), config)


@pytest.mark.gpu
def test_gpu_graph_replay_equals_plain_launches_and_a_seed_repeats(gpu):
    config = "linear,relu-ce-adamw-l1-dropout"
    graph, _, step = train(CupyBackend(cuda_graph=True), config)
    plain, _, plain_step = train(CupyBackend(cuda_graph=False), config)
    again, _, _ = train(CupyBackend(cuda_graph=True), config)
    assert step.graph is not None and plain_step.graph is None
    assert_trees_close(graph, plain, exact=True)
    assert_trees_close(graph, again, exact=True)


@pytest.mark.gpu
@pytest.mark.mnist
def test_gpu_short_real_training_run(gpu, mnist):
    be, model, optimizer = CupyBackend(), nn.MLP(), nn.Adam()
    params, history = nn.fit(be, model, optimizer, nn.Schedule("cosine", 3e-3, 1), mnist.x_train, mnist.y_train,
                             epochs=1, batch_size=128, seed=0)
    _, accuracy = nn.evaluate(be, be.make_eval_step(model), params, be.asarray(mnist.x_test), be.asarray(mnist.y_test))
    assert accuracy >= 0.95, accuracy


# -- front doors ------------------------------------------------------------------------------------
def test_cuda_graph_flag_outside_cupy_is_one_line(tmp_path):
    from test_cli import _assert_one_line_error, run_train

    result = run_train("--backend", "numpy", "--cuda-graph", "--data", tmp_path / "never-read")
    _assert_one_line_error(result, "--cuda-graph", "cupy")


def test_python_m_backends_says_what_it_finds():
    import subprocess
    import sys

    from backends import unavailable_reason

    result = subprocess.run([sys.executable, "-m", "backends"], capture_output=True, text=True, cwd=ROOT, check=True)
    lines = result.stdout.splitlines()
    for name in ("numpy", "jax", "cupy"):
        reason = unavailable_reason(name)
        line = next(line for line in lines if line.split()[:1] == [name])
        assert ("available" if reason is None else reason) in line
    assert "CUDA:" in result.stdout


def test_one_step_object_through_new_data_and_a_larger_batch_equals_the_numpy_backend():
    """The captured plan is rebuilt when the data object changes or a batch outgrows it: replaying the old
    graph would read the old data. Data x1, then x2, then larger batches, against the NumPy backend."""
    kwargs, optimizer = CONFIGS["linear,relu-ce-adamw-l1-dropout"]
    model = nn.MLP(sizes=(13, 17, 9, 5), **kwargs)
    x1, y1 = blobs(n=50, features=13, classes=5, seed=1)
    x2, y2 = blobs(n=50, features=13, classes=5, seed=2)
    schedule = [(x1, y1, 16)] * 3 + [(x2, y2, 16)] * 3 + [(x2, y2, 24)] * 3  # 3 steps each: warm-up, capture, replay
    results = {}
    for name, be in (("numpy", get_backend("numpy")), ("cupy", emulated_backend())):
        step = be.make_train_step(model, optimizer, seed=4)
        params = be.tree_asarray(model.init_params(4))
        state = be.place(optimizer.init(params))
        data = {}
        losses = []
        for i, (x, y, batch) in enumerate(schedule):
            if id(x) not in data:  # one device copy per data set, kept: a new object only when the data change
                data[id(x)] = (be.asarray(x), be.asarray(y))
            idx = be.asarray(np.random.default_rng(i).permutation(50)[:batch].astype(np.int32))
            params, state, loss, _ = step(params, state, *data[id(x)], idx, 0.05, i)
            losses.append(float(be.to_host(loss)))
        results[name] = (be.tree_to_host(params), losses, step)
    (want, want_losses, _), (got, got_losses, fused) = results["numpy"], results["cupy"]
    assert type(fused).__name__ == "FusedTrainStep" and fused.graph is not None and fused.rows == 24
    assert got_losses == pytest.approx(want_losses, rel=1e-4)
    for g, w in zip(got, want):
        for k in ("w", "b"):
            np.testing.assert_allclose(g[k], w[k], rtol=2e-4, atol=2e-5, err_msg=k)
