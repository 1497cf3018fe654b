"""What the history's preview shows of one frame, per view: the three videos side by side, an A/B split
(original left, edited right), the difference between the original and the edit, the variants of one
source side by side, or the result's contact sheet. Plain PIL, run in the preview's thread worker."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageChops

from engine.api import OUTPUT_FILES, result_frames

# The views v cycles through, in order, and their titles.
VIEWS = {"frames": "original · reconstruction · edited", "ab": "A/B: original | edited",
         "difference": "difference: |edited − original| ×4", "variants": "the variants of this source",
         "sheet": "contact sheet"}
MAX_VARIANTS = 3  # beside the original: four panels at most
DIFFERENCE_GAIN = 4

Panels = list[tuple[str, Image.Image]]


def split_view(left: Image.Image, right: Image.Image) -> Image.Image:
    """``left``'s left half and ``right``'s right half, a white line between them."""
    right = right.convert("RGB").resize(left.size)
    combined = left.convert("RGB").copy()
    middle = combined.width // 2
    combined.paste(right.crop((middle, 0, right.width, right.height)), (middle, 0))
    combined.paste((255, 255, 255), (middle, 0, middle + 1, combined.height))
    return combined


def difference_view(first: Image.Image, second: Image.Image, gain: int = DIFFERENCE_GAIN) -> Image.Image:
    """Where two frames differ, brighter where they differ more (the difference times ``gain``)."""
    difference = ImageChops.difference(first.convert("RGB"), second.convert("RGB").resize(first.size))
    return difference.point(lambda value: min(255, value * gain))


def load_panels(view: str, output_dir: str, index: int, variants: list[tuple[str, str]]) -> Panels:
    """The labelled images of ``view`` for frame ``index``; ``variants``: (prompt, folder) of the other
    results of the same source, for the variants view."""
    if view == "sheet":
        with Image.open(Path(output_dir) / OUTPUT_FILES["contact_sheet"]) as sheet:
            return [("contact sheet", sheet.convert("RGB"))]
    frames = {label: Image.fromarray(frame) for label, frame in result_frames(output_dir, index).items()}
    original, edited = frames["original"], frames["edited"]
    if view == "ab":
        return [(VIEWS["ab"], split_view(original, edited))]
    if view == "difference":
        return [("original", original), ("edited", edited),
                (f"difference ×{DIFFERENCE_GAIN}", difference_view(original, edited))]
    if view == "variants":
        panels = [("original", original), ("this edit", edited)]
        for prompt, folder in variants[: MAX_VARIANTS - 1]:
            panels.append((prompt, Image.fromarray(result_frames(folder, index)["edited"])))
        return panels
    return list(frames.items())
