"""The export stage: one result folder per variant, and job.json.

Each variant's folder holds ``original.mp4`` (the frames exactly as the model saw them),
``reconstruction.mp4`` (the round trip), ``edited.mp4``, ``contact_sheet.png`` and ``job.json``
(enough to run it again); the file names are :data:`engine.paths.OUTPUT_FILES`. A folder is staged
under a hidden name and renamed into place whole. The three videos carry the source's sound for the
frames kept (``params.audio``; a silent source stays silent).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.torch import save_file

from ..errors import EditError, OutputError
from ..output.atomic import StagedFolder, atomic_path, check_file_target, copy_file_atomic, write_json_atomic
from ..output.audio import AudioCut, cut_audio
from ..output.contact_sheet import write_contact_sheet
from ..output.video import write_mp4
from ..params import EditParams, params_to_dict
from ..paths import OUTPUT_FILES, not_a_regular_file
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


JOB_FILE_LIMIT = 1 << 20  # a job.json is a few KiB; anything past 1 MiB is not one
JOB_FIX = "pass the job.json of a finished result folder"


def _job_error(path: object, why: str) -> EditError:
    return EditError(f"cannot use {path} as a job file ({why})", JOB_FIX)


def _read_job_text(path: Path) -> str:
    """The file's text: a regular file, at most JOB_FILE_LIMIT bytes (a FIFO or a device is refused
    before it is opened: reading one would block or never end)."""
    try:
        path.stat()  # a missing or unreadable path: named below
    except OSError as exc:
        raise _job_error(path, exc.strerror or type(exc).__name__) from exc
    kind = not_a_regular_file(path)
    if kind:  # reading a FIFO would block, a device never ends
        raise _job_error(path, "a directory" if kind == "a directory" else "not a regular file")
    try:
        with open(path, "rb") as handle:
            data = handle.read(JOB_FILE_LIMIT + 1)
    except OSError as exc:
        raise _job_error(path, exc.strerror or type(exc).__name__) from exc
    if len(data) > JOB_FILE_LIMIT:
        raise _job_error(path, f"larger than {JOB_FILE_LIMIT >> 20} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _job_error(path, "not UTF-8 text") from exc


def read_job_file(path: Path) -> dict:
    """A result's job.json, checked enough to run it again; EditError when it is unreadable."""
    if not isinstance(path, (str, os.PathLike)):
        raise _job_error(repr(path), "not a path")
    path = Path(path)
    text = _read_job_text(path)
    try:
        job = json.loads(text)
    except RecursionError as exc:
        raise _job_error(path, "nested too deeply") from exc
    except ValueError as exc:
        raise _job_error(path, f"{type(exc).__name__}: {str(exc)[:80]}") from exc
    expected = {"prompt": str, "params": dict, "source": dict, "model": dict}
    if not isinstance(job, dict):
        raise _job_error(path, "not a JSON object")
    for key, kind in expected.items():
        if not isinstance(job.get(key), kind):
            raise _job_error(path, f"{key} is missing or not a {'string' if kind is str else 'JSON object'}")
    for section, key in (("source", "path"), ("model", "model")):
        if not isinstance(job[section].get(key), str) or not job[section][key]:
            raise _job_error(path, f"{section}.{key} is missing or not a string")
    return job


def export_variant(output_dir: Path, variant: Variant, record: dict, shared_files: dict[str, Path],
                   original, round_trip, edited, audio: Path | None = None) -> Path:
    """Fill one variant's staged folder (the shared videos copied, its edit encoded with ``audio``,
    contact sheet, job.json), then move it into place."""
    staged = StagedFolder(output_dir, variant.prompt)
    try:
        for name, encoded in shared_files.items():
            copy_file_atomic(encoded, staged.path / name)
        write_mp4(staged.path / OUTPUT_FILES["edited"], edited, record["frames"]["fps"], audio)
        write_contact_sheet(staged.path / OUTPUT_FILES["contact_sheet"],
                            {"original": original, "round trip": round_trip, "edited": edited})
        write_json_atomic(staged.path / OUTPUT_FILES["job"], record | {"output_dir": str(staged.final)})
        return staged.commit()
    except OutputError as exc:
        staged.discard()
        raise _unstaged(exc, staged.path, output_dir) from exc
    except BaseException:
        staged.discard()
        raise


def _unstaged(exc: OutputError, staging: Path, output_dir: Path) -> OutputError:
    """The error with the hidden staging path (one variant's own) replaced by the output folder: the
    reason every failed variant of the batch shows."""
    if str(staging) not in exc.problem:
        return exc
    problem = re.sub(re.escape(str(staging)) + r"[^\s)]*", lambda _: str(output_dir), exc.problem)
    return OutputError(problem, exc.fix)


def write_latents(path: Path, inversion: Inversion, results: list[EditResult]) -> None:
    """The latents of an edit as float32 safetensors: source, inversion (whole trajectory),
    reconstruction, and edited (``edited_<k>`` per variant when there are several)."""
    tensors = {"source": inversion.source_latents, "inversion": inversion.trajectory,
               "reconstruction": inversion.round_trip_latents}
    if len(results) == 1:
        tensors["edited"] = results[0].latents
    else:
        tensors.update({f"edited_{k}": r.latents for k, r in enumerate(results)})
    check_file_target(path)
    with atomic_path(path, suffix=".safetensors") as tmp:
        try:
            save_file({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
        except SafetensorError as exc:  # safetensors' I/O failures (a full disk...) are not OSErrors
            raise OutputError(f"cannot write the latents to {path} ({str(exc)[:100]})",
                              "free disk space or choose another --save-latents path") from exc


class SharedVideos:
    """What every variant of a batch shares (the original and the round trip, and the cut of the
    source's audio): encoded once, in a background thread while the GPU edits, into a hidden staging
    folder; each variant's folder gets a copy. The staging folder is removed on leaving the ``with``
    block (and, after a crash, at start-up with the other ``.partial-*`` folders).

    ``audio``: the sound to mux in (None: silent). When it cannot be cut the videos are silent and
    :attr:`audio_problem` says why (the edit goes on: its frames are what was asked for)."""

    def __init__(self, output_dir: Path, videos: dict[str, np.ndarray], fps: float, audio: AudioCut | None = None):
        self._staging = StagedFolder(output_dir, "shared")  # never committed
        self.audio: Path | None = None  # the cut, once files() has returned
        self.audio_problem: str | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cogedit-export")
        self._future = self._pool.submit(self._encode, videos, fps, audio)

    def _encode(self, videos: dict[str, np.ndarray], fps: float, audio: AudioCut | None) -> dict[str, Path]:
        if audio is not None:
            try:
                cut_audio(audio, self._staging.path / "audio.m4a")
                self.audio = self._staging.path / "audio.m4a"
            except OutputError as exc:
                self.audio_problem = str(exc)
        paths = {}
        for name, frames in videos.items():
            paths[name] = self._staging.path / name
            write_mp4(paths[name], frames, fps, self.audio)
        return paths

    def files(self) -> dict[str, Path]:
        """File name -> encoded file, once the encodes are done; raises what they raised."""
        try:
            return self._future.result()
        except OutputError as exc:
            raise _unstaged(exc, self._staging.path, self._staging.path.parent) from exc

    def __enter__(self) -> SharedVideos:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pool.shutdown(wait=True)
        self._staging.discard()
