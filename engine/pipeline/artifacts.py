"""What the stages of an edit produce and pass on: a source, its inversion, and the variants."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..params import EditParams
from .frames import FramePlan, VideoInfo
from .geometry import cut_picture


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
    params: EditParams | None = None  # the edit's parameters, the model's own frames/height/width filled in
    first_frame: torch.Tensor | None = None  # [C, H, W] in [-1, 1]: an edited first frame (image-to-video)

    def picture_of(self, frames, channels_last: bool = False):
        """Frames shaped like the model's ([F, C, H, W], or [F, H, W, C]) cut to the clip's picture: the
        letterbox bars of ``resize=pad`` removed (other frames pass unchanged)."""
        return frames if self.plan.picture is None else cut_picture(frames, self.plan.picture, channels_last)


@dataclass
class Inversion:
    """What every variant of a source shares: latents, trajectory, round trip and its metrics."""

    # CogVideoX1.5: the latents carry their temporal padding in front (engine.pipeline.conditioning).
    source_latents: torch.Tensor  # [1, F', C, h, w]
    trajectory: torch.Tensor  # [steps, 1, F', C, h, w]
    round_trip_latents: torch.Tensor  # [1, F', C, h, w]
    round_trip_video: torch.Tensor  # [F, H, W, 3] uint8, CPU: the decoded round trip (its picture)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EditResult:
    variant: Variant
    output_dir: Path
    metrics: dict[str, float]
    latents: torch.Tensor  # [1, F', C, h, w]
