"""The Ray actor that holds one pipeline on one GPU of a cluster node (or the node's CPU, on a cluster
without GPUs) and runs the batches its head-side :class:`engine.runtime.ray_device.RayDevice` sends.

It is a :class:`engine.runtime.device.LocalDevice` on the node, behind Ray: the clip arrives as bytes
(no shared filesystem), the edit runs in a thread, and :meth:`EditActor.run` is a Ray streaming generator
that yields, as they happen, ``("event", Event)``, ``("memory", GpuMemory | None, free_bytes | None)``
after each stage, ``("result", JobFinished, {file name: bytes})`` once a variant's folder is complete
(then removed from the node), ``("latents", bytes)`` for ``--save-latents``, and last ``("hot", digests)``.
An exception raised by the edit ends the stream and reaches the head as the same exception.

Plain Python: ``ray.remote`` wraps it on the head (engine.runtime.ray_cluster), so importing this
module needs no Ray.
"""

from __future__ import annotations

import queue
import shutil
import tempfile
import threading
from collections.abc import Iterator
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
        self.stop_requested = False
        self.cancelled: set[str] = set()  # job ids of the running edit cancelled from the head
        self._one_run = threading.Lock()  # a run the head gave up on ends (it was told to stop) before the next

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

    def stop(self) -> None:
        """Stop the running edit within one denoising step (it raises Cancelled)."""
        self.stop_requested = True

    def cancel(self, job_ids: list[str]) -> None:
        """These variants of the running edit leave its batch (the others go on)."""
        self.cancelled.update(job_ids)

    def clear_memory(self) -> None:
        if self.local is not None:
            self.local.clear_memory()

    def family(self):
        """The loaded model's family (engine.families.ModelFamily), None before it has loaded."""
        return self.local.family if self.local is not None else None

    def memory_state(self) -> tuple:
        """(GpuMemory or None, free bytes or None) of its GPU now."""
        return (self.local.memory(), self.local.free_memory()) if self.local is not None else (None, None)

    def run(self, clip: bytes | None, clip_name: str, params: EditParams, variants: list[Variant],
            want_latents: bool) -> Iterator[tuple]:
        """Edit the clip (``clip``: its bytes, or None when this actor already has ``clip_name``)."""
        with self._one_run:
            self.stop_requested, self.cancelled = False, set()
            yield from self._run(clip, clip_name, params, variants, want_latents)

    def _run(self, clip: bytes | None, clip_name: str, params: EditParams, variants: list[Variant],
             want_latents: bool) -> Iterator[tuple]:
        source = self._clip(clip, clip_name)
        output = Path(tempfile.mkdtemp(prefix="run-", dir=self.work))
        latents = output / LATENTS_NAME if want_latents else None
        events: queue.SimpleQueue = queue.SimpleQueue()
        failure: list[BaseException] = []

        def edit() -> None:
            try:
                self.local.run(str(source), variants, params, output, events.put, lambda: self.stop_requested,
                               latents, lambda: frozenset(self.cancelled))
            except BaseException as exc:  # handed to the stream: it raises it on the head
                failure.append(exc)
            finally:
                events.put(_DONE)

        thread = threading.Thread(target=edit, name="cogedit-actor-edit", daemon=True)
        thread.start()
        try:
            while (event := events.get()) is not _DONE:
                if isinstance(event, JobFinished):
                    folder = Path(event.output_dir)
                    yield "result", event, {f.name: f.read_bytes() for f in folder.iterdir() if f.is_file()}
                    shutil.rmtree(folder, ignore_errors=True)
                    continue
                yield "event", event
                if isinstance(event, StageFinished):
                    yield "memory", *self.memory_state()
            thread.join()
            if failure:
                raise failure[0]
            if latents is not None and latents.is_file():
                yield "latents", latents.read_bytes()
            yield "hot", self.local.hot_sources()
        finally:
            self.stop_requested = True  # a head that stopped listening stops the edit too
            thread.join()
            shutil.rmtree(output, ignore_errors=True)

    def _clip(self, clip: bytes | None, clip_name: str) -> Path:
        path = self.work / "clips" / clip_name
        if clip is not None and not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.partial")
            partial.write_bytes(clip)
            partial.replace(path)
        return path
