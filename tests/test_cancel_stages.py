"""Cancelling and pausing as a user sees it: a cancel in the VAE's encode or decode stops within one of
its blocks; cancelling one variant lets the rest of its batch go on where it was; a pause outlives a
restart. The real tiny model, real SQLite, real files."""

from __future__ import annotations

import time

import pytest
import torch
from conftest import finished, open_worker
from diffusers.models.autoencoders.autoencoder_kl_cogvideox import CogVideoXResnetBlock3D

from engine.api import DeviceState
from engine.errors import Cancelled
from engine.events import (
    JobCancelled,
    JobFinished,
    JobQueued,
    StageFinished,
    StageStarted,
    StepProgress,
)
from engine.pipeline.artifacts import Variant
from engine.pipeline.edit import Editor
from engine.pipeline.vae import decode_latents, encode_frames
from engine.runtime.worker import JobSpec
from engine.store import CANCELLED, DONE, QUEUED


class BlockCounter:
    """Counts the VAE's resnet-block calls (and its encoder/decoder entries); ``on_block(n)`` is called
    on the device thread at each block, before the engine's own stop check runs."""

    def __init__(self, vae, on_block=None):
        self.blocks = 0
        self.entries = {"encoder": 0, "decoder": 0}
        self.on_block = on_block
        self.handles = [m.register_forward_pre_hook(self._block) for m in vae.modules()
                        if isinstance(m, CogVideoXResnetBlock3D)]
        for name in self.entries:
            self.handles.append(getattr(vae, name).register_forward_pre_hook(
                lambda _m, _a, name=name: self.entries.__setitem__(name, self.entries[name] + 1)))

    def _block(self, _module, _args):
        self.blocks += 1
        if self.on_block is not None:
            self.on_block(self)

    def remove(self):
        for handle in self.handles:
            handle.remove()


@pytest.mark.parametrize("stage", ["encode", "decode"])
def test_the_vae_stops_within_one_block_when_asked(tiny_model, tiny_params, clip_path, stage):
    editor = Editor(tiny_model)
    source = editor.frames(clip_path, tiny_params(), ("j",))
    latents = encode_frames(tiny_model, source.frames)
    run = (lambda stop: encode_frames(tiny_model, source.frames, stop)) if stage == "encode" else \
        (lambda stop: decode_latents(tiny_model, latents, stop))
    counter = BlockCounter(tiny_model.pipeline.vae)
    try:
        run(None)
        whole = counter.blocks
        counter.blocks = 0
        with pytest.raises(Cancelled):
            run(lambda: counter.blocks >= 2)  # asked to stop once two blocks have run
    finally:
        counter.remove()
    assert whole >= 6 and counter.blocks == 2  # it stopped at the next block, not at the end


def _cancel_in_vae(tmp_path, tiny_model, clip_path, tiny_params, decoder_entry):
    """Job A is cancelled at the second VAE block after the decoder's ``decoder_entry``-th entry (0: in
    the encode); job B (a batch of its own) is queued behind it. Returns both records, the events and
    the state."""
    worker, rec = open_worker(tmp_path, tiny_model)
    state = {"job": None, "cancelled_at": None}

    def on_block(counter):
        armed = counter.entries["decoder"] >= decoder_entry if decoder_entry else counter.entries["encoder"] > 0
        if state["cancelled_at"] is None and armed and state["job"] is not None:
            state["seen"] = state.get("seen", 0) + 1
            if state["seen"] == 2:
                state["cancelled_at"] = counter.blocks
                assert worker.cancel(state["job"])

    counter = BlockCounter(tiny_model.pipeline.vae, on_block)
    try:
        a = worker.submit(JobSpec(str(clip_path), "a cat", tiny_params()))
        b = worker.submit(JobSpec(str(clip_path), "a dog", tiny_params(num_inference_steps=4)))
        state["job"] = a.id
        worker.start()
        rec.wait_for(finished([a.id, b.id]))
        return worker.store.get(a.id), worker.store.get(b.id), rec, state
    finally:
        counter.remove()
        worker.close()


@pytest.mark.parametrize("stage,decoder_entry", [("encode", 0), ("decode", 3)])
def test_a_cancel_during_encode_or_decode_ends_the_job_at_once_and_the_next_runs(
        tmp_path, tiny_model, clip_path, tiny_params, stage, decoder_entry):
    # The round trip decodes twice (the round trip and the VAE-only decode); the decode stage is the third.
    a, b, rec, state = _cancel_in_vae(tmp_path, tiny_model, clip_path, tiny_params, decoder_entry)
    assert state["cancelled_at"] is not None
    assert a.status == CANCELLED and a.error is None  # cancelled, not failed
    assert b.status == DONE
    a_stages = [e.stage for e in rec.of(StageStarted) if a.id in e.job_ids]
    a_done = [e.stage for e in rec.of(StageFinished) if a.id in e.job_ids]
    assert a_stages[-1] == stage and stage not in a_done  # it stopped inside that stage
    results = [p for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")]
    assert a.output_dir is None and results == [tmp_path / "out" / b.output_dir]  # nothing of A's


def _rows_per_forward(model):
    rows = []
    hook = model.pipeline.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["hidden_states"].size(0)), with_kwargs=True)
    return rows, hook


def test_a_variant_cancelled_mid_edit_leaves_the_batch_and_the_others_are_unchanged(
        tiny_model, clip_path, tiny_params):
    params = tiny_params()
    prompts = {"a": "a watercolor painting", "b": "a bicycle on a road", "c": "a red car"}
    variants = [Variant(job_id, prompt, params.seed) for job_id, prompt in prompts.items()]
    cancelled: set[str] = set()
    events = []
    editor = Editor(tiny_model, emit=events.append, cancelled=lambda: cancelled)
    source = editor.frames(clip_path, params, tuple(prompts))
    inversion = editor.inversion(source, params, tuple(prompts), editor.vae_tiling(source, params))

    def cancel_b(step, total):  # after the edit's second step
        if step == 2:
            cancelled.add("b")

    rows, hook = _rows_per_forward(tiny_model)
    original_stage = editor.stage

    def stage(name, job_ids, total_steps=0):  # wrap the edit's progress to cancel "b" mid-stage
        context = original_stage(name, job_ids, total_steps)

        class Wrapped:
            def __enter__(self):
                progress = context.__enter__()
                return (lambda s, t: (progress(s, t), cancel_b(s, t))) if name == "edit" else progress

            def __exit__(self, *exc):
                return context.__exit__(*exc)

        return Wrapped()

    editor.stage = stage
    try:
        together = editor.edit(inversion, variants, params)
    finally:
        hook.remove()
    assert [v.job_id for v in editor.live(variants)] == ["a", "c"] and len(together) == 2
    assert [e.job_id for e in events if isinstance(e, JobCancelled)] == ["b"]
    # 3 variants: 6 edited rows + the unconditional and 3 conditional references; then 4 + 1 + 2.
    assert rows[:2] == [10, 10] and set(rows[2:]) == {7}
    alone = Editor(tiny_model).edit(inversion, [variants[0], variants[2]], params)
    for kept, reference in zip(together, alone, strict=True):
        torch.testing.assert_close(kept, reference, rtol=1e-4, atol=1e-4)


def test_cancelling_one_variant_of_a_running_batch_lets_the_others_finish_without_a_restart(
        tmp_path, tiny_model, clip_path, tiny_params, monkeypatch):
    worker, rec = open_worker(tmp_path, tiny_model)
    transformer = tiny_model.pipeline.transformer
    original = transformer.forward
    state = {"edit_forwards": 0, "victim": None}

    def forward(*args, **kwargs):
        if kwargs["hidden_states"].size(0) == 10:  # the edit's batch of three variants
            state["edit_forwards"] += 1
            if state["edit_forwards"] == 2:
                assert worker.cancel(state["victim"])
        return original(*args, **kwargs)

    monkeypatch.setattr(transformer, "forward", forward)
    try:
        jobs = [worker.submit(JobSpec(str(clip_path), p, tiny_params(num_inference_steps=8)))
                for p in ("a cat", "a dog", "a cow")]
        state["victim"] = jobs[1].id
        worker.start()
        rec.wait_for(finished([j.id for j in jobs]))
        statuses = [worker.store.get(j.id).status for j in jobs]
        assert statuses == [DONE, CANCELLED, DONE]
        assert len(rec.of(JobCancelled, job_id=jobs[1].id)) == 1
        # Nothing went back to the queue, nothing ran twice: one inversion, one edit of eight steps.
        assert len(rec.of(JobQueued)) == 3
        assert [e.stage for e in rec.of(StageStarted)].count("edit") == 1
        assert [e.step for e in rec.of(StepProgress, stage="edit")] == list(range(1, 9))
        assert {e.job_id for e in rec.of(JobFinished)} == {jobs[0].id, jobs[2].id}
    finally:
        worker.close()


def test_when_every_variant_of_a_batch_is_cancelled_the_batch_stops(tmp_path, tiny_model, clip_path, tiny_params,
                                                                     monkeypatch):
    worker, rec = open_worker(tmp_path, tiny_model)
    transformer = tiny_model.pipeline.transformer
    original = transformer.forward
    jobs = []

    def forward(*args, **kwargs):
        if kwargs["hidden_states"].size(0) == 7 and len(jobs) == 2:  # the edit's batch of two
            jobs.append(None)
            worker.cancel(jobs[0].id)
            worker.cancel(jobs[1].id)
        return original(*args, **kwargs)

    monkeypatch.setattr(transformer, "forward", forward)
    try:
        jobs.extend(worker.submit(JobSpec(str(clip_path), p, tiny_params())) for p in ("a cat", "a dog"))
        worker.start()
        rec.wait_for(finished([j.id for j in jobs[:2]]))
        assert [worker.store.get(j.id).status for j in jobs[:2]] == [CANCELLED, CANCELLED]
        assert len(rec.of(StepProgress, stage="edit")) <= 1
    finally:
        worker.close()


def test_a_pause_is_kept_across_restarts_and_resume_runs_the_queue(tmp_path, tiny_model, clip_path, tiny_params):
    worker, _ = open_worker(tmp_path, tiny_model)
    try:
        worker.pause()
    finally:
        worker.close()
    worker, rec = open_worker(tmp_path, tiny_model)  # a new session
    try:
        assert worker.paused
        job = worker.submit(JobSpec(str(clip_path), "a cat", tiny_params()))
        worker.start()
        rec.wait_for(lambda events: worker.state == DeviceState.PAUSED)
        time.sleep(1.0)
        assert worker.store.get(job.id).status == QUEUED  # held
        worker.resume()
        rec.wait_for(finished([job.id]))
        assert worker.store.get(job.id).status == DONE
    finally:
        worker.close()
    worker, _ = open_worker(tmp_path, tiny_model)
    try:
        assert not worker.paused  # the resume is kept too
    finally:
        worker.close()


def test_the_apps_pause_does_not_hold_the_headless_commands_own_jobs(tmp_path, tiny_model, clip_path, tiny_params):
    worker, _ = open_worker(tmp_path, tiny_model)
    try:
        worker.pause()
    finally:
        worker.close()
    worker, rec = open_worker(tmp_path, tiny_model)
    try:
        job = worker.submit(JobSpec(str(clip_path), "a cat", tiny_params()))
        worker.only = {job.id}  # as the headless command runs its jobs
        worker.start()
        assert worker.wait_idle({job.id}, timeout=240)
        assert worker.store.get(job.id).status == DONE
        assert worker.store.paused  # the app's pause stays for the app
    finally:
        worker.close()
