"""Deliverable results (issue #18): the source's sound, cut to the frames kept, in the original, the
reconstruction and the edited MP4 (with skips, strides and a fixed fps); a silent clip stays silent;
``--no-audio`` opts out; result files are readable by the other users of the box (the umask's modes).

A real clip with a real audio track (made with the bundled ffmpeg): one second of silence, then a
440 Hz tone, so where the cut starts is heard in the result. Audio is measured by decoding it with
the same ffmpeg."""

from __future__ import annotations

import os
import stat
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest

from engine.pipeline.artifacts import Variant
from engine.pipeline.edit import run_edit

RATE = 16000
VIDEOS = ("original.mp4", "reconstruction.mp4", "edited.mp4")


@pytest.fixture(scope="module")
def clip_with_sound(tmp_path_factory, ffmpeg):
    """48 frames at 16 fps (3 s); silent for its first second, then a 440 Hz tone."""
    clip = tmp_path_factory.mktemp("sound") / "talk.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=192x128:rate=16", "-f", "lavfi",
           "-i", f"aevalsrc=if(gte(t\\,1)\\,0.5*sin(2*PI*440*t)\\,0):s={RATE}", "-t", "3", "-frames:v", "48",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", clip)
    return clip


def audio_of(video) -> np.ndarray | None:
    """The video's audio as mono float samples at RATE Hz (None: it has no audio stream)."""
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    probe = subprocess.run([exe, "-hide_banner", "-nostdin", "-i", str(video)], capture_output=True, text=True)
    if " Audio: " not in probe.stderr:
        return None
    done = subprocess.run([exe, "-nostdin", "-v", "error", "-i", str(video), "-map", "0:a:0", "-f", "s16le",
                           "-ac", "1", "-ar", str(RATE), "-"], capture_output=True, check=True)
    return np.frombuffer(done.stdout, dtype=np.int16).astype(np.float32) / 32768


def loudness(samples: np.ndarray, start: float, end: float) -> float:
    part = samples[int(start * RATE):int(end * RATE)]
    return float(np.sqrt(np.mean(part ** 2)))


def _edit(model, clip, params, folder):
    (result,) = run_edit(model, clip, [Variant("job", "a cat", params.seed)], params, folder)
    return result.output_dir


@pytest.mark.parametrize("overrides,duration,tone_from", [
    # 48 frames, 9 kept: every 5th (0, 5, ... 40), played at 16/5 fps: the source's first 2.81 s.
    ({}, 9 * 5 / 16, 1.0),
    # From frame 16 (1 s in), every frame: 0.56 s of tone from the start.
    ({"skip_frames_start": 16, "frame_sample_step": 1}, 9 / 16, 0.0),
    # From frame 12 (0.75 s), every frame, at a fixed 8 fps: half speed, so 1.125 s; the tone starts
    # 0.25 source seconds in, 0.5 s into the result.
    ({"skip_frames_start": 12, "frame_sample_step": 1, "fps": 8}, 9 / 8, 0.5),
    # Every 2nd frame from frame 4, dropping the last 20: 9 frames over 18 source frames.
    ({"skip_frames_start": 4, "skip_frames_end": 20, "frame_sample_step": 2}, 9 * 2 / 16, 0.75),
], ids=["stride", "skip-start", "fixed-fps", "skips-and-stride"])
def test_every_video_carries_the_sound_of_the_frames_kept(tiny_model, tiny_params, clip_with_sound, tmp_path,
                                                          overrides, duration, tone_from):
    folder = _edit(tiny_model, clip_with_sound, tiny_params(**overrides), tmp_path)
    for name in VIDEOS:
        sound = audio_of(folder / name)
        assert sound is not None, name
        assert len(sound) / RATE == pytest.approx(duration, abs=0.05), name  # as long as the frames last
        if tone_from > 0.1:
            assert loudness(sound, 0.0, tone_from - 0.1) < 0.01, name  # the silent second, where it was
        assert loudness(sound, tone_from + 0.1, duration - 0.05) > 0.2, name  # the tone after it


def test_a_silent_clip_stays_silent_and_no_audio_opts_out(tiny_model, tiny_params, clip_path, clip_with_sound,
                                                          tmp_path):
    silent = _edit(tiny_model, clip_path, tiny_params(), tmp_path / "silent")
    opted_out = _edit(tiny_model, clip_with_sound, tiny_params(audio=False), tmp_path / "opted-out")
    for folder in (silent, opted_out):
        for name in VIDEOS:
            assert audio_of(folder / name) is None


def test_the_no_audio_flag_is_generated_from_the_parameter():
    from tui.cli import build_parser, collected_params

    args = build_parser().parse_args(["edit", "clip.mp4", "--prompt", "a cat", "--no-audio"])
    assert collected_params(args) == {"audio": False}
    assert "--no-audio" in build_parser()._subparsers._group_actions[0].choices["edit"].format_help()


@pytest.mark.parametrize("umask,file_mode,folder_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_result_files_have_the_modes_the_umask_gives(tiny_model, tiny_params, clip_path, tmp_path, umask,
                                                     file_mode, folder_mode):
    previous = os.umask(umask)
    try:
        folder = _edit(tiny_model, clip_path, tiny_params(), tmp_path)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(folder.stat().st_mode) == folder_mode
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert modes == dict.fromkeys([*VIDEOS, "contact_sheet.png", "job.json"], file_mode)
