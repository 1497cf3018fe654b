"""What a result is judged by: PSNR between frame stacks, and frames as uint8 pixels."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import EditError
from ..events import PSNR_ROUND_TRIP, PSNR_ROUND_TRIP_VS_VAE, PSNR_VAE


def frames_to_uint8(frames: torch.Tensor) -> np.ndarray:
    """[F, C, H, W] in [-1, 1] -> [F, H, W, C] uint8."""
    pixels = ((frames.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).contiguous().cpu().numpy()



def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two frame stacks in [-1, 1] (peak = full range)."""
    a01 = (a.float().clamp(-1, 1) + 1) / 2
    b01 = (b.float().clamp(-1, 1) + 1) / 2
    mse = torch.mean((a01 - b01) ** 2).item()
    return float("inf") if mse == 0 else 10.0 * float(np.log10(1.0 / mse))


def inversion_metrics(original: torch.Tensor, round_trip: torch.Tensor, vae_only: torch.Tensor) -> dict[str, float]:
    """The round trip's PSNR against the original and against the VAE-only decode, and the VAE's own."""
    return {PSNR_ROUND_TRIP: psnr(round_trip, original), PSNR_ROUND_TRIP_VS_VAE: psnr(round_trip, vae_only),
            PSNR_VAE: psnr(vae_only, original)}


NON_FINITE_FIX = ("try --dtype fp32 (or bf16 where it ran in fp16); if it persists, the model's weights are "
                  "damaged or it is not a CogVideoX-5B fine-tune: download or export it again")


def check_finite(stage: str, dtype_name: str, *tensors: torch.Tensor) -> None:
    """Raise a one-line EditError when any of ``tensors`` holds NaN or infinity (the model diverged)."""
    for tensor in tensors:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise EditError(f"the model produced NaN or infinite values in the {stage} stage ({dtype_name}); "
                            "nothing was written", NON_FINITE_FIX)
