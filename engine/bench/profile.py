"""``python -m engine.bench.profile``: where one transformer step's time goes, by kernel.

Times and profiles one forward of the (compiled) transformer for the shapes the engine runs: a
plain batch-1 row (inversion, round trip) and the injected edit of K variants (2K edited rows + K+1
references). GPU kernel time is grouped into matrix multiplies, attention and the rest (norms, RoPE,
modulation, copies), with the top kernels listed; then each attention kernel (SDPA's and the
engine's Triton one) and the GEMM shapes of a block are timed alone on the same shapes: the floors a
step could reach.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..kernels.flash_attention3 import fa3_attention, fa3_available
from ..kernels.select import apply_speed
from ..kernels.triton_attention import flash_attention, triton_available
from ..pipeline.attention import InjectionPlan
from ..pipeline.model import LoadedModel, quiet_libraries, resolve_device, rotary_embeddings
from .models import ARCHS, forward_flops, latent_video_tokens, measure_matmul_tflops
from .timing import build_model

CATEGORIES = (("attention", ("fmha", "flash", "attention", "sdpa", "cudnn_generated")),
              ("matmul", ("gemm", "xmma", "cutlass", "nvjet", "matmul", "_mm_", "addmm")))


def category(kernel: str) -> str:
    name = kernel.lower()
    for label, needles in CATEGORIES:
        if any(n in name for n in needles):
            return label
    return "other"


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Mean seconds of ``fn`` over ``repeats`` calls after one warm-up call."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda _: None)
    fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats


def step_inputs(model: LoadedModel, frames: int, height: int, width: int, variants: int):
    """A forward's inputs: batch-1 (variants=0) or the injected edit of ``variants`` prompts."""
    transformer = model.pipeline.transformer
    g = torch.Generator(model.device).manual_seed(0)
    latent = torch.randn(1, (frames - 1) // 4 + 1, transformer.config.in_channels, height // 8, width // 8,
                         generator=g, device=model.device, dtype=model.dtype)  # [1, F, C, H, W]
    if variants:
        edited, plan = 2 * variants, InjectionPlan(2 * variants, (0,) * variants + tuple(range(1, variants + 1)))
        rows = edited + variants + 1
    else:
        rows, plan = 1, None
    hidden = latent.expand(rows, *latent.shape[1:]).contiguous()
    text = torch.randn(rows, transformer.config.max_text_seq_length, transformer.config.text_embed_dim,
                       generator=g, device=model.device, dtype=model.dtype)
    timestep = torch.full((rows,), 500, device=model.device, dtype=torch.long)
    rotary = rotary_embeddings(model, latent)
    return dict(hidden_states=hidden, encoder_hidden_states=text, timestep=timestep, image_rotary_emb=rotary,
                return_dict=False), plan


def profile_step(model: LoadedModel, inputs: dict, plan: InjectionPlan | None, repeats: int, top: int):
    """Seconds per forward, kernel seconds by category, and the ``top`` kernels of one profiled forward
    (on the CPU: the profiler's CPU operators instead of GPU kernels)."""
    transformer = model.pipeline.transformer

    def forward():
        with torch.no_grad(), model.attention_backends(), model.injection.active(plan):
            return transformer(**inputs)

    seconds = timed(forward, model.device, repeats)
    on_gpu = model.device.type == "cuda"
    activity = torch.profiler.ProfilerActivity.CUDA if on_gpu else torch.profiler.ProfilerActivity.CPU
    with torch.profiler.profile(activities=[activity]) as prof:
        forward()
        if on_gpu:
            torch.cuda.synchronize(model.device)
    kernels: dict[str, float] = defaultdict(float)
    if on_gpu:  # kernels only (a CPU op's device time would count its kernels twice)
        for event in prof.events():
            if event.device_type == torch.autograd.DeviceType.CUDA:
                kernels[event.name] += event.device_time_total / 1e6
    else:
        for event in prof.key_averages():
            kernels[event.key] += event.self_cpu_time_total / 1e6
    by_category: dict[str, float] = defaultdict(float)
    for name, s in kernels.items():
        by_category[category(name)] += s
    ranked = sorted(kernels.items(), key=lambda kv: -kv[1])[:top]
    return seconds, dict(by_category), ranked


def attention_floor(device: torch.device, heads: int, head_dim: int, seq: int, rows: int, kv_factor: int,
                    repeats: int) -> dict[str, float]:
    """Seconds of one attention call per kernel (SDPA's backends, the Triton kernel, FA3), rows x
    heads x seq queries against kv_factor*seq keys."""
    g = torch.Generator(device).manual_seed(1)
    q = torch.randn(rows, heads, seq, head_dim, generator=g, device=device, dtype=torch.bfloat16)
    kv = torch.randn(2, rows, heads, kv_factor * seq, head_dim, generator=g, device=device, dtype=torch.bfloat16)
    kernels = {f"SDPA {name}": backend for name, backend in (
        ("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION),
        ("efficient", SDPBackend.EFFICIENT_ATTENTION))}
    out = {}
    for label, backend in kernels.items():
        try:
            with sdpa_kernel([backend]):
                out[label] = timed(lambda: F.scaled_dot_product_attention(q, kv[0], kv[1]), device, repeats)
        except RuntimeError as error:
            print(f"  {label}: unavailable ({str(error).splitlines()[0][:80]})")
    if triton_available(device):
        out["triton (engine)"] = timed(lambda: flash_attention(q, kv[0], kv[1]), device, repeats)
    if fa3_available(device):
        out["FlashAttention-3"] = timed(lambda: fa3_attention(q, kv[0], kv[1]), device, repeats)
    return out


def gemm_floor(device: torch.device, tokens: int, width: int, repeats: int) -> dict[str, float]:
    """TFLOP/s of a block's weight GEMMs at ``tokens`` rows: QKV/out (d x d) and the feed-forward."""
    g = torch.Generator(device).manual_seed(2)
    result = {}
    for label, k, n in (("d x d", width, width), ("d x 4d", width, 4 * width), ("4d x d", 4 * width, width)):
        a = torch.randn(tokens, k, generator=g, device=device, dtype=torch.bfloat16)
        w = torch.randn(n, k, generator=g, device=device, dtype=torch.bfloat16)
        seconds = timed(lambda a=a, w=w: F.linear(a, w), device, repeats)
        result[label] = 2 * tokens * k * n / seconds / 1e12
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=4, help="variants of the injected step [4]")
    parser.add_argument("--frames", type=int, default=49)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    quiet_libraries()
    device = resolve_device("cuda")
    arch = ARCHS["5b"]
    peak = measure_matmul_tflops(device)
    model = build_model(arch, device)
    apply_speed(model, "auto", args.compile)
    config = model.pipeline.transformer.config
    video = latent_video_tokens(config, (args.frames - 1) // 4 + 1, arch.height // 8, arch.width // 8)
    seq = video + config.max_text_seq_length
    print(f"{torch.cuda.get_device_name(device)}; measured bf16 matmul peak {peak:.0f} TFLOP/s; "
          f"{args.frames} frames: {seq} tokens per row; compiled blocks: {args.compile}")
    for variants in (0, args.variants):
        inputs, plan = step_inputs(model, args.frames, arch.height, arch.width, variants)
        rows = inputs["hidden_states"].size(0)
        start = time.perf_counter()
        seconds, by_category, ranked = profile_step(model, inputs, plan, args.repeats, args.top)
        flop = forward_flops(config, video, config.max_text_seq_length, rows, plan.num_edited if plan else 0)
        print(f"\n== {rows} rows ({plan.num_edited if plan else 0} injected): {seconds:.3f} s per forward, "
              f"{flop.total / seconds / 1e12:.0f} TFLOP/s = {100 * flop.total / seconds / 1e12 / peak:.1f}% of peak "
              f"(attention {flop.attention:.3g}, linear {flop.linear:.3g} FLOP; first calls "
              f"{time.perf_counter() - start:.0f} s)")
        kernel_total = sum(by_category.values())
        for label, s in sorted(by_category.items(), key=lambda kv: -kv[1]):
            floor = {"attention": flop.attention, "matmul": flop.linear}.get(label)
            rate = f", {floor / s / 1e12:.0f} TFLOP/s" if floor else ""
            print(f"  {label:10s} {s:7.3f} s  {100 * s / kernel_total:5.1f}%{rate}")
        for name, s in ranked:
            print(f"    {s * 1e3:8.1f} ms  {category(name):9s} {name[:110]}")
    heads, head_dim = config.num_attention_heads, config.attention_head_dim
    print("\n== attention alone, one layer (ms; TFLOP/s)")
    for rows, kv_factor in ((1, 1), (2 * args.variants, 2), (args.variants + 1, 1)):
        flop = 4 * rows * heads * seq * kv_factor * seq * head_dim
        for label, s in attention_floor(device, heads, head_dim, seq, rows, kv_factor, args.repeats * 3).items():
            print(f"  {rows} rows, keys x{kv_factor}, {label:20s} {s * 1e3:7.2f} ms  {flop / s / 1e12:4.0f}")
    print("\n== weight GEMMs alone (TFLOP/s)")
    for rows in (1, 3 * args.variants + 1):
        rates = gemm_floor(device, rows * seq, heads * head_dim, args.repeats * 3)
        print(f"  {rows} rows: " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
