"""``cogedit-tui bench`` (and ``python -m engine.bench``): its arguments and main."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import sys
from pathlib import Path

from ..output.atomic import write_json_atomic
from ..pipeline.model import resolve_device
from . import timing
from .models import ARCHS, measure_matmul_tflops
from .report import format_report
from .timing import DEFAULT_PATHS, DEFAULT_PEAK_TFLOPS, PATHS, run_benchmark


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", choices=sorted(ARCHS), default="5b",
                        help="5b / 1.5-5b: the CogVideoX-5B / CogVideoX1.5-5B architecture with random weights, "
                             "built on the GPU in bf16; tiny / tiny-1.5: the tiny test models on the CPU (a smoke "
                             "test in seconds)")
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
    parser.add_argument("--backend", choices=("local", "ray", "compare"), default="local",
                        help="with --devices: local: devices of this process; ray: Ray actors on a private "
                             "single-machine Ray cluster (needs the ray extra); compare: both, on all the "
                             "devices, and Ray's overhead per job [local]")
    parser.add_argument("--sources", type=int, default=4, help="with --devices: clips in the queue [4]")
    parser.add_argument("--frames", type=int, help="frames per clip [the arch's: 49 for 5b, 81 for 1.5-5b]")
    parser.add_argument("--height", type=int, help="frame height [the arch's: 480 for 5b, 768 for 1.5-5b]")
    parser.add_argument("--width", type=int, help="frame width [the arch's: 720 for 5b, 1360 for 1.5-5b]")
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
    for name in ("frames", "height", "width"):
        if getattr(args, name, None) is not None and getattr(args, name) < 1:
            problems.append(f"--{name} must be at least 1")
    if args.peak_tflops is not None and args.peak_tflops <= 0:
        problems.append("--peak-tflops must be positive")
    if args.backend != "local":
        if not args.devices:
            problems.append(f"--backend {args.backend} needs --devices (the queue benchmark)")
        if importlib.util.find_spec("ray") is None:
            problems.append(f"--backend {args.backend} needs Ray: pip install 'cogedit-tui[ray]'")
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
    arch = dataclasses.replace(ARCHS[args.arch], **{name: getattr(args, name) for name in ("frames", "height", "width")
                                                     if getattr(args, name, None)})
    device = resolve_device(getattr(args, "device", None) or arch.default_device)
    if args.peak_tflops is None:
        args.peak_tflops = measure_matmul_tflops(device) if device.type == "cuda" else DEFAULT_PEAK_TFLOPS
    if args.devices:
        from ..pipeline.model import resolve_devices
        from .devices import format_scaling, run_device_scaling

        args.frames = args.frames or arch.frames
        figures = run_device_scaling(args, resolve_devices(args.devices))
        print(format_scaling(figures))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(args.json, figures, allow_nan=True)
        return 0
    time_steps = args.time_steps if args.time_steps is not None and args.time_steps < args.steps else None
    if arch.name in ("5b", "1.5-5b") and device.type != "cuda":
        print("warning: the 5B architectures on the CPU take minutes per step", file=sys.stderr)
    figures = run_benchmark(arch, device, args.steps, args.variants, time_steps, args.approx,
                            args.peak_tflops, args.seed, args.compile, tuple(args.paths.split(",")),
                            args.compile_mode)
    print(format_report(figures))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.json, figures, allow_nan=True)
        print(f"figures written to {args.json}")
    return 0



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cogedit-tui bench", description=timing.__doc__.splitlines()[0])
    add_bench_arguments(parser)
    return run_bench(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
