"""The footer, compact (less padding) on narrow terminals so more key bindings fit in 80 columns."""

from __future__ import annotations

from textual import events
from textual.widgets import Footer

from ..formatting import WIDE_COLUMNS

NARROW_COLUMNS = 80


class AdaptiveFooter(Footer):
    def on_resize(self, event: events.Resize) -> None:
        self.compact = self.app.size.width < WIDE_COLUMNS
        # Below 80 columns the palette's key would be cut to a stray word over the last binding; ctrl+p
        # still opens it (the README says so).
        self.show_command_palette = self.app.size.width >= NARROW_COLUMNS
