"""A clip cut short anywhere is told as "truncated or corrupt" in one line: not decord's internal
"Check failed: avfilter_graph_create_filter" or a codec called NONE (issue #15). Real MP4s, cut."""

from __future__ import annotations

import pytest

from engine.api import EditError, build_params, describe_source


@pytest.fixture(scope="module")
def whole_clips(tmp_path_factory, ffmpeg):
    folder = tmp_path_factory.mktemp("whole")
    clips = {}
    for faststart in (True, False):
        clips[faststart] = folder / f"whole-{faststart}.mp4"
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=192x128:rate=16", "-frames:v", "40", "-pix_fmt", "yuv420p",
               *(["-movflags", "+faststart"] if faststart else []), clips[faststart])
    return clips


# Where the cut falls: inside the index (moov), in the first packets, mid-file, in the trailing index.
@pytest.mark.parametrize("faststart,fraction", [(True, 0.002), (True, 0.01), (True, 0.05), (True, 0.1),
                                                (True, 0.5), (False, 0.01), (False, 0.5), (False, 0.97)])
def test_a_clip_cut_short_is_truncated_or_corrupt(whole_clips, tmp_path, faststart, fraction):
    data = whole_clips[faststart].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * fraction)])
    params = build_params({"height": 64, "width": 96, "max_num_frames": 9})
    with pytest.raises(EditError) as info:
        describe_source(str(cut), params)
        from engine.pipeline.frames import plan_frames, probe_video, read_frames  # the frames themselves

        info_ = probe_video(cut)
        read_frames(info_, plan_frames(info_, params))
    assert str(info.value) == ("cannot read cut.mp4 as a video (the file is truncated or corrupt) — copy or "
                               "download the video again (it is incomplete or damaged), or re-encode it with ffmpeg")
