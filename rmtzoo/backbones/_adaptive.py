"""Adaptive softmax with tied weights (Grave et al. 2017), as Transformer-XL uses it with div_val 1.

The vocabulary is cut at ``cutoffs``: the head scores the shortlist ``[0, c0)`` plus one logit per
tail cluster; a tail cluster's tokens are scored by a second softmax inside it. Word weights are the
(tied) input embedding, passed in at call time so the module owns only the biases and cluster rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AdaptiveSoftmaxHead(nn.Module):
    def __init__(self, vocab_size: int, d_model: int, cutoffs: tuple[int, ...]) -> None:
        super().__init__()
        self.edges = (*cutoffs, vocab_size)
        self.n_clusters = len(cutoffs)
        self.cluster_weight = nn.Parameter(torch.zeros(self.n_clusters, d_model))
        self.cluster_bias = nn.Parameter(torch.zeros(self.n_clusters))
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def _head(self, hidden, weight):
        c0 = self.edges[0]
        head_w = torch.cat([weight[:c0], self.cluster_weight])  # [c0+K, D]
        head_b = torch.cat([self.bias[:c0], self.cluster_bias])
        return F.log_softmax(F.linear(hidden, head_w, head_b).float(), dim=-1)  # [N, c0+K]

    def _tail(self, hidden, weight, i):
        lo, hi = self.edges[i], self.edges[i + 1]
        return F.log_softmax(F.linear(hidden, weight[lo:hi], self.bias[lo:hi]).float(), dim=-1)  # [N, hi-lo]

    def log_probs(self, hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """hidden [N, D] -> log-probabilities [N, V] over the whole vocabulary."""
        c0 = self.edges[0]
        head = self._head(hidden, weight)
        parts = [head[:, :c0]]
        for i in range(self.n_clusters):
            parts.append(head[:, c0 + i : c0 + i + 1] + self._tail(hidden, weight, i))
        return torch.cat(parts, dim=-1)  # [N, V]

    def nll(self, hidden: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """hidden [N, D], target [N] -> negative log-likelihood [N]; tails scored only where needed."""
        c0 = self.edges[0]
        head = self._head(hidden, weight)
        in_head = target < c0
        nll = -head.gather(1, target.clamp(max=c0 - 1)[:, None]).squeeze(1) * in_head
        for i in range(self.n_clusters):
            lo, hi = self.edges[i], self.edges[i + 1]
            rows = ((target >= lo) & (target < hi)).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            tail = self._tail(hidden[rows], weight, i)
            lp = head[rows, c0 + i] + tail.gather(1, (target[rows] - lo)[:, None]).squeeze(1)
            nll = nll.index_put((rows,), -lp)
        return nll
