"""The TUI's pure parts: path completion, progress from events, formatting of what the screens show."""

from __future__ import annotations

import asyncio

from engine.api import JobFinished, JobQueued, JobStarted, StageFinished, StageStarted, StepProgress, build_params
from tui.formatting import devices_label, format_duration, format_eta, model_name, param_rows, progress_bar, shorten
from tui.progress import ProgressTracker
from tui.widgets.path_input import PathSuggester, complete_path


def test_path_completion_prefers_videos_then_folders_and_keeps_what_was_typed(tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clip-notes.txt").write_text("")
    (tmp_path / "clip.mp4").write_bytes(b"")
    (tmp_path / ".hidden.mp4").write_bytes(b"")
    base = str(tmp_path) + "/"
    assert complete_path(base + "cl") == base + "clip.mp4"
    assert complete_path(base + "clips") == base + "clips/"
    assert complete_path(base + "clip-") == base + "clip-notes.txt"
    assert complete_path(base + "x") is None
    assert complete_path(base + ".hid") == base + ".hidden.mp4"
    assert complete_path(base + "missing/dir/a") is None
    assert asyncio.run(PathSuggester().get_suggestion(base + "cl")) == base + "clip.mp4"


def test_progress_follows_a_batch_through_its_stages():
    tracker = ProgressTracker()
    jobs = ("a", "b")
    tracker.apply(JobStarted("a"))
    tracker.apply(JobStarted("b"))
    assert tracker.apply(StageStarted("invert", jobs, 10)) == jobs
    tracker.apply(StepProgress("invert", jobs, 4, 10, 2.0))
    a = tracker.get("a")
    assert (a.stage, a.step, a.total) == ("invert", 4, 10)
    assert a.eta_seconds == 3.0
    tracker.apply(StageFinished("invert", jobs, 5.0, cached=True))
    assert a.timings == {"invert": 5.0} and a.cached == {"invert"}
    tracker.apply(JobFinished("a", "/out", {}, {}, {}))
    assert a.stage is None and a.eta_seconds is None
    tracker.apply(JobQueued("b", "/clip.mp4", "b", 1))  # back in the queue: no stale progress
    assert tracker.get("b") is None


def test_formatting():
    assert format_duration(4.25) == "4.2 s" and format_duration(75) == "1:15" and format_duration(3725) == "1:02:05"
    assert format_eta(7.4) == "0:07" and format_eta(None) == ""
    assert progress_bar(5, 10, 4) == "██░░" and progress_bar(0, 0, 3) == "░░░"
    assert model_name("THUDM/CogVideoX-5b") == "THUDM/CogVideoX-5b"
    assert model_name("/root/.cache/cogedit-tui/tiny-model") == "tiny-model"
    assert shorten("a  long   prompt", 8) == "a long …"
    assert devices_label(["cuda:0"]) == "cuda:0" and devices_label(["cuda:0", "cuda:1"]) == "cuda:0,cuda:1"
    assert devices_label([f"cuda:{i}" for i in range(4)]) == "4× cuda"  # the devices pane lists them
    cluster = ["10.0.0.5:cuda:0", "10.0.0.5:cuda:1", "10.0.0.6:cuda:0"]  # --cluster: node-qualified names
    assert devices_label(cluster) == "3× cuda on 2 nodes" and devices_label(cluster[:1]) == "1× cuda on 1 node"


def test_the_parameter_summary_shows_changed_and_key_parameters():
    params = build_params({"seed": 7, "resize": "stretch"})
    rows = {name: (value, changed) for name, value, changed in param_rows(params)}
    assert rows["seed"] == ("7", True)
    assert rows["resize"] == ("stretch", True)
    assert rows["height"] == ("auto", False)  # a key parameter, at its default (the model's own)
    assert "negative_prompt" not in rows  # neither changed nor key


def test_an_fp8_result_is_marked_and_an_exact_or_unreadable_one_is_not(tmp_path):
    import json

    from tui.formatting import result_approximations

    fp8, exact, corrupt = (tmp_path / name for name in ("fp8", "exact", "corrupt"))
    for folder in (fp8, exact, corrupt):
        folder.mkdir()
    (fp8 / "job.json").write_text(json.dumps({"model": {"dtype": "bf16", "linear_layers": "fp8 (approximate)"}}))
    (exact / "job.json").write_text(json.dumps({"model": {"dtype": "bf16"}}))
    (corrupt / "job.json").write_text("{not json")
    assert result_approximations(str(fp8)) == "fp8 (approximate)"
    assert result_approximations(str(exact)) is None
    assert result_approximations(str(corrupt)) is None
    assert result_approximations(str(tmp_path / "gone")) is None and result_approximations(None) is None


def test_the_job_eta_covers_every_stage_left_and_says_when_it_is_a_lower_bound():
    tracker = ProgressTracker()
    tracker.apply(JobStarted("a"))
    tracker.expect("a", 10)
    tracker.apply(StageStarted("invert", ("a",), 10))
    tracker.apply(StepProgress("invert", ("a",), 5, 10, 1.0))
    progress = tracker.get("a")
    seconds, exact = tracker.job_eta(progress)
    assert not exact and seconds >= 5 + 10 + 10  # this stage, then round trip and edit at the same speed
    for stage, spent in (("round_trip", 30.0), ("edit", 40.0), ("decode", 6.0), ("export", 2.0)):
        tracker.costs.learn(stage, spent, 10 if stage in ("round_trip", "edit") else 0)
    seconds, exact = tracker.job_eta(progress)
    assert exact and abs(seconds - (5 + 30 + 40 + 6 + 2)) < 1.0
    assert progress.stage_number == 3  # frames, encode, invert
    tracker.apply(StageFinished("invert", ("a",), 10.0))
    assert tracker.costs.per_step["invert"] == 1.0
    assert tracker.fresh_job_estimate(10) == (10 + 30 + 40 + 6 + 2, False)  # frames and encode never measured
