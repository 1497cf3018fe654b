"""A batch of variants that fails while exporting: every failed variant names the output folder, not
the hidden staging folder of the variant that happened to fail first."""

from __future__ import annotations

import json

import pytest
from test_hostile_inputs import TINY_FLAGS

from tui.cli import main


@pytest.mark.parametrize("size", ["160k", "200k"])  # above the 128 KiB refused up front, below three results
def test_every_failed_variant_of_a_batch_names_the_output_folder(capsys, monkeypatch, tiny_model_path, clip_path,
                                                                 tmp_path, tmpfs, size):
    out = tmpfs(f"size={size}")  # room for the probe, not for every result: a real full disk
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    code = main(["edit", str(clip_path), "--prompt", "a", "--prompt", "b", "--prompt", "c", "--events", "jsonl",
                 "--model", str(tiny_model_path), "--output-dir", str(out), *TINY_FLAGS])
    printed, err = capsys.readouterr()
    reasons = [e["reason"] for e in map(json.loads, printed.splitlines()) if e["event"] == "job_failed"]
    assert code == 2 and reasons, err
    for reason in reasons:
        assert ".partial-" not in reason and f"disk full while writing {out}" in reason, reason
