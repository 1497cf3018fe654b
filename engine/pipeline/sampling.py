"""The DDIM sampling loop shared by inversion, the round trip and the injected edit.

One loop, readable top to bottom (:func:`sample`): build the batch rows (guidance halves, then the
reference rows when injecting), run the transformer once, throw the references' predictions away,
apply classifier-free guidance, take a scheduler step. The inverse scheduler walks the noise up
(inversion), the forward one walks it down (reconstruction); the loop is the same.

Latents stay float32 between steps; only the transformer's input is cast to the model's dtype.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from ..errors import Cancelled
from .attention import InjectionPlan
from .model import LoadedModel

ProgressFn = Callable[[int, int], None]  # (steps done, total)
StopFn = Callable[[], bool]
DropFn = Callable[[], list[int]]  # samples (of the current K) to leave out from the next step on


@dataclass(frozen=True)
class Guidance:
    """Text conditioning of K samples, with classifier-free guidance when ``negative`` is set."""

    positive: torch.Tensor  # [K, T, D]
    negative: torch.Tensor | None  # [K, T, D]; None: no guidance (scale 1, or a skipped no-op)
    scale: float = 1.0
    dynamic: bool = False

    @property
    def rows(self) -> torch.Tensor:
        """Embeddings of the edited rows: [uncond_1..K, cond_1..K], or [cond_1..K]."""
        if self.negative is None:
            return self.positive
        return torch.cat([self.negative, self.positive])

    def combine(self, prediction: torch.Tensor, t: torch.Tensor, num_steps: int) -> torch.Tensor:
        """[rows, ...] model output -> [K, ...] guided prediction."""
        if self.negative is None:
            return prediction
        scale = self.scale
        if self.dynamic:  # CogVideoXPipeline's cosine schedule, as diffusers writes it
            scale = 1 + self.scale * (1 - math.cos(math.pi * ((num_steps - t.item()) / num_steps) ** 5.0)) / 2
        uncond, cond = prediction.chunk(2)
        return uncond + scale * (cond - uncond)

    def select(self, keep: list[int]) -> Guidance:
        """The conditioning of the samples ``keep`` only (K -> len(keep))."""
        index = torch.tensor(keep, device=self.positive.device)
        negative = None if self.negative is None else self.negative.index_select(0, index)
        return replace(self, positive=self.positive.index_select(0, index), negative=negative)


@dataclass(frozen=True)
class Injection:
    """Reference rows for key/value injection, taken from an inversion trajectory."""

    trajectory: torch.Tensor  # [steps, 1, F, C, H, W]; entry j is the latent after inverse step j
    embeds: torch.Tensor  # [R, T, D]: the text each reference row carries
    plan: InjectionPlan  # which reference each edited row reads
    num_steps: int  # inject during the first ``num_steps`` steps, then edit alone
    image: torch.Tensor | None = None  # [1, F, C, H, W]: the inversion's image condition (image-to-video)

    def reference_at(self, step: int) -> torch.Tensor:
        """Reference latents for forward step ``step``: the trajectory reversed, [R, F, C, H, W]."""
        latent = self.trajectory[self.trajectory.size(0) - 1 - step]  # [1, F, C, H, W]
        return latent.expand(self.embeds.size(0), *latent.shape[1:])

    def select(self, keep: list[int], num_samples: int) -> Injection:
        """The plan for the samples ``keep`` of ``num_samples`` only: their edited rows (each sample has
        one per guidance half, [uncond_1..K, cond_1..K]) and the references they still read."""
        per_sample = self.plan.num_edited // num_samples
        rows = [half * num_samples + i for half in range(per_sample) for i in keep]
        read = [self.plan.reference_of[r] for r in rows]
        used = sorted(set(read))  # references no kept row reads are dropped too
        reference_of = tuple(used.index(r) for r in read)
        embeds = self.embeds.index_select(0, torch.tensor(used, device=self.embeds.device))  # [R', T, D]
        return replace(self, embeds=embeds, plan=InjectionPlan(len(rows), reference_of))


@dataclass(frozen=True)
class ExactInversion:
    """Fixed-point refinement of each DDIM inversion step ("exact inversion").

    A plain inverse step evaluates the model at the latent it starts from; the forward step that
    undoes it evaluates the model at the latent it lands on, so the round trip drifts, most at the
    top of the schedule where CogVideoX's zero terminal SNR leaves the clip's overall brightness to
    the model's guess. Each iteration re-evaluates the model at the landed latent ``x_n`` and solves
    the forward step ``x_p = A x_n + B x0(x_n)`` (the forward scheduler's own DDIM update, A and B
    from its alphas) for ``x_n``, so that denoising ``x_n`` gives back ``x_p``.
    """

    alphas: torch.Tensor  # the forward scheduler's alphas_cumprod [num_train_timesteps] (float32, CPU)
    final_alpha: float  # its alpha below the first timestep
    step_size: int  # num_train_timesteps // num_steps, as the forward step counts it
    iterations: int

    @classmethod
    def for_forward(cls, scheduler, num_steps: int, iterations: int) -> ExactInversion:
        if scheduler.config.prediction_type != "v_prediction":
            raise ValueError(f"exact inversion needs a v-prediction model, not {scheduler.config.prediction_type}")
        return cls(scheduler.alphas_cumprod.float().cpu(), float(scheduler.final_alpha_cumprod),
                   scheduler.config.num_train_timesteps // num_steps, iterations)

    def refine(self, start: torch.Tensor, landed: torch.Tensor, t: torch.Tensor,
               predict: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``landed`` [K, F, C, H, W], the plain inverse step from ``start``, moved so that the forward
        step at ``t`` from it returns to ``start``; ``predict`` is the guided v-prediction at ``t``."""
        below = int(t) - self.step_size
        a_n = self.alphas[int(t)].item()
        a_p = self.alphas[below].item() if below >= 0 else self.final_alpha
        scale = math.sqrt((1 - a_p) / (1 - a_n))  # A: how much of x_n the forward step keeps
        clean_weight = math.sqrt(a_p) - math.sqrt(a_n) * scale  # B: its weight on the clean estimate
        for _ in range(self.iterations):
            v = predict(landed)
            clean = math.sqrt(a_n) * landed - math.sqrt(1 - a_n) * v  # x0 estimate at x_n
            if a_n < 0.5 and scale > 1e-3:  # noise dominates x_n: solve x_p = A x_n + B x0 for x_n
                landed = (start - clean_weight * clean) / scale
            else:  # the clean estimate dominates, or the step lands on the clean latent (A = 0, as the
                # last of very few steps does): keep the noise estimate, solve for x0
                noise = math.sqrt(a_n) * v + math.sqrt(1 - a_n) * landed
                clean = (start - math.sqrt(1 - a_p) * noise) / math.sqrt(a_p)
                landed = math.sqrt(a_n) * clean + math.sqrt(1 - a_n) * noise
        return landed


@torch.no_grad()
def sample(model: LoadedModel, scheduler, latents: torch.Tensor, guidance: Guidance, num_steps: int, *,
           injection: Injection | None = None, keep_trajectory: bool = False,
           progress: ProgressFn | None = None, should_stop: StopFn | None = None,
           image: torch.Tensor | None = None, exact: ExactInversion | None = None,
           drop_rows: DropFn | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run ``num_steps`` DDIM steps of ``scheduler`` from ``latents`` [K, F, C, H, W]; an image-to-video
    model conditions the K samples on ``image`` [1 or K, F, C, H, W] (engine.pipeline.conditioning).

    Returns the final latents [K, F, C, H, W] (float32) and, with ``keep_trajectory``, every step's
    latents [steps, K, F, C, H, W]. ``should_stop`` is checked before each step (cancellation takes
    effect within one step); ``progress`` is called after each. ``exact`` (inversion only) refines
    each inverse step by fixed-point iterations, one more model call each. ``drop_rows``, asked after
    ``should_stop``, names samples to leave out from then on (a cancelled variant): the returned latents
    are those of the samples kept, in order (not with ``keep_trajectory``).
    """
    scheduler.set_timesteps(num_steps, device=model.device)
    timesteps = scheduler.timesteps
    rotary = model.rotary_embeddings(latents)
    latents = latents.to(model.device, torch.float32)
    edited_embeds = guidance.rows  # [E, T, D]
    repeats = edited_embeds.size(0) // latents.size(0)
    condition = image.to(model.device, model.dtype) if image is not None else None  # [1 or K, F, C, H, W]
    trajectory = []

    def guided_prediction(x: torch.Tensor, t: torch.Tensor, i: int) -> torch.Tensor:
        """The model's guided prediction for latents ``x`` [K, F, C, H, W] at step ``i``."""
        rows = x.repeat(repeats, 1, 1, 1, 1)  # [E, F, C, H, W]
        images = None
        if condition is not None:  # as the rows: [E, F, C, H, W]
            images = condition.expand(x.size(0), -1, -1, -1, -1).repeat(repeats, 1, 1, 1, 1)
        embeds, plan = edited_embeds, None
        if injection is not None and i < injection.num_steps:
            references = injection.reference_at(i)  # [R, F, C, H, W]
            rows = torch.cat([rows, references])  # [E + R, F, C, H, W]
            embeds = torch.cat([edited_embeds, injection.embeds])
            plan = injection.plan
            if images is not None:
                images = torch.cat([images, injection.image.to(images).expand_as(references)])
        rows = scheduler.scale_model_input(rows, t).to(model.dtype)
        prediction = model.forward(rows, embeds, t, rotary, plan, images)
        prediction = prediction[: edited_embeds.size(0)].float()  # drop the references' predictions
        return guidance.combine(prediction, t, num_steps)  # [K, F, C, H, W]

    for i, t in enumerate(timesteps):
        if should_stop is not None and should_stop():
            raise Cancelled()
        gone = drop_rows() if drop_rows is not None else []
        if gone:  # a cancelled variant leaves the batch; the others go on where they are
            keep = [k for k in range(latents.size(0)) if k not in gone]
            if injection is not None:
                injection = injection.select(keep, latents.size(0))
            if condition is not None and condition.size(0) == latents.size(0):
                condition = condition[keep]
            guidance = guidance.select(keep)
            latents = latents[keep]  # [K', F, C, H, W]
            edited_embeds = guidance.rows
        prediction = guided_prediction(latents, t, i)
        stepped = scheduler.step(prediction, t, latents, return_dict=False)[0].float()
        if exact is not None:
            stepped = exact.refine(latents, stepped, t, lambda x, t=t, i=i: guided_prediction(x, t, i))
        latents = stepped

        if keep_trajectory:
            trajectory.append(latents)
        if progress is not None:
            progress(i + 1, len(timesteps))

    return latents, (torch.stack(trajectory) if keep_trajectory else None)


def edit_row_layout(prompts: list[str], guided: bool, shared_reference: bool
                    ) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """Which reference row each edited row reads, for K variants with ``prompts``.

    Edited rows are [uncond_1..K, cond_1..K] (guided) or [cond_1..K]. Exact: the unconditional rows
    share reference 0 (the trajectory latent with the negative prompt), and the conditional rows of
    variants with the same prompt share one reference (the same latent and text give the same
    reference), numbered after it in order of first appearance. Returns ``reference_of`` and the
    index of each distinct prompt's first variant (its conditional reference's text); with
    ``shared_reference`` (approximate) every row reads reference 0 and the second is None.
    """
    k = len(prompts)
    if shared_reference:
        return (0,) * (2 * k if guided else k), None
    distinct = list(dict.fromkeys(prompts))
    firsts = tuple(prompts.index(p) for p in distinct)
    conditional_of = tuple(distinct.index(p) for p in prompts)
    if guided:
        return (0,) * k + tuple(1 + r for r in conditional_of), firsts
    return conditional_of, firsts


def seeded_noise(shape: tuple[int, ...], seed: int, device: torch.device) -> torch.Tensor:
    """The initial noise of an edit: drawn on the CPU from the seed, so a seed means the same noise
    on every machine, then moved to ``device``."""
    generator = torch.Generator("cpu").manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device)


class StepTimer:
    """Turns a stage's step callbacks into (step, total, it/s) progress reports."""

    def __init__(self, report: Callable[[int, int, float], None]):
        self.report = report
        self.start = time.perf_counter()

    def __call__(self, step: int, total: int) -> None:
        elapsed = time.perf_counter() - self.start
        self.report(step, total, step / elapsed if elapsed > 0 else 0.0)
