"""The inversion cache: a source's latents, trajectory and round trip, kept in memory and on disk.

An inversion is worth minutes of GPU time and depends only on the source and a few settings, so it
is keyed by exactly those: the file's content hash, the frame plan (with a letterbox's placement), the
model and the identity of its weight files (sizes and modification times: a fine-tune saved again into
the same folder is another model), the dtype, the steps, the inversion's text conditioning and what the
model's family adds (CogVideoX1.5's latent padding, the I2V models' first-frame condition). Entries live
in a small in-memory LRU and as safetensors files under the cache dir (bounded in total size, oldest used
dropped first). Each file carries its key and a checksum of its tensors (names, dtypes, shapes, bytes); a
file whose key, checksum, shapes, dtypes or metrics are wrong is deleted and recomputed, never trusted. The disk copy
is a convenience: a full or read-only cache disk leaves the inversion in memory and the job goes on.
"""

from __future__ import annotations

import contextlib
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
from ..params import EditParams, latent_frames
from .artifacts import Inversion, Source
from .conditioning import IMAGE_LATENT_SEED, latent_padding
from .model import LoadedModel

CACHE_FORMAT = 2  # 2: a checksum of the tensors, and the weights' identity in the key
TENSORS = ("source_latents", "trajectory", "round_trip_latents", "round_trip_video")


def inversion_key(source: Source, params: EditParams, model: LoadedModel, tiling: bool) -> dict[str, Any]:
    """Everything an inversion depends on, as a JSON-able dict."""
    guided = params.inversion_guided  # the rule the inversion itself follows (Editor.inversion_guidance)
    return {
        "format": CACHE_FORMAT,
        "source_sha256": source.digest,
        "frames": list(source.plan.indices), "decode_size": list(source.plan.decode_size),
        "crop": list(source.plan.crop),
        "model": model.resolved_path, "revision": model.revision, "weights": model.weights_id,
        "dtype": model.dtype_name,
        "device_type": model.device.type, "vae_tiling": tiling,
        "steps": params.num_inference_steps,
        "inversion_prompt": params.inversion_prompt, "inversion_guidance": params.inversion_guidance,
        # Only a guided inversion reads these.
        "negative_prompt": params.negative_prompt if guided else None,
        "literal_guidance": params.literal_guidance if guided else None,
        "use_dynamic_cfg": params.use_dynamic_cfg if guided else None,
    } | ({"linear_layers": "fp8"} if model.fp8 else {}) | family_key(source, params, model) | (
        {"exact_inversion": params.exact_inversion} if params.exact_inversion else {})  # absent: plain DDIM


def family_key(source: Source, params: EditParams, model: LoadedModel) -> dict[str, Any]:
    """What a model family and the frame fitting add to an inversion: the letterbox of ``resize=pad``,
    CogVideoX1.5's latent padding, the image-to-video models' first-frame condition (the source's own,
    drawn from IMAGE_LATENT_SEED). Absent for a CogVideoX-5B crop or stretch: older entries stay valid."""
    family = model.family
    key: dict[str, Any] = {}
    if source.plan.picture is not None:
        key |= {"resize": params.resize, "picture": list(source.plan.picture), "size": list(source.plan.size)}
    if family.temporal_patch > 1 or family.image_conditioned:
        key |= {"family": family.name,
                "latent_padding": latent_padding(family, latent_frames(source.plan.num_frames))}
    if family.image_conditioned:
        key |= {"image_condition": {"frame": "source first frame", "seed": IMAGE_LATENT_SEED}}
    return key


def tensors_checksum(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over each tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(memoryview(tensor.view(torch.uint8).reshape(-1).numpy()))
    return digest.hexdigest()


def _check_inversion(tensors: dict[str, torch.Tensor], metrics: Any, key: dict[str, Any]) -> None:
    """Raise ValueError unless ``tensors`` and ``metrics`` are shaped like an inversion of ``key``."""
    if set(tensors) != set(TENSORS):
        raise ValueError("its tensors are not an inversion")
    latents, trajectory = tensors["source_latents"], tensors["trajectory"]
    video = tensors["round_trip_video"]
    floats = (latents, trajectory, tensors["round_trip_latents"])
    if not all(t.is_floating_point() and t.dtype == latents.dtype for t in floats):
        raise ValueError("its latents have the wrong dtype")
    if (latents.dim() != 5 or tensors["round_trip_latents"].shape != latents.shape
            or tuple(trajectory.shape) != (key["steps"], *latents.shape)):
        raise ValueError("its latents have the wrong shape for this key")
    if video.dtype != torch.uint8 or video.dim() != 4 or video.shape[0] != len(key["frames"]) or video.shape[-1] != 3:
        raise ValueError("its round-trip video has the wrong shape or dtype")
    if not all(bool(torch.isfinite(t).all()) for t in floats):
        raise ValueError("it holds non-finite values")
    if not isinstance(metrics, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in metrics.items()):
        raise ValueError("its metrics are not a table of numbers")


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
        except (OutputError, OSError, SafetensorError) as exc:  # a full or read-only cache disk
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
        metadata = {"key": json.dumps(key, sort_keys=True), "metrics": json.dumps(inversion.metrics),
                    "checksum": tensors_checksum(tensors)}
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
            if metadata.get("checksum") != tensors_checksum(tensors):
                raise ValueError("its checksum does not match: the file is corrupt")
            metrics = json.loads(metadata.get("metrics", "{}"))
            _check_inversion(tensors, metrics, key)
        except Exception as exc:  # anything wrong with an entry: recompute it, never fail the job
            self.problems.append(f"cache entry {path.name} was unusable ({exc}); recomputing")
            with contextlib.suppress(OSError):  # a read-only cache keeps it; it is checked again next time
                path.unlink(missing_ok=True)
            return None
        with contextlib.suppress(OSError):  # most recently used (not on a read-only cache)
            os.utime(path)
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
