"""The source's sound for the result videos: the stretch of its audio track that the kept frames cover.

An edit keeps frames ``skip_frames_start`` onwards, every ``stride``-th; the videos play them at the
output fps. :func:`cut_audio` takes the source seconds those frames span, stretches them in tempo
(pitch kept) when the output fps does not play them at their own speed (a fixed ``fps``, or a rate
held within 1..120), pads silence where the track ends early, and writes AAC lasting exactly as long
as the videos; :func:`engine.output.video.write_mp4` muxes it in without re-encoding.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg

from ..errors import OutputError


@dataclass(frozen=True)
class AudioCut:
    """Which seconds of ``source``'s first audio track go with the result videos."""

    source: Path
    start: float  # seconds into the source: its first kept frame
    span: float  # source seconds the kept frames cover
    duration: float  # seconds the result videos last (their frames at the output fps)

    @property
    def tempo(self) -> float:
        """How much faster the audio plays than in the source (1: as it was)."""
        return self.span / self.duration


def atempo_chain(tempo: float) -> list[str]:
    """ffmpeg ``atempo`` filters whose product is ``tempo`` (each within 0.5..2, which every ffmpeg
    accepts); none when the tempo is 1."""
    if abs(tempo - 1.0) < 1e-4:
        return []
    filters = []
    while tempo > 2.0:
        filters.append("atempo=2.0")
        tempo /= 2.0
    while tempo < 0.5:
        filters.append("atempo=0.5")
        tempo /= 0.5
    return [*filters, f"atempo={tempo:.6f}"]


def cut_audio(cut: AudioCut, target: Path) -> None:
    """Write ``cut`` as AAC (an .m4a) at ``target``; OutputError with ffmpeg's last line when it fails."""
    filters = ",".join([*atempo_chain(cut.tempo), "apad"])  # silence where the track ends before the frames
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-nostdin", "-v", "error",
               "-ss", f"{cut.start:.6f}", "-t", f"{cut.span:.6f}", "-i", str(cut.source),
               "-map", "0:a:0", "-vn", "-af", filters, "-t", f"{cut.duration:.6f}",
               "-c:a", "aac", "-b:a", "160k", str(target)]
    with tempfile.TemporaryFile() as log:
        # Its own session: a Ctrl-C meant for the app does not cut it short.
        code = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                              start_new_session=True).returncode
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    if code != 0 or not target.is_file() or target.stat().st_size == 0:
        last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), f"exit status {code}")
        raise OutputError(f"cannot cut the source's audio ({last[:120]})", "the videos are written without sound")
