"""H.264 MP4s through imageio-ffmpeg's bundled ffmpeg, written atomically.

ffmpeg runs with its stderr captured (not inherited: its own messages, such as "Error writing
trailer", would scribble over the TUI) and its exit status checked; a failure becomes one OutputError
naming the cause (a full disk is told as such). An audio file (see engine.output.audio) is muxed in
as it is, without re-encoding. The frame rate is given as an exact fraction (30/7 for 4.2857 fps), so a
video lasts what its frames at that rate last and its sound stays in step.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from ..errors import OutputError
from .atomic import DISK_FULL_FIX, atomic_path

FFMPEG_FIX = "check the disk and the output folder, then re-queue the job"
_DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded")


def frame_rate(fps: float) -> str:
    """``fps`` as the exact fraction ffmpeg takes ("30/7", "30000/1001", "8")."""
    rate = Fraction(fps).limit_denominator(1001)
    return str(rate.numerator) if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"


def _ffmpeg_command(tmp: Path, width: int, height: int, fps: float, audio: Path | None) -> list[str]:
    frames = ["-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{width}x{height}", "-pix_fmt", "rgb24",
              "-r", frame_rate(fps), "-i", "-"]
    sound = ["-i", str(audio), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "copy"] if audio else ["-an"]
    return [imageio_ffmpeg.get_ffmpeg_exe(), "-y", *frames, *sound,
            "-vcodec", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", "-preset", "medium",
            "-movflags", "+faststart", "-v", "error", str(tmp)]


def _failure(path: Path, log: str, code: int | None) -> OutputError:
    """Why ffmpeg did not write ``path``: a full disk (its log, or no space left), else its last line."""
    if any(text in log for text in _DISK_FULL_TEXT) or _disk_nearly_full(path.parent):
        return OutputError(f"disk full while writing {path}", DISK_FULL_FIX)
    last = next((line.strip() for line in reversed(log.splitlines()) if line.strip()), "")
    detail = last[:120] or (f"exit status {code}" if code else "it wrote nothing")
    return OutputError(f"ffmpeg could not write {path.name} ({detail})", FFMPEG_FIX)


def _disk_nearly_full(folder: Path, margin: int = 1 << 20) -> bool:
    try:
        info = os.statvfs(folder)
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < margin


def write_mp4(path: Path, frames: np.ndarray, fps: float, audio: Path | None = None) -> None:
    """H.264, yuv420p (plays everywhere), written atomically. ``frames`` is [F, H, W, 3] uint8;
    ``audio``: an AAC file to mux in (None: silent)."""
    path = Path(path)
    _, height, width, _ = frames.shape
    with atomic_path(path, suffix=".mp4") as tmp, tempfile.TemporaryFile() as log:
        # Its own session: a Ctrl-C meant for the app does not cut a video short mid-file.
        process = subprocess.Popen(_ffmpeg_command(tmp, width, height, fps, audio), stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        try:
            for frame in frames:
                process.stdin.write(np.ascontiguousarray(frame[..., :3]).tobytes())
        except BrokenPipeError:  # ffmpeg stopped early: its log says why
            pass
        except BaseException:
            process.kill()
            raise
        finally:
            try:
                process.stdin.close()
            except BrokenPipeError:
                pass
            code = process.wait()
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
        if code != 0 or tmp.stat().st_size == 0:
            raise _failure(path, text, code)
