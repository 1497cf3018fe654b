"""The automatic output fps (the source's over the stride) stays within the fps parameter's 1..120,
for real clips at extreme rates and for rates a broken file reports."""

from __future__ import annotations

import pytest

# -- the automatic output fps (item 15) -----------------------------------------------------------

@pytest.mark.parametrize("rate, expected", [("1/78", 1.0), ("1000", 120.0)])
def test_the_automatic_fps_stays_within_the_fps_parameters_range(ffmpeg, tmp_path, rate, expected):
    from engine.api import build_params, describe_source

    clip = tmp_path / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=25", "-frames:v", "12", "-r", rate, "-c:v", "libx264",
           "-pix_fmt", "yuv420p", clip)
    summary = describe_source(str(clip), build_params({"max_num_frames": 9}))
    assert summary.output_fps == expected, summary


def test_a_timescale_zero_fps_stays_within_range():
    from engine.params import EditParams
    from engine.pipeline.frames import VideoInfo, plan_frames

    for fps in (1e-9, 0.0128, 1000.0, 1e9):
        assert 1.0 <= plan_frames(VideoInfo("x.mp4", 40, fps, 96, 64), EditParams(max_num_frames=9)).fps <= 120.0
