"""A frame of a finished result in the terminal, in one of the views of preview_views (the three videos
side by side, A/B, difference, variants, contact sheet), with a frame slider and playback. Images render
through textual-image (kitty or sixel graphics where the terminal has them, coloured half blocks
elsewhere, so plain SSH works); frames are read and composed in a thread worker."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult, RenderResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Label
from textual.worker import get_current_worker
from textual_image.widget import Image as AutoImage

from engine.api import result_frame_count

from ..formatting import result_fps
from .preview_views import MAX_VARIANTS, VIEWS, load_panels

CACHE_FRAMES = 48
PANELS = MAX_VARIANTS + 1  # image columns; a view shows as many as it has images
PLAYBACK_FPS = 8  # when the result's job.json does not say its frame rate
MAX_PLAYBACK_FPS = 30


class FrameSlider(Widget):
    """``frame 3 / 9`` and a track with a knob where the frame sits."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.index = 0
        self.count = 0

        self.playing = False

    def set_position(self, index: int, count: int, playing: bool = False) -> None:
        self.index, self.count, self.playing = index, count, playing
        self.refresh()

    def render(self) -> RenderResult:
        if not self.count:
            return Text("")
        label = f"{'▶ ' if self.playing else ''}frame {self.index + 1} / {self.count} "
        track = max(4, self.size.width - len(label) - 1)
        knob = round(self.index * (track - 1) / max(1, self.count - 1))
        return Text.assemble((label, "bold"), ("━" * knob, "bold"), ("●", "bold"), ("─" * (track - knob - 1), "dim"))


class FramePreview(Vertical):
    """Shows frame ``index`` of one result folder in ``view``; :meth:`step` moves through the frames,
    :meth:`toggle_play` plays them in a loop."""

    class Loaded(Message):
        def __init__(self, key: tuple, index: int, count: int | None, panels: list | None,
                     error: str | None = None) -> None:
            super().__init__()
            self.key, self.index, self.count, self.panels, self.error = key, index, count, panels, error

    def __init__(self, image_class: type | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.image_class = image_class or AutoImage
        self.output_dir: str | None = None
        self.view = "frames"
        self.variants: list[tuple[str, str]] = []  # (prompt, folder) of the other results of the source
        self.index = 0
        self.count = 0
        self.shown_index: int | None = None  # the frame on screen (None: none yet)
        self._labels: list[str] = []  # the panels on screen
        self._cache: OrderedDict[tuple, list] = OrderedDict()
        self._player = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="frame-row"):
            for n in range(PANELS):
                with Vertical(classes="frame-column", id=f"column-{n}"):
                    yield Label("", classes="frame-label", markup=False)
                    yield self.image_class(None, id=f"panel-{n}", classes="frame-image")
        yield FrameSlider(id="frame-slider")
        yield Label("", id="preview-message", markup=False)

    def on_mount(self) -> None:
        self._set_panels(None)

    def on_resize(self) -> None:
        self._size_columns()

    def _size_columns(self) -> None:
        """The shown columns share the width equally, so their frames come out the same size."""
        shown = max(1, len(self._labels) or 3)
        column = max(8, self.content_size.width // shown)
        for widget in self.query(".frame-column"):
            widget.styles.width = column

    def images(self) -> dict[str, object]:
        """What each shown panel holds now, by its label (PIL images, or None)."""
        return {label: self.query_one(f"#panel-{n}").image for n, label in enumerate(self._labels)}

    @property
    def key(self) -> tuple:
        return (self.view, self.output_dir, tuple(folder for _, folder in self.variants))

    def show_result(self, output_dir: str | None, variants: list[tuple[str, str]] | None = None,
                    missing: str = "") -> None:
        """Preview ``output_dir`` from its first frame (``missing``: what to say when there is none)."""
        self.stop_playing()
        self.output_dir, self.variants = output_dir, variants or []
        self.index, self.count, self.shown_index = 0, 0, None
        self._set_panels(None)
        self.query_one(FrameSlider).set_position(0, 0)
        if not output_dir:
            self._message(missing)
        elif not Path(output_dir).is_dir():
            self._message(f"result folder missing: {output_dir}")
        else:
            self._message("reading frames …")
            self._request(0, need_count=True)

    def set_view(self, view: str) -> None:
        """Show the current frame in ``view`` (one of preview_views.VIEWS)."""
        self.view = view
        self.border_title = "Preview" if view == "frames" else f"Preview · {VIEWS[view]}"
        self.shown_index = None
        if self.output_dir and Path(self.output_dir).is_dir():
            self._request(self.index, need_count=not self.count)

    def step(self, delta: int) -> None:
        self.go_to(self.index + delta)

    def go_to(self, index: int) -> None:
        if not self.output_dir or not self.count or self.view == "sheet":
            return
        index = max(0, min(self.count - 1, index))
        if index != self.index:
            self.index = index
            self.query_one(FrameSlider).set_position(index, self.count, self.playing)
            self._request(index, need_count=False)

    # -- playback --------------------------------------------------------------------------------

    @property
    def playing(self) -> bool:
        return self._player is not None

    def toggle_play(self) -> None:
        if self.playing:
            self.stop_playing()
        elif self.output_dir and self.count > 1 and self.view != "sheet":
            fps = min(MAX_PLAYBACK_FPS, result_fps(self.output_dir) or PLAYBACK_FPS)
            self._player = self.set_interval(1 / fps, self._next_frame)
            self.query_one(FrameSlider).set_position(self.index, self.count, True)

    def stop_playing(self) -> None:
        if self._player is not None:
            self._player.stop()
            self._player = None
            self.query_one(FrameSlider).set_position(self.index, self.count, False)

    def _next_frame(self) -> None:
        """A tick of the player: the next frame (looping), once the last one is on screen."""
        if self.shown_index == self.index:
            self.go_to(self.index + 1 if self.index + 1 < self.count else 0)

    # -- reading ---------------------------------------------------------------------------------

    def _request(self, index: int, need_count: bool) -> None:
        cached = self._cache.get((*self.key, index))
        if cached is not None and not need_count:
            self._show(index, cached)
        else:
            self._load(self.key, self.variants, index, need_count)

    @work(thread=True, exclusive=True, group="frame-preview", exit_on_error=False)
    def _load(self, key: tuple, variants: list[tuple[str, str]], index: int, need_count: bool) -> None:
        worker = get_current_worker()
        view, output_dir, _ = key
        try:
            count = result_frame_count(output_dir) if need_count else None
            panels = load_panels(view, output_dir, index, variants)
        except Exception as exc:  # an unreadable or deleted result, no contact sheet: say so in the pane
            if not worker.is_cancelled:
                self.post_message(self.Loaded(key, index, None, None, error=str(exc).splitlines()[0]))
            return
        if not worker.is_cancelled:
            self.post_message(self.Loaded(key, index, count, panels))

    def on_frame_preview_loaded(self, message: Loaded) -> None:
        message.stop()
        if message.key != self.key:
            return
        if message.error:
            self._message(message.error)
            return
        self._cache[(*message.key, message.index)] = message.panels
        while len(self._cache) > CACHE_FRAMES:
            self._cache.popitem(last=False)
        if message.count is not None:
            self.count = message.count
        if message.index == self.index:
            self._show(message.index, message.panels)

    def _show(self, index: int, panels: list) -> None:
        self._set_panels(panels)
        self.shown_index = index
        self.query_one(FrameSlider).set_position(index, 0 if self.view == "sheet" else self.count, self.playing)
        alone = self.view == "variants" and not self.variants
        self._message("No other result shares this one's inversion (same clip, same parameters but the seed)."
                      if alone else "")

    def _set_panels(self, panels: list | None) -> None:
        labels = [label for label, _ in panels] if panels else []
        for n in range(PANELS):
            column = self.query_one(f"#column-{n}")
            column.display = n < len(labels) or (not labels and n < 3)
            column.query_one(".frame-label", Label).update(labels[n] if n < len(labels) else "")
            self.query_one(f"#panel-{n}").image = panels[n][1] if panels and n < len(panels) else None
        if labels != self._labels:
            self._labels = labels
            self._size_columns()

    def _message(self, text: str) -> None:
        message = self.query_one("#preview-message", Label)
        message.update(text)
        message.display = bool(text)
