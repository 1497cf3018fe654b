"""The toy world the trained model knows: one coloured object moving over a plain background.

One object — a ball, a square or an upward triangle, radius 7-11 px at 64x96 — of one saturated
colour moves along a straight or gently sinusoidal path at least 14 px long, over a low-saturation
background (two grey levels 60-200 with a small tint, plain or a linear gradient in any direction).
Its prompt is ``"a {colour} {shape}"``.

This module is the one definition of that world: training draws clips from it, ``eval`` draws its
held-out suite from it and measures edits against the object and background it knows. Scenes are
drawn from an explicit :class:`torch.Generator`; rendering is batched torch (the GPU renders
training batches, the CPU the eval suite).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

WORLD_SIZE = (64, 96)  # (height, width) the toy model was trained at
WORLD_FRAMES = 9  # frames per training clip (8k+1)
WORLD_FPS = 8.0  # frame rate of the clips written for the demo and the eval
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "green": (30, 190, 40), "blue": (30, 60, 230), "yellow": (230, 210, 30)}
SHAPES = ("ball", "square", "triangle")
RADIUS_RANGE = (7.0, 11.0)  # at 64x96; scaled with the frame's smaller side
MIN_PATH = 14.0  # px at 64x96
GREY_RANGE = (60.0, 200.0)
TINT = 12.0  # largest per-channel offset of the background's tint
WOBBLE = 4.0  # largest sideways amplitude of a sinusoidal path, px at 64x96
# Shapes share a "radius": the disc's; the square's half-side and the triangle's circumradius are
# scaled so that all three cover a similar area (pi r^2, 2.56 r^2, 2.03 r^2).
SQUARE_HALF_SIDE = 0.8
TRIANGLE_CIRCUMRADIUS = 1.25


def prompt_of(colour: str, shape: str) -> str:
    return f"a {colour} {shape}"


def parse_prompt(prompt: str) -> tuple[str, str] | None:
    """``"a red ball"`` -> ("red", "ball"); None for a prompt outside the template."""
    words = prompt.strip().lower().split()
    if len(words) == 3 and words[0] == "a" and words[1] in COLOURS and words[2] in SHAPES:
        return words[1], words[2]
    return None


def all_prompts() -> list[str]:
    return [prompt_of(c, s) for c in COLOURS for s in SHAPES]


@dataclass(frozen=True)
class Scene:
    """One clip's parameters, in pixels of a ``height`` x ``width`` frame."""

    colour: str
    shape: str
    radius: float
    start: tuple[float, float]  # (x, y) of the object's centre in the first frame
    end: tuple[float, float]  # ... and in the last
    wobble: float  # sideways amplitude of the path (0: straight)
    wobble_periods: float  # sine periods over the path
    grey: tuple[float, float]  # the background's two grey levels
    tint: tuple[float, float, float]
    gradient: tuple[float, float] | None  # unit direction of the background gradient; None: plain
    height: int = WORLD_SIZE[0]
    width: int = WORLD_SIZE[1]

    @property
    def prompt(self) -> str:
        return prompt_of(self.colour, self.shape)

    def with_object(self, colour: str | None = None, shape: str | None = None) -> Scene:
        """The same scene with another colour or shape (what a perfect edit would show)."""
        return Scene(colour or self.colour, shape or self.shape, self.radius, self.start, self.end, self.wobble,
                     self.wobble_periods, self.grey, self.tint, self.gradient, self.height, self.width)

    def centres(self, num_frames: int) -> torch.Tensor:
        """The object's centre in each frame: [F, 2] as (x, y)."""
        return paths(*_path_tensors([self]), num_frames)[0]

    def background(self) -> torch.Tensor:
        """[H, W, 3] float64 in 0..255."""
        return backgrounds(*_background_tensors([self]), self.height, self.width)[0]

    def masks(self, num_frames: int) -> torch.Tensor:
        """Where the object is in each frame: [F, H, W] bool."""
        return shape_mask(self.shape, self.centres(num_frames), self.radius, self.height, self.width)

    def write_mp4(self, path: Path, num_frames: int = WORLD_FRAMES, fps: float = WORLD_FPS) -> Path:
        """Write the clip as an H.264 MP4 (as a user's clip would come)."""
        from ..output.video import write_mp4

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_mp4(path, self.render(num_frames).numpy(), fps)
        return path

    def render(self, num_frames: int = WORLD_FRAMES) -> torch.Tensor:
        """The clip: [F, H, W, 3] uint8."""
        frames = self.background().expand(num_frames, -1, -1, -1).clone()
        frames[self.masks(num_frames)] = torch.tensor(COLOURS[self.colour], dtype=torch.float64)
        return frames.round().to(torch.uint8)


def _grid(height: int, width: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates [H, W] (y, x)."""
    ys = torch.arange(height, dtype=torch.float64, device=device) + 0.5
    xs = torch.arange(width, dtype=torch.float64, device=device) + 0.5
    return torch.meshgrid(ys, xs, indexing="ij")


def shape_mask(shape: str | torch.Tensor, centres: torch.Tensor, radius: float | torch.Tensor, height: int,
               width: int) -> torch.Tensor:
    """Masks of ``shape`` centred at ``centres`` [..., 2] (x, y) -> [..., H, W] bool.

    ``shape`` is a name, or a tensor of indices into SHAPES broadcastable with ``centres[..., 0]``
    (a batch of scenes); ``radius`` likewise a number or such a tensor.
    """
    ys, xs = _grid(height, width, centres.device)
    dx = xs - centres[..., 0, None, None].to(xs.dtype)  # [..., H, W]
    dy = ys - centres[..., 1, None, None].to(xs.dtype)
    r = torch.as_tensor(radius, dtype=xs.dtype, device=xs.device)
    r = r[..., None, None] if r.ndim else r
    ball = dx**2 + dy**2 <= r**2
    half = SQUARE_HALF_SIDE * r
    square = (dx.abs() <= half) & (dy.abs() <= half)
    # An equilateral triangle pointing up, its centroid at the centre: apex at -R, base at +R/2.
    big = TRIANGLE_CIRCUMRADIUS * r
    down = dy + big  # distance below the apex
    triangle = (down >= 0) & (dy <= big / 2) & (dx.abs() <= down / math.sqrt(3))
    if isinstance(shape, str):
        return {"ball": ball, "square": square, "triangle": triangle}[shape]
    index = shape.to(xs.device)[..., None, None]
    return torch.where(index == 0, ball, torch.where(index == 1, square, triangle))


def sample_scene(generator: torch.Generator, height: int = WORLD_SIZE[0], width: int = WORLD_SIZE[1],
                 colour: str | None = None, shape: str | None = None) -> Scene:
    """Draw one scene from ``generator`` (on the CPU); ``colour`` / ``shape`` fix those attributes."""

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * torch.rand((), generator=generator, dtype=torch.float64).item()

    def choice(options):
        return options[int(torch.randint(len(options), (), generator=generator))]

    scale = min(height / WORLD_SIZE[0], width / WORLD_SIZE[1])
    colour = colour or choice(list(COLOURS))
    shape = shape or choice(SHAPES)
    radius = uniform(*RADIUS_RANGE) * scale
    wobble = choice((0.0, uniform(1.0, WOBBLE))) * scale
    margin = TRIANGLE_CIRCUMRADIUS * radius + wobble + 1.0  # the whole object stays in the frame
    min_path = MIN_PATH * scale
    while True:  # rejection: both ends inside the margins, far enough apart
        start = (uniform(margin, width - margin), uniform(margin, height - margin))
        end = (uniform(margin, width - margin), uniform(margin, height - margin))
        if math.hypot(end[0] - start[0], end[1] - start[1]) >= min_path:
            break
    grey = (uniform(*GREY_RANGE), uniform(*GREY_RANGE))
    tint = (uniform(-TINT, TINT), uniform(-TINT, TINT), uniform(-TINT, TINT))
    angle = uniform(0.0, 2 * math.pi)
    gradient = choice((None, (math.cos(angle), math.sin(angle))))
    return Scene(colour, shape, radius, start, end, wobble, uniform(0.5, 1.0), grey, tint, gradient, height, width)


def paths(start: torch.Tensor, end: torch.Tensor, wobble: torch.Tensor, periods: torch.Tensor,
          num_frames: int) -> torch.Tensor:
    """Object centres of N scenes: start, end [N, 2], wobble, periods [N] -> [N, F, 2] (x, y)."""
    s = torch.linspace(0.0, 1.0, num_frames, dtype=start.dtype, device=start.device)  # [F]
    along = end - start  # [N, 2]
    normal = torch.stack([-along[:, 1], along[:, 0]], dim=1) / along.norm(dim=1, keepdim=True)
    side = wobble[:, None] * torch.sin(2 * math.pi * periods[:, None] * s)  # [N, F]
    return start[:, None] + along[:, None] * s[:, None] + normal[:, None] * side[..., None]


def backgrounds(grey: torch.Tensor, tint: torch.Tensor, gradient: torch.Tensor, plain: torch.Tensor, height: int,
                width: int) -> torch.Tensor:
    """Backgrounds of N scenes: grey [N, 2], tint [N, 3], gradient [N, 2], plain [N] -> [N, H, W, 3]."""
    ys, xs = _grid(height, width, grey.device)
    proj = xs * gradient[:, 0, None, None] + ys * gradient[:, 1, None, None]  # [N, H, W]
    low = proj.amin(dim=(1, 2), keepdim=True)
    high = proj.amax(dim=(1, 2), keepdim=True)
    ramp = torch.where(plain[:, None, None], 0.0, (proj - low) / (high - low).clamp_min(1e-9))
    level = grey[:, 0, None, None] + (grey[:, 1] - grey[:, 0])[:, None, None] * ramp
    return (level[..., None] + tint[:, None, None, :]).clamp(0, 255)


def _path_tensors(scenes: list[Scene], device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
    def t(values):
        return torch.tensor(values, dtype=torch.float64, device=device)

    return (t([s.start for s in scenes]), t([s.end for s in scenes]), t([s.wobble for s in scenes]),
            t([s.wobble_periods for s in scenes]))


def _background_tensors(scenes: list[Scene], device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
    def t(values, dtype=torch.float64):
        return torch.tensor(values, dtype=dtype, device=device)

    return (t([s.grey for s in scenes]), t([s.tint for s in scenes]),
            t([s.gradient or (1.0, 0.0) for s in scenes]), t([s.gradient is None for s in scenes], torch.bool))


def render_batch(scenes: list[Scene], num_frames: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Render several scenes at once on ``device``: [N, F, H, W, 3] float32 in [-1, 1] (training)."""
    height, width = scenes[0].height, scenes[0].width
    back = backgrounds(*_background_tensors(scenes, device), height, width)  # [N, H, W, 3]
    centres = paths(*_path_tensors(scenes, device), num_frames)  # [N, F, 2]
    shapes = torch.tensor([SHAPES.index(s.shape) for s in scenes], device=device)[:, None]  # [N, 1]
    radii = torch.tensor([s.radius for s in scenes], dtype=torch.float64, device=device)[:, None]
    masks = shape_mask(shapes, centres, radii, height, width)  # [N, F, H, W]
    colours = torch.tensor([COLOURS[s.colour] for s in scenes], dtype=torch.float64, device=device)
    frames = torch.where(masks[..., None], colours[:, None, None, None, :], back[:, None])
    return (frames.round() / 127.5 - 1.0).float()  # [N, F, H, W, 3]
