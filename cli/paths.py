"""Output paths checked before any work: no clash with an input or another output, and writable.

Paths are compared resolved (``./a``, ``a`` and a symlink to ``a`` are one
file), and files that exist are also compared by identity, so a hard link
counts too. An output that is an input folder, or lies inside one, is a
clash as well: ``--extra-data`` reads every ``.npz`` in its folder, so a
model written there would be read back as a sample.
"""

import os
from pathlib import Path

from backends import XpnetError


def _resolved(path):
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def _same(a, b):
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path, folder):
    return folder in path.parents


def check_no_clash(inputs, outputs):
    """``inputs`` and ``outputs``: lists of (flag, path); a clash raises XpnetError naming both flags."""
    resolved_inputs = [(flag, _resolved(path)) for flag, path in inputs if path is not None]
    resolved_outputs = [(flag, _resolved(path)) for flag, path in outputs if path is not None]
    for i, (flag, out) in enumerate(resolved_outputs):
        for in_flag, source in resolved_inputs:
            if _same(out, source) or (source.is_dir() and _inside(out, source)):
                where = "is" if _same(out, source) else "lies inside"
                raise XpnetError(
                    f"{flag} {out} {where} the input {in_flag} {source}: writing it would destroy what it reads; "
                    f"choose another {flag} path"
                )
        for other_flag, other in resolved_outputs[:i]:
            if _same(out, other) or _inside(out, other) or _inside(other, out):
                raise XpnetError(
                    f"{flag} and {other_flag} both write {out if _same(out, other) else out.parent}: "
                    "one would overwrite the other; give them different paths"
                )


def check_writable_file(flag, path, example="model.npz"):
    """``path`` can be written as a file: not a folder, its folder exists and is writable."""
    path = Path(path)
    if path.is_dir():
        raise XpnetError(f"{flag} {path} is a folder: give a file name, e.g. {path / example}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise XpnetError(f"{flag} {path}: folder {folder} does not exist; create it or choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise XpnetError(f"{flag} {path}: folder {folder} is not writable; choose a writable folder")


def check_writable_folder(flag, folder):
    """``folder`` is, or can be made as, a writable folder."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise XpnetError(f"{flag} {folder} is a file, not a folder: choose a folder path")
    existing = next(p for p in (folder.absolute(), *folder.absolute().parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise XpnetError(f"{flag} {folder}: {existing} is not writable; choose a writable folder")


def free_checkpoint_folder(out, has_checkpoint, keep=None):
    """Where Ctrl-C saves without --checkpoint-dir: ``OUT.checkpoint``, else ``OUT.2.checkpoint``, ...

    A folder that already holds another run's checkpoint is never reused
    (``keep``, the folder this run resumed from, may be).
    """
    out = Path(out)
    for n in range(1, 10_000):
        name = f"{out.stem}.checkpoint" if n == 1 else f"{out.stem}.{n}.checkpoint"
        folder = out.with_name(name)
        if not has_checkpoint(folder) or (keep is not None and _same(_resolved(folder), _resolved(keep))):
            return folder
    raise XpnetError(f"no free checkpoint folder beside {out}: delete old *.checkpoint folders")
