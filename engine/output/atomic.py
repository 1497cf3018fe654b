"""Writing results: atomic files, H.264 MP4s, the per-edit folder and its metrics.

Every file lands under its final name only once it is complete (written to a temporary name in the
same folder, flushed, then renamed), so a crash never leaves half a video where a result belongs.
Files get the mode the user's umask gives a new file (0644 under the usual 022: readable by the other
users of a shared GPU box), not the 0600 of a private temporary file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import OutputError
from ..paths import not_a_regular_file

DISK_FULL_FIX = "free disk space (or choose another --output-dir) and re-queue the job"


WRITABLE_FIX = "choose a writable --output-dir"

# Staging folders and temporary files carry their process's token; while a process has any in a folder
# it holds an flock on ``.cogedit-owner-<token>.lock`` there (removed with its last one, so a finished
# run leaves nothing behind). Another process (its own data dir, the same --output-dir or cache dir)
# removes staging only when that lock is free or gone: then its owner has ended or finished with it.
OWNER = uuid.uuid4().hex[:12]
_OWNED = re.compile(r"\.partial-([0-9a-f]{12})(?=[-.]|$)")
_OWNER_LOCKS: dict[Path, list[Any]] = {}  # folder -> [locked handle, entries staged there]
_OWNER_MUTEX = threading.Lock()


def _owner_lock(folder: Path, token: str) -> Path:
    return folder / f".cogedit-owner-{token}.lock"


def hold_owner_lock(folder: Path) -> None:
    """Count one more staged entry of this process in ``folder``, taking its owner lock for the first.
    The lock file appears already locked (locked under a temporary name, then renamed)."""
    folder = Path(folder).resolve()
    with _OWNER_MUTEX:
        if folder in _OWNER_LOCKS:
            _OWNER_LOCKS[folder][1] += 1
            return
        fd, tmp = tempfile.mkstemp(prefix=".cogedit-owner-", suffix=".tmp", dir=folder)
        handle = os.fdopen(fd, "w")
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(tmp, _owner_lock(folder, OWNER))
        _OWNER_LOCKS[folder] = [handle, 1]


def release_owner_lock(folder: Path) -> None:
    """One staged entry fewer in ``folder``; with the last, the lock file is removed (then unlocked)."""
    folder = Path(folder).resolve()
    with _OWNER_MUTEX:
        held = _OWNER_LOCKS.get(folder)
        if held is None:
            return
        held[1] -= 1
        if held[1] > 0:
            return
        del _OWNER_LOCKS[folder]
        with contextlib.suppress(OSError):
            _owner_lock(folder, OWNER).unlink()
        held[0].close()


def _owner_gone(folder: Path, token: str) -> bool:
    """True when ``token``'s process no longer holds its lock in ``folder`` (its lock is taken to tell)."""
    path = _owner_lock(folder, token)
    try:
        handle = open(path)
    except FileNotFoundError:
        return True  # a cleaner found it gone before and removed its lock
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:  # free and still the file at that name: its owner has ended (an owner removes it before unlocking)
            return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            return True


def remove_abandoned_staging(folder: Path) -> list[Path]:
    """Remove the staging folders and temporary files in ``folder`` whose owner process is gone (never
    another live process's, never this one's); returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    gone: dict[str, bool] = {}
    removed = []
    for entry in list(folder.iterdir()):  # listed before any lock is looked at
        match = _OWNED.search(entry.name) if entry.name.startswith(".") else None
        if match is None or match.group(1) == OWNER:
            continue
        token = match.group(1)
        if gone.setdefault(token, _owner_gone(folder, token)):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    for lock in folder.glob(".cogedit-owner-*.lock"):
        token = lock.name[len(".cogedit-owner-"):-len(".lock")]
        if token != OWNER and gone.setdefault(token, _owner_gone(folder, token)):
            lock.unlink(missing_ok=True)
    return removed


def _file_in_the_way(folder: Path) -> Path | None:
    """The nearest of ``folder`` and its parents that exists as something other than a folder."""
    for candidate in (folder, *folder.parents):
        if candidate.exists() or candidate.is_symlink():
            return None if candidate.is_dir() else candidate
    return None


def _output_error(exc: OSError, path: Path, folder: Path | None = None) -> OutputError:
    """One line for a failed write of ``path`` (or of the folder ``folder``, when creating it)."""
    creating = folder is not None
    folder = folder or path.parent
    if exc.errno == errno.ENOSPC:
        return OutputError(f"disk full while writing {path}", DISK_FULL_FIX)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write to {folder} (permission denied)", WRITABLE_FIX)
    blocker = _file_in_the_way(folder) if exc.errno in (errno.ENOTDIR, errno.EEXIST) else None
    if blocker == folder:
        return OutputError(f"the output folder {folder} is a file, not a folder", WRITABLE_FIX)
    if blocker is not None:
        return OutputError(f"cannot create the output folder {folder}: {blocker} is a file, not a folder",
                           WRITABLE_FIX)
    if creating:
        return OutputError(f"cannot create the output folder {folder} ({exc.strerror or exc})", WRITABLE_FIX)
    return OutputError(f"cannot write {path} ({exc.strerror or exc})", "check the output directory")


def check_output_dir(output_dir: str | os.PathLike) -> Path:
    """Create ``output_dir`` if needed and prove it writable, before any model work is spent on a job.

    Permission bits are not enough to tell (root ignores them, a read-only mount does not show in
    them), so a small file is created and removed.
    """
    folder = Path(output_dir).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise _output_error(exc, folder / ".write-test", folder) from exc
    return folder


MIN_FREE_BYTES = 128 << 10  # less than this free, and not even the smallest result (a 9-frame clip) fits
SPACE_FIX = "free disk space there, or choose another --output-dir"


def check_output_space(output_dir: str | os.PathLike, need: int = MIN_FREE_BYTES) -> None:
    """Refuse a folder whose disk is (all but) full before minutes of model work are spent on a result
    that cannot be written (the disk may still fill up later: the export says so then)."""
    folder = Path(output_dir).expanduser()
    try:
        info = os.statvfs(folder)
    except OSError:
        return
    free = info.f_bavail * info.f_frsize
    if free < need or (info.f_files and info.f_favail < 8):
        what = f"{free // 1024} KiB free" if free < need else "no free inodes"
        raise OutputError(f"disk full under {folder} ({what})", SPACE_FIX)


LATENTS_FIX = "give --save-latents a file path in a writable folder"


def check_file_target(path: str | os.PathLike, fix: str = LATENTS_FIX) -> Path:
    """Prove that a file can be written at ``path`` (its folder created and writable, nothing but a
    regular file in its place) before any model work is spent on the job that writes it."""
    path = Path(path).expanduser()
    kind = not_a_regular_file(path)
    if kind:
        raise OutputError(f"cannot write {path}: it is {kind}, not a file", fix)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(_output_error(exc, path, path.parent).problem, fix) from exc
    return path


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``
    (never onto a folder, a device or a FIFO that took its name)."""
    path = Path(path)
    owned = not path.parent.name.startswith(".partial-")  # inside a staging folder, the folder is owned
    tmp = None
    locked = False
    try:
        if owned:
            hold_owner_lock(path.parent)
            locked = True
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial-{OWNER}{suffix}", dir=path.parent)
        os.fchmod(fd, 0o666 & ~current_umask())  # a new file's mode, not mkstemp's private 0600
        os.close(fd)
        tmp = Path(tmp_name)
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        kind = not_a_regular_file(path)  # never replace a folder or a device that took the name
        if kind:
            raise OutputError(f"cannot write {path}: it is {kind}, not a file", "give a file path")
        os.replace(tmp, path)
    except OutputError:
        _remove(tmp)
        raise
    except OSError as exc:
        _remove(tmp)
        raise _output_error(exc, path) from exc
    except BaseException:
        _remove(tmp)
        raise
    finally:
        if locked:
            release_owner_lock(path.parent)


def current_umask() -> int:
    """The process's umask, read without changing it (Linux: /proc/self/status); elsewhere it is set
    and put back at once."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _remove(tmp: Path | None) -> None:
    if tmp is not None:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def copy_file_atomic(source: Path, path: Path) -> None:
    """Copy ``source`` to ``path`` so that ``path`` only ever appears complete."""
    with atomic_path(path, suffix=path.suffix) as tmp:
        shutil.copyfile(source, tmp)


def write_json_atomic(path: Path, payload: dict[str, Any], allow_nan: bool = False) -> None:
    """``payload`` as strict JSON: a NaN or infinity raises ValueError rather than being written as
    invalid JSON (``allow_nan``: written as Python's NaN/Infinity, for the benchmark's raw figures)."""
    write_bytes_atomic(path, (json.dumps(payload, indent=2, sort_keys=False, allow_nan=allow_nan) + "\n").encode())


def _slug(text: str, limit: int = 32) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].rstrip("-") or "edit"


class StagedFolder:
    """One edit's result folder, built under a hidden staging name and renamed into place whole.

    The final folder (``YYYYmmdd-HHMMSS-<slug>-<id>``) is never reused; until :meth:`commit` nothing
    appears under it, so a crash or a cancel never leaves a half-finished result behind a final name.
    """

    def __init__(self, output_dir: Path, prompt: str):
        output_dir = Path(output_dir).expanduser()
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{_slug(prompt)}-{uuid.uuid4().hex[:6]}"
        self.final = output_dir / name
        self.path = output_dir / f".partial-{OWNER}-{name}"
        self._owned = False
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
            hold_owner_lock(output_dir)
            self._owned = True
            self.path.mkdir()
        except OSError as exc:
            self._release()
            raise _output_error(exc, self.final, output_dir) from exc

    def _release(self) -> None:
        if self._owned:
            self._owned = False
            release_owner_lock(self.final.parent)

    def commit(self) -> Path:
        try:
            os.rename(self.path, self.final)
        except OSError as exc:
            raise _output_error(exc, self.final) from exc
        self._release()
        return self.final

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self._release()


