"""The devices pane: one line per device worker (its state, GPU memory in use / total, current job).

It follows the app's ``engine_events`` signal: :class:`WorkerState` gives a device's state and the
jobs it runs, :class:`JobStarted` names the device a job started on, :class:`GpuMemory` refreshes the
memory column (read from the app, which keeps the latest figures of every device) and
:class:`EngineStopped` gives a failed device's reason. The devices themselves come from the worker
once it is open. A single device is summed up by the header, so the pane shows only with two or more.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label

from engine.api import DOWN_STATES, DeviceState, EngineStopped, Event, GpuMemory, JobStarted, WorkerState

from ..formatting import clean, format_gib, shorten

PROMPT_WIDTH = 80


@dataclass
class DeviceView:
    """What the pane knows of one device."""

    state: str = DeviceState.STOPPED.value
    job_ids: tuple[str, ...] = ()
    reason: str = ""  # why it failed or retired


class DeviceRow(Horizontal):
    """One device: name, state (coloured by its ``state-…`` class), memory, current job."""

    def __init__(self, device: str) -> None:
        super().__init__(classes="device-row")
        self.device = device
        self._name = Label(device, classes="device-name", markup=False)
        self._state = Label("", classes="device-state", markup=False)
        self._memory = Label("–", classes="device-memory", markup=False)
        self._job = Label("", classes="device-job", markup=False)

    def compose(self) -> ComposeResult:
        yield from (self._name, self._state, self._memory, self._job)

    def show(self, state: str, memory: str, job: str) -> None:
        self._state.update(state)
        state_class = f"state-{state}"
        if not self._state.has_class(state_class):
            self._state.set_classes(f"device-state {state_class}")
        self._memory.update(memory)
        self._job.update(job)
        self._job.set_class(state in DOWN_STATES, "-reason")

    @property
    def text(self) -> str:
        """The line as plain text (for tests and captures)."""
        return "  ".join(str(label.render()) for label in (self._name, self._state, self._memory, self._job))


class DevicesPanel(Vertical):
    """Every device worker of the app's engine, one line each; hidden with fewer than two."""

    def __init__(self, *, id: str | None = "devices") -> None:
        super().__init__(id=id)
        self.views: dict[str, DeviceView] = {}
        self._rows: dict[str, DeviceRow] = {}
        self._prompts: dict[str, str] = {}

    def on_mount(self) -> None:
        self.border_title = "Devices"
        self.display = False
        self.app.engine_events.subscribe(self, self._on_engine_news)
        self.app.store_changed.subscribe(self, lambda _: self._add_engine_devices())
        self._add_engine_devices()

    @property
    def rows(self) -> dict[str, DeviceRow]:
        return dict(self._rows)

    def _add_engine_devices(self) -> None:
        """The worker's devices, as they are now (the engine's later events keep them up to date)."""
        engine = self.app.engine
        if engine is None or self._rows:
            return
        for device in engine.status().devices:
            self._view(device.device, device.state.value, device.running)
        self._show_all()

    def _on_engine_news(self, event: Event) -> None:
        self._add_engine_devices()
        match event:
            case WorkerState():
                view = self._view(event.device)
                view.state, view.job_ids = event.state, tuple(event.job_ids)
            case JobStarted(device=device) if device:
                view = self._view(device)
                if event.job_id not in view.job_ids:
                    view.job_ids += (event.job_id,)
            case EngineStopped(device=device, fault=True) if device:
                self._view(device).reason = clean(event.reason)
            case GpuMemory():
                pass  # shown by _show_all below
            case _:
                return
        self._show_all()

    def _view(self, device: str, state: str = DeviceState.STOPPED.value, job_ids: tuple[str, ...] = ()) -> DeviceView:
        view = self.views.get(device)
        if view is None:
            view = self.views[device] = DeviceView(state, job_ids)
            self._rows[device] = row = DeviceRow(device)
            self.mount(row)
        return view

    def _show_all(self) -> None:
        memory = self.app.gpu_by_device
        for device, view in self.views.items():
            used = memory.get(device)
            memory_text = f"{format_gib(used[0])}/{format_gib(used[1])} GiB" if used else "–"
            self._rows[device].show(view.state, memory_text, self._job_text(view))
        self.display = len(self.views) > 1

    def _job_text(self, view: DeviceView) -> str:
        if view.state in DOWN_STATES:
            return view.reason
        if view.state != DeviceState.RUNNING or not view.job_ids:
            return ""
        first, count = view.job_ids[0], len(view.job_ids)
        batch = f"{count} variants: " if count > 1 else ""  # before the prompt, which may be cut short
        return f"{batch}{first} “{shorten(self._prompt(first), PROMPT_WIDTH)}”"

    def _prompt(self, job_id: str) -> str:
        prompt = self._prompts.get(job_id)
        if prompt is None:
            prompt = self.app.prompt_of(job_id)
            if prompt != job_id:  # found: prompts never change, one store read per job
                self._prompts[job_id] = prompt
        return prompt
