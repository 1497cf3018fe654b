"""History and queue in SQLite (WAL); the lock that lets one process drive a data dir is engine.data_dir's.

Every job is a row: what to run (source, prompt, parameters), where it is (status, queue position),
when (timestamps) and what came of it (output folder, timings, metrics, the failure's reason).
A job found ``running`` when the store opens belonged to a process that died: it becomes
``interrupted``, and :meth:`Store.requeue` puts it back in the queue.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data_dir import data_dir_error, store_error
from .errors import EditError
from .params import SPECS_BY_NAME, EditParams, ParamsError, build_params, params_to_dict

QUEUED, RUNNING, DONE, FAILED, CANCELLED, INTERRUPTED = (
    "queued", "running", "done", "failed", "cancelled", "interrupted")
REQUEUEABLE = (FAILED, CANCELLED, INTERRUPTED)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id          TEXT PRIMARY KEY,
    source      TEXT NOT NULL,
    source_sha  TEXT,
    prompt      TEXT NOT NULL,
    params      TEXT NOT NULL,
    status      TEXT NOT NULL,
    position    INTEGER NOT NULL DEFAULT 0,
    created     REAL NOT NULL,
    started     REAL,
    finished    REAL,
    output_dir  TEXT,
    timings     TEXT NOT NULL DEFAULT '{}',
    metrics     TEXT NOT NULL DEFAULT '{}',
    error       TEXT,
    log_path    TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, position);
CREATE TABLE IF NOT EXISTS settings (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL
);
"""
PAUSED_SETTING = "queue_paused"  # "1" while the queue is paused: kept across restarts
STORE_FILE = "cogedit.db"  # the store's file in the data dir


@dataclass(frozen=True)
class JobRecord:
    """One job as the store holds it."""

    id: str
    source: str
    source_sha: str | None
    prompt: str
    params: EditParams
    status: str
    position: int
    created: float
    started: float | None
    finished: float | None
    output_dir: str | None
    timings: dict[str, float]
    metrics: dict[str, float]
    error: str | None
    log_path: str | None


def variant_key(job: JobRecord) -> tuple:
    """Jobs with equal keys are variants of one source: same clip, same parameters but the seed. The
    worker runs them as one batch over one inversion; the history shows them side by side."""
    return (job.source_sha or job.source, job.source, dataclasses.replace(job.params, seed=0))


EXPECTED_COLUMNS = {"id", "source", "source_sha", "prompt", "params", "status", "position", "created", "started",
                    "finished", "output_dir", "timings", "metrics", "error", "log_path"}


class Store:
    """Thread-safe access to the jobs table (one connection, one lock)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise data_dir_error(self.path.parent, exc) from exc
        try:
            if self.path.exists() and not self.path.is_file():
                raise sqlite3.DatabaseError("it is not a file")
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            self._check_schema()
            self.interrupted_on_open = self._recover()
        except (sqlite3.Error, OSError, EditError) as exc:
            if self._db is not None:
                self._db.close()
            if isinstance(exc, EditError):
                raise
            raise store_error(exc, self.path) from exc

    def _check_schema(self) -> None:
        """A readable database with the jobs table this version writes (quick_check reads every page)."""
        verdict = self._db.execute("PRAGMA quick_check").fetchone()[0]
        if verdict != "ok":
            raise sqlite3.DatabaseError(f"database disk image is malformed: {verdict}")
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(jobs)")}
        if not EXPECTED_COLUMNS <= columns:
            raise sqlite3.DatabaseError(f"its jobs table lacks {', '.join(sorted(EXPECTED_COLUMNS - columns))}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """SQLite's faults as one-line EditErrors (a full disk, a database damaged while open)."""
        try:
            yield
        except sqlite3.Error as exc:
            raise store_error(exc, self.path) from exc

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._guard():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # a failed COMMIT (a full disk) leaves it open
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise

    def _recover(self) -> list[str]:
        """Jobs left ``running`` by a dead process become ``interrupted``."""
        with self._tx() as db:
            ids = [r["id"] for r in db.execute("SELECT id FROM jobs WHERE status = ?", (RUNNING,))]
            db.execute("UPDATE jobs SET status = ?, error = ? WHERE status = ?",
                       (INTERRUPTED, "the process stopped while this job ran", RUNNING))
        return ids

    # -- reading -------------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock, self._guard():
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return job_from_row(row) if row else None

    def jobs(self, statuses: tuple[str, ...] | None = None) -> list[JobRecord]:
        """Jobs in queue order (position, then creation)."""
        query, args = "SELECT * FROM jobs", ()
        if statuses:
            query += f" WHERE status IN ({','.join('?' * len(statuses))})"
            args = statuses
        with self._lock, self._guard():
            rows = self._db.execute(query + " ORDER BY position, created", args).fetchall()
        return [job_from_row(r) for r in rows]

    def queued(self) -> list[JobRecord]:
        return self.jobs((QUEUED,))

    def history(self, search: str = "") -> list[JobRecord]:
        """Finished jobs, newest first, filtered by a case-insensitive search of prompt and source."""
        like = f"%{search.lower()}%"
        with self._lock, self._guard():
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE status = ? AND (lower(prompt) LIKE ? OR lower(source) LIKE ?) "
                "ORDER BY finished DESC", (DONE, like, like)).fetchall()
        return [job_from_row(r) for r in rows]

    # -- writing -------------------------------------------------------------------------------

    def add(self, source: str, prompt: str, params: EditParams, source_sha: str | None = None) -> JobRecord:
        job_id = uuid.uuid4().hex[:10]
        with self._tx() as db:
            position = db.execute("SELECT COALESCE(MAX(position), 0) + 1 FROM jobs").fetchone()[0]
            db.execute("INSERT INTO jobs (id, source, source_sha, prompt, params, status, position, created) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (job_id, str(source), source_sha, prompt, json.dumps(params_to_dict(params)), QUEUED,
                        position, time.time()))
        return self.get(job_id)

    def _update(self, job_id: str, **fields: Any) -> None:
        columns = ", ".join(f"{name} = ?" for name in fields)
        values = [json.dumps(v) if isinstance(v, dict) else v for v in fields.values()]
        with self._tx() as db:
            db.execute(f"UPDATE jobs SET {columns} WHERE id = ?", (*values, job_id))

    def mark_running(self, job_id: str) -> None:
        self._update(job_id, status=RUNNING, started=time.time(), error=None, log_path=None)

    def mark_done(self, job_id: str, output_dir: str, timings: dict, metrics: dict) -> None:
        self._update(job_id, status=DONE, finished=time.time(), output_dir=output_dir, timings=timings,
                     metrics=metrics, error=None)

    def mark_failed(self, job_id: str, reason: str, log_path: str | None) -> None:
        self._update(job_id, status=FAILED, finished=time.time(), error=reason, log_path=log_path)

    def mark_cancelled(self, job_id: str) -> None:
        self._update(job_id, status=CANCELLED, finished=time.time())

    def mark_interrupted(self, job_id: str, reason: str) -> None:
        self._update(job_id, status=INTERRUPTED, finished=time.time(), error=reason)

    def mark_queued(self, job_id: str, front: bool = False) -> None:
        """Back to the queue: at its end, or at its front (a job whose batch was cut short)."""
        with self._tx() as db:
            edge = "MIN(position) - 1" if front else "MAX(position) + 1"
            position = db.execute(f"SELECT COALESCE({edge}, 0) FROM jobs").fetchone()[0]
            db.execute("UPDATE jobs SET status = ?, position = ?, started = NULL, finished = NULL, "
                       "error = NULL WHERE id = ?", (QUEUED, position, job_id))

    def requeue(self, job_id: str) -> bool:
        """A failed, cancelled or interrupted job goes back to the end of the queue."""
        record = self.get(job_id)
        if record is None or record.status not in REQUEUEABLE:
            return False
        self.mark_queued(job_id)
        return True

    def move(self, job_id: str, offset: int) -> bool:
        """Swap a queued job with its neighbour ``offset`` places away (-1: up, +1: down)."""
        queue = self.queued()
        ids = [j.id for j in queue]
        if job_id not in ids:
            return False
        i = ids.index(job_id)
        j = i + offset
        if not 0 <= j < len(ids):
            return False
        a, b = queue[i], queue[j]
        with self._tx() as db:
            db.execute("UPDATE jobs SET position = ? WHERE id = ?", (b.position, a.id))
            db.execute("UPDATE jobs SET position = ? WHERE id = ?", (a.position, b.id))
            if a.position == b.position:  # equal positions: separate them in the requested order
                db.execute("UPDATE jobs SET position = position + ? WHERE id = ?", (1 if offset > 0 else -1, a.id))
        return True

    @property
    def paused(self) -> bool:
        """Whether the queue was left paused (by this process or an earlier one)."""
        with self._lock, self._guard():
            row = self._db.execute("SELECT value FROM settings WHERE name = ?", (PAUSED_SETTING,)).fetchone()
        return row is not None and row["value"] == "1"

    def set_paused(self, paused: bool) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO settings (name, value) VALUES (?, ?)",
                       (PAUSED_SETTING, "1" if paused else "0"))

    def delete(self, job_id: str) -> JobRecord | None:
        record = self.get(job_id)
        if record is not None:
            with self._tx() as db:
                db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return record


def _stored_params(text: str) -> EditParams:
    """Parameters as stored; fields a newer or older version does not know are dropped."""
    try:
        values = json.loads(text)
        return build_params({k: v for k, v in values.items() if k in SPECS_BY_NAME})
    except (ValueError, ParamsError, AttributeError):
        return EditParams()


def _stored_numbers(text: str | None) -> dict[str, float]:
    """Timings or metrics as stored; a cell that is not a JSON object of numbers reads as empty."""
    try:
        values = json.loads(text or "{}")
    except ValueError:
        return {}
    if not isinstance(values, dict):
        return {}
    return {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def job_from_row(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"], source=row["source"], source_sha=row["source_sha"], prompt=row["prompt"],
        params=_stored_params(row["params"]), status=row["status"], position=row["position"],
        created=row["created"], started=row["started"], finished=row["finished"], output_dir=row["output_dir"],
        timings=_stored_numbers(row["timings"]), metrics=_stored_numbers(row["metrics"]),
        error=row["error"], log_path=row["log_path"])
