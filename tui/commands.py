"""Command palette entries generated from the key bindings active on a screen.

Every binding shown in the footer, and every hidden one of our screens and app that has a tooltip,
becomes a palette command (its tooltip the title, its key the help): a screen's actions appear in
the palette with no list kept by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

from textual.app import App, SystemCommand
from textual.screen import Screen


def binding_commands(app: App, screen: Screen, skip_titles: set[str]) -> Iterator[SystemCommand]:
    seen_actions: set[str] = set()
    for active in screen.active_bindings.values():
        binding = active.binding
        # Hidden bindings of our screens and app (each with a tooltip) count; Textual's own do not.
        own = isinstance(active.node, (Screen, App)) and bool(binding.tooltip)
        if not binding.description or binding.system or not active.enabled or not (binding.show or own):
            continue
        if binding.action in seen_actions:
            continue
        seen_actions.add(binding.action)
        title = binding.tooltip or binding.description
        if title in skip_titles or binding.description in skip_titles:
            continue
        key = binding.key_display or app.get_key_display(binding)
        yield SystemCommand(title, f"key: {key}", partial(app.run_action, binding.action, active.node))
