"""The engine as front ends see it: jobs, events, parameters, history, previews.

Importing this module is light (no torch, no decord): the TUI imports it at start-up and shows its
screen at once; functions that need the ML stack import it when first called, which front ends do
off their UI thread.

- :func:`open_worker` locks the data dir and returns a :class:`engine.runtime.worker.Worker` (see its
  module doc for submit / cancel / move / pause / resume / requeue / subscribe / start / close, and
  ``status()``, the snapshot front ends read instead of the device threads).
- :func:`describe_source` says what a clip is and how many frames the parameters keep (under the model
  family's rules when :func:`transformer_config` can read the model's config); :func:`check_first_frame`
  refuses an edited first frame that is no readable image.
- :func:`result_frame_count` and :func:`result_frames` read frames of a finished result's videos.
- :func:`delete_result` removes a finished job from history and its folder from disk.
- :func:`read_store_snapshot` reads the queue (and whether it was left paused) before the worker
  opens: read-only, no lock, no torch; the app shows it during the engine's first seconds.
- :func:`count_prompt_tokens` and :func:`prompt_token_limit`: a prompt's tokens as the model's T5
  encoder counts them, and how many it keeps (the tokenizer is loaded on first use: off the UI thread).
- :func:`check_data_dir_free` refuses a data dir another process holds, without loading torch;
  :func:`check_latents_path` refuses a ``--save-latents`` path that cannot take a file;
  :func:`check_output_ready` an output folder that cannot be written or whose disk is full.
- :func:`read_job_file` reads a finished result's job.json; :func:`config_flags` and
  :func:`config_from_flags` are EngineConfig's command-line flags, generated from its fields.
- The contract, re-exported: parameters, events, errors, DeviceState, result file names, metric keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import (
    ATTENTION_CHOICES,
    DEFAULT_MODEL,
    DOWN_STATES,
    GIB,
    DeviceState,
    DeviceStatus,
    EngineConfig,
    JobSpec,
    WorkerStatus,
    config_flags,
    config_from_flags,
)
from .data_dir import DataDirLock
from .errors import EditError, one_line
from .events import (
    METRIC_LABELS,
    PSNR_EDITED,
    PSNR_ROUND_TRIP,
    STAGES,
    EditWarning,
    EngineReady,
    EngineStopped,
    Event,
    GpuMemory,
    JobCancelled,
    JobDeleted,
    JobFailed,
    JobFinished,
    JobMoved,
    JobQueued,
    JobStarted,
    StageFinished,
    StageStarted,
    StepProgress,
    WorkerState,
    event_to_dict,
)
from .params import (
    PARAM_SPECS,
    PRESETS,
    EditParams,
    ParamsError,
    ParamSpec,
    build_params,
    check_prompts,
    field_problem,
    parse_value,
)
from .paths import OUTPUT_FILES, RESULT_VIDEOS, data_dir
from .prompt_tokens import count_prompt_tokens, prompt_token_limit
from .store import (
    CANCELLED,
    DONE,
    FAILED,
    INTERRUPTED,
    QUEUED,
    REQUEUEABLE,
    RUNNING,
    JobRecord,
    Store,
    variant_key,
)
from .store_snapshot import StoreSnapshot, read_store_snapshot

if TYPE_CHECKING:
    import numpy as np

    from .runtime.worker import Worker



def open_worker(config: EngineConfig, **kwargs) -> Worker:
    """Lock the data dir and open the worker (loads torch; the model loads on ``start()``)."""
    from .runtime.worker import Worker

    return Worker.open(config, **kwargs)


def check_data_dir_free(root: Path | None = None) -> None:
    """Raise DataDirBusy (an EditError naming the process) when another process holds the data dir:
    a check that needs no torch, so a second instance says so at once."""
    DataDirLock(Path(root) if root else data_dir()).check_free()


def check_latents_path(path: str | Path) -> Path:
    """Refuse, before any model work, a ``--save-latents`` path that cannot take a file (a folder,
    a device, a path under a file, a read-only folder); no torch needed."""
    from .output.atomic import check_file_target

    return check_file_target(path)


def check_output_ready(output_dir: str | Path | None) -> Path:
    """Refuse, before any model work, an output folder (None: the default one) that cannot be created
    or written, or whose disk is full; no torch needed."""
    from .output.atomic import check_output_dir, check_output_space
    from .paths import default_output_dir

    folder = check_output_dir(output_dir or default_output_dir())
    check_output_space(folder)
    return folder


@dataclass(frozen=True)
class SourceSummary:
    """What a clip is and what an edit with given parameters would take of it."""

    path: str
    num_frames: int
    fps: float
    width: int
    height: int
    kept_frames: int  # after skips, stride, cap and the 8k+1 rule
    stride: int
    output_fps: float


def describe_source(path: str, params: EditParams, model: str | None = None) -> SourceSummary:
    """Probe ``path`` and plan its frames under the rules of ``model``'s family when its config can be
    read without loading it (a local folder, the toy model, the hub cache); else under CogVideoX-5B's
    rules, leaving what only the model can judge (resize=keep, a first frame) to the run. Raises
    EditError (VideoError) with the reason."""
    import dataclasses

    from .families import FIVE_B, family_from_config
    from .pipeline.frames import plan_frames, probe_video

    info = probe_video(path)
    if params.first_frame:
        check_first_frame(params.first_frame)
    config = transformer_config(model) if model else None
    if config is None:
        resize = "crop" if params.resize == "keep" else params.resize
        params = dataclasses.replace(params, first_frame="", resize=resize)
    plan = plan_frames(info, params, family_from_config(config, str(model)) if config else FIVE_B)
    return SourceSummary(info.path, info.num_frames, info.fps, info.width, info.height, plan.num_frames,
                         plan.stride, plan.fps)


def check_first_frame(path: str | Path) -> None:
    """Refuse, before any model work, a ``first_frame`` that is no readable image (no torch needed)."""
    from PIL import Image, UnidentifiedImageError

    file = Path(path).expanduser()
    fix = "give the path of a PNG or JPEG (the first frame of original.mp4, edited in any image editor)"
    if not file.is_file():
        raise EditError(f"first frame not found: {file}", fix)
    try:
        with Image.open(file) as image:
            image.verify()
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise EditError(f"cannot read the first frame {file.name} as an image ({type(exc).__name__})", fix) from exc


def transformer_config(model: str) -> dict | None:
    """``transformer/config.json`` of ``model`` (``toy``, a local folder or a hub id already in the
    cache) read without loading anything; None when it cannot be found or read."""
    import json

    from .paths import TOY_MODEL, toy_model_dir

    folder = toy_model_dir() if model == TOY_MODEL else Path(model).expanduser()
    file: Path | str | None = folder / "transformer" / "config.json"
    if not folder.exists():
        try:
            from huggingface_hub import try_to_load_from_cache

            file = try_to_load_from_cache(model, "transformer/config.json")
        except Exception:  # not a hub id, no cache: the run finds out
            return None
    try:
        config = json.loads(Path(file).read_text()) if isinstance(file, (str, Path)) else None
    except (OSError, ValueError, RecursionError):
        return None
    return config if isinstance(config, dict) else None


def result_frame_count(output_dir: str) -> int:
    from .pipeline.frames import probe_video

    return probe_video(Path(output_dir) / RESULT_VIDEOS["edited"]).num_frames


def result_frames(output_dir: str, index: int) -> dict[str, np.ndarray]:
    """Frame ``index`` of the original, reconstruction and edited videos: label -> [H, W, 3] uint8."""
    from .pipeline.frames import read_single_frame

    return {label: read_single_frame(Path(output_dir) / name, index) for label, name in RESULT_VIDEOS.items()}


def read_job_file(path: str | Path) -> dict:
    """A finished result's job.json, checked enough to run it again (EditError when it is not)."""
    from .pipeline.export import read_job_file as read

    return read(Path(path))


def delete_result(worker: Worker, job_id: str) -> JobRecord | None:
    """Forget a finished job and delete its result folder (only a folder that holds its job.json)."""
    return worker.delete(job_id)


__all__ = [
    "ATTENTION_CHOICES", "config_flags", "config_from_flags", "DeviceState", "DeviceStatus", "DOWN_STATES", "GIB",
    "JobDeleted", "JobMoved",
    "METRIC_LABELS", "PSNR_EDITED", "PSNR_ROUND_TRIP", "one_line", "OUTPUT_FILES", "read_job_file", "Worker",
    "WorkerStatus",
    "build_params", "CANCELLED", "check_data_dir_free", "check_latents_path", "check_output_ready", "check_prompts",
    "DEFAULT_MODEL",
    "count_prompt_tokens", "data_dir", "prompt_token_limit", "read_store_snapshot", "StoreSnapshot",
    "delete_result",
    "describe_source", "DONE", "EditError", "EditParams", "EditWarning", "EngineConfig", "EngineReady",
    "EngineStopped", "Event", "event_to_dict", "FAILED", "field_problem", "GpuMemory", "INTERRUPTED",
    "JobCancelled", "JobFailed", "JobFinished", "JobQueued", "JobRecord", "JobSpec", "JobStarted",
    "open_worker", "PARAM_SPECS", "ParamsError", "ParamSpec", "parse_value", "PRESETS", "QUEUED",
    "REQUEUEABLE", "result_frame_count", "result_frames", "RESULT_VIDEOS", "RUNNING", "SourceSummary",
    "StageFinished", "STAGES", "StageStarted", "StepProgress", "Store", "variant_key", "WorkerState",
    "check_first_frame", "transformer_config",
]
