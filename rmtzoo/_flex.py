"""The ``flex`` attention kernel: ``torch.nn.attention.flex_attention``, one fused kernel per layer.

Transformer-XL's relative-position term enters as a *score modification* and the memory layout (read,
write, cache, padding) as a *block mask*, so no ``[B, H, Q, K]`` bias or mask tensor is materialised:

- ``position`` ``[B, H, Q, P]`` is the un-skewed term ``(q + r_r_bias) . R`` over the distances
  ``C+Q-1 .. C+Q-P`` (:func:`rmtzoo.backbones.transformer_xl.rel_shift`'s input); the score mod reads
  ``position[b, h, i, Q-1-i+j]`` for query i and key j, the skew as an index instead of a view. Columns
  past P belong to keys the mask hides; the index is clamped so the kernel never reads outside the table.
- a dense ``bias`` (any other caller, and the ``lm_rmt`` distances) is read as ``bias[b, h, i, j]``.
- the bool mask ``[Q, K]`` / ``[B, Q, K]`` becomes a ``BlockMask`` (fully hidden tiles are skipped). A
  block mask takes milliseconds to build, as long as the attention itself at the perf benchmark's sizes,
  so it is built once per mask tensor: the placement memoises its layout masks and the backbone hands
  every layer the same one, and the kernel keeps the last few block masks keyed by that tensor.

What runs where (torch 2.13, measured in ``benchmarks/perf/reports/cpu-2026-12-02b-issue14.md``). CPU:
forward only (torch raises "FlexAttention does not support backward on CPU"), fp32/bf16/fp16, so the
spec's capabilities say ``inference_only_on = ("cpu",)`` and a call that records a gradient on CPU is a
one-line error; fp64 runs the eager reference. GPU: forward and backward. Fused (``compile = true``,
default): ``torch.compile(flex_attention, dynamic=False)``, one graph per input shape and dtype, at most
``max_shapes`` of them; any further shape, and a call with fewer than ``min_queries`` queries (a decode
step: a new key length every token, nothing to tile), runs the eager reference instead of compiling
again. ``compile = false`` runs flex's own unfused implementation (the same score and mask mods; the
contract suite's setting, cheap to run over every layout). Attention dropout is not a flex feature: a
call with ``dropout_p > 0`` runs the eager reference.
"""

from __future__ import annotations

import weakref

import torch
from pydantic import Field, PositiveInt

from rmtzoo._components import Params
from rmtzoo._errors import UnavailableError


class FlexParams(Params):
    """compile: the fused kernel (``torch.compile``); false: flex's unfused implementation.
    max_shapes: compiled shapes kept; min_queries: calls with fewer queries run eager math."""

    compile: bool = True
    max_shapes: PositiveInt = 8
    min_queries: int = Field(16, ge=1)


def available() -> str | None:
    try:
        from torch.nn.attention import flex_attention  # noqa: F401  (lazy: imports parts of dynamo)
    except Exception as exc:  # an old torch
        return f"torch {torch.__version__} has no torch.nn.attention.flex_attention ({type(exc).__name__})"
    return None


class FlexAttention:
    """``attend(q, k, v, *, bias, mask, dropout_p, scale, position)`` -> ``[B, H, Q, Dh]``."""

    mask_in_bias = False  # the mask stays a (block) mask: folding it into a bias would materialise it
    takes_position = True  # Transformer-XL hands over the un-skewed position term (module docstring)

    def __init__(self, params: FlexParams) -> None:
        self.params = params
        self._compiled = None
        self._shapes: set[tuple] = set()
        self._blocks: list[tuple] = []  # (weakref to a mask, its shape, the BlockMask), newest last

    def __call__(self, q, k, v, *, bias=None, mask=None, dropout_p=0.0, scale=None, position=None):
        """q [B, H, Q, Dh], k/v [B, H, K, Dh]; position [B, H, Q, P] or bias [B|1, H|1, Q, K] (or neither);
        mask bool [Q, K] / [B, Q, K] or None."""
        if q.device.type == "cpu" and torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (q, k, v, bias, position)
        ):
            raise UnavailableError(
                "attention.kind 'flex' runs forward only on CPU (torch's FlexAttention has no CPU backward); "
                "train with attention.kind 'auto', 'eager' or 'sdpa', or on a GPU"
            )
        fused = self.params.compile and not _compiling()
        if dropout_p > 0.0 or q.dtype == torch.float64 or (fused and not self._may_compile(q, k, position, bias, mask)):
            return _eager(q, k, v, bias=bias, mask=mask, dropout_p=dropout_p, scale=scale, position=position)
        from torch.nn.attention.flex_attention import flex_attention  # lazy: imports parts of dynamo

        n_q, n_k = q.shape[2], k.shape[2]
        score_mod = None
        if position is not None:
            last = position.shape[-1] - 1

            def score_mod(score, b, h, i, j):
                return score + position[b, h, i, torch.clamp(n_q - 1 - i + j, max=last)]

        elif bias is not None:
            full = bias.to(q.dtype).expand(q.shape[0], q.shape[1], n_q, n_k)  # [B, H, Q, K], stride-0 views

            def score_mod(score, b, h, i, j):
                return score + full[b, h, i, j]

        block_mask = None if mask is None else self._block_mask(mask, n_q, n_k)
        run = flex_attention
        if fused:
            if self._compiled is None:
                self._compiled = torch.compile(flex_attention, dynamic=False)
            run = self._compiled
        return run(q, k, v, score_mod=score_mod, block_mask=block_mask, scale=scale)  # [B, H, Q, Dh]

    def _may_compile(self, q, k, position, bias, mask) -> bool:
        """Whether this call's shape has (or may get) a compiled graph; the budget is ``max_shapes``."""
        if q.shape[2] < self.params.min_queries:
            return False
        key = (q.shape, k.shape, q.dtype, str(q.device), None if position is None else position.shape,
               None if bias is None else bias.shape, None if mask is None else mask.shape)
        if key in self._shapes:
            return True
        if len(self._shapes) >= self.params.max_shapes:
            return False
        self._shapes.add(key)
        return True

    def _block_mask(self, mask, n_q: int, n_k: int):
        """The BlockMask of ``mask``, built once per mask tensor (the last 8 are kept)."""
        for ref, version, block in self._blocks:
            if ref() is mask and version == mask._version:
                return block
        from torch.nn.attention.flex_attention import create_block_mask

        if mask.dim() == 3:  # per sample (padding)

            def mask_mod(b, h, i, j):
                return mask[b, i, j]

            batch = mask.shape[0]
        else:

            def mask_mod(b, h, i, j):
                return mask[i, j]

            batch = None
        block = create_block_mask(mask_mod, batch, None, n_q, n_k, device=mask.device)
        self._blocks = [*self._blocks[-7:], (weakref.ref(mask), mask._version, block)]
        return block


def _compiling() -> bool:
    """Inside an outer ``torch.compile`` (``train.compile``) the plain op is traced into that graph."""
    return getattr(torch.compiler, "is_compiling", lambda: False)()


def _eager(q, k, v, *, bias, mask, dropout_p, scale, position):
    """The eager reference, with ``position`` skewed into a dense bias as Transformer-XL does."""
    from rmtzoo.attention import eager_attention
    from rmtzoo.backbones.transformer_xl import rel_shift

    if position is not None:
        bias = rel_shift(position, k.shape[2])  # [B, H, Q, K]
    return eager_attention(q, k, v, bias=bias, mask=mask, dropout_p=dropout_p, scale=scale)
