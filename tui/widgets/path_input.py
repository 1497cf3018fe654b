"""An Input for file paths that suggests the rest of a folder or video name (→ accepts it)."""

from __future__ import annotations

import os
from pathlib import Path

from textual.suggester import Suggester
from textual.widgets import Input

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg")  # no GIF: decord cannot read it


class PathSuggester(Suggester):
    """Completes the last path component: folders (with a trailing /) and video files first."""

    def __init__(self, extensions: tuple[str, ...] = VIDEO_EXTENSIONS) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.extensions = extensions

    async def get_suggestion(self, value: str) -> str | None:
        return complete_path(value, self.extensions)


def complete_path(value: str, extensions: tuple[str, ...] = VIDEO_EXTENSIONS) -> str | None:
    if not value:
        return None
    folder, prefix = os.path.split(os.path.expanduser(value))
    try:
        entries = sorted(os.scandir(folder or "."), key=lambda entry: entry.name)
    except OSError:
        return None
    folders, videos, others = [], [], []
    for entry in entries:
        if not entry.name.startswith(prefix) or (entry.name.startswith(".") and not prefix.startswith(".")):
            continue
        try:
            if entry.is_dir():
                folders.append(entry.name + "/")  # a folder typed in full still gets its slash
            elif entry.name == prefix:
                continue
            elif Path(entry.name).suffix.lower() in extensions:
                videos.append(entry.name)
            else:
                others.append(entry.name)
        except OSError:
            continue
    for name in (*videos, *folders, *others):
        return value + name[len(prefix):]
    return None


class PathInput(Input):
    """A compact Input with path completion."""

    def __init__(self, value: str = "", *, placeholder: str = "", id: str | None = None) -> None:
        super().__init__(value=value, placeholder=placeholder, id=id, suggester=PathSuggester(), compact=True)
