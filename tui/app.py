"""The Textual workstation: one app over one engine worker, with screens for the queue, a new edit
and the history.

The screen appears at once, with the queue as the store last left it (a read-only snapshot, shown
until the engine opens); the worker is opened (torch imported, the data dir locked) and started in
a thread worker, and the model loads in the background. Engine events arrive from the worker's
threads as :class:`EngineEvent` messages; the app keeps the shared state (engine state, progress,
GPU memory) and re-publishes each event on the ``engine_events`` signal for the screens.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import App, SystemCommand
from textual.reactive import reactive
from textual.screen import Screen
from textual.signal import Signal

from engine.api import (
    DEFAULT_MODEL,
    DONE,
    DOWN_STATES,
    INTERRUPTED,
    RUNNING,
    DeviceState,
    EditError,
    EditParams,
    EngineConfig,
    EngineReady,
    EngineStopped,
    Event,
    GpuMemory,
    JobFailed,
    JobFinished,
    JobRecord,
    JobStarted,
    Store,
    StoreSnapshot,
    build_params,
    data_dir,
    one_line,
    read_store_snapshot,
)

from .commands import binding_commands
from .formatting import WIDE_COLUMNS, clean, devices_label, format_psnr, model_name, plural, shorten
from .launch import Launcher, demo_launcher, standard_launcher
from .messages import EngineClosed, EngineEvent, EngineOpened, EngineOpenFailed, engine_message
from .progress import ProgressTracker
from .screens.main import MainScreen

if TYPE_CHECKING:
    from engine.api import Worker

WORKER_WAIT_SECONDS = 300


class CogeditApp(App):
    """``launcher`` opens the worker (in a thread); ``start_engine=False`` leaves it unstarted (the
    snapshot tests: no model load, a fixed header). ``snapshot_root``: the data dir whose queue is shown
    read-only until the worker is open (None: an empty queue until then)."""

    TITLE = "cogedit-tui"
    # Shared by every screen, and the main screen's (the default screen: Textual loads no CSS_PATH of its
    # own); the other screens name theirs.
    CSS_PATH = ["app.tcss", "screens/main.tcss", "widgets/devices_panel.tcss"]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (WIDE_COLUMNS, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]
    # q quits from the main screen only (its binding); ctrl+q (Textual's) anywhere: both ask while a job runs.

    engine_state: reactive[str] = reactive("opening")
    model_label: reactive[str] = reactive("")
    device_label: reactive[str] = reactive("")
    gpu_memory: reactive[tuple[int, int] | None] = reactive(None)
    queue_paused: reactive[bool] = reactive(False)
    device_counts: reactive[tuple[int, int, int]] = reactive((0, 0, 0))  # devices, running, failed or retired

    def __init__(self, launcher: Launcher, *, start_engine: bool = True, demo: bool = False,
                 model_label: str = "", device_label: str = "auto",
                 form_presets: dict[str, EditParams] | None = None, form_preset: str = "default",
                 form_source: str = "", image_class: type | None = None, snapshot_root: Path | None = None) -> None:
        super().__init__()
        self.launcher = launcher
        self.start_engine = start_engine
        self.demo = demo
        self.form_presets = form_presets or {"default": build_params(), "reference": build_params(preset="reference")}
        self.form_preset = form_preset
        self.form_source = form_source
        self.image_class = image_class
        self.engine: Worker | None = None  # the engine worker, once open
        self.snapshot_root = snapshot_root
        self.early_snapshot: StoreSnapshot | None = None  # the queue shown before the worker is open
        self.tracker = ProgressTracker()
        self.session_started = time.time()
        self.hidden_jobs: set[str] = set()  # finished jobs dismissed from the queue view
        self.exit_error: str | None = None
        self.engine_events: Signal[Event] = Signal(self, "engine-events")
        self.store_changed: Signal[None] = Signal(self, "store-changed")
        self._engine_ready = threading.Event()
        self.gpu_by_device: dict[str, tuple[int, int]] = {}  # device -> (allocated, total) bytes, the latest
        self._quitting = False
        self._engine_closed = False  # closing has begun: the store is no longer read
        self._engine_shut = False  # the worker has stopped and the data dir is free
        self._close_lock = threading.Lock()
        self.set_reactive(CogeditApp.model_label, model_label)
        self.set_reactive(CogeditApp.device_label, device_label)

    # -- screens and commands ----------------------------------------------------------------------

    def get_default_screen(self) -> Screen:
        self.main_screen = MainScreen()
        return self.main_screen

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        builtin = list(super().get_system_commands(screen))
        yield from builtin
        yield from binding_commands(self, screen, {command.title for command in builtin})

    @property
    def store(self) -> Store | None:
        """The job store while the engine is open (closing it closes the store)."""
        return self.engine.store if self.engine is not None and not self._engine_closed else None

    def queue_records(self) -> list[JobRecord]:
        """The queue view: every job not done, and jobs done during this session (not dismissed)."""
        if self.store is None:
            early = self.early_snapshot if self.engine is None and not self._quitting else None
            return [r for r in early.jobs if r.status != DONE] if early is not None else []
        return [r for r in self.store.jobs() if r.id not in self.hidden_jobs
                and (r.status != DONE or (r.finished or 0) >= self.session_started)]

    def prompt_of(self, job_id: str) -> str:
        record = self.store.get(job_id) if self.store is not None else None
        return record.prompt if record else job_id

    def wait_for_engine(self) -> Worker:
        """For thread workers: the engine worker, once it is open."""
        if not self._engine_ready.wait(WORKER_WAIT_SECONDS) or self.engine is None:
            raise RuntimeError("the engine did not open")
        return self.engine

    # -- opening the engine --------------------------------------------------------------------

    def on_mount(self) -> None:
        self.main_screen.note("Opening the engine …")
        if self.snapshot_root is not None:  # a read of SQLite: milliseconds, while torch takes seconds
            self.early_snapshot = read_store_snapshot(self.snapshot_root)
            self.queue_paused = self.early_snapshot.paused
            self.store_changed.publish(None)
        self.set_interval(0.5, self.sync_engine_state)
        self._open_engine()

    @work(thread=True, exclusive=True, group="engine-open", exit_on_error=False)
    def _open_engine(self) -> None:
        try:
            launch = self.launcher()
        except EditError as exc:  # another process holds the data dir, a bad model path, ...
            self.post_message(EngineOpenFailed(str(exc), 2))
            return
        except Exception as exc:  # a fault: one line, exit status 1
            self.post_message(EngineOpenFailed(one_line(exc), 1))
            return
        if self._quitting:  # the user quit while the engine was opening
            launch.worker.close()
            return
        launch.worker.subscribe(lambda event: self.post_message(engine_message(event)))
        self.engine = launch.worker
        self._engine_ready.set()
        self.post_message(EngineOpened(launch))
        failures = []
        for spec in launch.initial_jobs:
            try:
                launch.worker.submit(spec)
            except EditError as exc:
                failures.append(str(exc))
        for reason in failures:
            self.post_message(EngineOpenFailed(reason, 0))
        if self.start_engine:
            launch.worker.start()

    def on_engine_opened(self, message: EngineOpened) -> None:
        worker = message.launch.worker
        self.model_label = model_name(worker.config.model)
        # A cluster's devices join later (its EngineReady events name them): the launch label until then.
        self.device_label = devices_label([device.device for device in worker.status().devices]) or self.device_label
        for record in reversed(worker.store.history()[:20]):  # the stage costs for the ETAs, newest last
            self.tracker.costs.learn_record(record)
        # Interrupted by a crash (marked on open) or by a quit mid-job (marked then): both wait for an r.
        interrupted = set(worker.store.interrupted_on_open) | {r.id for r in worker.store.jobs((INTERRUPTED,))}
        if interrupted:
            self.main_screen.note(f"{plural(len(interrupted), 'job')} {'was' if len(interrupted) == 1 else 'were'} "
                                  "interrupted when the app last stopped: select one and press r to re-queue it.",
                                  "yellow")
        self.queue_paused = worker.paused  # a pause outlives a restart
        if worker.paused:
            self.main_screen.note("The queue is paused (since the last session): press p to resume.", "yellow")
        if not self.start_engine:
            self.main_screen.note("The engine is not started: jobs stay queued.")
        self.sync_engine_state()
        self.store_changed.publish(None)

    def on_engine_open_failed(self, message: EngineOpenFailed) -> None:
        if message.return_code == 0:  # an initial job could not be queued; the app goes on
            self.notify(message.reason, title="Not queued", severity="error", markup=False)
            return
        self.exit_error = message.reason
        # After the next refresh: a launcher that fails at once must not cut the first screen's mount short.
        self.call_after_refresh(self.exit, return_code=message.return_code)

    # -- events ------------------------------------------------------------------------------

    @on(EngineEvent)
    def _engine_event(self, message: EngineEvent) -> None:
        event = message.event
        self.tracker.apply(event)
        match event:
            case JobStarted() if self.store is not None:
                record = self.store.get(event.job_id)
                if record is not None:
                    self.tracker.expect(event.job_id, record.params.num_inference_steps)
            case GpuMemory():  # one per GPU: the header shows their sum
                self.gpu_by_device[event.device] = (event.allocated_bytes, event.total_bytes)
                self.gpu_memory = tuple(map(sum, zip(*self.gpu_by_device.values(), strict=False)))
            case EngineReady():
                self.model_label = model_name(event.model)
                devices = [d.device for d in self.engine.status().devices] if self.engine else [event.device]
                self.device_label = f"{devices_label(devices)} {event.dtype}"
            case EngineStopped() if event.fault:
                self.notify(clean(event.reason), title="Engine stopped", severity="error", timeout=15, markup=False)
            case JobFinished():
                psnr = format_psnr(event.metrics)
                quality = f" · round-trip PSNR {psnr}" if psnr else ""
                self.notify(f"“{shorten(self.prompt_of(event.job_id), 60)}”{quality}", title="Edit finished",
                            markup=False)
            case JobFailed():
                self.notify(f"“{shorten(self.prompt_of(event.job_id), 40)}”: {clean(event.reason)}",
                            title="Edit failed", severity="error", timeout=15, markup=False)
        self.sync_engine_state()
        self.engine_events.publish(event)

    def sync_engine_state(self) -> None:
        self.engine_state = self._engine_state_now()
        states = [d.state for d in self.engine.status().devices] if self.engine is not None else []
        self.device_counts = (len(states), states.count(DeviceState.RUNNING), sum(s in DOWN_STATES for s in states))

    def _engine_state_now(self) -> str:
        if self._quitting:
            return "stopped" if self._engine_shut else "stopping"
        if self.engine is None:
            return "opening"
        state = self.engine.state
        if state == DeviceState.STOPPED and not self.start_engine:
            return "not started"
        return state.value

    def deliver_screenshot(self, filename: str | None = None, path: str | None = None,
                           time_format: str | None = None) -> str | None:
        """The palette's screenshot: into ~/Downloads where there is one, else the working directory (a
        server has no Downloads folder)."""
        if path is None:
            downloads = Path.home() / "Downloads"
            path = str(downloads if downloads.is_dir() else Path.cwd())
        return super().deliver_screenshot(filename, path, time_format)

    # -- the queue -----------------------------------------------------------------------------

    def pause_queue(self) -> None:
        if self.engine is not None:
            self.engine.pause()
            self.queue_paused = True
            self.sync_engine_state()

    def resume_queue(self) -> None:
        if self.engine is not None:
            self.engine.resume()
            self.queue_paused = False
            self.sync_engine_state()

    # -- quitting ------------------------------------------------------------------------------

    def running_jobs(self) -> list[JobRecord]:
        return self.store.jobs((RUNNING,)) if self.store is not None else []

    async def action_quit(self) -> None:
        """Quit; while a job runs, ask first (it would be interrupted)."""
        if self._quitting:
            return
        running = self.running_jobs()
        if not running:
            self.quit_now()
            return
        from .screens.confirm import ConfirmScreen

        names = ", ".join(f"“{shorten(r.prompt, 40)}”" for r in running[:3])
        message = (f"{names} {'is' if len(running) == 1 else 'are'} running. Quitting stops "
                   f"{'it' if len(running) == 1 else 'them'} within a step (an encode or decode stops "
                   "between its blocks); r re-queues an interrupted job next time.")
        if not isinstance(self.screen, ConfirmScreen):
            self.push_screen(ConfirmScreen("Quit while a job runs?", message, confirm_label="Quit",
                                           keep_label="Stay"),
                             lambda yes: self.quit_now() if yes else None)

    def quit_now(self) -> None:
        if self._quitting:
            return
        self._quitting = True
        if self.engine is None:
            self.exit()
            return
        if self.running_jobs():
            self.notify("Stopping within a step (an encode or decode stops between its blocks); the job can be "
                        "re-queued next time.", title="Quitting", timeout=60)
        self.sync_engine_state()
        self._close_engine_in_thread()

    @work(thread=True, group="engine-close", exit_on_error=False)
    def _close_engine_in_thread(self) -> None:
        self.close_engine()
        self.post_message(EngineClosed())

    def on_engine_closed(self, _message: EngineClosed) -> None:
        self._engine_shut = True
        self.sync_engine_state()
        self.exit()

    def close_engine(self) -> None:
        """Stop the worker (after the current step) and free the data dir; safe to call twice."""
        with self._close_lock:
            worker = self.engine
            if worker is None or self._engine_closed:
                return
            self._engine_closed = True
        if worker.state == DeviceState.LOADING:  # a load cannot be cut short: let it end with the process
            worker.stop(wait=False)
            return
        worker.close()

    def on_unmount(self) -> None:
        self._quitting = True
        self.close_engine()


def _where(config: EngineConfig, default: str) -> str:
    """The header's devices before the worker says: the flag's, the cluster's address, or ``default``."""
    return config.device or (f"cluster {config.cluster}" if config.cluster else default)


def build_app(config: EngineConfig, *, demo: bool = False, image_class: type | None = None) -> CogeditApp:
    """The workstation for ``config``; the demo: the toy model on the CPU, its variants queued."""
    if not demo:
        return CogeditApp(standard_launcher(config), model_label=model_name(config.model),
                          device_label=_where(config, "auto"), image_class=image_class, snapshot_root=data_dir())
    from engine.demo import DEMO_PARAMS, demo_clip_path

    model = None if config.model == DEFAULT_MODEL else config.model  # the toy model unless --model says
    presets = {"demo": build_params(DEMO_PARAMS), "default": build_params(),
               "reference": build_params(preset="reference")}
    return CogeditApp(demo_launcher(config.device, config.dtype, config.output_dir, model, config.cluster), demo=True,
                      model_label="toy demo model", device_label=_where(config, "cpu"), form_presets=presets,
                      form_preset="demo", form_source=str(demo_clip_path()), image_class=image_class,
                      snapshot_root=data_dir())


def run_app(config: EngineConfig, *, demo: bool = False) -> int:
    """Run the workstation in this terminal; returns the exit status (2: the data dir is busy)."""
    import textual_image.widget  # noqa: F401  (asks the terminal for graphics support before Textual starts)

    app = build_app(config, demo=demo)
    try:
        app.run()
    finally:
        app.close_engine()
    if app.exit_error:
        print(f"error: {app.exit_error}", file=sys.stderr)
    return app.return_code or 0
