"""How a clip's frames are fitted to the size the model sees (``resize``), and cut back afterwards.

- ``crop`` (and ``keep``, whose size already has the clip's aspect): scale so the frame covers the
  target, take the centre; nothing is stretched, the edges are lost.
- ``pad``: scale so the frame fits inside the target, centre it on black bars (a letterbox); every
  output is cut back to the picture, so the bars never show.
- ``stretch``: squeeze to the target (as the reference script does).
"""

from __future__ import annotations

import math

import numpy as np
import torch

Box = tuple[int, int, int, int]  # (top, left, height, width)


def fit_frame(source_height: int, source_width: int, height: int, width: int, resize: str
              ) -> tuple[tuple[int, int], Box, Box]:
    """For a ``source_height`` x ``source_width`` clip shown to the model at ``height`` x ``width``: the
    size decord resizes to while decoding, the box taken from the decoded frame, and the box of the
    model's frame that holds the picture (the whole frame unless padded)."""
    whole = (0, 0, height, width)
    if resize == "stretch":
        return (height, width), whole, whole
    if resize == "pad":
        scale = min(height / source_height, width / source_width)
        # Even sides: the picture is encoded alone (yuv420p needs even sides).
        inner_h = min(height, max(2, int(source_height * scale + 1e-6) // 2 * 2))
        inner_w = min(width, max(2, int(source_width * scale + 1e-6) // 2 * 2))
        return (inner_h, inner_w), (0, 0, inner_h, inner_w), ((height - inner_h) // 2, (width - inner_w) // 2,
                                                              inner_h, inner_w)
    scale = max(height / source_height, width / source_width)
    decode_h = max(height, math.ceil(source_height * scale - 1e-6))
    decode_w = max(width, math.ceil(source_width * scale - 1e-6))
    return (decode_h, decode_w), ((decode_h - height) // 2, (decode_w - width) // 2, height, width), whole


def place_picture(frames: torch.Tensor, height: int, width: int, picture: Box) -> torch.Tensor:
    """Frames [F, C, h, w] in [-1, 1] placed at ``picture`` on black frames [F, C, height, width]."""
    top, left, h, w = picture
    if (h, w) == (height, width):
        return frames
    canvas = frames.new_full((frames.size(0), frames.size(1), height, width), -1.0)
    canvas[:, :, top:top + h, left:left + w] = frames
    return canvas


def cut_picture(frames: torch.Tensor | np.ndarray, picture: Box, channels_last: bool = False):
    """The picture of padded frames: [F, C, H, W] (or [F, H, W, C] with ``channels_last``) cut to ``picture``."""
    top, left, h, w = picture
    if channels_last:
        return frames[:, top:top + h, left:left + w]
    return frames[:, :, top:top + h, left:left + w]
