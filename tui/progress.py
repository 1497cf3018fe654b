"""Per-job progress assembled from engine events: the stage under way, step i/n, speed, ETA, timings."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.api import (
    Event,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobQueued,
    JobStarted,
    StageFinished,
    StageStarted,
    StepProgress,
)


@dataclass
class JobProgress:
    """Where one job stands while it runs (shared stages count for every variant of the batch)."""

    stage: str | None = None
    step: int = 0
    total: int = 0
    it_per_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    cached: set[str] = field(default_factory=set)

    @property
    def eta_seconds(self) -> float | None:
        """Time left in the current stage, from its measured speed."""
        if self.stage is None or not self.total or self.it_per_s <= 0:
            return None
        return max(0.0, (self.total - self.step) / self.it_per_s)


class ProgressTracker:
    """Applies events to the progress of the jobs they name; answers which jobs changed."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobProgress] = {}

    def get(self, job_id: str) -> JobProgress | None:
        return self._jobs.get(job_id)

    def apply(self, event: Event) -> tuple[str, ...]:
        match event:
            case JobStarted():
                self._jobs[event.job_id] = JobProgress()
                return (event.job_id,)
            case JobQueued():
                self._jobs.pop(event.job_id, None)
                return (event.job_id,)
            case StageStarted():
                for job in self._each(event.job_ids):
                    job.stage, job.step, job.total, job.it_per_s = event.stage, 0, event.total_steps, 0.0
                return event.job_ids
            case StepProgress():
                for job in self._each(event.job_ids):
                    job.stage, job.step, job.total, job.it_per_s = event.stage, event.step, event.total, event.it_per_s
                return event.job_ids
            case StageFinished():
                for job in self._each(event.job_ids):
                    job.timings[event.stage] = event.seconds
                    if event.cached:
                        job.cached.add(event.stage)
                    job.step = job.total
                return event.job_ids
            case JobFinished() | JobFailed() | JobCancelled():
                job = self._jobs.get(event.job_id)
                if job is not None:
                    job.stage = None
                return (event.job_id,)
        return ()

    def _each(self, job_ids: tuple[str, ...]):
        for job_id in job_ids:
            yield self._jobs.setdefault(job_id, JobProgress())
