"""Opt-in FP8 linear layers for the transformer blocks (approximate; ``--fp8``).

The blocks' projections (Q, K, V, output, feed-forward) run as FP8 (e4m3) matrix products with
dynamic per-row scales of activations and weights, through torchao's
``Float8DynamicActivationFloat8WeightConfig``; attention, norms and the timestep modulation stay
bf16. This changes the arithmetic beyond float rounding, so it is off unless asked for, recorded in
each result's job.json, part of the inversion cache's key, and the benchmark reports its error
against the exact path (``--paths engine,engine_fp8``).

The worker, which runs every job of an ``--fp8`` engine in FP8, quantizes the blocks in place (the
5B's projections then take 5.6 GB instead of 11 GB); the benchmark quantizes *copies*, keeping the
bf16 blocks for the exact path it compares against.
"""

from __future__ import annotations

import copy

import torch

from ..errors import ModelError

FP8_MIN_CAPABILITY = (8, 9)  # FP8 tensor cores: Ada (8.9) and Hopper (9.0) onwards
NO_FP8_FIX = "run without --fp8"


def check_fp8_available(device: torch.device) -> None:
    """ModelError, naming what is missing, unless FP8 matrix products can run on ``device``."""
    if device.type != "cuda":
        raise ModelError(f"FP8 needs an NVIDIA GPU (compute capability 8.9 or newer); the model is on {device}",
                         NO_FP8_FIX)
    capability = torch.cuda.get_device_capability(device)
    if capability < FP8_MIN_CAPABILITY:
        name = torch.cuda.get_device_name(device)
        raise ModelError(f"FP8 needs a GPU of compute capability 8.9 or newer (Ada, Hopper); {name} is "
                         f"{capability[0]}.{capability[1]}", NO_FP8_FIX)
    try:
        import torchao.quantization  # noqa: F401
    except ImportError:
        raise ModelError("FP8 needs torchao, which is not installed",
                         "pip install 'cogedit-tui[fp8]' (or torchao), or run without --fp8") from None


def _is_block_projection(module: torch.nn.Module, name: str) -> bool:
    """The projections of attention and feed-forward; not the norms' timestep modulation (one row
    per sample: nothing to gain, and it scales every activation of the block)."""
    return isinstance(module, torch.nn.Linear) and not name.startswith("norm")


def fp8_blocks(blocks: torch.nn.ModuleList, in_place: bool = False) -> torch.nn.ModuleList:
    """CogVideoX ``blocks`` with FP8 projections: copies (each keeping its original's attention
    processor, the shared injection state; the originals untouched), or with ``in_place`` the blocks
    themselves, their bf16 weights replaced."""
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    # set_inductor_config=False: leave torch.compile's global settings to the rest of the engine.
    config = Float8DynamicActivationFloat8WeightConfig(granularity=PerRow(), set_inductor_config=False)
    quantized = blocks if in_place else torch.nn.ModuleList()
    for block in blocks:
        target = block if in_place else copy_block(block)  # one block at a time: briefly ~0.3 GB
        quantize_(target, config, filter_fn=_is_block_projection)
        if not in_place:
            quantized.append(target)
    return quantized


def copy_block(block: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of a CogVideoX block (its own weights) that keeps the original's attention processor:
    the injection state every block reads, and with it the attention kernel (a custom op, which
    cannot be copied)."""
    processor = block.attn1.processor
    return copy.deepcopy(block, memo={id(processor): processor})
