"""The one place the axes meet: a backbone, a memory placement and a recurrence policy, per segment.

Recurrent state (memory, Transformer-XL cache, the BPTT window) is an explicit value: ``step`` takes a
:class:`RecurrentState` and returns a new one; the module keeps none between calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rmtzoo._components import BackboneCapabilities, RecurrencePolicy
from rmtzoo._errors import InputError


@dataclass(frozen=True)
class PastSegment:
    """A segment kept for truncated BPTT: its ids and the (detached) memory and cache it started from."""

    ids: torch.Tensor
    memory: torch.Tensor
    cache: tuple[torch.Tensor, ...] | None


@dataclass(frozen=True)
class RecurrentState:
    """What one segment hands the next.

    memory: ``[B, M, D]`` read by the next segment (None without memory tokens).
    cache: per layer ``[B, C, D]``, stop-gradient (None without a cache or before the first segment).
    window: the last ``bptt_depth`` segments, replayed so a loss reaches back exactly k transitions.
    n_segments: segments processed so far.
    """

    batch_size: int
    memory: torch.Tensor | None = None
    cache: tuple[torch.Tensor, ...] | None = None
    window: tuple[PastSegment, ...] = ()
    n_segments: int = 0

    def detach(self) -> RecurrentState:
        """The same values with no graph: for carrying state across optimizer steps."""
        memory = None if self.memory is None else self.memory.detach()
        return RecurrentState(self.batch_size, memory, self.cache, self.window, self.n_segments)


@dataclass(frozen=True)
class StepOutput:
    """logits ``[B, T, V]`` (None when not asked for), hidden ``[B, T, D]`` at the segment positions,
    ``written`` memory ``[B, M, D]`` (None without memory tokens), and ``nll [B, T]`` when targets were
    given (computed inside ``forward`` so wrappers such as DDP see every parameter use)."""

    logits: torch.Tensor | None
    hidden: torch.Tensor
    written: torch.Tensor | None
    nll: torch.Tensor | None = None


@dataclass(frozen=True)
class SequenceOutput:
    logits: torch.Tensor  # [B, N, V]
    state: RecurrentState


class RecurrentMemoryModel(nn.Module):
    """Backbone x memory placement x recurrence. Build one with :func:`rmtzoo.build_model`."""

    def __init__(
        self,
        *,
        backbone: nn.Module,
        placement: nn.Module,
        policy: RecurrencePolicy,
        capabilities: BackboneCapabilities,
        segment_length: int,
        last_segment: str = "shorter",
    ) -> None:
        super().__init__()
        self.backbone, self.placement, self.policy = backbone, placement, policy
        self.capabilities = capabilities
        self.segment_length, self.last_segment = segment_length, last_segment
        self.vocab_size = backbone.vocab_size

    # -- state ------------------------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> RecurrentState:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
        return RecurrentState(batch_size, memory=self.placement.initial_memory(batch_size))

    # -- one segment ------------------------------------------------------------------------------
    def step(
        self, segment_ids: torch.Tensor, state: RecurrentState, *, return_logits: bool = True, targets=None
    ) -> tuple[StepOutput, RecurrentState]:
        """Process one segment ``[B, T]`` (T <= segment length) from ``state``; return its output and
        the state for the next segment."""
        segment_ids = self._check_ids(segment_ids, state)
        memory_in = self._memory_to_read(state)
        hidden, written, layer_inputs = self._run_segment(segment_ids, memory_in, state.cache)
        policy = self.policy
        memory_out = policy.update_memory(memory_in, written) if policy.carries_memory else state.memory
        cache_out = state.cache
        if policy.cache_len:
            cache_out = tuple(
                (x if old is None else torch.cat([old, x], dim=1))[:, -policy.cache_len :].detach()  # [B, C', D]
                for old, x in zip(state.cache or (None,) * len(layer_inputs), layer_inputs, strict=True)
            )
        window = state.window
        if policy.carries_memory and policy.bptt_depth:
            started = PastSegment(segment_ids, memory_in.detach(), state.cache)
            window = (*window, started)[-policy.bptt_depth :]
        logits = self.backbone.logits(hidden) if return_logits else None
        nll = None if targets is None else self.backbone.nll(hidden, targets)  # [B, T]
        new_state = RecurrentState(state.batch_size, memory_out, cache_out, window, state.n_segments + 1)
        return StepOutput(logits, hidden, written, nll), new_state

    def _memory_to_read(self, state: RecurrentState) -> torch.Tensor | None:
        """The memory this segment reads, with gradient through exactly ``bptt_depth`` transitions.

        With k set and more than k segments behind us, the last k segments are re-run from the detached
        memory they started from (k extra forward passes, as LM-RMT's trainer does, but from the memory
        of k segments ago: PAPER.md 1.5 describes the released code's quirk of starting from the newest).
        Dropout draws new masks in the re-run.
        """
        k = self.policy.bptt_depth
        memory = state.memory
        if memory is None or not self.policy.carries_memory or k is None or state.n_segments <= k:
            return memory
        if k == 0 or not torch.is_grad_enabled():  # nothing to backpropagate into: no re-run
            return memory.detach()
        memory = state.window[0].memory
        for past in state.window:
            _, written, _ = self._run_segment(past.ids, memory, past.cache)
            memory = self.policy.update_memory(memory, written)
        return memory

    def _run_segment(self, ids, memory, cache):
        tokens = self.backbone.embed(ids)  # [B, T, D]
        n_cache = 0 if cache is None else cache[0].shape[1]
        inputs = self.placement.assemble(memory, tokens)  # [B, R+T+W, D]
        mask = self.placement.mask(
            ids.shape[1],
            n_cache,
            causal=self.capabilities.causal,
            memory_reads_cache=self.policy.memory_reads_cache,
            device=tokens.device,
        )
        out = self.backbone(inputs, mask=mask, cache=cache)
        hidden, written = self.placement.split(out.hidden, ids.shape[1])  # [B, T, D], [B, M, D]
        return hidden, written, out.layer_inputs

    # -- whole sequences --------------------------------------------------------------------------
    def split_segments(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """Cut ``[B, N]`` into segments of ``segment_length``; a last partial segment is kept as a
        shorter segment (``segment.last = "shorter"``) or rejected (``"error"``)."""
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
            raise InputError(f"ids must be a [batch, tokens] tensor, got {_describe(ids)}")
        n = ids.shape[1]
        if n == 0:
            raise InputError("ids is an empty sequence (0 tokens)")
        if n % self.segment_length and self.last_segment == "error":
            raise InputError(
                f"sequence length {n} is not a multiple of segment.length {self.segment_length} "
                "(set segment.last = 'shorter' to allow a shorter last segment)"
            )
        return list(ids.split(self.segment_length, dim=1))

    def forward_sequence(
        self, ids: torch.Tensor, state: RecurrentState | None = None, *, return_logits: bool = True
    ) -> SequenceOutput:
        """Logits ``[B, N, V]`` for every position of ``ids [B, N]``, processed segment by segment."""
        segments = self.split_segments(ids)
        state = self.initial_state(ids.shape[0]) if state is None else state
        outputs = []
        for segment in segments:
            out, state = self.step(segment, state, return_logits=return_logits)
            outputs.append(out.logits if return_logits else out.hidden)
        return SequenceOutput(torch.cat(outputs, dim=1), state)

    def forward(self, ids, state=None, *, step: bool = False, return_logits: bool = True, targets=None):
        """``forward_sequence`` (or ``step`` with ``step=True``), so wrappers such as DDP that only
        intercept ``forward`` see every call."""
        if step:
            return self.step(ids, state, return_logits=return_logits, targets=targets)
        return self.forward_sequence(ids, state, return_logits=return_logits)

    # -- input checks -----------------------------------------------------------------------------
    def _check_ids(self, ids, state: RecurrentState) -> torch.Tensor:
        if not isinstance(state, RecurrentState):
            raise InputError(f"state must be a RecurrentState from initial_state() or step(), got {_describe(state)}")
        if not isinstance(ids, torch.Tensor):
            raise InputError(f"segment_ids must be a torch.Tensor of token ids, got {_describe(ids)}")
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise InputError(f"segment_ids must be an integer tensor (torch.long), got dtype {ids.dtype}")
        if ids.dim() != 2:
            raise InputError(f"segment_ids must have shape [batch, tokens], got shape {tuple(ids.shape)}")
        b, t = ids.shape
        if b == 0 or t == 0:
            raise InputError(f"segment_ids is empty (shape {tuple(ids.shape)})")
        if t > self.segment_length:
            raise InputError(f"segment of {t} tokens is longer than segment.length {self.segment_length}")
        if b != state.batch_size:
            raise InputError(f"segment_ids has batch size {b} but the state was made for batch size {state.batch_size}")
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= self.vocab_size:
            bad = lo if lo < 0 else hi
            raise InputError(f"token id {bad} is outside the vocabulary [0, {self.vocab_size})")
        return ids.long()


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)}"
    return type(value).__name__
