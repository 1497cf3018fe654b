"""Hostile parameters and prompts: build_params returns valid parameters or raises ParamsError naming
every wrong field, in one line, and never anything else; empty prompts are refused before model work.

The numeric bounds are read from engine.params.PARAM_SPECS, so a new parameter is covered with no
change here.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.params import (
    PARAM_SPECS,
    SPECS_BY_NAME,
    EditParams,
    ParamsError,
    build_params,
    check_prompts,
    field_problem,
)
from tui.cli import main

NUMERIC = [s for s in PARAM_SPECS if s.kind in (int, float)]
NUMERIC_IDS = [s.name for s in NUMERIC]
HUGE = 10**30


def _below(spec, far: bool = False) -> float:
    if far:
        return spec.low - HUGE if spec.kind is int else -1e300
    return spec.low - 1 if spec.kind is int else math.nextafter(spec.low, -math.inf)


def _above(spec, far: bool = False) -> float:
    if far:
        return spec.high + HUGE if spec.kind is int else 1e300
    return spec.high + 1 if spec.kind is int else math.nextafter(spec.high, math.inf)


def _rejected(values: dict, *fields: str) -> list[str]:
    """Assert ``values`` are refused with one ParamsError naming exactly ``fields``; its problems."""
    with pytest.raises(ParamsError) as info:
        build_params(values)
    problems = info.value.problems
    assert sorted(p.split(":", 1)[0] for p in problems) == sorted(fields), problems
    assert "\n" not in str(info.value) and len(str(info.value)) < 120 * len(problems) + 40
    return problems


def _check_accepted(params: EditParams, name: str) -> None:
    spec = SPECS_BY_NAME[name]
    value = getattr(params, name)
    assert field_problem(spec, value) is None
    if value is not None and spec.kind in (int, float):
        assert type(value) is spec.kind, f"{name} became {type(value).__name__}"


# -- bounds, read from the specs ------------------------------------------------------------------

@pytest.mark.parametrize("spec", NUMERIC, ids=NUMERIC_IDS)
def test_numeric_parameter_at_its_bounds_is_accepted(spec):
    for edge in (spec.low, spec.high):
        if edge is not None:
            _check_accepted(build_params({spec.name: edge}), spec.name)
            _check_accepted(build_params({spec.name: str(edge)}), spec.name)  # as a flag would give it


@pytest.mark.parametrize("far", [False, True], ids=["just-past", "far-past"])
@pytest.mark.parametrize("spec", NUMERIC, ids=NUMERIC_IDS)
def test_numeric_parameter_past_its_bounds_is_rejected(spec, far):
    if spec.low is not None:
        (problem,) = _rejected({spec.name: _below(spec, far)}, spec.name)
        assert f"must be at least {spec.describe_range().split('..')[0].removeprefix('>= ')}" in problem
    if spec.high is not None:
        (problem,) = _rejected({spec.name: _above(spec, far)}, spec.name)
        assert "must be at most" in problem
    else:  # no upper bound: far above the lower one is fine
        _check_accepted(build_params({spec.name: spec.low + HUGE if spec.kind is int else 1e300}), spec.name)


@pytest.mark.parametrize("raw", [float("nan"), float("inf"), float("-inf"), "nan", "inf", "-Infinity", "1e999"])
@pytest.mark.parametrize("spec", NUMERIC, ids=NUMERIC_IDS)
def test_nan_and_infinity_are_rejected(spec, raw):
    (problem,) = _rejected({spec.name: raw}, spec.name)
    assert "finite" in problem or "whole number" in problem


@pytest.mark.parametrize("raw", [True, False])
@pytest.mark.parametrize("spec", NUMERIC, ids=NUMERIC_IDS)
def test_bools_are_not_numbers(spec, raw):
    (problem,) = _rejected({spec.name: raw}, spec.name)
    assert f"{raw!r} is not a" in problem


@pytest.mark.parametrize("raw", ["abc", "", "1,5", [3], {"x": 1}, b"12", 1j, object()])
@pytest.mark.parametrize("spec", NUMERIC, ids=NUMERIC_IDS)
def test_wrong_types_are_rejected(spec, raw):
    if raw == "" and spec.optional:
        assert getattr(build_params({spec.name: raw}), spec.name) is None  # empty means "auto"
        return
    _rejected({spec.name: raw}, spec.name)


def test_a_huge_int_for_a_float_parameter_is_rejected_not_an_overflow():
    (problem,) = _rejected({"guidance_scale": 10**400}, "guidance_scale")
    assert problem.startswith("guidance_scale: 1000000") and problem.endswith("... is not a number")


def test_every_wrong_field_is_named_at_once():
    problems = _rejected({"height": 65, "width": True, "fps": "nan", "seed": -1, "resize": "zoom"},
                         "height", "width", "fps", "seed", "resize")
    assert "height: must be a multiple of 16 (nearest: 64) (got 65)" in problems


def test_unknown_preset_of_any_type():
    for preset in ("fast", ["default"], None):
        with pytest.raises(ParamsError, match=r"^invalid parameters: preset: unknown preset"):
            build_params({}, preset=preset)


# -- Hypothesis: anything at all, for any parameter -----------------------------------------------

def _near_bounds(spec) -> st.SearchStrategy:
    edges = [e for e in (spec.low, spec.high) if e is not None]
    return st.sampled_from(edges or [0]).flatmap(
        lambda e: st.sampled_from([e, e - 1, e + 1, -e, e * 2, e + 0.5, e - 1e-9, str(e), f" {e} "]))


ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30), st.binary(max_size=8),
    st.decimals(allow_nan=True, allow_infinity=True), st.fractions(), st.complex_numbers(),
    st.from_regex(r"\s*[-+]?\d{0,6}(\.\d{0,4})?([eE][-+]?\d{1,4})?\s*", fullmatch=True),
    st.sampled_from(["true", "off", "crop", "STRETCH", "auto", "1_000", "0x10", "٣", "1" * 5000]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _value_for(name: str) -> st.SearchStrategy:
    return st.one_of(ANYTHING, _near_bounds(SPECS_BY_NAME[name]))


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([s.name for s in PARAM_SPECS]).flatmap(lambda n: st.tuples(st.just(n), _value_for(n))))
def test_any_value_for_any_parameter_gives_params_or_params_error(case):
    name, raw = case
    try:
        params = build_params({name: raw})
    except ParamsError as error:
        assert [p.split(":", 1)[0] for p in error.problems] == [name]
        assert "\n" not in str(error) and len(str(error)) < 200
    else:
        _check_accepted(params, name)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from([s.name for s in PARAM_SPECS]), ANYTHING, min_size=1, max_size=6))
def test_any_set_of_values_names_exactly_the_wrong_fields(values):
    try:
        params = build_params(values)
    except ParamsError as error:
        named = {p.split(":", 1)[0] for p in error.problems}
        assert named <= set(values) and len(named) == len(error.problems)
    else:
        for name in values:
            _check_accepted(params, name)


@pytest.mark.parametrize("raw, expected", [(Decimal("12"), 12), (Fraction(24, 2), 12), ("  12 ", 12), (12.0, 12)])
def test_exotic_but_whole_numbers_are_read(raw, expected):
    assert build_params({"max_num_frames": raw}).max_num_frames == expected


# -- prompts --------------------------------------------------------------------------------------

@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_empty_edit_prompt_is_refused(prompt):
    with pytest.raises(ParamsError) as info:
        check_prompts([prompt])
    assert str(info.value) == ("invalid parameters: prompt: the edit prompt is empty — write what the video "
                               "should become")


def test_which_variant_prompt_is_empty_is_named():
    with pytest.raises(ParamsError) as info:
        check_prompts(["a watercolor street", " ", "a neon street", None])
    assert info.value.problems == [
        "prompt 2 of 4: the edit prompt is empty — write what the video should become",
        "prompt 4 of 4: must be text (got None)"]


def test_no_prompt_at_all_is_refused():
    with pytest.raises(ParamsError, match="the edit prompt is empty"):
        check_prompts([])


def test_good_prompts_pass():
    check_prompts(["a watercolor street", "x"])


def test_empty_prompt_through_the_headless_command(capfd, tmp_path):
    """Refused before the clip or the model is even looked at."""
    code = main(["edit", str(tmp_path / "clip.mp4"), "--prompt", "a watercolor street", "--prompt", "  ",
                 "--model", str(tmp_path / "no-model"), "--output-dir", str(tmp_path / "out")])
    _, err = capfd.readouterr()
    assert code == 2
    assert err.strip() == ("error: invalid parameters: prompt 2 of 2: the edit prompt is empty — write what "
                           "the video should become")
    assert not (tmp_path / "out").exists()
