"""Shared fixtures and helpers: a private data/cache dir for every test session, the tiny model, sample clips.

No test touches the network (the hub is forced offline) or the user's real data dir (platformdirs is
pointed at a temporary directory through the XDG variables before anything reads them).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from engine.demo import TINY_SIZE

_SESSION_HOME = None


def pytest_configure(config):
    global _SESSION_HOME
    import tempfile

    _SESSION_HOME = Path(tempfile.mkdtemp(prefix="cogedit-tests-"))
    os.environ["XDG_DATA_HOME"] = str(_SESSION_HOME / "data")
    os.environ["XDG_CACHE_HOME"] = str(_SESSION_HOME / "cache")
    os.environ["XDG_CONFIG_HOME"] = str(_SESSION_HOME / "config")
    os.environ["HF_HOME"] = str(_SESSION_HOME / "hf")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def session_home() -> Path:
    return _SESSION_HOME


@pytest.fixture(scope="session")
def tiny_model_path(session_home) -> Path:
    """The tiny CogVideoX, built once per session and saved with save_pretrained."""
    from engine.demo.tiny_model import ensure_tiny_model

    return ensure_tiny_model(session_home / "models" / "tiny")


@pytest.fixture(scope="session")
def tiny_2b_path(session_home) -> Path:
    """A tiny model like the 2B family: no rotary position embeddings."""
    from engine.demo.tiny_model import ensure_tiny_model

    return ensure_tiny_model(session_home / "models" / "tiny-2b", rotary=False)


@pytest.fixture(scope="session")
def tiny_family(session_home):
    """``tiny_family(name)``: the tiny model of a family (engine.demo.tiny_model.FAMILIES), built once per
    session and loaded through the real loading path (CPU, fp32)."""
    from engine.demo.tiny_model import ensure_tiny_model
    from engine.pipeline.model import load_model

    loaded = {}

    def get(family: str):
        if family not in loaded:
            path = ensure_tiny_model(session_home / "models" / f"tiny-{family}", family=family)
            loaded[family] = load_model(str(path), device="cpu", dtype="fp32")
        return loaded[family]

    return get


@pytest.fixture(scope="session")
def tiny_model(tiny_model_path):
    """The tiny model loaded through the real loading path, on the CPU in fp32."""
    from engine.pipeline.model import load_model

    return load_model(str(tiny_model_path), device="cpu", dtype="fp32")


@pytest.fixture(scope="session")
def clip_path(session_home) -> Path:
    """2.5 s of moving shapes, 40 frames of 192x128 at 16 fps."""
    from engine.demo.sample_clip import write_sample_clip

    return write_sample_clip(session_home / "clips" / "shapes.mp4")


@pytest.fixture(scope="session")
def make_clip(session_home):
    """Write a generated clip with the given frame count / size / fps (cached per arguments)."""
    from engine.demo.sample_clip import write_sample_clip

    def make(num_frames: int, height: int = 128, width: int = 192, fps: float = 16.0) -> Path:
        path = session_home / "clips" / f"shapes-{num_frames}-{height}x{width}-{fps:g}.mp4"
        if not path.exists():
            write_sample_clip(path, num_frames=num_frames, height=height, width=width, fps=fps)
        return path

    return make


# Small, fast settings for the tiny model: 9 frames at its size (64x96), 6 steps.
TINY_PARAMS = {"height": TINY_SIZE[0], "width": TINY_SIZE[1], "max_num_frames": 9, "num_inference_steps": 6}


@pytest.fixture
def tiny_params():
    from engine.params import build_params

    def make(**overrides):
        return build_params({**TINY_PARAMS, **overrides})

    return make


@pytest.fixture(scope="session")
def ffmpeg():
    """Run the ffmpeg binary bundled with imageio-ffmpeg (quiet, overwriting): ``ffmpeg(*args)``."""
    import subprocess

    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()

    def run(*args: str) -> None:
        subprocess.run([exe, "-y", "-nostdin", "-loglevel", "error", *map(str, args)], check=True,
                       capture_output=True, timeout=120)

    return run


# -- helpers shared by the engine tests (import them: ``from conftest import Recorder``) ----------

class Recorder:
    """Collects events; ``wait_for`` blocks until a predicate over them holds."""

    def __init__(self):
        self.events = []
        self.cond = threading.Condition()

    def __call__(self, event):
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait_for(self, predicate, timeout=240.0):  # generous: the CPU may be shared
        with self.cond:
            assert self.cond.wait_for(lambda: predicate(self.events), timeout), self.events[-5:]

    def of(self, kind, **match):
        return [e for e in self.events if isinstance(e, kind) and all(getattr(e, k) == v for k, v in match.items())]


def open_worker(tmp_path, model, **config):
    from engine.api import EngineConfig
    from engine.runtime.worker import Worker

    worker = Worker.open(EngineConfig(model="tiny", device="cpu", output_dir=tmp_path / "out", **config),
                         root=tmp_path / "data", cache_root=tmp_path / "cache", loader=lambda device: model)
    recorder = Recorder()
    worker.subscribe(recorder)
    return worker, recorder


def finished(job_ids):
    from engine.api import JobCancelled, JobFailed, JobFinished

    ended = (JobFinished, JobFailed, JobCancelled)
    return lambda events: {e.job_id for e in events if isinstance(e, ended)} >= set(job_ids)


def run_jobs(tmp_path, model, specs):
    """Open a worker on ``tmp_path``, run ``specs`` to their end and close it: the events, the records."""
    worker, rec = open_worker(tmp_path, model)
    try:
        jobs = [worker.submit(spec) for spec in specs]
        worker.start()
        rec.wait_for(finished([j.id for j in jobs]))
        return rec, [worker.store.get(j.id) for j in jobs]
    finally:
        worker.close()


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a real tmpfs: ``tmpfs("size=3m")`` (a small disk), ``tmpfs("ro,size=1m")`` (read-only), at
    ``tmp_path / name`` when a name is given; unmounted after the test; the test is skipped where
    mounting is not permitted."""
    import subprocess

    mounted: list[Path] = []

    def mount(options: str, name: str | None = None) -> Path:
        folder = tmp_path / (name or f"tmpfs-{len(mounted)}")
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()[:80]})")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture
def small_tmpfs(tmpfs):
    """``small_tmpfs(name, size="3m")``: a real tmpfs of that size mounted at ``tmp_path / name``."""
    return lambda name, size="3m": tmpfs(f"size={size}", name)


def fill_disk(folder: Path, leave: int = 0) -> Path:
    """Write a filler file under ``folder`` until its filesystem has at most ``leave`` bytes free."""
    filler = folder / "filler.bin"
    chunk = b"\0" * 4096
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                stats = os.statvfs(folder)
                if stats.f_bavail * stats.f_frsize <= leave:
                    break
                handle.write(chunk)
        except OSError:
            pass
    return filler
