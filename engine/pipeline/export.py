"""The export stage: one result folder per variant, and job.json.

Each variant's folder holds ``original.mp4`` (the frames exactly as the model saw them),
``reconstruction.mp4`` (the round trip), ``edited.mp4``, ``contact_sheet.png`` and ``job.json``
(enough to run it again); the file names are :data:`engine.paths.OUTPUT_FILES`. A folder is staged
under a hidden name and renamed into place whole.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from safetensors.torch import save_file

from ..errors import EditError
from ..output.atomic import StagedFolder, atomic_path, copy_file_atomic, write_json_atomic
from ..output.contact_sheet import write_contact_sheet
from ..output.video import write_mp4
from ..params import EditParams, params_to_dict
from ..paths import OUTPUT_FILES
from .artifacts import EditResult, Inversion, Source, Variant


def _versions() -> dict[str, str]:
    out = {}
    for name in ("cogedit-tui", "torch", "diffusers", "transformers"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def job_record(variant: Variant, source: Source, params: EditParams, model: dict[str, object],
               timings: dict[str, float], metrics: dict[str, float], batch: list[Variant],
               started: dt.datetime) -> dict:
    """Everything job.json holds: enough to run the job again and to judge its result."""
    return {
        "format": 1,
        "job_id": variant.job_id,
        "prompt": variant.prompt,
        "seed": variant.seed,
        "source": {"path": source.info.path, "sha256": source.digest, "num_frames": source.info.num_frames,
                   "fps": source.info.fps, "width": source.info.width, "height": source.info.height},
        "frames": {"indices": list(source.plan.indices), "stride": source.plan.stride,
                   "fps": source.plan.fps, "count": source.plan.num_frames},
        "params": params_to_dict(params) | {"seed": variant.seed},
        "model": model,
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "metrics": {k: round(v, 3) if math.isfinite(v) else None for k, v in metrics.items()},  # JSON has no NaN
        "outputs": dict(OUTPUT_FILES),
        "batch": [v.job_id for v in batch],
        "versions": _versions(),
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def read_job_file(path: Path) -> dict:
    """A result's job.json, checked enough to run it again; EditError when it is unreadable."""
    try:
        job = json.loads(Path(path).read_text())
        for key in ("prompt", "params", "source", "model"):
            job[key]  # noqa: B018 - presence check
        job["source"]["path"], job["model"]["model"]  # noqa: B018
        if not isinstance(job["params"], dict):
            raise TypeError("params is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EditError(f"cannot use {path} as a job file ({type(exc).__name__}: {str(exc)[:80]})",
                        "pass the job.json of a finished result folder") from exc
    return job


def export_variant(output_dir: Path, variant: Variant, record: dict, shared_files: dict[str, Path],
                    original, round_trip, edited) -> Path:
    """Fill one variant's staged folder (the shared videos copied, its edit encoded, contact sheet,
    job.json), then move it into place."""
    staged = StagedFolder(output_dir, variant.prompt)
    try:
        for name, encoded in shared_files.items():
            copy_file_atomic(encoded, staged.path / name)
        write_mp4(staged.path / OUTPUT_FILES["edited"], edited, record["frames"]["fps"])
        write_contact_sheet(staged.path / OUTPUT_FILES["contact_sheet"],
                            {"original": original, "round trip": round_trip, "edited": edited})
        write_json_atomic(staged.path / OUTPUT_FILES["job"], record | {"output_dir": str(staged.final)})
        return staged.commit()
    except BaseException:
        staged.discard()
        raise


def write_latents(path: Path, inversion: Inversion, results: list[EditResult]) -> None:
    """The latents of an edit as float32 safetensors: source, inversion (whole trajectory),
    reconstruction, and edited (``edited_<k>`` per variant when there are several)."""
    tensors = {"source": inversion.source_latents, "inversion": inversion.trajectory,
               "reconstruction": inversion.round_trip_latents}
    if len(results) == 1:
        tensors["edited"] = results[0].latents
    else:
        tensors.update({f"edited_{k}": r.latents for k, r in enumerate(results)})
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}, str(tmp))


class SharedVideos:
    """The videos every variant of a batch shares (the original and the round trip): encoded once, in a
    background thread while the GPU edits, into a hidden staging folder; each variant's folder gets a
    copy. The staging folder is removed on leaving the ``with`` block (and, after a crash, at start-up
    with the other ``.partial-*`` folders)."""

    def __init__(self, output_dir: Path, videos: dict[str, np.ndarray], fps: float):
        self._staging = StagedFolder(output_dir, "shared")  # never committed
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cogedit-export")
        self._future = self._pool.submit(self._encode, videos, fps)

    def _encode(self, videos: dict[str, np.ndarray], fps: float) -> dict[str, Path]:
        paths = {}
        for name, frames in videos.items():
            paths[name] = self._staging.path / name
            write_mp4(paths[name], frames, fps)
        return paths

    def files(self) -> dict[str, Path]:
        """File name -> encoded file, once the encodes are done; raises what they raised."""
        return self._future.result()

    def __enter__(self) -> SharedVideos:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pool.shutdown(wait=True)
        self._staging.discard()
