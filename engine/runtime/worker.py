"""The engine worker: the queue, and one device thread per GPU running it; any thread can steer it.

API (every method returns at once; results arrive as events through :meth:`Worker.subscribe`):

- ``Worker.open(config)`` locks the data dir, opens the store and the inversion cache;
  ``start()`` loads the model on every device in the background (stage ``load``) and starts taking
  jobs; ``stop()`` finishes the step under way (a running job becomes interrupted) and ends the
  threads; ``close()`` also frees the data dir.
- ``submit(JobSpec)`` queues a job (persisted first); ``cancel(id)`` removes a queued job or stops a
  running one within one denoising step (or VAE block; the rest of its batch goes on);
  ``move(id, ±1)`` reorders; ``pause()``/``resume()`` hold the queue after the current jobs (the
  pause is kept in the store across restarts; it holds the app's queue, not the jobs of a worker
  told to run ``only`` its own, the headless command's); ``requeue(id)`` puts a failed, cancelled or
  interrupted job back.
- ``status()`` is a snapshot: each device's state and jobs, and the worker's state summed up.

The devices are this process's GPUs (or its CPU), or with ``config.cluster`` the GPUs of a Ray
cluster (engine.runtime.ray_cluster adds and removes them as nodes come and go); either way each is a
:class:`engine.runtime.device.Device` driven by the same runner, under the same rules below.

Queued jobs that share a source and parameters (prompt and seed aside) run together as one batch of
variants over one inversion. A free device takes, in order of preference: a batch whose source it
holds in memory, a batch no other device holds, then a batch whose holder is busy (the disk cache
serves the inversion to a device that does not hold it); a batch whose holder is idle waits for it.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..config import DeviceState, DeviceStatus, EngineConfig, JobSpec, WorkerStatus
from ..data_dir import DataDirLock
from ..errors import EditError
from ..events import EditWarning, Event, JobCancelled, JobDeleted, JobMoved, JobQueued
from ..kernels.select import apply_speed
from ..output.atomic import check_output_dir, remove_abandoned_staging
from ..params import check_prompts
from ..paths import OUTPUT_FILES, cache_dir, data_dir, default_output_dir
from ..pipeline.frames import check_video_path, file_digest
from ..pipeline.inversion_cache import InversionCache
from ..pipeline.model import LoadedModel, load_model, resolve_devices
from ..store import QUEUED, RUNNING, STORE_FILE, JobRecord, Store, variant_key
from .device import Device, LocalDevice
from .device_runner import BUSY, FAILED, IDLE, LOADING, PAUSED, RETIRED, STOPPED, DeviceRunner, log_exception
from .events_bus import EventBus

Loader = Callable[[str], LoadedModel]


class Worker:
    def __init__(self, config: EngineConfig, store: Store, cache_folder: Path | None = None,
                 loader: Loader | None = None, logs_dir: Path | None = None,
                 only: set[str] | None = None, lock: DataDirLock | None = None):
        self.config = config
        self.store = store
        self.logs_dir = Path(logs_dir) if logs_dir else data_dir() / "logs"
        self.output_dir = Path(config.output_dir) if config.output_dir else default_output_dir()
        self.only = only  # when set, run only these job ids (the headless command's own jobs)
        self.save_latents: Path | None = None  # the headless command's --save-latents
        self.bus = EventBus()
        self.stopping = False
        self.paused = store.paused  # kept from the last session
        self.fault: EditError | None = None  # the store cannot be written (a full disk); None once it can
        self._lock = lock
        self._claim = threading.Lock()
        self._wake = threading.Condition()
        folder = Path(cache_folder) if cache_folder else cache_dir() / "inversions"
        self.cache_folder = folder
        self.runners: list[DeviceRunner] = []
        self.cluster = None  # the Ray cluster that lends devices (--cluster), else None: this process's devices
        if config.cluster:
            from .ray_cluster import RayCluster  # needs the optional extra: only for --cluster

            self.cluster = RayCluster(config, self, loader, folder)  # a loader must pickle: it travels to each actor
        else:
            load = device_loader(config, loader)
            self.runners = [DeviceRunner(self, LocalDevice(name, load, InversionCache(folder, config.cache_max_bytes)))
                            for name in resolve_devices(config.device)]

    @classmethod
    def open(cls, config: EngineConfig, root: Path | None = None, cache_root: Path | None = None,
             **kwargs) -> Worker:
        """Lock the data dir (one process at a time), open its store and the inversion cache."""
        root = Path(root) if root else data_dir()
        if config.cluster:
            from .ray_cluster import require_ray

            require_ray()  # --cluster without Ray installed: one line, before the data dir is taken
        check_output_dir(config.output_dir or default_output_dir())  # a bad --output-dir fails now, not at export
        lock = DataDirLock(root).acquire()
        try:
            store = Store(root / STORE_FILE)
        except Exception:
            lock.release()
            raise
        cache_folder = (Path(cache_root) if cache_root else cache_dir()) / "inversions"
        return cls(config, store, cache_folder, logs_dir=root / "logs", lock=lock, **kwargs)

    # -- state -------------------------------------------------------------------------------------

    @property
    def state(self) -> DeviceState:
        """running if any device runs a job; else loading, paused, idle; failed when none is usable."""
        states = {r.state for r in self.runners}
        if self.cluster is not None:
            states |= self.cluster.states()
        for state in (BUSY, LOADING):
            if state in states:
                return state
        if states & {IDLE, PAUSED}:
            return PAUSED if self.paused else IDLE
        if states <= {FAILED, RETIRED}:
            return FAILED
        return STOPPED

    def status(self) -> WorkerStatus:
        """A snapshot for front ends: the summed-up state and each device's state and running jobs."""
        devices = tuple(DeviceStatus(r.device, DeviceState(r.state), tuple(r.running)) for r in self.runners)
        return WorkerStatus(self.state, devices)

    @property
    def model(self) -> LoadedModel | None:
        """The first device's model when it runs in this process."""
        return getattr(self.runners[0].compute, "model", None) if self.runners else None

    @property
    def load_error(self) -> BaseException | None:
        """Set when no device could load the model (or the cluster could not be reached)."""
        if self.cluster is not None and self.cluster.error is not None:
            return self.cluster.error
        errors = [r.load_error for r in self.runners]
        return errors[0] if errors and all(errors) else None

    # -- control (any thread) ----------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[..., None]:
        return self.bus.subscribe(callback)

    def start(self) -> None:
        self._remove_stale_partials()
        self.stopping = False
        for runner in self.runners:
            runner.start()
        if self.cluster is not None:
            self.cluster.start()  # connects and adds a runner per device found, in the background

    def add_device(self, compute: Device) -> DeviceRunner:
        """A device that joined (a node of the cluster): its runner starts taking jobs once loaded."""
        runner = DeviceRunner(self, compute)
        self.runners = [*self.runners, runner]  # a new list: readers iterate the old one undisturbed
        if not self.stopping:
            runner.start()
        return runner

    def forget(self, runner: DeviceRunner) -> None:
        """A device that went away: its runner has put its jobs back in the queue and ends."""
        self.runners = [r for r in self.runners if r is not runner]

    def stop(self, wait: bool = True, timeout: float | None = None) -> None:
        self.stopping = True
        self.notify()
        if self.cluster is not None:
            self.cluster.stop()
        if wait:
            for runner in self.runners:
                if runner.thread is not None:
                    runner.thread.join(timeout)

    def close(self) -> None:
        """Stop, deliver the last events, close the store, let go of every device's model (its GPU
        memory is free for whatever runs next in this process) and free the data dir."""
        self.stop()
        self.bus.close()
        self.store.close()
        if self.cluster is not None:
            self.cluster.stop(wait=True)  # no device joins from here on
        for runner in self.runners:
            runner.release()
        if self.cluster is not None:
            self.cluster.close()
        if self._lock is not None:
            self._lock.release()

    def submit(self, spec: JobSpec) -> JobRecord:
        """Queue a job; bad input (no such video, an empty prompt) raises EditError/ParamsError now."""
        check_prompts([spec.prompt])
        path = check_video_path(spec.source)
        record = self.store.add(str(path.resolve()), spec.prompt, spec.params, file_digest(path))
        self.bus.publish(JobQueued(record.id, record.source, record.prompt, len(self.store.queued())))
        self.notify()
        return record

    def submit_many(self, specs: list[JobSpec]) -> list[JobRecord]:
        """Queue several jobs at once (the variants of a source): all are checked first, then queued
        together, so no device starts the first one alone before its batch-mates are in."""
        for spec in specs:
            check_prompts([spec.prompt])
            check_video_path(spec.source)
        with self._claim:
            return [self.submit(spec) for spec in specs]

    def cancel(self, job_id: str) -> bool:
        record = self.store.get(job_id)
        if record is None:
            return False
        with self._claim:  # a queued job cannot be claimed while it is being cancelled
            record = self.store.get(job_id)
            if record.status == QUEUED:
                self.store.mark_cancelled(job_id)
                self.bus.publish(JobCancelled(job_id))
                return True
        return record.status == RUNNING and any(r.request_cancel(job_id) for r in self.runners)

    def move(self, job_id: str, offset: int) -> bool:
        moved = self.store.move(job_id, offset)
        if moved:
            self.bus.publish(JobMoved(job_id, offset))
        return moved

    def delete(self, job_id: str) -> JobRecord | None:
        """Forget a finished job and delete its result folder (only a folder that holds its job.json)."""
        record = self.store.delete(job_id)
        if record is not None:
            if record.output_dir and (Path(record.output_dir) / OUTPUT_FILES["job"]).is_file():
                shutil.rmtree(record.output_dir, ignore_errors=True)
            self.bus.publish(JobDeleted(job_id))
        return record

    def requeue(self, job_id: str) -> bool:
        done = self.store.requeue(job_id)
        if done:
            record = self.store.get(job_id)
            self.bus.publish(JobQueued(job_id, record.source, record.prompt, len(self.store.queued())))
            self.notify()
        return done

    def pause(self) -> None:
        """Hold the queue after the current jobs, now and after a restart."""
        self.paused = True
        self.notify()
        self._keep_paused(True)

    def resume(self) -> None:
        self.paused = False
        self.notify()
        self._keep_paused(False)

    def _keep_paused(self, paused: bool) -> None:
        """Record the pause in the store; when it cannot be written (a full disk) it still holds for this
        session, and a warning says so."""
        try:
            self.store.set_paused(paused)
        except EditError as exc:
            self.bus.publish(EditWarning((), f"the {'pause' if paused else 'resume'} holds until the app "
                                             f"stops, but is not saved ({exc})"))

    def wait_idle(self, job_ids: set[str], timeout: float | None = None) -> bool:
        """Block until none of ``job_ids`` is queued or running (for the headless command), or until the
        store cannot be written (``fault``: the caller reports it; the jobs stay queued)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.fault is not None:
                return False
            pending = [j for j in job_ids if (r := self.store.get(j)) and r.status in (QUEUED, RUNNING)]
            if not pending or self._nothing_can_run():
                return not pending
            if deadline is not None and time.monotonic() > deadline:
                return False
            self.wait(0.1)

    def _nothing_can_run(self) -> bool:
        """Every device has stopped for good (a cluster whose devices all went away may get new ones,
        unless it could not be reached)."""
        if self.cluster is not None and (self.cluster.error is not None or not self.runners):
            return self.cluster.error is not None
        return all(r.state in (STOPPED, FAILED, RETIRED) for r in self.runners)

    # -- used by the device threads (their WorkerLink) ----------------------------------------------

    def publish(self, event: Event) -> None:
        self.bus.publish(event)

    def notify(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def wait(self, seconds: float) -> None:
        with self._wake:
            if not self.stopping:
                self._wake.wait(seconds)

    def claim_batch(self, runner: DeviceRunner) -> list[JobRecord]:
        """The next batch for ``runner``, marked running (atomically with respect to other devices)."""
        if self.stopping or (self.paused and self.only is None):
            return []
        with self._claim:
            queue = [j for j in self.store.queued() if self.only is None or j.id in self.only]
            if not queue:
                return []
            held_elsewhere = {s for r in self.runners if r is not runner for s in r.hot_sources}
            # Left for another device: what it holds hot while it is free to take it right now.
            reserved = {s for r in self.runners if r is not runner and r.state in (IDLE, PAUSED) for s in r.hot_sources}
            first = (next((j for j in queue if j.source_sha in runner.hot_sources), None)
                     or next((j for j in queue if j.source_sha not in held_elsewhere), None)
                     or next((j for j in queue if j.source_sha not in reserved), None))
            if first is None:
                return []
            key = _batch_key(first)
            batch = [first] + [j for j in queue if j is not first and _batch_key(j) == key]
            # Spread the variants over the devices free right now (each then inverts the source once).
            free = sum(1 for r in self.runners if r is runner or r.state == IDLE)
            share = -(-len(batch) // free)
            batch = batch[: min(share, runner.batch_limit(first.params, self.config.max_batch_variants))]
            for job in batch:
                self.store.mark_running(job.id)
            return batch

    def write_log(self, name: str, exc: BaseException) -> str | None:
        try:
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            path = self.logs_dir / f"{name}.log"
            log_exception(path, exc)
            return str(path)
        except OSError:  # a full disk must not turn a failed job into a dead worker
            return None

    def _remove_stale_partials(self) -> None:
        """Staging folders and temp files left by a process that died mid-write: only those whose owner's
        lock is free (another live process may share the output or cache folder)."""
        for folder in (self.output_dir, self.cache_folder):
            remove_abandoned_staging(folder)

def device_loader(config: EngineConfig, loader: Loader | None = None) -> Loader:
    """``loader(device)``: by default the configured model, loaded and sped up on that device."""
    if loader is not None:
        return loader

    def load(device: str) -> LoadedModel:
        model = load_model(config.model, device, config.dtype)
        # An --fp8 worker runs every job in FP8: quantized in place, the bf16 weights are not kept.
        apply_speed(model, config.attention, config.compile, fp8=config.fp8, keep_exact=not config.fp8)
        return model

    return load


def _batch_key(job: JobRecord) -> tuple:
    """Jobs with equal keys can run as variants of one batch (the store's rule, shared with the history)."""
    return variant_key(job)


__all__ = ["EngineConfig", "JobSpec", "Worker"]
