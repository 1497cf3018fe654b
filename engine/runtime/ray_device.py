"""The head's side of one Ray actor (engine.runtime.ray_actor): a :class:`engine.runtime.device.Device`
whose pipeline lives on a node of the cluster.

It ships the source clip through Ray's object store (once per actor), starts the edit on the actor
(``start``) and polls it (``next_items``, until its end marker) for its events, renamed to this device
(``10.0.0.5:cuda:1``), and results: plain actor calls, the same over a direct connection and Ray Client
(``ray://``). Each finished result folder is written into the head's output folder the way the engine
writes any result: staged under a hidden name, renamed into place whole, its job.json pointing at the
head's copy. A dead actor or node raises DeviceLost.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Collection
from pathlib import Path

import ray
from ray.exceptions import (
    ActorDiedError,
    ActorUnavailableError,
    NodeDiedError,
    ObjectLostError,
    OwnerDiedError,
    RayActorError,
    RayTaskError,
    WorkerCrashedError,
)

from ..events import EngineReady, Event, GpuMemory, JobFinished
from ..families import ModelFamily
from ..output.atomic import StagedFolder, write_bytes_atomic, write_json_atomic
from ..params import EditParams
from ..paths import OUTPUT_FILES
from ..pipeline.artifacts import Variant
from ..pipeline.frames import check_video_path
from .device import DeviceLost, Emit

# What Ray raises when the actor's process or its node is gone, or its results went with it.
LOST = (ActorDiedError, ActorUnavailableError, RayActorError, NodeDiedError, ObjectLostError, OwnerDiedError,
        WorkerCrashedError)
STOP_POLL_SECONDS = 0.1
POLL_SECONDS = 0.5  # how long one call for the edit's news waits on the actor for the first item


class RayDevice:
    def __init__(self, name: str, actor, node_id: str, gpu: bool):
        self.name = name
        self.actor = actor
        self.node_id = node_id
        self.gpu = gpu
        self.lost: str | None = None  # set by the cluster's watcher when the node is gone
        self._shipped: set[str] = set()  # clips this actor already has
        self._hot: set[str] = set()  # the actor's in-memory inversions, as of its last batch
        self._memory: GpuMemory | None = None
        self.family: ModelFamily | None = None  # the actor's model's, once it has loaded
        self._free: int | None = None

    def load(self) -> EngineReady:
        ready = _call(lambda: ray.get(self.actor.load.remote(self.gpu)))
        self._remember_memory(*_call(lambda: ray.get(self.actor.memory_state.remote())))
        self.family = _call(lambda: ray.get(self.actor.family.remote()))
        return dataclasses.replace(ready, device=self.name)

    def _remember_memory(self, memory: GpuMemory | None, free: int | None) -> None:
        self._memory = dataclasses.replace(memory, device=self.name) if memory is not None else None
        self._free = free

    def run(self, source: str, variants: list[Variant], params: EditParams, output_dir: Path, emit: Emit,
            should_stop: Callable[[], bool], save_latents: Path | None,
            cancelled: Callable[[], Collection[str]]) -> None:
        data = check_video_path(source).read_bytes()  # a clip gone from the head: VideoError, as on one box
        clip_name = hashlib.sha256(data).hexdigest()[:32] + Path(source).suffix
        shipped = clip_name in self._shipped
        run_id = uuid.uuid4().hex  # names this run in stop and cancel calls
        _call(lambda: ray.get(self.actor.start.remote(run_id, None if shipped else ray.put(data), clip_name,
                                                      params, variants, save_latents is not None)))
        self._shipped.add(clip_name)
        done = threading.Event()
        watcher = threading.Thread(target=self._pass_stop, args=(run_id, should_stop, cancelled, done), daemon=True,
                                   name=f"cogedit-stop-{self.name}")
        watcher.start()
        finished = False
        try:
            self._follow(source, output_dir, emit, save_latents)
            finished = True
        finally:
            done.set()
            watcher.join()
            if not finished:  # the head gave up on the edit (a full disk here...): the actor stops too
                self.actor.stop.remote(run_id)

    def _pass_stop(self, run_id: str, should_stop: Callable[[], bool], cancelled: Callable[[], Collection[str]],
                   done: threading.Event) -> None:
        """Tell the actor which variants were cancelled (they leave its batch), and to stop once
        ``should_stop`` says so (the app stopping)."""
        told: frozenset[str] = frozenset()
        while not done.wait(STOP_POLL_SECONDS):
            if should_stop():
                self.actor.stop.remote(run_id)
                return
            if (now := frozenset(cancelled())) != told:
                self.actor.cancel.remote(run_id, sorted(now - told))
                told = now

    def _follow(self, source: str, output_dir: Path, emit: Emit, save_latents: Path | None) -> None:
        """Poll the actor for what its edit produced until its end marker (its exception: raised here)."""
        while True:
            for kind, *payload in _call(lambda: ray.get(self.actor.next_items.remote(POLL_SECONDS))):
                if kind == "event":
                    emit(_renamed(payload[0], self.name))
                elif kind == "memory":
                    self._remember_memory(*payload)
                elif kind == "result":
                    emit(self._land(payload[0], payload[1], source, output_dir))
                elif kind == "latents":
                    write_bytes_atomic(save_latents, payload[0])
                elif kind == "hot":
                    self._hot = set(payload[0])
                elif kind == "end":
                    return

    def _land(self, finished: JobFinished, files: dict[str, bytes], source: str, output_dir: Path) -> JobFinished:
        """A result folder from the actor, complete in ``output_dir`` before anyone hears of it."""
        job_file = OUTPUT_FILES["job"]
        record = json.loads(files[job_file])
        staged = StagedFolder(output_dir, record["prompt"])
        try:
            for name, data in files.items():
                if name != job_file and Path(name).name == name:  # a plain file name, never a path
                    (staged.path / name).write_bytes(data)
            record["output_dir"] = str(staged.final)
            record["source"]["path"] = source  # the head's clip, not the actor's copy in transit
            record["device"] = self.name
            write_json_atomic(staged.path / job_file, record)
            folder = staged.commit()
        except BaseException:
            staged.discard()
            raise
        outputs = {key: str(folder / name) for key, name in OUTPUT_FILES.items()}
        return dataclasses.replace(finished, output_dir=str(folder), outputs=outputs)

    def hot_sources(self) -> set[str]:
        return set(self._hot)

    def free_memory(self) -> int | None:
        return self._free if self.gpu else None

    def memory(self) -> GpuMemory | None:
        return self._memory

    def clear_memory(self) -> None:
        self._hot = set()
        self.actor.clear_memory.remote()

    def release(self) -> None:
        """End the actor: its GPU is free for the cluster's other work."""
        self._hot = set()
        try:
            ray.kill(self.actor)
        except Exception:  # already gone, or the cluster is: nothing holds the GPU then
            pass


def _renamed(event: Event, name: str) -> Event:
    """The actor's event as the head tells it: its device is the node's GPU, not the actor's cuda:0."""
    if getattr(event, "device", ""):
        return dataclasses.replace(event, device=name)
    return event


def _call(action: Callable[[], object]):
    """Run a Ray call: the actor's own exception as itself, a lost actor or node as DeviceLost."""
    try:
        return action()
    except RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from None
        raise
    except LOST as exc:
        raise DeviceLost(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__) from exc
    except ConnectionError as exc:  # Ray Client (ray://) lost its connection to the head: the jobs go back
        raise DeviceLost(f"the connection to the Ray cluster broke ({exc})") from exc
