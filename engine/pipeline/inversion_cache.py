"""The inversion cache: a source's latents, trajectory and round trip, kept in memory and on disk.

An inversion is worth minutes of GPU time and depends only on the source and a few settings, so it
is keyed by exactly those: the file's content hash, the frame plan, the model, the dtype, the steps
and the inversion's conditioning. Entries live in a small in-memory LRU and as safetensors files
under the cache dir (bounded in total size, oldest used dropped first). Each file carries its key;
a file whose key, shapes or bytes are wrong is deleted and recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from ..config import DEFAULT_CACHE_BYTES
from ..errors import OutputError
from ..output.atomic import atomic_path
from ..params import EditParams
from .artifacts import Inversion, Source
from .model import LoadedModel

CACHE_FORMAT = 1
TENSORS = ("source_latents", "trajectory", "round_trip_latents", "round_trip_video")


def inversion_key(source: Source, params: EditParams, model: LoadedModel, tiling: bool) -> dict[str, Any]:
    """Everything an inversion depends on, as a JSON-able dict."""
    guided = params.inversion_guided  # the rule the inversion itself follows (Editor.inversion_guidance)
    return {
        "format": CACHE_FORMAT,
        "source_sha256": source.digest,
        "frames": list(source.plan.indices), "decode_size": list(source.plan.decode_size),
        "crop": list(source.plan.crop),
        "model": model.resolved_path, "revision": model.revision, "dtype": model.dtype_name,
        "device_type": model.device.type, "vae_tiling": tiling,
        "steps": params.num_inference_steps,
        "inversion_prompt": params.inversion_prompt, "inversion_guidance": params.inversion_guidance,
        # Only a guided inversion reads these.
        "negative_prompt": params.negative_prompt if guided else None,
        "literal_guidance": params.literal_guidance if guided else None,
        "use_dynamic_cfg": params.use_dynamic_cfg if guided else None,
    } | ({"linear_layers": "fp8"} if model.fp8 else {})  # absent when exact: older entries stay valid


def key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


class InversionCache:
    """In-memory LRU of ``memory_entries`` inversions over a size-bounded folder of safetensors."""

    def __init__(self, folder: Path, max_bytes: int = DEFAULT_CACHE_BYTES, memory_entries: int = 2):
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.memory_entries = memory_entries
        self._memory: OrderedDict[str, tuple[str, Inversion]] = OrderedDict()  # digest -> (source sha, inversion)
        self.problems: list[str] = []  # corrupt or stale entries found (for the log)

    def _file(self, digest: str) -> Path:
        return self.folder / f"{digest}.safetensors"

    def get(self, key: dict[str, Any]) -> Inversion | None:
        digest = key_digest(key)
        if digest in self._memory:
            self._memory.move_to_end(digest)
            return self._memory[digest][1]
        inversion = self._read(digest, key)
        if inversion is not None:
            self._remember(digest, key, inversion)
        return inversion

    def held_sources(self) -> set[str]:
        """Content hashes of the sources whose inversions are in memory (a device's "hot" sources)."""
        return {source for source, _ in self._memory.values()}

    def put(self, key: dict[str, Any], inversion: Inversion) -> str | None:
        """Keep ``inversion``; returns a warning when the disk copy could not be written."""
        digest = key_digest(key)
        cpu = Inversion(*(getattr(inversion, name).detach().cpu() for name in TENSORS), dict(inversion.metrics))
        self._remember(digest, key, cpu)
        try:
            self._write(digest, key, cpu)
        except (OutputError, OSError) as exc:
            return f"the inversion could not be cached on disk ({exc}); it stays in memory only"
        self._trim()
        return None

    def _remember(self, digest: str, key: dict[str, Any], inversion: Inversion) -> None:
        self._memory[digest] = (key["source_sha256"], inversion)
        self._memory.move_to_end(digest)
        while len(self._memory) > self.memory_entries:
            self._memory.popitem(last=False)

    def _write(self, digest: str, key: dict[str, Any], inversion: Inversion) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tensors = {name: getattr(inversion, name).contiguous() for name in TENSORS}
        metadata = {"key": json.dumps(key, sort_keys=True), "metrics": json.dumps(inversion.metrics)}
        with atomic_path(self._file(digest), suffix=".safetensors") as tmp:
            save_file(tensors, str(tmp), metadata=metadata)

    def _read(self, digest: str, key: dict[str, Any]) -> Inversion | None:
        path = self._file(digest)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            if json.loads(metadata.get("key", "null")) != json.loads(json.dumps(key, sort_keys=True)):
                raise ValueError("its key does not match")
            tensors = load_file(str(path))
            if set(tensors) != set(TENSORS) or tensors["trajectory"].shape[0] != key["steps"]:
                raise ValueError("its tensors are not an inversion of this key")
            if not all(torch.isfinite(tensors[n]).all() for n in TENSORS if tensors[n].is_floating_point()):
                raise ValueError("it holds non-finite values")
            metrics = json.loads(metadata.get("metrics", "{}"))
        except (SafetensorError, OSError, ValueError, RuntimeError, KeyError) as exc:
            self.problems.append(f"cache entry {path.name} was unusable ({exc}); recomputing")
            path.unlink(missing_ok=True)
            return None
        os.utime(path)  # most recently used
        return Inversion(*(tensors[name] for name in TENSORS), metrics)

    def _trim(self) -> None:
        """Drop the least recently used files until the folder fits ``max_bytes``."""
        files = sorted(self.folder.glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        for path in files[:-1]:  # never the entry just written
            if total <= self.max_bytes:
                break
            total -= path.stat().st_size
            path.unlink(missing_ok=True)

    def clear_memory(self) -> None:
        self._memory.clear()
