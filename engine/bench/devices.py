"""``cogedit-tui bench --devices ...``: queue throughput on 1, 2, 4 ... GPUs through the real worker.

``--backend ray`` runs the same queue through the Ray backend (``--cluster``) on a private single-machine
Ray cluster holding those GPUs: one actor per GPU, clips and results through Ray's object store;
``--backend compare`` runs it both ways on all the devices and reports Ray's overhead per job.

The same queue (``--sources`` clips x ``--variants`` prompts each) runs on a worker with one device,
then two, then four (as many as ``--devices`` lists), each device holding its own pipeline built from
the 5B architecture at random weights. Throughput is jobs finished per hour of wall time, from the
moment every device's model is ready to the last job's end; scaling efficiency is the throughput on N
devices over N times the throughput on one.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import GIB, EngineConfig, JobSpec
from ..demo.sample_clip import write_sample_clip
from ..events import STAGES, EngineReady, Event, JobCancelled, JobFailed, JobFinished, JobStarted, StageFinished
from ..kernels.select import apply_speed, resolve_attention
from ..params import build_params
from ..pipeline.model import wrap_pipeline
from ..runtime.worker import Worker
from .models import ARCHS, BenchArch

_BUILD_LOCK = threading.Lock()  # building sets torch's default device and dtype: one build at a time


def device_counts(devices: list[str]) -> list[int]:
    """1, 2, 4, ... up to len(devices), always ending with all of them."""
    counts, n = [], 1
    while n < len(devices):
        counts.append(n)
        n *= 2
    return counts + [len(devices)]


def _failure(event: JobFailed, lines: int = 12) -> str:
    """A failed job's reason and the end of its log (the traceback), for the benchmark's report."""
    tail = ""
    if event.log_path and Path(event.log_path).is_file():
        tail = "\n".join(Path(event.log_path).read_text(errors="replace").splitlines()[-lines:])
    return f"{event.reason}\n{tail}".strip()


class _Tracker:
    """Counts ready devices and ended jobs, and notes which device ran each job and why any failed."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.ready = 0
        self.ended: dict[str, str] = {}
        self.device_of: dict[str, str] = {}
        self.failures: dict[str, str] = {}
        self.timed: set[str] = set()  # the jobs whose stages are summed
        self.stage_seconds: dict[str, float] = {}  # summed over their batches that ran (not cached ones)

    def __call__(self, event: Event) -> None:
        with self.cond:
            if isinstance(event, EngineReady):
                self.ready += 1
            elif isinstance(event, StageFinished) and not event.cached and self.timed.intersection(event.job_ids):
                self.stage_seconds[event.stage] = self.stage_seconds.get(event.stage, 0.0) + event.seconds
            elif isinstance(event, JobStarted):
                self.device_of[event.job_id] = event.device
            elif isinstance(event, (JobFinished, JobFailed, JobCancelled)):
                self.ended[event.job_id] = type(event).__name__
                if isinstance(event, JobFailed):
                    self.failures[event.job_id] = _failure(event)
            self.cond.notify_all()

    def wait(self, predicate, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)


@dataclass(frozen=True)
class ArchLoader:
    """``loader(device)``: the benchmark architecture at random weights on ``device``; a plain object so
    that it pickles and a Ray actor can build the model on its own GPU."""

    arch_name: str
    compile_blocks: bool

    def __call__(self, device: str):
        arch = ARCHS[self.arch_name]
        with _BUILD_LOCK:
            model = wrap_pipeline(arch.build(torch.device(device)), arch.description, "<in memory>")
        apply_speed(model, "auto", self.compile_blocks)
        return model


@contextlib.contextmanager
def _ray_holding(devices: list[str]) -> Iterator[None]:
    """A private single-machine Ray cluster that holds as many GPUs as ``devices`` (none: one CPU actor)."""
    import ray

    gpus = sum(1 for d in devices if d.startswith("cuda"))
    # A small object store: it carries clips and result folders (megabytes), and a container's /dev/shm is small.
    ray.init(num_gpus=gpus, include_dashboard=False, log_to_driver=False, namespace="cogedit-bench",
             object_store_memory=GIB)
    try:
        yield
    finally:
        ray.shutdown()


def run_queue(arch: BenchArch, devices: list[str], clips: list[Path], warm_clips: list[Path], prompts: list[str],
              params, work: Path, compile_blocks: bool, timeout: float = 3600, backend: str = "local"
              ) -> dict[str, Any]:
    """Run every clip x prompt as a job on a worker over ``devices`` (``backend`` ray: as Ray actors);
    return the figures."""
    with _ray_holding(devices) if backend == "ray" else contextlib.nullcontext():
        figures = _run_queue(arch, devices, clips, warm_clips, prompts, params, work, compile_blocks, timeout,
                             backend)
    return figures | {"backend": backend}


def _run_queue(arch: BenchArch, devices: list[str], clips: list[Path], warm_clips: list[Path], prompts: list[str],
               params, work: Path, compile_blocks: bool, timeout: float, backend: str) -> dict[str, Any]:
    tag = f"{len(devices)}dev-{backend}"
    cluster = {"cluster": "local"} if backend == "ray" else {}  # the cluster _ray_holding started
    config = EngineConfig(model=arch.name, device=",".join(devices), output_dir=work / tag / "out",
                          max_batch_variants=len(prompts), compile=compile_blocks, **cluster)
    worker = Worker.open(config, root=work / tag / "data", cache_root=work / tag / "cache",
                         loader=ArchLoader(arch.name, compile_blocks))
    tracker = _Tracker()
    worker.subscribe(tracker)
    try:
        # One untimed job per device first (model load, kernel autotuning, first-call costs), each on a
        # source of its own so every device takes one; then the clock runs over the queue.
        warm = [worker.submit(JobSpec(str(clip), "warm-up", params)) for clip in warm_clips[: len(devices)]]
        worker.start()
        if not tracker.wait(lambda: tracker.ready == len(devices) and len(tracker.ended) == len(warm), timeout):
            raise RuntimeError(f"the models did not load or warm up on {devices}")
        worker.pause()
        tracker.ended.clear()
        jobs = [worker.submit(JobSpec(str(clip), prompt, params)) for clip in clips for prompt in prompts]
        tracker.timed = {job.id for job in jobs}
        start = time.perf_counter()
        worker.resume()
        tracker.wait(lambda: len(tracker.ended) == len(jobs), timeout)
        wall = time.perf_counter() - start
    finally:
        worker.close()
    done = sum(1 for outcome in tracker.ended.values() if outcome == "JobFinished")
    per_device = {d: sum(1 for j in jobs if tracker.device_of.get(j.id) == d)
                  for d in dict.fromkeys(tracker.device_of.get(j.id, "?") for j in jobs)}
    failures = {f"{tracker.device_of.get(job_id, '?')} {job_id}": text for job_id, text in tracker.failures.items()}
    return {"devices": devices, "jobs": len(jobs), "finished": done, "wall_seconds": wall,
            "seconds_per_job": wall / done if done else float("nan"),
            "jobs_per_hour": done / wall * 3600 if wall > 0 else 0.0, "jobs_per_device": per_device,
            "stage_seconds_per_job": {stage: tracker.stage_seconds[stage] / done for stage in STAGES
                                      if stage in tracker.stage_seconds} if done else {}, "failures": failures}


def run_device_scaling(args: argparse.Namespace, devices: list[str]) -> dict[str, Any]:
    arch = dataclasses.replace(ARCHS[args.arch], **{name: getattr(args, name) for name in ("height", "width")
                                                     if getattr(args, name, None)})
    prompts = [f"variant {i}: a watercolor painting" for i in range(args.variants)]
    params = build_params({"max_num_frames": args.frames, "height": arch.height, "width": arch.width,
                           "num_inference_steps": args.steps})
    compile_blocks = bool(args.compile)
    runs = []
    with tempfile.TemporaryDirectory(prefix="cogedit-bench-devices-") as tmp:
        work = Path(tmp)
        clips, warm_clips = ([write_sample_clip(work / f"{kind}{i}.mp4", num_frames=args.frames, height=arch.height,
                                                width=arch.width, seed=seed + i) for i in range(count)]
                             for kind, count, seed in (("clip", args.sources, 0), ("warm", len(devices), 1000)))
        # compare: the same queue on all the devices in this process, then as Ray actors.
        plan = ([(devices, "local"), (devices, "ray")] if args.backend == "compare"
                else [(devices[:n], args.backend) for n in device_counts(devices)])
        for run_devices, backend in plan:
            runs.append(run_queue(arch, run_devices, clips, warm_clips, prompts, params, work, compile_blocks,
                                  backend=backend))
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    base = runs[0]["jobs_per_hour"]  # one device (compare: this process's devices)
    for run in runs:
        n = len(run["devices"])
        run["speedup"] = run["jobs_per_hour"] / base if base else 0.0
        run["scaling_efficiency"] = run["speedup"] / (1 if args.backend == "compare" else n)
    overhead = {}
    if args.backend == "compare":
        local, ray = runs
        extra = ray["seconds_per_job"] - local["seconds_per_job"]
        overhead = {"ray_overhead_seconds_per_job": extra,
                    "ray_overhead_fraction": extra / local["seconds_per_job"] if local["seconds_per_job"] else 0.0}
    return {"arch": arch.name, "frames": args.frames, "steps": args.steps, "sources": args.sources,
            "variants": args.variants, "compiled_blocks": compile_blocks, "runs": runs, **overhead,
            "attention": resolve_attention("auto", torch.device(devices[0])),
            "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}


def format_scaling(figures: dict[str, Any]) -> str:
    lines = [f"queue throughput: {figures['sources']} source(s) x {figures['variants']} variant(s) = "
             f"{figures['sources'] * figures['variants']} jobs; {figures['arch']} at {figures['frames']} frames, "
             f"{figures['steps']} steps; compiled blocks: {figures['compiled_blocks']}; attention: "
             f"{figures.get('attention', 'not recorded')}; {figures['device_name']}",
             f"  {'devices':<9}{'backend':<9}{'wall s':>9}{'s/job':>9}{'jobs/hour':>11}{'speed-up':>10}"
             f"{'efficiency':>12}  jobs per device"]
    for run in figures["runs"]:
        lines.append(f"  {len(run['devices']):<9}{run.get('backend', 'local'):<9}{run['wall_seconds']:>9.1f}"
                     f"{run.get('seconds_per_job', float('nan')):>9.2f}{run['jobs_per_hour']:>11.1f}"
                     f"{run['speedup']:>10.2f}{run['scaling_efficiency']:>11.0%}  {run['jobs_per_device']}")
    if "ray_overhead_seconds_per_job" in figures:
        lines.append(f"  Ray's overhead: {figures['ray_overhead_seconds_per_job']:+.2f} s per job "
                     f"({figures['ray_overhead_fraction']:+.1%} of a job in this process; target under 3%)")
    for run in figures["runs"]:  # where a job's time goes on the device (the rest: between stages, transport)
        stages = run.get("stage_seconds_per_job", {})
        if stages:
            inside = sum(stages.values())
            lines.append(f"  {run.get('backend', 'local')} stages per job: "
                         + ", ".join(f"{name} {seconds:.2f}" for name, seconds in stages.items())
                         + f" s; outside them {run['seconds_per_job'] - inside:.2f} s")
    for run in figures["runs"]:
        for job, text in run.get("failures", {}).items():  # a throughput with failed jobs is no throughput
            lines.append(f"  FAILED on {len(run['devices'])} device(s), job {job}: {text}")
    return "\n".join(lines)
