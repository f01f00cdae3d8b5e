"""Atomic file writes: a reader sees the old file or the whole new one, never half of one.

Every file aha-interp writes goes through :func:`atomic_path`, which also

* gives the new file the mode ``open()`` would: an existing target keeps its permission bits, a new
  one gets ``0o666 & ~umask`` (``0644`` under the usual umask 022), not :func:`tempfile.mkstemp`'s 0600;
* turns every failure to write (a read-only folder, a full disk, an ``--out`` that is a folder or
  lies under a file) into a one-line :class:`~aha_interp.errors.AhaError`, leaving neither the
  temporary file nor a partial target behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from .errors import AhaError

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (``/proc/self/status``),
    else by an ``os.umask`` round trip under a lock (during which the umask is the stricter 077)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def _target_mode(path: Path) -> int:
    """The mode ``open(path, "w")`` would leave: an existing file's own bits, else 0o666 minus the umask."""
    try:
        st = path.stat()
    except OSError:
        st = None
    if st is not None and stat.S_ISREG(st.st_mode):
        return stat.S_IMODE(st.st_mode)
    return 0o666 & ~current_umask()


def _first_non_folder(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` that is not a folder (the reason a parent cannot be made)."""
    for p in path.parents:
        if p.exists() or p.is_symlink():
            return None if p.is_dir() else p
    return None


def write_error(path: Path, e: OSError) -> AhaError:
    """The one-line error for a failed write of ``path``."""
    code = e.errno
    if code in (errno.ENOTDIR, errno.EEXIST) and (blocker := _first_non_folder(path)) is not None:
        reason = f"{blocker} is a file, not a folder"
    elif code == errno.EISDIR or path.is_dir():
        reason = "it is a folder; give a file name"
    elif code == errno.ENOSPC:
        reason = "no space left on device"
    elif code in (errno.EACCES, errno.EPERM):
        reason = f"permission denied (is {path.parent} read-only?)"
    elif code == errno.EROFS:
        reason = "the file system is read-only"
    else:
        reason = e.strerror or str(e) or type(e).__name__
        reason = reason[:1].lower() + reason[1:]
    return AhaError(f"cannot write {path}: {reason}; choose another --out")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary file keeps ``path``'s suffix so that writers that dispatch on it
    (matplotlib's ``savefig``) choose the right format. An :class:`OSError` while creating,
    writing or renaming it becomes an :class:`AhaError`; nothing is left behind on any failure.
    """
    path = Path(path)
    if path.is_dir():
        raise write_error(path, IsADirectoryError(errno.EISDIR, "is a folder", str(path)))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a short stem: the name must stay under NAME_MAX even when the target's is long
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem[:64]}.", suffix=f".tmp{path.suffix[:16]}", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise write_error(path, e) from None
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
            os.chmod(tmp_path, _target_mode(path))
            os.replace(tmp_path, path)
        except OSError as e:
            raise write_error(path, e) from None
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` as UTF-8 (whatever the locale), atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
