"""How the app gets its engine worker: the user's model, the demo's tiny model, or a test's own.

A launcher runs in a thread worker after the app is on screen (opening the worker imports torch; the
demo may first build its tiny model), and returns the opened, not yet started, worker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.api import EngineConfig, JobSpec, build_params, open_worker

if TYPE_CHECKING:
    from engine.api import Worker


@dataclass
class Launch:
    """An opened worker, and jobs to queue as soon as the app has it."""

    worker: Worker
    initial_jobs: list[JobSpec] = field(default_factory=list)


Launcher = Callable[[], Launch]


def standard_launcher(config: EngineConfig) -> Launcher:
    """The worker for ``config`` in the user's data dir."""
    return lambda: Launch(open_worker(config))


def demo_launcher(device: str | None = None, dtype: str | None = None, output_dir: Path | None = None,
                  model: str | None = None, cluster: str | None = None) -> Launcher:
    """The demo: the toy model and its clip (written when missing), the demo's two variants queued."""

    def launch() -> Launch:
        from engine.demo import DEMO_PARAMS, DEMO_PROMPTS, prepare_demo

        model_path, clip = prepare_demo(model)
        worker = open_worker(EngineConfig(model=model_path, device=device or "cpu", dtype=dtype,
                                          output_dir=output_dir, cluster=cluster))
        params = build_params(DEMO_PARAMS)
        # Queued, running, interrupted or done already (an earlier demo): not queued again; the history
        # has the results and r re-queues an interrupted one.
        known = {(job.source, job.prompt) for job in worker.store.jobs() if job.status not in ("failed", "cancelled")}
        jobs = [JobSpec(str(clip), prompt, params) for prompt in DEMO_PROMPTS
                if (str(clip.resolve()), prompt) not in known]
        return Launch(worker, jobs)

    return launch
