"""Measuring an edited clip of the toy world against the scene it came from.

The world is known exactly (engine.toy.world), so an edit can be judged without a learned metric:
the object is the pixels that differ from the scene's known background; its colour is the nearest of
the world's colours to their median, its shape the template (ball, square, triangle) that overlaps it
best at its centroid and area. Everything here works on uint8 frames [F, H, W, 3] as a user sees them
(decoded from the result's MP4s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..toy.world import COLOURS, SHAPES, SQUARE_HALF_SIDE, TRIANGLE_CIRCUMRADIUS, Scene, shape_mask

# A pixel belongs to the object when some channel is this far from the background: every colour of
# the world is at least ~140 from every background level, decoding noise stays well under it.
OBJECT_THRESHOLD = 70.0
# Area of each shape per squared radius (see engine.toy.world.shape_mask).
AREA_PER_R2 = {"ball": math.pi, "square": (2 * SQUARE_HALF_SIDE) ** 2,
               "triangle": 3 * math.sqrt(3) / 4 * TRIANGLE_CIRCUMRADIUS**2}
MIN_OBJECT_PIXELS = 6  # fewer: no object in that frame
MISSING_PENALTY = 0.5  # a frame with no object counts as this share of the frame's diagonal off


@dataclass(frozen=True)
class FoundObject:
    """What is seen in one clip: per frame the object's mask, centroid, colour and shape."""

    masks: np.ndarray  # [F, H, W] bool
    centroids: np.ndarray  # [F, 2] (x, y); NaN where no object was found
    colours: list[str | None]  # per frame; None: no object
    shapes: list[str | None]

    def majority(self, values: list[str | None]) -> str | None:
        seen = [v for v in values if v is not None]
        return max(set(seen), key=seen.count) if seen else None

    @property
    def colour(self) -> str | None:
        return self.majority(self.colours)

    @property
    def shape(self) -> str | None:
        return self.majority(self.shapes)


def _shifts(mask: np.ndarray, pad: bool) -> list[np.ndarray]:
    """The nine 3x3 neighbours' views of ``mask`` over its last two axes, ``pad`` beyond the border."""
    padded = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)], constant_values=pad)
    h, w = mask.shape[-2:]
    return [padded[..., dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)]


def _erode(mask: np.ndarray) -> np.ndarray:
    return np.logical_and.reduce(_shifts(mask, True))


def _dilate(mask: np.ndarray, times: int = 1) -> np.ndarray:
    for _ in range(times):
        mask = np.logical_or.reduce(_shifts(mask, False))
    return mask


def object_masks(frames: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Pixels far from the known background, opened (specks of noise dropped): [F, H, W] bool."""
    distance = np.abs(frames.astype(np.float32) - background[None].astype(np.float32)).max(axis=-1)
    return _dilate(_erode(distance > OBJECT_THRESHOLD))


def nearest_colour(rgb: np.ndarray) -> str:
    names = list(COLOURS)
    table = np.array([COLOURS[n] for n in names], dtype=np.float32)
    return names[int(np.argmin(((table - rgb[None]) ** 2).sum(axis=1)))]


def best_shape(mask: np.ndarray, centroid: np.ndarray) -> str:
    """The shape whose template, at ``centroid`` and of ``mask``'s area, overlaps ``mask`` best."""
    height, width = mask.shape
    area = float(mask.sum())
    scores = []
    for shape in SHAPES:
        radius = math.sqrt(area / AREA_PER_R2[shape])
        template = shape_mask(shape, torch.tensor(centroid, dtype=torch.float64), radius, height, width).numpy()
        scores.append((template & mask).sum() / max(1, (template | mask).sum()))
    return SHAPES[int(np.argmax(scores))]


def find_object(frames: np.ndarray, background: np.ndarray) -> FoundObject:
    """The object in ``frames`` [F, H, W, 3] uint8 over ``background`` [H, W, 3] (0..255)."""
    masks = object_masks(frames, background)
    ys, xs = np.mgrid[0:frames.shape[1], 0:frames.shape[2]].astype(np.float64) + 0.5
    centroids = np.full((len(frames), 2), np.nan)
    colours: list[str | None] = []
    shapes: list[str | None] = []
    for i, mask in enumerate(masks):
        if mask.sum() < MIN_OBJECT_PIXELS:
            colours.append(None)
            shapes.append(None)
            continue
        centroids[i] = (xs[mask].mean(), ys[mask].mean())
        colours.append(nearest_colour(np.median(frames[i][mask].astype(np.float32), axis=0)))
        shapes.append(best_shape(mask, centroids[i]))
    return FoundObject(masks, centroids, colours, shapes)


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """PSNR in dB of uint8 images, over the pixels ``where`` [..., H, W] is True (all by default)."""
    error = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if where is not None:
        error = error[np.broadcast_to(where[..., None], error.shape)]
    mse = float(error.mean()) if error.size else 0.0
    return 100.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


@dataclass(frozen=True)
class EditScore:
    """How well one edited clip did; distances in pixels of the clip."""

    colour_ok: bool  # the object has the target colour (majority of frames)
    shape_ok: bool  # ... and the target shape
    centroid_error: float  # mean distance of the edited object's centroid to the source object's centre
    iou: float  # mean overlap of the edited object with the source object's footprint
    background_psnr: float  # dB, outside both objects, against the source
    flicker: float  # mean |frame-to-frame change| outside both objects (0..255; the source has 0)

    @property
    def success(self) -> bool:
        return self.colour_ok and self.shape_ok


def score_edit(edited: np.ndarray, scene: Scene, target_colour: str, target_shape: str) -> EditScore:
    """Score ``edited`` [F, H, W, 3] uint8, an edit of ``scene`` towards ``target_colour`` ``target_shape``."""
    num_frames = len(edited)
    background = scene.background().numpy()
    found = find_object(edited, background)
    truth = scene.masks(num_frames).numpy()  # [F, H, W]
    centres = scene.centres(num_frames).numpy()  # [F, 2]
    missing = MISSING_PENALTY * math.hypot(scene.height, scene.width)
    distances = np.linalg.norm(found.centroids - centres, axis=1)
    distances = np.where(np.isnan(distances), missing, distances)
    overlap = (found.masks & truth).sum(axis=(1, 2)) / np.maximum(1, (found.masks | truth).sum(axis=(1, 2)))
    outside = ~(_dilate(truth, 2) | _dilate(found.masks, 2))  # [F, H, W]
    source = scene.render(num_frames).numpy()
    still = outside[1:] & outside[:-1]
    change = np.abs(edited[1:].astype(np.float32) - edited[:-1].astype(np.float32)).mean(axis=-1)
    return EditScore(found.colour == target_colour, found.shape == target_shape, float(distances.mean()),
                     float(overlap.mean()), psnr(edited, source, outside),
                     float(change[still].mean()) if still.any() else 0.0)


def path_distance(a: Scene, b: Scene, num_frames: int) -> float:
    """Mean distance between two scenes' object centres: another clip's path is the chance floor of
    the centroid error (an edit that ignored the source's motion)."""
    return float(np.linalg.norm(a.centres(num_frames).numpy() - b.centres(num_frames).numpy(), axis=1).mean())
