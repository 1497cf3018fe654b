"""Every parameter of an edit, in one dataclass: default, range and one-line help.

The headless command's flags, ``job.json`` and the TUI's form are all generated from
:class:`EditParams`; presets are named sets of overrides of its defaults. Validation happens here,
before any model work, and reports every wrong field at once.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

# CogVideoX's 3D VAE encodes 4k+1 frames to k+1 latent frames but decodes an even latent count to
# 4(k+1) frames, not 4k+1 (its first decoded chunk must hold an odd number of latents), so only
# 8m+1 frames (9, 17, ..., 49, ..., 81) make the round trip: clips are trimmed to such a count.
FRAME_MULTIPLE = 8
MIN_FRAMES = 9
MAX_FRAMES = 161  # the longest clip of any family (CogVideoX1.5; CogVideoX-5B: 81): engine.families
# CogVideoX's geometry: its VAE compresses time by 4 and space by 8, its transformer patches 2x2.
VAE_TEMPORAL = 4
VAE_SPATIAL = 8
PATCH_SIZE = 2
SPATIAL_MULTIPLE = VAE_SPATIAL * PATCH_SIZE  # frame sides are multiples of 16


def latent_frames(frames: int) -> int:
    """Latent frames of ``frames`` (4k+1) pixel frames."""
    return (frames - 1) // VAE_TEMPORAL + 1


def video_tokens(frames: int, height: int, width: int, temporal_patch: int = 1) -> int:
    """Transformer tokens of a clip of ``frames`` frames of ``height`` x ``width`` pixels (CogVideoX1.5:
    ``temporal_patch`` 2, its latent frames padded to whole patches)."""
    return -(-latent_frames(frames) // temporal_patch) * (height // SPATIAL_MULTIPLE) * (width // SPATIAL_MULTIPLE)


def _param(default: Any, help: str, *, group: str, low: float | None = None, high: float | None = None,
           multiple_of: int | None = None, approximate: bool = False, path: bool = False) -> Any:
    """A dataclass field carrying its help, range and form group as metadata (``path``: a file's path)."""
    meta = {"help": help, "group": group, "low": low, "high": high, "multiple_of": multiple_of,
            "approximate": approximate, "path": path}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class EditParams:
    """All knobs of one edit. Defaults are the method's; see PRESETS for named alternatives."""

    # Frames: which frames of the source are used, and how they are shaped.
    skip_frames_start: int = _param(0, "Frames dropped from the start of the clip.", group="frames", low=0)
    skip_frames_end: int = _param(0, "Frames dropped from the end of the clip.", group="frames", low=0)
    frame_sample_step: int | None = _param(
        None, "Take every N-th frame (empty: the stride that spreads max_num_frames over the clip).",
        group="frames", low=1)
    max_num_frames: int | None = _param(
        None, "Most frames kept (empty: the model's own, 49 for CogVideoX-5B, 81 for 1.5); trimmed down to "
        "the model's frame rule (8k+1; 16k+1 for 1.5).", group="frames", low=MIN_FRAMES, high=MAX_FRAMES)
    height: int | None = _param(None, "Frame height the model sees, multiple of 16 (empty: the model's own, 480 "
                                "for CogVideoX-5B, 768 for 1.5).", group="frames",
                                low=64, high=1360, multiple_of=SPATIAL_MULTIPLE)
    width: int | None = _param(None, "Frame width the model sees, multiple of 16 (empty: the model's own, 720 for "
                               "CogVideoX-5B, 1360 for 1.5).", group="frames",
                               low=64, high=1360, multiple_of=SPATIAL_MULTIPLE)
    resize: Literal["crop", "pad", "stretch", "keep"] = _param(
        "crop", "crop: centre-crop to the target aspect, then resize; pad: letterbox (the bars are cropped "
        "away in every output); stretch: squeeze (as the reference); keep: a size of the clip's own aspect "
        "(CogVideoX1.5-5B-I2V only).", group="frames")
    first_frame: str = _param(
        "", "An edited first frame (PNG or JPEG, any image editor) that guides the edit; the inversion keeps "
        "the source's motion. Image-to-video models only.", group="frames", path=True)
    fps: float | None = _param(
        None, "Output frame rate (empty: the source's fps divided by the stride, so motion keeps its speed).",
        group="frames", low=1, high=120)

    # Sampling: DDIM inversion and the edited reconstruction.
    num_inference_steps: int = _param(50, "DDIM steps for inversion and reconstruction.", group="sampling",
                                      low=1, high=1000)
    guidance_scale: float = _param(6.0, "Classifier-free guidance of the edit prompt (1: none).",
                                   group="sampling", low=1.0, high=30.0)
    use_dynamic_cfg: bool = _param(False, "Vary the guidance over the steps as CogVideoX's pipeline does.",
                                   group="sampling")
    negative_prompt: str = _param("", "What the edit steers away from.", group="sampling")
    inversion_prompt: str = _param("", "Prompt the inversion is conditioned on (empty: unconditional).",
                                   group="sampling")
    inversion_guidance: float = _param(1.0, "Classifier-free guidance during inversion (1: none).",
                                       group="sampling", low=1.0, high=30.0)
    exact_inversion: int = _param(
        0, "Fixed-point iterations per inversion step, each one more model call: the inverted noise then "
        "denoises back to the source far more exactly (the round trip; `cogedit-tui eval`). 0: plain DDIM "
        "inversion, as the reference.", group="sampling", low=0, high=10)
    init: Literal["noise", "inverted"] = _param(
        "inverted", "Start the edit from the inverted latent (keeps the source's layout better: `cogedit-tui "
        "eval`) or from seeded noise (as the reference).",
        group="sampling")
    inject_fraction: float = _param(
        1.0, "Share of the steps with key/value injection from the source: more keeps the source, "
        "less follows the prompt.", group="sampling", low=0.0, high=1.0)
    seed: int = _param(42, "Seed of the initial noise (init=noise): the same seed gives the same edit.",
                       group="sampling", low=0, high=2**63 - 1)

    # Performance: where exact arithmetic can be traded for speed or memory.
    vae_tiling: Literal["auto", "on", "off"] = _param(
        "auto", "Tiled VAE encode/decode (auto: on a GPU when an untiled decode would not fit).",
        group="performance")
    literal_guidance: bool = _param(
        False, "Compute classifier-free guidance even where it is a no-op, as the reference script does.",
        group="performance")
    shared_reference: bool = _param(
        False, "Approximate: one reference branch shared by both guidance halves and all variants "
        "(fewer rows per step).", group="performance", approximate=True)

    # Output: what the result videos carry besides the frames.
    audio: bool = _param(
        True, "Mux the source's audio, cut to the frames kept, into the videos (a silent clip stays silent).",
        group="output")

    @property
    def inversion_guided(self) -> bool:
        """Whether the inversion runs under classifier-free guidance: guidance between two equal prompts
        is a no-op and is skipped unless ``literal_guidance`` asks for the reference's doubled batch.
        The inversion and the inversion cache's key both follow this one rule."""
        return self.inversion_guidance > 1.0 and (
            self.inversion_prompt != self.negative_prompt or self.literal_guidance)


PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # zai-org/CogVideo inference/ddim_inversion.py: 81 frames, stretched, guided empty-prompt inversion.
    "reference": {"max_num_frames": 81, "resize": "stretch", "inversion_guidance": 6.0,
                  "literal_guidance": True, "fps": 8.0, "init": "noise"},
}


class ParamsError(ValueError):
    """One or more parameters are out of range; ``problems`` lists them all."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid parameters: " + "; ".join(problems))


@dataclass(frozen=True)
class ParamSpec:
    """What a front end needs to show and parse one parameter."""

    name: str
    kind: type  # int, float, str or bool
    optional: bool  # None is allowed (shown empty)
    default: Any
    help: str
    group: str
    choices: tuple[str, ...] | None
    low: float | None
    high: float | None
    multiple_of: int | None
    approximate: bool
    path: bool = False  # the value is a file's path (checked where it is used: a job's history outlives files)

    def describe_range(self) -> str:
        if self.choices:
            return " | ".join(self.choices)
        if self.kind is bool:
            return "true | false"
        if self.path:
            return "a file's path"
        parts = []
        if self.low is not None and self.high is not None:
            parts.append(f"{_num(self.low)}..{_num(self.high)}")
        elif self.low is not None:
            parts.append(f">= {_num(self.low)}")
        if self.multiple_of:
            parts.append(f"multiple of {self.multiple_of}")
        return ", ".join(parts) or "text"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _show(raw: Any, limit: int = 40) -> str:
    """``repr(raw)`` cut to ``limit`` characters, so a hostile value cannot flood the one-line error."""
    text = repr(raw)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _spec_of(f: dataclasses.Field) -> ParamSpec:
    hint = typing.get_type_hints(EditParams)[f.name]
    optional = False
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        optional = type(None) in args
        hint = next(a for a in args if a is not type(None))
    choices = None
    if typing.get_origin(hint) is Literal:
        choices = tuple(typing.get_args(hint))
        hint = str
    meta = f.metadata
    return ParamSpec(f.name, hint, optional, f.default, meta["help"], meta["group"], choices, meta["low"],
                     meta["high"], meta["multiple_of"], meta["approximate"], meta["path"])


PARAM_SPECS: tuple[ParamSpec, ...] = tuple(_spec_of(f) for f in dataclasses.fields(EditParams))
SPECS_BY_NAME: dict[str, ParamSpec] = {s.name: s for s in PARAM_SPECS}


def parse_value(spec: ParamSpec, raw: Any) -> Any:
    """Turn text (from a flag, a form or JSON) into the field's type; raises ValueError with a reason."""
    if raw is None or (isinstance(raw, str) and raw.strip() == "" and spec.kind is not str):
        if spec.optional:
            return None
        raise ValueError("a value is required")
    if spec.kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{_show(raw)} is not true/false")
    if spec.kind is int:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError(f"{_show(raw)} is not a whole number")
        try:
            return int(str(raw).strip()) if not isinstance(raw, (int, float)) else int(raw)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{_show(raw)} is not a whole number") from None
    if spec.kind is float:
        if isinstance(raw, (bool, bytes, bytearray)):  # float() would read b"12" as 12.0
            raise ValueError(f"{_show(raw)} is not a number")
        try:
            return float(raw)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{_show(raw)} is not a number") from None
    if not isinstance(raw, str):
        raise ValueError(f"{_show(raw)} is not text")
    return raw


def field_problem(spec: ParamSpec, value: Any) -> str | None:
    """Why ``value`` is not acceptable for ``spec``, or None."""
    if value is None:
        return None if spec.optional else "a value is required"
    if spec.choices and value not in spec.choices:
        return f"must be one of {', '.join(spec.choices)}"
    if spec.kind in (int, float):
        if value != value or value in (float("inf"), float("-inf")):
            return "must be a finite number"
        if spec.low is not None and value < spec.low:
            return f"must be at least {_num(spec.low)}"
        if spec.high is not None and value > spec.high:
            return f"must be at most {_num(spec.high)}"
        if spec.multiple_of and value % spec.multiple_of:
            nearest = max(spec.multiple_of, round(value / spec.multiple_of) * spec.multiple_of)
            return f"must be a multiple of {spec.multiple_of} (nearest: {nearest})"
    return None


def build_params(values: dict[str, Any] | None = None, preset: str = "default") -> EditParams:
    """Parse and validate ``values`` (raw text or typed) on top of ``preset``; every problem at once."""
    if not isinstance(preset, str) or preset not in PRESETS:
        raise ParamsError([f"preset: unknown preset {_show(preset)} (choose {', '.join(PRESETS)})"])
    merged = {**PRESETS[preset], **(values or {})}
    problems: list[str] = []
    typed: dict[str, Any] = {}
    for name, raw in merged.items():
        spec = SPECS_BY_NAME.get(name)
        if spec is None:
            problems.append(f"{name}: unknown parameter")
            continue
        try:
            value = parse_value(spec, raw)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
            continue
        problem = field_problem(spec, value)
        if problem:
            problems.append(f"{name}: {problem} (got {_show(raw)})")
        else:
            typed[name] = value
    if problems:
        raise ParamsError(problems)
    return EditParams(**typed)


EMPTY_PROMPT = "the edit prompt is empty — write what the video should become"


def check_prompts(prompts: list[str]) -> None:
    """Refuse, before any model work, a batch with no prompt or with an empty (or blank) one."""
    prompts = list(prompts or [])
    if not prompts:
        raise ParamsError([f"prompt: {EMPTY_PROMPT} (no prompt was given)"])
    problems = []
    for number, prompt in enumerate(prompts, start=1):
        where = "prompt" if len(prompts) == 1 else f"prompt {number} of {len(prompts)}"
        if not isinstance(prompt, str):
            problems.append(f"{where}: must be text (got {_show(prompt)})")
        elif not prompt.strip():
            problems.append(f"{where}: {EMPTY_PROMPT}")
        elif not _is_utf8(prompt):
            problems.append(f"{where}: holds bytes that are not UTF-8 text (the terminal's or the shell's "
                            "encoding?) — type it again as UTF-8")
    if problems:
        raise ParamsError(problems)


def _is_utf8(text: str) -> bool:
    """False for text holding lone surrogates: bytes the command line could not decode as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def params_to_dict(params: EditParams) -> dict[str, Any]:
    return dataclasses.asdict(params)


def changed_from_default(params: EditParams) -> dict[str, Any]:
    """The fields that differ from EditParams' defaults (what a user actually chose)."""
    default = EditParams()
    return {s.name: getattr(params, s.name) for s in PARAM_SPECS
            if getattr(params, s.name) != getattr(default, s.name)}


def markdown_table() -> str:
    """The README's parameter table, generated from the dataclass (``python -m engine.params``)."""
    rows = ["| parameter | default | range | what it does |", "|---|---|---|---|"]
    for spec in PARAM_SPECS:
        default = "auto" if spec.default is None else ('""' if spec.default == "" else spec.default)
        rows.append(f"| `{spec.name}` | {default} | {spec.describe_range().replace('|', chr(92) + '|')} "
                    f"| {spec.help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
