"""The footer, compact (less padding) on narrow terminals so more key bindings fit in 80 columns."""

from __future__ import annotations

from textual import events
from textual.widgets import Footer

COMPACT_BELOW = 100


class AdaptiveFooter(Footer):
    def on_resize(self, event: events.Resize) -> None:
        self.compact = self.app.size.width < COMPACT_BELOW
