"""NVRTC through ctypes, for machines without CuPy: the calls of ``cupy.cuda.nvrtc`` the compile tests use.

``libnvrtc`` comes from the ``nvidia-cuda-nvrtc`` wheel (a dev dependency),
so CI compiles the kernels with the very compiler ``cupy.RawModule`` runs at
first use, without a GPU, a driver or CuPy.
"""

import ctypes
import glob
import os
import sys


class NVRTCError(RuntimeError):
    pass


def _bytes(text):
    return text if isinstance(text, bytes) else text.encode()


def _library_path():
    """libnvrtc.so from the nvidia-cuda-nvrtc wheel, else the CUDA toolkit's; None when neither is there."""
    roots = [os.path.join(p, "nvidia") for p in sys.path if os.path.isdir(os.path.join(p, "nvidia"))]
    found = [f for root in roots for f in sorted(glob.glob(os.path.join(root, "*", "lib", "libnvrtc.so*")))]
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            found += sorted(glob.glob(os.path.join(home, "lib64", "libnvrtc.so*")))
    found = [f for f in found if "builtins" not in os.path.basename(f)]
    return found[0] if found else None


class Nvrtc:
    """The subset of ``cupy.cuda.nvrtc``: createProgram, compileProgram, getProgramLog, getCUBIN, getPTX."""

    NVRTCError = NVRTCError

    def __init__(self, path=None):
        path = path or _library_path()
        if path is None:
            raise OSError("libnvrtc not found: uv sync installs the nvidia-cuda-nvrtc wheel")
        self.path = path
        self.lib = ctypes.CDLL(path)
        self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p

    def _call(self, name, *args):
        status = getattr(self.lib, name)(*args)
        if status != 0:
            raise NVRTCError(f"{name}: {self.lib.nvrtcGetErrorString(status).decode()} ({status})")

    def getVersion(self):
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._call("nvrtcVersion", ctypes.byref(major), ctypes.byref(minor))
        return major.value, minor.value

    def createProgram(self, source, name, headers=(), include_names=()):
        program = ctypes.c_void_p()
        heads = (ctypes.c_char_p * len(headers))(*map(_bytes, headers))
        names = (ctypes.c_char_p * len(include_names))(*map(_bytes, include_names))
        self._call("nvrtcCreateProgram", ctypes.byref(program), _bytes(source), _bytes(name),
                   len(headers), heads, names)
        return program

    def compileProgram(self, program, options):
        opts = (ctypes.c_char_p * len(options))(*(o.encode() for o in options))
        self._call("nvrtcCompileProgram", program, len(options), opts)

    def _read(self, program, what):
        size = ctypes.c_size_t()
        self._call(f"nvrtcGet{what}Size", program, ctypes.byref(size))
        buffer = ctypes.create_string_buffer(size.value)
        self._call(f"nvrtcGet{what}", program, buffer)
        return buffer.raw[: size.value]

    def getProgramLog(self, program):
        return self._read(program, "ProgramLog").rstrip(b"\0").decode(errors="replace")

    def getCUBIN(self, program):
        return self._read(program, "CUBIN")

    def getPTX(self, program):
        return self._read(program, "PTX").rstrip(b"\0").decode()

    def destroyProgram(self, program):
        self._call("nvrtcDestroyProgram", ctypes.byref(program))
