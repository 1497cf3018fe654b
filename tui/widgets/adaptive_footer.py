"""The footer, compact (less padding) on narrow terminals so more key bindings fit in 80 columns."""

from __future__ import annotations

from textual import events
from textual.widgets import Footer

from ..formatting import WIDE_COLUMNS


class AdaptiveFooter(Footer):
    """``always_compact``: a screen with many keys (the history) is compact at every width."""

    def __init__(self, *, always_compact: bool = False) -> None:
        super().__init__()
        self.always_compact = always_compact

    def on_resize(self, event: events.Resize) -> None:
        self.compact = self.always_compact or self.app.size.width < WIDE_COLUMNS
        # Narrower, the palette's key would cut the last binding (Quit) short, or show as a stray word; ctrl+p
        # still opens it (the README and the event log's first line say so).
        self.show_command_palette = self.app.size.width >= WIDE_COLUMNS
