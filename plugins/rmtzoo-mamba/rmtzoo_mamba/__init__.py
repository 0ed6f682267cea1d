"""``mamba``: a selective state-space backbone (Mamba) for rmtzoo, on ``mambapy``'s pure-PyTorch layers.

An SSM has no attention, so it cannot honour an arbitrary mask: each position sees every earlier one,
in order. Its capabilities say so (``arbitrary_mask=False``), and what that means for the other axes:

- ``read_write`` memory: the model lays out ``[read memory, segment, write memory]`` and the SSM scans it
  in that order. Segment tokens see the read memory and the earlier segment tokens, as in RMT; the write
  memory sees the read memory and the whole segment, as in RMT, but each write token sees only the write
  tokens before it (RMT's mask lets it see all of them), and read tokens see the earlier read tokens only.
- ``shared`` memory (memory first, read and written in place): the memory sees no segment token, as on any
  causal backbone, so it carries nothing forward (the Memory Transformer layout).
- The Transformer-XL cache (``xl``, ``rmt_xl``): layer l scans ``cat(cache[l], its input)`` and keeps the
  outputs at the segment's positions, so each position sees the cached inputs of the last L positions
  before the segment, with the stop gradient of Tr-XL. The scan cannot hide the cache from memory tokens,
  so ``rmt_xl`` needs ``memory_reads_cache = true``, and ``xl`` with memory tokens is rejected (one line,
  at validation).
- No per-sample padding mask, so no padded classification.

Nothing of the SSM's hidden state is carried between segments other than through memory tokens and the
cache: the recurrence between segments stays rmtzoo's, explicit in ``RecurrentState``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import nn

import rmtzoo

__version__ = "0.1.0"


class MambaParams(rmtzoo.Params):
    """vocab_size, d_model, n_layer as for any backbone; d_state (N), expand (E) and d_conv are
    Mamba's state size, inner expansion and short-convolution width (mambapy's defaults)."""

    vocab_size: PositiveInt
    d_model: PositiveInt = 128
    n_layer: PositiveInt = 4
    d_state: PositiveInt = 16
    expand: PositiveInt = 2
    d_conv: int = Field(4, ge=2)


class MambaBackbone(nn.Module):
    """Embedding, mambapy residual blocks (RMSNorm -> Mamba block -> residual), final RMSNorm, tied head."""

    def __init__(self, p: MambaParams) -> None:
        super().__init__()
        from mambapy.mamba import Mamba, MambaConfig, RMSNorm

        self.vocab_size, self.d_model = p.vocab_size, p.d_model
        self.emb = nn.Embedding(p.vocab_size, p.d_model)
        config = MambaConfig(d_model=p.d_model, n_layers=p.n_layer, d_state=p.d_state, expand_factor=p.expand,
                             d_conv=p.d_conv, pscan=True)
        self.layers = Mamba(config).layers
        self.norm = RMSNorm(p.d_model)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.emb(ids)  # [B, T, D]

    def forward(self, x: torch.Tensor, *, mask=None, cache=None) -> rmtzoo.BackboneOutput:
        if mask is not None:
            raise rmtzoo.InputError("the mamba backbone follows its causal order only; it takes mask=None")
        h, layer_inputs = x, []
        for i, layer in enumerate(self.layers):
            layer_inputs.append(h)
            if cache is None:
                h = layer(h)  # [B, S, D]
            else:
                c = cache[i].shape[1]
                h = layer(torch.cat([cache[i].to(h.dtype), h], dim=1))[:, c:]  # [B, C+S, D] -> [B, S, D]
        return rmtzoo.BackboneOutput(self.norm(h), tuple(layer_inputs))

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.emb.weight)  # [B, T, V]

    def nll(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self.logits(hidden).float()
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(targets.shape)


@rmtzoo.hookimpl
def rmtzoo_register_backbones(register):
    register(
        rmtzoo.BackboneSpec(
            name="mamba",
            summary="Mamba selective state-space model (mambapy); causal order only, no attention mask",
            params=MambaParams,
            build=lambda p, *, attention: MambaBackbone(p),
            capabilities=rmtzoo.BackboneCapabilities(causal=True, accepts_cache=True, arbitrary_mask=False),
            test_params={"vocab_size": 11, "d_model": 8, "n_layer": 2, "d_state": 4},
        )
    )
