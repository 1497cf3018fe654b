"""The offline pieces every small CogVideoX here is built from: CogVideoX-5B's scheduler configuration,
a character-level T5 tokenizer made in memory (no hub), and seeded re-initialisation of weights.

The random tiny model of the tests (engine.demo.tiny_model), the trained toy model (engine.toy.train)
and the benchmark's 5B architecture (engine.bench.models) share them.
"""

from __future__ import annotations

import string

import torch
from transformers import T5Tokenizer

# The CogVideoX-5B scheduler configuration (v-prediction, zero-terminal-SNR, trailing spacing).
SCHEDULER_5B = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                    prediction_type="v_prediction", rescale_betas_zero_snr=True, set_alpha_to_one=True,
                    snr_shift_scale=1.0, timestep_spacing="trailing", num_train_timesteps=1000, steps_offset=0)


def offline_tokenizer() -> T5Tokenizer:
    """A character-level Unigram T5 tokenizer built in memory: no file from a hub."""
    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [("▁" + c, -3.0) for c in chars] + [(c, -4.0) for c in chars]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def reinitialise(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Overwrite every weight from ``generator`` so the model is the same on every machine."""
    with torch.no_grad():
        for name, param in sorted(module.named_parameters()):
            if param.ndim >= 2:
                fan_in = param[0].numel()
                param.copy_(torch.randn(param.shape, generator=generator) / fan_in ** 0.5)
            elif name.endswith("bias"):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
