"""CUDA-on-CPU: xpnet's .cu kernels compiled by g++ and run on the CPU.

``EmulatedModule`` stands in for ``cupy.RawModule``: ``get_function(name)``
gives a kernel with CuPy's ``RawKernel`` call signature,
``kernel(grid, block, args, shared_mem=...)``. Every argument is checked
against the C++ parameter type the compiler saw (``float*`` wants a
C-contiguous writeable float32 array, ``int`` wants ``numpy.int32``, ...), the
launch configuration against CUDA's limits, and the kernel runs with each CUDA
thread a fiber (see cuda_on_cpu.h and runtime.h). Errors a GPU would hide or
report as "unspecified launch failure" raise ``KernelLaunchError`` here.

The shared library is built once per source version and cached in the
temporary directory; ``XPNET_CUDA_ON_CPU_ASAN=1`` builds and loads the
AddressSanitizer variant (the process must preload libasan, see
tests/test_cuda_kernels.py).
"""

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy

from backends.cupy_kernels import KERNEL_DIR, KERNEL_FILES, kernel_names

HERE = Path(__file__).resolve().parent
ORDERS = {"forward": 0, "reverse": 1, "shuffled": 2, "warps_reversed": 3}
POISONS = {"nan": 0, "huge": 1, "minus_huge": 2}
_FLAGS = ("-std=c++17", "-fPIC", "-shared", "-Wall", "-Wno-unused-function")
_OPTIMIZE = ("-O2",)
_ASAN = ("-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer")
_POINTER = re.compile(r"^(const )?(float|int|unsigned)\*$")
_SCALARS = {"int": numpy.int32, "unsigned": numpy.uint32, "float": numpy.float32}
_POINTEES = {"float": numpy.float32, "int": numpy.int32, "unsigned": numpy.uint32}


class KernelLaunchError(RuntimeError):
    """The launch was invalid or the kernel broke a CUDA rule while running."""


def compiler():
    return shutil.which(os.environ.get("CXX", "g++"))


def asan_requested():
    return os.environ.get("XPNET_CUDA_ON_CPU_ASAN") == "1"


# Race mode's rewrite: every pointer declaration ``T* name`` becomes ``Ptr<T> name``
# (casts such as ``(int*)(...)`` are left alone).
_POINTER_DECLARATION = re.compile(r"\b((?:const )?(?:float|int|unsigned|T))\* (?=\w)")


def with_racing_pointers(text):
    # A template's T* keeps T deduced from its other arguments only: a raw pointer then converts.
    return _POINTER_DECLARATION.sub(
        lambda m: f"cuda_on_cpu::Ptr<{'typename cuda_on_cpu::Same<T>::type' if m.group(1) == 'T' else m.group(1)}> ",
        text)


def build_library(asan=None, sources=None, probes=False, races=False):
    """Path of the harness library for the kernel files (``sources`` maps a file
    name to replacement text, for deliberately broken variants; ``probes`` adds
    the harness's own test kernels of probes.cu; ``races`` builds race mode,
    which may switch fibers at every memory access through a pointer). Cached by content."""
    asan = asan_requested() if asan is None else asan
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler (g++) found: the CUDA-on-CPU harness needs one")
    texts = {name: (sources or {}).get(name) or (KERNEL_DIR / name).read_text() for name in KERNEL_FILES}
    if probes:
        texts["probes.cu"] = (HERE / "probes.cu").read_text()
    header = (KERNEL_DIR / "xpnet.cuh").read_text()
    if races:
        texts = {name: with_racing_pointers(text) for name, text in texts.items()}
        header = with_racing_pointers(header)
    flags = (*_FLAGS, *(_ASAN if asan else _OPTIMIZE), *(("-DCUDA_ON_CPU_RACES",) if races else ()))
    digest = hashlib.sha256()
    for part in (*texts.values(), header, (HERE / "cuda_on_cpu.h").read_text(),
                 (HERE / "runtime.h").read_text(), " ".join(flags), cxx):
        digest.update(part.encode())
    folder = Path(tempfile.gettempdir()) / "xpnet-cuda-on-cpu" / digest.hexdigest()[:20]
    library = folder / "libkernels.so"
    if library.exists():
        return library
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / name).write_text(text)
    (folder / "xpnet.cuh").write_text(header)  # found before -I's copy: #include "..." looks beside the file first
    names = kernel_names("\n".join(texts.values()))
    unit = ['#include "cuda_on_cpu.h"']
    unit += [f'#include "{folder / name}"' for name in texts]
    unit += ['#include "runtime.h"', "const cuda_on_cpu::Kernel cuda_on_cpu_kernels[] = {"]
    unit += [f'    cuda_on_cpu::make_kernel("{name}", &{name}),' for name in names]
    unit += ["};", f"const int cuda_on_cpu_kernel_total = {len(names)};", ""]
    (folder / "kernels.cpp").write_text("\n".join(unit))
    partial = folder / f"libkernels.{os.getpid()}.so"
    result = subprocess.run(
        [cxx, *flags, f"-I{HERE}", f"-I{KERNEL_DIR}", str(folder / "kernels.cpp"), "-o", str(partial)],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"g++ could not build the CUDA-on-CPU harness:\n{result.stderr}")
    os.replace(partial, library)  # atomic: a concurrent build never sees half a file
    return library


def _dims(value):
    dims = (value,) if isinstance(value, int) else tuple(value)
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, int) for d in dims):
        raise TypeError(f"grid and block must be an int or a tuple of 1 to 3 ints, got {value!r}")
    return (*dims, 1, 1)[:3]


class EmulatedModule:
    """A ``cupy.RawModule`` look-alike whose kernels run on the CPU.

    thread_order: forward, reverse, shuffled (a new permutation at every
    barrier, from ``seed``) or warps_reversed; poison: what dynamic shared
    memory holds before each block (nan, huge = 3.4e38, minus_huge).
    ``recorder``, when given (fake_cupy's ``FakeCuda``), takes each launch
    with ``recorder.enqueue(run, stream)``: into a graph being captured, or
    into its stream's queue, run when CUDA would have run it.
    """

    def __init__(self, library=None, *, thread_order="forward", poison="nan", seed=0, recorder=None):
        self.library = ctypes.CDLL(str(library or build_library()))
        lib = self.library
        lib.cuda_on_cpu_kernel_name.restype = ctypes.c_char_p
        lib.cuda_on_cpu_kernel_signature.restype = ctypes.c_char_p
        lib.cuda_on_cpu_launch.argtypes = [
            ctypes.c_int, ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_uint), ctypes.c_size_t,
            ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_uint, ctypes.c_int, ctypes.c_char_p,
            ctypes.c_size_t,
        ]
        self.signatures = {}
        self._index = {}
        for i in range(lib.cuda_on_cpu_kernel_count()):
            name = lib.cuda_on_cpu_kernel_name(i).decode()
            self._index[name] = i
            self.signatures[name] = lib.cuda_on_cpu_kernel_signature(i).decode().split(",")
        self.thread_order, self.poison, self.seed, self.recorder = thread_order, poison, seed, recorder
        self.launches = 0

    def get_function(self, name):
        if name not in self._index:
            raise AttributeError(f"no kernel named {name!r} in the module")
        return EmulatedKernel(self, name)


class EmulatedKernel:
    def __init__(self, module, name):
        self.module, self.name = module, name
        self.signature = module.signatures[name]

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None):
        grid, block = _dims(grid), _dims(block)
        holders = self._convert(tuple(args))
        def run():
            self._run(grid, block, holders, shared_mem)

        if self.module.recorder is not None:
            self.module.recorder.enqueue(run, stream)  # captured, or queued on its stream
        else:
            run()

    def _convert(self, args):
        if len(args) != len(self.signature):
            raise TypeError(f"{self.name} takes {len(self.signature)} arguments ({', '.join(self.signature)}), got {len(args)}")
        holders = []
        for i, (ctype, value) in enumerate(zip(self.signature, args)):
            where = f"{self.name} argument {i} ({ctype})"
            pointer = _POINTER.match(ctype)
            if pointer:
                const, pointee = pointer.groups()
                want = numpy.dtype(_POINTEES[pointee])
                if not isinstance(value, numpy.ndarray):
                    raise TypeError(f"{where}: got {type(value).__name__}, needs a device array")
                if value.dtype != want or not value.flags.c_contiguous:
                    raise TypeError(f"{where}: got a {value.dtype} array (contiguous: {value.flags.c_contiguous}), "
                                    f"needs a C-contiguous {want.name} array")
                if not const and not value.flags.writeable:
                    raise TypeError(f"{where}: the kernel writes here, but the array is read-only")
                holders.append((ctypes.c_void_p(value.__array_interface__["data"][0]), value))
            else:
                want = _SCALARS[ctype]
                if type(value) is not want:
                    raise TypeError(f"{where}: got {type(value).__name__} {value!r}, needs numpy.{want.__name__} "
                                    "(a Python number would be passed with the wrong width)")
                c_type = {"int": ctypes.c_int32, "unsigned": ctypes.c_uint32, "float": ctypes.c_float}[ctype]
                holders.append((c_type(value.item()), None))
        return holders

    def _run(self, grid, block, holders, shared_mem):
        module = self.module
        pointers = (ctypes.c_void_p * max(1, len(holders)))(*[ctypes.addressof(h) for h, _ in holders])
        error = ctypes.create_string_buffer(512)
        status = module.library.cuda_on_cpu_launch(
            module._index[self.name], (ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block), int(shared_mem),
            pointers, ORDERS[module.thread_order], module.seed, POISONS[module.poison], error, len(error),
        )
        module.launches += 1
        if status != 0:
            raise KernelLaunchError(f"{self.name}: {error.value.decode()}")


# -- for the tests -------------------------------------------------------------------------
# Four launch settings that between them run every thread order and every poison.
SETTINGS = (
    ("forward", "nan"),
    ("reverse", "huge"),
    ("shuffled", "minus_huge"),
    ("warps_reversed", "nan"),
)
_LIBRARIES = {}


def cached_library(**options):
    """build_library(**options), built at most once per test session; skips without g++."""
    import pytest

    if compiler() is None:
        pytest.skip("no C++ compiler (g++): the CUDA-on-CPU harness cannot be built")
    key = repr(sorted(options.items()))
    if key not in _LIBRARIES:
        _LIBRARIES[key] = build_library(**options)
    return _LIBRARIES[key]
