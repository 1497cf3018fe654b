"""The headless command: bad input exits 2 with one line naming the problem and the fix."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import decord
import numpy as np
import pytest
import torch

from engine.demo import DEMO_NOTICE, DEMO_SCENE_SEED
from engine.pipeline.frames import read_single_frame
from engine.quality.measure import score_edit
from engine.toy.world import WORLD_FRAMES, WORLD_SIZE, parse_prompt, sample_scene
from tui.cli import main

TINY_FLAGS = ["--height", "64", "--width", "96", "--max-num-frames", "9", "--num-inference-steps", "4",
              "--device", "cpu"]


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_missing_video(capsys, tiny_model_path, tmp_path):
    code, _, err = _run(capsys, "edit", str(tmp_path / "nope.mp4"), "--prompt", "x", "--model",
                        str(tiny_model_path), *TINY_FLAGS)
    assert code == 2
    assert "video not found" in _one_line_error(err)


def test_text_file_named_mp4(capsys, tiny_model_path, tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 20)
    code, _, err = _run(capsys, "edit", str(fake), "--prompt", "x", "--model", str(tiny_model_path),
                        *TINY_FLAGS)
    assert code == 2
    line = _one_line_error(err)
    assert "cannot read notes.mp4 as a video" in line and "ffmpeg" in line


def test_three_frame_clip(capsys, tiny_model_path, make_clip, tmp_path):
    code, _, err = _run(capsys, "edit", str(make_clip(3)), "--prompt", "x", "--model", str(tiny_model_path),
                        "--output-dir", str(tmp_path), *TINY_FLAGS)
    assert code == 2
    assert "only 3 usable frame(s)" in _one_line_error(err)


def test_wrong_model_path(capsys, clip_path, tmp_path):
    code, _, err = _run(capsys, "edit", str(clip_path), "--prompt", "x", "--model", str(tmp_path / "no-model"),
                        *TINY_FLAGS)
    assert code == 2
    assert "model path not found" in _one_line_error(err)


def test_fp8_where_it_cannot_run_is_refused_in_one_line(capsys, tiny_model_path, clip_path, tmp_path):
    code, _, err = _run(capsys, "edit", str(clip_path), "--prompt", "x", "--model", str(tiny_model_path),
                        "--output-dir", str(tmp_path), "--fp8", *TINY_FLAGS)
    assert code == 2
    line = _one_line_error(err)
    assert "FP8 needs an NVIDIA GPU" in line and "run without --fp8" in line


def test_an_attention_kernel_that_cannot_run_here_is_refused_in_one_line(capsys, tiny_model_path, clip_path,
                                                                         tmp_path):
    code, _, err = _run(capsys, "edit", str(clip_path), "--prompt", "x", "--model", str(tiny_model_path),
                        "--output-dir", str(tmp_path), "--attention", "fa3", *TINY_FLAGS)
    assert code == 2
    line = _one_line_error(err)
    assert "fa3 attention needs a Hopper GPU" in line and "build_flash_attention3.sh" in line


def test_folder_that_is_not_a_pipeline(capsys, clip_path, tmp_path):
    code, _, err = _run(capsys, "edit", str(clip_path), "--prompt", "x", "--model", str(tmp_path), *TINY_FLAGS)
    assert code == 2
    assert "no model_index.json" in _one_line_error(err)


def test_model_without_rotary_embeddings_is_refused(capsys, clip_path, tiny_2b_path, tmp_path):
    code, _, err = _run(capsys, "edit", str(clip_path), "--prompt", "x", "--model", str(tiny_2b_path),
                        *TINY_FLAGS)
    assert code == 2
    line = _one_line_error(err)
    assert "2B-family" in line and "needs the 5B model" in line


def test_hub_id_not_cached_while_offline(capsys, clip_path):
    code, _, err = _run(capsys, "edit", str(clip_path), "--prompt", "x", "--model", "someone/not-cached",
                        *TINY_FLAGS)
    assert code == 2
    line = _one_line_error(err)
    assert "not in the Hugging Face cache" in line and "hf download someone/not-cached" in line


def test_bad_parameters_are_all_reported_before_any_model_work(capsys, clip_path):
    code, _, err = _run(capsys, "edit", str(clip_path), "--prompt", "x", "--model", "/nowhere",
                        "--max-num-frames", "500", "--guidance-scale", "abc")
    assert code == 2
    line = _one_line_error(err)
    assert "max_num_frames: must be at most 161" in line and "guidance_scale: 'abc' is not a number" in line


def test_edit_with_events_jsonl(capsys, tiny_model_path, clip_path, tmp_path):
    code, out, err = _run(capsys, "edit", str(clip_path), "--prompt", "a", "--prompt", "b", "--events", "jsonl",
                          "--model", str(tiny_model_path), "--output-dir", str(tmp_path), *TINY_FLAGS)
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    names = [e["event"] for e in events]
    assert names.count("job_finished") == 2
    assert [e["stage"] for e in events if e["event"] == "stage_started"].count("invert") == 1
    finished = [e for e in events if e["event"] == "job_finished"]
    for e in finished:
        assert os.path.isfile(e["outputs"]["edited"])


@pytest.mark.slow
def test_demo_headless_through_the_installed_command(tmp_path):
    """The console script as a user runs it, in a fresh process with its own data dir."""
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    exe = os.path.join(os.path.dirname(sys.executable), "cogedit-tui")
    if not os.path.exists(exe):
        pytest.fail("the cogedit-tui console script is not installed next to this Python")
    proc = subprocess.run([exe, "demo", "--headless"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert DEMO_NOTICE in proc.stderr
    folders = sorted((tmp_path / "data" / "cogedit-tui" / "outputs").iterdir())
    assert len(folders) == 2
    # The toy model really edits: the demo's red ball takes each prompt's colour.
    scene = sample_scene(torch.Generator("cpu").manual_seed(DEMO_SCENE_SEED), colour="red", shape="ball")
    for folder in folders:
        job = json.loads((folder / "job.json").read_text())
        assert job["model"]["model"] == "toy"
        colour, shape = parse_prompt(job["prompt"])
        edited = np.stack([read_single_frame(folder / "edited.mp4", i) for i in range(job["frames"]["count"])])
        assert score_edit(edited, scene, colour, shape).colour_ok
    for folder in folders:
        assert {p.name for p in folder.iterdir()} == {"original.mp4", "reconstruction.mp4", "edited.mp4",
                                                      "contact_sheet.png", "job.json"}
        for video in ("original.mp4", "reconstruction.mp4", "edited.mp4"):  # they play: decode them back
            reader = decord.VideoReader(str(folder / video))
            assert len(reader) == WORLD_FRAMES and reader[len(reader) - 1].shape == (*WORLD_SIZE, 3)


def test_a_job_json_alone_runs_the_job_again(capsys, tiny_model_path, clip_path, tmp_path):
    code, out, err = _run(capsys, "edit", str(clip_path), "--prompt", "a cat", "--model", str(tiny_model_path),
                          "--output-dir", str(tmp_path), "--seed", "5", *TINY_FLAGS)
    assert code == 0, err
    (first,) = [p for p in tmp_path.iterdir()]
    code, out, err = _run(capsys, "edit", "--from-job", str(first / "job.json"), "--output-dir",
                          str(tmp_path), "--device", "cpu")
    assert code == 0, err
    second = next(p for p in tmp_path.iterdir() if p != first)
    a, b = (json.loads((p / "job.json").read_text()) for p in (first, second))
    assert a["params"] == b["params"] and a["prompt"] == b["prompt"] and a["source"] == b["source"]
    assert (first / "edited.mp4").read_bytes() == (second / "edited.mp4").read_bytes()  # same seed, same edit


def test_a_corrupt_job_json_is_refused_in_one_line(capsys, tmp_path):
    bad = tmp_path / "job.json"
    bad.write_text('{"prompt": "x", "params": {')
    code, _, err = _run(capsys, "edit", "--from-job", str(bad))
    assert code == 2
    assert "cannot use" in _one_line_error(err) and "finished result folder" in err


def test_engine_flags_are_generated_from_engine_config():
    """Every EngineConfig field with a help text is a flag, read back into the config by name."""
    import dataclasses

    from engine.api import EngineConfig, config_flags, config_from_flags
    from tui.cli import build_parser

    flagged = {f.name for f in dataclasses.fields(EngineConfig) if f.metadata.get("help")}
    assert {flag.name for flag in config_flags()} == flagged
    args = build_parser().parse_args(["--model", "m", "--devices", "cuda:0,cuda:1", "--dtype", "fp16",
                                      "--attention", "math", "--fp8", "edit", "--output-dir", "out"])
    config = config_from_flags(vars(args))
    assert (config.model, config.device, config.dtype, config.attention, config.fp8, str(config.output_dir)) == (
        "m", "cuda:0,cuda:1", "fp16", "math", True, "out")
    assert config_from_flags(vars(build_parser().parse_args([]))) == EngineConfig()


def test_a_headless_edit_whose_model_fails_leaves_no_job_queued(capsys, monkeypatch, tiny_model_path, clip_path,
                                                                tmp_path):
    """Its jobs would otherwise run in the next app session, with that session's model."""
    from engine.api import INTERRUPTED, Store, data_dir

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    code, _, err = _run(capsys, "edit", str(clip_path), "--prompt", "a", "--prompt", "b", "--model",
                        str(tiny_model_path), "--output-dir", str(tmp_path / "out"), "--attention", "fa3", *TINY_FLAGS)
    assert code == 2, err
    store = Store(data_dir() / "cogedit.db")
    try:
        jobs = store.jobs()
    finally:
        store.close()
    assert [job.status for job in jobs] == [INTERRUPTED, INTERRUPTED]
    assert all("headless edit stopped before this job ran" in job.error for job in jobs)


def test_events_jsonl_piped_into_head_stops_printing_quietly_and_finishes(tiny_model_path, clip_path, tmp_path):
    """``--events jsonl | head -1``: the reader goes away after one line; the edit still finishes, with no
    BrokenPipeError traceback per later event."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this checkout, whatever the cwd
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"), PYTHONPATH=root)
    command = [sys.executable, "-m", "tui.cli", "edit", str(clip_path), "--prompt", "a", "--events", "jsonl",
               "--model", str(tiny_model_path), "--output-dir", str(tmp_path / "out"), *TINY_FLAGS]
    script = " ".join(map(shlex.quote, command)) + " 2>err.txt | head -1; echo ${PIPESTATUS[0]} > code.txt"
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    err = (tmp_path / "err.txt").read_text()
    assert json.loads(proc.stdout)["event"]
    assert "BrokenPipeError" not in err and "Traceback" not in err, err
    assert (tmp_path / "code.txt").read_text().strip() == "0", err
    (folder,) = (tmp_path / "out").iterdir()
    assert (folder / "edited.mp4").is_file()
