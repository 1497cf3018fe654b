"""The engine as front ends see it: jobs, events, parameters, history, previews.

Importing this module is light (no torch, no decord): the TUI imports it at start-up and shows its
screen at once; functions that need the ML stack import it when first called, which front ends do
off their UI thread.

- :func:`open_worker` locks the data dir and returns a :class:`engine.runtime.worker.Worker` (see its
  module doc for submit / cancel / move / pause / resume / requeue / subscribe / start / close, and
  ``status()``, the snapshot front ends read instead of the device threads).
- :func:`describe_source` says what a clip is and how many frames the parameters keep.
- :func:`result_frame_count` and :func:`result_frames` read frames of a finished result's videos.
- :func:`delete_result` removes a finished job from history and its folder from disk.
- :func:`count_prompt_tokens` and :func:`prompt_token_limit`: a prompt's tokens as the model's T5
  encoder counts them, and how many it keeps (the tokenizer is loaded on first use: off the UI thread).
- :func:`check_data_dir_free` refuses a data dir another process holds, without loading torch;
  :func:`check_latents_path` refuses a ``--save-latents`` path that cannot take a file.
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
    DataDirLock,
    JobRecord,
    Store,
    variant_key,
)

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


def describe_source(path: str, params: EditParams) -> SourceSummary:
    """Probe ``path`` and plan its frames; raises EditError (VideoError) with the reason."""
    from .pipeline.frames import plan_frames, probe_video

    info = probe_video(path)
    plan = plan_frames(info, params)
    return SourceSummary(info.path, info.num_frames, info.fps, info.width, info.height, plan.num_frames,
                         plan.stride, plan.fps)


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
    "build_params", "CANCELLED", "check_data_dir_free", "check_latents_path", "check_prompts", "DEFAULT_MODEL",
    "count_prompt_tokens", "prompt_token_limit",
    "delete_result",
    "describe_source", "DONE", "EditError", "EditParams", "EditWarning", "EngineConfig", "EngineReady",
    "EngineStopped", "Event", "event_to_dict", "FAILED", "field_problem", "GpuMemory", "INTERRUPTED",
    "JobCancelled", "JobFailed", "JobFinished", "JobQueued", "JobRecord", "JobSpec", "JobStarted",
    "open_worker", "PARAM_SPECS", "ParamsError", "ParamSpec", "parse_value", "PRESETS", "QUEUED",
    "REQUEUEABLE", "result_frame_count", "result_frames", "RESULT_VIDEOS", "RUNNING", "SourceSummary",
    "StageFinished", "STAGES", "StageStarted", "StepProgress", "Store", "variant_key", "WorkerState",
]
