"""Built-in attention kernels: ``eager`` (plain math, the reference), ``sdpa`` and ``auto``.

Every kernel computes ``softmax(q @ k^T * scale + bias, masked) @ v``. ``bias`` carries the relative
position term of Transformer-XL attention; ``mask`` (True: may attend) carries the memory layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rmtzoo._components import AttentionSpec, NoParams
from rmtzoo._registry import hookimpl


def eager_attention(q, k, v, *, bias=None, mask=None, dropout_p=0.0, scale=None):
    """q [B, H, Q, Dh], k/v [B, H, K, Dh], bias [B|1, H|1, Q, K], mask [Q, K] -> [B, H, Q, Dh]."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale  # [B, H, Q, K]
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    # softmax in at least float32: upcast half precision, but never round float64 down
    probs = torch.softmax(scores.to(torch.promote_types(scores.dtype, torch.float32)), dim=-1).to(q.dtype)
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p)
    return torch.matmul(probs, v)  # [B, H, Q, Dh]


def sdpa_attention(q, k, v, *, bias=None, mask=None, dropout_p=0.0, scale=None):
    """``torch.nn.functional.scaled_dot_product_attention`` with the bias and mask folded together."""
    attn_mask = None
    if bias is not None:
        attn_mask = bias.to(q.dtype)
        if mask is not None:
            attn_mask = attn_mask.masked_fill(~mask, float("-inf"))
    elif mask is not None:
        attn_mask = mask
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, scale=scale)


def resolve_attention(name: str, registry) -> AttentionSpec:
    """The kernel ``name`` stands for here; ``auto`` is the available kernel of highest priority."""
    if name != "auto":
        return registry.get("attention_backends", name)
    candidates = [s for s in registry.specs("attention_backends") if s.name != "auto" and s.available() is None]
    return max(candidates, key=lambda s: (s.priority, s.name))


@hookimpl
def rmtzoo_register_attention_backends(register):
    register(
        AttentionSpec(
            name="eager",
            summary="plain matmul-softmax-matmul; the reference other kernels are tested against",
            build=lambda params: eager_attention,
            priority=0,
        )
    )
    register(
        AttentionSpec(
            name="sdpa",
            summary="torch scaled_dot_product_attention (fused kernels where torch has them)",
            build=lambda params: sdpa_attention,
            priority=10,
        )
    )
    register(
        AttentionSpec(
            name="auto",
            summary="the available kernel of highest priority (resolved when the model is built)",
            build=lambda params: None,
            params=NoParams,
            priority=-1,
        )
    )
