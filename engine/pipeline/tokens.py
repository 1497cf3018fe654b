"""Counting a prompt's tokens the way the model's T5 text encoder sees them, without loading the model:
the tokenizer and the transformer's text length are read from the model's folder (the toy model, a
local folder, or a hub id already in the Hugging Face cache: nothing is downloaded)."""

from __future__ import annotations

import functools
import json
import threading
from pathlib import Path

from ..errors import ModelError
from ..paths import TOY_MODEL, toy_model_dir

DEFAULT_TEXT_LENGTH = 226  # CogVideoX's max_text_seq_length, when a config does not say
_LOCK = threading.Lock()  # one tokenizer load at a time (the form may ask twice while the first loads)


def model_folder(model: str) -> Path:
    """The local folder of ``model``; ModelError when it is not on this machine."""
    if model == TOY_MODEL:
        return toy_model_dir()
    path = Path(model).expanduser()
    if path.exists():
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, local_files_only=True))
    except Exception as exc:  # not cached, not a hub id
        raise ModelError(f"model {model} is not on this machine, so its tokenizer is not either",
                         "the edit downloads it; the counts appear after that") from exc


@functools.lru_cache(maxsize=4)
def _tokenizer(model: str):
    from transformers import AutoTokenizer

    folder = model_folder(model) / "tokenizer"
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the tokenizer in {folder}", "download the model again") from exc


def count_tokens(model: str, text: str) -> int:
    """Tokens of ``text`` with the end token, as the pipeline encodes a prompt."""
    with _LOCK:
        tokenizer = _tokenizer(model)
    return len(tokenizer(text, add_special_tokens=True).input_ids)


@functools.lru_cache(maxsize=4)
def text_length(model: str) -> int:
    """How many tokens of a prompt the transformer takes (the rest is cut): max_text_seq_length."""
    try:
        config = json.loads((model_folder(model) / "transformer" / "config.json").read_text())
    except (OSError, ValueError):
        return DEFAULT_TEXT_LENGTH
    value = config.get("max_text_seq_length") if isinstance(config, dict) else None
    return value if isinstance(value, int) and value > 0 else DEFAULT_TEXT_LENGTH
