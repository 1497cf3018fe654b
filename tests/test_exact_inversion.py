"""Exact inversion (``exact_inversion``): fixed-point refinement of each DDIM inversion step.

On the trained toy model a plain 50-step DDIM round trip loses the background's brightness on clips
far from the world's mean grey (BENCHMARKS.md); refined inversion steps bring the same clip back. The
clip below is the eval suite's second held-out clip, one of those (about 10.6 dB plain).
"""

from __future__ import annotations

import pytest
import torch

from engine.params import build_params
from engine.pipeline.artifacts import Variant
from engine.pipeline.edit import run_edit
from engine.pipeline.inversion_cache import InversionCache
from engine.pipeline.metrics import PSNR_ROUND_TRIP_VS_VAE
from engine.pipeline.model import load_model
from engine.quality.suite import SUITE_SEED, make_suite
from engine.toy.world import WORLD_SIZE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toy():
    return load_model("toy", device="cpu", dtype="fp32")


@pytest.fixture(scope="module")
def hard_clip(tmp_path_factory):
    scenes, _ = make_suite(2, SUITE_SEED, ("colour",))
    return scenes[1].write_mp4(tmp_path_factory.mktemp("clip") / "hard.mp4")


def round_trip_db(toy, clip, tmp_path, cache, **overrides) -> float:
    height, width = WORLD_SIZE
    params = build_params({"height": height, "width": width, **overrides})
    [result] = run_edit(toy, clip, [Variant("job", "a red square", 1)], params, tmp_path / str(overrides),
                        cache=cache)
    return result.metrics[PSNR_ROUND_TRIP_VS_VAE]


def test_refined_inversion_steps_bring_back_a_clip_plain_ddim_loses(toy, hard_clip, tmp_path):
    cache = InversionCache(tmp_path / "cache")  # shared: the refined inversion must not be served the plain one
    plain = round_trip_db(toy, hard_clip, tmp_path, cache, exact_inversion=0)
    exact = round_trip_db(toy, hard_clip, tmp_path, cache, exact_inversion=2)
    assert plain < 20.0  # the clip this test is about: the plain round trip loses it
    assert exact >= 30.0 and exact > plain + 10.0
    assert round_trip_db(toy, hard_clip, tmp_path, cache, exact_inversion=0) == plain  # and back, from the cache


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 10, 50])
def test_a_refined_inverse_step_is_undone_by_the_forward_step_at_any_step_count(steps):
    """With two steps the first inverse step lands where the forward step returns to the clean latent
    (no noise kept: A = 0), which the solve for x_n divided by (the queue benchmark's 2-step edits came
    back NaN); every refined step, the first and the last included, must be one the forward step undoes.
    One step is the exception: it goes from the clean latent to zero SNR, where the forward step reads
    nothing of x_n, so no x_n undoes it; the refinement must then leave the step as it is."""
    from diffusers import CogVideoXDDIMScheduler

    from engine.pipeline.sampling import ExactInversion
    from engine.toy.building import SCHEDULER_5B

    forward = CogVideoXDDIMScheduler(**SCHEDULER_5B)
    forward.set_timesteps(steps)
    exact = ExactInversion.for_forward(forward, steps, iterations=40)
    generator = torch.Generator("cpu").manual_seed(steps)
    start = torch.randn(1, 2, 4, 6, 6, generator=generator)
    bias = torch.randn(start.shape, generator=generator)

    def predict(x):  # a smooth stand-in for the model's v-prediction
        return 0.1 * torch.tanh(x) + 0.2 * bias

    for t in forward.timesteps.flip(0):  # the inverse steps' landing timesteps, upwards
        landed = exact.refine(start, start.clone(), t, predict)
        assert torch.isfinite(landed).all(), int(t)
        if steps == 1:
            assert torch.equal(landed, start)
            continue
        back = forward.step(predict(landed), t, landed, return_dict=False)[0]
        torch.testing.assert_close(back, start, atol=1e-4, rtol=1e-4, msg=f"t={int(t)}")
