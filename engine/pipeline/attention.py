"""Self-attention with key/value injection for CogVideoX blocks.

During the edit, each transformer batch holds *edited* rows followed by *reference* rows (the source's
inversion trajectory at the same noise level). In every block, an edited row attends to its own
text+video tokens and to those of its reference; a reference row attends only to itself. That is how
the source's layout and motion carry into the edit.

One :class:`InjectionAttnProcessor` is installed on every block once, when the model loads; all of them
read the same :class:`InjectionState`. With no plan set they compute exactly CogVideoX's own attention,
so the same processor serves inversion, the round trip and the edit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import apply_rotary_emb


@dataclass(frozen=True)
class InjectionPlan:
    """Layout of one injected batch: rows [0, num_edited) are edited, the rest are references.

    ``reference_of[i]`` is the reference row (counted from the first reference) that edited row ``i``
    reads its injected keys and values from.
    """

    num_edited: int
    reference_of: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.reference_of) != self.num_edited:
            raise ValueError("reference_of needs one entry per edited row")


class InjectionState:
    """What every block's processor shares: the plan of the forward pass under way, and the attention
    kernel (``attend(q, k, v)``: SDPA unless engine.kernels.select installs another)."""

    def __init__(self) -> None:
        self.plan: InjectionPlan | None = None
        self.attend: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] = \
            F.scaled_dot_product_attention

    @contextlib.contextmanager
    def active(self, plan: InjectionPlan | None) -> Iterator[None]:
        previous, self.plan = self.plan, plan
        try:
            yield
        finally:
            self.plan = previous


class InjectionAttnProcessor:
    """CogVideoX joint text+video attention, with optional key/value injection (see module doc)."""

    def __init__(self, state: InjectionState):
        self.state = state

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                 attention_mask: torch.Tensor | None = None,
                 image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        if attention_mask is not None:
            raise ValueError("CogVideoX attention takes no mask")
        text_len = encoder_hidden_states.size(1)
        tokens = torch.cat([encoder_hidden_states, hidden_states], dim=1)  # [B, T+V, D]
        batch = tokens.size(0)

        query, key, value = attn.to_q(tokens), attn.to_k(tokens), attn.to_v(tokens)
        head_dim = key.size(-1) // attn.heads
        query, key, value = (x.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
                             for x in (query, key, value))  # [B, H, T+V, d]
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if image_rotary_emb is not None:
            # Positions are per row, so every row's video tokens (edited or reference) get the same RoPE.
            query[:, :, text_len:] = apply_rotary_emb(query[:, :, text_len:], image_rotary_emb)
            key[:, :, text_len:] = apply_rotary_emb(key[:, :, text_len:], image_rotary_emb)

        plan, attend = self.state.plan, self.state.attend
        out = attend(query, key, value) if plan is None else _injected_attention(query, key, value, plan, attend)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim)  # [B, T+V, D]
        out = attn.to_out[1](attn.to_out[0](out))
        encoder_out, video_out = out.split([text_len, out.size(1) - text_len], dim=1)
        return video_out, encoder_out


def _injected_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, plan: InjectionPlan,
                        attend: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Edited rows attend to [own tokens, reference tokens]; references attend to themselves."""
    e = plan.num_edited
    pick = torch.tensor(plan.reference_of, device=key.device)
    ref_key, ref_value = key[e:], value[e:]  # [R, H, S, d]
    edited_key = torch.cat([key[:e], ref_key.index_select(0, pick)], dim=2)  # [E, H, 2S, d]
    edited_value = torch.cat([value[:e], ref_value.index_select(0, pick)], dim=2)
    edited = attend(query[:e], edited_key, edited_value)  # [E, H, S, d]
    reference = attend(query[e:], ref_key, ref_value)  # [R, H, S, d]
    return torch.cat([edited, reference], dim=0)


def install_injection(transformer: torch.nn.Module) -> InjectionState:
    """Put one injection-capable processor on every block's self-attention; returns their shared state."""
    state = InjectionState()
    for block in transformer.transformer_blocks:
        block.attn1.set_processor(InjectionAttnProcessor(state))
    return state
