"""Where cogedit-tui keeps its data (history, outputs) and its caches (tiny model, inversions).

Both follow platformdirs, so ``XDG_DATA_HOME`` and ``XDG_CACHE_HOME`` move them on Linux.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import platformdirs

APP_NAME = "cogedit-tui"
# The files of a result folder (the export stage writes them; job.json lists them).
OUTPUT_FILES = {"original": "original.mp4", "reconstruction": "reconstruction.mp4", "edited": "edited.mp4",
                "contact_sheet": "contact_sheet.png", "job": "job.json"}
RESULT_VIDEOS = {label: OUTPUT_FILES[label] for label in ("original", "reconstruction", "edited")}


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def not_a_regular_file(path: str | os.PathLike, follow_symlinks: bool = True) -> str | None:
    """What ``path`` is when it exists as something other than a regular file ("a directory", "a FIFO
    (named pipe)", "a character device", ...): reading a FIFO blocks, a device never ends, replacing
    one destroys it. None for a regular file or a path that cannot be examined."""
    try:
        mode = os.stat(path, follow_symlinks=follow_symlinks).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


def cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir(APP_NAME))


def default_output_dir() -> Path:
    return data_dir() / "outputs"


TOY_MODEL = "toy"  # the name --model takes for the shipped toy model (engine.toy)


def toy_model_dir() -> Path:
    """The trained toy model shipped in the package (engine/toy/model/, a save_pretrained folder)."""
    return Path(__file__).resolve().parent / "toy" / "model"


def tiny_model_dir() -> Path:
    return cache_dir() / "tiny-model"


def sample_clip_path() -> Path:
    """The demo's clip: a red ball of the toy world (engine.demo writes it when missing)."""
    return cache_dir() / "sample" / "toy-world-red-ball.mp4"
