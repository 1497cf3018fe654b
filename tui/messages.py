"""Messages that carry the engine's news from worker threads to the app (post_message is thread-safe)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from engine.api import Event

    from .launch import Launch


class EngineEvent(Message):
    """One event from the engine worker (:func:`engine_message` picks the subclass for its kind)."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class StepProgressed(EngineEvent):
    """A stage's step count moved on: a later one for the same stage and jobs replaces it in the queue
    (a slow screen skips to the newest step instead of replaying every one)."""

    def can_replace(self, message: Message) -> bool:
        return (isinstance(message, StepProgressed) and message.event.stage == self.event.stage
                and message.event.job_ids == self.event.job_ids)


def engine_message(event: Event) -> EngineEvent:
    """The message that carries ``event`` to the app."""
    from engine.api import StepProgress

    return StepProgressed(event) if isinstance(event, StepProgress) else EngineEvent(event)


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
