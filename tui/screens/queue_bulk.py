"""The queue's actions on several rows at once: marking rows (space), cancelling or removing the marked
rows (x, del), clearing every finished row (X) and undoing the last removal (u).

A removed row that finished with a result is only hidden (its result stays in the history), so u brings
it back; a failed, cancelled or interrupted job has nothing to keep, so removing it forgets it for
good, and that asks first.
"""

from __future__ import annotations

from textual.binding import Binding

from engine.api import CANCELLED, DONE, FAILED, INTERRUPTED, QUEUED, RUNNING, JobRecord, delete_result

from ..formatting import plural, shorten, stage_label
from ..widgets.queue_table import QueueTable
from .confirm import ConfirmScreen

FINISHED = (DONE, FAILED, CANCELLED, INTERRUPTED)
CANCELLABLE = (QUEUED, RUNNING)

BULK_BINDINGS = [
    Binding("space", "toggle_mark", "Mark", tooltip="Mark or unmark the selected job (x and del then act on "
                                                    "every marked job)"),
    Binding("escape", "unmark", "Unmark", tooltip="Unmark every marked job"),
    Binding("X", "clear_finished", "Clear", key_display="X",
            tooltip="Clear every finished job from the queue (results stay in the history)"),
    Binding("u", "undo", "Undo", tooltip="Bring back the jobs last dismissed or cleared from the queue"),
]


class BulkQueueActions:
    """Mixed into the main screen, which provides ``selected``, ``_records`` and ``reload``."""

    _records: dict[str, JobRecord]
    selected: JobRecord | None

    def init_bulk(self) -> None:
        self._undo: list[set[str]] = []  # ids hidden by each dismissal, the last one last

    @property
    def marked(self) -> set[str]:
        return self.query_one(QueueTable).marked

    def prune_marks(self) -> None:
        """Forget marks on rows that left the queue view."""
        self.marked.intersection_update(self._records)

    def targets(self, statuses: tuple[str, ...]) -> list[JobRecord]:
        """The marked jobs in ``statuses`` when any row is marked, else the selected one if it is."""
        if self.marked:
            return [r for r in self._records.values() if r.id in self.marked and r.status in statuses]
        record = self.selected
        return [record] if record is not None and record.status in statuses else []

    def bulk_applicable(self, action: str) -> bool | None:
        """check_action's answer for the actions here (None: not one of them)."""
        return {
            "toggle_mark": self.selected is not None,
            "unmark": bool(self.marked),
            "cancel_job": bool(self.targets(CANCELLABLE)),
            "dismiss_job": bool(self.targets(FINISHED)),
            "clear_finished": any(r.status in FINISHED for r in self._records.values()),
            "undo": bool(self._undo),
        }.get(action)

    # -- actions -------------------------------------------------------------------------------

    def action_toggle_mark(self) -> None:
        table = self.query_one(QueueTable)
        job_id = table.selected_key
        if job_id is None:
            return
        self.marked.symmetric_difference_update({job_id})
        self.reload()
        table.action_cursor_down()  # mark the next one with the next space

    def action_unmark(self) -> None:
        self.marked.clear()
        self.reload()

    def action_cancel_job(self) -> None:
        engine = self.app.engine
        records = self.targets(CANCELLABLE)
        if engine is None or not records:
            return
        cancelled = [r for r in records if engine.cancel(r.id)]
        for record in cancelled:
            if record.status == RUNNING:
                self.app.tracker.mark_cancelling(record.id)
        if len(records) == 1 and cancelled:
            self._say_cancelled(cancelled[0])
        elif cancelled:
            running = sum(r.status == RUNNING for r in cancelled)
            self.notify(f"{plural(len(cancelled), 'job')} cancelled"
                        + (f" ({running} running: {'it stops' if running == 1 else 'they stop'} after the "
                           "current step or stage)" if running else "")
                        + "; r re-queues one, del removes the rows.", title="Cancelled", markup=False)
        self.marked.clear()
        self.reload()

    def _say_cancelled(self, record: JobRecord) -> None:
        if record.status == RUNNING:
            progress = self.app.tracker.get(record.id)
            stage = progress.stage if progress else None
            what = ("stops after its current step" if progress and progress.total
                    else f"stops in a moment, inside its {stage_label(stage) or 'current'} stage")
            self.notify(f"“{shorten(record.prompt, 50)}” {what}.", title="Cancelling", markup=False)
        else:
            self.notify(f"“{shorten(record.prompt, 50)}” will not run (r re-queues it, del removes the row).",
                        title="Cancelled", markup=False)

    def action_dismiss_job(self) -> None:
        self._remove(self.targets(FINISHED))

    def action_clear_finished(self) -> None:
        self._remove([r for r in self._records.values() if r.status in FINISHED])

    def _remove(self, records: list[JobRecord]) -> None:
        """Hide the done jobs (u brings them back); forget the others, after asking."""
        if not records or self.app.store is None:
            return
        done = [r for r in records if r.status == DONE]
        forget = [r for r in records if r.status != DONE]
        if done:
            hidden = {r.id for r in done}
            self.app.hidden_jobs |= hidden
            self._undo.append(hidden)
            what = f"“{shorten(done[0].prompt, 50)}”" if len(done) == 1 else plural(len(done), "finished job")
            self.notify(f"{what} (results stay in the history: h; u brings {'it' if len(done) == 1 else 'them'} "
                        "back).", title="Dismissed", markup=False)
        self.reload()  # hidden rows leave the view, and their marks with them
        if not forget:
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            for record in forget:
                delete_result(self.app.engine, record.id)  # nothing was written for it: forget the job
            self.marked.difference_update(r.id for r in forget)
            title = "Job deleted" if len(forget) == 1 else f"{plural(len(forget), 'job')} deleted"
            self.notify(", ".join(f"“{shorten(r.prompt, 30)}”" for r in forget[:3])
                        + (" …" if len(forget) > 3 else ""), title=title, markup=False)
            self.reload()

        if len(forget) == 1:
            record = forget[0]
            title = "Delete this job?"
            message = (f"“{shorten(record.prompt, 60)}” ({record.status})\nIt has no result; the job is forgotten "
                       "and cannot be re-queued.")
        else:
            title = f"Delete {plural(len(forget), 'job')}?"
            names = "\n".join(f"“{shorten(r.prompt, 50)}” ({r.status})" for r in forget[:5])
            message = (names + ("\n…" if len(forget) > 5 else "")
                       + "\nThey have no result; they are forgotten and cannot be re-queued.")
        self.app.push_screen(ConfirmScreen(title, message), answered)

    def action_undo(self) -> None:
        if not self._undo:
            return
        back = self._undo.pop()
        self.app.hidden_jobs -= back
        self.notify(f"{plural(len(back), 'job')} back in the queue.", title="Undone", markup=False)
        self.reload()
