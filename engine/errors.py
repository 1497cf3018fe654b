"""User-facing errors: each names the problem and the fix, in one line.

Anything raised as :class:`EditError` is the user's to fix (bad input, missing model, full disk);
front ends print ``str(error)`` and no traceback. Everything else is a bug or an unexpected fault.
"""

from __future__ import annotations


class EditError(Exception):
    """A problem the user can fix: ``problem`` says what is wrong, ``fix`` what to do."""

    def __init__(self, problem: str, fix: str):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} — {fix}")

    def __reduce__(self):  # pickled as (problem, fix): it crosses process boundaries (a Ray actor's error)
        return type(self), (self.problem, self.fix)


class VideoError(EditError):
    """The source video is missing, unreadable or too short."""


class ModelError(EditError):
    """The model path or id does not give a usable CogVideoX-5B pipeline."""


class OutputError(EditError):
    """Outputs cannot be written (permissions, full disk)."""


class OutOfMemoryError(EditError):
    """The GPU ran out of memory during a job."""


class Cancelled(Exception):
    """Raised inside a stage when its job was cancelled; not an error."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, at most ``limit`` characters ("" when it has none)."""
    return (str(exc).strip().splitlines() or [""])[0][:limit]


def one_line(exc: BaseException) -> str:
    """An unexpected exception in one line: its type and the first line of its message."""
    first = first_line(exc)
    return f"unexpected {type(exc).__name__}: {first}" if first else f"unexpected {type(exc).__name__}"
