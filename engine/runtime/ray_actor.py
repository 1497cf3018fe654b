"""The Ray actor that holds one pipeline on one GPU of a cluster node (or the node's CPU, on a cluster
without GPUs) and runs the batches its head-side :class:`engine.runtime.ray_device.RayDevice` sends.

It is a :class:`engine.runtime.device.LocalDevice` on the node, behind Ray: the clip arrives as bytes
(no shared filesystem) and the edit runs in a thread. The head follows it with plain actor calls, which
work through Ray Client (``ray://``) too, where Ray's streaming generators do not: :meth:`EditActor.start`
starts the edit and returns at once; :meth:`EditActor.next_items`, called in a loop, returns what it
produced since the last call: ``("event", Event)``, ``("memory", GpuMemory | None, free_bytes | None)``
after each stage, ``("result", JobFinished, {file name: bytes})`` once a variant's folder is complete
(read when fetched, one folder per reply, then removed from the node), ``("latents", bytes)`` for
``--save-latents``, ``("hot", digests)`` and last ``("end",)``. An exception raised by the edit is raised
by that call instead, and reaches the head as the same exception. The actor is threaded
(``max_concurrency``): ``stop``, ``cancel`` and ``memory_state`` answer while an edit runs.

Plain Python: ``ray.remote`` wraps it on the head (engine.runtime.ray_cluster), so importing this
module needs no Ray.
"""

from __future__ import annotations

import queue
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import EngineConfig
from ..events import JobFinished, StageFinished
from ..params import EditParams
from ..paths import cache_dir
from ..pipeline.artifacts import Variant
from ..pipeline.inversion_cache import InversionCache
from .device import LocalDevice
from .worker import Loader, device_loader

_DONE = object()
LATENTS_NAME = "latents.safetensors"


@dataclass
class _Run:
    """One edit in its thread, and what it produced that the head has not fetched yet."""

    run_id: str  # the head's name for this run: a stop or cancel meant for an earlier one is ignored
    output: Path
    latents: Path | None
    stop: bool = False
    cancelled: set[str] = field(default_factory=set)  # job ids cancelled from the head
    items: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    thread: threading.Thread | None = None
    failure: BaseException | None = None


class EditActor:
    def __init__(self, config: EngineConfig, loader: Loader | None = None, cache_folder: str | None = None,
                 cpu_threads: int | None = None):
        if cpu_threads:  # Ray starts an actor with OMP_NUM_THREADS=1: its CPU work (frames, export) would crawl
            torch.set_num_threads(cpu_threads)
        self.config = config
        self.loader = loader or device_loader(config)
        self.cache_folder = Path(cache_folder) if cache_folder else cache_dir() / "inversions"  # this node's
        self.work = Path(tempfile.mkdtemp(prefix="cogedit-actor-"))  # clips and results in transit
        self.local: LocalDevice | None = None
        self._run: _Run | None = None  # the edit the head follows
        self._starting = threading.Lock()

    def gpu_ids(self) -> list[int]:
        """The GPUs Ray gave this actor, as the node numbers them (what the head names the device by)."""
        import ray

        return [int(i) for i in ray.get_gpu_ids()]

    def cpu_threads(self) -> int:
        """The threads its CPU work (frames, export, the CPU model) runs on."""
        return torch.get_num_threads()

    def load(self, gpu: bool):
        """Load the model on this actor's GPU (Ray sets CUDA_VISIBLE_DEVICES to it) or the CPU."""
        self.local = LocalDevice("cuda:0" if gpu else "cpu", self.loader,
                                 InversionCache(self.cache_folder, self.config.cache_max_bytes))
        return self.local.load()

    def stop(self, run_id: str) -> None:
        """Stop run ``run_id`` within one denoising step (it raises Cancelled), if it is still the
        running one: a stop that arrives late (calls to a threaded actor may overtake each other) must
        not reach the next run."""
        if (run := self._run) is not None and run.run_id == run_id:
            run.stop = True

    def cancel(self, run_id: str, job_ids: list[str]) -> None:
        """These variants of run ``run_id`` leave its batch (the others go on)."""
        if (run := self._run) is not None and run.run_id == run_id:
            run.cancelled.update(job_ids)

    def clear_memory(self) -> None:
        if self.local is not None:
            self.local.clear_memory()

    def family(self):
        """The loaded model's family (engine.families.ModelFamily), None before it has loaded."""
        return self.local.family if self.local is not None else None

    def memory_state(self) -> tuple:
        """(GpuMemory or None, free bytes or None) of its GPU now."""
        return (self.local.memory(), self.local.free_memory()) if self.local is not None else (None, None)

    def start(self, run_id: str, clip: bytes | None, clip_name: str, params: EditParams,
              variants: list[Variant], want_latents: bool) -> None:
        """Start editing the clip (``clip``: its bytes, or None when this actor already has ``clip_name``)
        in a thread, and return at once: :meth:`next_items` follows it. A run the head gave up on (it was
        told to stop) ends first."""
        with self._starting:
            if self._run is not None:
                self._run.stop = True
                self._end(self._run)
            source = self._clip(clip, clip_name)
            output = Path(tempfile.mkdtemp(prefix="run-", dir=self.work))
            run = _Run(run_id, output, output / LATENTS_NAME if want_latents else None)

            def emit(event) -> None:
                run.items.put(("event", event))
                if isinstance(event, StageFinished):
                    run.items.put(("memory", *self.memory_state()))

            def edit() -> None:
                try:
                    self.local.run(str(source), variants, params, output, emit, lambda: run.stop,
                                   run.latents, lambda: frozenset(run.cancelled))
                except BaseException as exc:  # raised by next_items: it reaches the head as itself
                    run.failure = exc
                finally:
                    run.items.put(_DONE)

            run.thread = threading.Thread(target=edit, name="cogedit-actor-edit", daemon=True)
            self._run = run
            run.thread.start()

    def next_items(self, timeout: float = 0.5) -> list[tuple]:
        """What the running edit produced since the last call, waiting up to ``timeout`` seconds for the
        first: ``("event", Event)``, ``("memory", GpuMemory | None, free_bytes | None)``, at most one
        ``("result", JobFinished, {file name: bytes})`` (its folder is then removed here), and at the end
        ``("latents", bytes)``, ``("hot", digests)`` and ``("end",)``; the edit's exception, raised."""
        run = self._run
        if run is None:
            return [("end",)]
        items: list[tuple] = []
        try:
            item = run.items.get(timeout=timeout)
            while True:
                if item is _DONE:
                    if items and run.failure is not None:  # what came before the failure reaches the head first
                        run.items.put(_DONE)  # (nothing follows it): the next call raises
                        return items
                    return items + self._finish(run)
                if item[0] == "event" and isinstance(item[1], JobFinished):  # its folder is complete
                    folder = Path(item[1].output_dir)
                    items.append(("result", item[1], {f.name: f.read_bytes() for f in folder.iterdir()
                                                      if f.is_file()}))
                    shutil.rmtree(folder, ignore_errors=True)
                    return items  # one folder's bytes per reply: they never pile up here or on the head
                items.append(item)
                item = run.items.get_nowait()
        except queue.Empty:
            return items

    def _finish(self, run: _Run) -> list[tuple]:
        """The end of a run: its exception raised, else its latents and hot inversions."""
        try:
            if run.failure is not None:
                raise run.failure
            latents = [("latents", run.latents.read_bytes())] if run.latents and run.latents.is_file() else []
            return [*latents, ("hot", self.local.hot_sources()), ("end",)]
        finally:
            self._end(run)

    def _end(self, run: _Run) -> None:
        run.thread.join()
        shutil.rmtree(run.output, ignore_errors=True)
        if self._run is run:
            self._run = None

    def _clip(self, clip: bytes | None, clip_name: str) -> Path:
        path = self.work / "clips" / clip_name
        if clip is not None and not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.partial")
            partial.write_bytes(clip)
            partial.replace(path)
        return path
