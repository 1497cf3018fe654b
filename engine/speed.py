"""Speed settings of a loaded model that leave its arithmetic alone: the attention kernel,
``torch.compile`` of the transformer blocks, and the feed-forward's GELU fused into its GEMM (and,
opt-in and approximate, FP8 projections: engine.fp8).

- Attention: the injection processor calls the attention kernel itself (so diffusers' attention-
  backend switch does not reach it): the model's ``injection.attend``, SDPA unless ``fa3`` or
  ``triton`` puts FlashAttention-3 (engine.flash_attention3) or engine.triton_attention's kernel
  there; :func:`attention_kernels` picks SDPA's backend around each transformer call. ``auto`` is
  FlashAttention-3 on a Hopper GPU where it is installed, else the Triton kernel on a GPU with
  Triton (each measured faster than the next on the H100: BENCHMARKS.md), else cuDNN's fused
  attention first, then flash, then memory-efficient; ``default`` leaves PyTorch's order untouched.
- Compile: each of the 42 identical blocks is compiled (regional compilation: one graph serves every
  block, so compiling takes seconds per batch shape rather than minutes); compiled once per worker and
  reused by every job. :func:`use_kernels` runs a block of code on a chosen attention kernel and the compiled
  or the plain blocks (the benchmark's baseline is PyTorch's default attention, uncompiled, as the
  reference script runs).
- Fused GELU: the compiled blocks are copies of the model's blocks (sharing every weight) whose
  feed-forward computes ``gelu_tanh(x W^T + b)`` as one cuBLASLt GEMM with the GELU in its epilogue
  (:func:`linear_gelu_tanh`), instead of a GEMM and a separate pass over its 4x-wide output. The same
  function, rounded once instead of twice; the plain blocks keep diffusers' own feed-forward.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from diffusers.models.activations import GELU
from torch.nn.attention import SDPBackend, sdpa_kernel

from .errors import ModelError
from .flash_attention3 import fa3_attention, fa3_available
from .fp8 import check_fp8_available, fp8_blocks
from .jobs import ATTENTION_CHOICES
from .model import LoadedModel
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


@contextlib.contextmanager
def attention_kernels(choice: str) -> Iterator[None]:
    """SDPA's backends, in priority order, for the code inside (``default``: untouched; ``fa3`` and
    ``triton``: cuDNN first for any SDPA call their kernel does not replace)."""
    if choice == "default":
        yield
        return
    with sdpa_kernel(_BACKENDS["cudnn" if choice in _KERNELS else choice], set_priority=True):
        yield


@torch.library.custom_op("cogedit::linear_gelu_tanh", mutates_args=())
def linear_gelu_tanh(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``gelu(x @ weight.T + bias, approximate="tanh")``; on CUDA one cuBLASLt GEMM with a GELU epilogue
    (``torch._addmm_activation``, tanh-approximated there). An opaque op, so compilation keeps it whole."""
    if not x.is_cuda:  # the CPU's _addmm_activation uses the exact erf GELU: not this function
        return F.gelu(F.linear(x, weight, bias), approximate="tanh")
    flat = x.reshape(-1, x.size(-1))  # [N, D_in]
    return torch._addmm_activation(bias, flat, weight.t(), use_gelu=True).view(*x.shape[:-1], weight.size(0))


@linear_gelu_tanh.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return x.new_empty(*x.shape[:-1], weight.size(0))


class FusedGELUProjection(torch.nn.Module):
    """diffusers' ``GELU(approximate="tanh")`` (projection then activation) as one fused op; it holds
    the original projection, so the weights are shared, not copied."""

    def __init__(self, proj: torch.nn.Linear):
        super().__init__()
        self.proj = proj

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return linear_gelu_tanh(hidden_states, self.proj.weight, self.proj.bias)


def with_fused_gelu(block: torch.nn.Module) -> torch.nn.Module:
    """A shallow copy of a CogVideoX block whose feed-forward uses :class:`FusedGELUProjection` (the
    block itself is untouched; both share every parameter). Other activations: the block as is."""
    activation = block.ff.net[0]
    if not (isinstance(activation, GELU) and activation.approximate == "tanh" and activation.proj.bias is not None):
        return block
    ff = copy.copy(block.ff)
    ff._modules = dict(block.ff._modules)
    ff.net = torch.nn.ModuleList([FusedGELUProjection(activation.proj), *list(block.ff.net)[1:]])
    fused = copy.copy(block)
    fused._modules = dict(block._modules)
    fused.ff = ff
    return fused


def apply_speed(model: LoadedModel, attention: str = "auto", compile_blocks: bool | None = None,
                compile_mode: str | None = None, fp8: bool = False, keep_exact: bool = True) -> None:
    """Set ``model``'s attention kernel, (on a GPU by default) compile its transformer blocks
    (``compile_mode``: torch.compile's mode, e.g. max-autotune-no-cudagraphs; None: its default), and
    with ``fp8`` run them with FP8 projections (approximate: engine.fp8) — on quantized copies, or
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
