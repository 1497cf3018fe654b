"""The CogVideoX 3D VAE: frames to scaled latents and back."""

from __future__ import annotations

import torch

from .model import LoadedModel
from .params import EditParams


def configure_tiling(model: LoadedModel, params: EditParams) -> bool:
    """Switch VAE tiling per ``params.vae_tiling`` (auto: on a GPU, where it saves memory)."""
    vae = model.pipeline.vae
    on = params.vae_tiling == "on" or (params.vae_tiling == "auto" and model.device.type == "cuda")
    if on:
        vae.enable_tiling()
    else:
        vae.disable_tiling()
    return on


@torch.no_grad()
def encode_frames(model: LoadedModel, frames: torch.Tensor) -> torch.Tensor:
    """Frames [F, C, H, W] in [-1, 1] -> latents [1, F', C', H/8, W/8] (float32), F' = (F - 1) / 4 + 1.

    Takes the mean of the latent distribution (deterministic, unlike sampling it) and applies the
    VAE's scaling factor.
    """
    vae = model.pipeline.vae
    video = frames.to(model.device, model.dtype).unsqueeze(0).permute(0, 2, 1, 3, 4)  # [1, C, F, H, W]
    latents = vae.encode(video).latent_dist.mean  # [1, C', F', h, w]
    latents = latents * vae.config.scaling_factor
    return latents.permute(0, 2, 1, 3, 4).float().contiguous()  # [1, F', C', h, w]


@torch.no_grad()
def decode_latents(model: LoadedModel, latents: torch.Tensor) -> torch.Tensor:
    """Latents [1, F', C', h, w] -> frames [F, C, H, W] in [-1, 1] (float32, on the CPU)."""
    vae = model.pipeline.vae
    scaled = latents.to(model.device, model.dtype).permute(0, 2, 1, 3, 4) / vae.config.scaling_factor
    video = vae.decode(scaled).sample  # [1, C, F, H, W]
    return video[0].permute(1, 0, 2, 3).float().clamp(-1, 1).cpu()  # [F, C, H, W]
