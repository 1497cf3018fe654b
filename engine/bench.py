"""``cogedit-tui bench``: the reference algorithm against the engine's default path, timed in one run.

Both paths run through :func:`engine.run.run_edit` on the same model and the same generated clip:

- *reference*: preset ``reference`` (guided empty-prompt inversion, literal guidance), one job per
  variant, each with its own inversion, as ``inference/ddim_inversion.py`` of zai-org/CogVideo runs them;
- *engine*: the default parameters, one job for all variants (one inversion, variants batched);
- the opt-in approximations: *engine + shared_reference* (``--approx``) and *engine with FP8
  projections* (``--paths engine,engine_fp8``), each with its error against the exact engine path
  (same seeds).

Times come from the stage events, with the GPU synchronized at every stage boundary and step, so
they are real. ``--time-steps N`` runs only the first N steps of every sampling stage (invert, round
trip, edit) and extrapolates each to ``--steps`` at its measured seconds per step: every step of a
stage does the same work. The latents of such a run are not an edit, only its cost is real.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .artifacts import Variant
from .bench_models import (ARCHS, BenchArch, clip_forward_flops, forward_flops, latent_video_tokens,
                           measure_matmul_tflops)
from .bench_report import format_report
from .events import STAGES, Event, StageFinished, StageStarted, StepProgress
from .model import LoadedModel, quiet_libraries, resolve_device, wrap_pipeline
from .outputs import write_json_atomic
from .params import EditParams, build_params
from .run import run_edit
from .sample_clip import write_sample_clip
from .sampling import limit_steps
from .speed import apply_speed, resolve_attention, use_kernels

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
        with limit_steps(time_steps), use_kernels(model, *kernels):
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
    return build_params({"max_num_frames": arch.frames, "height": arch.height, "width": arch.width,
                         "num_inference_steps": steps, **overrides}, preset=preset)


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
            for w, p in zip(warmup, paths)},
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


# -- command line ---------------------------------------------------------------------------------

def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", choices=sorted(ARCHS), default="5b",
                        help="5b: the CogVideoX-5B architecture with random weights, built on the GPU in bf16; "
                             "tiny: the tiny test model on the CPU (a smoke test in seconds)")
    parser.add_argument("--device", default=argparse.SUPPRESS,
                        help="cpu, cuda or cuda:N [default: first GPU for 5b, cpu for tiny]")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps of every sampling stage [50]")
    parser.add_argument("--variants", type=int, default=4, help="prompts edited from the one source [4]")
    parser.add_argument("--time-steps", type=int, metavar="N",
                        help="run only N steps of each sampling stage and extrapolate to --steps "
                             "(to fit a time limit)")
    parser.add_argument("--approx", action="store_true",
                        help="also time shared_reference=True and report its error against the exact path")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every figure as JSON")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the GPU's bf16 peak that %%-of-peak refers to [default: an 8192^3 bf16 matrix "
                             f"product measured at start; {DEFAULT_PEAK_TFLOPS:g} (spec sheet) on the CPU]")
    parser.add_argument("--seed", type=int, default=42, help="seed of every variant's initial noise [42]")
    parser.add_argument("--paths", default=",".join(DEFAULT_PATHS),
                        help=f"comma list of paths to time, of {', '.join(PATHS)} [{','.join(DEFAULT_PATHS)}]")
    parser.add_argument("--devices", metavar="LIST",
                        help="instead of the paths: queue throughput on 1, 2, 4 ... of these devices "
                             "(cuda:0,cuda:1,... or all) through the worker, one pipeline per device")
    parser.add_argument("--sources", type=int, default=4, help="with --devices: clips in the queue [4]")
    parser.add_argument("--frames", type=int, help="with --devices: frames per clip [the arch's: 49 for 5b]")
    parser.add_argument("--compile-mode", default=None,
                        help="torch.compile mode for the blocks (e.g. max-autotune-no-cudagraphs) [its default]")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="compile the transformer blocks for the engine's paths [default: on a GPU]")


def _argument_problems(args: argparse.Namespace) -> list[str]:
    problems = []
    for name in ("steps", "variants"):
        if getattr(args, name) < 1:
            problems.append(f"--{name} must be at least 1")
    if args.time_steps is not None and args.time_steps < 1:
        problems.append("--time-steps must be at least 1")
    if args.peak_tflops is not None and args.peak_tflops <= 0:
        problems.append("--peak-tflops must be positive")
    unknown = [p for p in args.paths.split(",") if p not in PATHS]
    if unknown or "engine" not in args.paths.split(","):
        problems.append(f"--paths takes names of {', '.join(PATHS)} and must include engine")
    return problems


def run_bench(args: argparse.Namespace) -> int:
    """Run the benchmark as ``args`` (from :func:`add_bench_arguments`) say; prints the report."""
    problems = _argument_problems(args)
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return 2
    arch = ARCHS[args.arch]
    device = resolve_device(getattr(args, "device", None) or arch.default_device)
    if args.peak_tflops is None:
        args.peak_tflops = measure_matmul_tflops(device) if device.type == "cuda" else DEFAULT_PEAK_TFLOPS
    if args.devices:
        from .bench_devices import format_scaling, run_device_scaling
        from .model import resolve_devices

        args.frames = args.frames or arch.frames
        figures = run_device_scaling(args, resolve_devices(args.devices))
        print(format_scaling(figures))
        if args.json:
            write_json_atomic(args.json, figures)
        return 0
    time_steps = args.time_steps if args.time_steps is not None and args.time_steps < args.steps else None
    if arch.name == "5b" and device.type != "cuda":
        print("warning: the 5B architecture on the CPU takes minutes per step", file=sys.stderr)
    figures = run_benchmark(arch, device, args.steps, args.variants, time_steps, args.approx,
                            args.peak_tflops, args.seed, args.compile, tuple(args.paths.split(",")),
                            args.compile_mode)
    print(format_report(figures))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.json, figures)
        print(f"figures written to {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cogedit-tui bench", description=__doc__.splitlines()[0])
    add_bench_arguments(parser)
    return run_bench(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
