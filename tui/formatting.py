"""Plain-text formatting shared by the screens: durations, sizes, timestamps, parameter summaries."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from engine.api import GIB, OUTPUT_FILES, PARAM_SPECS, PSNR_ROUND_TRIP, EditParams

# Columns from which a screen is wide: the footer shows every key, the panes sit side by side.
WIDE_COLUMNS = 100

# Parameters worth seeing for every job, changed or not.
KEY_PARAMS = ("max_num_frames", "height", "width", "num_inference_steps", "guidance_scale", "seed")
BAR_FULL, BAR_EMPTY = "█", "░"


# C0 controls but newline and tab, DEL, C1 controls, and the bidirectional overrides and isolates:
# text from a job (someone else's job.json, a prompt) never reaches the terminal as escape sequences.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean(text: str | None) -> str:
    """``text`` safe to show: each control character as a visible ``\\xNN`` / ``\\uNNNN``."""
    if not text:
        return text or ""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


def format_duration(seconds: float | None) -> str:
    """``4.2 s`` under a minute, else ``m:ss`` or ``h:mm:ss``."""
    if seconds is None or seconds != seconds:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_eta(seconds: float | None) -> str:
    """A countdown: ``0:07``, ``12:30``, ``2:05:00``; empty when unknown."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return ""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def plural(count: int, noun: str) -> str:
    """``1 job``, ``2 jobs``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def format_fps(fps: float) -> str:
    """A frame rate to two decimals at most: ``8``, ``4.29``."""
    return f"{round(fps, 2):g}"


def format_gib(num_bytes: int) -> str:
    return f"{num_bytes / GIB:.1f}"


def format_timestamp(timestamp: float | None) -> str:
    """Local date and time to the minute (the history's 'finished' column)."""
    if not timestamp:
        return ""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def format_short_timestamp(timestamp: float | None) -> str:
    """Local month, day and time (a list's column; the details show the year)."""
    return time.strftime("%m-%d %H:%M", time.localtime(timestamp)) if timestamp else ""


def format_clock(timestamp: float) -> str:
    """Local time of day to the second (the event log)."""
    return time.strftime("%H:%M:%S", time.localtime(timestamp))


def format_value(value: Any) -> str:
    """A parameter value as the form shows it: ``auto`` for None, ``""`` for empty text."""
    if value is None:
        return "auto"
    if value == "" and isinstance(value, str):
        return '""'
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def format_psnr(metrics: dict[str, float], key: str = PSNR_ROUND_TRIP) -> str:
    value = metrics.get(key)
    return "" if value is None else f"{value:.1f} dB"


def source_name(path: str) -> str:
    return clean(Path(path).name or path)


def model_name(model: str) -> str:
    """A hub id as is; a local folder by its name (the header has no room for a full path)."""
    if model.startswith(("/", ".", "~")):
        return Path(model).name or model
    return model


def devices_label(devices: list[str]) -> str:
    """The header's devices: ``cuda:0`` or ``cuda:0,cuda:1``; from three on ``4× cuda``; a cluster's
    (``NODE:cuda:N``) ``4× cuda on 2 nodes`` (the devices pane lists them)."""
    nodes = {device.rsplit(":", 2)[0] for device in devices if device.count(":") >= 2}
    if len(devices) <= 2 and not nodes:
        return ",".join(devices)
    kinds = dict.fromkeys(device.split(":")[-2 if device.count(":") >= 2 else 0] for device in devices)
    where = f" on {len(nodes)} node{'s' if len(nodes) != 1 else ''}" if nodes else ""
    return f"{len(devices)}× {'/'.join(kinds)}{where}"


def stage_label(stage: str | None) -> str:
    return (stage or "").replace("_", " ")


def progress_bar(step: int, total: int, width: int = 6) -> str:
    if total <= 0:
        return BAR_EMPTY * width
    filled = max(0, min(width, round(width * step / total)))
    return BAR_FULL * filled + BAR_EMPTY * (width - filled)


def param_rows(params: EditParams) -> list[tuple[str, str, bool]]:
    """(name, value, changed) for the parameters that differ from the defaults, plus the key ones."""
    rows = []
    for spec in PARAM_SPECS:
        value = getattr(params, spec.name)
        changed = value != spec.default
        if changed or spec.name in KEY_PARAMS:
            rows.append((spec.name, format_value(value), changed))
    return rows


def shorten(text: str, width: int) -> str:
    """Cut ``text`` to ``width`` characters with an ellipsis."""
    text = " ".join(clean(text).split())
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _job_file(output_dir: str | None) -> dict:
    """A result's job.json as a dict; empty when there is none or it is unreadable."""
    if not output_dir:
        return {}
    try:
        job = json.loads((Path(output_dir) / OUTPUT_FILES["job"]).read_text())
    except (OSError, ValueError):
        return {}
    return job if isinstance(job, dict) else {}


def result_approximations(output_dir: str | None) -> str | None:
    """What a finished result ran approximately at the engine level (FP8 projections), as its job.json
    records it; None for an exact result or an unreadable folder. Per-job approximations
    (``shared_reference``) are parameters and show with them."""
    model = _job_file(output_dir).get("model", {})
    return model.get("linear_layers") if isinstance(model, dict) else None


def result_fps(output_dir: str | None) -> float | None:
    """The frame rate of a result's videos, as its job.json records it (None: not recorded)."""
    frames = _job_file(output_dir).get("frames", {})
    fps = frames.get("fps") if isinstance(frames, dict) else None
    return float(fps) if isinstance(fps, (int, float)) and not isinstance(fps, bool) and fps > 0 else None
