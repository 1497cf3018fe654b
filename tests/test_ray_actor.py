"""The Ray actor's protocol (engine.runtime.ray_actor), driven in this process without Ray (the actor is
plain Python): ``start`` returns at once, ``next_items`` hands out what the edit produced, one result
folder's bytes per reply, and raises the edit's exception after the events that came before it."""

from __future__ import annotations

import time

import pytest

from engine.errors import Cancelled, VideoError
from engine.events import JobFinished, StageFinished, StepProgress
from engine.pipeline.artifacts import Variant
from engine.pipeline.model import load_model
from engine.runtime.ray_actor import EditActor
from engine.runtime.worker import EngineConfig


@pytest.fixture
def actor(tmp_path, tiny_model_path):
    actor = EditActor(EngineConfig(model=str(tiny_model_path)), lambda device: load_model(
        str(tiny_model_path), device, "fp32"), cache_folder=str(tmp_path / "cache"))
    actor.load(gpu=False)
    return actor


def poll(actor: EditActor, replies: list[list[tuple]], timeout: float = 120.0) -> None:
    """Call next_items until its end marker, keeping every reply."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies.append(actor.next_items(0.5))
        if replies[-1] and replies[-1][-1] == ("end",):
            return
    raise TimeoutError("no end marker")


def test_results_come_one_folder_per_reply_then_leave_the_node_and_the_end_carries_the_latents(
        actor, clip_path, tiny_params):
    variants = [Variant("job-a", "a cat", 1), Variant("job-b", "a dog", 2)]
    started = time.monotonic()
    actor.start("run-a", clip_path.read_bytes(), "clip.mp4", tiny_params(), variants, True)
    assert time.monotonic() - started < 5  # it returns at once; the edit runs in the actor's thread
    replies: list[list[tuple]] = []
    poll(actor, replies)
    items = [item for reply in replies for item in reply]
    kinds = [item[0] for item in items]
    assert kinds[-3:] == ["latents", "hot", "end"] and kinds.count("end") == 1
    results = [item for item in items if item[0] == "result"]
    assert sorted(r[1].job_id for r in results) == ["job-a", "job-b"]
    assert all(sum(item[0] == "result" for item in reply) <= 1 for reply in replies)  # one folder's bytes each
    for _, finished, files in results:
        assert isinstance(finished, JobFinished) and {"job.json", "edited.mp4"} <= set(files)
        assert all(files.values())
    assert any(isinstance(item[1], StepProgress) for item in items if item[0] == "event")
    assert kinds.count("memory") == sum(isinstance(i[1], StageFinished) for i in items if i[0] == "event") > 0
    assert items[-2][1] and not list(actor.work.glob("run-*"))  # its inversion is hot; nothing left in transit
    assert actor.next_items(0.1) == [("end",)]  # polled past its end: still the end


def test_a_failed_edit_is_raised_by_the_poll_as_itself_and_a_stop_ends_an_edit_mid_step(actor, clip_path,
                                                                                       tiny_params):
    actor.start("run-1", b"not a video", "broken.mp4", tiny_params(), [Variant("job-x", "a cat", 1)], False)
    with pytest.raises(VideoError):
        poll(actor, [])
    assert not list(actor.work.glob("run-*"))

    # A stop mid-edit: the poll raises Cancelled within a step or so. A stop meant for the earlier run,
    # arriving late (calls to the threaded actor may overtake each other), does not touch this one.
    actor.start("run-2", clip_path.read_bytes(), "clip.mp4", tiny_params(num_inference_steps=40),
                [Variant("job-y", "a dog", 1)], False)
    replies: list[list[tuple]] = []
    stale_at = None
    with pytest.raises(Cancelled):
        while True:
            replies.append(actor.next_items(0.5))
            edit_steps = [item[1].step for item in replies[-1] if item[0] == "event"
                          and isinstance(item[1], StepProgress) and item[1].stage == "edit"]
            if edit_steps and stale_at is None:
                stale_at = edit_steps[-1]
                actor.stop("run-1")
            elif edit_steps and edit_steps[-1] >= stale_at + 2:
                actor.stop("run-2")
    steps = [i[1].step for reply in replies for i in reply if i[0] == "event" and isinstance(i[1], StepProgress)
             and i[1].stage == "edit"]
    assert steps and stale_at + 2 <= max(steps) < 40
