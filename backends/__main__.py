"""``python -m backends``: which backends can run here, and why not.

Prints each backend's availability (with the reason when it cannot run),
the library versions, whether NumPy's optimizer runs as one compiled pass
(``backends.cpu_kernels``), and for CuPy the CUDA runtime, driver, NVRTC and
every device, so a user can tell which ``--extra cuda12``/``cuda13`` fits.
"""

import sys

from . import NAMES, unavailable_reason


def _versions(name):
    if name == "numpy":
        import numpy

        from . import cpu_kernels

        return f"NumPy {numpy.__version__}, {cpu_kernels.describe()}"
    if name == "jax":
        import jax

        return f"JAX {jax.__version__}, devices: {', '.join(str(d) for d in jax.devices())}"
    import cupy

    return f"CuPy {cupy.__version__}"


def _cuda_lines():
    """What CuPy sees of CUDA; each probe on its own, so one failure hides nothing else."""
    try:
        import cupy
    except Exception as exc:
        return [f"CuPy: not importable ({type(exc).__name__}: {exc})"]
    runtime = cupy.cuda.runtime
    lines = [f"CuPy {cupy.__version__} ({_cupy_distribution()})"]
    probes = {
        "CUDA driver": lambda: _cuda_version(runtime.driverGetVersion()) if runtime.driverGetVersion() else "none found",
        "CUDA runtime": lambda: _cuda_version(runtime.runtimeGetVersion()),
        "NVRTC": lambda: ".".join(map(str, cupy.cuda.nvrtc.getVersion())),
    }
    for label, probe in probes.items():
        try:
            lines.append(f"{label}: {probe()}")
        except Exception as exc:
            lines.append(f"{label}: unavailable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
    try:
        count = runtime.getDeviceCount()
    except Exception as exc:
        return [*lines, f"devices: none usable ({type(exc).__name__})"]
    for i in range(count):
        props = runtime.getDeviceProperties(i)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        lines.append(f"device {i}: {name}, sm_{props['major']}{props['minor']}, {props['totalGlobalMem'] / 2**30:.0f} GiB")
    return lines


def _cupy_distribution():
    """Which wheel provides ``cupy``: its name says the CUDA major version it needs."""
    from importlib import metadata

    names = sorted({d.metadata["Name"] for d in metadata.distributions() if (d.metadata["Name"] or "").lower().startswith("cupy")})
    return ", ".join(names) or "installed from source"


def _cuda_version(number):
    return f"{number // 1000}.{number % 1000 // 10}"


def main():
    print("xpnet backends (best first for --backend auto: cupy, jax, numpy)")
    for name in NAMES:
        reason = unavailable_reason(name)
        if reason is None:
            print(f"  {name:<6} available    {_versions(name)}")
        else:
            print(f"  {name:<6} unavailable  {reason}")
    print("CUDA:")
    for line in _cuda_lines():
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
