"""Atomic writes of files and directories (everything but model checkpoints, which `canvit_model.io` writes).

Files: the writer fills a unique temp file beside the target; on success the file is fsynced, given the
mode `open()` would have given it (0o666 less the umask: 0o644 under umask 022, where mkstemp's 0o600 would
lock a shared results store or feature directory to its writer), renamed onto the target, and the
directory is fsynced. Readers see the old file or the whole new one; a failure leaves the old one intact.

Directories: the same with a temp directory, whose files are all fsynced, swapped into place in one step
(Linux renameat2 RENAME_EXCHANGE), so there is no moment where neither the old nor the new directory
exists. Fallback where the exchange is unavailable (not Linux, glibc < 2.28, a file system without it):
the old directory is renamed aside, the new one renamed in, the old one removed; a crash between the two
renames leaves the old directory beside the target as `.<name>.old-*` and nothing at the target.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def created_mode(mode: int = 0o666) -> int:
    """`mode` less the process umask (what `open()` / `mkdir()` give a new file / directory)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return mode & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: read the umask by setting it (restored at once)
    os.umask(mask)
    return mode & ~mask


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a directory's entries (a rename into it) durable; a no-op where directories cannot be opened."""
    try:
        fd = os.open(os.fspath(directory), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: str | os.PathLike[str]) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a unique temp path beside `path` for a writer that wants a file name (safetensors, parquet,
    PIL); when the block ends cleanly the file is fsynced, given the umask's mode and renamed onto `path`,
    else removed (see the module docstring). Parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, created_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def exchange(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Swap two existing paths in one step (Linux renameat2 RENAME_EXCHANGE). False where the system or the
    file system does not support it (nothing was changed); other failures raise OSError."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # glibc < 2.28
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(a), None, os.fspath(b))


def _swap_in(tmp: Path, path: Path) -> None:
    """Put directory `tmp` at `path`; an existing `path` is replaced and removed (module docstring)."""
    if not path.exists():
        os.rename(tmp, path)
        return
    if exchange(tmp, path):
        shutil.rmtree(tmp)  # tmp now holds the old directory
        return
    old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
    os.rename(path, old / "d")
    os.rename(tmp, path)
    shutil.rmtree(old)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temp directory beside `path` to fill; when the block ends cleanly every file in it is
    fsynced, files and folders get the umask's modes, and it replaces `path` in one step (see the module
    docstring), else it is removed and `path` is untouched. Parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        file_mode, dir_mode = created_mode(), created_mode(0o777)
        for root, _, files in os.walk(tmp):
            for f in files:  # some writers (safetensors, mkstemp) create 0o600 files: give them the umask's mode
                _fsync_file(os.path.join(root, f))
                os.chmod(os.path.join(root, f), file_mode)
            os.chmod(root, dir_mode)
            fsync_dir(root)
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(path.parent)
