"""Classification heads: what turns the last segment's output into class logits (docs/paper-settings.md 1.8: the
loss and the output come from the last segment).

A backbone may bring its own head (``backbone.classification_head(num_labels)``, e.g. an encoder's
pooler plus classifier); otherwise :class:`PoolingHead` reads one vector per sample and applies a Linear.
"""

from __future__ import annotations

import torch
from torch import nn


class PoolingHead(nn.Module):
    """``forward(out: StepOutput, padding_mask [B, T] | None) -> logits [B, num_labels]``.

    The vector read: ``out.pooled`` when the backbone gives one; else the hidden state of the last real
    token for a causal backbone (the only position that has seen the whole segment), and of the first
    real token for a bidirectional one (where every position sees the whole segment; the first mirrors
    BERT's [CLS]). Without a padding mask, the last / first position.
    """

    def __init__(self, d_model: int, num_labels: int, *, causal: bool = True) -> None:
        super().__init__()
        self.causal = causal
        self.proj = nn.Linear(d_model, num_labels)

    def pool(self, out, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The ``[B, D]`` vector the logits are computed from."""
        if getattr(out, "pooled", None) is not None:
            return out.pooled
        hidden = out.hidden  # [B, T, D]
        b, t, _ = hidden.shape
        if padding_mask is None:
            index = torch.full((b,), t - 1 if self.causal else 0, device=hidden.device)
        elif self.causal:
            index = t - 1 - padding_mask.flip(1).to(torch.int8).argmax(dim=1)  # last True
        else:
            index = padding_mask.to(torch.int8).argmax(dim=1)  # first True
        return hidden[torch.arange(b, device=hidden.device), index]  # [B, D]

    def forward(self, out, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.proj(self.pool(out, padding_mask))  # [B, num_labels]


def build_classifier(model, num_labels: int) -> nn.Module:
    """The backbone's own head when it defines ``classification_head``, else a :class:`PoolingHead`."""
    make = getattr(model.backbone, "classification_head", None)
    if callable(make):
        return make(num_labels)
    return PoolingHead(model.backbone.d_model, num_labels, causal=model.capabilities.causal)
