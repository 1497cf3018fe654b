"""The edit, stage by stage: frames -> encode -> invert -> round trip -> edit -> decode -> export.

:class:`Editor` runs the stages on one loaded model and reports each through typed events. The work
for a *source* (its frames, latents, inversion trajectory and round trip) is done once and shared by
every *variant* (prompt + seed) of it; :func:`run_edit` ties the stages together for a batch of
variants and writes one result folder per variant.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from .artifacts import Inversion, Source, Variant
from .attention import InjectionPlan
from .cache import InversionCache, inversion_key
from .compile_gate import MODEL_GATE
from .errors import Cancelled
from .events import EditWarning, Event, StageFinished, StageStarted, StepProgress
from .frames import file_digest, plan_frames, probe_video, read_frames
from .model import LoadedModel, forward_scheduler, inverse_scheduler
from .outputs import frames_to_uint8, psnr
from .params import EditParams
from .sampling import Guidance, Injection, StepTimer, sample, seeded_noise
from .vae import configure_tiling, decode_latents, encode_frames

Emit = Callable[[Event], None]


class Editor:
    """Runs the stages of edits on ``model``; ``emit`` receives every event, ``should_stop`` is polled
    between stages and before every denoising step (returning True cancels)."""

    def __init__(self, model: LoadedModel, emit: Emit | None = None,
                 should_stop: Callable[[], bool] | None = None, cache: InversionCache | None = None):
        self.model = model
        self.emit = emit or (lambda event: None)
        self.should_stop = should_stop or (lambda: False)
        self.cache = cache
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str, job_ids: tuple[str, ...], total_steps: int = 0
              ) -> Iterator[Callable[[int, int], None]]:
        """Emit start/finish around a stage; yields the step-progress callback for its loop."""
        if self.should_stop():
            raise Cancelled()
        device = str(self.model.device)
        self.emit(StageStarted(name, job_ids, total_steps, device=device))
        start = time.perf_counter()
        timer = StepTimer(lambda step, total, rate: self.emit(StepProgress(name, job_ids, step, total, rate)))
        yield timer
        seconds = time.perf_counter() - start
        self.timings[name] = self.timings.get(name, 0.0) + seconds
        self.emit(StageFinished(name, job_ids, seconds, device=device))

    # -- shared per source -------------------------------------------------------------------------

    def load_source(self, path: str | Path, params: EditParams, job_ids: tuple[str, ...]) -> Source:
        """Probe the clip, choose its frames and decode them (stage ``frames``)."""
        with self.stage("frames", job_ids):
            info = probe_video(path)
            plan = plan_frames(info, params)
            frames = read_frames(info, plan)  # [F, C, H, W]
            digest = file_digest(info.path)
        return Source(info, plan, digest, frames)

    def invert(self, source: Source, params: EditParams, job_ids: tuple[str, ...]) -> Inversion:
        """The source's inversion: from the cache when it holds one for these settings, else computed
        (and then cached). Cached stages are reported as finished with ``cached=True``."""
        tiling = configure_tiling(self.model, params, source.frames.shape[0])
        if self.cache is None:
            return self._compute_inversion(source, params, job_ids)
        key = inversion_key(source, params, self.model, tiling)
        inversion = self.cache.get(key)
        for problem in self.cache.problems:
            self.emit(EditWarning(job_ids, problem))
        self.cache.problems.clear()
        if inversion is not None:
            for name in ("encode", "invert", "round_trip"):
                self.emit(StageStarted(name, job_ids, 0))
                self.emit(StageFinished(name, job_ids, 0.0, cached=True))
            return inversion
        inversion = self._compute_inversion(source, params, job_ids)
        warning = self.cache.put(key, inversion)
        if warning:
            self.emit(EditWarning(job_ids, warning))
        return inversion

    def _compute_inversion(self, source: Source, params: EditParams, job_ids: tuple[str, ...]) -> Inversion:
        """Encode, invert (keeping the trajectory) and check the inversion by a round trip."""
        with self.stage("encode", job_ids):
            source_latents = encode_frames(self.model, source.frames)  # [1, F', C, h, w]

        guidance = self._inversion_guidance(params, job_ids)
        steps = params.num_inference_steps
        with self.stage("invert", job_ids, steps) as progress:
            _, trajectory = sample(self.model, inverse_scheduler(self.model.pipeline), source_latents, guidance,
                                   steps, keep_trajectory=True, progress=progress,
                                   should_stop=self.should_stop)  # [steps, 1, F', C, h, w]

        with self.stage("round_trip", job_ids, steps) as progress:
            round_trip, _ = sample(self.model, forward_scheduler(self.model.pipeline), trajectory[-1], guidance,
                                   steps, progress=progress, should_stop=self.should_stop)
            round_trip_frames = decode_latents(self.model, round_trip)
            vae_only = decode_latents(self.model, source_latents)
        metrics = {
            "psnr_round_trip_vs_original_db": psnr(round_trip_frames, source.frames),
            "psnr_round_trip_vs_vae_db": psnr(round_trip_frames, vae_only),
            "psnr_vae_vs_original_db": psnr(vae_only, source.frames),
        }
        video = torch.from_numpy(frames_to_uint8(round_trip_frames))  # [F, H, W, 3]
        return Inversion(source_latents, trajectory, round_trip, video, metrics)

    def _inversion_guidance(self, params: EditParams, job_ids: tuple[str, ...]) -> Guidance:
        """Conditioning of inversion and round trip; guidance between two equal prompts is a no-op and
        is skipped unless ``literal_guidance`` asks for the reference's doubled batch."""
        positive = self.encode_prompts([params.inversion_prompt], job_ids)
        guided = params.inversion_guidance > 1.0 and (
            params.inversion_prompt != params.negative_prompt or params.literal_guidance)
        negative = self.encode_prompts([params.negative_prompt], job_ids) if guided else None
        return Guidance(positive, negative, params.inversion_guidance, params.use_dynamic_cfg)

    # -- per variant -------------------------------------------------------------------------------

    def edit(self, inversion: Inversion, variants: list[Variant], params: EditParams) -> list[torch.Tensor]:
        """Reconstruct every variant with its prompt under key/value injection, in one batch.

        Rows of each step: edited [uncond_1..K, cond_1..K] then references. The unconditional
        reference (trajectory latent + negative prompt) is the same for every variant, and so is the
        conditional one of variants with the same prompt: both are shared exactly.
        ``shared_reference`` (approximate) shares one reference across all rows.
        Returns one latent [1, F', C, h, w] per variant.
        """
        job_ids = tuple(v.job_id for v in variants)
        k = len(variants)
        steps = params.num_inference_steps
        positive = self.encode_prompts([v.prompt for v in variants], job_ids)  # [K, T, D]
        guided = params.guidance_scale > 1.0
        negative = self.encode_prompts([params.negative_prompt], job_ids).expand(k, -1, -1) if guided else None
        guidance = Guidance(positive, negative, params.guidance_scale, params.use_dynamic_cfg)

        if params.shared_reference:
            ref_embeds = self.encode_prompts([params.inversion_prompt], job_ids)  # [1, T, D]
            reference_of = (0,) * (2 * k if guided else k)
        else:
            # One conditional reference per distinct prompt: variants that differ only by seed read the
            # same one (the same latent and text give the same reference, so sharing it is exact).
            prompts = [v.prompt for v in variants]
            distinct = list(dict.fromkeys(prompts))
            firsts = torch.tensor([prompts.index(p) for p in distinct], device=positive.device)
            conditional_of = tuple(distinct.index(p) for p in prompts)
            if guided:
                ref_embeds = torch.cat([negative[:1], positive.index_select(0, firsts)])  # [1 + P, T, D]
                reference_of = (0,) * k + tuple(1 + r for r in conditional_of)
            else:
                ref_embeds = positive.index_select(0, firsts)  # [P, T, D]
                reference_of = conditional_of
        trajectory = inversion.trajectory.to(self.model.device)  # the cache keeps it on the CPU
        injection = Injection(trajectory, ref_embeds, InjectionPlan(len(reference_of), reference_of),
                              num_steps=round(params.inject_fraction * steps))

        shape = tuple(trajectory.shape[1:])  # (1, F', C, h, w)
        if params.init == "noise":
            start = torch.cat([seeded_noise(shape, v.seed, self.model.device) for v in variants])
        else:
            start = trajectory[-1].expand(k, *shape[1:])  # [K, F', C, h, w]
        with self.stage("edit", job_ids, steps) as progress:
            edited, _ = sample(self.model, forward_scheduler(self.model.pipeline), start, guidance, steps,
                               injection=injection, progress=progress, should_stop=self.should_stop)
        return [edited[i:i + 1] for i in range(k)]

    def decode(self, latents: list[torch.Tensor], job_ids: tuple[str, ...]) -> list[torch.Tensor]:
        """VAE-decode each variant's latents to frames [F, C, H, W]."""
        with self.stage("decode", job_ids, len(latents)) as progress:
            frames = []
            for i, lat in enumerate(latents):
                frames.append(decode_latents(self.model, lat))
                progress(i + 1, len(latents))
        return frames

    def encode_prompts(self, prompts: list[str], job_ids: tuple[str, ...]) -> torch.Tensor:
        """T5 embeddings [N, T, D] in the model's dtype; warns when a prompt is truncated."""
        pipeline = self.model.pipeline
        limit = pipeline.transformer.config.max_text_seq_length
        for prompt in prompts:
            ids = pipeline.tokenizer(prompt, add_special_tokens=True).input_ids
            if len(ids) > limit:
                kept = pipeline.tokenizer.decode(ids[: limit - 1], skip_special_tokens=True)
                self.emit(EditWarning(job_ids, f"prompt is {len(ids)} tokens; the text encoder keeps the "
                                               f"first {limit}: {kept[-60:]!r} is where it stops"))
        with MODEL_GATE.shared():
            embeds, _ = pipeline.encode_prompt(prompts, do_classifier_free_guidance=False,
                                               max_sequence_length=limit, device=self.model.device,
                                               dtype=self.model.dtype)
        return embeds

