"""Under the form's prompts: each line's T5 token count against what the model keeps, and a warning for
a line the text encoder would cut. Counted in a thread worker (the tokenizer loads once, in seconds)."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Static
from textual.worker import get_current_worker

from engine.api import EditError, count_prompt_tokens, prompt_token_limit

from ..formatting import plural
from .queue_table import theme_style

COUNT_DELAY = 0.3


class PromptTokens(Static):
    class Counted(Message):
        def __init__(self, lines: list[str], counts: list[int] | None, limit: int, error: str | None) -> None:
            super().__init__()
            self.lines, self.counts, self.limit, self.error = lines, counts, limit, error

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.lines: list[str] = []
        self.counts: list[int] | None = None  # per line, once counted
        self.limit: int | None = None
        self._timer: Timer | None = None

    def count_soon(self, lines: list[str]) -> None:
        """Count ``lines`` (the non-empty prompt lines) after a short pause in the typing."""
        self.lines = lines
        if self._timer is not None:
            self._timer.stop()
        if not lines:
            self.counts = None
            self.display = False  # no blank line under an empty prompt box
            return
        self._timer = self.set_timer(COUNT_DELAY, lambda: self._count(list(lines)))

    @work(thread=True, exclusive=True, group="prompt-tokens", exit_on_error=False)
    def _count(self, lines: list[str]) -> None:
        worker = get_current_worker()
        try:
            model = self.app.wait_for_engine().config.model
            counts = [count_prompt_tokens(model, line) for line in lines]
            limit = prompt_token_limit(model)
        except (EditError, RuntimeError) as exc:  # the model is not here yet, the engine did not open
            message = self.Counted(lines, None, 0, str(exc).splitlines()[0])
        except Exception as exc:  # an unreadable tokenizer: no counts, the form still works
            message = self.Counted(lines, None, 0, f"{type(exc).__name__}: {exc}".splitlines()[0])
        else:
            message = self.Counted(lines, counts, limit, None)
        if not worker.is_cancelled:
            self.post_message(message)

    def on_prompt_tokens_counted(self, message: Counted) -> None:
        message.stop()
        if message.lines != self.lines:
            return  # typed since
        self.display = True
        if message.error:
            self.counts = None
            self.update(Text(f"no token counts: {message.error}", style="dim"))
            return
        self.counts, self.limit = message.counts, message.limit
        error, muted = theme_style(self, "bold $error"), "dim"
        text = Text(f"tokens per line (the model keeps {message.limit}): ", style=muted)
        over = []
        for n, count in enumerate(message.counts, 1):
            if n > 1:
                text.append(" · ", style=muted)
            text.append(str(count), style=error if count > message.limit else "")
            if count > message.limit:
                over.append(n)
        for n in over:
            text.append(f"\nline {n} is {plural(message.counts[n - 1], 'token')}: the text encoder keeps the first "
                        f"{message.limit}, the rest of the prompt is ignored", style=error)
        self.update(text)
