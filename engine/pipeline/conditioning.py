"""What a model family adds around the latents: CogVideoX1.5's temporal padding, the image-to-video
models' first-frame condition, and reading an edited first frame a user made.

Both follow diffusers' own pipelines. CogVideoXPipeline pads an odd latent frame count at the front for
CogVideoX1.5's temporal patch of 2 and drops the padding before decoding; the padding frame here is a
copy of the first latent frame (the frame CogVideoXImageToVideoPipeline puts there too). The image
condition is CogVideoXImageToVideoPipeline's: the first frame VAE-encoded as a one-frame video, a
*sample* of its latent distribution (its noise augmentation; here from a fixed seed, so an inversion and
its edits see the same condition), scaled (or, with the VAE's ``invert_scale_latents``, divided) by the
scaling factor, followed by zero latents for the other frames.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import EditError
from ..families import ModelFamily
from .compile_gate import MODEL_GATE
from .frames import FramePlan, VideoInfo, sniff_file
from .geometry import place_picture
from .model import LoadedModel

IMAGE_LATENT_SEED = 0  # the draw of the image condition's latent sample (fixed: see the module doc)
FIRST_FRAME_FIX = ("export the first frame of original.mp4 (or of the clip), edit it and save it as PNG or JPEG at "
                   "the same size")


def latent_padding(family: ModelFamily, latent_frames: int) -> int:
    """Latent frames added at the front so ``latent_frames`` fills whole temporal patches."""
    return -latent_frames % family.temporal_patch


def pad_latents(latents: torch.Tensor, padding: int) -> torch.Tensor:
    """[B, F', C, h, w] -> [B, padding + F', C, h, w]: copies of the first latent frame in front."""
    if not padding:
        return latents
    return torch.cat([latents[:, :1].expand(-1, padding, -1, -1, -1), latents], dim=1)


def drop_padding(latents: torch.Tensor, padding: int) -> torch.Tensor:
    """[B, padding + F', C, h, w] -> [B, F', C, h, w]."""
    return latents[:, padding:]


@torch.no_grad()
def image_condition(model: LoadedModel, frame: torch.Tensor, latent_frames: int) -> torch.Tensor:
    """A first frame [C, H, W] in [-1, 1] -> the image latents [1, latent_frames, C', h, w] (float32) an
    image-to-video model takes beside latents of ``latent_frames`` (padding included) frames."""
    vae = model.pipeline.vae
    image = frame.to(model.device, model.dtype)[None, :, None]  # [1, C, 1, H, W]
    generator = torch.Generator(model.device).manual_seed(IMAGE_LATENT_SEED)
    with MODEL_GATE.shared():
        latent = vae.encode(image).latent_dist.sample(generator)  # [1, C', 1, h, w]
    latent = latent.permute(0, 2, 1, 3, 4).float()  # [1, 1, C', h, w]
    factor = vae.config.scaling_factor
    latent = latent / factor if getattr(vae.config, "invert_scale_latents", False) else latent * factor
    zeros = latent.new_zeros((1, latent_frames - 1, *latent.shape[2:]))
    return torch.cat([latent, zeros], dim=1)  # [1, latent_frames, C', h, w]


def read_first_frame(path: str | os.PathLike, info: VideoInfo, plan: FramePlan) -> torch.Tensor:
    """An edited first frame, shaped as the model sees the clip: [C, H, W] in [-1, 1].

    It may be a frame of the clip (its size or aspect ratio: fitted the way the clip's frames are) or a
    frame of ``original.mp4`` (the picture's size: used as it is)."""
    from PIL import Image, UnidentifiedImageError

    file = Path(path).expanduser()
    if not file.is_file():
        raise EditError(f"first frame not found: {file}", "give the path of a PNG or JPEG image")
    try:
        with open(file, "rb") as handle:
            kind = sniff_file(handle.read(4096))
        with Image.open(file) as opened:
            image = np.asarray(opened.convert("RGB"))  # [H, W, 3] uint8
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        what = f"it is {kind}" if kind and not kind.startswith("still image") else "not an image PIL can read"
        raise EditError(f"cannot read the first frame {file.name} ({what})", FIRST_FRAME_FIX) from exc
    height, width = plan.size
    top, left, pic_h, pic_w = plan.picture or (0, 0, height, width)
    got = image.shape[:2]
    frame = torch.from_numpy(image.copy()).permute(2, 0, 1).float()[None]  # [1, 3, h, w]
    if got == (pic_h, pic_w):  # a frame of original.mp4
        fitted = frame
    elif abs(got[1] / got[0] - info.width / info.height) <= 0.02 * info.width / info.height:  # the clip's aspect
        decode_h, decode_w = plan.decode_size
        resized = torch.nn.functional.interpolate(frame, size=(decode_h, decode_w), mode="bilinear",
                                                  antialias=True, align_corners=False)
        c_top, c_left, c_h, c_w = plan.crop
        fitted = resized[:, :, c_top:c_top + c_h, c_left:c_left + c_w]
    else:
        raise EditError(f"the first frame {file.name} is {got[1]}x{got[0]}; it must be a frame of original.mp4 "
                        f"({pic_w}x{pic_h}) or have the clip's aspect ratio ({info.width}x{info.height})",
                        FIRST_FRAME_FIX)
    fitted = fitted.clamp(0, 255).div(127.5).sub(1.0)
    return place_picture(fitted, height, width, (top, left, pic_h, pic_w))[0]  # [3, H, W]
