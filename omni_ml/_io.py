"""The one atomic writer: a file appears under its name complete or not at all.

Every command that writes a file (models, identity maps, feature tables, campaign files, measurement
reports, appended contacts) writes a hidden temporary file beside the target,
``.<name>.<pid>.<random>.tmp`` (same directory, so the rename is atomic on one file system), flushes it
to disk (``fsync``), renames it over the target with :func:`os.replace` and flushes the directory entry.
The temporary file is removed on any failure, including ``KeyboardInterrupt``.

A process killed with SIGKILL cannot clean up: its temporary file stays behind, never a file under the
target's name. The next write of the same target removes such leftovers (:func:`clean_stale_temps`):
temporary files of that target whose process is no longer running, or older than
:data:`STALE_AFTER_SECONDS`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["STALE_AFTER_SECONDS", "atomic_path", "clean_stale_temps", "commit", "temp_path", "write_atomically"]

#: A temporary file of a target older than this is a leftover even if its process id is in use again.
STALE_AFTER_SECONDS = 3600.0


def temp_path(target: Path) -> Path:
    """A fresh hidden temporary path beside ``target``: ``.<name>.<pid>.<8 hex>.tmp``.

    Examples
    --------
    >>> p = temp_path(Path("/data/out.parquet"))
    >>> p.parent.as_posix(), p.name.startswith(".out.parquet."), p.suffix
    ('/data', True, '.tmp')
    """
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def clean_stale_temps(target: Path, *, max_age: float = STALE_AFTER_SECONDS) -> list[Path]:
    """Remove leftover temporary files of ``target`` from killed runs; returns the removed paths.

    A leftover is ``.<name>.<pid>.<hex>.tmp`` beside ``target`` whose process ``pid`` is not running,
    or that was last modified more than ``max_age`` seconds ago. Temporary files of live writers
    (including this process) younger than that are kept; files of other targets are never touched.
    """
    target = Path(target)
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(\d+)\.[0-9a-f]+\.tmp$")
    removed: list[Path] = []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None:
            continue
        pid = int(match[1])
        try:
            old = now - entry.stat().st_mtime > max_age
        except OSError:  # removed meanwhile
            continue
        if (pid != os.getpid() and not _pid_alive(pid)) or old:
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
    return removed


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be opened or synced
        _fsync_path(directory)


def commit(tmp: Path, target: Path) -> None:
    """Flush ``tmp`` to disk, rename it over ``target`` and flush the directory entry."""
    _fsync_path(tmp)
    os.replace(tmp, target)
    _fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_path(target: str | Path, *, mkdir: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; when the block ends normally it becomes ``target``.

    Write the file at the yielded path inside the block. If the block raises, the temporary file is
    removed and ``target`` is left as it was.

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "x.txt"
    >>> with atomic_path(out) as tmp:
    ...     _ = tmp.write_text("hello")
    >>> out.read_text(), sorted(p.name for p in out.parent.iterdir())
    ('hello', ['x.txt'])
    """
    final = Path(target)
    if mkdir:
        final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(final)
    tmp = temp_path(final)
    try:
        yield tmp
        commit(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomically(target: str | Path, write: Callable[[Path], object], *, mkdir: bool = True) -> Path:
    """``write(tmp)`` a temporary file beside ``target``, then make it ``target`` atomically; returns ``target``.

    Examples
    --------
    >>> import tempfile
    >>> import polars as pl
    >>> out = Path(tempfile.mkdtemp()) / "t.parquet"
    >>> write_atomically(out, pl.DataFrame({"a": [1]}).write_parquet).name
    't.parquet'
    """
    final = Path(target)
    with atomic_path(final, mkdir=mkdir) as tmp:
        write(tmp)
    return final
