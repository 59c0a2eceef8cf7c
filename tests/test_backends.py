"""Backend selection, lazy imports and the errors a user sees."""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import backends
from backends import XpnetError, available_backends, get_backend, unavailable_reason

ROOT = Path(__file__).resolve().parent.parent


def _modules_loaded_by(code):
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(sorted({{m.partition('.')[0] for m in sys.modules}}))"],
        capture_output=True, text=True, cwd=ROOT, check=True,
    ).stdout
    return out


@pytest.mark.parametrize("code", ["import backends, nn", "import train; from cli.train_args import build_parser; build_parser()"])
def test_importing_loads_neither_jax_nor_cupy(code):
    loaded = _modules_loaded_by(code)
    assert "'jax'" not in loaded and "'cupy'" not in loaded and "'jaxlib'" not in loaded


def test_nn_source_never_imports_cupy_or_jax():
    for path in (ROOT / "nn").glob("*.py"):
        text = path.read_text()
        assert "import jax" not in text and "import cupy" not in text, path


PACKAGES = ("backends", "nn", "cli", "drawing", "benchmarks")


def _project_imports():
    """{module: the project modules it imports}, every import of its source (inside functions too)."""
    graph = {}
    for package in PACKAGES:
        for path in (ROOT / package).glob("*.py"):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            found = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {alias.name for alias in node.names}
                elif isinstance(node, ast.ImportFrom):
                    base = node.module or ""
                    if node.level:  # relative: from the package this module sits in
                        base = package + (f".{base}" if base else "")
                    found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
            graph[name] = found
    return {m: {i for i in imported if i in graph and i != m and i != m.partition(".")[0]}
            for m, imported in graph.items()}


def test_no_two_modules_import_each_other_even_lazily():
    graph = _project_imports()
    assert "nn.hub_download" in graph["nn.serialize"] and "nn.serialize" in graph["nn.hub"]
    cycles = []

    def visit(module, path):
        for nxt in graph[module]:
            if nxt in path:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in done:
                visit(nxt, path + [nxt])
        done.add(module)

    done = set()
    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    assert not cycles, cycles


def test_backends_never_import_nn():
    for module, imported in _project_imports().items():
        if module.startswith("backends"):
            assert not {i for i in imported if i.startswith("nn")}, (module, imported)


def test_auto_picks_the_best_available_and_numpy_is_always_there():
    names = available_backends()
    assert "numpy" in names
    assert get_backend("auto").name == names[0]
    assert names[0] == ("cupy" if unavailable_reason("cupy") is None else "jax" if "jax" in names else "numpy")


def test_environment_variable_chooses_the_backend(monkeypatch):
    monkeypatch.setenv("XPNET_BACKEND", "numpy")
    assert get_backend().name == "numpy"
    assert get_backend("NumPy").name == "numpy"


def test_unknown_backend_names_the_choices():
    with pytest.raises(XpnetError, match="numpy, jax, cupy"):
        get_backend("tensorflow")


def test_unavailable_cupy_says_why_and_what_is_available():
    reason = unavailable_reason("cupy")
    if reason is None:
        pytest.skip("a usable GPU is present")
    with pytest.raises(XpnetError) as info:
        get_backend("cupy")
    message = str(info.value)
    assert reason in message and "numpy" in message and "\n" not in message


def test_grad_modes():
    numpy_be = get_backend("numpy")
    assert numpy_be.check_grad_mode(None) == "manual"
    with pytest.raises(XpnetError, match="jax"):
        numpy_be.check_grad_mode("autodiff")
    if "jax" in available_backends():
        assert get_backend("jax").check_grad_mode(None) == "autodiff"
        assert get_backend("jax").check_grad_mode("manual") == "manual"


def test_array_module_follows_the_arrays(be):
    x = be.asarray(np.arange(6, dtype=np.float32))
    assert backends.array_module(x) is be.xp
    np.testing.assert_array_equal(be.to_host(x * 2), np.arange(6) * 2)


def test_array_module_sees_through_jax_tracing():
    jax = pytest.importorskip("jax")
    seen = []

    def f(x):
        seen.append(backends.array_module(x))
        return x * 2

    jax.jit(f)(np.ones(3, np.float32))
    assert seen == [jax.numpy]


def test_help_does_not_start_jax():
    code = "import runpy, sys; sys.argv=['train.py','--help']\ntry:\n runpy.run_path('train.py', run_name='__main__')\nexcept SystemExit: pass"
    loaded = _modules_loaded_by(code)
    assert "'jax'" not in loaded
