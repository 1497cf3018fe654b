"""What a device runner drives: a :class:`Device` holds one loaded pipeline and runs batches of variants on it.

Two implementations share one runner (:mod:`engine.runtime.device_runner`: the claim loop, batching,
affinity, events, faults): :class:`LocalDevice`, a GPU (or the CPU) of this process, and
:class:`engine.runtime.ray_device.RayDevice`, a Ray actor on a node of a cluster. A device that goes away
(its actor or its node died) raises :class:`DeviceLost`; its runner puts the batch back in the queue.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Protocol

import torch

from ..events import EngineReady, Event, GpuMemory
from ..families import ModelFamily
from ..params import EditParams
from ..pipeline.artifacts import Variant
from ..pipeline.compile_gate import MODEL_GATE
from ..pipeline.edit import run_edit
from ..pipeline.inversion_cache import InversionCache
from ..pipeline.model import LoadedModel, free_memory

Emit = Callable[[Event], None]


class DeviceLost(Exception):
    """The device went away (its process or its machine died): its jobs run again elsewhere."""


class Device(Protocol):
    """One pipeline on one GPU (or CPU), wherever it lives; ``name`` is what events and the TUI show."""

    name: str
    lost: str | None  # why the device went away, noticed while it was idle (None while it is there)
    family: ModelFamily | None  # the loaded model's family (engine.families), None until it has loaded

    def load(self) -> EngineReady:
        """Load the model (blocking); what loaded, or an exception (DeviceLost when the device went away)."""

    def run(self, source: str, variants: list[Variant], params: EditParams, output_dir: Path, emit: Emit,
            should_stop: Callable[[], bool], save_latents: Path | None,
            cancelled: Callable[[], Collection[str]]) -> None:
        """Edit ``source`` once per variant (:func:`engine.pipeline.edit.run_edit`): every event goes to
        ``emit`` with this device's name, each finished result folder is complete in ``output_dir``
        before its JobFinished is emitted. ``should_stop`` stops the whole run; the variants whose job
        ids ``cancelled`` names leave the batch and the others go on."""

    def hot_sources(self) -> set[str]:
        """Digests of the sources whose inversion the device holds in memory (read under the claim
        lock: answered at once, never a round trip)."""

    def free_memory(self) -> int | None:
        """Bytes its GPU can still allocate (None: not a GPU); answered at once."""

    def memory(self) -> GpuMemory | None:
        """Its GPU memory now, as an event (None: not a GPU)."""

    def clear_memory(self) -> None:
        """Drop in-memory inversions and cached allocations (after an out-of-memory error)."""

    def release(self) -> None:
        """Let go of the model (the runner has stopped)."""


class LocalDevice:
    """A GPU of this process, or its CPU: the model loads here and the edit runs in the runner's thread."""

    def __init__(self, name: str, loader: Callable[[str], LoadedModel], cache: InversionCache):
        self.name = name
        self.lost = None  # a GPU of this process does not go away
        self.loader = loader
        self.cache = cache  # its own memory LRU; the disk folder is shared by all devices
        self.model: LoadedModel | None = None

    def load(self) -> EngineReady:
        with MODEL_GATE.shared():  # loading touches modules: not while another device compiles
            self.model = model = self.loader(self.name)
        precision = model.dtype_name + ("+fp8" if model.fp8 else "")  # the header and log say FP8 is on
        return EngineReady(model.model, model.resolved_path, str(model.device), precision, model.load_seconds)

    @property
    def family(self) -> ModelFamily | None:
        return self.model.family if self.model is not None else None

    def run(self, source: str, variants: list[Variant], params: EditParams, output_dir: Path, emit: Emit,
            should_stop: Callable[[], bool], save_latents: Path | None,
            cancelled: Callable[[], Collection[str]]) -> None:
        run_edit(self.model, source, variants, params, output_dir, emit=emit, cache=self.cache,
                 should_stop=should_stop, save_latents=save_latents, cancelled=cancelled)

    def hot_sources(self) -> set[str]:
        return self.cache.held_sources()

    def _on_gpu(self) -> bool:
        return self.model is not None and self.model.device.type == "cuda"

    def free_memory(self) -> int | None:
        return free_memory(self.model.device) if self._on_gpu() else None

    def memory(self) -> GpuMemory | None:
        if not self._on_gpu():
            return None
        device = self.model.device
        return GpuMemory(self.name, torch.cuda.memory_allocated(device), torch.cuda.memory_reserved(device),
                         torch.cuda.get_device_properties(device).total_memory)

    def clear_memory(self) -> None:
        self.cache.clear_memory()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def release(self) -> None:
        on_gpu = self._on_gpu()
        self.model = None
        self.cache.clear_memory()
        if on_gpu:
            gc.collect()  # the pipeline's modules refer to one another: free them now, not at some later collection
            torch.cuda.empty_cache()


def device_log_name(name: str) -> str:
    """A device's name as a log file's stem (``engine-cuda0``, ``engine-10.0.0.5-cuda1``)."""
    return "engine-" + name.replace(":cuda:", "-cuda").replace(":cpu", "-cpu").replace(":", "").replace(os.sep, "-")
