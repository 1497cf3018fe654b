"""The new-edit form's prompts (issue #15): each prompt line's token count against what the model's
text encoder keeps, with a warning for a line it would cut; wide inputs for the negative and inversion
prompts at 80 and 120 columns."""

from __future__ import annotations

import asyncio

import pytest
from test_tui_app import TINY, until
from textual.widgets import TextArea

from engine.api import EngineConfig, build_params, count_prompt_tokens, open_worker, prompt_token_limit
from engine.paths import toy_model_dir
from tui.app import CogeditApp
from tui.launch import Launch
from tui.screens.new_edit import NewEditScreen
from tui.widgets.prompt_tokens import PromptTokens

pytestmark = pytest.mark.filterwarnings("ignore:Image.Image.getdata is deprecated:DeprecationWarning")
LONG = "a watercolor painting of a quiet street at dusk with lanterns"


def toy_app(tmp_path, model) -> CogeditApp:
    """An app whose engine names the shipped toy model (its tokenizer counts), never started."""
    def launcher() -> Launch:
        config = EngineConfig(model=str(toy_model_dir()), device="cpu", output_dir=tmp_path / "out")
        return Launch(open_worker(config, root=tmp_path / "data", cache_root=tmp_path / "cache",
                                  loader=lambda device: model))

    return CogeditApp(launcher, start_engine=False, form_presets={"tiny": build_params(TINY)}, form_preset="tiny")


def test_each_prompt_line_shows_its_token_count_and_a_cut_line_is_named(tmp_path, tiny_model):
    app = toy_app(tmp_path, tiny_model)
    short_count, long_count = (count_prompt_tokens(str(toy_model_dir()), text) for text in ("a cat", LONG))
    limit = prompt_token_limit(str(toy_model_dir()))
    assert short_count <= limit < long_count  # the toy model keeps 32 tokens

    async def scenario():
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.engine is not None)
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, NewEditScreen))
            app.screen.query_one("#prompts", TextArea).text = f"a cat\n{LONG}"
            tokens = app.screen.query_one(PromptTokens)
            await until(pilot, lambda: tokens.counts is not None, timeout=60)
            assert tokens.counts == [short_count, long_count]
            shown = str(tokens.render())
            assert f"{short_count} · {long_count}" in shown
            assert f"line 2 is {long_count} tokens: the text encoder keeps the first {limit}" in shown
            app.screen.query_one("#prompts", TextArea).text = "a cat"
            await until(pilot, lambda: tokens.counts == [short_count])
            assert "line 2" not in str(tokens.render())

    asyncio.run(scenario())


def test_without_the_models_tokenizer_the_form_says_so_and_still_queues(tmp_path, tiny_model):
    from test_tui_app import make_app  # the "tiny" model: built in memory, no tokenizer on disk

    app = make_app(tmp_path, tiny_model, start_engine=False)

    async def scenario():
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.engine is not None)
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, NewEditScreen))
            app.screen.query_one("#prompts", TextArea).text = "a cat"
            tokens = app.screen.query_one(PromptTokens)
            await until(pilot, lambda: "no token counts" in str(tokens.render()), timeout=60)

    asyncio.run(scenario())


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_the_negative_and_inversion_prompts_get_wide_inputs(tmp_path, tiny_model, size):
    from test_tui_app import make_app

    app = make_app(tmp_path, tiny_model, start_engine=False)

    async def scenario():
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: app.engine is not None)
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, NewEditScreen))
            await pilot.pause(0.2)
            form_width = app.screen.query_one("#form").size.width
            for name in ("negative_prompt", "inversion_prompt"):
                editor = app.screen.query_one(f"#param-{name}")
                assert editor.size.width >= form_width - 30, (name, editor.size.width, form_width)
            assert app.screen.query_one("#param-seed").size.width < 30  # numbers stay narrow

    asyncio.run(scenario())
