"""``--cluster ADDRESS``: the worker's devices are Ray actors on the nodes of a Ray cluster.

:class:`RayCluster` connects in the background (``auto``, ``HOST:PORT``, ``ray://HOST:10001``, or
``local``: a private single-machine cluster), puts one actor (engine.runtime.ray_actor) on every GPU of
every live node, or one on every node when the cluster has no GPU at all (a CPU cluster: tests, demos),
and hands each to the worker as a device (engine.runtime.ray_device) that the worker's ordinary runner
drives. It keeps watching: a node that joins gets actors; an actor that died on a live node is
replaced; a dead node's idle devices are told they are gone. The queue, history and output folder stay
on this (the head) process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import DeviceState, EngineConfig
from ..errors import EditError, first_line, one_line
from ..events import EngineStopped

if TYPE_CHECKING:
    from .worker import Worker

RAY_FIX = "install the optional extra: pip install 'cogedit-tui[ray]'"
CONNECT_FIX = ("start the cluster first (`ray start --head` on one machine, `ray start --address HEAD:6379` "
               "on the others) and pass its address: --cluster auto on a node of it, else --cluster HEAD:6379")
CLIENT_FIX = ("start the cluster first (`ray start --head` on one machine starts its Ray Client server on port "
              "10001) and pass --cluster ray://HEAD:10001, with that port reachable from here")
PLACEMENT_SECONDS = 120.0  # how long a new actor may take to find its GPU before it is given up (and retried)
log = logging.getLogger(__name__)


def require_ray() -> None:
    """A one-line error when Ray is not installed (the single-box product does not need it)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise EditError("--cluster needs Ray, which is not installed", RAY_FIX) from None


class RayCluster:
    def __init__(self, config: EngineConfig, worker: Worker, loader: Callable | None = None,
                 cache_folder: Path | None = None, watch_seconds: float = 2.0):
        require_ray()
        self.config = config
        self.loader = loader  # None: each actor loads config.model (a model folder or hub id on its node)
        # Where actors keep inversions on disk: each node's own cache dir; on a private cluster on this
        # machine (local), this worker's (a benchmark's own cache must not serve the next run).
        self.actor_cache = str(cache_folder) if cache_folder is not None and config.cluster == "local" else None
        self.worker = worker
        self.address = config.cluster
        self.watch_seconds = watch_seconds
        self.error: EditError | None = None  # the cluster could not be reached
        self.connecting = False
        self.thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._connected_here = False  # this process called ray.init (and so shuts it down)

    def states(self) -> set[DeviceState]:
        """What the cluster adds to the worker's state: loading while it connects, failed if it cannot."""
        if self.error is not None:
            return {DeviceState.FAILED}
        return {DeviceState.LOADING} if self.connecting or self.thread is None else set()

    def start(self) -> None:
        self._stop.clear()
        self.connecting = True
        self.thread = threading.Thread(target=self._main, name="cogedit-cluster", daemon=True)
        self.thread.start()

    def stop(self, wait: bool = False) -> None:
        """Stop watching (no device joins after it); ``wait``: until the watcher has ended."""
        self._stop.set()
        if wait and self.thread is not None:
            self.thread.join()

    def close(self) -> None:
        """Disconnect (after the worker has let its devices go)."""
        self.stop(wait=True)
        if self._connected_here:
            import ray

            ray.shutdown()
            self._connected_here = False

    def _main(self) -> None:
        try:
            self._connect()
        except Exception as exc:  # an unreachable address, a version mismatch: one line, and the fix
            why = first_line(exc) if isinstance(exc, ConnectionError) else one_line(exc)
            fix = CLIENT_FIX if self.address.startswith("ray://") else CONNECT_FIX
            self.error = EditError(f"cannot reach the Ray cluster at {self.address} ({why})", fix)
            self.connecting = False
            self.worker.publish(EngineStopped(str(self.error)))
            self.worker.notify()
            return
        while not self._stop.is_set():
            try:
                self.watch()
            except Exception:  # a hiccup of the cluster's state API: look again next time
                log.exception("watching the Ray cluster failed")
            self.connecting = False  # after the first look: its devices are loading by now
            self._stop.wait(self.watch_seconds)

    def _connect(self) -> None:
        import ray

        if ray.is_initialized():  # the embedding program connected already (a test, a notebook)
            return
        address = None if self.address == "local" else self.address
        if address is not None:
            _check_listening(address)  # ray.init would retry an unreachable address for minutes
        # Quiet: the actors' output (log_to_driver), Ray's notices and its core's warnings on stderr would
        # land in the middle of the TUI; errors still reach the user as this worker's events.
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
        options = {"namespace": "cogedit", "log_to_driver": False, "logging_level": logging.ERROR}
        if address is None:
            options["include_dashboard"] = False  # a private cluster only: not when joining one
        # ray:// (Ray Client) hands log_to_driver and logging_level on to the ray.init of its server on the head
        ray.init(address=address, **options)
        self._connected_here = True

    def watch(self) -> None:
        """Bring the devices in line with the live nodes: new actors where GPUs (or CPU nodes) have
        none of ours, and the idle devices of a dead node told they are gone."""
        import ray

        nodes = ray.nodes()
        alive = [n for n in nodes if n.get("Alive")]
        alive_ids = {n["NodeID"] for n in alive}
        for runner in self.worker.runners:
            compute = runner.compute
            if getattr(compute, "node_id", None) not in alive_ids and not compute.lost:
                compute.lost = "its node left the cluster"
                self.worker.notify()
        any_gpu = any(n["Resources"].get("GPU", 0) >= 1 for n in alive)
        labels = Counter(_node_label(n) for n in nodes)
        new = []
        for node in alive:
            slots = int(node["Resources"].get("GPU", 0)) if any_gpu else 1
            have = sum(1 for r in self.worker.runners if getattr(r.compute, "node_id", None) == node["NodeID"])
            label = _node_label(node) if labels[_node_label(node)] == 1 else f"{_node_label(node)}-{node['NodeID'][:6]}"
            threads = max(1, int(node["Resources"].get("CPU", 1)) // max(1, slots))  # the node's CPUs, shared
            new += [self._actor(node["NodeID"], any_gpu, threads) + (label,) for _ in range(slots - have)]
        for actor, node_id, gpu, label in new:
            self._add(actor, node_id, gpu, label)

    def _actor(self, node_id: str, gpu: bool, cpu_threads: int) -> tuple:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from .ray_actor import EditActor

        remote = ray.remote(EditActor).options(
            num_gpus=1 if gpu else 0, num_cpus=0 if gpu else 1, max_concurrency=3, max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))
        return remote.remote(self.config, self.loader, self.actor_cache, cpu_threads), node_id, gpu

    def _add(self, actor, node_id: str, gpu: bool, label: str) -> None:
        """Wait for the actor to find its GPU, name the device after it, and hand it to the worker."""
        import ray

        from .ray_device import RayDevice

        placed = actor.gpu_ids.remote()
        waited = 0.0
        while not ray.wait([placed], timeout=1.0)[0]:
            waited += 1.0
            if self._stop.is_set() or waited > PLACEMENT_SECONDS:  # no room on that node yet: a later look
                ray.kill(actor)
                return
        try:
            gpu_ids = ray.get(placed)
        except Exception as exc:  # it died on the way: tried again on a later look
            log.warning("no actor on node %s: %s", node_id[:8], one_line(exc))
            return
        if self._stop.is_set():
            ray.kill(actor)
            return
        name = f"{label}:cuda:{gpu_ids[0]}" if gpu and gpu_ids else f"{label}:cpu:0"
        self.worker.add_device(RayDevice(name, actor, node_id, gpu))


def _node_label(node: dict) -> str:
    """What a node is called: its Ray node name (its address unless ``ray start --node-name`` says)."""
    return node.get("NodeName") or node.get("NodeManagerAddress") or node["NodeID"][:12]


def _check_listening(address: str, timeout: float = 5.0) -> None:
    """ConnectionError at once when nothing listens at a ``HOST:PORT`` (or ``ray://HOST:PORT``) address."""
    target = address.removeprefix("ray://")
    host, colon, port = target.rpartition(":")
    if not colon or not port.isdigit():
        return  # auto, or a form Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {target}: {exc.strerror or exc}") from None
