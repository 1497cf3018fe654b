"""The engine worker: one thread owns the pipeline and runs the queue; any thread can steer it.

API (every method returns at once; results arrive as events through :meth:`Worker.subscribe`):

- ``Worker.open(config)`` locks the data dir, opens the store and the inversion cache;
  ``start()`` loads the model in the background (stage ``load``) and starts taking jobs;
  ``stop()`` finishes the step under way, marks a running job interrupted, and ends the thread.
- ``submit(JobSpec)`` queues a job (persisted first); ``cancel(id)`` removes a queued job or stops a
  running one within one denoising step; ``move(id, ±1)`` reorders; ``pause()``/``resume()`` hold the
  queue after the current job; ``requeue(id)`` puts a failed, cancelled or interrupted job back.

Queued jobs that share a source and parameters (prompt and seed aside) run together as one batch of
variants over one inversion; after a batch, jobs of the same source go next, while it is hot.
"""

from __future__ import annotations

import dataclasses
import gc
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from .artifacts import Variant
from .cache import InversionCache
from .errors import Cancelled, EditError, OutOfMemoryError
from .events import (EngineReady, EngineStopped, Event, GpuMemory, JobCancelled, JobFailed, JobFinished, JobQueued,
                     JobStarted, StageFinished, StageStarted)
from .events_bus import EventBus
from .frames import check_video_path, file_digest
from .jobs import EngineConfig, JobSpec
from .model import LoadedModel, load_model
from .paths import cache_dir, data_dir, default_output_dir
from .run import run_edit
from .store import QUEUED, RUNNING, DataDirLock, JobRecord, Store

LOADING, IDLE, RUNNING_STATE, PAUSED, STOPPED, FAILED_STATE = "loading", "idle", "running", "paused", "stopped", "failed"
OOM_FIX = "use fewer frames (max_num_frames), keep vae_tiling on, or queue fewer variants of a source together"


class Worker:
    def __init__(self, config: EngineConfig, store: Store, cache: InversionCache | None = None,
                 loader: Callable[[], LoadedModel] | None = None, logs_dir: Path | None = None,
                 only: set[str] | None = None, lock: DataDirLock | None = None):
        self.config = config
        self.store = store
        self.cache = cache
        self.loader = loader or (lambda: load_model(config.model, config.device, config.dtype))
        self.logs_dir = Path(logs_dir) if logs_dir else data_dir() / "logs"
        self.output_dir = Path(config.output_dir) if config.output_dir else default_output_dir()
        self.only = only  # when set, run only these job ids (the headless command's own jobs)
        self.bus = EventBus()
        self.model: LoadedModel | None = None
        self.load_error: BaseException | None = None
        self.save_latents: Path | None = None  # the headless command's --save-latents
        self._lock = lock
        self._wake = threading.Condition()
        self._state = STOPPED
        self._paused = False
        self._stopping = False
        self._running: set[str] = set()
        self._cancel: set[str] = set()
        self._last_source: str | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def open(cls, config: EngineConfig, root: Path | None = None, cache_root: Path | None = None,
             **kwargs) -> Worker:
        """Lock the data dir (one process at a time), open its store and the inversion cache."""
        root = Path(root) if root else data_dir()
        cache_root = Path(cache_root) if cache_root else cache_dir()
        lock = DataDirLock(root).acquire()
        try:
            store = Store(root / "cogedit.db")
        except Exception:
            lock.release()
            raise
        cache = InversionCache(cache_root / "inversions", config.cache_max_bytes)
        return cls(config, store, cache, logs_dir=root / "logs", lock=lock, **kwargs)

    # -- control (any thread) --------------------------------------------------------------------

    @property
    def state(self) -> str:
        if self._state in (IDLE, RUNNING_STATE) and self._paused:
            return PAUSED if not self._running else RUNNING_STATE
        return self._state

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[..., None]:
        return self.bus.subscribe(callback)

    def start(self) -> None:
        self._remove_stale_partials()
        self._stopping = False
        self._thread = threading.Thread(target=self._main, name="cogedit-worker", daemon=True)
        self._thread.start()

    def stop(self, wait: bool = True, timeout: float | None = None) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if wait and self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        """Stop, deliver the last events, close the store and free the data dir."""
        self.stop()
        self.bus.close()
        self.store.close()
        if self._lock is not None:
            self._lock.release()

    def submit(self, spec: JobSpec) -> JobRecord:
        path = check_video_path(spec.source)
        record = self.store.add(str(path.resolve()), spec.prompt, spec.params, file_digest(path))
        self._publish(JobQueued(record.id, record.source, record.prompt, len(self.store.queued())))
        self._notify()
        return record

    def cancel(self, job_id: str) -> bool:
        record = self.store.get(job_id)
        if record is None:
            return False
        if record.status == QUEUED:
            self.store.mark_cancelled(job_id)
            self._publish(JobCancelled(job_id))
            return True
        if record.status == RUNNING and job_id in self._running:
            self._cancel.add(job_id)
            return True
        return False

    def move(self, job_id: str, offset: int) -> bool:
        return self.store.move(job_id, offset)

    def requeue(self, job_id: str) -> bool:
        done = self.store.requeue(job_id)
        if done:
            record = self.store.get(job_id)
            self._publish(JobQueued(job_id, record.source, record.prompt, len(self.store.queued())))
            self._notify()
        return done

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._notify()

    def wait_idle(self, job_ids: set[str], timeout: float | None = None) -> bool:
        """Block until none of ``job_ids`` is queued or running (for the headless command)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pending = [j for j in job_ids if (r := self.store.get(j)) and r.status in (QUEUED, RUNNING)]
            if not pending or self._state in (STOPPED, FAILED_STATE):
                return not pending
            if deadline is not None and time.monotonic() > deadline:
                return False
            with self._wake:
                self._wake.wait(0.1)

    def _remove_stale_partials(self) -> None:
        """Staging folders and temp files left by a process that died mid-write (we hold the lock)."""
        for pattern, folder in ((".partial-*", self.output_dir), (".*.partial*", self.output_dir),
                                (".*.partial*", self.cache.folder if self.cache else None)):
            if folder is None or not folder.is_dir():
                continue
            for stale in folder.glob(pattern):
                if stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink(missing_ok=True)

    # -- the worker thread -------------------------------------------------------------------------

    def _notify(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def _publish(self, event: Event) -> None:
        self.bus.publish(event)

    def _main(self) -> None:
        self._state = LOADING
        self._publish(StageStarted("load", (), 0))
        try:
            self.model = self.loader()
        except Exception as exc:  # EditError: a one-line reason; anything else: the type and first line
            self._state = FAILED_STATE
            reason = str(exc) if isinstance(exc, EditError) else _one_line(exc)
            self._write_log("engine", exc)
            self.load_error = exc
            self._publish(EngineStopped(f"the model did not load: {reason}"))
            self._notify()
            return
        model = self.model
        self._publish(StageFinished("load", (), model.load_seconds))
        self._publish(EngineReady(model.model, model.resolved_path, str(model.device), model.dtype_name,
                                  model.load_seconds))
        self._publish_memory()
        self._state = IDLE
        while not self._stopping:
            batch = [] if self._paused else self._next_batch()
            if not batch:
                with self._wake:
                    if not self._stopping:
                        self._wake.wait(0.5)
                continue
            self._state = RUNNING_STATE
            self._run_batch(batch)
            self._state = IDLE
            self._notify()
        self._state = STOPPED
        self._publish(EngineStopped("stopped"))
        self._notify()

    def _next_batch(self) -> list[JobRecord]:
        queue = [j for j in self.store.queued() if self.only is None or j.id in self.only]
        if not queue:
            return []
        hot = [j for j in queue if j.source_sha and j.source_sha == self._last_source]
        first = (hot or queue)[0]
        same = _batch_key(first)
        batch = [first] + [j for j in queue if j is not first and _batch_key(j) == same]
        return batch[: max(1, self.config.max_batch_variants)]

    def _run_batch(self, batch: list[JobRecord]) -> None:
        ids = {j.id for j in batch}
        self._running, self._cancel = set(ids), set()
        for job in batch:
            self.store.mark_running(job.id)
            self._publish(JobStarted(job.id))
        self._last_source = batch[0].source_sha
        variants = [Variant(j.id, j.prompt, j.params.seed) for j in batch]
        try:
            run_edit(self.model, batch[0].source, variants, batch[0].params, self.output_dir,
                     emit=self._emit_from_run, cache=self.cache, save_latents=self.save_latents,
                     should_stop=lambda: bool(self._cancel) or self._stopping)
        except Cancelled:
            self._settle_cancelled(batch)
        except torch.OutOfMemoryError as exc:
            self._free_memory()
            self._fail(batch, OutOfMemoryError(f"out of GPU memory on {self.model.device}", OOM_FIX), exc)
        except EditError as exc:
            self._fail(batch, exc, exc)
        except Exception as exc:  # any fault: record it, keep the worker alive for the next job
            self._fail(batch, None, exc)
        finally:
            self._running, self._cancel = set(), set()
            self._publish_memory()

    def _emit_from_run(self, event: Event) -> None:
        """Events from a running edit; a finished job is recorded before anyone hears of it."""
        if isinstance(event, JobFinished):
            self.store.mark_done(event.job_id, event.output_dir, event.timings, event.metrics)
        self._publish(event)
        if isinstance(event, StageFinished):
            self._publish_memory()

    def _unfinished(self, batch: list[JobRecord]) -> list[JobRecord]:
        """The jobs of a batch that have not finished (variants already exported stay done)."""
        return [job for job in batch if (record := self.store.get(job.id)) and record.status == RUNNING]

    def _settle_cancelled(self, batch: list[JobRecord]) -> None:
        for job in self._unfinished(batch):
            if job.id in self._cancel:
                self.store.mark_cancelled(job.id)
                self._publish(JobCancelled(job.id))
            elif self._stopping:
                self.store.mark_interrupted(job.id, "the app stopped while this job ran")
            else:  # a batch-mate of a cancelled job: back to the front of the queue
                self.store.mark_queued(job.id, front=True)
                self._publish(JobQueued(job.id, job.source, job.prompt, 1))

    def _fail(self, batch: list[JobRecord], error: EditError | None, exc: BaseException) -> None:
        reason = str(error) if error is not None else f"{_one_line(exc)} (see the log)"
        for job in self._unfinished(batch):
            log_path = self._write_log(job.id, exc)
            self.store.mark_failed(job.id, reason, log_path)
            self._publish(JobFailed(job.id, reason, log_path, fixable=error is not None))

    def _write_log(self, name: str, exc: BaseException) -> str | None:
        try:
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            path = self.logs_dir / f"{name}.log"
            with open(path, "a") as handle:
                handle.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
                handle.write("".join(traceback.format_exception(exc)))
            return str(path)
        except OSError:  # a full disk must not turn a failed job into a dead worker
            return None

    def _free_memory(self) -> None:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _publish_memory(self) -> None:
        if self.model is None or self.model.device.type != "cuda":
            return
        device = self.model.device
        self._publish(GpuMemory(str(device), torch.cuda.memory_allocated(device), torch.cuda.memory_reserved(device),
                                torch.cuda.get_device_properties(device).total_memory))


def _batch_key(job: JobRecord) -> tuple:
    """Jobs with equal keys can run as variants of one batch: same source, same parameters but seed."""
    return (job.source_sha or job.source, job.source, dataclasses.replace(job.params, seed=0))


def _one_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"unexpected {type(exc).__name__}: {first}" if first else f"unexpected {type(exc).__name__}"
