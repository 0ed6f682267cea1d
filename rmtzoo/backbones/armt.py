"""ARMT: the Associative Recurrent Memory Transformer (Rodkin et al., 2024) as a backbone and a recurrence.

ARMT adds to every layer of an RMT an associative memory: a linear-attention matrix that every position
reads before the layer, and that the write memory's outputs of the layer update after the segment, with
the delta rule. How it fits the registry, and why:

- **backbone ``armt``**: the Transformer-XL decoder with one :class:`AssociativeMemory` per layer. The
  memory lives *inside* each layer (it is read between layers), so only a backbone can hold it; it
  declares the ``associative_memory`` capability: ``forward`` takes the per-layer memory and the slice of
  positions holding the write memory, and returns the updated memory (``BackboneOutput.associative``).
  Weights and the memory are separate: the module keeps no state between calls.
- **recurrence ``armt``**: carries RMT's memory tokens *and* the associative memory from segment to
  segment (``RecurrentState.associative``), with ``bptt_depth`` bounding the gradient through both (the
  model replays the last k segments from the detached state of k segments ago). Validation rejects it on
  a backbone without the capability; the ``armt`` backbone with ``rmt`` or ``none`` starts each segment
  from an empty associative memory, which is RMT with unused extra weights.
- the placement stays ``read_write``: the write memory tokens are what updates the associative memory.

Per layer the memory is one tensor ``[B, F, D+1]``: the matrix ``A [F, D]`` and the normaliser ``z [F]``
side by side, so it batches, detaches and is stored like the Transformer-XL cache. ``F = 2 d_key nu`` is
the size of the DPFP feature map (Schlag et al., 2021). Read, for a layer input h:
``phi(W_q h) A / (phi(W_q h) . z)``, added to h. Write, for the layer outputs m of the write memory:
``k = phi(W_k m) / |phi(W_k m)|``, ``v = W_v m``, ``beta = sigmoid(W_b m)``; the value the memory already
holds for k is ``v_old = k A / (k . z)``; ``A += k^T beta (v - v_old)`` (delta rule), ``z += k^T gamma``
with ``gamma = 1 - k . z`` clipped to [0, 1], so a key stored again does not inflate the normaliser.

Choices of ours, not taken from ARMT's code: keys are L2-normalised after the feature map (which keeps the
matrix bounded over the thousands of segments of a 1M-token evaluation) and gamma is clipped to [0, 1]
(z stays non-negative, so no denominator crosses zero); W_q is initialised like every other weight
(normal, ``init_std``), since a zero W_q (as ARMT's wrapper starts) gives DPFP a zero input, whose ReLU
gradient is zero, and the read would never learn here; all write memory tokens of a segment update the
memory at once, from the memory the segment started with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import PositiveFloat, PositiveInt
from torch import nn

from rmtzoo._components import (
    BackboneCapabilities,
    BackboneOutput,
    BackboneSpec,
    RecurrencePolicy,
    RecurrenceSpec,
)
from rmtzoo._registry import hookimpl
from rmtzoo.backbones.transformer_xl import TransformerXL, TransformerXLParams
from rmtzoo.recurrences import RmtParams


class ArmtParams(TransformerXLParams):
    """Transformer-XL sizes plus the associative memory's: ``d_key`` (the key size before the feature map),
    ``dpfp_nu`` (DPFP's number of rolled products, F = 2 d_key nu) and ``eps`` (in the normaliser)."""

    d_key: PositiveInt = 32
    dpfp_nu: PositiveInt = 3
    eps: PositiveFloat = 1e-6


def dpfp(x: torch.Tensor, nu: int) -> torch.Tensor:
    """Deterministic parameter-free projection: ``[..., d] -> [..., 2 d nu]``, non-negative."""
    r = F.relu(torch.cat([x, -x], dim=-1))  # [..., 2d]
    return torch.cat([r * r.roll(j, dims=-1) for j in range(1, nu + 1)], dim=-1)  # [..., 2d*nu]


class AssociativeMemory(nn.Module):
    """One layer's associative memory weights; the memory itself is passed in and returned."""

    def __init__(self, *, d_model: int, d_key: int, nu: int, eps: float) -> None:
        super().__init__()
        self.nu, self.eps, self.d_model = nu, eps, d_model
        self.n_features = 2 * d_key * nu
        self.query = nn.Linear(d_model, d_key, bias=False)
        self.key = nn.Linear(d_model, d_key, bias=False)
        self.value = nn.Linear(d_model, d_model, bias=False)
        self.beta = nn.Linear(d_model, 1)

    def empty(self, like: torch.Tensor) -> torch.Tensor:
        return like.new_zeros(like.shape[0], self.n_features, self.d_model + 1)  # [B, F, D+1]

    def _recall(self, features: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features [B, N, F] -> the value the memory holds for them [B, N, D] and ``features . z`` [B, N, 1]."""
        out = features @ memory  # [B, N, D+1]
        norm = out[..., -1:]  # [B, N, 1]
        return out[..., :-1] / (norm + self.eps), norm

    def read(self, hidden: torch.Tensor, memory: torch.Tensor | None) -> torch.Tensor:
        """hidden [B, S, D] -> what the memory returns for each position [B, S, D] (zero when empty)."""
        if memory is None:
            return torch.zeros_like(hidden)
        value, _ = self._recall(dpfp(self.query(hidden), self.nu), memory)
        return value  # [B, S, D]

    def write(self, written: torch.Tensor, memory: torch.Tensor | None) -> torch.Tensor:
        """written [B, M, D] (the write memory's layer outputs) -> the updated memory [B, F, D+1]."""
        memory = self.empty(written) if memory is None else memory
        k = dpfp(self.key(written), self.nu)  # [B, M, F]
        k = k / (k.norm(dim=-1, keepdim=True) + self.eps)
        v = self.value(written)  # [B, M, D]
        beta = torch.sigmoid(self.beta(written))  # [B, M, 1]
        v_old, norm = self._recall(k, memory)  # [B, M, D], [B, M, 1]
        gamma = (1 - norm).clamp(0, 1)  # k is unit-norm, so this is 1 - k.z / |k|^2
        delta = torch.cat([beta * (v - v_old), gamma], dim=-1)  # [B, M, D+1]
        return memory + k.transpose(1, 2) @ delta  # [B, F, D+1]


class ARMT(nn.Module):
    """Backbone protocol (:class:`rmtzoo.BackboneSpec`) with the ``associative_memory`` capability."""

    def __init__(self, p: ArmtParams, *, attention) -> None:
        super().__init__()
        self.xl = TransformerXL(p, attention=attention, causal=True)
        self.vocab_size, self.d_model, self.n_layer = p.vocab_size, p.d_model, p.n_layer
        self.memories = nn.ModuleList(
            AssociativeMemory(d_model=p.d_model, d_key=p.d_key, nu=p.dpfp_nu, eps=p.eps) for _ in range(p.n_layer)
        )
        for name, param in self.memories.named_parameters():
            nn.init.zeros_(param) if name.endswith("bias") else nn.init.normal_(param, 0.0, p.init_std)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.xl.embed(ids)  # [B, T, D]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.xl.logits(hidden)

    def nll(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.xl.nll(hidden, targets)

    def forward(self, x, *, mask=None, cache=None, associative=None, write_positions=slice(0, 0)) -> BackboneOutput:
        """x [B, S, D]; associative: n_layer x [B, F, D+1] or None (empty); write_positions: the slice of
        S whose layer outputs update each layer's memory -> hidden [B, S, D] and the updated memory."""
        mask, pos_emb, additive = self.xl.attention_inputs(x, mask, cache)
        hidden = self.xl.drop(x)
        layer_inputs, updated = [], []
        for i, memory in enumerate(self.memories):
            state = None if associative is None else associative[i]
            hidden = hidden + memory.read(hidden, state)  # [B, S, D]
            layer_inputs.append(hidden)
            hidden = self.xl.run_layer(i, hidden, cache=cache, pos_emb=pos_emb, mask=mask, additive=additive)
            updated.append(memory.write(hidden[:, write_positions], state))  # [B, F, D+1]
        return BackboneOutput(self.xl.drop(hidden), layer_inputs, associative=tuple(updated))


@hookimpl
def rmtzoo_register_backbones(register):
    tiny = {"vocab_size": 13, "n_layer": 2, "n_head": 2, "d_model": 16, "d_head": 8, "d_inner": 32, "dropout": 0.0,
            "d_key": 4, "dpfp_nu": 2}
    register(
        BackboneSpec(
            name="armt",
            summary="ARMT: the Transformer-XL decoder with a per-layer associative memory (DPFP, delta rule)",
            params=ArmtParams,
            build=lambda p, *, attention: ARMT(p, attention=attention),
            capabilities=BackboneCapabilities(
                causal=True, accepts_cache=True, per_sample_mask=True, associative_memory=True
            ),
            test_params=tiny,
        )
    )


@hookimpl
def rmtzoo_register_recurrences(register):
    register(
        RecurrenceSpec(
            name="armt",
            summary="ARMT: memory tokens and the backbone's associative memory carried, BPTT depth k over both",
            params=RmtParams,
            build=lambda p: RecurrencePolicy(
                carries_memory=True, bptt_depth=p.bptt_depth, bptt_rerun=p.bptt_rerun, carries_associative=True
            ),
            carries_memory=True,
            uses_cache=False,
            carries_associative=True,
            test_params={"bptt_depth": 1},
        )
    )
