"""The edit, stage by stage: frames -> encode -> invert -> round trip -> edit -> decode -> export.

:func:`run_edit` is the single way an edit runs (the headless command, the worker and the benchmark
all call it): the seven stages of :data:`engine.events.STAGES`, in that order, each a method of
:class:`Editor` reported through typed events. The work for a *source* (its frames, latents,
inversion trajectory and round trip) is done once and shared by every *variant* (prompt + seed) of
it; the inversion cache wraps encode, invert and round trip (:meth:`Editor.inversion`).

Stopping: ``should_stop`` (the worker is quitting) and ``cancelled`` (the job ids cancelled so far) are
polled between stages, before every denoising step and between the VAE's blocks. When every variant
still running is cancelled the run raises :class:`engine.errors.Cancelled`; a variant cancelled while
others go on is let go at once (``JobCancelled``) and its rows leave the batch before the next step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

import numpy as np
import torch

from ..errors import Cancelled
from ..events import (
    PSNR_EDITED,
    EditWarning,
    Event,
    JobCancelled,
    JobFinished,
    StageFinished,
    StageStarted,
    StepProgress,
)
from ..families import resolve_params
from ..params import EditParams, latent_frames
from ..paths import OUTPUT_FILES
from .artifacts import EditResult, Inversion, Source, Variant
from .attention import InjectionPlan
from .compile_gate import MODEL_GATE
from .conditioning import drop_padding, image_condition, latent_padding, pad_latents, read_first_frame
from .export import SharedVideos, export_variant, job_record, write_latents
from .frames import audio_cut, file_digest, plan_frames, probe_video, read_frames
from .inversion_cache import InversionCache, inversion_key
from .metrics import check_finite, frames_to_uint8, inversion_metrics, psnr
from .model import LoadedModel
from .sampling import ExactInversion, Guidance, Injection, StepTimer, edit_row_layout, sample, seeded_noise
from .vae import choose_tiling, decode_latents, encode_frames, set_tiling

Emit = Callable[[Event], None]
CACHED_STAGES = ("encode", "invert", "round_trip")  # the stages an inversion from the cache stands for


def run_edit(model: LoadedModel, source_path: str | os.PathLike, variants: list[Variant], params: EditParams,
             output_dir: str | os.PathLike, emit: Emit | None = None,
             should_stop: Callable[[], bool] | None = None,
             save_latents: str | os.PathLike | None = None,
             cache: InversionCache | None = None,
             cancelled: Callable[[], Collection[str]] | None = None) -> list[EditResult]:
    """Edit ``source_path`` once per variant, sharing one inversion (from ``cache`` when it has it);
    returns the finished results (none for a variant cancelled on the way)."""
    started = dt.datetime.now().astimezone()
    editor = Editor(model, emit, should_stop, cache, cancelled)
    job_ids = tuple(v.job_id for v in variants)
    source = editor.frames(source_path, params, job_ids)  # 1
    params = source.params  # the model's own frames/height/width where they were left empty
    tiling = editor.vae_tiling(source, params)  # the VAE's tiling for this source's encode and decodes
    inversion = editor.inversion(source, params, job_ids, tiling)  # 2-4: encode, invert, round trip
    original, round_trip = frames_to_uint8(source.picture_of(source.frames)), inversion.round_trip_video.numpy()
    shared = {OUTPUT_FILES["original"]: original, OUTPUT_FILES["reconstruction"]: round_trip}
    audio = audio_cut(source.info, source.plan) if params.audio else None  # None: a silent source, or --no-audio
    with SharedVideos(Path(output_dir), shared, source.plan.fps, audio) as shared_videos:  # encoded while the GPU edits
        edited_latents = editor.edit(inversion, variants, params, source)  # 5
        variants = editor.live(variants)  # those cancelled so far are gone, with their latents
        edited_frames = editor.decode(edited_latents, variants, source)  # 6
        kept = [(v, lat, frames) for v, lat, frames in zip(variants, edited_latents, edited_frames, strict=True)
                if v.job_id not in editor.dropped]
        results = editor.export(Path(output_dir), source, inversion, params, kept,  # 7
                                shared_videos, (original, round_trip), started)
    if save_latents:
        write_latents(Path(save_latents), inversion, results)
    return results


class Editor:
    """Runs the stages of edits on ``model``; ``emit`` receives every event; ``should_stop`` (True stops
    the whole run) and ``cancelled`` (job ids) are polled between stages, steps and VAE blocks."""

    def __init__(self, model: LoadedModel, emit: Emit | None = None,
                 should_stop: Callable[[], bool] | None = None, cache: InversionCache | None = None,
                 cancelled: Callable[[], Collection[str]] | None = None):
        self.model = model
        self.emit = emit or (lambda event: None)
        self.should_stop = should_stop or (lambda: False)
        self.cancelled = cancelled or (lambda: ())
        self.dropped: set[str] = set()  # variants cancelled while others went on (already told)
        self.cache = cache
        self.timings: dict[str, float] = {}

    def live(self, variants: list[Variant]) -> list[Variant]:
        """``variants`` less those dropped so far."""
        return [v for v in variants if v.job_id not in self.dropped]

    def stop_now(self, job_ids: tuple[str, ...]) -> bool:
        """True when the run must stop: the worker stops, or every variant of ``job_ids`` still running
        is cancelled. A variant cancelled while others go on is dropped here and told (JobCancelled)."""
        if self.should_stop():
            return True
        cancelled = set(self.cancelled())
        live = [j for j in job_ids if j not in self.dropped]
        gone = [j for j in live if j in cancelled]
        if gone and len(gone) == len(live):
            return True
        for job_id in gone:
            self.dropped.add(job_id)
            self.emit(JobCancelled(job_id))
        return False

    @contextlib.contextmanager
    def stage(self, name: str, job_ids: tuple[str, ...], total_steps: int = 0
              ) -> Iterator[Callable[[int, int], None]]:
        """Emit start/finish around a stage; yields the step-progress callback for its loop."""
        if self.stop_now(job_ids):
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

    def frames(self, path: str | Path, params: EditParams, job_ids: tuple[str, ...]) -> Source:
        """Stage ``frames``: probe the clip, fit the parameters to the model's family, choose the clip's
        frames and decode them (and an edited first frame, when one is given)."""
        with self.stage("frames", job_ids):
            info = probe_video(path)
            family = self.model.family
            params = resolve_params(params, family, (info.height, info.width))
            if params.first_frame:  # job.json holds where it was, wherever it is run again from
                params = dataclasses.replace(params, first_frame=str(Path(params.first_frame).expanduser().resolve()))
            plan = plan_frames(info, params, family)
            frames = read_frames(info, plan, lambda message: self.emit(EditWarning(job_ids, message)))  # [F, C, H, W]
            first_frame = read_first_frame(params.first_frame, info, plan) if params.first_frame else None
            digest = file_digest(info.path)
        return Source(info, plan, digest, frames, params, first_frame)

    def padding(self, source: Source) -> int:
        """Latent frames padded in front of ``source``'s (CogVideoX1.5's temporal patch)."""
        return latent_padding(self.model.family, latent_frames(source.plan.num_frames))

    def condition(self, source: Source, frame: torch.Tensor | None) -> torch.Tensor | None:
        """The image condition [1, F', C, h, w] of ``frame`` [C, H, W] (None: a text-to-video model)."""
        if not self.model.family.image_conditioned or frame is None:
            return None
        count = latent_frames(source.plan.num_frames) + self.padding(source)
        return image_condition(self.model, frame, count)

    def vae_tiling(self, source: Source, params: EditParams) -> bool:
        """Decide the VAE's tiling for ``source`` (``params.vae_tiling``; auto: by free memory) and set it."""
        tiling = choose_tiling(self.model, params, source.frames.shape[0])
        set_tiling(self.model, tiling)
        return tiling

    def inversion(self, source: Source, params: EditParams, job_ids: tuple[str, ...], tiling: bool) -> Inversion:
        """Stages ``encode``, ``invert`` and ``round_trip``, or the cache's copy of their result (reported
        as finished with ``cached=True``); a computed inversion is cached."""
        key = inversion_key(source, params, self.model, tiling) if self.cache is not None else None
        if self.cache is not None:
            inversion = self.cache.get(key)
            for problem in self.cache.problems:
                self.emit(EditWarning(job_ids, problem))
            self.cache.problems.clear()
            if inversion is not None:
                for name in CACHED_STAGES:
                    self.emit(StageStarted(name, job_ids, 0))
                    self.emit(StageFinished(name, job_ids, 0.0, cached=True))
                return inversion
        latents = self.encode(source, job_ids)
        condition = self.condition(source, source.frames[0])  # image-to-video: the source's own first frame
        guidance = self.inversion_guidance(params, job_ids)
        trajectory = self.invert(latents, guidance, params.num_inference_steps, job_ids, condition,
                                 params.exact_inversion)
        inversion = self.round_trip(source, latents, trajectory, guidance, params.num_inference_steps, job_ids,
                                    condition)
        check_finite("inversion", self.model.dtype_name, latents, trajectory, inversion.round_trip_latents)
        if self.cache is not None:
            warning = self.cache.put(key, inversion)
            if warning:
                self.emit(EditWarning(job_ids, warning))
        return inversion

    def encode(self, source: Source, job_ids: tuple[str, ...]) -> torch.Tensor:
        """Stage ``encode``: the source's latents [1, F', C, h, w], padded in front for CogVideoX1.5."""
        with self.stage("encode", job_ids):
            return pad_latents(encode_frames(self.model, source.frames, lambda: self.stop_now(job_ids)),
                               self.padding(source))

    def invert(self, latents: torch.Tensor, guidance: Guidance, steps: int, job_ids: tuple[str, ...],
               condition: torch.Tensor | None = None, exact_iterations: int = 0) -> torch.Tensor:
        """Stage ``invert``: DDIM inversion keeping the trajectory [steps, 1, F', C, h, w];
        ``exact_iterations`` fixed-point refinements of each step (0: plain DDIM, as the reference)."""
        exact = (ExactInversion.for_forward(self.model.forward_scheduler(), steps, exact_iterations)
                 if exact_iterations else None)
        with self.stage("invert", job_ids, steps) as progress:
            _, trajectory = sample(self.model, self.model.inverse_scheduler(), latents, guidance, steps,
                                   keep_trajectory=True, progress=progress,
                                   should_stop=lambda: self.stop_now(job_ids), image=condition, exact=exact)
        return trajectory

    def round_trip(self, source: Source, latents: torch.Tensor, trajectory: torch.Tensor, guidance: Guidance,
                   steps: int, job_ids: tuple[str, ...], condition: torch.Tensor | None = None) -> Inversion:
        """Stage ``round_trip``: the inversion denoised again without the edit, decoded and measured (on
        the clip's picture: letterbox bars are cut away)."""
        padding = self.padding(source)
        with self.stage("round_trip", job_ids, steps) as progress:
            stop = lambda: self.stop_now(job_ids)  # noqa: E731
            round_trip, _ = sample(self.model, self.model.forward_scheduler(), trajectory[-1], guidance,
                                   steps, progress=progress, should_stop=stop, image=condition)
            round_trip_frames = source.picture_of(decode_latents(self.model, drop_padding(round_trip, padding), stop))
            vae_only = source.picture_of(decode_latents(self.model, drop_padding(latents, padding), stop))
        metrics = inversion_metrics(source.picture_of(source.frames), round_trip_frames, vae_only)
        video = torch.from_numpy(frames_to_uint8(round_trip_frames))  # [F, H, W, 3]
        return Inversion(latents, trajectory, round_trip, video, metrics)

    def inversion_guidance(self, params: EditParams, job_ids: tuple[str, ...]) -> Guidance:
        """Conditioning of inversion and round trip; guidance between two equal prompts is a no-op and
        is skipped unless ``literal_guidance`` asks for the reference's doubled batch."""
        positive = self.encode_prompts([params.inversion_prompt], job_ids)
        negative = self.encode_prompts([params.negative_prompt], job_ids) if params.inversion_guided else None
        return Guidance(positive, negative, params.inversion_guidance, params.use_dynamic_cfg)

    # -- per variant -------------------------------------------------------------------------------

    def edit(self, inversion: Inversion, variants: list[Variant], params: EditParams,
             source: Source | None = None) -> list[torch.Tensor]:
        """Reconstruct every variant with its prompt under key/value injection, in one batch.

        An image-to-video model's references keep the inversion's condition (the source's first frame);
        the edited rows take the edited first frame when the user gave one (``source.first_frame``).

        Rows of each step: edited [uncond_1..K, cond_1..K] then references. The unconditional
        reference (trajectory latent + negative prompt) is the same for every variant, and so is the
        conditional one of variants with the same prompt: both are shared exactly.
        ``shared_reference`` (approximate) shares one reference across all rows.
        Returns one latent [1, F', C, h, w] per variant not cancelled meanwhile (``live(variants)``):
        a variant cancelled mid-edit leaves the batch before the next step, the others go on.
        """
        if source is None and self.model.family.image_conditioned:
            raise ValueError("an image-to-video model's edit needs its source (the first-frame condition)")
        job_ids = tuple(v.job_id for v in variants)
        k = len(variants)
        steps = params.num_inference_steps
        positive = self.encode_prompts([v.prompt for v in variants], job_ids)  # [K, T, D]
        guided = params.guidance_scale > 1.0
        negative = self.encode_prompts([params.negative_prompt], job_ids).expand(k, -1, -1) if guided else None
        guidance = Guidance(positive, negative, params.guidance_scale, params.use_dynamic_cfg)

        reference_of, firsts = edit_row_layout([v.prompt for v in variants], guided, params.shared_reference)
        if firsts is None:  # one reference, the inversion's own text
            ref_embeds = self.encode_prompts([params.inversion_prompt], job_ids)  # [1, T, D]
        else:
            ref_embeds = positive.index_select(0, torch.tensor(firsts, device=positive.device))  # [P, T, D]
            if guided:
                ref_embeds = torch.cat([negative[:1], ref_embeds])  # [1 + P, T, D]
        trajectory = inversion.trajectory.to(self.model.device)  # the cache keeps it on the CPU
        kept = self.condition(source, source.frames[0]) if source is not None else None
        new_first = self.condition(source, source.first_frame) if source is not None else None
        injection = Injection(trajectory, ref_embeds, InjectionPlan(len(reference_of), reference_of),
                              num_steps=round(params.inject_fraction * steps), image=kept)

        shape = tuple(trajectory.shape[1:])  # (1, F', C, h, w)
        if params.init == "noise":
            start = torch.cat([seeded_noise(shape, v.seed, self.model.device) for v in variants])
        else:
            start = trajectory[-1].expand(k, *shape[1:])  # [K, F', C, h, w]
        rows = list(variants)  # the variant of each row of the batch, as variants are dropped

        def drop_rows() -> list[int]:
            gone = [i for i, v in enumerate(rows) if v.job_id in self.dropped]
            for i in reversed(gone):
                del rows[i]
            return gone

        with self.stage("edit", job_ids, steps) as progress:
            edited, _ = sample(self.model, self.model.forward_scheduler(), start, guidance, steps,
                               injection=injection, progress=progress, should_stop=lambda: self.stop_now(job_ids),
                               image=kept if new_first is None else new_first,
                               drop_rows=drop_rows)  # [K', F', C, h, w], K' = len(rows)
        check_finite("edit", self.model.dtype_name, edited)
        latents = {v.job_id: edited[i:i + 1] for i, v in enumerate(rows)}
        return [latents[v.job_id] for v in self.live(variants)]  # cancelled after the last step: gone too

    def decode(self, latents: list[torch.Tensor], variants: list[Variant], source: Source | None = None
               ) -> list[torch.Tensor | None]:
        """VAE-decode each variant's latents (their padding dropped) to frames [F, C, H, W]; None for a
        variant cancelled before or during its decode (the others go on)."""
        job_ids = tuple(v.job_id for v in variants)
        padding = self.padding(source) if source is not None else 0
        frames: list[torch.Tensor | None] = []
        with self.stage("decode", job_ids, len(latents)) as progress:
            for i, (variant, lat) in enumerate(zip(variants, latents, strict=True)):
                try:
                    if self.stop_now(job_ids) or variant.job_id in self.dropped:
                        raise Cancelled()
                    frames.append(decode_latents(self.model, drop_padding(lat, padding),
                                                 lambda v=variant: self.stop_now(job_ids) or v.job_id in self.dropped))
                except Cancelled:
                    if variant.job_id not in self.dropped:  # the whole run stops
                        raise
                    frames.append(None)
                    continue
                check_finite("decode", self.model.dtype_name, frames[-1])
                progress(i + 1, len(latents))
        return frames

    def export(self, output_dir: Path, source: Source, inversion: Inversion, params: EditParams,
               kept: list[tuple[Variant, torch.Tensor, torch.Tensor]], shared_videos: SharedVideos,
               shared_frames: tuple[np.ndarray, np.ndarray], started: dt.datetime) -> list[EditResult]:
        """Stage ``export``: one result folder per variant of ``kept`` (variant, latents, frames), each
        announced as soon as it is on disk (a later variant's failure cannot take it back); a variant
        cancelled before its turn is skipped. ``shared_frames``: the original and the round trip as
        uint8 frames, for the contact sheets."""
        variants = [variant for variant, _, _ in kept]
        job_ids = tuple(v.job_id for v in variants)
        original, round_trip = shared_frames  # [F, H, W, 3] uint8, as the shared videos hold them
        results = []
        with self.stage("export", job_ids, len(variants)) as progress:
            shared_files = shared_videos.files()
            if shared_videos.audio_problem:
                self.emit(EditWarning(job_ids, shared_videos.audio_problem))
            for i, (variant, variant_latents, variant_frames) in enumerate(kept):
                if self.stop_now(job_ids):
                    raise Cancelled()
                if variant.job_id in self.dropped:
                    continue
                variant_frames = source.picture_of(variant_frames)  # letterbox bars cut away
                metrics = inversion.metrics | {PSNR_EDITED: psnr(variant_frames, source.picture_of(source.frames))}
                record = job_record(variant, source, params, self.model.describe(), self.timings, metrics,
                                    variants, started)
                export_start = time.perf_counter()
                folder = export_variant(output_dir, variant, record, shared_files, original, round_trip,
                                        frames_to_uint8(variant_frames), shared_videos.audio)
                timings = self.timings | {"export": time.perf_counter() - export_start}
                results.append(EditResult(variant, folder, metrics, variant_latents))
                self.emit(JobFinished(variant.job_id, str(folder),
                                      {k: str(folder / name) for k, name in OUTPUT_FILES.items()}, metrics, timings))
                progress(i + 1, len(variants))
        return results

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
