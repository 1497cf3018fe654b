"""The CogVideoX model families the editor runs, told apart by a model's own transformer config (never by
its name), with each family's native clip and its rules for frame counts and sizes.

- CogVideoX-5B: 8k+1 frames (9..81), any size in multiples of 16; native 49 frames of 480x720.
- CogVideoX1.5-5B: a temporal patch of 2 latent frames (odd latent counts are padded, as diffusers' own
  pipeline pads them); 16k+1 frames (17..161); native 81 frames of 768x1360.
- CogVideoX-5B-I2V: image-to-video (a first frame's latents enter beside the video's); learned position
  embeddings, so only its native 49 frames of 480x720.
- CogVideoX1.5-5B-I2V: image-to-video with the ofs embedding; sizes free within its rule (short side
  768, long side 768..1360), so a clip can keep its own aspect ratio (``resize=keep``).
- The 2B family (no rotary position embeddings) is refused, as before: this editing method needs the 5B models.

:func:`resolve_params` fills an edit's empty frames/height/width with the family's native values and
refuses, naming the rule and the nearest valid setting, what the family cannot run. Light: no torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import EditError, ModelError
from .params import FRAME_MULTIPLE, MAX_FRAMES, SPATIAL_MULTIPLE, VAE_SPATIAL, EditParams

# CogVideoX1.5 was trained at 1360x768; its config's sample size (300x300 latents, 2400x2400 pixels) is
# the bound of its rotary grid, not a size it was trained at.
NATIVE_15 = (768, 1360)
MAX_FRAMES_15 = MAX_FRAMES  # 16 * 10 + 1, the longest clip zai-org documents for CogVideoX1.5
MAX_FRAMES_10 = 81  # the longest clip CogVideoX-5B handles (49 is what it was trained on)


@dataclass(frozen=True)
class ModelFamily:
    """What the editor needs to know of a model family (see the module doc)."""

    name: str
    temporal_patch: int  # latent frames per transformer patch (CogVideoX1.5: 2)
    image_conditioned: bool  # image-to-video: the transformer takes a first frame's latents too
    ofs: bool  # the ofs embedding input (CogVideoX1.5-I2V)
    frames: int  # the native clip: frame count, height, width
    height: int
    width: int
    frame_multiple: int  # frame counts are frame_multiple * k + 1
    max_frames: int
    fixed_size: bool  # learned position embeddings: the native size and frame count only
    free_size: bool  # short side = the native short side, long side up to the native long side
    max_height: int  # the rotary grid's bound, in pixels
    max_width: int

    @property
    def min_frames(self) -> int:
        return self.frames if self.fixed_size else self.frame_multiple + 1

    def frame_rule(self) -> str:
        if self.fixed_size:
            return f"exactly {self.frames} frames (learned position embeddings)"
        return f"{self.frame_multiple}k+1 frames, {self.min_frames} to {self.max_frames}"

    def frame_count(self, available: int) -> int:
        """The most frames of ``available`` this family takes (0: too few)."""
        if self.fixed_size:
            return self.frames if available >= self.frames else 0
        count = (min(available, self.max_frames) - 1) // self.frame_multiple * self.frame_multiple + 1
        return count if count >= self.min_frames else 0

    def size_rule(self) -> str:
        if self.fixed_size:
            return f"only {self.height}x{self.width} (learned position embeddings)"
        if self.free_size:
            short, long = sorted((self.height, self.width))
            return f"short side {short}, long side {short}..{long}, multiples of {SPATIAL_MULTIPLE}"
        return f"multiples of {SPATIAL_MULTIPLE} up to {self.max_height}x{self.max_width}"

    def nearest_size(self, height: int, width: int) -> tuple[int, int]:
        """The valid (height, width) nearest to the given one, in the same orientation."""
        if self.fixed_size:
            return self.height, self.width
        if self.free_size:
            short, long = sorted((self.height, self.width))
            portrait = height > width
            asked_long = max(height, width)
            fitted = min(max(_round16(asked_long), short), long)
            return (fitted, short) if portrait else (short, fitted)
        return (min(max(_round16(height), 64), self.max_height // 16 * 16),
                min(max(_round16(width), 64), self.max_width // 16 * 16))

    def size_ok(self, height: int, width: int) -> bool:
        return (height, width) == self.nearest_size(height, width) and height % 16 == 0 and width % 16 == 0

    def keep_size(self, source_height: int, source_width: int) -> tuple[int, int]:
        """The size nearest the clip's own aspect ratio (``resize=keep``; free-size families)."""
        short, _ = sorted((self.height, self.width))
        if source_height > source_width:
            return self.nearest_size(round(short * source_height / source_width), short)
        return self.nearest_size(short, round(short * source_width / max(source_height, 1)))


def _round16(value: float) -> int:
    return max(SPATIAL_MULTIPLE, int(round(value / SPATIAL_MULTIPLE)) * SPATIAL_MULTIPLE)


FIVE_B = ModelFamily("CogVideoX-5B", 1, False, False, 49, 480, 720, FRAME_MULTIPLE, MAX_FRAMES_10, False, False,
                     1360, 1360)


def native_15(grid_height: int, grid_width: int) -> tuple[int, int]:
    """CogVideoX1.5's native 768x1360, or, for a model whose rotary grid cannot hold it (a small test
    model), the largest size of that aspect ratio which the grid holds in both orientations."""
    if min(grid_height, grid_width) >= NATIVE_15[1]:
        return NATIVE_15
    long = min(grid_height, grid_width) // SPATIAL_MULTIPLE * SPATIAL_MULTIPLE
    return _round16(long * NATIVE_15[0] / NATIVE_15[1]), long


def family_from_config(config: dict[str, Any], where: str = "the model") -> ModelFamily:
    """The family of a transformer config (``transformer/config.json``); ModelError for one this editor
    cannot run (the 2B family, an unknown layout)."""
    if not config.get("use_rotary_positional_embeddings", False):
        raise ModelError(f"{where} is a CogVideoX-2B-family model (no rotary position embeddings); "
                         "DDIM-inversion editing needs the 5B model",
                         "use THUDM/CogVideoX-5b, CogVideoX1.5-5B or their I2V models, or a fine-tune of them")
    patch_t = config.get("patch_size_t") or 1
    in_channels = config.get("in_channels", 16)
    out_channels = config.get("out_channels") or in_channels
    if patch_t not in (1, 2) or in_channels not in (out_channels, 2 * out_channels):
        raise ModelError(f"{where} has a transformer layout this editor does not know (patch_size_t={patch_t}, "
                         f"in_channels={in_channels}, out_channels={out_channels})",
                         "use a CogVideoX-5B or CogVideoX1.5-5B model (text- or image-to-video)")
    image = in_channels == 2 * out_channels
    learned = bool(config.get("use_learned_positional_embeddings", False))
    grid_height = config.get("sample_height", 60) * VAE_SPATIAL
    grid_width = config.get("sample_width", 90) * VAE_SPATIAL
    frames = int(config.get("sample_frames", 49))
    if patch_t == 2:
        height, width = native_15(grid_height, grid_width)
        name, multiple, most = "CogVideoX1.5-5B", 16, MAX_FRAMES_15
    else:
        height, width = grid_height, grid_width
        name, multiple, most = "CogVideoX-5B", FRAME_MULTIPLE, MAX_FRAMES_10
        grid_height = grid_width = 1360  # 1.0's rotary grid is rescaled to any size
    return ModelFamily(name + ("-I2V" if image else ""), patch_t, image, config.get("ofs_embed_dim") is not None,
                       frames, height, width, multiple, most, learned, image and patch_t == 2 and not learned,
                       grid_height, grid_width)


def resolve_params(params: EditParams, family: ModelFamily, source_size: tuple[int, int] | None = None
                   ) -> EditParams:
    """``params`` with empty frames/height/width set to ``family``'s native clip (``resize=keep``: the
    size nearest ``source_size``'s aspect ratio). Raises EditError naming, for everything the family
    cannot run, its rule and the nearest valid setting."""
    problems: list[tuple[str, str]] = []  # (what is wrong, the fix)
    frames = params.max_num_frames or family.frames
    rule = f"max_num_frames: {family.name} takes {family.frame_rule()}"
    if family.fixed_size and frames < family.frames:
        problems.append((rule, f"set max_num_frames {family.frames} or leave it empty"))
    elif not family.fixed_size and frames > family.max_frames:
        problems.append((rule, f"set max_num_frames {family.max_frames} or less"))
    elif not family.fixed_size and frames < family.min_frames:
        problems.append((rule, f"set max_num_frames {family.min_frames} or more"))
    if params.resize == "keep" and not family.free_size:
        problems.append((f"resize: keep needs a model whose sizes are free (CogVideoX1.5-5B-I2V); {family.name} "
                         f"takes {family.size_rule()}", "use resize=crop or resize=pad"))
    height, width = params.height, params.width
    if params.resize == "keep" and family.free_size and source_size and not (height or width):
        height, width = family.keep_size(*source_size)
    height, width = height or family.height, width or family.width
    if not family.size_ok(height, width):
        near_h, near_w = family.nearest_size(height, width)
        problems.append((f"height/width: {family.name} takes {family.size_rule()}, not {height}x{width}",
                         f"the nearest valid setting is height {near_h} width {near_w}"))
    if params.first_frame and not family.image_conditioned:
        problems.append((f"first_frame: {family.name} is a text-to-video model; an edited first frame needs an "
                         "image-to-video model", "use CogVideoX-5B-I2V or CogVideoX1.5-5B-I2V (--model), or "
                         "leave first_frame empty"))
    if problems:
        raise EditError("; ".join(p for p, _ in problems), "; ".join(f for _, f in problems))
    return dataclasses.replace(params, max_num_frames=frames, height=height, width=width)
