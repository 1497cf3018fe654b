"""``cogedit-tui bench``: the reference algorithm against the engine's default path, timed in one run.

Both paths run through :func:`engine.pipeline.edit.run_edit` on the same model and the same generated clip:

- *reference*: preset ``reference`` (guided empty-prompt inversion, literal guidance), one job per
  variant, each with its own inversion, as ``inference/ddim_inversion.py`` of zai-org/CogVideo runs them;
- *engine*: the default parameters (but the edit starts from the reference's seeded noise, so both paths
  compute the same edit), one job for all variants (one inversion, variants batched);
- the opt-in approximations: *engine + shared_reference* (``--approx``) and *engine with FP8
  projections* (``--paths engine,engine_fp8``), each with its error against the exact engine path
  (same seeds).

Times come from the stage events, with the GPU synchronized at every stage boundary and step, so
they are real. ``--time-steps N`` runs only the first N steps of every sampling stage (invert, round
trip, edit) and extrapolates each to ``--steps`` at its measured seconds per step: every step of a
stage does the same work. The latents of such a run are not an edit, only its cost is real.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..demo.sample_clip import write_sample_clip
from ..events import STAGES, Event, StageFinished, StageStarted, StepProgress
from ..kernels.select import apply_speed, resolve_attention, use_kernels
from ..params import EditParams, build_params
from ..pipeline.artifacts import Variant
from ..pipeline.edit import run_edit
from ..pipeline.model import LoadedModel, quiet_libraries, wrap_pipeline
from .models import BenchArch, clip_forward_flops, forward_flops, latent_video_tokens

SAMPLING_STAGES = ("invert", "round_trip", "edit")
DEFAULT_PEAK_TFLOPS = 989.0  # dense bf16 of an H100 SXM; the H200 has the same tensor cores
PROMPTS = ("a watercolor painting of a red disc and a blue square", "a neon sign at night",
           "an oil painting in the style of van gogh", "a pencil sketch on white paper",
           "a mosaic of small glass tiles", "a claymation scene", "a snowy winter landscape",
           "a cyberpunk city street")


@dataclass
class StageTiming:
    """One stage of one path, summed over the jobs that ran it."""

    runs: int = 0
    seconds: float = 0.0  # measured
    sampling_seconds: float = 0.0  # from each run's start to its last denoising step
    first_steps: list[float] = field(default_factory=list)  # each run's first step (warms up)
    later_steps: list[float] = field(default_factory=list)
    forwards: int = 0
    flop: float = 0.0  # over all forwards
    rows: int = 0  # batch rows of the last forward
    injected_rows: int = 0

    @property
    def steps(self) -> int:
        return len(self.first_steps) + len(self.later_steps)

    def seconds_per_step(self) -> float | None:
        """Steady-state seconds per step: the mean of steps after each run's first, when there are any."""
        timed = self.later_steps or self.first_steps
        return sum(timed) / len(timed) if timed else None

    def missing_steps(self, target_steps: int) -> int:
        return self.runs * target_steps - self.steps if self.steps else 0

    def full_seconds(self, target_steps: int) -> float:
        """Seconds at ``target_steps`` steps per run: measured, plus untimed steps at the steady rate."""
        return self.seconds + self.missing_steps(target_steps) * (self.seconds_per_step() or 0.0)


class StageClock:
    """Subscribes to run_edit's events and to the transformer's forwards; synchronizes the GPU at
    every stage boundary and step, so each interval covers the work queued inside it."""

    def __init__(self, model: LoadedModel):
        self.model = model
        self.stages: dict[str, StageTiming] = {}
        self.current: str | None = None
        self._stage_start = self._last_mark = 0.0

    def now(self) -> float:
        if self.model.device.type == "cuda":
            torch.cuda.synchronize(self.model.device)
        return time.perf_counter()

    def __call__(self, event: Event) -> None:
        if not isinstance(event, (StageStarted, StepProgress, StageFinished)):
            return
        now = self.now()
        timing = self.stages.setdefault(event.stage, StageTiming())
        if isinstance(event, StageStarted):
            self.current, self._stage_start, self._last_mark = event.stage, now, now
            timing.runs += 1
        elif isinstance(event, StepProgress) and event.stage in SAMPLING_STAGES:
            (timing.first_steps if event.step == 1 else timing.later_steps).append(now - self._last_mark)
            timing.sampling_seconds += now - self._last_mark
            self._last_mark = now
        elif isinstance(event, StageFinished):
            timing.seconds += now - self._stage_start
            self.current = None

    def on_forward(self, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        """Forward pre-hook: count the FLOPs of the batch the transformer is about to run."""
        if self.current not in SAMPLING_STAGES:
            return
        hidden, text = kwargs["hidden_states"], kwargs["encoder_hidden_states"]  # [B, F, C, H, W], [B, T, D]
        video = latent_video_tokens(module.config, hidden.size(1), hidden.size(3), hidden.size(4))
        plan = self.model.injection.plan
        timing = self.stages[self.current]
        timing.rows, timing.injected_rows = hidden.size(0), plan.num_edited if plan else 0
        timing.forwards += 1
        timing.flop += forward_flops(module.config, video, text.size(1), timing.rows, timing.injected_rows).total


@dataclass
class PathResult:
    """One timed path: its stages, wall time, GPU memory peak and edited latents."""

    name: str
    description: str
    jobs: int
    variants: int
    wall_seconds: float
    stages: dict[str, StageTiming]
    peak_memory_bytes: int | None
    latents: list[torch.Tensor]

    def total_seconds(self, target_steps: int) -> float:
        extra = sum(t.full_seconds(target_steps) - t.seconds for name, t in self.stages.items()
                    if name in SAMPLING_STAGES)
        return self.wall_seconds + extra

    def round_trip_sampling_seconds(self, target_steps: int) -> float:
        timing = self.stages.get("round_trip")
        if timing is None:
            return 0.0
        return timing.sampling_seconds + timing.missing_steps(target_steps) * (timing.seconds_per_step() or 0.0)

    def figures(self, target_steps: int, peak_tflops: float) -> dict[str, Any]:
        stages = {}
        for name in sorted(self.stages, key=lambda s: STAGES.index(s) if s in STAGES else len(STAGES)):
            t = self.stages[name]
            entry: dict[str, Any] = {"runs": t.runs, "measured_seconds": t.seconds,
                                     "seconds": t.full_seconds(target_steps)}
            if name in SAMPLING_STAGES and t.steps:
                per_step = t.seconds_per_step()
                flop = t.flop / t.forwards if t.forwards else 0.0
                achieved = flop / per_step / 1e12 if per_step else 0.0
                entry |= {"steps_timed": t.steps, "steps": t.runs * target_steps, "seconds_per_step": per_step,
                          "rows": t.rows, "injected_rows": t.injected_rows, "flop_per_step": flop,
                          "tflops": achieved, "percent_of_peak": 100.0 * achieved / peak_tflops}
            stages[name] = entry
        measured_staged = sum(t.seconds for t in self.stages.values())
        return {"description": self.description, "jobs": self.jobs, "variants": self.variants,
                "measured_seconds": self.wall_seconds, "total_seconds": self.total_seconds(target_steps),
                "unstaged_seconds": self.wall_seconds - measured_staged,
                "round_trip_sampling_seconds": self.round_trip_sampling_seconds(target_steps),
                "peak_memory_bytes": self.peak_memory_bytes, "stages": stages}


@contextlib.contextmanager
def limit_steps(model: LoadedModel, limit: int | None) -> Iterator[None]:
    """Within this block, every sampling stage on ``model`` runs only the first ``limit`` of its
    timesteps; the schedule is still that of its step count (a DDIM step reads the scheduler's
    ``num_inference_steps``, not the length of its timesteps). The benchmark times a few steps of
    each stage this way and extrapolates; ``None`` leaves sampling untouched."""
    if limit is None:
        yield
        return

    def limited(make_scheduler):
        def make():
            scheduler = make_scheduler()
            set_timesteps = scheduler.set_timesteps

            def set_first_timesteps(*args, **kwargs):
                set_timesteps(*args, **kwargs)
                scheduler.timesteps = scheduler.timesteps[:limit]

            scheduler.set_timesteps = set_first_timesteps
            return scheduler
        return make

    model.forward_scheduler = limited(model.forward_scheduler)
    model.inverse_scheduler = limited(model.inverse_scheduler)
    try:
        yield
    finally:
        del model.forward_scheduler, model.inverse_scheduler  # the class's own again


def time_path(model: LoadedModel, name: str, description: str, clip: Path, jobs: list[list[Variant]],
              params: EditParams, output_dir: Path, time_steps: int | None,
              kernels: tuple[str, bool, bool] = ("default", False, False)) -> PathResult:
    """Run ``jobs`` (each a run_edit call with its variants) one after the other and time them, with
    ``kernels`` = (attention choice, compiled blocks, FP8 blocks)."""
    clock = StageClock(model)
    if model.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(model.device)
    hook = model.pipeline.transformer.register_forward_pre_hook(clock.on_forward, with_kwargs=True)
    latents: list[torch.Tensor] = []
    try:
        start = clock.now()
        with limit_steps(model, time_steps), use_kernels(model, *kernels):
            for variants in jobs:
                results = run_edit(model, clip, variants, params, output_dir / name, emit=clock)
                latents += [r.latents.detach().float().cpu() for r in results]
        wall = clock.now() - start
    finally:
        hook.remove()
    peak = torch.cuda.max_memory_allocated(model.device) if model.device.type == "cuda" else None
    return PathResult(name, description, len(jobs), sum(len(j) for j in jobs), wall, clock.stages, peak, latents)


def first_call_seconds(warmup: PathResult, timed: PathResult) -> float:
    """What the warm-up's first denoising steps cost beyond a steady step, summed over the sampling
    stages: for compiled blocks, the compilation of each batch shape (done once per worker; the timed
    run, which reuses it, shows none); otherwise the first calls' kernel selection and allocations."""
    extra = 0.0
    for name in SAMPLING_STAGES:
        first, steady = warmup.stages.get(name), timed.stages.get(name)
        if first and first.first_steps and steady and steady.seconds_per_step():
            extra += sum(first.first_steps) - len(first.first_steps) * steady.seconds_per_step()
    return extra


def latent_difference(exact: list[torch.Tensor], other: list[torch.Tensor]) -> dict[str, float | None]:
    """Max and mean absolute difference of two paths' edited latents, with the exact latents' RMS for
    scale (None where a figure is not finite: random weights can overflow)."""
    a, b = torch.cat(exact), torch.cat(other)
    diff = (a - b).abs()
    return {name: (value if math.isfinite(value) else None) for name, value in
            {"max_abs_diff": diff.max().item(), "mean_abs_diff": diff.mean().item(),
             "exact_rms": a.pow(2).mean().sqrt().item()}.items()}


def bench_params(arch: BenchArch, steps: int, preset: str, **overrides: Any) -> EditParams:
    """Every path starts its edit from the seeded noise the reference starts from and inverts by plain
    DDIM steps, so the engine's paths compute the reference's edit (the default preset's start from the
    inverted latent costs the same; ``exact_inversion`` adds transformer forwards, not timed here)."""
    return build_params({"max_num_frames": arch.frames, "height": arch.height, "width": arch.width,
                         "num_inference_steps": steps, "init": "noise", "exact_inversion": 0, **overrides},
                        preset=preset)


def build_model(arch: BenchArch, device: torch.device) -> LoadedModel:
    start = time.perf_counter()
    pipeline = arch.build(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return wrap_pipeline(pipeline, arch.description, "<in memory>", load_seconds=time.perf_counter() - start)


PATHS = {
    # name: (description, preset, overrides, one job per variant?, kernels: (attention, compiled, fp8))
    "reference": ("preset reference, one job per variant, each with its own inversion; PyTorch's default "
                  "attention, no compile (the reference script's kernels)", "reference", {}, True,
                  ("default", False, False)),
    "engine_plain": ("engine arithmetic (one inversion, variants batched) on the reference's kernels",
                     "default", {}, False, ("default", False, False)),
    "engine_cudnn": ("engine arithmetic, cuDNN attention, no compile", "default", {}, False,
                     ("cudnn", False, False)),
    "engine": ("the engine's default path: one inversion, variants batched, compiled blocks with the fused GELU, "
               "FlashAttention-3 where installed on Hopper, else the Triton attention (else cuDNN's)", "default", {},
               False, ("auto", True, False)),
    "engine_compiled_triton": ("the engine's path with the Triton attention kernel", "default", {}, False,
                               ("triton", True, False)),
    "engine_compiled_cudnn": ("the engine's path with cuDNN's attention", "default", {},
                              False, ("cudnn", True, False)),
    "engine_shared_reference": ("engine path with shared_reference=True (approximate)", "default",
                                {"shared_reference": True}, False, ("auto", True, False)),
    "engine_fp8": ("engine path with FP8 projections in the blocks (approximate; --fp8)", "default", {}, False,
                   ("auto", True, True)),
}
DEFAULT_PATHS = ("reference", "engine")
APPROXIMATE_PATHS = {"engine_shared_reference": "shared_reference", "engine_fp8": "fp8"}


def run_benchmark(arch: BenchArch, device: torch.device, steps: int, num_variants: int, time_steps: int | None,
                  approx: bool, peak_tflops: float, seed: int, compile_blocks: bool | None = None,
                  path_names: tuple[str, ...] = DEFAULT_PATHS, compile_mode: str | None = None) -> dict[str, Any]:
    """Build the model, time every path, and return all figures (what ``--json`` writes)."""
    quiet_libraries()
    model = build_model(arch, device)
    weights = torch.cuda.memory_allocated(device) if device.type == "cuda" else None
    apply_speed(model, "auto", compile_blocks, compile_mode, fp8="engine_fp8" in path_names)
    compiled = model.compiled_blocks is not None
    names = list(dict.fromkeys([*path_names, *(["engine_shared_reference"] if approx else [])]))
    variants = [Variant(f"v{i}", PROMPTS[i % len(PROMPTS)], seed) for i in range(num_variants)]
    with tempfile.TemporaryDirectory(prefix="cogedit-bench-") as tmp:
        work = Path(tmp)
        clip = write_sample_clip(work / "clip.mp4", num_frames=arch.frames, height=arch.height, width=arch.width)
        # Warm-up (untimed) of every path with every batch shape it will run, so compilation and
        # first-call costs (kernel selection, allocator growth) happen here; its wall time, mostly
        # compilation, is reported apart.
        warm_start = time.perf_counter()
        warmup = []
        for name in names:
            description, preset, overrides, one_per_variant, (attention, want_compiled, fp8) = PATHS[name]
            params = bench_params(arch, steps, preset, seed=seed, **overrides)
            jobs = [variants[:1]] if one_per_variant else [variants]
            warmup.append(time_path(model, f"warmup_{name}", "", clip, jobs, params, work, time_steps=1,
                                    kernels=(attention, want_compiled and compiled, fp8)))
        warmup_seconds = time.perf_counter() - warm_start
        paths = []
        for name in names:
            description, preset, overrides, one_per_variant, (attention, want_compiled, fp8) = PATHS[name]
            params = bench_params(arch, steps, preset, seed=seed, **overrides)
            jobs = [[v] for v in variants] if one_per_variant else [variants]
            paths.append(time_path(model, name, description, clip, jobs, params, work, time_steps,
                                   kernels=(attention, want_compiled and compiled, fp8)))
    by_name = {p.name: p for p in paths}
    config = model.pipeline.transformer.config
    figures: dict[str, Any] = {
        "arch": arch.name, "model": arch.description, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": model.dtype_name, "clip": {"frames": arch.frames, "height": arch.height, "width": arch.width},
        "steps": steps, "variants": num_variants, "time_steps": time_steps, "extrapolated": time_steps is not None,
        "seed": seed, "build_seconds": model.load_seconds, "weights_memory_bytes": weights,
        "warmup_seconds": warmup_seconds, "compiled_blocks": compiled, "compile_mode": compile_mode,
        "peak_tflops": peak_tflops,
        "flop": {"forward_batch1": clip_forward_flops(config, arch.frames, arch.height, arch.width).as_dict()},
        "paths": {p.name: p.figures(steps, peak_tflops) | {
            "compiled_blocks": PATHS[p.name][4][1] and compiled, "first_call_seconds": first_call_seconds(w, p),
            "attention": resolve_attention(PATHS[p.name][4][0], device, model.dtype)}
            for w, p in zip(warmup, paths, strict=False)},
    }
    if "reference" in by_name:
        reference_total = by_name["reference"].total_seconds(steps)
        engine_total = by_name["engine"].total_seconds(steps)
        script_total = reference_total - by_name["reference"].round_trip_sampling_seconds(steps)
        figures |= {
            "ratio_engine_over_reference": engine_total / reference_total,
            "reference_script_seconds": script_total,
            "ratio_engine_over_reference_script": engine_total / script_total,
            "engine_vs_reference": latent_difference(by_name["reference"].latents, by_name["engine"].latents)}
    engine_total = by_name["engine"].total_seconds(steps)
    figures["approximations"] = {
        label: {"path": name, "speedup_over_engine": engine_total / by_name[name].total_seconds(steps),
                **latent_difference(by_name["engine"].latents, by_name[name].latents)}
        for name, label in APPROXIMATE_PATHS.items() if name in by_name}
    return figures
