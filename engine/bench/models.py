"""What the benchmark runs on: the CogVideoX-5B or CogVideoX1.5-5B architecture with random weights, or the
tiny model;
the analytic FLOP count of a transformer forward, and the GPU's measured bf16 matrix rate that
"% of peak" refers to.

The 5B pipeline is built from its published configuration directly on the device in bf16 (seconds on
a GPU, no hub, no download); its weights are random, so only the timings mean anything. The weights
are drawn under a fixed seed inside ``fork_rng``: the global RNG is left as it was.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel
from transformers import T5Config, T5EncoderModel

from ..demo import TINY_SIZE
from ..demo.tiny_model import build_tiny_pipeline
from ..params import VAE_SPATIAL
from ..toy.building import SCHEDULER_5B, offline_tokenizer

WEIGHTS_SEED = 5  # random weights of the 5B architecture: fixed, so every run builds the same model

# THUDM/CogVideoX-5b transformer/config.json (5,570,283,072 parameters).
TRANSFORMER_5B: dict[str, Any] = dict(
    num_attention_heads=48, attention_head_dim=64, num_layers=42, text_embed_dim=4096, time_embed_dim=512,
    in_channels=16, out_channels=16, sample_height=60, sample_width=90, sample_frames=49, patch_size=2,
    temporal_compression_ratio=4, max_text_seq_length=226, use_rotary_positional_embeddings=True,
    use_learned_positional_embeddings=False, flip_sin_to_cos=True, freq_shift=0,
    activation_fn="gelu-approximate", timestep_activation_fn="silu", norm_elementwise_affine=True,
    norm_eps=1e-5, spatial_interpolation_scale=1.875, temporal_interpolation_scale=1.0, attention_bias=True,
    dropout=0.0, patch_bias=True)

# T5-v1.1-XXL's encoder (THUDM/CogVideoX-5b text_encoder/config.json, 4,762,310,656 parameters).
T5_XXL: dict[str, Any] = dict(
    vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
    feed_forward_proj="gated-gelu", relative_attention_num_buckets=32, relative_attention_max_distance=128,
    layer_norm_epsilon=1e-6, dense_act_fn="gelu_new", is_gated_act=True)

# The CogVideoX VAE: diffusers' default blocks (128, 256, 256, 512) with the 5B's scaling factor.
VAE_5B: dict[str, Any] = dict(scaling_factor=0.7)

# CogVideoX1.5-5B: the 5B transformer with a temporal patch of 2 (its patch embedding takes 2 latent frames),
# no patch bias, and a 300x300-latent rotary grid (the bound of its sizes; it was trained at 768x1360).
TRANSFORMER_15: dict[str, Any] = TRANSFORMER_5B | dict(patch_size_t=2, patch_bias=False, sample_height=300,
                                                       sample_width=300, sample_frames=81)
VAE_15: dict[str, Any] = VAE_5B | dict(invert_scale_latents=True)


@dataclass(frozen=True)
class BenchArch:
    """A model the benchmark can build, and the clip it is timed on."""

    name: str
    description: str
    build: Callable[[torch.device], CogVideoXPipeline]
    default_device: str  # "auto": the first GPU, else the CPU
    frames: int
    height: int
    width: int


@contextlib.contextmanager
def _building_on(device: torch.device, dtype: torch.dtype, seed: int) -> Iterator[None]:
    """New modules land on ``device`` in ``dtype``, drawn from ``seed``; the global RNG and default
    dtype are restored afterwards."""
    cuda = list(range(torch.cuda.device_count())) if device.type == "cuda" else []
    previous_dtype = torch.get_default_dtype()
    with torch.random.fork_rng(devices=cuda), torch.device(device):
        torch.manual_seed(seed)
        torch.set_default_dtype(dtype)
        try:
            yield
        finally:
            torch.set_default_dtype(previous_dtype)


def build_5b_pipeline(device: torch.device | str, transformer_config: dict[str, Any] | None = None,
                      vae_config: dict[str, Any] | None = None) -> CogVideoXPipeline:
    """The CogVideoX-5B architecture (or another transformer/VAE config: CogVideoX1.5-5B's) in bf16 on
    ``device`` with random weights (``"meta"``: shapes only)."""
    device = torch.device(device)
    with _building_on(device, torch.bfloat16, WEIGHTS_SEED):
        transformer = CogVideoXTransformer3DModel(**(transformer_config or TRANSFORMER_5B))
        text_encoder = T5EncoderModel(T5Config(**T5_XXL))
        vae = AutoencoderKLCogVideoX(**(vae_config or VAE_5B))
    for module in (transformer, text_encoder, vae):
        module.eval()
    # Tokenizer and scheduler hold CPU state: built outside the device block.
    return CogVideoXPipeline(tokenizer=offline_tokenizer(), text_encoder=text_encoder, vae=vae, transformer=transformer,
                             scheduler=CogVideoXDDIMScheduler(**SCHEDULER_5B))


def build_15_pipeline(device: torch.device | str) -> CogVideoXPipeline:
    """The CogVideoX1.5-5B architecture in bf16 on ``device`` with random weights."""
    return build_5b_pipeline(device, TRANSFORMER_15, VAE_15)


def build_tiny_on(device: torch.device | str) -> CogVideoXPipeline:
    """engine.demo.tiny_model's model (float32), moved to ``device``."""
    return build_tiny_pipeline().to(torch.device(device))


def build_tiny_15_on(device: torch.device | str) -> CogVideoXPipeline:
    """engine.demo.tiny_model's CogVideoX1.5 (float32), moved to ``device``."""
    return build_tiny_pipeline(family="1.5").to(torch.device(device))


ARCHS: dict[str, BenchArch] = {
    "5b": BenchArch("5b", "CogVideoX-5B architecture (random weights)", build_5b_pipeline, "auto",
                    frames=49, height=480, width=720),
    "1.5-5b": BenchArch("1.5-5b", "CogVideoX1.5-5B architecture (random weights)", build_15_pipeline, "auto",
                        frames=81, height=768, width=1360),
    "tiny-1.5": BenchArch("tiny-1.5", "tiny CogVideoX1.5 (random weights)", build_tiny_15_on, "cpu",
                          frames=17, height=TINY_SIZE[0], width=TINY_SIZE[1]),
    "tiny": BenchArch("tiny", "tiny CogVideoX (random weights)", build_tiny_on, "cpu",
                      frames=9, height=TINY_SIZE[0], width=TINY_SIZE[1]),
}


# -- FLOPs --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FlopCount:
    """Floating-point operations of one transformer forward (a multiply-add counts 2)."""

    linear: float  # every matrix multiply by a weight
    attention: float  # softmax(Q K^T) V

    @property
    def total(self) -> float:
        return self.linear + self.attention

    def as_dict(self) -> dict[str, float]:
        return {"linear": self.linear, "attention": self.attention, "total": self.total}


def latent_video_tokens(config: Any, latent_frames: int, latent_height: int, latent_width: int) -> int:
    """Transformer tokens of latents [.., latent_frames, C, latent_height, latent_width]."""
    temporal = config.get("patch_size_t") or 1
    return -(-latent_frames // temporal) * (latent_height // config.patch_size) * (latent_width // config.patch_size)


def video_tokens(config: Any, frames: int, height: int, width: int) -> int:
    """Transformer tokens of a clip of ``frames`` pixel frames of ``height`` x ``width`` (the VAE
    compresses time by ``temporal_compression_ratio`` and space by VAE_SPATIAL)."""
    return latent_video_tokens(config, (frames - 1) // config.temporal_compression_ratio + 1, height // VAE_SPATIAL,
                               width // VAE_SPATIAL)


def forward_flops(config: Any, video: int, text: int, rows: int, injected_rows: int = 0) -> FlopCount:
    """FLOPs of one forward of CogVideoXTransformer3DModel over ``rows`` batch rows of ``text`` +
    ``video`` tokens, of which ``injected_rows`` are edited rows (they attend to their own and a
    reference's keys: twice the attention of a plain row).

    Per block and token: Q, K, V and output projections (4 d^2 MACs) and the feed-forward (2 * 4 d^2);
    per block and row: the two AdaLN modulations of the timestep embedding (6 d outputs each); plus
    patch embedding, text projection and output projection. Attention: Q K^T and A V, 2 S^2 d MACs per
    block and plain row, with S = text + video. For the 5B at 49x480x720, batch 1: linear 1.69e14 +
    attention 1.63e14 = 3.32e14. (2 x parameters x tokens gives 1.98e14 for the linear part, but that
    counts the 0.79e9 AdaLN parameters once per token although they act once per row.)
    """
    d = config.num_attention_heads * config.attention_head_dim
    ff = 4 * d  # diffusers' FeedForward with mult=4, no gating for "gelu-approximate"
    seq = text + video
    patch_in = config.in_channels * config.patch_size ** 2 * (config.get("patch_size_t") or 1)
    patch_out = (config.out_channels or config.in_channels) * config.patch_size ** 2 * (config.get("patch_size_t") or 1)
    per_block_macs = seq * (4 * d * d + 2 * d * ff) + 2 * config.time_embed_dim * 6 * d
    edge_macs = text * config.text_embed_dim * d + video * patch_in * d + video * d * patch_out
    linear = 2.0 * rows * (config.num_layers * per_block_macs + edge_macs)
    attention = 2.0 * config.num_layers * 2 * seq * seq * d * (rows + injected_rows)
    return FlopCount(linear, attention)


def clip_forward_flops(config: Any, frames: int, height: int, width: int, rows: int = 1,
                       injected_rows: int = 0) -> FlopCount:
    """FLOPs of one forward on a clip of ``frames`` x ``height`` x ``width`` with a full-length prompt."""
    return forward_flops(config, video_tokens(config, frames, height, width), config.max_text_seq_length,
                         rows, injected_rows)


def measure_matmul_tflops(device: torch.device, size: int = 8192, repeats: int = 10) -> float:
    """The GPU's bf16 matrix rate on random data, measured now: the peak that %-of-peak refers to."""
    g = torch.Generator(device).manual_seed(0)
    a, b = (torch.randn(size, size, device=device, dtype=torch.bfloat16, generator=g) for _ in range(2))
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e12
