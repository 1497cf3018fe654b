"""Two real processes, each with its own data dir, sharing one --output-dir and one cache dir: neither
removes the other's in-flight staging; what a killed process left is removed once its lock is free."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import run_jobs

from engine.runtime.worker import JobSpec
from engine.store import DONE

CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from engine.output.atomic import StagedFolder, atomic_path

    out, cache = Path(sys.argv[1]), Path(sys.argv[2])
    cache.mkdir(parents=True, exist_ok=True)
    staged = StagedFolder(out, "an edit in flight")  # what a running export has under way
    (staged.path / "edited.mp4").write_bytes(b"frames")
    with atomic_path(cache / "entry.safetensors", suffix=".safetensors") as tmp:  # a cache entry being written
        tmp.write_bytes(b"tensors")
        print("READY", staged.path, tmp, flush=True)
        time.sleep(600)
""")


def test_a_second_process_sharing_the_output_dir_leaves_the_firsts_staging_alone(tmp_path, tiny_model, clip_path,
                                                                                 tiny_params):
    out, cache = tmp_path / "out", tmp_path / "cache" / "inversions"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    child = subprocess.Popen([sys.executable, str(script), str(out), str(cache)], stdout=subprocess.PIPE, text=True,
                             env=env)
    try:
        line = child.stdout.readline().split()
        assert line[:1] == ["READY"], line
        staging, partial = Path(line[1]), Path(line[2])
        # Another process (this one), its own data dir, the same output and cache folders: it starts and runs a job.
        _, (job,) = run_jobs(tmp_path, tiny_model, [JobSpec(str(clip_path), "a cat", tiny_params())])
        assert job.status == DONE
        assert (staging / "edited.mp4").is_file() and partial.is_file()  # the first process's work survives
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    # Its owner is gone now: the next start removes what it left.
    _, (job,) = run_jobs(tmp_path, tiny_model, [JobSpec(str(clip_path), "a dog", tiny_params())])
    assert job.status == DONE
    assert not staging.exists() and not partial.exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".partial")]
