"""Frame selection and shaping: skips, stride, cap, 8k+1, crop vs stretch, too-short clips."""

from __future__ import annotations

import pytest

from engine.errors import VideoError
from engine.params import build_params
from engine.pipeline.frames import VideoInfo, plan_frames, probe_video, read_frames, select_frame_indices


@pytest.mark.parametrize(
    "num_frames, skip_start, skip_end, max_frames, step, expected_count, expected_first, expected_stride",
    [
        (49, 0, 0, 49, None, 49, 0, 1),  # exactly the cap, already 8k+1
        (50, 0, 0, 49, None, 49, 0, 1),  # one over: stride 1, cut to the cap
        (40, 0, 0, 49, None, 33, 0, 1),  # under the cap: trimmed to 8k+1
        (100, 0, 0, 49, None, 49, 0, 2),  # default stride spreads the cap over the clip
        (147, 0, 0, 49, None, 49, 0, 3),
        (100, 0, 0, 49, 3, 33, 0, 3),  # explicit stride: 34 frames -> 33
        (100, 10, 20, 49, None, 49, 10, 1),  # 70 left -> stride 70 // 49 = 1, cut to 49
        (60, 5, 5, 49, None, 49, 5, 1),
        (20, 3, 4, 81, None, 9, 3, 1),  # 13 left -> 9
        (16, 0, 0, 81, None, 9, 0, 1),  # 16 -> 9
        (9, 0, 0, 49, None, 9, 0, 1),  # the minimum
        (300, 0, 0, 81, None, 81, 0, 3),
        (200, 0, 0, 45, None, 41, 0, 4),  # a cap that is not 8k+1: 45 -> 41
    ],
)
def test_select_frame_indices(num_frames, skip_start, skip_end, max_frames, step, expected_count,
                              expected_first, expected_stride):
    indices, stride = select_frame_indices(num_frames, skip_start, skip_end, max_frames, step)
    assert len(indices) == expected_count
    assert (len(indices) - 1) % 8 == 0
    assert indices[0] == expected_first
    assert stride == expected_stride
    assert all(b - a == stride for a, b in zip(indices, indices[1:], strict=False))
    assert indices[-1] < num_frames - skip_end


@pytest.mark.parametrize("num_frames, skip_start, skip_end", [(3, 0, 0), (8, 0, 0), (12, 6, 0), (12, 0, 8),
                                                              (12, 20, 0), (14, 3, 3), (1, 0, 0)])
def test_too_few_frames_is_an_error_that_says_what_to_do(num_frames, skip_start, skip_end):
    with pytest.raises(VideoError) as info:
        select_frame_indices(num_frames, skip_start, skip_end, 49, None)
    assert "at least 9" in str(info.value)
    assert "skip_frames" in info.value.fix


def test_crop_keeps_aspect_and_stretch_squeezes():
    portrait = VideoInfo("x.mp4", 60, 30.0, 1080, 1920)
    crop = plan_frames(portrait, build_params({"resize": "crop"}))
    dec_h, dec_w = crop.decode_size
    assert dec_w == 720 and dec_h == 1280  # scaled to cover 480x720 without distortion
    top, left, h, w = crop.crop
    assert (h, w) == (480, 720) and left == 0 and top == (1280 - 480) // 2
    stretch = plan_frames(portrait, build_params({"resize": "stretch"}))
    assert stretch.decode_size == (480, 720) and stretch.crop == (0, 0, 480, 720)


def test_output_fps_follows_the_stride_unless_set():
    info = VideoInfo("x.mp4", 200, 30.0, 720, 480)
    plan = plan_frames(info, build_params({"max_num_frames": 49}))
    assert plan.stride == 4 and plan.fps == pytest.approx(7.5)
    assert plan_frames(info, build_params({"fps": 12})).fps == 12


def test_read_frames_decodes_only_the_plan_scaled_to_minus_one_one(make_clip):
    path = make_clip(40, height=128, width=192, fps=16)
    info = probe_video(path)
    assert (info.num_frames, info.width, info.height) == (40, 192, 128)
    assert info.fps == pytest.approx(16, rel=0.01)
    plan = plan_frames(info, build_params({"height": 64, "width": 96, "max_num_frames": 17}))
    frames = read_frames(info, plan)
    assert tuple(frames.shape) == (17, 3, 64, 96)
    assert frames.min() >= -1.0 and frames.max() <= 1.0
    assert frames.std() > 0.1  # real picture content, not a constant


def test_portrait_clip_is_cropped_not_stretched(make_clip):
    # A tall clip: the red disc must stay round after the crop (its width ~ its height).
    path = make_clip(9, height=192, width=96, fps=8)
    info = probe_video(path)
    frames = read_frames(info, plan_frames(info, build_params({"height": 64, "width": 96, "max_num_frames": 9})))
    assert tuple(frames.shape) == (9, 3, 64, 96)
