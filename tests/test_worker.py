"""The engine worker with the real tiny model, real SQLite, real files: batching, the inversion cache,
cancellation, failures, ordering of events."""

from __future__ import annotations

import time

import pytest
import torch
from conftest import Recorder, finished, open_worker, run_jobs

from engine.api import DeviceState, DeviceStatus, JobMoved
from engine.data_dir import DataDirBusy
from engine.events import EditWarning, JobFailed, JobFinished, StageFinished, StageStarted, StepProgress
from engine.runtime.worker import EngineConfig, JobSpec, Worker
from engine.store import CANCELLED, DONE, FAILED, QUEUED


def test_two_variants_of_one_clip_run_one_inversion(tmp_path, tiny_model, clip_path, tiny_params):
    specs = [JobSpec(str(clip_path), p, tiny_params()) for p in ("a cat", "a dog")]
    rec, records = run_jobs(tmp_path, tiny_model, specs)
    assert [e.stage for e in rec.of(StageStarted)].count("invert") == 1
    for record in records:
        assert record.status == DONE
        assert (tmp_path / "out").joinpath(record.output_dir).joinpath("contact_sheet.png").is_file()
        assert record.metrics["psnr_round_trip_vs_original_db"] > 0
        assert {"invert", "edit", "export"} <= set(record.timings)


def test_events_arrive_in_order_and_step_counts_add_up(tmp_path, tiny_model, clip_path, tiny_params):
    rec, (record,) = run_jobs(tmp_path, tiny_model, [JobSpec(str(clip_path), "a cat", tiny_params())])
    stages = [e.stage for e in rec.events if isinstance(e, StageStarted)]
    assert stages == ["load", "frames", "encode", "invert", "round_trip", "edit", "decode", "export"]
    times = [e.time for e in rec.events]
    assert times == sorted(times)
    for stage in ("invert", "round_trip", "edit"):
        steps = [e.step for e in rec.of(StepProgress, stage=stage)]
        assert steps == list(range(1, 7))
    assert rec.of(JobFinished)[0].job_id == record.id


def test_a_variant_after_a_restart_reuses_the_disk_cache(tmp_path, tiny_model, clip_path, tiny_params):
    run_jobs(tmp_path, tiny_model, [JobSpec(str(clip_path), "a cat", tiny_params())])
    # A second worker, as a new process would be: its memory cache starts empty.
    rec, (later,) = run_jobs(tmp_path, tiny_model, [JobSpec(str(clip_path), "a dog", tiny_params())])
    invert = rec.of(StageFinished, stage="invert")
    assert len(invert) == 1 and invert[0].cached
    assert not rec.of(StepProgress, stage="invert")
    assert later.status == DONE


def test_a_corrupt_cache_file_is_recomputed_not_trusted(tmp_path, tiny_model, clip_path, tiny_params):
    run_jobs(tmp_path, tiny_model, [JobSpec(str(clip_path), "a cat", tiny_params())])
    (entry,) = (tmp_path / "cache" / "inversions").glob("*.safetensors")
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # truncated
    rec, (record,) = run_jobs(tmp_path, tiny_model, [JobSpec(str(clip_path), "a dog", tiny_params())])
    assert any("unusable" in w.message for w in rec.of(EditWarning))
    assert not rec.of(StageFinished, stage="invert")[0].cached
    assert record.status == DONE
    assert entry.is_file() and entry.stat().st_size > 0  # rewritten whole


def _patch_transformer(monkeypatch, model, seconds=0.0, first_call_raises=None):
    """Slow every transformer forward by ``seconds``; make the first raise ``first_call_raises``."""
    transformer = model.pipeline.transformer
    original = transformer.forward
    calls = {"n": 0}

    def forward(*args, **kwargs):
        calls["n"] += 1
        if first_call_raises is not None and calls["n"] == 1:
            raise first_call_raises
        time.sleep(seconds)
        return original(*args, **kwargs)

    monkeypatch.setattr(transformer, "forward", forward)


def test_cancel_during_a_step_stops_within_a_step(tmp_path, tiny_model, clip_path, tiny_params, monkeypatch):
    _patch_transformer(monkeypatch, tiny_model, seconds=0.05)
    worker, rec = open_worker(tmp_path, tiny_model)
    try:
        job = worker.submit(JobSpec(str(clip_path), "a cat", tiny_params(num_inference_steps=20)))
        worker.start()
        rec.wait_for(lambda ev: any(isinstance(e, StepProgress) and e.stage == "edit" and e.step >= 2 for e in ev))
        at_cancel = max(e.step for e in rec.of(StepProgress, stage="edit"))
        assert worker.cancel(job.id)
        rec.wait_for(finished([job.id]))
        last = max(e.step for e in rec.of(StepProgress, stage="edit"))
        assert last - at_cancel <= 1
        assert worker.store.get(job.id).status == CANCELLED
        out = tmp_path / "out"
        assert not out.exists() or not any(out.iterdir())  # nothing, not even a staging folder
    finally:
        worker.close()


def _a_failing_job_then_a_good_one(tmp_path, model, clip_path, tiny_params, monkeypatch, error):
    """The first job's first forward raises ``error``; a second job (a batch of its own) follows."""
    _patch_transformer(monkeypatch, model, first_call_raises=error)
    specs = [JobSpec(str(clip_path), "a cat", tiny_params()),
             JobSpec(str(clip_path), "a dog", tiny_params(num_inference_steps=5))]
    rec, (bad, good) = run_jobs(tmp_path, model, specs)
    assert good.status == DONE
    return rec, bad


def test_a_job_that_raises_is_failed_and_the_next_job_finishes(tmp_path, tiny_model, clip_path, tiny_params,
                                                              monkeypatch):
    _, bad = _a_failing_job_then_a_good_one(tmp_path, tiny_model, clip_path, tiny_params, monkeypatch,
                                            RuntimeError("boom in the transformer"))
    assert bad.status == FAILED and "boom in the transformer" in bad.error
    assert "Traceback" in open(bad.log_path).read()


def test_out_of_memory_fails_the_job_with_a_hint_and_the_next_runs(tmp_path, tiny_model, clip_path, tiny_params,
                                                                  monkeypatch):
    rec, bad = _a_failing_job_then_a_good_one(
        tmp_path, tiny_model, clip_path, tiny_params, monkeypatch,
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"))
    assert "out of GPU memory" in bad.error and "max_num_frames" in bad.error
    (event,) = rec.of(JobFailed, job_id=bad.id)
    assert event.fixable


def test_closing_the_worker_lets_go_of_its_model(tmp_path, tiny_model_path, clip_path, tiny_params):
    """A program that closes a worker gets the model's memory back (on a GPU: 20 GiB for the 5B)."""
    import gc
    import weakref

    from engine.pipeline.model import load_model

    loaded = []
    worker = Worker.open(EngineConfig(model="tiny", device="cpu", output_dir=tmp_path / "out"),
                         root=tmp_path / "data", cache_root=tmp_path / "cache",
                         loader=lambda device: loaded.append(load_model(str(tiny_model_path), device="cpu",
                                                                        dtype="fp32")) or loaded[-1])
    recorder = Recorder()
    worker.subscribe(recorder)
    job = worker.submit(JobSpec(str(clip_path), "a cat", tiny_params()))
    worker.start()
    recorder.wait_for(finished([job.id]))
    model = weakref.ref(loaded.pop().pipeline.transformer)
    assert model() is not None and worker.store.get(job.id).status == DONE
    worker.close()
    gc.collect()
    assert model() is None


def test_a_second_instance_is_refused_with_the_owner(tmp_path, tiny_model):
    worker, _ = open_worker(tmp_path, tiny_model)
    try:
        with pytest.raises(DataDirBusy) as info:
            Worker.open(EngineConfig(), root=tmp_path / "data", cache_root=tmp_path / "cache")
        assert "pid" in str(info.value) and "XDG_DATA_HOME" in str(info.value)
    finally:
        worker.close()


def test_queue_survives_a_restart_and_can_be_reordered(tmp_path, tiny_model, clip_path, tiny_params):
    worker, rec = open_worker(tmp_path, tiny_model)
    try:
        status = worker.status()  # not started: one stopped device, no job
        assert status.state == DeviceState.STOPPED and status.devices == (DeviceStatus("cpu", DeviceState.STOPPED),)
        a, b, c = (worker.submit(JobSpec(str(clip_path), p, tiny_params())) for p in ("a", "b", "c"))
        assert worker.move(c.id, -1)
        rec.wait_for(lambda events: rec.of(JobMoved, job_id=c.id, offset=-1))  # every queue change is an event
        assert worker.cancel(a.id)
    finally:
        worker.close()
    worker, _ = open_worker(tmp_path, tiny_model)
    try:
        assert [j.prompt for j in worker.store.queued()] == ["c", "b"]
        assert worker.store.get(a.id).status == CANCELLED
        assert worker.requeue(a.id)
        assert [j.prompt for j in worker.store.queued()] == ["c", "b", "a"]
        assert all(j.status == QUEUED for j in worker.store.queued())
    finally:
        worker.close()


def test_a_batch_out_of_memory_is_split_and_every_variant_still_finishes(tmp_path, tiny_model, clip_path,
                                                                        tiny_params, monkeypatch):
    transformer = tiny_model.pipeline.transformer
    original = transformer.forward

    def forward(*args, **kwargs):  # the 2-variant edit batch (7 rows) does not fit; 4 rows do
        if kwargs["hidden_states"].size(0) > 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return original(*args, **kwargs)

    monkeypatch.setattr(transformer, "forward", forward)
    worker, rec = open_worker(tmp_path, tiny_model)
    try:
        jobs = [worker.submit(JobSpec(str(clip_path), p, tiny_params())) for p in ("a cat", "a dog")]
        worker.start()
        rec.wait_for(finished([j.id for j in jobs]))
        assert all(worker.store.get(j.id).status == DONE for j in jobs)
        assert any("running 1 at a time" in w.message for w in rec.of(EditWarning))
        computed = [e for e in rec.of(StageFinished, stage="invert") if not e.cached]
        assert len(computed) == 1  # the retries take the inversion from the cache
    finally:
        worker.close()
