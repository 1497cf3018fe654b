"""Messages that carry the engine's news from worker threads to the app (post_message is thread-safe)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from engine.api import Event

    from .launch import Launch


class EngineEvent(Message):
    """One event from the engine worker."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class EngineOpened(Message):
    """The worker is open: the data dir is locked and its store readable."""

    def __init__(self, launch: Launch) -> None:
        super().__init__()
        self.launch = launch


class EngineOpenFailed(Message):
    """The worker could not be opened (another process holds the data dir, ...)."""

    def __init__(self, reason: str, return_code: int) -> None:
        super().__init__()
        self.reason = reason
        self.return_code = return_code


class EngineClosed(Message):
    """The worker has stopped and released the data dir: the app may exit."""
