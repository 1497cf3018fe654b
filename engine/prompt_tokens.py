"""A prompt's length as the model's text encoder counts it, without loading the model.

CogVideoX's T5 encoder keeps the first ``max_text_seq_length`` tokens (226 for the 5B) of a prompt,
its end-of-text token included, and drops the rest. A front end shows the count per prompt line while
it is typed; the edit itself warns when a prompt runs over (engine.pipeline.edit). Both count with
:func:`count_tokens`. The tokenizer is read from the model folder's ``tokenizer/`` (the toy model's
is an offline one, engine.toy.building), once per folder; the first call imports transformers (and
torch with it): call it off a UI thread.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from .errors import ModelError
from .paths import TOY_MODEL, toy_model_dir

DEFAULT_TOKEN_LIMIT = 226  # CogVideoX's max_text_seq_length, when a model folder does not say


def count_tokens(tokenizer: Any, text: str) -> int:
    """Tokens of ``text`` as the text encoder receives them (with its end-of-text token)."""
    return len(tokenizer(text, add_special_tokens=True).input_ids)


def model_folder(model: str) -> Path:
    """The local pipeline folder of ``model`` (``toy``, a folder, or a hub id already in the cache)."""
    if model == TOY_MODEL:
        return toy_model_dir()
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, local_files_only=True, allow_patterns=["tokenizer/*", "*.json"]))
    except Exception as exc:  # not cached, not a hub id, offline
        raise ModelError(f"cannot find the tokenizer of {model} (a folder, or a hub id in the local cache)",
                         "give --model a model folder, or download the model first") from exc


@functools.lru_cache(maxsize=4)
def _tokenizer(folder: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(Path(folder) / "tokenizer"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the tokenizer in {folder}/tokenizer ({type(exc).__name__})",
                         "download the model again") from exc


def count_prompt_tokens(model_id_or_path: str, text: str) -> int:
    """How many tokens the text encoder of ``model_id_or_path`` sees for ``text`` (ModelError when its
    tokenizer cannot be found or read)."""
    return count_tokens(_tokenizer(str(model_folder(model_id_or_path))), text)


def prompt_token_limit(model_id_or_path: str) -> int:
    """The tokens the text encoder keeps (the transformer's ``max_text_seq_length``); the 5B's 226 when
    the model's config cannot be read."""
    try:
        config = json.loads((model_folder(model_id_or_path) / "transformer" / "config.json").read_text())
        return int(config.get("max_text_seq_length", DEFAULT_TOKEN_LIMIT))
    except (ModelError, OSError, ValueError, TypeError, AttributeError):
        return DEFAULT_TOKEN_LIMIT
