"""The demo fixtures: the tiny CogVideoX (:mod:`engine.demo.tiny_model`), the moving-shapes clip
(:mod:`engine.demo.sample_clip`) and the demo's job: two prompt variants of the clip at the tiny
model's size. Light to import (no torch until :func:`prepare_demo`)."""

from __future__ import annotations

from pathlib import Path

TINY_SIZE = (64, 96)  # (height, width) of frames the tiny model is meant for
DEMO_PROMPTS = ("a watercolor painting of shapes drifting over a pastel gradient",
                "a neon sign of a red disc and a blue square at night")
# Small enough that the tiny model's demo finishes in well under a minute on 2 CPU cores.
DEMO_PARAMS = {"height": TINY_SIZE[0], "width": TINY_SIZE[1], "max_num_frames": 17, "num_inference_steps": 20}


def demo_clip_path() -> Path:
    """Where the demo's clip lives (in the cache dir; :func:`prepare_demo` writes it)."""
    from ..paths import sample_clip_path

    return sample_clip_path()


def prepare_demo(model: str | None = None) -> tuple[str, Path]:
    """The demo's model (``model``, else the tiny model, built into the cache when missing) and its
    clip (generated when missing)."""
    from ..paths import tiny_model_dir
    from .sample_clip import write_sample_clip
    from .tiny_model import ensure_tiny_model

    model_path = model or str(ensure_tiny_model(tiny_model_dir()))
    clip = demo_clip_path()
    if not clip.exists():
        write_sample_clip(clip)
    return model_path, clip
