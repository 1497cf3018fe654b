"""ffmpeg under hostile conditions: a full disk (a real 3 MiB tmpfs) is told as such, and ffmpeg's own
log never reaches the terminal (the TUI draws there)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from engine.errors import OutputError

# -- ffmpeg on a full disk (items 13 and 14) ------------------------------------------------------

def test_ffmpeg_on_a_full_disk_says_disk_full_and_keeps_its_own_log_quiet(capfd, tmpfs):
    small_disk = tmpfs("size=3m")
    from engine.output.video import write_mp4

    noise = np.random.default_rng(0).integers(0, 255, (72, 256, 256, 3), dtype=np.uint8)  # ~5 MiB of H.264
    with pytest.raises(OutputError) as caught:
        write_mp4(small_disk / "edited.mp4", noise, 8.0)
    _, err = capfd.readouterr()
    assert str(caught.value).startswith(f"disk full while writing {small_disk / 'edited.mp4'} — free disk space")
    assert "Error writing trailer" not in err and "No space left" not in err, err
    assert os.listdir(small_disk) == []  # no partial file left


def test_ffmpeg_failing_otherwise_names_its_own_reason(monkeypatch, tmp_path):
    from engine.output import video

    real = video._ffmpeg_command
    monkeypatch.setattr(video, "_ffmpeg_command", lambda *a: [*real(*a)[:-1], "-vcodec", "no-such-codec", real(*a)[-1]])
    with pytest.raises(OutputError, match=r"ffmpeg could not write x\.mp4 \(.*Encoder not found"):
        video.write_mp4(tmp_path / "x.mp4", np.zeros((9, 64, 96, 3), np.uint8), 8.0)
