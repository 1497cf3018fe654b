"""Reading a source clip: probing it, choosing frames, and shaping them for the model.

This is the only module that imports decord, and it does so after torch (decord has crashed when
imported first on some systems: dmlc/decord issues #293 and #324). What decord's C++ code prints
while it opens or decodes a clip is caught (engine.pipeline.native_log): it explains a failure, and
its "frames corrupted and recovered" becomes a warning of the edit, not a line over the TUI.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import math
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import VideoError
from ..families import FIVE_B, ModelFamily, resolve_params
from ..output.audio import AudioCut
from ..params import MIN_FRAMES, SPECS_BY_NAME, EditParams
from ..paths import not_a_regular_file
from .geometry import Box, fit_frame, place_picture
from .native_log import native_stderr, sane_decord_environment

sane_decord_environment()  # before decord loads: it reads its settings once, and a bad one aborts
import decord  # noqa: E402  (after torch and the environment check: see the module docstring)

decord.logging.set_level(decord.logging.QUIET)  # ffmpeg's own log: the engine reports unreadable clips itself

VIDEO_FIX = "give the path of a video file ffmpeg can play (mp4, mov, mkv, webm)"
RECOPY_FIX = "copy or download the video again (it is incomplete or damaged), or re-encode it with ffmpeg"
STILL_FIX = f"give a video clip of at least {MIN_FRAMES} frames (mp4, mov, mkv, webm)"
CONVERT_FIX = "convert it to MP4 first: ffmpeg -i IN -pix_fmt yuv420p OUT.mp4"
REENCODE_FIX = "ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4"
TRUNCATED = "the file is truncated or corrupt"
# What ffmpeg's probe says of a file cut short or damaged (its index or first packets).
_DAMAGE_MARKS = ("partial file", "Packet corrupt", "moov atom not found", "Invalid NAL unit",
                 "Could not find codec parameters", "Invalid data found")

RECOVERED = "frames corrupted and recovered"  # decord's words for frames it repeated from a neighbour


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
    crop: Box  # (top, left, height, width) taken from the decoded frame
    size: tuple[int, int] = (0, 0)  # (height, width) of the frames the model sees
    picture: Box | None = None  # where the clip sits in them with resize=pad (None: it fills them)

    @property
    def num_frames(self) -> int:
        return len(self.indices)


def sniff_file(head: bytes) -> str | None:
    """What a file's first bytes say it is, for the formats people mistake for videos.

    Returns "still image (PNG)" and the like, "GIF" or "animated WebP" (animations decord cannot
    read), "MP4" (an ISO media file), "text", or None when the bytes say nothing conclusive.
    """
    stills = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"II*\x00", "TIFF"),
              (b"MM\x00*", "TIFF"))
    for magic, kind in stills:
        if head.startswith(magic):
            return f"still image ({kind})"
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in (12, 40, 52, 56, 108, 124):
        return "still image (BMP)"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "animated WebP" if b"ANIM" in head[:4096] else "still image (WebP)"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"heic", b"heix", b"mif1"):
            return f"still image ({'AVIF' if brand == b'avif' else 'HEIC'})"
        return "MP4"
    if head and b"\x00" not in head:
        try:  # an incremental decoder tolerates a character cut at the end of ``head``
            text = codecs.getincrementaldecoder("utf-8")().decode(head)
        except UnicodeDecodeError:
            return None
        if sum(c.isprintable() or c.isspace() for c in text) >= 0.95 * len(text):
            return "text"
    return None


def check_video_path(path: str | os.PathLike) -> Path:
    """Fail early, with the reason, for paths that cannot be a video (cheap: no decoding)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise VideoError(f"video not found: {p}", "check the path (a typo, or a relative path from "
                                                   "another directory?)")
    if p.is_dir():
        raise VideoError(f"{p} is a directory, not a video", VIDEO_FIX)
    kind = _special_kind(p)
    if kind:  # reading a FIFO blocks, a device never ends: refuse before opening it
        raise VideoError(f"{p} is not a regular file ({kind})", "give the path of a video file (mp4, mov, mkv, "
                         "webm); copy a stream to a file first")
    if p.stat().st_size == 0:
        raise VideoError(f"{p} is empty (0 bytes)", "copy the video again; the file holds nothing")
    try:
        kind = sniff_file(_head(p))
    except OSError as exc:
        raise VideoError(f"cannot open {p} ({exc.strerror or exc})", "check the file's permissions") from exc
    if kind and kind.startswith("still image"):
        raise VideoError(f"{p.name} is a {kind}, not a video", STILL_FIX)
    if kind in ("GIF", "animated WebP"):
        raise VideoError(f"{p.name} is an {kind.replace('GIF', 'animated GIF')}, which the video reader "
                         "(decord) cannot decode", CONVERT_FIX)
    if kind == "text":
        raise VideoError(f"cannot read {p.name} as a video (it is a text file)", VIDEO_FIX)
    return p


def _special_kind(path: Path) -> str | None:
    """What ``path`` is when it is not a regular file (a FIFO, a device, a socket), else None.

    A file in /proc or /sys is regular but reports 0 bytes while it holds text: it is named too."""
    if str(path.resolve()).startswith(("/proc/", "/sys/")):
        return "a /proc or /sys pseudo-file"
    return not_a_regular_file(path)


def _reason(exc: BaseException, log: list[str], path: Path) -> tuple[str, str]:
    """Why decord could not open ``path``, in words, and the fix."""
    text = " ".join([str(exc), *log])
    unopened = "Invalid data found" in text or "Error reading" in text
    broken = ("av_read_frame failed", "Error sending packet", "avcodec_send_packet")
    if any(b in text for b in broken) or (unopened and _sniff_path(path) == "MP4"):  # an MP4 with no
        return TRUNCATED, RECOPY_FIX  # index (moov), cut or damaged packets
    # No stream decord can read, or one it cannot set up (decord's filter graph needs the pixel format
    # that a cut-short file does not give): ffmpeg's own probe tells damage from a codec or no video.
    if "cannot find video stream" in text or "avfilter_graph_create_filter" in text:
        probe = _ffmpeg_probe(path)
        codec = _video_codec(probe)
        if any(mark in probe for mark in _DAMAGE_MARKS) or codec == "none" or (
                codec is None and _sniff_path(path) == "MP4" and " Audio: " not in probe):
            return TRUNCATED, RECOPY_FIX
        if codec is not None and "cannot find video stream" in text:
            return (f"its video is {codec.upper()}, a codec the video reader (decord) cannot decode",
                    f"re-encode it to H.264: {REENCODE_FIX}")
        if codec is None:
            return ("it holds no readable video stream: audio only, or cut short?",
                    "give a file with a video track (mp4, mov, mkv, webm), or copy it again if it was cut short")
    if unopened:
        return "ffmpeg does not recognise its format", VIDEO_FIX
    if "broken metadata" in text:
        return "its duration and frame count cannot be read", RECOPY_FIX
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    first = re.sub(r"(\[[\d:]+\] \S+?:\d+: )+", "", first)  # decord's "[time] file.cc:line: " prefixes
    return first[:100], VIDEO_FIX


def _ffmpeg_probe(path: Path) -> str:
    """What the bundled ffmpeg says of ``path`` (``ffmpeg -i``'s log: its streams and any damage)."""
    import imageio_ffmpeg

    try:
        probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                               capture_output=True, text=True, errors="replace", timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return probe.stderr


def _video_codec(probe: str) -> str | None:
    """The codec of the first video stream in ffmpeg's ``probe`` log, as ffmpeg names it ("none" when
    it cannot tell; None when there is no video stream): why decord, built with fewer decoders than
    ffmpeg, found no stream it could read."""
    for line in probe.splitlines():  # cover art in an audio file is no video
        found = re.search(r"Stream #\S+.*?: Video: (\w+)", line)
        if found and "attached pic" not in line:
            return found.group(1)
    return None


def _head(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(4096)


def _sniff_path(path: Path) -> str | None:
    try:
        return sniff_file(_head(path))
    except OSError:
        return None


@contextlib.contextmanager
def _decord_errors(path: Path, problem: str) -> Iterator[None]:
    """Turn decord's failures into ``VideoError("<problem> (<reason>)", fix)``."""
    try:
        yield
    except (decord.DECORDError, RuntimeError, IndexError) as exc:
        reason, fix = _reason(exc, [], path)
        raise VideoError(f"{problem} ({reason})", fix) from exc


def _open(path: Path, **size: int) -> decord.VideoReader:
    """A decord reader for ``path``; its C++ error log explains a failure instead of reaching stderr."""
    failure: BaseException
    with native_stderr() as log:
        try:
            return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1, **size)
        except (decord.DECORDError, RuntimeError, AssertionError) as exc:  # it asserts frames > 0
            failure = exc
    reason, fix = _reason(failure, log, path)
    raise VideoError(f"cannot read {path.name} as a video ({reason})", fix) from failure


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame count, frame rate and size of a clip, decoding only its first frame."""
    p = check_video_path(path)
    reader = _open(p)
    num_frames = len(reader)
    if num_frames == 0:
        raise VideoError(f"{p.name} holds no video frames", VIDEO_FIX)
    with _decord_errors(p, f"cannot decode the first frame of {p.name}"):
        height, width = reader[0].shape[:2]
        fps = float(reader.get_avg_fps() or 0.0)
    if not math.isfinite(fps) or fps <= 0:
        fps = 8.0
    return VideoInfo(str(p), num_frames, fps, int(width), int(height))


def select_frame_indices(num_frames: int, skip_frames_start: int, skip_frames_end: int,
                         max_num_frames: int, frame_sample_step: int | None,
                         family: ModelFamily = FIVE_B) -> tuple[list[int], int]:
    """The frame numbers an edit keeps, and the stride used.

    Keep [skip_start, len - skip_end); if more than ``max_num_frames`` remain, take every
    ``frame_sample_step``-th (default: remaining // max_num_frames, the most frames spread over the
    range); cut to ``max_num_frames``; then drop trailing frames to the largest count of ``family``'s
    frame rule (8k+1 for CogVideoX-5B: the counts its VAE decodes back to themselves, see
    engine.params.FRAME_MULTIPLE; engine.families). Raises VideoError when too few remain.
    """
    if skip_frames_start + skip_frames_end >= num_frames and num_frames >= MIN_FRAMES:
        raise VideoError(
            f"skip_frames_start ({skip_frames_start}) + skip_frames_end ({skip_frames_end}) drop all "
            f"{num_frames} frames of the clip; an edit needs at least {MIN_FRAMES}",
            f"lower skip_frames_start/skip_frames_end so that at least {MIN_FRAMES} frames remain")
    start = min(skip_frames_start, num_frames)
    end = max(start, num_frames - skip_frames_end)
    available = end - start
    stride = 1
    if available > max_num_frames:
        stride = frame_sample_step or max(1, available // max_num_frames)
    indices = list(range(start, end, stride))[:max_num_frames]
    keep = family.frame_count(len(indices))
    if keep < MIN_FRAMES:
        raise VideoError(
            f"only {len(indices)} usable frame(s) of {num_frames} after skips and stride; "
            f"an edit needs at least {family.min_frames}"
            + (f" ({family.name} takes {family.frame_rule()})"
               if family.frame_multiple != FIVE_B.frame_multiple or family.fixed_size else ""),
            "use a longer clip, or lower skip_frames_start/skip_frames_end/frame_sample_step")
    return indices[:keep], stride


def plan_frames(info: VideoInfo, params: EditParams, family: ModelFamily = FIVE_B) -> FramePlan:
    """Decide frames, output fps, decode size and crop for ``info`` under ``params`` (its empty
    frames/height/width: ``family``'s own, engine.families.resolve_params)."""
    params = resolve_params(params, family, (info.height, info.width))
    indices, stride = select_frame_indices(info.num_frames, params.skip_frames_start,
                                           params.skip_frames_end, params.max_num_frames,
                                           params.frame_sample_step, family)
    size = (params.height, params.width)
    decode, crop, picture = fit_frame(info.height, info.width, *size, params.resize)
    fps = params.fps if params.fps else auto_fps(info.fps, stride)
    return FramePlan(tuple(indices), stride, float(fps), decode, crop, size,
                     picture if params.resize == "pad" else None)


def auto_fps(source_fps: float, stride: int) -> float:
    """The source's fps over the stride, held within the fps parameter's own range (a broken or
    extreme source rate would otherwise give a 9-frame video lasting minutes, or a 200 fps one)."""
    spec = SPECS_BY_NAME["fps"]
    return min(max(source_fps / stride, spec.low), spec.high)


def audio_cut(info: VideoInfo, plan: FramePlan) -> AudioCut | None:
    """The stretch of ``info``'s audio that the planned frames cover (None: the clip has no sound).

    Frame ``i`` of the source starts at ``i / fps``; the kept frames span ``count * stride`` source
    frames from the first kept one, and the result videos play ``count`` frames at ``plan.fps``.
    """
    if not _has_audio(Path(info.path)):
        return None
    return AudioCut(Path(info.path), start=plan.indices[0] / info.fps,
                    span=plan.num_frames * plan.stride / info.fps, duration=plan.num_frames / plan.fps)


def _has_audio(path: Path) -> bool:
    return any(re.search(r"Stream #\S+.*?: Audio: ", line) for line in _ffmpeg_probe(path).splitlines())


def read_frames(info: VideoInfo, plan: FramePlan, warn: Callable[[str], None] | None = None) -> torch.Tensor:
    """Decode only the planned frames, resized while decoding (memory stays bounded for 4K clips).

    Returns float32 frames scaled to [-1, 1], shaped [F, C, H, W]. ``warn`` hears of frames decord
    could not decode and repeated from a neighbour (a damaged clip that still plays).
    """
    dec_h, dec_w = plan.decode_size
    path = Path(info.path)
    reader = _open(path, height=dec_h, width=dec_w)
    with native_stderr() as log, _decord_errors(path, f"cannot decode the frames of {path.name}"):
        batch = reader.get_batch(list(plan.indices)).asnumpy()  # [F, H, W, C] uint8
    if warn is not None and any(RECOVERED in line for line in log):
        warn(f"some frames of {path.name} could not be decoded and repeat a neighbouring frame (a damaged "
             f"clip?) — the edit goes on; for a clean result re-encode it: {REENCODE_FIX}")
    if batch.shape[0] != plan.num_frames:
        raise VideoError(f"{Path(info.path).name} returned {batch.shape[0]} of {plan.num_frames} frames "
                         "(truncated?)", "re-encode or re-copy the video")
    top, left, h, w = plan.crop
    batch = np.ascontiguousarray(batch[:, top:top + h, left:left + w, :3])
    frames = torch.from_numpy(batch).permute(0, 3, 1, 2).float()  # [F, C, h, w]
    frames = frames.div_(127.5).sub_(1.0)  # in place: no second float copy of the clip
    return frames if plan.picture is None else place_picture(frames, *plan.size, plan.picture)  # [F, C, H, W]


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes: the identity of a source for caching and history."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_single_frame(path: str | os.PathLike, index: int) -> np.ndarray:
    """Frame ``index`` (clamped to the clip) of a video as [H, W, 3] uint8: for previews."""
    reader = _open(check_video_path(path))
    with native_stderr():
        return reader[max(0, min(index, len(reader) - 1))].asnumpy()
