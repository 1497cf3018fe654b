"""Paths that are not what they claim: special files given as the video or the job file, hostile
job files, broken data dirs and lock files. Each gets exit 2 and one line, never a hang or a
traceback. Everything is real: FIFOs made with mkfifo, /dev/zero, /proc files, a read-only mount.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_hostile_inputs import TINY_FLAGS, cli_error

from tui.cli import main


def _one_error(capfd, *argv: str) -> str:
    code = main(list(argv))
    _, err = capfd.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert " — " in lines[0], lines[0]
    return lines[0].removeprefix("error: ")


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "clip.mp4"
    os.mkfifo(path)
    return path


# -- special files given as the video (item 13: they are not "empty (0 bytes)") -------------------

@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "/dev/urandom", "/proc/self/status"])
def test_a_special_file_as_the_video_is_named_as_such(capfd, tiny_model_path, tmp_path, kind, fifo):
    video = fifo if kind == "fifo" else Path(kind)
    if kind == "/proc/self/status":  # its text changes as it is read: not cli_error's unchanged-source check
        line = _one_error(capfd, "edit", kind, "--prompt", "x", "--model", str(tiny_model_path),
                          "--output-dir", str(tmp_path / "out"), *TINY_FLAGS)
    else:
        line = cli_error(capfd, video, model=tiny_model_path, out=tmp_path / "out")
    assert "is not a regular file" in line and "empty" not in line, line


# -- the job file (items 11 and 12) ---------------------------------------------------------------

@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_a_special_file_as_the_job_file_is_refused_at_once(tmp_path, kind, fifo):
    """In a real process, with a memory cap: reading a FIFO would block, /dev/zero never ends."""
    job = fifo if kind == "fifo" else Path(kind)
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"))
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30)); "
            "from tui.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "edit", "--from-job", str(job)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"cannot use {job} as a job file (not a regular file)" in proc.stderr
    assert "Traceback" not in proc.stderr


def _job(tmp_path, clip_path, **changes) -> Path:
    job = {"prompt": "a cat", "params": {}, "source": {"path": str(clip_path)}, "model": {"model": "m"}}
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            job[section][field] = value
        else:
            job[section] = value
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    return path


@pytest.mark.parametrize("change, reason", [
    ({"source__path": 5}, "source.path is missing or not a string"),
    ({"source__path": ["a.mp4"]}, "source.path is missing or not a string"),
    ({"model__model": None}, "model.model is missing or not a string"),
    ({"prompt": ["a", "b"]}, "prompt is missing or not a string"),
])
def test_a_job_file_with_a_value_of_the_wrong_type(capfd, tmp_path, clip_path, change, reason):
    line = _one_error(capfd, "edit", "--from-job", str(_job(tmp_path, clip_path, **change)))
    assert reason in line and "finished result folder" in line


def test_a_deeply_nested_job_file(capfd, tmp_path):
    deep = tmp_path / "job.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    assert "nested too deeply" in _one_error(capfd, "edit", "--from-job", str(deep))


def test_a_prompt_that_is_not_utf8(capfd, tiny_model_path, clip_path, tmp_path):
    prompt = os.fsdecode(b"a caf\xe9 at night")  # what Python makes of a Latin-1 byte on the command line
    line = _one_error(capfd, "edit", str(clip_path), "--prompt", prompt, "--model", str(tiny_model_path),
                      "--output-dir", str(tmp_path / "out"), *TINY_FLAGS)
    assert "not UTF-8" in line


@pytest.mark.parametrize("name", ["model_index.json", "transformer/config.json"])
def test_a_model_config_that_is_not_an_object(capfd, tiny_model_path, clip_path, tmp_path, name):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_path, model)
    (model / name).write_text("[1, 2, 3]")
    line = _one_error(capfd, "edit", str(clip_path), "--prompt", "x", "--model", str(model),
                      "--output-dir", str(tmp_path / "out"), *TINY_FLAGS)
    assert f"{name} is not a JSON object" in line


# -- the data dir and its lock file (item 12) -----------------------------------------------------

def _edit_in(capfd, monkeypatch, data_home: Path, clip_path, tmp_path, model) -> str:
    monkeypatch.setenv("XDG_DATA_HOME", str(data_home))
    return _one_error(capfd, "edit", str(clip_path), "--prompt", "x", "--model", str(model),
                      "--output-dir", str(tmp_path / "out"), *TINY_FLAGS)


def test_xdg_data_home_that_is_a_file(capfd, monkeypatch, tiny_model_path, clip_path, tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("not a folder")
    line = _edit_in(capfd, monkeypatch, blocker, clip_path, tmp_path, tiny_model_path)
    assert f"{blocker} is a file, not a folder" in line and "XDG_DATA_HOME" in line


@pytest.mark.parametrize("kind", ["directory", "FIFO", "dangling symlink"])
def test_a_lock_file_that_is_not_a_file(capfd, monkeypatch, tiny_model_path, clip_path, tmp_path, kind):
    lock = tmp_path / "data" / "cogedit-tui" / "cogedit.lock"
    lock.parent.mkdir(parents=True)
    {"directory": lock.mkdir, "FIFO": lambda: os.mkfifo(lock),
     "dangling symlink": lambda: lock.symlink_to(tmp_path / "gone" / "lock")}[kind]()
    line = _edit_in(capfd, monkeypatch, tmp_path / "data", clip_path, tmp_path, tiny_model_path)
    assert f"the lock file {lock} is a" in line and "remove it" in line


@pytest.fixture
def read_only_dir(tmpfs):
    return tmpfs("ro,size=1m")


def test_a_read_only_data_dir(capfd, monkeypatch, tiny_model_path, clip_path, tmp_path, read_only_dir):
    line = _edit_in(capfd, monkeypatch, read_only_dir, clip_path, tmp_path, tiny_model_path)
    assert f"cannot use the data dir {read_only_dir / 'cogedit-tui'}" in line and "writable" in line


# -- a busy data dir (item 17) --------------------------------------------------------------------

def test_a_second_edit_on_a_busy_data_dir_is_refused_before_torch_loads(tmp_path, clip_path):
    """Two real processes: one holds the data dir; the other's edit is refused sooner than it takes
    to import torch alone (it used to import torch and probe the clip before looking)."""
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from engine.api import DataDirLock, data_dir; "
         "lock = DataDirLock(data_dir()).acquire(); print('held', flush=True); time.sleep(120)"],
        env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "tui.cli", "edit", str(clip_path), "--prompt", "x",
                               "--model", "/nowhere"], env=env, capture_output=True, text=True, timeout=120)
        refused_in = time.monotonic() - start
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2, proc.stderr
    assert f"another cogedit-tui (pid {holder.pid})" in proc.stderr
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "import torch"], check=True, timeout=120)
    assert refused_in < time.monotonic() - start, "the busy data dir was seen only after torch loaded"
