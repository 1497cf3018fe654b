"""Train the toy CogVideoX on clips of the toy world (engine.toy.world): seeded and reproducible.

    python -m engine.toy.train --out DIR                      # both stages (a GPU: minutes; a CPU: a day)
    python -m engine.toy.train --out DIR --stage vae          # only the VAE
    python -m engine.toy.train --out DIR --stage transformer  # the transformer, on DIR's trained VAE

The model is CogVideoX's own classes at small sizes: an ``AutoencoderKLCogVideoX`` trained as an
autoencoder on 64x96 clips of 9 frames (its scaling factor then set to 1 / the std of its latents), a
``CogVideoXTransformer3DModel`` with rotary embeddings trained with the v-prediction objective of
CogVideoX-5B's scheduler (20% of prompts dropped to the empty one, for classifier-free guidance and the inversion), and
a random frozen T5 with the offline character tokenizer. DIR ends up a ``save_pretrained`` folder that
``--model DIR`` loads like CogVideoX-5B. Every random draw comes from a generator seeded by ``--seed``;
on a given machine the same command gives the same weights (GPU kernels may round differently on
another GPU).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel
from transformers import T5Config, T5EncoderModel

from ..pipeline.model import quiet_libraries
from .building import SCHEDULER_5B, offline_tokenizer, reinitialise
from .world import WORLD_FRAMES, WORLD_SIZE, all_prompts, render_batch, sample_scene

TEXT_LENGTH = 32  # the transformer's max_text_seq_length: the engine feeds prompts at this length


def build_untrained(seed: int) -> CogVideoXPipeline:
    """The toy model's architecture with seeded initial weights (the T5 stays as initialised)."""
    height, width = WORLD_SIZE
    with torch.random.fork_rng(devices=[]):  # construction draws from the global RNG: keep it untouched
        tokenizer = offline_tokenizer()
        text_encoder = T5EncoderModel(T5Config(
            vocab_size=len(tokenizer), d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
            relative_attention_num_buckets=8, decoder_start_token_id=0))
        vae = AutoencoderKLCogVideoX(
            block_out_channels=(32, 64, 64, 64), latent_channels=16, layers_per_block=1, norm_num_groups=32,
            temporal_compression_ratio=4, sample_height=height, sample_width=width)
        transformer = CogVideoXTransformer3DModel(
            num_attention_heads=4, attention_head_dim=64, in_channels=16, out_channels=16, time_embed_dim=256,
            text_embed_dim=64, num_layers=6, sample_height=height // 8, sample_width=width // 8,
            sample_frames=WORLD_FRAMES, patch_size=2, temporal_compression_ratio=4,
            max_text_seq_length=TEXT_LENGTH, use_rotary_positional_embeddings=True)
    generator = torch.Generator("cpu").manual_seed(seed)
    for module in (text_encoder, vae, transformer):
        reinitialise(module, generator)
    text_encoder.requires_grad_(False).eval()
    round_weights(text_encoder)  # trained against the T5 exactly as it is shipped
    return CogVideoXPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                             scheduler=CogVideoXDDIMScheduler(**SCHEDULER_5B))


@torch.no_grad()
def round_weights(module: torch.nn.Module, dtype: torch.dtype = torch.float16) -> None:
    """Round ``module``'s weights to ``dtype`` in place (kept in float32), so that what trains after it
    sees the frozen module exactly as it will be shipped."""
    for param in module.parameters():
        param.copy_(param.to(dtype).to(param.dtype))


def clip_batch(generator: torch.Generator, size: int, device: torch.device) -> torch.Tensor:
    """``size`` fresh clips of the world as the VAE takes them: [N, C, F, H, W] in [-1, 1]."""
    scenes = [sample_scene(generator) for _ in range(size)]
    return render_batch(scenes, WORLD_FRAMES, device).permute(0, 4, 1, 2, 3).contiguous()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.float() - b.float()) / 2).pow(2).mean().item()  # [-1, 1] -> [0, 1]
    return 10 * math.log10(1 / max(mse, 1e-12))


def train_vae(vae: AutoencoderKLCogVideoX, device: torch.device, seed: int, steps: int, batch: int,
              log) -> None:
    """Reconstruction (MSE) with a small KL term, on fresh clips every step; then the scaling factor."""
    scenes = torch.Generator("cpu").manual_seed(seed + 1)
    noise = torch.Generator(device).manual_seed(seed + 2)
    vae.to(device).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 1e-3, total_steps=steps, pct_start=0.05)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        clips = clip_batch(scenes, batch, device)  # [N, C, F, H, W]
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            posterior = vae.encode(clips).latent_dist
            decoded = vae.decode(posterior.sample(noise)).sample
        loss = torch.nn.functional.mse_loss(decoded.float(), clips) + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 200 == 0 or step == steps:
            log(f"vae step {step}/{steps} loss {loss.item():.5f} psnr {psnr(decoded, clips):.2f} dB "
                f"{time.perf_counter() - start:.0f} s")
    vae.eval()
    with torch.no_grad():  # the latents' spread, measured on held-out clips, sets the scaling factor
        held_out = torch.Generator("cpu").manual_seed(seed + 3)
        means = torch.cat([vae.encode(clip_batch(held_out, 32, device)).latent_dist.mean for _ in range(8)])
        decoded = vae.decode(means[:32]).sample
        check = clip_batch(torch.Generator("cpu").manual_seed(seed + 3), 32, device)
    vae.register_to_config(scaling_factor=float(1.0 / means.float().std()))
    log(f"vae held-out psnr {psnr(decoded, check):.2f} dB, scaling factor {vae.config.scaling_factor:.4f}")


@torch.no_grad()
def encode_pool(vae: AutoencoderKLCogVideoX, device: torch.device, seed: int, size: int) -> tuple:
    """``size`` clips' scaled latents [N, F', C, h, w] and prompt indices [N] (into all_prompts())."""
    scenes_gen = torch.Generator("cpu").manual_seed(seed + 4)
    prompts = all_prompts()
    latents, labels = [], []
    for done in range(0, size, 512):
        scenes = [sample_scene(scenes_gen) for _ in range(min(512, size - done))]
        clips = render_batch(scenes, WORLD_FRAMES, device).permute(0, 4, 1, 2, 3)  # [N, C, F, H, W]
        mean = vae.encode(clips).latent_dist.mean * vae.config.scaling_factor  # [N, C', F', h, w]
        latents.append(mean.permute(0, 2, 1, 3, 4).float())  # [N, F', C', h, w]
        labels.append(torch.tensor([prompts.index(s.prompt) for s in scenes], device=device))
    return torch.cat(latents), torch.cat(labels)


def train_transformer(pipeline: CogVideoXPipeline, device: torch.device, seed: int, steps: int, batch: int,
                      pool_size: int, dropout: float, log) -> None:
    """v-prediction on the world's latents with the 5B scheduler; the EMA of the weights is kept."""
    transformer = pipeline.transformer.to(device).train()
    vae = pipeline.vae.to(device).eval()
    pipeline.text_encoder.to(device)
    latents, labels = encode_pool(vae, device, seed, pool_size)
    log(f"pool of {len(latents)} clips encoded, latents {tuple(latents.shape[1:])}")
    with torch.no_grad():
        texts, _ = pipeline.encode_prompt(all_prompts() + [""], do_classifier_free_guidance=False,
                                          max_sequence_length=TEXT_LENGTH, device=device)  # [P + 1, T, D]
    empty = len(texts) - 1
    height, width = WORLD_SIZE
    rotary = pipeline._prepare_rotary_positional_embeddings(height, width, latents.size(1), device)
    alphas = pipeline.scheduler.alphas_cumprod.to(device, torch.float32)  # [1000]
    ema = copy.deepcopy(transformer).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(transformer.parameters(), lr=3e-4, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-4, total_steps=steps, pct_start=0.03)
    draws = torch.Generator(device).manual_seed(seed + 5)
    start, smooth = time.perf_counter(), None
    for step in range(1, steps + 1):
        index = torch.randint(len(latents), (batch,), generator=draws, device=device)
        x0 = latents[index]  # [B, F', C, h, w]
        keep = torch.rand(batch, generator=draws, device=device) >= dropout
        text = texts[torch.where(keep, labels[index], empty)]  # [B, T, D]
        t = torch.randint(0, len(alphas), (batch,), generator=draws, device=device)
        noise = torch.randn(x0.shape, generator=draws, device=device)
        a = alphas[t].sqrt()[:, None, None, None, None]
        s = (1 - alphas[t]).sqrt()[:, None, None, None, None]
        noisy, target = a * x0 + s * noise, a * noise - s * x0  # v = sqrt(a) eps - sqrt(1 - a) x0
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            v = transformer(hidden_states=noisy, encoder_hidden_states=text, timestep=t, image_rotary_emb=rotary,
                            return_dict=False)[0]
        loss = torch.nn.functional.mse_loss(v.float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(transformer.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            decay = min(0.999, (1 + step) / (10 + step))
            for e, p in zip(ema.parameters(), transformer.parameters(), strict=True):
                e.lerp_(p, 1 - decay)
        smooth = loss.item() if smooth is None else 0.98 * smooth + 0.02 * loss.item()
        if step % 500 == 0 or step == steps:
            log(f"transformer step {step}/{steps} v-loss {smooth:.4f} {time.perf_counter() - start:.0f} s")
    transformer.load_state_dict(ema.state_dict())
    transformer.eval()


def save(pipeline: CogVideoXPipeline, out: Path, info: dict, dtype: torch.dtype) -> None:
    """Write the pipeline (weights in ``dtype``) as a save_pretrained folder, replacing ``out`` whole."""
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    pipeline.to("cpu", dtype)
    pipeline.save_pretrained(str(staging), safe_serialization=True)
    (staging / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    pipeline.to(torch.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.toy.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the model folder to write")
    parser.add_argument("--stage", choices=("all", "vae", "transformer"), default="all")
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--vae-steps", type=int, default=1800)
    parser.add_argument("--vae-batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10000, help="transformer steps [10000]")
    parser.add_argument("--batch", type=int, default=384, help="transformer batch [384]")
    parser.add_argument("--dropout", type=float, default=0.2,
                        help="share of prompts replaced by the empty one (what guidance and inversion use) [0.2]")
    parser.add_argument("--pool", type=int, default=65536, help="clips encoded once for the transformer")
    parser.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16", help="weights as saved [fp16]")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    quiet_libraries()
    device = torch.device(args.device)
    dtype = torch.float16 if args.dtype == "fp16" else torch.float32

    def log(line: str) -> None:
        print(f"[train {time.strftime('%H:%M:%S')}] {line}", flush=True)

    if args.stage == "transformer":
        pipeline = CogVideoXPipeline.from_pretrained(str(args.out), torch_dtype=torch.float32)
        info = json.loads((args.out / "training.json").read_text())
        fresh = build_untrained(args.seed)  # the transformer restarts from its seeded initialisation
        pipeline.transformer = fresh.transformer
    else:
        pipeline, info = build_untrained(args.seed), {}
    if args.stage in ("all", "vae"):
        train_vae(pipeline.vae, device, args.seed, args.vae_steps, args.vae_batch, log)
        info["vae"] = {"seed": args.seed, "steps": args.vae_steps, "batch": args.vae_batch}
    if dtype == torch.float16:
        round_weights(pipeline.vae)
    if args.stage in ("all", "transformer"):
        train_transformer(pipeline, device, args.seed, args.steps, args.batch, args.pool, args.dropout, log)
        info["transformer"] = {"seed": args.seed, "steps": args.steps, "batch": args.batch, "pool": args.pool,
                               "dropout": args.dropout}
    info["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    save(pipeline, args.out, info, dtype)
    log(f"saved to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
