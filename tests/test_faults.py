"""Faults the engine must survive: the process killed mid-job, a full disk, corrupt files, OOM.

Kills run a real worker in a subprocess on the tiny model, stop it at a chosen point (a step, the
VAE decode, an MP4 half written) with SIGKILL, and then check what a restarted app finds.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import run_jobs

from engine.events import EditWarning
from engine.runtime.worker import EngineConfig, JobSpec, Worker
from engine.store import DONE, INTERRUPTED, QUEUED, Store

CHILD = textwrap.dedent("""
    import sys, time, threading
    from pathlib import Path
    from engine.pipeline.model import load_model
    from engine.params import build_params
    from engine.runtime.worker import EngineConfig, JobSpec, Worker
    import engine.pipeline.export, engine.pipeline.edit, engine.output.atomic

    root, model_path, clip, where = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    params = build_params({"height": 64, "width": 96, "max_num_frames": 9, "num_inference_steps": 6})

    def hang(label):
        print("AT", label, flush=True)
        time.sleep(600)

    if where == "step":
        import engine.pipeline.sampling
        original_step = engine.pipeline.sampling.StepTimer.__call__
        def step(self, i, n):
            original_step(self, i, n)
            if i == 3 and SECOND.is_set():
                hang("step")
        engine.pipeline.sampling.StepTimer.__call__ = step
    elif where == "decode":
        original_decode = engine.pipeline.edit.decode_latents
        def decode(model, latents, should_stop=None):
            if SECOND.is_set():
                hang("decode")
            return original_decode(model, latents, should_stop)
        engine.pipeline.edit.decode_latents = decode
    elif where == "mp4":  # ffmpeg has four frames of the second job's first video, then the kill
        import subprocess as real_subprocess, types
        import engine.output.video as video
        class CountingStdin:
            def __init__(self, stdin):
                self.stdin, self.sent = stdin, 0
            def write(self, data):
                self.stdin.write(data)
                self.sent += 1
                if self.sent == 4 and SECOND.is_set():
                    self.stdin.flush()
                    hang("mp4")
            def close(self):
                self.stdin.close()
        def popen(*args, **kwargs):
            process = real_subprocess.Popen(*args, **kwargs)
            process.stdin = CountingStdin(process.stdin)
            return process
        video.subprocess = types.SimpleNamespace(Popen=popen, PIPE=real_subprocess.PIPE,
                                                 DEVNULL=real_subprocess.DEVNULL)

    SECOND = threading.Event()
    worker = Worker.open(EngineConfig(model=model_path, device="cpu", output_dir=root / "out"), root=root / "data",
                         cache_root=root / "cache", loader=lambda device: load_model(model_path, "cpu", "fp32"))
    first = worker.submit(JobSpec(clip, "a finished edit", params))
    worker.start()
    worker.wait_idle({first.id})
    print("FIRST", first.id, flush=True)
    SECOND.set()
    second = worker.submit(JobSpec(clip, "a killed edit", build_params({**params.__dict__, "seed": 7})))
    print("SECOND", second.id, flush=True)
    time.sleep(600)
""")


def _run_until_killed(tmp_path, tiny_model_path, clip_path, where):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), str(tiny_model_path), str(clip_path), where],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    ids = {}
    deadline = time.monotonic() + 240
    try:
        for line in proc.stdout:
            parts = line.split()
            if parts[:1] in (["FIRST"], ["SECOND"]):
                ids[parts[0]] = parts[1]
            if parts[:2] == ["AT", where]:
                break
            assert time.monotonic() < deadline, "the child never reached the kill point"
        else:
            pytest.fail(f"child ended early: {proc.stderr.read()[-2000:]}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    return ids


@pytest.mark.slow
@pytest.mark.parametrize("where", ["step", "decode", "mp4"])
def test_sigkill_mid_job_leaves_history_intact_and_the_job_interrupted(tmp_path, tiny_model_path, clip_path, where,
                                                                     tiny_model):
    ids = _run_until_killed(tmp_path, tiny_model_path, clip_path, where)
    out = tmp_path / "out"
    finals = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert len(finals) == 1, finals  # only the finished job's folder: nothing half-written under a final name
    assert json.loads((finals[0] / "job.json").read_text())["prompt"] == "a finished edit"
    for video in ("original.mp4", "reconstruction.mp4", "edited.mp4"):
        assert (finals[0] / video).stat().st_size > 0

    store = Store(tmp_path / "data" / "cogedit.db")  # what a restarted app opens
    try:
        assert store.get(ids["FIRST"]).status == DONE
        killed = store.get(ids["SECOND"])
        assert killed.status == INTERRUPTED and ids["SECOND"] in store.interrupted_on_open
        assert store.requeue(killed.id)  # one action brings it back
        assert store.get(killed.id).status == QUEUED
    finally:
        store.close()

    # A restarted worker clears what the killed process left half-written, out of sight.
    worker = Worker.open(EngineConfig(model="tiny", device="cpu", output_dir=out), root=tmp_path / "data",
                         cache_root=tmp_path / "cache", loader=lambda device: tiny_model)
    try:
        worker.start()
        assert not [p for p in out.iterdir() if p.name.startswith(".")]
    finally:
        worker.close()


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _disk_full_on_mp4_write(monkeypatch, nth: int, tmpfs) -> None:
    """The ``nth`` MP4 the engine starts writing hits a full disk: ffmpeg writes it onto a real tmpfs
    with no room left (ENOSPC, as a full disk's writes fail); the others are written."""
    from engine.output import video

    full = tmpfs("size=64k")
    with contextlib.suppress(OSError), open(full / "filler", "wb") as filler:
        while True:
            filler.write(b"\0" * 4096)
            filler.flush()
    original = video._ffmpeg_command
    calls = {"n": 0}

    def command(*args):
        calls["n"] += 1
        argv = original(*args)
        return [*argv[:-1], str(full / "out.mp4")] if calls["n"] == nth else argv

    monkeypatch.setattr(video, "_ffmpeg_command", command)


def test_disk_full_while_writing_outputs_fails_the_job_and_the_worker_goes_on(tmp_path, tiny_model, clip_path,
                                                                             tiny_params, monkeypatch, tmpfs):
    _disk_full_on_mp4_write(monkeypatch, nth=2, tmpfs=tmpfs)
    specs = [JobSpec(str(clip_path), "a cat", tiny_params()),
             JobSpec(str(clip_path), "a dog", tiny_params(num_inference_steps=5))]  # a batch of its own
    _, (full, after) = run_jobs(tmp_path, tiny_model, specs)
    assert "disk full" in full.error and "free disk space" in full.error
    assert after.status == DONE
    out = tmp_path / "out"
    assert len([p for p in out.iterdir() if not p.name.startswith(".")]) == 1
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # the staged folder was discarded


def test_disk_full_while_caching_keeps_the_job_and_leaves_no_corrupt_entry(tmp_path, tiny_model, clip_path,
                                                                          tiny_params, monkeypatch):
    import engine.pipeline.inversion_cache

    monkeypatch.setattr(engine.pipeline.inversion_cache, "save_file", _enospc)
    rec, (job,) = run_jobs(tmp_path, tiny_model, [JobSpec(str(clip_path), "a cat", tiny_params())])
    assert job.status == DONE
    assert any("could not be cached on disk" in w.message for w in rec.of(EditWarning))
    assert not list((tmp_path / "cache" / "inversions").glob("*"))


def test_a_failed_variant_does_not_take_back_a_finished_one(tmp_path, tiny_model, clip_path, tiny_params,
                                                           monkeypatch, tmpfs):
    _disk_full_on_mp4_write(monkeypatch, nth=4, tmpfs=tmpfs)  # original, round trip, then each edit: the 2nd
    specs = [JobSpec(str(clip_path), p, tiny_params()) for p in ("a cat", "a dog")]
    _, (a, b) = run_jobs(tmp_path, tiny_model, specs)
    assert a.status == DONE
    assert "disk full" in b.error


def test_a_corrupt_history_row_is_read_with_defaults_not_a_crash(tmp_path, clip_path, tiny_params):
    import sqlite3

    store = Store(tmp_path / "cogedit.db")
    try:
        good = store.add(str(clip_path), "a cat", tiny_params())
        bad = store.add(str(clip_path), "a dog", tiny_params())
        for job in (good, bad):
            store.mark_done(job.id, str(tmp_path / job.id), {"edit": 1.0}, {"psnr_round_trip_vs_original_db": 30.0})
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "cogedit.db") as db:  # damaged by hand, or written by another version
        db.execute("UPDATE jobs SET params = ? WHERE id = ?", ('{"max_num_frames": "lots", "new_knob": 1', bad.id))
    store = Store(tmp_path / "cogedit.db")
    try:
        history = {j.id: j for j in store.history()}
        assert set(history) == {good.id, bad.id}
        assert history[good.id].params == tiny_params()
        assert history[bad.id].params.max_num_frames is None  # the defaults stand in for what cannot be read
    finally:
        store.close()
