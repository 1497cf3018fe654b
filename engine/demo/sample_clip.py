"""A generated sample clip (moving shapes on a gradient) for the demo and the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..output.video import write_mp4


def moving_shapes(num_frames: int = 40, height: int = 128, width: int = 192, seed: int = 0) -> np.ndarray:
    """[F, H, W, 3] uint8: a red disc crossing the frame and a blue square bouncing, over a gradient."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    background = np.stack([xs / width * 120 + 60, ys / height * 120 + 60, np.full_like(xs, 140)], axis=-1)
    tint = rng.uniform(0.8, 1.2, size=3).astype(np.float32)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    radius = min(height, width) * 0.18
    side = min(height, width) * 0.25
    for i in range(num_frames):
        phase = i / max(1, num_frames - 1)
        frame = background * tint
        cx, cy = width * (0.15 + 0.7 * phase), height * (0.5 + 0.25 * np.sin(2 * np.pi * phase))
        frame[(xs - cx) ** 2 + (ys - cy) ** 2 <= radius ** 2] = (220, 40, 40)
        sx = width * 0.7 - abs(np.sin(np.pi * 2 * phase)) * width * 0.4
        sy = height * 0.2
        frame[(xs >= sx) & (xs < sx + side) & (ys >= sy) & (ys < sy + side)] = (40, 60, 210)
        frames[i] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


def write_sample_clip(path: Path, num_frames: int = 40, height: int = 128, width: int = 192, fps: float = 16.0,
                      seed: int = 0) -> Path:
    """Write the moving-shapes clip as an H.264 MP4 (2.5 s at the defaults)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(path, moving_shapes(num_frames, height, width, seed), fps)
    return path
