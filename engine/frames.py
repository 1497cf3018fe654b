"""Reading a source clip: probing it, choosing frames, and shaping them for the model.

This is the only module that imports decord, and it does so after torch (decord has crashed when
imported first on some systems: dmlc/decord issues #293 and #324).
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import decord  # isort: skip  (after torch, see the module docstring)

from .errors import VideoError
from .params import MIN_FRAMES, EditParams

VIDEO_FIX = "give the path of a video file ffmpeg can play (mp4, mov, mkv, webm)"


@dataclass(frozen=True)
class VideoInfo:
    """What a clip is, as decord reads it."""

    path: str
    num_frames: int
    fps: float
    width: int
    height: int

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps if self.fps else 0.0


@dataclass(frozen=True)
class FramePlan:
    """Which frames an edit uses and how they are shaped, decided before anything is decoded."""

    indices: tuple[int, ...]
    stride: int
    fps: float  # output frame rate
    decode_size: tuple[int, int]  # (height, width) decord resizes to while decoding
    crop: tuple[int, int, int, int]  # (top, left, height, width) taken from the decoded frame

    @property
    def num_frames(self) -> int:
        return len(self.indices)


def check_video_path(path: str | os.PathLike) -> Path:
    """Fail early, with the reason, for paths that cannot be a video."""
    p = Path(path).expanduser()
    if not p.exists():
        raise VideoError(f"video not found: {p}", "check the path (a typo, or a relative path from "
                                                   "another directory?)")
    if p.is_dir():
        raise VideoError(f"{p} is a directory, not a video", VIDEO_FIX)
    if p.stat().st_size == 0:
        raise VideoError(f"{p} is empty (0 bytes)", "copy the video again; the file holds nothing")
    return p


def _open(path: Path, **size: int) -> decord.VideoReader:
    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1, **size)
    except (decord.DECORDError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VideoError(f"cannot read {path.name} as a video ({first[:120]})", VIDEO_FIX) from exc


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame count, frame rate and size of a clip, without decoding its frames."""
    p = check_video_path(path)
    reader = _open(p)
    num_frames = len(reader)
    if num_frames == 0:
        raise VideoError(f"{p.name} holds no video frames", VIDEO_FIX)
    height, width = reader[0].shape[:2] if num_frames else (0, 0)
    fps = float(reader.get_avg_fps() or 0.0)
    if not math.isfinite(fps) or fps <= 0:
        fps = 8.0
    return VideoInfo(str(p), num_frames, fps, int(width), int(height))


def select_frame_indices(num_frames: int, skip_frames_start: int, skip_frames_end: int,
                         max_num_frames: int, frame_sample_step: int | None) -> tuple[list[int], int]:
    """The frame numbers an edit keeps, and the stride used.

    Keep [skip_start, len - skip_end); if more than ``max_num_frames`` remain, take every
    ``frame_sample_step``-th (default: remaining // max_num_frames, the most frames spread over the
    range); cut to ``max_num_frames``; then drop trailing frames to the largest 4k+1 count the VAE
    accepts. Raises VideoError when fewer than MIN_FRAMES remain.
    """
    start = min(skip_frames_start, num_frames)
    end = max(start, num_frames - skip_frames_end)
    available = end - start
    stride = 1
    if available > max_num_frames:
        stride = frame_sample_step or max(1, available // max_num_frames)
    indices = list(range(start, end, stride))[:max_num_frames]
    keep = (len(indices) - 1) // 4 * 4 + 1 if indices else 0
    if keep < MIN_FRAMES:
        raise VideoError(
            f"only {len(indices)} usable frame(s) of {num_frames} after skips and stride; "
            f"an edit needs at least {MIN_FRAMES}",
            "use a longer clip, or lower skip_frames_start/skip_frames_end/frame_sample_step")
    return indices[:keep], stride


def plan_frames(info: VideoInfo, params: EditParams) -> FramePlan:
    """Decide frames, output fps, decode size and crop for ``info`` under ``params``."""
    indices, stride = select_frame_indices(info.num_frames, params.skip_frames_start,
                                           params.skip_frames_end, params.max_num_frames,
                                           params.frame_sample_step)
    out_h, out_w = params.height, params.width
    if params.resize == "stretch":
        decode = (out_h, out_w)
        crop = (0, 0, out_h, out_w)
    else:
        # Scale so the frame covers the target, then take the centre: nothing is stretched.
        scale = max(out_h / info.height, out_w / info.width)
        dec_h = max(out_h, math.ceil(info.height * scale - 1e-6))
        dec_w = max(out_w, math.ceil(info.width * scale - 1e-6))
        decode = (dec_h, dec_w)
        crop = ((dec_h - out_h) // 2, (dec_w - out_w) // 2, out_h, out_w)
    fps = params.fps if params.fps else info.fps / stride
    return FramePlan(tuple(indices), stride, float(fps), decode, crop)


def read_frames(info: VideoInfo, plan: FramePlan) -> torch.Tensor:
    """Decode only the planned frames, resized while decoding (memory stays bounded for 4K clips).

    Returns float32 frames scaled to [-1, 1], shaped [F, C, H, W].
    """
    dec_h, dec_w = plan.decode_size
    reader = _open(Path(info.path), height=dec_h, width=dec_w)
    try:
        batch = reader.get_batch(list(plan.indices)).asnumpy()  # [F, H, W, C] uint8
    except (decord.DECORDError, RuntimeError, IndexError) as exc:
        raise VideoError(f"cannot decode the frames of {Path(info.path).name} (truncated or corrupt?)",
                         "re-encode or re-copy the video") from exc
    if batch.shape[0] != plan.num_frames:
        raise VideoError(f"{Path(info.path).name} returned {batch.shape[0]} of {plan.num_frames} frames "
                         "(truncated?)", "re-encode or re-copy the video")
    top, left, h, w = plan.crop
    batch = np.ascontiguousarray(batch[:, top:top + h, left:left + w, :3])
    frames = torch.from_numpy(batch).permute(0, 3, 1, 2).float()  # [F, C, H, W]
    return frames / 127.5 - 1.0


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes: the identity of a source for caching and history."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
