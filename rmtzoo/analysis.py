"""Attention maps: the probabilities a model's attention layers computed, per segment, with the key and
query layout labelled (read memory, segment, write memory, Transformer-XL cache): docs/paper-settings.md 1.2 and the
patterns of Figures 6 and 9.

    maps = rmtzoo.analysis.attention_maps(model, ids)     # ids [B, N]
    maps[1].probs                                         # [layers, B, H, Q, K] for the 2nd segment
    maps[1].block("write memory", "segment")              # [layers, B, H, W, T]

Nothing is stored on the model: inside :func:`recording_attention` every layer's attention kernel (the
``attention`` attribute of the layer, the callable its :class:`rmtzoo.AttentionSpec` built) is wrapped by
one that calls the original kernel unchanged, so outputs are exactly those of a normal forward, and
computes ``softmax(q k^T * scale + bias, masked)`` beside it, as the eager kernel does. The original
kernels are put back when the block exits, even on error. Attention dropout is not applied to what is
recorded (analysis runs in eval mode, where there is none).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from rmtzoo._errors import InputError

__all__ = ["SegmentAttention", "attention_maps", "attention_probabilities", "recording_attention"]

CACHE, READ, SEGMENT, WRITE = "cache", "read memory", "segment", "write memory"


def attention_probabilities(q, k, *, bias=None, mask=None, scale=None) -> torch.Tensor:
    """``softmax(q k^T * scale + bias)`` over allowed keys, in float32; exactly 0 on masked keys and a
    row of zeros where a query may see no key. q ``[B, H, Q, Dh]``, k ``[B, H, K, Dh]``, mask ``[Q, K]``
    or ``[B, Q, K]`` -> ``[B, H, Q, K]``."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if mask is not None and mask.dim() == 3:  # per sample [B, Q, K]: the same for every head
        mask = mask[:, None]  # [B, 1, Q, K]
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale  # [B, H, Q, K]
    if bias is not None:
        scores = scores + bias.float()
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1)  # [B, H, Q, K]
    if mask is not None:
        probs = probs.masked_fill(~mask, 0.0)  # a fully masked row is NaN after softmax: make it 0
    return probs


def _attention_layers(model) -> list:
    layers = [m for m in model.modules() if callable(getattr(m, "attention", None))
              and not isinstance(m.attention, torch.nn.Module)]
    if not layers:
        raise InputError(
            f"attention maps: no layer of {type(model).__name__} keeps its kernel as an 'attention' attribute "
            "(the built-in transformer_xl backbones do); this backbone cannot be recorded"
        )
    return layers


@contextlib.contextmanager
def recording_attention(model) -> Iterator[list[tuple[torch.Tensor, torch.Tensor | None]]]:
    """Within the block, every attention call appends ``(probs [B, H, Q, K], mask)`` to the yielded list,
    in call order (layer by layer, segment by segment). Outputs are the original kernels'."""
    calls: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    layers = _attention_layers(model)
    originals = [layer.attention for layer in layers]

    def wrap(kernel):
        def recorded(q, k, v, *, bias=None, mask=None, dropout_p=0.0, scale=None, **kwargs):
            calls.append((attention_probabilities(q, k, bias=bias, mask=mask, scale=scale).detach(), mask))
            return kernel(q, k, v, bias=bias, mask=mask, dropout_p=dropout_p, scale=scale, **kwargs)

        return recorded

    try:
        for layer, kernel in zip(layers, originals, strict=True):
            layer.attention = wrap(kernel)
        yield calls
    finally:
        for layer, kernel in zip(layers, originals, strict=True):
            layer.attention = kernel


@dataclass(frozen=True)
class SegmentAttention:
    """One segment's attention. probs ``[layers, B, H, Q, K]`` (float32); queries and keys map each block
    name (``cache``, ``read memory``, ``segment``, ``write memory``; absent blocks left out) to its
    ``(start, stop)`` along Q or K; mask: the bool mask the kernels got (True: may attend), or None."""

    index: int
    probs: torch.Tensor
    queries: dict[str, tuple[int, int]]
    keys: dict[str, tuple[int, int]]
    mask: torch.Tensor | None
    segment_ids: torch.Tensor

    def block(self, query: str, key: str) -> torch.Tensor:
        """The sub-map of ``query`` rows over ``key`` columns: ``[layers, B, H, q, k]``."""
        for name, blocks, axis in ((query, self.queries, "query"), (key, self.keys, "key")):
            if name not in blocks:
                raise InputError(f"segment {self.index} has no {axis} block {name!r}; it has: {', '.join(blocks)}")
        (q0, q1), (k0, k1) = self.queries[query], self.keys[key]
        return self.probs[..., q0:q1, k0:k1]


def _layout(n_cache: int, n_read: int, n_tokens: int, n_write: int):
    queries, keys, at = {}, {}, 0
    for name, n in ((CACHE, n_cache), (READ, n_read), (SEGMENT, n_tokens), (WRITE, n_write)):
        if n:
            keys[name] = (at, at + n)
            if name != CACHE:
                queries[name] = (at - n_cache, at - n_cache + n)
            at += n
    return queries, keys


def attention_maps(model, ids: torch.Tensor, *, state=None) -> list[SegmentAttention]:
    """Run ``ids [B, N]`` segment by segment (as ``forward_sequence`` does, without gradients and in eval
    mode, restored afterwards) and return each segment's attention maps."""
    segments = model.split_segments(ids)
    state = model.initial_state(ids.shape[0]) if state is None else state
    placement, n_layers = model.placement, None
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad(), recording_attention(model) as calls:
            for index, segment in enumerate(segments):
                n_cache = 0 if state.cache is None else state.cache[0].shape[1]
                calls.clear()
                _, state = model.step(segment, state, return_logits=False)
                n_layers = n_layers or len(calls)
                if not calls or len(calls) != n_layers:
                    raise InputError(f"attention maps: segment {index} made {len(calls)} attention calls, expected {n_layers}")
                probs = torch.stack([p for p, _ in calls])  # [L, B, H, Q, K]
                n_read, n_write = getattr(placement, "n_read", 0), getattr(placement, "n_write", 0)
                queries, keys = _layout(n_cache, n_read, segment.shape[1], n_write)
                if probs.shape[-1] != n_cache + n_read + segment.shape[1] + n_write:
                    raise InputError(f"attention maps: keys {probs.shape[-1]} do not match the layout {keys}")
                out.append(SegmentAttention(index, probs, queries, keys, calls[0][1], segment))
    finally:
        model.train(was_training)
    return out
