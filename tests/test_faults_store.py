"""The history database under faults: a full disk under the data dir, a corrupt or foreign database file.

The disk is a real 3 MiB tmpfs (skipped where mounting is not permitted), the corrupt files are real
files; nothing is patched.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_PARAMS, Recorder, fill_disk, finished

from engine.errors import EditError
from engine.events import EditWarning
from engine.runtime.worker import EngineConfig, JobSpec, Worker
from engine.store import DONE, QUEUED, Store

REPO = Path(__file__).parents[1]


def test_a_full_data_disk_pauses_the_queue_and_it_goes_on_once_space_is_freed(tmp_path, small_tmpfs, tiny_model,
                                                                              clip_path, tiny_params):
    data = small_tmpfs("data")  # the data dir (database, lock, logs) on a small disk; outputs elsewhere
    worker = Worker.open(EngineConfig(model="tiny", device="cpu", output_dir=tmp_path / "out"), root=data,
                         cache_root=tmp_path / "cache", loader=lambda device: tiny_model)
    rec = Recorder()
    worker.subscribe(rec)
    try:
        job = worker.submit(JobSpec(str(clip_path), "a cat", tiny_params()))
        filler = fill_disk(data)
        worker.start()
        rec.wait_for(lambda events: any("disk full while writing" in e.message
                                        for e in events if isinstance(e, EditWarning)))
        assert all(r.thread.is_alive() for r in worker.runners)  # the device thread did not die
        assert worker.store.get(job.id).status == QUEUED  # nothing queued is lost
        assert worker.fault is not None and "free disk space" in str(worker.fault)
        filler.unlink()  # space freed: the queue goes on by itself
        rec.wait_for(finished([job.id]), timeout=120)
        assert worker.store.get(job.id).status == DONE
        assert worker.fault is None
    finally:
        worker.close()


def test_headless_edit_on_a_full_data_disk_says_so_and_exits_2(tmp_path, small_tmpfs, tiny_model_path, clip_path):
    data = small_tmpfs("xdg-data")
    fill_disk(data)
    env = dict(os.environ, XDG_DATA_HOME=str(data), PYTHONPATH=str(REPO))
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY_PARAMS.items()]
    done = subprocess.run([sys.executable, "-m", "tui.cli", "edit", str(clip_path), "--prompt", "a cat",
                           "--model", str(tiny_model_path), "--device", "cpu", "--dtype", "fp32",
                           "--output-dir", str(tmp_path / "out"), *flags],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "disk full while writing" in done.stderr and "free disk space" in done.stderr
    assert "Traceback" not in done.stderr


def _history(tmp_path, clip_path, tiny_params) -> Path:
    path = tmp_path / "cogedit.db"
    store = Store(path)
    try:
        job = store.add(str(clip_path), "a cat", tiny_params())
        store.mark_done(job.id, str(tmp_path / job.id), {"edit": 1.0}, {"psnr": 30.0})
    finally:
        store.close()
    return path


@pytest.mark.parametrize("damage", ["truncated", "garbage", "wrong schema", "a directory"])
def test_a_corrupt_history_database_names_the_file_and_the_fix(tmp_path, clip_path, tiny_params, damage):
    path = tmp_path / "cogedit.db"
    if damage == "truncated":
        _history(tmp_path, clip_path, tiny_params)
        store = sqlite3.connect(path)
        store.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store.close()
        size = path.stat().st_size
        with open(path, "r+b") as handle:
            handle.truncate(size // 2)
    elif damage == "garbage":
        path.write_bytes(os.urandom(8192))
    elif damage == "wrong schema":
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE jobs (id TEXT, name TEXT)")
    else:
        path.mkdir()
    with pytest.raises(EditError) as caught:
        Store(path)
    message = str(caught.value)
    assert str(path) in message
    assert "move it aside" in message and "result folders are kept" in message
    assert "\n" not in message


def test_a_bad_json_cell_in_timings_or_metrics_reads_as_empty(tmp_path, clip_path, tiny_params):
    path = _history(tmp_path, clip_path, tiny_params)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE jobs SET timings = ?, metrics = ?", ('{"edit": 1.0', '[1, 2]'))
    store = Store(path)
    try:
        (job,) = store.history()
        assert job.timings == {} and job.metrics == {}
    finally:
        store.close()



def test_a_read_only_data_dir_says_so_rather_than_blaming_the_database(tmp_path, clip_path, tiny_params):
    _history(tmp_path / "data", clip_path, tiny_params)
    view = tmp_path / "read-only"
    view.mkdir()
    if subprocess.run(["mount", "--bind", str(tmp_path / "data"), str(view)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], capture_output=True).returncode:
            pytest.skip("cannot remount read-only here")
        with pytest.raises(EditError, match="permission denied") as caught:
            Store(view / "cogedit.db")
        assert "move it aside" not in str(caught.value)
    finally:
        subprocess.run(["umount", str(view)], capture_output=True)
