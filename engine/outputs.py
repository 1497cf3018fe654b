"""Writing results: atomic files, H.264 MP4s, the per-edit folder and its metrics.

Every file lands under its final name only once it is complete (written to a temporary name in the
same folder, flushed, then renamed), so a crash never leaves half a video where a result belongs.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
import torch

from .errors import OutputError

DISK_FULL_FIX = "free disk space (or choose another --output-dir) and re-queue the job"


WRITABLE_FIX = "choose a writable --output-dir"


def _file_in_the_way(folder: Path) -> Path | None:
    """The nearest of ``folder`` and its parents that exists as something other than a folder."""
    for candidate in (folder, *folder.parents):
        if candidate.exists() or candidate.is_symlink():
            return None if candidate.is_dir() else candidate
    return None


def _output_error(exc: OSError, path: Path, folder: Path | None = None) -> OutputError:
    """One line for a failed write of ``path`` (or of the folder ``folder``, when creating it)."""
    creating = folder is not None
    folder = folder or path.parent
    if exc.errno == errno.ENOSPC:
        return OutputError(f"disk full while writing {path}", DISK_FULL_FIX)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write to {folder} (permission denied)", WRITABLE_FIX)
    blocker = _file_in_the_way(folder) if exc.errno in (errno.ENOTDIR, errno.EEXIST) else None
    if blocker == folder:
        return OutputError(f"the output folder {folder} is a file, not a folder", WRITABLE_FIX)
    if blocker is not None:
        return OutputError(f"cannot create the output folder {folder}: {blocker} is a file, not a folder",
                           WRITABLE_FIX)
    if creating:
        return OutputError(f"cannot create the output folder {folder} ({exc.strerror or exc})", WRITABLE_FIX)
    return OutputError(f"cannot write {path} ({exc.strerror or exc})", "check the output directory")


def check_output_dir(output_dir: str | os.PathLike) -> Path:
    """Create ``output_dir`` if needed and prove it writable, before any model work is spent on a job.

    Permission bits are not enough to tell (root ignores them, a read-only mount does not show in
    them), so a small file is created and removed.
    """
    folder = Path(output_dir).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise _output_error(exc, folder / ".write-test", folder) from exc
    return folder


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _output_error(exc, path) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def copy_file_atomic(source: Path, path: Path) -> None:
    """Copy ``source`` to ``path`` so that ``path`` only ever appears complete."""
    with atomic_path(path, suffix=path.suffix) as tmp:
        shutil.copyfile(source, tmp)


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    write_bytes_atomic(path, (json.dumps(payload, indent=2, sort_keys=False) + "\n").encode())


def frames_to_uint8(frames: torch.Tensor) -> np.ndarray:
    """[F, C, H, W] in [-1, 1] -> [F, H, W, C] uint8."""
    pixels = ((frames.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).contiguous().cpu().numpy()


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


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two frame stacks in [-1, 1] (peak = full range)."""
    a01 = (a.float().clamp(-1, 1) + 1) / 2
    b01 = (b.float().clamp(-1, 1) + 1) / 2
    mse = torch.mean((a01 - b01) ** 2).item()
    return float("inf") if mse == 0 else 10.0 * float(np.log10(1.0 / mse))


def _slug(text: str, limit: int = 32) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].rstrip("-") or "edit"


class StagedFolder:
    """One edit's result folder, built under a hidden staging name and renamed into place whole.

    The final folder (``YYYYmmdd-HHMMSS-<slug>-<id>``) is never reused; until :meth:`commit` nothing
    appears under it, so a crash or a cancel never leaves a half-finished result behind a final name.
    """

    def __init__(self, output_dir: Path, prompt: str):
        output_dir = Path(output_dir).expanduser()
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{_slug(prompt)}-{uuid.uuid4().hex[:6]}"
        self.final = output_dir / name
        self.path = output_dir / f".partial-{name}"
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
            self.path.mkdir()
        except OSError as exc:
            raise _output_error(exc, self.final, output_dir) from exc

    def commit(self) -> Path:
        try:
            os.rename(self.path, self.final)
        except OSError as exc:
            raise _output_error(exc, self.final) from exc
        return self.final

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class SharedVideos:
    """The videos every variant of a batch shares (the original and the round trip): encoded once, in a
    background thread while the GPU edits, into a hidden staging folder; each variant's folder gets a
    copy. The staging folder is removed on leaving the ``with`` block (and, after a crash, at start-up
    with the other ``.partial-*`` folders)."""

    def __init__(self, output_dir: Path, videos: dict[str, np.ndarray], fps: float):
        self._staging = StagedFolder(output_dir, "shared")  # never committed
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cogedit-export")
        self._future = self._pool.submit(self._encode, videos, fps)

    def _encode(self, videos: dict[str, np.ndarray], fps: float) -> dict[str, Path]:
        paths = {}
        for name, frames in videos.items():
            paths[name] = self._staging.path / name
            write_mp4(paths[name], frames, fps)
        return paths

    def files(self) -> dict[str, Path]:
        """File name -> encoded file, once the encodes are done; raises what they raised."""
        return self._future.result()

    def __enter__(self) -> SharedVideos:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pool.shutdown(wait=True)
        self._staging.discard()
