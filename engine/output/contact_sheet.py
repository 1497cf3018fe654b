"""``contact_sheet.png``: a few frames of original, reconstruction and edit in rows, labelled, so a
result can be judged from one image copied over SSH."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .atomic import atomic_path

LABEL_WIDTH = 110


def sheet_frame_indices(num_frames: int, columns: int) -> list[int]:
    """``columns`` frames spread evenly from the first to the last."""
    if num_frames <= columns:
        return list(range(num_frames))
    return [round(i * (num_frames - 1) / (columns - 1)) for i in range(columns)]


def contact_sheet(rows: dict[str, np.ndarray], columns: int = 4, max_cell_width: int = 360) -> Image.Image:
    """``rows``: label -> [F, H, W, 3] uint8 videos of equal shape. One row per video."""
    videos = list(rows.values())
    num, height, width, _ = videos[0].shape
    picks = sheet_frame_indices(num, columns)
    scale = min(1.0, max_cell_width / width)
    cell_w, cell_h = max(1, round(width * scale)), max(1, round(height * scale))
    sheet = Image.new("RGB", (LABEL_WIDTH + cell_w * len(picks), 18 + cell_h * len(rows)), "black")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for c, index in enumerate(picks):
        draw.text((LABEL_WIDTH + c * cell_w + 4, 3), f"frame {index}", fill="white", font=font)
    for r, (label, video) in enumerate(rows.items()):
        top = 18 + r * cell_h
        draw.text((6, top + cell_h // 2 - 6), label, fill="white", font=font)
        for c, index in enumerate(picks):
            cell = Image.fromarray(video[index]).resize((cell_w, cell_h), Image.Resampling.BILINEAR)
            sheet.paste(cell, (LABEL_WIDTH + c * cell_w, top))
    return sheet


def write_contact_sheet(path: Path, rows: dict[str, np.ndarray], columns: int = 4) -> None:
    image = contact_sheet(rows, columns)
    with atomic_path(Path(path), suffix=".png") as tmp:
        image.save(tmp, format="PNG")
