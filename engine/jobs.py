"""What the engine is asked to do: the worker's configuration and a job's specification.

Light on purpose (no torch): front ends import it at start-up without loading the ML stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .params import EditParams

DEFAULT_MODEL = "THUDM/CogVideoX-5b"
# The attention kernels (engine.speed): auto; PyTorch's default order; FlashAttention-3; the engine's
# Triton kernel; or one of SDPA's backends first.
ATTENTION_CHOICES = ("auto", "default", "fa3", "triton", "cudnn", "flash", "efficient", "math")
DEFAULT_CACHE_BYTES = 20 * 1024**3


@dataclass(frozen=True)
class EngineConfig:
    """Where and how the worker runs."""

    model: str = DEFAULT_MODEL
    device: str | None = None  # cpu, cuda:N, several (cuda:0,cuda:1) or all; None: the first GPU, else the CPU
    dtype: str | None = None  # None: bf16 on a GPU, fp32 on the CPU
    output_dir: Path | None = None  # None: the data dir's outputs/
    max_batch_variants: int = 8  # most variants of a source edited in one batch (fewer when GPU memory is short)
    cache_max_bytes: int = DEFAULT_CACHE_BYTES
    attention: str = "auto"  # ATTENTION_CHOICES; auto: on a GPU FlashAttention-3, else Triton's, else cuDNN's
    compile: bool | None = None  # torch.compile the transformer blocks; None: on a GPU
    fp8: bool = False  # approximate: FP8 projections in the transformer blocks (engine.fp8; torchao, SM 8.9+)


@dataclass(frozen=True)
class JobSpec:
    """What to run: a source clip, an edit prompt and the parameters (the seed among them)."""

    source: str
    prompt: str
    params: EditParams
