"""xpnet's own CPU kernels: the optimizer updates and the augmentation's warp, compiled at first use.

With NumPy's ufuncs, Adam with weight decay is sixteen passes over the
parameters a step, each a call through NumPy's dispatch (README, A NumPy
step, split). ``backends/cpu/optimizers.c`` makes it one, with the same
float32 operations in the same order (no fused multiply-add), so the bits
are the ufunc path's (``tests/test_cpu_kernels.py``). ``backends/cpu/augment.c``
does the same for ``nn.augment.warp``: a distorted batch in one pass per
image instead of a few dozen gathers and temporaries, the same bits given
the same elastic field; the field's two small products it makes itself, per
image, summed in an order of its own (a float32 rounding from BLAS's). They need a C compiler
(``$CC``, ``cc``, ``gcc`` or ``clang``) once: the library is cached in
``$XPNET_CACHE`` (default ``~/.cache/xpnet``) under a name made from the
source, the compiler and this CPU, and written there atomically. Without a
compiler, or with ``XPNET_CPU_KERNELS=0``, the NumPy backend keeps the
ufuncs; ``describe()`` says which, for the run header. JAX on the CPU calls
the same warp from inside XLA (``xla_warp``; ``backends/cpu/augment_xla.c``).
"""

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy

from .cache import cache_root

SOURCES = tuple(Path(__file__).resolve().parent / "cpu" / name for name in ("optimizers.c", "augment.c"))
SWITCH = "XPNET_CPU_KERNELS"
# -ffp-contract=off: a product and a sum stay two roundings, as in NumPy. -march=native lets the
# loops use the CPU's widest vectors (the same bits: each lane rounds as a scalar would);
# a compiler that refuses it is tried without.
FLAGS = ("-O3", "-std=c99", "-shared", "-fPIC", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math")
NATIVE = ("-march=native",)

_pointer, _size, _f32, _int = ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_float, ctypes.c_int
_SIGNATURES = {
    "sgd_update_f32": (_pointer, _pointer, _pointer, _size, _size, _f32, _int, _f32, _f32),
    "adam_update_f32": (_pointer, _pointer, _pointer, _pointer, _size, _size) + (_f32,) * 9 + (_int,),
    "warp_f32": (_pointer, _pointer, _size, _pointer, _pointer, _pointer),
    "elastic_field_f32": (_pointer, _size, _pointer, _pointer, _int, _pointer, _pointer),
    "warp_elastic_f32": (_pointer, _pointer, _size, _pointer, _pointer, _pointer, _pointer, _int),
}

_loaded = None  # (library or None, why): found once per process


def _compiler():
    """The first of $CC (its command, without options), cc, gcc and clang found on PATH; None if none is."""
    asked = os.environ.get("CC", "").split()[:1]
    for name in asked + ["cc", "gcc", "clang"]:
        path = shutil.which(name)
        if path:
            return path
    return None


def _cpu_signature():
    """What tells this CPU's instruction sets apart: a library built for one may not run on another."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _build(compiler, target, sources, flags):
    """Compile ``sources`` into ``target`` through a temporary file beside it; the compiler's complaint, or None."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        error = ""
        for extra in (NATIVE, ()):
            run = subprocess.run([compiler, *flags, *extra, "-o", tmp, *map(str, sources)],
                                 capture_output=True, text=True, timeout=120)
            if run.returncode == 0:
                os.replace(tmp, target)
                return None
            error = (run.stderr.strip().splitlines() or ["exit status %d" % run.returncode])[-1]
        return error
    finally:
        Path(tmp).unlink(missing_ok=True)


def _built(name, sources, flags, key_parts=()):
    """(the library ``name``-<key> built from ``sources``, from the cache where it is there, or None; why)."""
    if os.environ.get(SWITCH, "1") == "0":
        return None, f"{SWITCH}=0"
    compiler = _compiler()
    if compiler is None:
        return None, "no C compiler found (cc, gcc or clang)"
    parts = [*(source.read_bytes() for source in sources), compiler.encode(), " ".join(flags).encode(),
             _cpu_signature().encode(), *key_parts]
    key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
    suffix = ".dll" if os.name == "nt" else ".so"
    target = cache_root() / "cpu-kernels" / f"{name}-{key}{suffix}"
    try:
        if not target.exists():
            error = _build(compiler, target, sources, flags)
            if error:
                return None, f"{Path(compiler).name} failed: {error}"
        return ctypes.CDLL(str(target)), Path(compiler).name
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"could not build or load them ({exc}); set XPNET_CACHE to a writable folder"


def _load():
    library, why = _built("kernels", SOURCES, FLAGS)
    if library is not None:
        for name, argtypes in _SIGNATURES.items():
            function = getattr(library, name)
            function.argtypes, function.restype = argtypes, None
    return library, why


def library():
    """The compiled kernels (a ``ctypes.CDLL``), or None where they cannot be had here."""
    global _loaded
    if _loaded is None:
        _loaded = _load()
    return _loaded[0]


def describe():
    """One phrase for the run header: whether the NumPy backend's update and warp run in C, and why."""
    library()
    lib, why = _loaded
    return f"C optimizer and warp ({why})" if lib is not None else f"ufunc optimizer and warp: {why}"


def _address(a):
    if a.dtype != numpy.float32 or not a.flags.c_contiguous:
        raise TypeError(f"the CPU kernels take C-contiguous float32 buffers, not {a.dtype} {a.shape}")
    return a.ctypes.data


class FusedUpdate:
    """``update(flat, lr)`` for an optimizer of ``nn``'s (its ``kind``), on ``backends.flat`` buffers of float32.

    The optimizer is read as plain values (backends do not import nn);
    Adam's step count and bias corrections come from its own
    ``advance_flat``, so both paths count alike.
    """

    def __init__(self, lib, optimizer):
        self.lib, self.optimizer = lib, optimizer
        self.params, self.addresses = None, None

    def _bind(self, flat):
        """The buffers' addresses, found again only when ``flat`` has adopted new buffers (all at once)."""
        if flat.flat_params is not self.params:
            self.params = flat.flat_params
            buffers = {"params": flat.flat_params, "grads": flat.flat_grads, **flat.flat_state}
            self.addresses = {key: _address(a) for key, a in buffers.items() if a.ndim == 1}  # not Adam's step count
        return self.addresses

    def __call__(self, flat, lr):
        opt, at = self.optimizer, self._bind(flat)
        n, n_weights = flat.flat_params.shape[0], flat.layout.n_weights
        # ctypes rounds each float to float32 as NumPy rounds a Python float it is given: 1 - beta is
        # worked out in double first, as the ufunc path's (1 - b1) is.
        if opt.kind == "sgd":
            self.lib.sgd_update_f32(at["params"], at.get("velocity"), at["grads"], n, n_weights, opt.momentum,
                                    int(opt.nesterov), lr, opt.weight_decay)
            return
        m_scale, v_scale, flush = opt.advance_flat(flat.flat_state, flat.scratch, flat.flat_params.dtype)
        self.lib.adam_update_f32(at["params"], at["m"], at["v"], at["grads"], n, n_weights, opt.beta1, 1 - opt.beta1,
                                 opt.beta2, 1 - opt.beta2, float(m_scale), float(v_scale), opt.eps, lr,
                                 opt.weight_decay, int(flush))


def fused_update(optimizer, dtype):
    """A ``FusedUpdate`` for ``optimizer``, or None: another dtype, an optimizer of no known kind, no compiler."""
    if numpy.dtype(dtype) != numpy.float32 or getattr(optimizer, "kind", None) not in ("sgd", "adam"):
        return None
    lib = library()
    return FusedUpdate(lib, optimizer) if lib is not None else None


def warp_arguments(xp, draws):
    """The kernels' arrays for ``nn.augment.draw``'s five: params (batch, 8), then, if elastic, the
    field's noise (batch, 2, k, k), left (28, k) and right (k, 28) (``nn.augment.Field``)."""
    clean, inverse, shift, stroke, field = draws
    params = xp.stack([*inverse, *shift, stroke, clean.astype(xp.float32)], axis=1).astype(xp.float32)
    return params, () if field is None else tuple(xp.asarray(a, dtype=xp.float32) for a in field)


def _warp(lib, x, draws):
    """``nn.augment.warp(numpy, x, draws)`` by ``warp_elastic_f32`` (or ``warp_f32`` where there is no field)."""
    x = numpy.ascontiguousarray(x)
    params, field = warp_arguments(numpy, draws)
    out = numpy.empty_like(x)
    if not field:
        lib.warp_f32(_address(x), _address(out), x.shape[0], _address(params), None, None)
        return out
    noise, left, right = (numpy.ascontiguousarray(a) for a in field)
    lib.warp_elastic_f32(_address(x), _address(out), x.shape[0], _address(params), _address(noise), _address(left),
                         _address(right), left.shape[1])
    return out


def augment_warp():
    """``warp(x, draws)`` for float32 batches of 28x28 images, by the C kernel; None without one."""
    lib = library()
    return None if lib is None else (lambda x, draws: _warp(lib, x, draws))


# The same warp inside XLA, for JAX on the CPU: augment.c and its FFI handler,
# built against the C header jaxlib ships, into a library of their own (NumPy
# alone needs no jaxlib).
XLA_SOURCES = (SOURCES[1], Path(__file__).resolve().parent / "cpu" / "augment_xla.c")
XLA_TARGET = "xpnet_warp_f32"
_xla_loaded = None  # (library or None, why): found once per process


def _load_xla(jax):
    ffi = getattr(jax, "ffi", None)
    header = Path(ffi.include_dir()) / "xla" / "ffi" / "api" / "c_api.h" if ffi is not None else None
    if header is None or not header.is_file():
        return None, f"JAX {jax.__version__} ships no XLA FFI header"
    include = header.parents[3]
    library, why = _built("xla-kernels", XLA_SOURCES, (*FLAGS, f"-I{include}"), (header.read_bytes(),))
    if library is None:
        return None, why
    try:
        ffi.register_ffi_target(XLA_TARGET, ffi.pycapsule(library.xpnet_warp_f32), platform="cpu")
    except Exception as exc:  # whatever this jaxlib raises: XLA keeps its own warp
        return None, f"XLA refused the custom call ({exc})"
    return library, why


def xla_warp(jax):
    """``warp(x, draws)`` for JAX arrays on the CPU, jitted or not: ``_warp``'s kernels as an XLA custom call; None
    without it."""
    global _xla_loaded
    if _xla_loaded is None:
        _xla_loaded = _load_xla(jax)
    if _xla_loaded[0] is None:
        return None

    def warp(x, draws):
        params, field = warp_arguments(jax.numpy, draws)
        return jax.ffi.ffi_call(XLA_TARGET, jax.ShapeDtypeStruct(x.shape, x.dtype))(x, params, *field)

    return warp


def xla_describe():
    """The C warp's state in XLA, for the run header: None until ``xla_warp`` has been asked for it."""
    if _xla_loaded is None:
        return None
    lib, why = _xla_loaded
    return f"C warp in XLA ({why})" if lib is not None else f"XLA's own warp: {why}"
