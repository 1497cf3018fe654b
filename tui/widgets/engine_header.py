"""The top bar of every screen: model, device(s), GPU memory (summed over the devices), the worker's
state (and the demo's notice). With several devices the state counts them: ``running 1/2`` (devices
running of those usable), ``· 1 down`` (failed or retired while others go on)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Label

from engine.api import DeviceState
from engine.demo import DEMO_NOTICE

from ..formatting import format_gib

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
BUSY_STATES = ("opening", DeviceState.LOADING, DeviceState.RUNNING, "stopping")  # opening, stopping: the app's own
DEMO_LABEL = f"DEMO · {DEMO_NOTICE}"


class EngineHeader(Widget):
    """Follows the app's reactive engine attributes; a spinner turns while the engine is busy."""

    def __init__(self) -> None:
        super().__init__(id="engine-header")
        self._spin = 0
        self._model, self._device, self._gpu, self._state = (
            Label("", id=f"header-{name}", markup=False) for name in ("model", "device", "gpu", "state"))

    def compose(self) -> ComposeResult:
        with Horizontal(id="header-bar"):
            yield Label("cogedit-tui", id="header-title")
            yield from (self._model, self._device, self._gpu, self._state)
        if self.app.demo:
            yield Label(DEMO_LABEL, id="demo-notice")

    def on_mount(self) -> None:
        self._timer = self.set_interval(0.12, self._tick, pause=True)
        for name in ("model_label", "device_label", "gpu_memory", "engine_state", "queue_paused", "device_counts"):
            self.watch(self.app, name, self._update, init=False)
        self._update()

    def _tick(self) -> None:
        self._spin = (self._spin + 1) % len(SPINNER)
        self._update_state()

    def _update(self, _value: object = None) -> None:
        app = self.app
        self._model.update(app.model_label)
        self._device.update(app.device_label)
        memory = app.gpu_memory
        self._gpu.update(f"GPU {format_gib(memory[0])}/{format_gib(memory[1])} GiB" if memory else "GPU –")
        busy = app.engine_state in BUSY_STATES
        if busy:
            self._timer.resume()
        else:
            self._timer.pause()
        self._update_state()

    def _update_state(self) -> None:
        app = self.app
        state = app.engine_state
        label = self._state
        mark = SPINNER[self._spin] if state in BUSY_STATES else "●"
        devices, running, down = app.device_counts
        text = state
        if devices > 1 and state == DeviceState.RUNNING:
            text += f" {running}/{devices - down}"
        if app.queue_paused and state == DeviceState.RUNNING:
            text += " · queue paused"
        if down and state != "failed":
            text += f" · {down} down"
        label.update(f"{mark} {text}")
        state_class = f"state-{state.replace(' ', '-')}"
        if not label.has_class(state_class):  # a class change restyles: only when the state changes
            label.set_classes(state_class)
