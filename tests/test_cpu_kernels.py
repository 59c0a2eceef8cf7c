"""The fused C optimizer updates of ``backends/cpu/optimizers.c`` against ``nn.optimizers``' ufunc path, bit for bit.

The reference is ``update_flat``, itself tested bit for bit against the
functional ``update`` and within float32 rounding against the float64
recurrences (``tests/test_optimizers.py``). Here: every optimizer setting for
40 steps (two flushes of Adam's subnormal moments), odd layer sizes, a whole
training step of the NumPy backend, the fallback without a compiler, and a
broken build (fused multiply-adds) caught.
"""

import numpy as np
import pytest

from backends import cpu_kernels, get_backend
from backends.base import Backend
from backends.flat import FlatTraining
from nn import MLP, SGD, Adam
from tests.test_optimizers import CASES

SIZES = (37, 13, 5)  # odd: the layers' blocks are padded to 32 floats, the weights' end mid-vector
STEPS = 40
EXTRA_CASES = {
    "momentum-wd": SGD(momentum=0.5, weight_decay=0.01),
    "adam-eps": Adam(beta1=0.5, beta2=0.9, eps=1e-3, weight_decay=1e-4),
}
SETTINGS = {**{name: opt for name, (opt, _) in CASES.items()}, **EXTRA_CASES}


@pytest.fixture
def kernels():
    lib = cpu_kernels.library()
    if lib is None:
        pytest.skip(f"no CPU kernels here: {cpu_kernels.describe()}")
    return lib


def _gradients(step, rng):
    """Gradients of a spread of sizes, most of them 0 every third step; the first few weights get one
    tiny gradient at step 1 and none after, so their moments decay into float32's subnormals."""
    g = rng.standard_normal(FlatTraining(np, SIZES).layout.size).astype(np.float32)
    g *= np.float32(10.0) ** rng.integers(-6, 2, g.shape).astype(np.float32)
    if step % 3 == 2:
        g[rng.random(g.shape) < 0.8] = 0
    g[:7] = np.float32(3e-37) if step == 1 else 0
    return g


def _trained(opt, update, steps=STEPS):
    """A FlatTraining after ``steps`` calls of ``update(flat, lr)``, each on the same seeded gradients."""
    rng = np.random.default_rng(7)
    params = MLP(sizes=SIZES).init_params(3)
    flat = FlatTraining(np, SIZES)
    flat.adopt(params, opt.init(params))
    for step in range(steps):
        flat.flat_grads[...] = _gradients(step, rng)
        flat.flat_grads[flat.layout.size - 3 :] = 0  # the padding's gradient is never written
        update(flat, 0.02 / (1 + step % 5))
    return flat


def _ufunc_update(opt):
    """The update every backend without kernels of its own runs: ``update_flat``'s ufuncs."""
    return Backend.flat_update_fn(get_backend("numpy"), opt, np.float32)


def _buffers(flat):
    return {"params": flat.flat_params, **flat.flat_state}


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_the_fused_update_gives_the_ufunc_paths_bits(kernels, setting):
    opt = SETTINGS[setting]
    fused = cpu_kernels.fused_update(opt, np.float32)
    assert fused is not None
    want, got = _trained(opt, _ufunc_update(opt)), _trained(opt, fused)
    for key, value in _buffers(want).items():
        np.testing.assert_array_equal(_buffers(got)[key], value, err_msg=key)
    # and the test has teeth: the steps moved the weights, and Adam's moments met subnormals and were flushed
    assert np.abs(got.flat_params - _trained(opt, lambda flat, lr: None).flat_params).max() > 1e-3
    if "m" in got.flat_state:
        assert float(got.flat_state["t"]) == STEPS


def test_subnormal_moments_are_flushed_on_the_16th_step_only(kernels):
    """The same moments just below float32's smallest normal number: kept at step 15, zeroed at step 16."""
    tiny = np.finfo(np.float32).tiny
    opt = Adam()
    fused = cpu_kernels.fused_update(opt, np.float32)
    for t_before, flushed in ((14, False), (15, True)):
        flat = _trained(opt, lambda flat, lr: None, steps=0)
        flat.flat_state["t"][...] = t_before
        flat.flat_state["m"][...] = tiny * 0.5 / 0.9
        flat.flat_grads[...] = 0
        fused(flat, 0.1)
        m = flat.flat_state["m"][: flat.layout.n_weights]
        assert (m == 0).all() if flushed else ((m > 0) & (m < tiny)).all()


def test_a_numpy_training_step_is_the_same_with_and_without_the_kernels(kernels, monkeypatch):
    """Ten steps of backends.base's update on a real model: fused and ufunc runs give the same parameters."""
    be = get_backend("numpy")
    model = MLP(sizes=(784, 64, 10))
    rng = np.random.default_rng(0)
    x = rng.random((50, 784), dtype=np.float32)
    y = rng.integers(0, 10, 50)

    def run():
        opt = Adam(weight_decay=0.1)
        update = be.update_fn(model, opt, seed=0)
        params = model.init_params(0)
        state = opt.init(params)
        for step in range(10):
            params, state, _, _ = update(params, state, x, y, 0.01, step)
        return np.concatenate([layer[k].ravel() for layer in params for k in ("w", "b")])

    fused = run()
    monkeypatch.setattr(cpu_kernels, "_loaded", (None, "turned off for the test"))
    np.testing.assert_array_equal(fused, run())


def test_float64_and_unknown_optimizers_keep_the_ufuncs(kernels):
    class Custom(Adam):
        pass

    assert cpu_kernels.fused_update(Adam(), np.float64) is None
    assert cpu_kernels.fused_update(Custom(), np.float32) is None


def test_without_a_compiler_training_keeps_the_ufuncs_and_says_why(monkeypatch, tmp_path):
    monkeypatch.setattr(cpu_kernels, "_loaded", None)
    monkeypatch.setenv("XPNET_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "no-such-compiler")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert cpu_kernels.library() is None
    assert cpu_kernels.describe() == "ufunc optimizer and warp: no C compiler found (cc, gcc or clang)"
    assert cpu_kernels.fused_update(Adam(), np.float32) is None
    assert "ufunc optimizer and warp" in get_backend("numpy").device_description()


def test_a_failing_compiler_leaves_nothing_in_the_cache(monkeypatch, tmp_path):
    failing = tmp_path / "bin" / "cc"
    failing.parent.mkdir()
    failing.write_text("#!/bin/sh\necho 'cc: error: this compiler is broken' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setattr(cpu_kernels, "_loaded", None)
    monkeypatch.setenv("XPNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(failing))
    assert cpu_kernels.library() is None
    assert cpu_kernels.describe() == "ufunc optimizer and warp: cc failed: cc: error: this compiler is broken"
    assert list((tmp_path / "cache" / "cpu-kernels").iterdir()) == []


def test_the_library_is_built_once_and_then_loaded_from_the_cache(kernels, monkeypatch, tmp_path):
    monkeypatch.setenv("XPNET_CACHE", str(tmp_path))
    monkeypatch.setattr(cpu_kernels, "_loaded", None)
    assert cpu_kernels.library() is not None
    built = list((tmp_path / "cpu-kernels").iterdir())
    assert len(built) == 1 and built[0].suffix in (".so", ".dll")

    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled again")

    monkeypatch.setattr(cpu_kernels.subprocess, "run", no_compiling)
    monkeypatch.setattr(cpu_kernels, "_loaded", None)
    assert cpu_kernels.library() is not None


def test_a_build_with_fused_multiply_adds_is_caught(kernels, monkeypatch, tmp_path):
    """Why -ffp-contract=off: let the compiler fuse a product into a sum and the bits differ."""
    if " fma" not in cpu_kernels._cpu_signature():
        pytest.skip("this CPU has no fused multiply-add")
    monkeypatch.setenv("XPNET_CACHE", str(tmp_path))
    monkeypatch.setattr(cpu_kernels, "_loaded", None)
    monkeypatch.setattr(cpu_kernels, "FLAGS", tuple(f for f in cpu_kernels.FLAGS if f != "-ffp-contract=off")
                        + ("-ffp-contract=fast",))
    opt = Adam(weight_decay=0.1)
    broken = cpu_kernels.fused_update(opt, np.float32)
    assert broken is not None
    assert not np.array_equal(_trained(opt, broken).flat_params, _trained(opt, _ufunc_update(opt)).flat_params)
