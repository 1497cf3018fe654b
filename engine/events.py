"""The typed events the engine streams while it works.

Events are immutable dataclasses. Front ends subscribe to them (progress bars, the TUI, ``--events
jsonl``); :func:`event_to_dict` gives each one a flat JSON form with its ``event`` name.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

STOPPED_REASON = "stopped"  # EngineStopped.reason of an orderly stop
# Stages of a job, in the order they run. Shared stages (frames..round_trip) serve every variant of a
# source at once and are skipped when the inversion cache already holds their result.
# The metrics of a result (JobFinished.metrics, job.json), with their labels, in the order shown.
METRIC_LABELS = {"psnr_round_trip_vs_original_db": "round trip vs original",
                 "psnr_round_trip_vs_vae_db": "round trip vs VAE decode",
                 "psnr_vae_vs_original_db": "VAE decode vs original",
                 "psnr_edited_vs_original_db": "edited vs original"}
PSNR_ROUND_TRIP, PSNR_ROUND_TRIP_VS_VAE, PSNR_VAE, PSNR_EDITED = METRIC_LABELS
STAGES = ("load", "frames", "encode", "invert", "round_trip", "edit", "decode", "export")


@dataclass(frozen=True)
class Event:
    time: float = field(default_factory=time.time, kw_only=True)


@dataclass(frozen=True)
class EngineReady(Event):
    model: str
    resolved_path: str
    device: str
    dtype: str  # e.g. bf16; "bf16+fp8" when the FP8 projections are on
    seconds: float


@dataclass(frozen=True)
class EngineStopped(Event):
    reason: str  # STOPPED_REASON after an orderly stop, else what went wrong
    device: str = ""

    @property
    def fault(self) -> bool:
        """The device stopped because something went wrong (not an orderly stop)."""
        return self.reason != STOPPED_REASON


@dataclass(frozen=True)
class WorkerState(Event):
    """A device's worker changed state: loading, idle, running, paused, stopped, failed or retired."""

    device: str
    state: str
    job_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobQueued(Event):
    job_id: str
    source: str
    prompt: str
    position: int


@dataclass(frozen=True)
class JobStarted(Event):
    job_id: str
    device: str = ""


@dataclass(frozen=True)
class StageStarted(Event):
    stage: str
    job_ids: tuple[str, ...]
    total_steps: int  # 0 when the stage has no steps
    device: str = ""


@dataclass(frozen=True)
class StepProgress(Event):
    stage: str
    job_ids: tuple[str, ...]
    step: int  # 1-based: ``step`` of ``total`` done
    total: int
    it_per_s: float


@dataclass(frozen=True)
class StageFinished(Event):
    stage: str
    job_ids: tuple[str, ...]
    seconds: float
    cached: bool = False  # the result came from the inversion cache
    device: str = ""


@dataclass(frozen=True)
class EditWarning(Event):
    """Something the user should know that does not stop the job (a truncated prompt, ...)."""

    job_ids: tuple[str, ...]
    message: str


@dataclass(frozen=True)
class JobFinished(Event):
    job_id: str
    output_dir: str
    outputs: dict[str, str]
    metrics: dict[str, float]
    timings: dict[str, float]


@dataclass(frozen=True)
class JobFailed(Event):
    job_id: str
    reason: str  # one line: the problem and the fix
    log_path: str | None = None
    fixable: bool = False  # the user can fix it (bad input, full disk, ...) rather than a fault


@dataclass(frozen=True)
class JobCancelled(Event):
    job_id: str


@dataclass(frozen=True)
class JobMoved(Event):
    """A queued job moved ``offset`` places (negative: towards the front)."""

    job_id: str
    offset: int


@dataclass(frozen=True)
class JobDeleted(Event):
    """A finished job left the history (and its result folder the disk)."""

    job_id: str


@dataclass(frozen=True)
class GpuMemory(Event):
    device: str
    allocated_bytes: int
    reserved_bytes: int
    total_bytes: int


def event_to_dict(event: Event) -> dict[str, Any]:
    """A JSON-ready dict: ``{"event": "step_progress", ...fields}``."""
    payload = {"event": _snake(type(event).__name__)}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        payload[f.name] = list(value) if isinstance(value, tuple) else value
    return payload


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name))
