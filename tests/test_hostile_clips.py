"""Unusual but valid clips are handled correctly: portrait, odd sizes, grayscale, an audio track,
a variable frame rate, 4K (bounded memory), and a prompt longer than the text encoder takes.

Every clip is generated here with the bundled ffmpeg or the engine's writer; nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from engine.output.video import write_mp4
from engine.params import build_params
from engine.pipeline.frames import VideoInfo, plan_frames, probe_video, read_frames

SMALL = {"height": 64, "width": 96, "max_num_frames": 9}
TINY_FLAGS = ["--height", "64", "--width", "96", "--max-num-frames", "9", "--num-inference-steps", "3",
              "--device", "cpu"]
# ~300 characters: the tiny tokenizer is character-level, so well past the encoder's 226 tokens.
LONG_PROMPT = ("a watercolor painting of a quiet street at dusk, paper lanterns over the doors, a cyclist "
               "passing a bakery, wet cobblestones that mirror the warm windows, soft brush strokes, muted "
               "blues and ochres, a cat asleep on a windowsill, a faint moon above the rooftops, pigment "
               "pooling at the edges of every shape")


def _read(path: Path, **params) -> tuple[VideoInfo, object, np.ndarray]:
    """Probe, plan and decode ``path``; frames as [F, H, W, C] floats in [-1, 1]."""
    info = probe_video(path)
    plan = plan_frames(info, build_params({**SMALL, **params}))
    frames = read_frames(info, plan)
    assert tuple(frames.shape) == (plan.num_frames, 3, plan.crop[2], plan.crop[3])
    return info, plan, frames.permute(0, 2, 3, 1).numpy()


def _disc_box(frame: np.ndarray) -> tuple[int, int, float, float]:
    """Height, width and centre (row, column) of the bright disc in one [H, W, C] frame."""
    rows, cols = np.nonzero(frame.mean(axis=-1) > 0.0)
    return (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1, rows.mean(), cols.mean())


def _portrait_clip(path: Path) -> Path:
    """9 frames of 1080x1920 (portrait): a white disc of radius 300 centred on dark grey."""
    ys, xs = np.mgrid[0:1920, 0:1080]
    disc = (ys - 960) ** 2 + (xs - 540) ** 2 <= 300 ** 2
    frame = np.where(disc[..., None], 255, 40).astype(np.uint8).repeat(3, axis=-1)
    write_mp4(path, np.stack([frame] * 9), fps=8)
    return path


@pytest.fixture(scope="module")
def portrait_clip(tmp_path_factory) -> Path:
    return _portrait_clip(tmp_path_factory.mktemp("portrait") / "portrait.mp4")


@pytest.fixture(scope="module")
def long_prompt_edit(tmp_path_factory, tiny_model_path, portrait_clip):
    """One real headless edit, shared: the portrait clip under a prompt longer than 226 tokens."""
    from tui.cli import main

    out = tmp_path_factory.mktemp("edit-out")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["edit", str(portrait_clip), "--prompt", LONG_PROMPT, "--output-dir", str(out), "--model",
                     str(tiny_model_path), *TINY_FLAGS])
    return code, stdout.getvalue(), stderr.getvalue(), out


def test_portrait_1080x1920_is_cropped_not_stretched(portrait_clip, long_prompt_edit):
    info, plan, frames = _read(portrait_clip)
    assert (info.width, info.height) == (1080, 1920)
    height, width, row, col = _disc_box(frames[0])
    assert abs(height - width) <= 2, f"the disc is {width}x{height}: stretched"
    assert width == pytest.approx(600 * 96 / 1080, abs=3)  # scaled to cover the width, not squeezed
    assert (row, col) == (pytest.approx(31.5, abs=1.5), pytest.approx(47.5, abs=1.5))  # centre kept
    squeezed = _disc_box(_read(portrait_clip, resize="stretch")[2][0])
    assert squeezed[1] > 2 * squeezed[0], "control: stretching must flatten the disc"
    # The same geometry in the result: original.mp4 is the source exactly as the model saw it.
    code, _, err, out = long_prompt_edit
    assert code == 0, err
    (folder,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    _, _, original = _read(folder / "original.mp4")
    height, width, _, _ = _disc_box(original[0])
    assert abs(height - width) <= 2


def test_prompt_longer_than_the_text_encoder_takes(long_prompt_edit, tiny_model):
    from engine.events import EditWarning
    from engine.pipeline.edit import Editor

    warnings = []
    Editor(tiny_model, emit=warnings.append).encode_prompts([LONG_PROMPT], ("job",))
    (warning,) = [w for w in warnings if isinstance(w, EditWarning)]
    assert "the text encoder keeps the first 226" in warning.message
    assert "is where it stops" in warning.message
    stop = warning.message.split(": '", 1)[1].split("' is where", 1)[0]
    assert stop in LONG_PROMPT and LONG_PROMPT.index(stop) + len(stop) < len(LONG_PROMPT)
    code, _, err, _ = long_prompt_edit  # and the headless command shows it
    assert code == 0, err
    flat = " ".join(err.split())
    assert "warning: prompt is" in flat and "the text encoder keeps the first 226" in flat


def test_odd_dimensions_201x133(ffmpeg, tmp_path):
    clip = tmp_path / "odd.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=208x144:rate=16", "-frames:v", "12", "-vf",
           "scale=201:133,setsar=1", "-c:v", "libx264", "-pix_fmt", "yuv444p", clip)
    info, plan, frames = _read(clip)
    assert (info.width, info.height) == (201, 133)
    dec_h, dec_w = plan.decode_size
    assert dec_h >= 64 and dec_w >= 96 and dec_w / dec_h == pytest.approx(201 / 133, rel=0.02)
    assert frames.std() > 0.1
    assert tuple(_read(clip, resize="stretch")[2].shape) == (9, 64, 96, 3)


def test_grayscale_clip(ffmpeg, tmp_path):
    clip = tmp_path / "gray.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=192x128:rate=16", "-frames:v", "12", "-c:v", "libx264",
           "-pix_fmt", "gray", clip)
    _, _, frames = _read(clip)
    assert frames.shape[-1] == 3  # three channels for the VAE, all equal
    assert np.abs(frames[..., 0] - frames[..., 1]).max() < 0.02
    assert np.abs(frames[..., 0] - frames[..., 2]).max() < 0.02
    assert frames.std() > 0.1


def test_clip_with_an_audio_track(ffmpeg, tmp_path):
    clip = tmp_path / "with-audio.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=192x128:rate=16", "-f", "lavfi", "-i",
           "sine=frequency=440:sample_rate=16000", "-frames:v", "12", "-t", "0.75", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", clip)
    info, plan, frames = _read(clip)
    assert (info.num_frames, info.fps) == (12, pytest.approx(16))
    assert plan.num_frames == 9 and frames.std() > 0.1


def test_variable_frame_rate_clip(ffmpeg, tmp_path):
    """1 s at 8 fps then 1 s at 30 fps: the reported and the output frame rates stay finite and sane."""
    clip = tmp_path / "vfr.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=192x128:rate=8:duration=1", "-f", "lavfi", "-i",
           "testsrc2=size=192x128:rate=30:duration=1", "-filter_complex", "[0:v][1:v]concat=n=2:v=1[v]",
           "-map", "[v]", "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p", clip)
    info, plan, frames = _read(clip)
    assert 30 <= info.num_frames <= 40
    assert math.isfinite(info.fps) and 8 <= info.fps <= 30
    assert math.isfinite(plan.fps) and 1 <= plan.fps <= info.fps
    assert frames.std() > 0.1
    written = tmp_path / "out.mp4"
    write_mp4(written, ((frames + 1) * 127.5).round().astype(np.uint8), plan.fps)
    assert probe_video(written).fps == pytest.approx(plan.fps, rel=0.01)


MEASURE = textwrap.dedent("""
    import json, sys
    from engine.pipeline.frames import plan_frames, probe_video, read_frames
    from engine.params import build_params

    def status(key):
        with open("/proc/self/status") as handle:
            return next(int(l.split()[1]) * 1024 for l in handle if l.startswith(key + ":"))

    info = probe_video(sys.argv[1])
    plan = plan_frames(info, build_params({"height": 64, "width": 96, "max_num_frames": 9}))
    try:  # reset the peak so it measures read_frames alone (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass
    before = status("VmRSS")
    frames = read_frames(info, plan)
    print(json.dumps({"growth": status("VmHWM") - before, "frames": info.num_frames,
                      "size": [info.width, info.height], "indices": list(plan.indices),
                      "shape": list(frames.shape)}))
""")


@pytest.mark.slow
def test_long_4k_clip_decodes_only_the_sampled_frames(ffmpeg, tmp_path):
    """Peak RSS (VmHWM, which sees decord's C allocations) grows by far less than the decoded clip."""
    clip = tmp_path / "4k.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=3840x2160:rate=30", "-frames:v", "120", "-c:v", "libx264",
           "-preset", "ultrafast", "-crf", "40", "-pix_fmt", "yuv420p", clip)
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(clip)], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["size"] == [3840, 2160] and result["frames"] == 120
    assert result["shape"] == [9, 3, 64, 96] and len(result["indices"]) == 9
    every_frame = 120 * 3840 * 2160 * 3  # bytes of the whole clip decoded at 4K (~3 GB)
    assert result["growth"] < 256 * 2**20, f"read_frames grew the peak RSS by {result['growth'] / 2**20:.0f} MiB"
    assert result["growth"] < every_frame / 10


@pytest.mark.parametrize("clip_frames", [9, 16, 21, 40])
def test_every_selected_frame_count_decodes_back_to_itself(tiny_model, clip_frames):
    """What the frame selection keeps must survive the VAE: encode, then decode to as many frames."""
    import torch

    from engine.pipeline.frames import select_frame_indices
    from engine.pipeline.vae import decode_latents, encode_frames

    indices, _ = select_frame_indices(clip_frames, 0, 0, 49, None)
    frames = torch.zeros(len(indices), 3, 64, 96)
    decoded = decode_latents(tiny_model, encode_frames(tiny_model, frames))
    assert decoded.shape[0] == len(indices)
