"""A frame of a finished result in the terminal: original, reconstruction and edited side by side,
with a frame slider. Images render through textual-image (kitty or sixel graphics where the terminal
has them, coloured half blocks elsewhere, so plain SSH works); frames are read in a thread worker."""

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

from engine.api import RESULT_VIDEOS, result_frame_count, result_frames

CACHE_FRAMES = 48


class FrameSlider(Widget):
    """``frame 3 / 9`` and a track with a knob where the frame sits."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.index = 0
        self.count = 0

    def set_position(self, index: int, count: int) -> None:
        self.index, self.count = index, count
        self.refresh()

    def render(self) -> RenderResult:
        if not self.count:
            return Text("")
        label = f"frame {self.index + 1} / {self.count} "
        track = max(4, self.size.width - len(label) - 1)
        knob = round(self.index * (track - 1) / max(1, self.count - 1))
        return Text.assemble((label, "bold"), ("━" * knob, "bold"), ("●", "bold"), ("─" * (track - knob - 1), "dim"))


class FramePreview(Vertical):
    """Shows frame ``index`` of one result folder; :meth:`step` moves through the frames."""

    class Loaded(Message):
        def __init__(self, output_dir: str, index: int, count: int | None, images: dict | None,
                     error: str | None = None) -> None:
            super().__init__()
            self.output_dir, self.index, self.count, self.images, self.error = output_dir, index, count, images, error

    def __init__(self, image_class: type | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.image_class = image_class or AutoImage
        self.output_dir: str | None = None
        self.index = 0
        self.count = 0
        self.shown_index: int | None = None  # the frame on screen (None: none yet)
        self._cache: OrderedDict[tuple[str, int], dict] = OrderedDict()

    def compose(self) -> ComposeResult:
        with Horizontal(id="frame-row"):
            for label in RESULT_VIDEOS:
                with Vertical(classes="frame-column"):
                    yield Label(label, classes="frame-label")
                    yield self.image_class(None, id=f"frame-{label}", classes="frame-image")
        yield FrameSlider(id="frame-slider")
        yield Label("", id="preview-message", markup=False)

    def on_resize(self) -> None:
        """Three columns of one width, so the three frames come out the same size."""
        column = max(8, self.content_size.width // len(RESULT_VIDEOS))
        for widget in self.query(".frame-column"):
            widget.styles.width = column

    def images(self) -> dict[str, object]:
        """What each image widget holds now (PIL images, or None)."""
        return {label: self.query_one(f"#frame-{label}").image for label in RESULT_VIDEOS}

    def show_result(self, output_dir: str | None) -> None:
        self.output_dir, self.index, self.count, self.shown_index = output_dir, 0, 0, None
        self._set_images(None)
        self.query_one(FrameSlider).set_position(0, 0)
        if not output_dir:
            self._message("")
        elif not Path(output_dir).is_dir():
            self._message(f"result folder missing: {output_dir}")
        else:
            self._message("reading frames …")
            self._request(0, need_count=True)

    def step(self, delta: int) -> None:
        self.go_to(self.index + delta)

    def go_to(self, index: int) -> None:
        if not self.output_dir or not self.count:
            return
        index = max(0, min(self.count - 1, index))
        if index != self.index:
            self.index = index
            self.query_one(FrameSlider).set_position(index, self.count)
            self._request(index, need_count=False)

    def _request(self, index: int, need_count: bool) -> None:
        cached = self._cache.get((self.output_dir, index))
        if cached is not None and not need_count:
            self._show(index, cached)
        else:
            self._load(self.output_dir, index, need_count)

    @work(thread=True, exclusive=True, group="frame-preview", exit_on_error=False)
    def _load(self, output_dir: str, index: int, need_count: bool) -> None:
        from PIL import Image

        worker = get_current_worker()
        try:
            count = result_frame_count(output_dir) if need_count else None
            frames = result_frames(output_dir, index)
            images = {label: Image.fromarray(frame) for label, frame in frames.items()}
        except Exception as exc:  # an unreadable or deleted result: say so in the pane
            if not worker.is_cancelled:
                self.post_message(self.Loaded(output_dir, index, None, None, error=str(exc).splitlines()[0]))
            return
        if not worker.is_cancelled:
            self.post_message(self.Loaded(output_dir, index, count, images))

    def on_frame_preview_loaded(self, message: Loaded) -> None:
        message.stop()
        if message.output_dir != self.output_dir:
            return
        if message.error:
            self._message(message.error)
            return
        self._cache[(message.output_dir, message.index)] = message.images
        while len(self._cache) > CACHE_FRAMES:
            self._cache.popitem(last=False)
        if message.count is not None:
            self.count = message.count
        if message.index == self.index:
            self._show(message.index, message.images)

    def _show(self, index: int, images: dict) -> None:
        self._set_images(images)
        self.shown_index = index
        self.query_one(FrameSlider).set_position(index, self.count)
        self._message("")

    def _set_images(self, images: dict | None) -> None:
        for label in RESULT_VIDEOS:
            self.query_one(f"#frame-{label}").image = images[label] if images else None

    def _message(self, text: str) -> None:
        message = self.query_one("#preview-message", Label)
        message.update(text)
        message.display = bool(text)
