"""The queue before the engine opens (issue #15: blank for 7-10 s at start-up): a read-only snapshot of
the store in engine.api, without torch, shown by the app until its worker is open; and a prompt's
token count as the model's text encoder sees it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from engine.api import (
    DONE,
    INTERRUPTED,
    QUEUED,
    EditError,
    Store,
    build_params,
    count_prompt_tokens,
    prompt_token_limit,
    read_store_snapshot,
)

ROOT = Path(__file__).resolve().parent.parent


def _a_store_left_by_a_session(root: Path) -> dict[str, str]:
    """Three jobs (queued, left running by a process that died, done) and a paused queue."""
    store = Store(root / "cogedit.db")
    params = build_params()
    ids = {prompt: store.add("/clips/a.mp4", prompt, params).id for prompt in ("a cat", "a dog", "a cow")}
    store.mark_running(ids["a dog"])
    store.mark_running(ids["a cow"])
    store.mark_done(ids["a cow"], "/out/x", {}, {})
    store.set_paused(True)
    store.close()
    return ids


def test_the_snapshot_reads_the_queue_and_the_pause_without_writing_or_torch(tmp_path):
    ids = _a_store_left_by_a_session(tmp_path)
    db = tmp_path / "cogedit.db"
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    os.chmod(tmp_path, 0o555)  # read-only: a snapshot writes nothing (root ignores the bits; the check below holds)
    try:
        code = ("import sys; from engine.api import read_store_snapshot as read; s = read(sys.argv[1]); "
                "print([(j.prompt, j.status) for j in s.jobs], s.paused, 'torch' in sys.modules)")
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                              cwd=ROOT, timeout=60)
    finally:
        os.chmod(tmp_path, 0o755)
    assert done.stdout.strip() == ("[('a cat', 'queued'), ('a dog', 'interrupted'), ('a cow', 'done')] True False"), \
        done.stderr
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before
    snapshot = read_store_snapshot(tmp_path)
    assert [(j.id, j.status) for j in snapshot.jobs] == [(ids["a cat"], QUEUED), (ids["a dog"], INTERRUPTED),
                                                         (ids["a cow"], DONE)]
    assert db.is_file()


@pytest.mark.parametrize("damage", ["none", "garbage", "a directory"])
def test_no_store_or_an_unreadable_one_is_an_empty_snapshot(tmp_path, damage):
    if damage == "garbage":
        (tmp_path / "cogedit.db").write_bytes(b"not a database at all" * 100)
    elif damage == "a directory":
        (tmp_path / "cogedit.db").mkdir()
    snapshot = read_store_snapshot(tmp_path)
    assert snapshot.jobs == () and not snapshot.paused


def test_the_app_shows_the_queue_before_its_engine_opens(tmp_path):
    import asyncio

    from tui.app import CogeditApp
    from tui.widgets.queue_table import QueueTable

    _a_store_left_by_a_session(tmp_path / "data")
    release = threading.Event()

    def slow_launcher():  # the engine's open (torch's import) has not finished while we look
        release.wait(30)
        raise EditError("test over", "nothing")

    async def run() -> None:
        app = CogeditApp(slow_launcher, start_engine=False, snapshot_root=tmp_path / "data")
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause(0.2)
            table = app.query_one(QueueTable)
            shown = [(key, [str(c) for c in cells][1:3]) for key, cells in table._rows]
            assert app.engine is None and app.engine_state == "opening"
            assert [cells for _, cells in shown] == [["a cat", "queued"], ["a dog", "interrupted"]]  # not the done one
            assert app.queue_paused  # the pause it will keep
            release.set()

    asyncio.run(run())


def test_a_prompt_is_counted_as_the_models_encoder_counts_it(tiny_model_path, tiny_model):
    tokenizer = tiny_model.pipeline.tokenizer
    for text in ("a cat", "A watercolor painting of a street at dusk, lanterns glowing" * 4, ""):
        expected = len(tokenizer(text, add_special_tokens=True).input_ids)
        assert count_prompt_tokens(str(tiny_model_path), text) == expected
    assert count_prompt_tokens("toy", "a cat") == 5  # "▁a", "▁c", "a", "t" (a character-level vocabulary), "</s>"
    assert prompt_token_limit(str(tiny_model_path)) == tiny_model.pipeline.transformer.config.max_text_seq_length


def test_a_model_without_a_tokenizer_is_a_one_line_error(tmp_path):
    with pytest.raises(EditError) as info:
        count_prompt_tokens(str(tmp_path), "a cat")
    assert "tokenizer" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(EditError):
        count_prompt_tokens("no-such-user/no-such-model", "a cat")
