"""Per-job progress assembled from engine events: the stage under way (and which of the job's stages it
is), step i/n, speed, the time spent in it, and an ETA for the stage, the whole job and the queue.

ETAs come from measured costs: the current stage's speed, and what each stage took before (learned
from the stages finished this session and from the history's timings: seconds per step for the
stepped stages, seconds for the others). A stage never measured makes an estimate a lower bound
(``JobProgress.eta_exact`` is False), shown with a ``+``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from engine.api import (
    STAGES,
    Event,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobQueued,
    JobRecord,
    JobStarted,
    StageFinished,
    StageStarted,
    StepProgress,
)

JOB_STAGES = tuple(stage for stage in STAGES if stage != "load")  # the stages every job goes through
STEPPED = ("invert", "round_trip", "edit")  # stages of num_inference_steps steps


@dataclass
class JobProgress:
    """Where one job stands while it runs (shared stages count for every variant of the batch)."""

    stage: str | None = None
    step: int = 0
    total: int = 0
    it_per_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    cached: set[str] = field(default_factory=set)
    steps: int = 0  # num_inference_steps, when known
    started_at: float = 0.0  # when the job started (time.time)
    stage_started_at: float = 0.0  # when the current stage started
    cancelling: bool = False  # asked to cancel; still running until the stage's next step
    job_eta: float | None = None  # seconds left in the whole job, as last estimated
    eta_exact: bool = True  # False: some later stage was never measured, job_eta is a lower bound

    @property
    def eta_seconds(self) -> float | None:
        """Time left in the current stage, from its measured speed."""
        if self.stage is None or not self.total or self.it_per_s <= 0:
            return None
        return max(0.0, (self.total - self.step) / self.it_per_s)

    @property
    def stage_number(self) -> int:
        """1-based position of the current stage among the job's stages (0: none yet)."""
        return JOB_STAGES.index(self.stage) + 1 if self.stage in JOB_STAGES else 0

    def stage_elapsed(self, now: float | None = None) -> float:
        return max(0.0, (now or time.time()) - self.stage_started_at) if self.stage_started_at else 0.0


class StageCosts:
    """What each stage costs: seconds per step (stepped stages) or seconds (the others), the latest."""

    def __init__(self) -> None:
        self.per_step: dict[str, float] = {}
        self.seconds: dict[str, float] = {}

    def learn(self, stage: str, seconds: float, steps: int) -> None:
        if stage in STEPPED and steps > 0:
            self.per_step[stage] = seconds / steps
        elif stage in JOB_STAGES:
            self.seconds[stage] = seconds

    def learn_record(self, record: JobRecord) -> None:
        steps = record.params.num_inference_steps
        for stage, seconds in record.timings.items():
            if seconds > 0:  # 0: from the inversion cache
                self.learn(stage, seconds, steps)

    def estimate(self, stage: str, steps: int, rate: float = 0.0) -> float | None:
        """Seconds ``stage`` should take; ``rate`` (steps/s seen in another stage) when it was never measured."""
        if stage in STEPPED:
            if stage in self.per_step:
                return self.per_step[stage] * steps
            return steps / rate if rate > 0 and steps else None
        return self.seconds.get(stage)


class ProgressTracker:
    """Applies events to the progress of the jobs they name; answers which jobs changed."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobProgress] = {}
        self.costs = StageCosts()

    def get(self, job_id: str) -> JobProgress | None:
        return self._jobs.get(job_id)

    def expect(self, job_id: str, steps: int) -> None:
        """The job's number of steps (its parameters), for the stages it has not reached."""
        self._jobs.setdefault(job_id, JobProgress()).steps = steps

    def mark_cancelling(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if job is not None:
            job.cancelling = True

    def apply(self, event: Event) -> tuple[str, ...]:
        match event:
            case JobStarted():
                steps = self._jobs[event.job_id].steps if event.job_id in self._jobs else 0
                self._jobs[event.job_id] = JobProgress(steps=steps, started_at=event.time)
                return (event.job_id,)
            case JobQueued():
                self._jobs.pop(event.job_id, None)
                return (event.job_id,)
            case StageStarted():
                for job in self._each(event.job_ids):
                    job.stage, job.step, job.total, job.it_per_s = event.stage, 0, event.total_steps, 0.0
                    job.stage_started_at = event.time
                    if event.total_steps and event.stage in STEPPED:
                        job.steps = event.total_steps
                return event.job_ids
            case StepProgress():
                for job in self._each(event.job_ids):
                    job.stage, job.step, job.total, job.it_per_s = event.stage, event.step, event.total, event.it_per_s
                return event.job_ids
            case StageFinished():
                first = True
                for job in self._each(event.job_ids):
                    if first and not event.cached:
                        self.costs.learn(event.stage, event.seconds, job.total)
                        first = False
                    job.timings[event.stage] = event.seconds
                    if event.cached:
                        job.cached.add(event.stage)
                    job.step = job.total
                return event.job_ids
            case JobFinished() | JobFailed() | JobCancelled():
                job = self._jobs.get(event.job_id)
                if job is not None:
                    job.stage, job.cancelling = None, False
                return (event.job_id,)
        return ()

    def job_eta(self, job: JobProgress, now: float | None = None) -> tuple[float | None, bool]:
        """(seconds left in the whole job, exact?) from the current stage's speed and the stage costs."""
        if job.stage is None:
            return None, False
        now = now or time.time()
        exact = True
        current = self.costs.estimate(job.stage, job.total or job.steps)  # measured before, or None
        by_speed = job.eta_seconds
        elapsed = job.stage_elapsed(now)
        if current is not None:
            left = max(current - elapsed, by_speed or 0.0)  # the stage's own tail (decodes) counts
        elif by_speed is not None:
            left = by_speed
        else:
            left, exact = 0.0, False
        for stage in JOB_STAGES[job.stage_number:]:
            estimate = self.costs.estimate(stage, job.steps, job.it_per_s)
            if estimate is None:
                exact = False
            else:
                left += estimate
        return left, exact

    def fresh_job_estimate(self, steps: int) -> tuple[float, bool]:
        """(seconds a job of ``steps`` steps should take from the start, exact?)."""
        total, exact = 0.0, True
        for stage in JOB_STAGES:
            estimate = self.costs.estimate(stage, steps)
            if estimate is None:
                exact = False
            else:
                total += estimate
        return total, exact

    def _each(self, job_ids: tuple[str, ...]):
        for job_id in job_ids:
            yield self._jobs.setdefault(job_id, JobProgress())
