"""Memory placements: where memory tokens sit around a segment and what the attention mask lets them see.

Key layout of one backbone call: ``[Tr-XL cache (C) | read memory (R) | segment (T) | write memory (W)]``
with queries ``[read memory | segment | write memory]``. For a causal backbone (docs/paper-settings.md section 1.2):

    query \\ key   cache        read   segment     write
    read memory   if reads     all    -           -
    segment i     all          all    j <= i      -
    write memory  if reads     all    all         all

A bidirectional backbone sees every key. ``read_write`` (RMT): R = W = m, the write block's output is
the next memory. ``shared`` (Memory Transformer; the encoder layout): R = m, W = 0, the outputs at the
memory positions are the next memory. ``none``: R = W = 0.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import PositiveInt
from torch import nn

from rmtzoo._components import NoParams, Params, PlacementSpec
from rmtzoo._registry import hookimpl


class MemoryParams(Params):
    """num_tokens: memory size m. init: ``random`` draws every slot from N(0, 1); ``single_vector``
    copies one N(0, 1) vector into all slots, as LM-RMT's code does (docs/paper-settings.md 1.1). Memory vectors are
    not scaled like word embeddings."""

    num_tokens: PositiveInt = 10
    init: Literal["random", "single_vector"] = "random"


class MemoryPlacement(nn.Module):
    """Assembles ``[read memory | segment | write memory]``, splits outputs, and builds the mask."""

    def __init__(self, *, d_model: int, num_memory: int, read: bool, write: bool, init: str = "random") -> None:
        super().__init__()
        self.num_memory = num_memory
        self.n_read = num_memory if read else 0
        self.n_write = num_memory if write else 0
        if num_memory:
            if init == "single_vector":
                memory = torch.randn(1, d_model).expand(num_memory, d_model).clone()
            else:
                memory = torch.randn(num_memory, d_model)
            self.memory = nn.Parameter(memory)  # [M, D]
        else:
            self.register_parameter("memory", None)
        self._masks: dict[tuple, torch.Tensor] = {}

    def initial_memory(self, batch_size: int) -> torch.Tensor | None:
        if self.memory is None:
            return None
        return self.memory.unsqueeze(0).expand(batch_size, -1, -1)  # [B, M, D]

    def assemble(self, memory: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
        """memory [B, M, D] (or None), tokens [B, T, D] -> [B, R+T+W, D]."""
        if memory is None:
            return tokens
        parts = [memory] if self.n_read else []
        parts.append(tokens)
        if self.n_write:
            parts.append(memory)
        return torch.cat(parts, dim=1)  # [B, R+T+W, D]

    def split(self, hidden: torch.Tensor, n_tokens: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden [B, R+T+W, D] -> segment outputs [B, T, D] and written memory [B, M, D] (or None)."""
        tokens = hidden[:, self.n_read : self.n_read + n_tokens]  # [B, T, D]
        if not self.num_memory:
            return tokens, None
        written = hidden[:, -self.n_write :] if self.n_write else hidden[:, : self.n_read]  # [B, M, D]
        return tokens, written

    def mask(self, n_tokens: int, n_cache: int, *, causal: bool, memory_reads_cache: bool, device=None):
        """Boolean ``[R+T+W, C+R+T+W]`` (True: may attend), memoised per layout."""
        key = (n_tokens, n_cache, causal, memory_reads_cache, str(device))
        mask = self._masks.get(key)
        if mask is None:
            mask = layout_mask(
                self.n_read, n_tokens, self.n_write, n_cache, causal=causal, memory_reads_cache=memory_reads_cache
            ).to(device)
            self._masks[key] = mask
        return mask


def layout_mask(n_read: int, n_tokens: int, n_write: int, n_cache: int, *, causal: bool, memory_reads_cache: bool):
    """The mask of the module docstring as a bool tensor ``[S, C+S]``, ``S = R+T+W``."""
    s = n_read + n_tokens + n_write
    if not causal:
        return torch.ones(s, n_cache + s, dtype=torch.bool)
    mask = torch.zeros(s, n_cache + s, dtype=torch.bool)
    read = slice(0, n_read)
    seg = slice(n_read, n_read + n_tokens)
    write = slice(n_read + n_tokens, s)
    c = n_cache
    mask[seg, :c] = True  # segment tokens see the whole cache
    if memory_reads_cache:
        mask[read, :c] = True
        mask[write, :c] = True
    mask[:, c : c + n_read] = True  # everyone reads the read memory
    mask[seg, c + n_read : c + n_read + n_tokens] = torch.ones(n_tokens, n_tokens, dtype=torch.bool).tril()
    mask[write, c + n_read :] = True  # write memory sees the segment and itself
    return mask


def self_keys(n_queries: int, n_cache: int, *, device=None) -> torch.Tensor:
    """Bool ``[S, C+S]``, True at each query's own key (query i sits at key C+i). OR-ed into a per-sample
    padding mask so that no query is left without a key (a softmax over no key is NaN)."""
    keys = torch.arange(n_cache + n_queries, device=device)
    return keys[None] == torch.arange(n_queries, device=device)[:, None] + n_cache


@hookimpl
def rmtzoo_register_memory_placements(register):
    register(
        PlacementSpec(
            name="read_write",
            summary="RMT: read memory before the segment, write memory after it; the write output is the next memory",
            params=MemoryParams,
            build=lambda p, *, d_model: MemoryPlacement(
                d_model=d_model, num_memory=p.num_tokens, read=True, write=True, init=p.init
            ),
            requires_causal=True,
            has_memory=True,
            test_params={"num_tokens": 2},
        )
    )
    register(
        PlacementSpec(
            name="shared",
            summary="Memory Transformer / encoder layout: memory at the segment start, read and written in place",
            params=MemoryParams,
            build=lambda p, *, d_model: MemoryPlacement(
                d_model=d_model, num_memory=p.num_tokens, read=True, write=False, init=p.init
            ),
            requires_causal=False,
            has_memory=True,
            test_params={"num_tokens": 2},
        )
    )
    register(
        PlacementSpec(
            name="none",
            summary="no memory tokens (Baseline and plain Transformer-XL)",
            params=NoParams,
            build=lambda p, *, d_model: MemoryPlacement(d_model=d_model, num_memory=0, read=False, write=False),
            requires_causal=False,
            has_memory=False,
        )
    )
