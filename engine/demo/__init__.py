"""The demo fixtures: the demo's job (a clip of the toy world and two prompt variants, edited by the
trained toy model, engine.toy) and the random tiny CogVideoX the tests use (:mod:`engine.demo.tiny_model`,
with the moving-shapes clip of :mod:`engine.demo.sample_clip`). Light to import (no torch until
:func:`prepare_demo`)."""

from __future__ import annotations

from pathlib import Path

from ..paths import TOY_MODEL

TINY_SIZE = (64, 96)  # (height, width) of frames the tiny test model is meant for
DEMO_MODEL = TOY_MODEL
DEMO_NOTICE = "toy model trained here on coloured shapes, not CogVideoX-5B"  # said by the app and the CLI
DEMO_SCENE_SEED = 123  # a red ball drifting over a grey background (engine.toy.world)
DEMO_PROMPTS = ("a green ball", "a yellow ball")
DEMO_PARAMS = {"height": 64, "width": 96}  # the toy model's size (engine.toy.world.WORLD_SIZE)


def demo_clip_path() -> Path:
    """Where the demo's clip lives (in the cache dir; :func:`prepare_demo` writes it)."""
    from ..paths import sample_clip_path

    return sample_clip_path()


def prepare_demo(model: str | None = None) -> tuple[str, Path]:
    """The demo's model (``model``, else the shipped toy model) and its clip (generated when missing)."""
    import torch

    from ..toy.world import sample_scene

    clip = demo_clip_path()
    if not clip.exists():
        scene = sample_scene(torch.Generator("cpu").manual_seed(DEMO_SCENE_SEED), colour="red", shape="ball")
        scene.write_mp4(clip)
    return model or DEMO_MODEL, clip
