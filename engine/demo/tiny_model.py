"""Tiny CogVideoX models of every family: the real classes at toy sizes, random seeded weights, an
offline tokenizer.

Used by the tests and the demo. Each is saved with ``save_pretrained`` and loaded back through the same
``from_pretrained`` path as the real models. The families differ as the real ones do (engine.families):
``5b`` (rotary embeddings, as CogVideoX-5B), ``1.5`` (``patch_size_t=2``, a square rotary grid, no patch
bias, a VAE with ``invert_scale_latents``), ``5b-i2v`` (image-latent input channels, learned position
embeddings), ``1.5-i2v`` (both of 1.5's and image-latent channels, with the ofs embedding) and ``2b`` (no
rotary embeddings: refused). Their weights are random: the pixels they produce are noise, only the
workflow is real.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLCogVideoX,
    CogVideoXDDIMScheduler,
    CogVideoXImageToVideoPipeline,
    CogVideoXPipeline,
    CogVideoXTransformer3DModel,
)
from transformers import T5Config, T5EncoderModel

from ..params import PATCH_SIZE, VAE_SPATIAL, VAE_TEMPORAL
from ..pipeline.model import quiet_libraries
from ..toy.building import SCHEDULER_5B, offline_tokenizer, reinitialise
from . import TINY_SIZE

TINY_VERSION = 2  # bump when the architecture or the weight recipe changes (2: the families)
TINY_SEED = 20261121
LATENTS = 16
TINY_15_GRID = 20  # latent side of the 1.5 models' square rotary grid: 160x160 pixels, any orientation
FAMILIES = ("5b", "1.5", "5b-i2v", "1.5-i2v", "2b")


def tiny_transformer_config(family: str = "5b") -> dict:
    """The tiny transformer's config for ``family`` (one of FAMILIES)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown tiny family {family!r} (choose {', '.join(FAMILIES)})")
    height, width = TINY_SIZE
    config = dict(num_attention_heads=2, attention_head_dim=16, in_channels=LATENTS, out_channels=LATENTS,
                  time_embed_dim=32, text_embed_dim=32, num_layers=2, sample_height=height // VAE_SPATIAL,
                  sample_width=width // VAE_SPATIAL, sample_frames=9, patch_size=PATCH_SIZE,
                  temporal_compression_ratio=VAE_TEMPORAL, max_text_seq_length=226,
                  use_rotary_positional_embeddings=family != "2b")
    if family.startswith("1.5"):
        config |= dict(patch_size_t=2, sample_height=TINY_15_GRID, sample_width=TINY_15_GRID, sample_frames=17,
                       patch_bias=False)
    if family.endswith("i2v"):
        config |= dict(in_channels=2 * LATENTS)
    if family == "5b-i2v":
        config |= dict(use_learned_positional_embeddings=True)
    if family == "1.5-i2v":
        config |= dict(ofs_embed_dim=config["time_embed_dim"])
    return config


def build_tiny_pipeline(rotary: bool = True, family: str = "5b") -> CogVideoXPipeline:
    """Two transformer layers of two 16-wide heads, a 4-block VAE, a 2-layer T5 (``rotary=False``: the
    2B family)."""
    family = family if rotary else "2b"
    with torch.random.fork_rng(devices=[]):  # construction draws from the global RNG: keep it untouched
        tokenizer = offline_tokenizer()
        text_encoder = T5EncoderModel(T5Config(
            vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
            relative_attention_num_buckets=8, decoder_start_token_id=0))
        height, width = TINY_SIZE
        transformer = CogVideoXTransformer3DModel(**tiny_transformer_config(family))
        vae = AutoencoderKLCogVideoX(
            block_out_channels=(8, 8, 16, 16), latent_channels=LATENTS, layers_per_block=1, norm_num_groups=4,
            temporal_compression_ratio=VAE_TEMPORAL, sample_height=height, sample_width=width, scaling_factor=0.7,
            invert_scale_latents=family.startswith("1.5"))
    generator = torch.Generator("cpu").manual_seed(TINY_SEED)
    for module in (text_encoder, transformer, vae):
        reinitialise(module, generator)
        module.eval()
    pipeline_class = CogVideoXImageToVideoPipeline if family.endswith("i2v") else CogVideoXPipeline
    return pipeline_class(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                          scheduler=CogVideoXDDIMScheduler(**SCHEDULER_5B))


def ensure_tiny_model(folder: Path, rotary: bool = True, family: str = "5b") -> Path:
    """Build and save the tiny model of ``family`` into ``folder`` unless a complete copy is already there."""
    folder = Path(folder)
    stamp = folder / "cogedit_tiny.json"
    wanted = {"version": TINY_VERSION, "seed": TINY_SEED, "rotary": rotary, "family": family}
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        return folder
    quiet_libraries()
    # Build beside the target and rename into place, so a crash or a concurrent build never leaves a
    # half-written model where a complete one is expected.
    staging = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    build_tiny_pipeline(rotary, family).save_pretrained(str(staging))
    (staging / stamp.name).write_text(json.dumps(wanted))
    shutil.rmtree(folder, ignore_errors=True)
    try:
        os.rename(staging, folder)
    except OSError:  # another process won the race; its copy is as good as ours
        shutil.rmtree(staging, ignore_errors=True)
    return folder
