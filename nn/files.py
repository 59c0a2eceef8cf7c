"""Atomic file writes: a reader sees the old file or the new one, never half.

Write to a temporary file in the same folder, fsync it, rename it over the
target (atomic on POSIX and Windows), then fsync the folder so the rename
itself survives a power cut.
"""

import os
import tempfile
from pathlib import Path

from backends import XpnetError


def atomic_write_bytes(path, data):
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise XpnetError(f"cannot write {path}: folder {folder} does not exist; create it or choose another path")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise XpnetError(f"cannot write {path}: {exc.strerror}; choose a writable folder") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            # mkstemp makes the file private (0600); a model file is meant to be
            # shared, so give it the permissions open() would have given.
            _chmod_like_open(handle.fileno())
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(folder)


def atomic_write_json(path, value):
    """``value`` as indented JSON (no NaN), written atomically."""
    import json

    atomic_write_bytes(path, (json.dumps(value, indent=2, allow_nan=False) + "\n").encode())


def _chmod_like_open(fd):
    if hasattr(os, "fchmod"):  # POSIX only; Windows has no mode bits to fix
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)


def _fsync_folder(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
