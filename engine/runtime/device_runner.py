"""One device's thread: it loads a pipeline on its :class:`Device` and runs the batches it claims.

A :class:`DeviceRunner` belongs to a :class:`engine.runtime.worker.Worker`, which owns the store, the
event bus and the queue; the runner reaches it only through :class:`WorkerLink` (the worker's side of
the contract: publish, claim a batch, wait, log, the store) and asks it for work whenever it is free.
The device is a GPU of this process or a Ray actor on another machine (engine.runtime.device): the
runner is the same. A failure fails the batch's jobs and the runner takes the next; a GPU fault retires
the runner (its jobs fail, the other devices go on); a device that went away (a dead actor or node)
puts its jobs back in the queue and the runner ends.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import traceback
from pathlib import Path
from typing import Protocol

import torch

from ..config import GIB, DeviceState
from ..errors import Cancelled, EditError, OutOfMemoryError, one_line
from ..events import (
    STOPPED_REASON,
    EditWarning,
    EngineStopped,
    Event,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobQueued,
    JobStarted,
    StageFinished,
    StageStarted,
    WorkerState,
)
from ..params import EditParams, video_tokens
from ..pipeline.artifacts import Variant
from ..store import RUNNING, JobRecord, Store
from .device import Device, DeviceLost, device_log_name

# Activation memory of one batch row per video token, measured on the 5B architecture in bf16 with
# compiled blocks (at 49x480x720, above the weights: 7 rows 10.3 GiB, 13 rows 18.2 GiB, 25 rows 33.6 GiB:
# BENCHMARKS.md), and what is kept free besides (the VAE decode, the trajectory, the allocator's slack).
ROW_BYTES_PER_TOKEN = 1.34 * GIB / 17776
RESERVED_BYTES = 6 * GIB

LOADING, IDLE, BUSY, PAUSED, STOPPED, FAILED, RETIRED = (
    DeviceState.LOADING, DeviceState.IDLE, DeviceState.RUNNING, DeviceState.PAUSED, DeviceState.STOPPED,
    DeviceState.FAILED, DeviceState.RETIRED)
OOM_FIX = "use fewer frames (max_num_frames), keep vae_tiling on, or queue fewer variants of a source together"
STORE_RETRY_SECONDS = 5.0
DEVICE_LOST_FIX = "this GPU is retired until restart; check nvidia-smi and the driver log, then restart the app"


class WorkerLink(Protocol):
    """What a device thread needs of its worker (engine.runtime.worker.Worker is one)."""

    store: Store
    output_dir: Path
    save_latents: Path | None
    stopping: bool
    paused: bool
    fault: EditError | None  # the store cannot be written (a full disk): set until a write succeeds again

    def publish(self, event: Event) -> None: ...
    def notify(self) -> None: ...
    def wait(self, seconds: float) -> None: ...
    def claim_batch(self, runner: DeviceRunner) -> list[JobRecord]: ...
    def forget(self, runner: DeviceRunner) -> None: ...
    def write_log(self, name: str, exc: BaseException) -> str | None: ...


class DeviceRunner:
    def __init__(self, worker: WorkerLink, compute: Device):
        self.worker = worker
        self.compute = compute
        self.device = compute.name
        self.loaded = False
        self.gone = False  # the device went away (DeviceLost): the runner has left its worker
        self.load_error: BaseException | None = None
        self.state: DeviceState = STOPPED
        self.running: tuple[str, ...] = ()
        self.cancel_requested: set[str] = set()
        self.oom_limit: int | None = None  # variants per batch after an out-of-memory split
        self.unsettled: list[str] = []  # jobs whose end the store could not record (a full disk)
        self.thread: threading.Thread | None = None

    # -- called from any thread --------------------------------------------------------------------

    def start(self) -> None:
        self.thread = threading.Thread(target=self._main, name=f"cogedit-{self.device}", daemon=True)
        self.thread.start()

    def batch_limit(self, params: EditParams, configured: int) -> int:
        """Variants this device edits together: the configured bound, lowered to what its free memory
        holds (each variant adds 3 rows to a step: its two guidance halves and its reference), and
        halved after an out-of-memory error."""
        limit = min(configured, self.oom_limit or configured)
        free = self.compute.free_memory() if self.loaded else None
        if free is None:
            return max(1, limit)
        family = self.compute.family  # the model's own clip where the parameters leave it empty
        tokens = video_tokens(params.max_num_frames or family.frames, params.height or family.height,
                              params.width or family.width, family.temporal_patch)
        rows = int((free - RESERVED_BYTES) / (ROW_BYTES_PER_TOKEN * tokens))
        return max(1, min(limit, (rows - 1) // 3))

    def release(self) -> None:
        """Drop the model and the in-memory inversions (after the thread has stopped) and hand the
        freed GPU memory back."""
        self.loaded = False
        self.compute.release()

    def request_cancel(self, job_id: str) -> bool:
        if job_id in self.running:
            self.cancel_requested.add(job_id)
            return True
        return False

    # -- the device thread --------------------------------------------------------------------------

    def _publish(self, event: Event) -> None:
        self.worker.publish(event)

    def _set_state(self, state: DeviceState) -> None:
        self.state = state
        self._publish(WorkerState(self.device, state.value, self.running))
        self.worker.notify()

    def _main(self) -> None:
        self._set_state(LOADING)
        self._publish(StageStarted("load", (), 0, device=self.device))
        try:
            ready = self.compute.load()
        except DeviceLost as exc:
            self._lost(exc, [])
            return
        except Exception as exc:  # EditError: a one-line reason; anything else: the type and first line
            self.load_error = exc
            reason = str(exc) if isinstance(exc, EditError) else one_line(exc)
            self.worker.write_log(device_log_name(self.device), exc)
            self._publish(EngineStopped(f"the model did not load on {self.device}: {reason}", device=self.device))
            self._set_state(FAILED)
            return
        self.loaded = True
        self._publish(StageFinished("load", (), ready.seconds, device=self.device))
        self._publish(dataclasses.replace(ready, time=time.time()))  # told now, after the stage's end
        self._publish_memory()
        self._set_state(IDLE)
        while not self.worker.stopping and self.state != RETIRED and not self.gone:
            if self.compute.lost:
                self._lost(DeviceLost(self.compute.lost), [])
                break
            try:
                self._settle_unrecorded()
                batch = self.worker.claim_batch(self)
            except EditError as exc:  # the store cannot be written (a full disk): wait, then try again
                self._store_fault(exc)
                continue
            if self.worker.fault is not None:
                self.worker.fault = None
                self._publish(EditWarning((), "the history database can be written again; the queue goes on"))
            if not batch:
                self.worker.wait(0.5)
                waiting = PAUSED if self.worker.paused else IDLE
                if self.state != waiting:
                    self._set_state(waiting)
                continue
            try:
                self._run_batch(batch)
            except EditError as exc:  # the batch ran, but the store could not record how it ended
                self.unsettled = [j.id for j in batch]
                self._store_fault(exc)
            if self.state != RETIRED and not self.gone:
                self._set_state(PAUSED if self.worker.paused else IDLE)
        if self.state != RETIRED and not self.gone:
            self._set_state(STOPPED)
            self._publish(EngineStopped(STOPPED_REASON, device=self.device))

    def _run_batch(self, batch: list[JobRecord]) -> None:
        """Run claimed jobs (already marked running) as one batch of variants."""
        self.running, self.cancel_requested = tuple(j.id for j in batch), set()
        self._set_state(BUSY)
        for job in batch:
            self._publish(JobStarted(job.id, device=self.device))
        variants = [Variant(j.id, j.prompt, j.params.seed) for j in batch]
        try:
            # A cancelled variant leaves the batch and the others go on; all cancelled, or quitting, stops it.
            self.compute.run(batch[0].source, variants, batch[0].params, self.worker.output_dir, self._emit_from_run,
                             lambda: self.worker.stopping, self.worker.save_latents,
                             lambda: frozenset(self.cancel_requested))
        except DeviceLost as exc:
            self._lost(exc, batch)
        except Cancelled:
            self._settle_cancelled(batch)
        except torch.OutOfMemoryError as exc:
            self.compute.clear_memory()
            if len(batch) > 1:  # try again with fewer variants at a time before failing anyone
                self.oom_limit = max(1, len(batch) // 2)
                self._requeue_unfinished(batch, f"out of GPU memory with {len(batch)} variants in one batch on "
                                                f"{self.device}; running {self.oom_limit} at a time")
            else:
                self._fail(batch, OutOfMemoryError(f"out of GPU memory on {self.device}", OOM_FIX), exc)
        except EditError as exc:
            self._fail(batch, exc, exc)
        except Exception as exc:  # any fault: record it; the device goes on unless it is lost
            if _device_lost(exc):
                self._fail(batch, EditError(f"GPU {self.device} failed ({one_line(exc)})", DEVICE_LOST_FIX), exc)
                self.state = RETIRED
                self._publish(WorkerState(self.device, RETIRED.value, ()))
                self._publish(EngineStopped(f"{self.device} retired after a device fault", device=self.device))
            else:
                self._fail(batch, None, exc)
        finally:
            self.running, self.cancel_requested = (), set()
            self._publish_memory()

    def _store_fault(self, exc: EditError) -> None:
        """The store refused a write: say so once, and retry every few seconds (freed space resumes)."""
        if self.worker.fault is None or str(self.worker.fault) != str(exc):
            self.worker.write_log(device_log_name(self.device), exc)
            self._publish(EditWarning(tuple(self.unsettled), f"{exc}; the queue waits and retries"))
        self.worker.fault = exc
        self.worker.notify()
        self.worker.wait(STORE_RETRY_SECONDS)

    def _settle_unrecorded(self) -> None:
        """Jobs whose end could not be recorded become interrupted (``r`` re-queues them)."""
        store = self.worker.store
        for job_id in list(self.unsettled):
            record = store.get(job_id)
            if record is not None and record.status == RUNNING:
                store.mark_interrupted(job_id, "the history could not be written when this job ended (disk full?)")
            self.unsettled.remove(job_id)

    @property
    def hot_sources(self) -> set[str]:
        """Sources whose inversion this device holds in memory."""
        return self.compute.hot_sources() if self.loaded else set()

    def _emit_from_run(self, event: Event) -> None:
        """Events from a running edit; a finished or cancelled job is recorded before anyone hears of it."""
        if isinstance(event, JobFinished):
            self.worker.store.mark_done(event.job_id, event.output_dir, event.timings, event.metrics)
        elif isinstance(event, JobCancelled):  # a variant let go while the rest of its batch goes on
            self.worker.store.mark_cancelled(event.job_id)
        self._publish(event)
        if isinstance(event, StageFinished):
            self._publish_memory()

    def _unfinished(self, batch: list[JobRecord]) -> list[JobRecord]:
        """The jobs of a batch that have not finished (variants already exported stay done)."""
        store = self.worker.store
        return [job for job in batch if (record := store.get(job.id)) and record.status == RUNNING]

    def _settle_cancelled(self, batch: list[JobRecord]) -> None:
        """The run stopped: every variant still running was cancelled, or the worker is stopping."""
        store = self.worker.store
        leftovers = []
        for job in self._unfinished(batch):
            if job.id in self.cancel_requested:
                store.mark_cancelled(job.id)
                self._publish(JobCancelled(job.id))
            elif self.worker.stopping:
                store.mark_interrupted(job.id, "the app stopped while this job ran")
            else:  # not expected (the run goes on while any variant is wanted): queued again, not lost
                leftovers.append(job)
        self._requeue_front(leftovers)

    def _requeue_unfinished(self, batch: list[JobRecord], reason: str) -> None:
        unfinished = self._unfinished(batch)
        self._publish(EditWarning(tuple(j.id for j in unfinished), reason))
        self._requeue_front(unfinished)

    def _requeue_front(self, jobs: list[JobRecord]) -> None:
        """Back to the front of the queue, in their order."""
        for job in reversed(jobs):
            self.worker.store.mark_queued(job.id, front=True)
        for job in jobs:
            self._publish(JobQueued(job.id, job.source, job.prompt, 1))

    def _lost(self, exc: BaseException, batch: list[JobRecord]) -> None:
        """The device went away: its unfinished jobs go back to the front of the queue (they run on
        another device, or on this one's successor), and the runner leaves the worker."""
        reason = f"{self.device} went away ({exc if isinstance(exc, DeviceLost) else one_line(exc)})"
        self.worker.write_log(device_log_name(self.device), exc)
        for job in self._unfinished(batch):  # a cancel asked for before the device went is still a cancel
            if job.id in self.cancel_requested:
                self.worker.store.mark_cancelled(job.id)
                self._publish(JobCancelled(job.id))
        if self._unfinished(batch):
            self._requeue_unfinished(batch, f"{reason}; its jobs went back to the queue")
        self.gone, self.state = True, STOPPED
        self.worker.forget(self)
        self._publish(WorkerState(self.device, STOPPED.value, ()))
        self._publish(EngineStopped(reason, device=self.device))
        self.worker.notify()

    def _fail(self, batch: list[JobRecord], error: EditError | None, exc: BaseException) -> None:
        reason = str(error) if error is not None else f"{one_line(exc)} (see the log)"
        unfinished = self._unfinished(batch)
        if not unfinished:  # every variant was exported; what failed after (--save-latents) is still told
            self._publish(EditWarning(tuple(j.id for j in batch), reason))
        for job in unfinished:
            log_path = self.worker.write_log(job.id, exc)
            self.worker.store.mark_failed(job.id, reason, log_path)
            self._publish(JobFailed(job.id, reason, log_path, fixable=error is not None))

    def _publish_memory(self) -> None:
        memory = self.compute.memory() if self.loaded else None
        if memory is not None:
            self._publish(memory)


def _device_lost(exc: BaseException) -> bool:
    """A CUDA fault that is not out-of-memory: the device cannot be trusted any more."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and not isinstance(exc, torch.OutOfMemoryError) and (
        "CUDA error" in text or "device-side assert" in text or "CUDA driver" in text)


def log_exception(path, exc: BaseException) -> None:
    with open(path, "a") as handle:
        handle.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.write("".join(traceback.format_exception(exc)))
