"""FlashAttention-3 where it is installed: the same exact attention as engine.kernels.triton_attention, through
the ``flash_attn_3`` package's forward kernel (Dao-AILab/flash-attention's ``hopper/``, Hopper GPUs
only). Alone, one layer at CogVideoX-5B's shapes took 16-18% less time than the Triton kernel on an
H100 (BENCHMARKS.md). No wheel of it is published for current torch:
``scripts/build_flash_attention3.sh`` builds the one configuration the engine runs (head size 64,
bf16, forward) in about a minute.
"""

from __future__ import annotations

import torch

try:  # the package installs this top-level module; importing it loads the CUDA kernels
    from flash_attn_interface import flash_attn_func
except (ImportError, OSError):  # not installed, or built for another torch/CUDA
    flash_attn_func = None


def fa3_available(device: torch.device, dtype: torch.dtype = torch.bfloat16) -> bool:
    """True on a Hopper GPU (compute capability 9.x) with ``flash_attn_3`` importable and built for
    ``dtype`` (bf16 always; fp16 unless the build left it out, as the engine's script does)."""
    if flash_attn_func is None or device.type != "cuda" or torch.cuda.get_device_capability(device)[0] != 9:
        return False
    try:  # the build's switches, which FlashAttention-3's setup.py writes beside its interface
        from flash_attn_config import CONFIG
        without_fp16 = CONFIG["build_flags"].get("FLASHATTENTION_DISABLE_FP16", False)
    except (ImportError, KeyError):
        without_fp16 = False
    return dtype == torch.bfloat16 or (dtype == torch.float16 and not without_fp16)


@torch.library.custom_op("cogedit::fa3_attention", mutates_args=(), device_types="cuda")
def fa3_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) V for Q [B, H, Sq, d], K and V [B, H, Sk, d]; out [B, H, Sq, d] laid out
    as [B, Sq, H, d], as the Triton kernel's (merging the heads afterwards is a view)."""
    # FlashAttention takes [B, S, H, d] with any strides but the last: the transposes are views.
    out = flash_attn_func(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2))
    out = out[0] if isinstance(out, tuple) else out  # older releases also return the log-sum-exp
    return out.transpose(1, 2)  # [B, Sq, H, d] -> [B, H, Sq, d]


@fa3_attention.register_fake
def _(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    batch, heads, seq_q, head_dim = query.shape
    return query.new_empty(batch, seq_q, heads, head_dim).transpose(1, 2)
