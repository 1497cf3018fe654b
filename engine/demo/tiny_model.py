"""A tiny CogVideoX: the real classes at toy sizes, random seeded weights, offline tokenizer.

Used by the tests and the demo. It is saved with ``save_pretrained`` and loaded back through the same
``from_pretrained`` path as CogVideoX-5B, with rotary embeddings on as in the 5B. Its weights are
random: the pixels it produces are noise, only the workflow is real.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel
from transformers import T5Config, T5EncoderModel

from ..params import PATCH_SIZE, VAE_SPATIAL, VAE_TEMPORAL
from ..pipeline.model import quiet_libraries
from ..toy.building import SCHEDULER_5B, offline_tokenizer, reinitialise
from . import TINY_SIZE

TINY_VERSION = 1  # bump when the architecture or the weight recipe changes
TINY_SEED = 20261121

def build_tiny_pipeline(rotary: bool = True) -> CogVideoXPipeline:
    """Two transformer layers of two 16-wide heads, a 4-block VAE, a 2-layer T5."""
    with torch.random.fork_rng(devices=[]):  # construction draws from the global RNG: keep it untouched
        tokenizer = offline_tokenizer()
        text_encoder = T5EncoderModel(T5Config(
            vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
            relative_attention_num_buckets=8, decoder_start_token_id=0))
        height, width = TINY_SIZE
        transformer = CogVideoXTransformer3DModel(
            num_attention_heads=2, attention_head_dim=16, in_channels=16, out_channels=16, time_embed_dim=32,
            text_embed_dim=32, num_layers=2, sample_height=height // VAE_SPATIAL, sample_width=width // VAE_SPATIAL,
            sample_frames=9, patch_size=PATCH_SIZE, temporal_compression_ratio=VAE_TEMPORAL, max_text_seq_length=226,
            use_rotary_positional_embeddings=rotary)
        vae = AutoencoderKLCogVideoX(
            block_out_channels=(8, 8, 16, 16), latent_channels=16, layers_per_block=1, norm_num_groups=4,
            temporal_compression_ratio=VAE_TEMPORAL, sample_height=height, sample_width=width, scaling_factor=0.7)
    generator = torch.Generator("cpu").manual_seed(TINY_SEED)
    for module in (text_encoder, transformer, vae):
        reinitialise(module, generator)
        module.eval()
    return CogVideoXPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                             scheduler=CogVideoXDDIMScheduler(**SCHEDULER_5B))


def ensure_tiny_model(folder: Path, rotary: bool = True) -> Path:
    """Build and save the tiny model into ``folder`` unless a complete copy is already there."""
    folder = Path(folder)
    stamp = folder / "cogedit_tiny.json"
    wanted = {"version": TINY_VERSION, "seed": TINY_SEED, "rotary": rotary}
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        return folder
    quiet_libraries()
    # Build beside the target and rename into place, so a crash or a concurrent build never leaves a
    # half-written model where a complete one is expected.
    staging = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    build_tiny_pipeline(rotary).save_pretrained(str(staging))
    (staging / stamp.name).write_text(json.dumps(wanted))
    shutil.rmtree(folder, ignore_errors=True)
    try:
        os.rename(staging, folder)
    except OSError:  # another process won the race; its copy is as good as ours
        shutil.rmtree(staging, ignore_errors=True)
    return folder
