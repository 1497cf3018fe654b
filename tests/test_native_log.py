"""decord's own log lines never reach the terminal (issue #20, item 14): "frames corrupted and
recovered" becomes the edit's warning; everything else written to stderr meanwhile (the TUI's
drawing) passes at once, not after the decode."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from engine.pipeline.native_log import native_stderr

ROOT = Path(__file__).resolve().parent.parent


def test_a_clip_with_undecodable_frames_warns_once_and_prints_nothing(ffmpeg, tmp_path):
    """Its first keyframe lost (a damaged copy): decord repeats neighbouring frames and logs it."""
    whole, damaged = tmp_path / "whole.mp4", tmp_path / "damaged.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=192x128:rate=16", "-frames:v", "48", "-g", "16", "-pix_fmt",
           "yuv420p", whole)
    ffmpeg("-i", whole, "-c", "copy", "-bsf:v", "noise=drop=eq(n\\,0)", damaged)
    # A fresh process: decord reads its warning threshold once, when it is first imported.
    code = ("import sys; from engine.params import build_params; "
            "from engine.pipeline.frames import plan_frames, probe_video, read_frames; "
            "info = probe_video(sys.argv[1]); "
            "plan = plan_frames(info, build_params({'height': 64, 'width': 96, 'max_num_frames': 41, "
            "'frame_sample_step': 1})); "
            "frames = read_frames(info, plan, warn=lambda m: print('WARNING', m)); print(tuple(frames.shape))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DECORD_")}
    done = subprocess.run([sys.executable, "-c", code, str(damaged)], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env=env)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr
    assert lines[-1] == "(41, 3, 64, 96)"
    warnings = [line for line in lines if line.startswith("WARNING")]
    assert len(warnings) == 1 and "some frames of damaged.mp4 could not be decoded" in warnings[0]
    assert "re-encode" in warnings[0]
    assert "corrupted" not in done.stderr and "video_reader.cc" not in done.stderr, done.stderr


def test_other_output_passes_while_decords_lines_are_kept(capfd, tmp_path):
    import decord

    broken = tmp_path / "notes.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 200)  # an MP4 header and nothing else
    with native_stderr() as log:
        os.write(2, b"\x1b[2Jthe app draws\n")  # the TUI's own output, from this process
        time.sleep(0.3)
        assert "the app draws" in capfd.readouterr().err  # through at once, not after the block
        try:
            decord.VideoReader(str(broken))
        except Exception:
            pass
        os.write(2, b"[partial line from the app")
        os.write(2, b", ended]\n")
    err = capfd.readouterr().err
    assert "[partial line from the app, ended]" in err
    assert log and all(line.startswith("[") for line in log)  # decord's "ERROR opening" and ffmpeg's own
    assert not any(line in err for line in log)


def test_a_malformed_decord_setting_in_the_environment_does_not_abort_the_process(clip_path):
    """decord reads DECORD_* with C++'s stof/stoi at load: an empty value killed the process (SIGABRT)."""
    env = {**os.environ, "DECORD_DUPLICATE_WARNING_THRESHOLD": "", "DECORD_EOF_RETRY_MAX": "lots",
           "DECORD_AVIO_BUFFER_SIZE": "99999999999999"}
    code = "import sys; from engine.pipeline.frames import probe_video; print(probe_video(sys.argv[1]).num_frames)"
    done = subprocess.run([sys.executable, "-c", code, str(clip_path)], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "40", done.stderr
