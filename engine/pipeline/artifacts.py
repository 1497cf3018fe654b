"""What the stages of an edit produce and pass on: a source, its inversion, and the variants."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .frames import FramePlan, VideoInfo


@dataclass(frozen=True)
class Variant:
    """One prompt of a source: a job of its own, with its own result folder."""

    job_id: str
    prompt: str
    seed: int


@dataclass
class Source:
    """A clip as the model sees it."""

    info: VideoInfo
    plan: FramePlan
    digest: str  # sha256 of the file
    frames: torch.Tensor  # [F, C, H, W] in [-1, 1], CPU


@dataclass
class Inversion:
    """What every variant of a source shares: latents, trajectory, round trip and its metrics."""

    source_latents: torch.Tensor  # [1, F', C, h, w]
    trajectory: torch.Tensor  # [steps, 1, F', C, h, w]
    round_trip_latents: torch.Tensor  # [1, F', C, h, w]
    round_trip_video: torch.Tensor  # [F, H, W, 3] uint8, CPU: the decoded round trip
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EditResult:
    variant: Variant
    output_dir: Path
    metrics: dict[str, float]
    latents: torch.Tensor  # [1, F', C, h, w]
