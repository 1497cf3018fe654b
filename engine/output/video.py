"""H.264 MP4s through imageio-ffmpeg's bundled ffmpeg, written atomically."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np

from ..errors import OutputError
from .atomic import atomic_path


def write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    """H.264, yuv420p (plays everywhere), written atomically. ``frames`` is [F, H, W, 3] uint8."""
    num, height, width, _ = frames.shape
    with atomic_path(path, suffix=".mp4") as tmp:
        writer = imageio_ffmpeg.write_frames(
            str(tmp), (width, height), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
            quality=None, bitrate=None, macro_block_size=1, ffmpeg_log_level="error",
            output_params=["-crf", "18", "-preset", "medium", "-movflags", "+faststart"])
        writer.send(None)
        try:
            for frame in frames:
                writer.send(np.ascontiguousarray(frame))
        finally:
            writer.close()
        if tmp.stat().st_size == 0:
            raise OutputError(f"ffmpeg wrote nothing for {path.name}", "check the disk and ffmpeg")
