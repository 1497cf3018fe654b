"""The feed-forward's GELU fused into its GEMM: ``linear_gelu_tanh`` (one cuBLASLt call with a GELU
epilogue on CUDA) and a shallow copy of a CogVideoX block that uses it (sharing every weight)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from diffusers.models.activations import GELU


@torch.library.custom_op("cogedit::linear_gelu_tanh", mutates_args=())
def linear_gelu_tanh(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``gelu(x @ weight.T + bias, approximate="tanh")``; on CUDA one cuBLASLt GEMM with a GELU epilogue
    (``torch._addmm_activation``, tanh-approximated there). An opaque op, so compilation keeps it whole."""
    if not x.is_cuda:  # the CPU's _addmm_activation uses the exact erf GELU: not this function
        return F.gelu(F.linear(x, weight, bias), approximate="tanh")
    flat = x.reshape(-1, x.size(-1))  # [N, D_in]
    return torch._addmm_activation(bias, flat, weight.t(), use_gelu=True).view(*x.shape[:-1], weight.size(0))



@linear_gelu_tanh.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return x.new_empty(*x.shape[:-1], weight.size(0))



class FusedGELUProjection(torch.nn.Module):
    """diffusers' ``GELU(approximate="tanh")`` (projection then activation) as one fused op; it holds
    the original projection, so the weights are shared, not copied."""

    def __init__(self, proj: torch.nn.Linear):
        super().__init__()
        self.proj = proj

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return linear_gelu_tanh(hidden_states, self.proj.weight, self.proj.bias)



def with_fused_gelu(block: torch.nn.Module) -> torch.nn.Module:
    """A shallow copy of a CogVideoX block whose feed-forward uses :class:`FusedGELUProjection` (the
    block itself is untouched; both share every parameter). Other activations: the block as is."""
    activation = block.ff.net[0]
    if not (isinstance(activation, GELU) and activation.approximate == "tanh" and activation.proj.bias is not None):
        return block
    ff = copy.copy(block.ff)
    ff._modules = dict(block.ff._modules)
    ff.net = torch.nn.ModuleList([FusedGELUProjection(activation.proj), *list(block.ff.net)[1:]])
    fused = copy.copy(block)
    fused._modules = dict(block._modules)
    fused.ff = ff
    return fused
