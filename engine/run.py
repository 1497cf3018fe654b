"""One source, several variants: run every stage and write one result folder per variant.

:func:`run_edit` is the single way an edit runs, whether the headless command or the worker calls it.
Each variant's folder holds ``original.mp4`` (the frames exactly as the model saw them),
``reconstruction.mp4`` (the round trip), ``edited.mp4`` and ``job.json`` (enough to run it again).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from .artifacts import Inversion, Source, Variant
from .cache import InversionCache
from .contact_sheet import write_contact_sheet
from .edit import Editor, Emit
from .errors import EditError
from .events import JobFinished
from .model import LoadedModel
from .outputs import (SharedVideos, StagedFolder, atomic_path, copy_file_atomic, frames_to_uint8, psnr,
                      write_json_atomic, write_mp4)
from .params import EditParams, params_to_dict

OUTPUT_FILES = {"original": "original.mp4", "reconstruction": "reconstruction.mp4", "edited": "edited.mp4",
                "contact_sheet": "contact_sheet.png", "job": "job.json"}


@dataclass(frozen=True)
class EditResult:
    variant: Variant
    output_dir: Path
    metrics: dict[str, float]
    latents: torch.Tensor  # [1, F', C, h, w]


def _versions() -> dict[str, str]:
    out = {}
    for name in ("cogedit-tui", "torch", "diffusers", "transformers"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def job_record(variant: Variant, source: Source, params: EditParams, model: LoadedModel,
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
        "model": model.describe(),
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "metrics": {k: round(v, 3) for k, v in metrics.items()},
        "outputs": dict(OUTPUT_FILES),
        "batch": [v.job_id for v in batch],
        "versions": _versions(),
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def run_edit(model: LoadedModel, source_path: str | os.PathLike, variants: list[Variant], params: EditParams,
             output_dir: str | os.PathLike, emit: Emit | None = None,
             should_stop: Callable[[], bool] | None = None,
             save_latents: str | os.PathLike | None = None,
             cache: InversionCache | None = None) -> list[EditResult]:
    """Edit ``source_path`` once per variant, sharing one inversion (from ``cache`` when it has it);
    returns the finished results."""
    started = dt.datetime.now().astimezone()
    editor = Editor(model, emit, should_stop, cache)
    job_ids = tuple(v.job_id for v in variants)
    source = editor.load_source(source_path, params, job_ids)
    inversion = editor.invert(source, params, job_ids)
    original, round_trip = frames_to_uint8(source.frames), inversion.round_trip_video.numpy()
    shared = {OUTPUT_FILES["original"]: original, OUTPUT_FILES["reconstruction"]: round_trip}
    with SharedVideos(Path(output_dir), shared, source.plan.fps) as shared_videos:
        edited_latents = editor.edit(inversion, variants, params)
        edited_frames = editor.decode(edited_latents, job_ids)

        results = []
        with editor.stage("export", job_ids, len(variants)) as progress:
            shared_files = shared_videos.files()
            for i, (variant, latents, frames) in enumerate(zip(variants, edited_latents, edited_frames)):
                metrics = inversion.metrics | {"psnr_edited_vs_original_db": psnr(frames, source.frames)}
                record = job_record(variant, source, params, model, editor.timings, metrics, variants, started)
                export_start = time.perf_counter()
                folder = _export_variant(Path(output_dir), variant, record, shared_files, original, round_trip,
                                         frames_to_uint8(frames))
                timings = editor.timings | {"export": time.perf_counter() - export_start}
                results.append(EditResult(variant, folder, metrics, latents))
                # Announced as soon as it is on disk: a later variant's failure cannot take it back.
                editor.emit(JobFinished(variant.job_id, str(folder),
                                        {k: str(folder / name) for k, name in OUTPUT_FILES.items()},
                                        metrics, timings))
                progress(i + 1, len(variants))
    if save_latents:
        write_latents(Path(save_latents), inversion, results)
    return results


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


def _export_variant(output_dir: Path, variant: Variant, record: dict, shared_files: dict[str, Path],
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

