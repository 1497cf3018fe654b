"""The queue as the store last left it, read without opening the store for writing (no lock, no torch).

The app shows it in the seconds before its engine opens (torch's import, the data dir's lock): the
same rows the store will show, read from SQLite in read-only mode. A job still ``running`` in the file
belonged to a process that has ended (the caller has checked that no other process holds the data dir),
so it reads as ``interrupted``, as the store will mark it when it opens.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .paths import data_dir
from .store import INTERRUPTED, PAUSED_SETTING, RUNNING, STORE_FILE, JobRecord, job_from_row


@dataclass(frozen=True)
class StoreSnapshot:
    """Every job in queue order, and whether the queue was left paused; empty when there is no store
    yet or it cannot be read (the engine says why once it opens)."""

    jobs: tuple[JobRecord, ...] = ()
    paused: bool = False


def read_store_snapshot(root: Path | None = None) -> StoreSnapshot:
    """The jobs and the pause of the store in ``root`` (the data dir by default), read-only."""
    path = Path(root or data_dir()) / STORE_FILE
    if not path.is_file():
        return StoreSnapshot()
    # A store closed cleanly has no write-ahead log: read it as immutable, which creates no -wal/-shm
    # files beside it; one left by a crash is read with its log (its files exist already).
    wal = path.with_name(path.name + "-wal")
    mode = "mode=ro" if wal.is_file() and wal.stat().st_size else "immutable=1"
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True, timeout=1)
    except sqlite3.Error:
        return StoreSnapshot()
    with contextlib.closing(db):
        db.row_factory = sqlite3.Row
        try:
            rows = db.execute("SELECT * FROM jobs ORDER BY position, created").fetchall()
            jobs = tuple(job_from_row(row) for row in rows)
        except (sqlite3.Error, KeyError, IndexError):  # not a store this version reads: the engine will say
            return StoreSnapshot()
        try:
            row = db.execute("SELECT value FROM settings WHERE name = ?", (PAUSED_SETTING,)).fetchone()
        except sqlite3.Error:  # a store from before the pause was kept
            row = None
    ended = tuple(dataclasses.replace(job, status=INTERRUPTED) if job.status == RUNNING else job for job in jobs)
    return StoreSnapshot(ended, paused=row is not None and row["value"] == "1")
