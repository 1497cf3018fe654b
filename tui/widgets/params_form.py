"""The parameter form, generated from engine.api.PARAM_SPECS: one field per parameter, grouped,
with its default, range, help and an inline error. A new parameter appears with no code here."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Checkbox, Collapsible, Input, Label, Select

from engine.api import PARAM_SPECS, ParamSpec, field_problem, parse_value

from ..formatting import format_value


class ParamField(Vertical):
    """One parameter: name, editor (Input, Select or Checkbox by its kind), hint, help, error."""

    def __init__(self, spec: ParamSpec, value: Any) -> None:
        # A text parameter (the negative and inversion prompts) gets the row's width for its editor.
        text = spec.kind is str and not spec.choices
        super().__init__(id=f"field-{spec.name}", classes="param-field -text" if text else "param-field")
        self.spec = spec
        self._initial = value

    def compose(self) -> ComposeResult:
        spec = self.spec
        with Horizontal(classes="param-row"):
            name = Label(spec.name + (" ≈" if spec.approximate else ""), classes="param-name", markup=False)
            name.tooltip = spec.help
            yield name
            yield self._editor()
            hint = f"default {format_value(spec.default)} · {spec.describe_range()}"
            yield Label(hint + (" · approximate" if spec.approximate else ""), classes="param-hint", markup=False)
        yield Label(spec.help, classes="param-help", markup=False)
        yield Label("", classes="param-error", markup=False)

    def _editor(self):
        spec, value, editor_id = self.spec, self._initial, f"param-{self.spec.name}"
        if spec.kind is bool:
            return Checkbox("", value=bool(value), id=editor_id, compact=True, classes="param-editor")
        if spec.choices:
            return Select([(c, c) for c in spec.choices], value=value, allow_blank=False, id=editor_id,
                          compact=True, classes="param-editor")
        placeholder = "auto" if spec.optional else ("path to a PNG or JPEG (optional)" if spec.path else "")
        return Input(_as_text(value), placeholder=placeholder, id=editor_id, compact=True, classes="param-editor")

    @property
    def editor(self):
        return self.query_one(f"#param-{self.spec.name}")

    def raw(self) -> Any:
        return self.editor.value

    def set_value(self, value: Any) -> None:
        editor = self.editor
        if isinstance(editor, Input):
            editor.value = _as_text(value)
        else:
            editor.value = bool(value) if isinstance(editor, Checkbox) else value

    def problem(self) -> str | None:
        """Validate the current value; show the reason under the field (or clear it)."""
        try:
            problem = field_problem(self.spec, parse_value(self.spec, self.raw()))
        except ValueError as exc:
            problem = str(exc)
        self.query_one(".param-error", Label).update(problem or "")
        self.set_class(problem is not None, "-invalid")
        return problem


class ParamsForm(Vertical):
    """All parameters, in groups (spec.group) that collapse."""

    class Changed(Message):
        """A parameter's value changed (``valid``: it parses and is in range)."""

        def __init__(self, name: str, valid: bool) -> None:
            super().__init__()
            self.name = name
            self.valid = valid

    def __init__(self, values: dict[str, Any], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._values = values

    def compose(self) -> ComposeResult:
        groups: dict[str, list[ParamSpec]] = {}
        for spec in PARAM_SPECS:
            groups.setdefault(spec.group, []).append(spec)
        for group, specs in groups.items():
            with Collapsible(title=f"{group.capitalize()} parameters", collapsed=False, id=f"group-{group}"):
                for spec in specs:
                    yield ParamField(spec, self._values.get(spec.name, spec.default))

    def fields(self) -> list[ParamField]:
        return list(self.query(ParamField))

    def values(self) -> dict[str, Any]:
        return {f.spec.name: f.raw() for f in self.fields()}

    def fill(self, values: dict[str, Any]) -> None:
        for f in self.fields():
            f.set_value(values.get(f.spec.name, f.spec.default))

    def problems(self) -> dict[str, str]:
        """Validate every field (showing each error); open the groups that hold one."""
        found = {}
        for f in self.fields():
            problem = f.problem()
            if problem:
                found[f.spec.name] = problem
                f.query_ancestor(Collapsible).collapsed = False
        return found

    def on_input_changed(self, event: Input.Changed) -> None:
        self._changed(event)

    def on_select_changed(self, event: Select.Changed) -> None:
        self._changed(event)

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        self._changed(event)

    def _changed(self, event) -> None:
        field = next((a for a in event.control.ancestors if isinstance(a, ParamField)), None)
        if field is None:
            return
        event.stop()
        self.post_message(self.Changed(field.spec.name, field.problem() is None))


def _as_text(value: Any) -> str:
    return "" if value is None else str(value)
