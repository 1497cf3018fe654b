"""The data dir's one-line errors and the lock that lets one process drive it (``cogedit.lock``)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
from pathlib import Path

from .errors import EditError, OutputError
from .paths import not_a_regular_file

DATA_DIR_FIX = "make it a writable folder, or point XDG_DATA_HOME at one"


def data_dir_error(folder: Path, exc: BaseException) -> EditError:
    """One line for a data dir that cannot be created or written (a file in the way, read-only)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists() and not candidate.is_dir():
            return EditError(f"cannot use the data dir {folder}: {candidate} is a file, not a folder", DATA_DIR_FIX)
        if candidate.exists():
            break
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return EditError(f"cannot use the data dir {folder} ({reason})", DATA_DIR_FIX)


STORE_DISK_FULL_FIX = ("free disk space under the data dir (or point XDG_DATA_HOME at another disk); "
                       "queued jobs are kept")


class DataDirBusy(EditError):
    """Another process holds the data dir."""


class HistoryUnreadable(EditError):
    """The history database is not a database this version can read (truncated, garbage, a folder)."""


def _is_disk_full(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "disk is full" in text or "disk full" in text or getattr(exc, "errno", None) == errno.ENOSPC


def store_error(exc: sqlite3.Error | OSError, path: Path) -> EditError:
    """One line for a failed read or write of the history database ``path``."""
    if _is_disk_full(exc):
        return OutputError(f"disk full while writing {path}", STORE_DISK_FULL_FIX)
    if (isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)) or (
            "readonly database" in str(exc) or ("unable to open" in str(exc) and not os.access(path.parent, os.W_OK))):
        return OutputError(f"cannot write to {path.parent} (permission denied)",
                           "make the data dir writable, or point XDG_DATA_HOME at a writable folder")
    detail = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
    return HistoryUnreadable(
        f"the history database {path} is unreadable ({detail})",
        f"move it aside (mv {path} {path}.broken) and start again: the queue and history start empty, "
        "the result folders are kept")


class DataDirLock:
    """An exclusive ``flock`` on ``<data dir>/cogedit.lock`` holding the owner's pid."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / "cogedit.lock"
        self._handle = None

    def acquire(self) -> DataDirLock:
        self._check_lock_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+")
        except OSError as exc:
            raise data_dir_error(self.path.parent, exc) from exc
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise DataDirBusy(f"another cogedit-tui (pid {owner}) is using {self.path.parent}",
                              "close it first, or point XDG_DATA_HOME at another data dir") from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
        except OSError as exc:
            fcntl.flock(handle, fcntl.LOCK_UN)
            with contextlib.suppress(OSError):  # closing flushes the unwritten pid again
                handle.close()
            raise store_error(exc, self.path) from exc
        self._handle = handle
        return self

    def _check_lock_path(self) -> None:
        """The lock file is a regular file or absent: a folder, a FIFO (opening it may block) or a
        symlink (a dangling one would be followed) in its place is named."""
        kind = not_a_regular_file(self.path, follow_symlinks=False)
        if kind:
            raise EditError(f"the lock file {self.path} is {kind}",
                            "remove it (cogedit-tui creates it again), or point XDG_DATA_HOME at another data dir")

    def check_free(self) -> None:
        """Raise DataDirBusy when another process holds the data dir (takes the lock briefly)."""
        self.acquire().release()

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
