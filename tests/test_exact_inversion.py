"""Exact inversion (``exact_inversion``): fixed-point refinement of each DDIM inversion step.

On the trained toy model a plain 50-step DDIM round trip loses the background's brightness on clips
far from the world's mean grey (BENCHMARKS.md); refined inversion steps bring the same clip back. The
clip below is the eval suite's second held-out clip, one of those (about 10.6 dB plain).
"""

from __future__ import annotations

import pytest

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
