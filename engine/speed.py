"""Speed settings of a loaded model that leave its arithmetic alone: the attention kernel and
``torch.compile`` of the transformer blocks.

- Attention: the injection processor calls ``F.scaled_dot_product_attention`` itself (so diffusers'
  attention-backend switch does not reach it); :func:`attention_kernels` picks SDPA's backend around
  each transformer call. ``auto`` puts cuDNN's fused attention first on a GPU, then flash, then
  memory-efficient (on the H200 with torch 2.11 this measured the same as PyTorch's own order, which
  ``default`` leaves untouched: see BENCHMARKS.md).
- Compile: each of the 42 identical blocks is compiled (regional compilation: one graph serves every
  block, so compiling takes seconds per batch shape rather than minutes); compiled once per worker and
  reused by every job. :func:`use_kernels` runs a block of code on a chosen attention kernel and the compiled
  or the plain blocks (the benchmark's baseline is PyTorch's default attention, uncompiled, as the
  reference script runs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from .model import LoadedModel

ATTENTION_CHOICES = ("auto", "default", "cudnn", "flash", "efficient", "math")
_BACKENDS = {
    "cudnn": [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
              SDPBackend.MATH],
    "flash": [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH],
    "efficient": [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH],
    "math": [SDPBackend.MATH],
}


def resolve_attention(choice: str, device: torch.device) -> str:
    """``auto``: cuDNN attention on a GPU, PyTorch's default elsewhere."""
    if choice not in ATTENTION_CHOICES:
        raise ValueError(f"attention must be one of {', '.join(ATTENTION_CHOICES)}")
    if choice == "auto":
        return "cudnn" if device.type == "cuda" else "default"
    return choice


@contextlib.contextmanager
def attention_kernels(choice: str) -> Iterator[None]:
    """SDPA's backends, in priority order, for the code inside (``default``: untouched)."""
    if choice == "default":
        yield
        return
    with sdpa_kernel(_BACKENDS[choice], set_priority=True):
        yield


def apply_speed(model: LoadedModel, attention: str = "auto", compile_blocks: bool | None = None,
                compile_mode: str | None = None) -> None:
    """Set ``model``'s attention kernel and (on a GPU by default) compile its transformer blocks
    (``compile_mode``: torch.compile's mode, e.g. max-autotune-no-cudagraphs; None: its default)."""
    model.attention = resolve_attention(attention, model.device)
    if compile_blocks is None:
        compile_blocks = model.device.type == "cuda"
    transformer = model.pipeline.transformer
    if compile_blocks and model.compiled_blocks is None:
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        model.plain_blocks = transformer.transformer_blocks
        model.compiled_blocks = torch.nn.ModuleList(
            torch.compile(block, dynamic=False, mode=compile_mode) for block in model.plain_blocks)
    transformer.transformer_blocks = model.compiled_blocks if compile_blocks else (
        model.plain_blocks or transformer.transformer_blocks)


@contextlib.contextmanager
def use_kernels(model: LoadedModel, attention: str, compiled: bool) -> Iterator[None]:
    """Run the code inside with the given attention choice, on the compiled or the plain blocks (the
    benchmark times each lever this way; compiled blocks must exist when ``compiled`` is asked)."""
    transformer = model.pipeline.transformer
    saved_blocks, saved_attention = transformer.transformer_blocks, model.attention
    if compiled and model.compiled_blocks is None:
        raise ValueError("compile the blocks first (apply_speed with compile_blocks=True)")
    transformer.transformer_blocks = (model.compiled_blocks if compiled
                                      else model.plain_blocks or transformer.transformer_blocks)
    model.attention = resolve_attention(attention, model.device)
    try:
        yield
    finally:
        transformer.transformer_blocks = saved_blocks
        model.attention = saved_attention
