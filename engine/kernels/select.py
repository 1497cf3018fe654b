"""Speed settings of a loaded model that leave its arithmetic alone: the attention kernel,
``torch.compile`` of the transformer blocks, and the feed-forward's GELU fused into its GEMM (and,
opt-in and approximate, FP8 projections: engine.kernels.fp8).

- Attention: the injection processor calls the attention kernel itself (so diffusers' attention-
  backend switch does not reach it): the model's ``injection.attend``, SDPA unless ``fa3`` or
  ``triton`` puts FlashAttention-3 (engine.kernels.flash_attention3) or engine.kernels.triton_attention's kernel
  there; the model's ``sdpa_backends`` order SDPA's backends around each transformer call. ``auto`` is
  FlashAttention-3 on a Hopper GPU where it is installed, else the Triton kernel on a GPU with
  Triton (each measured faster than the next on the H100: BENCHMARKS.md), else cuDNN's fused
  attention first, then flash, then memory-efficient; ``default`` leaves PyTorch's order untouched.
- Compile: each of the 42 identical blocks is compiled (regional compilation: one graph serves every
  block, so compiling takes seconds per batch shape rather than minutes); compiled once per worker and
  reused by every job. :func:`use_kernels` runs a block of code on a chosen attention kernel and the compiled
  or the plain blocks (the benchmark's baseline is PyTorch's default attention, uncompiled, as the
  reference script runs).
- Fused GELU (engine.kernels.fused_gelu): the compiled blocks are copies of the model's blocks (sharing
  every weight) whose feed-forward computes ``gelu_tanh(x W^T + b)`` as one cuBLASLt GEMM with the GELU
  in its epilogue (``linear_gelu_tanh``), instead of a GEMM and a separate pass over its 4x-wide output. The same
  function, rounded once instead of twice; the plain blocks keep diffusers' own feed-forward.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend

from ..config import ATTENTION_CHOICES
from ..errors import ModelError
from ..pipeline.model import LoadedModel
from .flash_attention3 import fa3_attention, fa3_available
from .fp8 import check_fp8_available, fp8_blocks
from .fused_gelu import with_fused_gelu
from .triton_attention import flash_attention, triton_available

_KERNELS = {"fa3": fa3_attention, "triton": flash_attention}  # the rest are SDPA's backends
_BACKENDS = {
    "cudnn": [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
              SDPBackend.MATH],
    "flash": [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH],
    "efficient": [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH],
    "math": [SDPBackend.MATH],
}


def resolve_attention(choice: str, device: torch.device, dtype: torch.dtype = torch.bfloat16) -> str:
    """``auto``: FlashAttention-3 on a Hopper GPU where installed (for ``dtype``), else the Triton kernel
    on a GPU with Triton, else cuDNN on a GPU, PyTorch's default elsewhere."""
    if choice not in ATTENTION_CHOICES:
        raise ValueError(f"attention must be one of {', '.join(ATTENTION_CHOICES)}")
    if choice == "auto":
        if device.type != "cuda":
            return "default"
        return "fa3" if fa3_available(device, dtype) else "triton" if triton_available(device) else "cudnn"
    if choice == "fa3" and not fa3_available(device, dtype):
        raise ModelError(f"the fa3 attention needs a Hopper GPU (H100/H200), bf16 and flash_attn_3 installed; "
                         f"the model is on {device}", "build it with scripts/build_flash_attention3.sh, or run "
                         "with --attention auto")
    if choice == "triton" and not triton_available(device):
        raise ModelError(f"the triton attention needs a CUDA GPU and triton; the model is on {device}",
                         "run on a GPU with PyTorch's CUDA wheels (they ship triton), or with --attention auto")
    return choice


def _use_attention(model: LoadedModel, choice: str) -> None:
    """Make ``choice`` (resolved) the attention of every block of ``model``."""
    model.attention = choice
    model.injection.attend = _KERNELS.get(choice, F.scaled_dot_product_attention)
    # SDPA's backends for any SDPA call (fa3 and triton: cuDNN first where their kernel does not replace it).
    model.sdpa_backends = None if choice == "default" else _BACKENDS["cudnn" if choice in _KERNELS else choice]


def apply_speed(model: LoadedModel, attention: str = "auto", compile_blocks: bool | None = None,
                compile_mode: str | None = None, fp8: bool = False, keep_exact: bool = True) -> None:
    """Set ``model``'s attention kernel, (on a GPU by default) compile its transformer blocks
    (``compile_mode``: torch.compile's mode, e.g. max-autotune-no-cudagraphs; None: its default), and
    with ``fp8`` run them with FP8 projections (approximate: engine.kernels.fp8) — on quantized copies, or
    without ``keep_exact`` on the blocks themselves (less memory; the model then runs only FP8)."""
    _use_attention(model, resolve_attention(attention, model.device, model.dtype))
    if compile_blocks is None:
        compile_blocks = model.device.type == "cuda"
    transformer = model.pipeline.transformer
    if model.plain_blocks is None and model.fp8_blocks is None:
        model.plain_blocks = transformer.transformer_blocks
    if compile_blocks or fp8:
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    if fp8 and model.fp8_blocks is None:
        check_fp8_available(model.device)
        quantized = fp8_blocks(model.plain_blocks, in_place=not keep_exact)
        if not keep_exact:
            model.plain_blocks = model.compiled_blocks = None  # their weights are FP8 now
        model.fp8_blocks = torch.nn.ModuleList(
            torch.compile(block, dynamic=False, mode=compile_mode) if compile_blocks else block
            for block in quantized)
    if compile_blocks and model.compiled_blocks is None and model.plain_blocks is not None:
        model.compiled_blocks = torch.nn.ModuleList(
            torch.compile(with_fused_gelu(block), dynamic=False, mode=compile_mode) for block in model.plain_blocks)
    model.fp8 = fp8
    transformer.transformer_blocks = _blocks(model, compile_blocks, fp8)


def _blocks(model: LoadedModel, compiled: bool, fp8: bool) -> torch.nn.ModuleList:
    """The block list to run: FP8, compiled or plain (which apply_speed must have built)."""
    if fp8:
        if model.fp8_blocks is None:
            raise ValueError("build the FP8 blocks first (apply_speed with fp8=True)")
        return model.fp8_blocks
    if model.plain_blocks is None and model.fp8_blocks is not None:
        raise ValueError("this model's blocks were quantized in place: it runs only in FP8")
    if compiled:
        if model.compiled_blocks is None:
            raise ValueError("compile the blocks first (apply_speed with compile_blocks=True)")
        return model.compiled_blocks
    return model.plain_blocks or model.pipeline.transformer.transformer_blocks


@contextlib.contextmanager
def use_kernels(model: LoadedModel, attention: str, compiled: bool, fp8: bool = False) -> Iterator[None]:
    """Run the code inside with the given attention choice, on the compiled, FP8 or plain blocks (the
    benchmark times each lever this way; apply_speed must have built the blocks asked for)."""
    transformer = model.pipeline.transformer
    saved = transformer.transformer_blocks, model.attention, model.fp8
    transformer.transformer_blocks = _blocks(model, compiled, fp8)
    _use_attention(model, resolve_attention(attention, model.device, model.dtype))
    model.fp8 = fp8
    try:
        yield
    finally:
        transformer.transformer_blocks, model.fp8 = saved[0], saved[2]
        _use_attention(model, saved[1])
