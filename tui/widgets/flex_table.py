"""A DataTable whose one flexible column takes the width the fixed columns leave (narrow terminals)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual import events
from textual.widgets import DataTable


class FlexTable(DataTable):
    """Columns are (key, label, width); a width of 0 marks the flexible column. Rows are rebuilt
    by :meth:`show_rows`, which keeps the cursor on the same row key."""

    COLUMNS: Sequence[tuple[str, str, int]] = ()
    MIN_FLEX = 12

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._rows: list[tuple[str, list[Text | str]]] = []
        self._width = 0

    def on_mount(self) -> None:
        self._add_columns()

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width != self._width:
            self._width = event.size.width
            selected = self.selected_key  # clearing the columns loses the cursor's row
            self.clear(columns=True)
            self._add_columns()
            self._fill(selected)

    def _add_columns(self) -> None:
        fixed = sum(width + 2 for _, _, width in self.COLUMNS if width)
        flex = max(self.MIN_FLEX, self.size.width - fixed - 3)
        for key, label, width in self.COLUMNS:
            self.add_column(label, width=width or flex, key=key)

    @property
    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    def show_rows(self, rows: list[tuple[str, list[Text | str]]]) -> None:
        self._rows = rows
        self._fill()

    def _fill(self, selected: str | None = None) -> None:
        selected = selected or self.selected_key
        self.clear()
        for key, cells in self._rows:
            self.add_row(*map(_plain, cells), key=key)
        keys = [key for key, _ in self._rows]
        if selected in keys:
            self.move_cursor(row=keys.index(selected), animate=False)

    def select_key(self, key: str) -> None:
        keys = [k for k, _ in self._rows]
        if key in keys:
            self.move_cursor(row=keys.index(key), animate=False)

    def set_cells(self, key: str, cells: dict[str, Text | str]) -> None:
        """Update some cells of one row in place (progress ticks) without a rebuild."""
        keys = [k for k, _ in self._rows]
        if key not in keys:
            return
        row = self._rows[keys.index(key)][1]
        for column, value in cells.items():
            index = [k for k, _, _ in self.COLUMNS].index(column)
            row[index] = value
            self.update_cell(key, column, _plain(value))


def _plain(cell: Text | str) -> Text:
    """Text as it is: a prompt holding [brackets] is not markup."""
    return Text(cell, no_wrap=True, overflow="ellipsis") if isinstance(cell, str) else cell
