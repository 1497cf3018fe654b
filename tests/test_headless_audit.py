"""Cases of our own audit of the headless ``edit`` (issue #20, "audit again yourselves") that fell
short and are fixed: a full or unwritable output folder is refused before any model work (it was
found only at export, after the whole edit); SIGTERM and SIGHUP stop an edit as cleanly as Ctrl-C (the
process died with its job left ``running``). Real tmpfs mounts, real signals to a real process."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import fill_disk

from tui.cli import main

ROOT = Path(__file__).resolve().parent.parent
TINY_FLAGS = ["--device", "cpu", "--height", "64", "--width", "96", "--max-num-frames", "9",
              "--num-inference-steps", "4"]


def _refused_at_once(capfd, tiny_model_path, clip_path, out) -> str:
    started = time.monotonic()
    code = main(["edit", str(clip_path), "--prompt", "a cat", "--model", str(tiny_model_path), "--output-dir",
                 str(out), *TINY_FLAGS])
    err = capfd.readouterr().err
    assert code == 2 and time.monotonic() - started < 5, err  # no model loaded, no edit run
    assert "load" not in err and "encode" not in err  # no stage ever started
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    return line


def test_a_full_output_disk_is_refused_before_the_edit(capfd, small_tmpfs, tiny_model_path, clip_path):
    disk = small_tmpfs("out", "3m")
    fill_disk(disk)
    line = _refused_at_once(capfd, tiny_model_path, clip_path, disk / "results")
    assert line.startswith(f"error: disk full under {disk / 'results'} (") and "choose another --output-dir" in line


def test_a_read_only_output_folder_is_refused_before_the_edit(capfd, tmpfs, tiny_model_path, clip_path):
    folder = tmpfs("ro,size=1m", "ro-out")
    line = _refused_at_once(capfd, tiny_model_path, clip_path, folder)
    assert line == f"error: cannot write to {folder} (permission denied) — choose a writable --output-dir"


@pytest.mark.parametrize("name,times", [("SIGTERM", 1), ("SIGHUP", 1), ("SIGINT", 3)],
                         ids=["SIGTERM", "SIGHUP", "impatient-ctrl-c"])
def test_signals_stop_an_edit_cleanly(tmp_path, tiny_model_path, clip_path, name, times):
    """SIGTERM and SIGHUP killed the process with its job left running; Ctrl-C three times printed
    tracebacks from the interpreter's exit."""
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    out = tmp_path / "out"
    command = [sys.executable, "-m", "tui.cli", "edit", str(clip_path), "--prompt", "a cat", "--model",
               str(tiny_model_path), "--output-dir", str(out), "--events", "jsonl", *TINY_FLAGS,
               "--num-inference-steps", "400"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:  # the edit's events, as they happen
            if json.loads(line).get("stage") == "invert":
                break
        for _ in range(times):
            process.send_signal(getattr(signal, name))
            time.sleep(0.05)
        stopped = time.monotonic()
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + getattr(signal, name), err  # 130 for Ctrl-C
    assert time.monotonic() - stopped < 30  # within a step (400 steps would take minutes)
    assert err.strip().splitlines()[-1] == ("interrupted" if name == "SIGINT" else f"terminated ({name})")
    assert "Traceback" not in err
    db = sqlite3.connect(tmp_path / "data" / "cogedit-tui" / "cogedit.db")
    assert db.execute("SELECT status FROM jobs").fetchall() == [("interrupted",)]  # not left "running"
    assert not out.exists() or list(out.iterdir()) == []  # no staging, no lock file left behind
