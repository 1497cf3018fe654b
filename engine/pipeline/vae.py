"""The CogVideoX 3D VAE: frames to scaled latents and back, stoppable between its blocks.

diffusers' VAE encodes and decodes in frame batches (and tiles), each through a stack of 3D resnet
blocks; an encode or decode of a long clip takes tens of seconds on a small GPU or the CPU. A forward
pre-hook on each block polls ``should_stop`` and raises :class:`engine.errors.Cancelled`, so a cancel
or a quit takes effect within one block; the arithmetic is untouched (the hooks only read a flag).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from diffusers.models.autoencoders.autoencoder_kl_cogvideox import CogVideoXResnetBlock3D

from ..config import GIB
from ..errors import Cancelled
from ..params import EditParams
from .compile_gate import MODEL_GATE
from .model import LoadedModel, free_memory

# An untiled decode of 49 frames at 480x720 peaked at 15.3 GiB on the H100 (shared/notes/performance.md;
# tiled: 4.4 GiB, but 3.6 s instead of 2.3 s): its memory grows with the pixels decoded.
UNTILED_BYTES_PER_PIXEL = 15.3 * GIB / (49 * 480 * 720)
SPARE_BYTES = 2 * GIB


def choose_tiling(model: LoadedModel, params: EditParams, num_frames: int) -> bool:
    """Whether the VAE runs tiled, per ``params.vae_tiling``. ``auto``: off on the CPU; on a GPU, on only
    when the free memory would not hold an untiled decode of ``num_frames`` frames (tiling is slower)."""
    if params.vae_tiling != "auto":
        return params.vae_tiling == "on"
    if model.device.type != "cuda":
        return False
    return free_memory(model.device) < UNTILED_BYTES_PER_PIXEL * num_frames * params.height * params.width + SPARE_BYTES


def set_tiling(model: LoadedModel, on: bool) -> None:
    """Switch the VAE's tiling on or off for what follows (encode and decodes)."""
    if on:
        model.pipeline.vae.enable_tiling()
    else:
        model.pipeline.vae.disable_tiling()


@contextlib.contextmanager
def stoppable(vae: torch.nn.Module, should_stop: Callable[[], bool] | None) -> Iterator[None]:
    """While inside, every resnet block of ``vae`` (and its encoder and decoder, once per frame batch
    or tile) first checks ``should_stop`` and raises Cancelled when it says so."""
    if should_stop is None:
        yield
        return

    def check(_module: torch.nn.Module, _args: tuple) -> None:
        if should_stop():
            raise Cancelled()

    blocks = [m for m in vae.modules() if isinstance(m, CogVideoXResnetBlock3D)]
    blocks += [m for m in (getattr(vae, "encoder", None), getattr(vae, "decoder", None)) if m is not None]
    handles = [block.register_forward_pre_hook(check) for block in blocks]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def encode_frames(model: LoadedModel, frames: torch.Tensor, should_stop: Callable[[], bool] | None = None
                  ) -> torch.Tensor:
    """Frames [F, C, H, W] in [-1, 1] -> latents [1, F', C', H/8, W/8] (float32), F' = (F - 1) / 4 + 1.

    Takes the mean of the latent distribution (deterministic, unlike sampling it) and applies the
    VAE's scaling factor. ``should_stop`` is polled between the VAE's blocks (Cancelled when True).
    """
    vae = model.pipeline.vae
    video = frames.to(model.device, model.dtype).unsqueeze(0).permute(0, 2, 1, 3, 4)  # [1, C, F, H, W]
    with MODEL_GATE.shared(), stoppable(vae, should_stop):
        latents = vae.encode(video).latent_dist.mean  # [1, C', F', h, w]
    latents = latents * vae.config.scaling_factor
    return latents.permute(0, 2, 1, 3, 4).float().contiguous()  # [1, F', C', h, w]


@torch.no_grad()
def decode_latents(model: LoadedModel, latents: torch.Tensor, should_stop: Callable[[], bool] | None = None
                   ) -> torch.Tensor:
    """Latents [1, F', C', h, w] -> frames [F, C, H, W] in [-1, 1] (float32, on the CPU); ``should_stop``
    as for :func:`encode_frames`."""
    vae = model.pipeline.vae
    scaled = latents.to(model.device, model.dtype).permute(0, 2, 1, 3, 4) / vae.config.scaling_factor
    with MODEL_GATE.shared(), stoppable(vae, should_stop):
        video = vae.decode(scaled).sample  # [1, C, F, H, W]
    return video[0].permute(1, 0, 2, 3).float().clamp(-1, 1).cpu()  # [F, C, H, W]
