"""The parameter dataclass: validation reports every problem at once; presets; generated CLI flags."""

from __future__ import annotations

import dataclasses

import pytest

from engine.params import PARAM_SPECS, PRESETS, EditParams, ParamsError, build_params, changed_from_default
from tui.cli import build_parser


def test_defaults_are_the_methods():
    p = build_params()
    # Frames and size are the model's own unless set (engine.families: 49 of 480x720 for CogVideoX-5B).
    assert (p.max_num_frames, p.height, p.width, p.num_inference_steps) == (None, None, None, 50)
    assert (p.guidance_scale, p.inversion_guidance, p.inject_fraction, p.seed) == (6.0, 1.0, 1.0, 42)
    assert (p.init, p.resize, p.inversion_prompt, p.negative_prompt) == ("inverted", "crop", "", "")


def test_every_wrong_field_is_reported_at_once():
    with pytest.raises(ParamsError) as info:
        build_params({"max_num_frames": 200, "height": 481, "inject_fraction": "lots", "init": "zeros",
                      "nonsense": 1})
    problems = " | ".join(info.value.problems)
    assert len(info.value.problems) == 5
    for needle in ("max_num_frames: must be at most 161", "height: must be a multiple of 16",
                   "inject_fraction: 'lots' is not a number", "init: must be one of noise, inverted",
                   "nonsense: unknown parameter"):
        assert needle in problems


def test_text_values_are_parsed_to_the_fields_types():
    p = build_params({"num_inference_steps": "20", "guidance_scale": "4.5", "use_dynamic_cfg": "yes",
                      "frame_sample_step": "", "fps": "12.5"})
    assert (p.num_inference_steps, p.guidance_scale, p.use_dynamic_cfg, p.frame_sample_step, p.fps) == \
        (20, 4.5, True, None, 12.5)
    with pytest.raises(ParamsError, match="whole number"):
        build_params({"seed": 1.5})
    with pytest.raises(ParamsError, match="whole number"):
        build_params({"seed": True})


def test_reference_preset_is_the_reference_scripts_settings():
    p = build_params(preset="reference")
    assert (p.max_num_frames, p.resize, p.inversion_guidance, p.literal_guidance) == (81, "stretch", 6.0, True)
    assert changed_from_default(p).keys() == PRESETS["reference"].keys()
    assert build_params({"max_num_frames": 49}, preset="reference").max_num_frames == 49  # user wins


def test_every_parameter_has_help_and_a_cli_flag():
    parser = build_parser()
    edit = parser._subparsers._group_actions[0].choices["edit"]
    flags = {opt for action in edit._actions for opt in action.option_strings}
    assert {s.name for s in PARAM_SPECS} == {f.name for f in dataclasses.fields(EditParams)}
    for spec in PARAM_SPECS:
        assert spec.help
        assert "--" + spec.name.replace("_", "-") in flags


def test_cli_flags_reach_the_dataclass():
    from tui.cli import collected_params

    args = build_parser().parse_args(["edit", "v.mp4", "--prompt", "x", "--num-inference-steps", "7",
                                      "--shared-reference", "--resize", "stretch"])
    p = build_params(collected_params(args))
    assert (p.num_inference_steps, p.shared_reference, p.resize) == (7, True, "stretch")


def test_readme_parameter_table_matches_the_dataclass():
    from pathlib import Path

    from engine.params import markdown_table

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    start = readme.index("<!-- params-table:start -->\n") + len("<!-- params-table:start -->\n")
    end = readme.index("<!-- params-table:end -->")
    assert readme[start:end].strip() == markdown_table().strip(), \
        "README's table is stale: regenerate it with `python -m engine.params`"
