"""The one place the axes meet: a backbone, a memory placement and a recurrence policy, per segment.

Recurrent state (memory, Transformer-XL cache, the BPTT window) is an explicit value: ``step`` takes a
:class:`RecurrentState` and returns a new one; the module keeps none between calls.

Padding (sequence classification): ``step(..., padding_mask=[B, T])`` hides padded keys from every query
through a per-sample mask ``[B, S, C+S]``; cache entries made from padded positions stay hidden in later
segments (``RecurrentState.cache_valid``), and a sample whose whole segment is padding keeps its memory
(docs/paper-settings.md 1.8: empty leading segments are dropped). Padding shifts positions: a left-padded first segment
puts its pads between the read memory and the text, so the read memory sits further from the text than
in the same segment without pads (HF's RMT pads BERT segments on the right instead).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rmtzoo._components import BackboneCapabilities, RecurrencePolicy
from rmtzoo._errors import InputError
from rmtzoo.placements import self_keys


@dataclass(frozen=True)
class PastSegment:
    """A segment kept for truncated BPTT: its ids and the (detached) memory and cache it started from."""

    ids: torch.Tensor
    memory: torch.Tensor
    cache: tuple[torch.Tensor, ...] | None
    padding_mask: torch.Tensor | None = None
    cache_valid: torch.Tensor | None = None
    associative: tuple[torch.Tensor, ...] | None = None


@dataclass(frozen=True)
class RecurrentState:
    """What one segment hands the next.

    memory: ``[B, M, D]`` read by the next segment (None without memory tokens).
    cache: per layer ``[B, C, D]``, stop-gradient (None without a cache or before the first segment).
    window: the last ``bptt_depth`` segments, replayed so a loss reaches back exactly k transitions.
    n_segments: segments processed so far.
    cache_valid: ``[B, C]`` bool, False where a cache entry came from padding (None: every entry counts).
    associative: the backbone's per-layer associative memory (ARMT: one ``[B, F, D+1]`` per layer),
        None without one or before the first segment (an empty memory).
    cache_keys: a pass without gradient's keys and values of ``cache`` (per layer ``(k, v)``
        ``[B, H, C, Dh]``, with the backbone's stamp of the weights they came from), so the next segment
        does not project the cache again; None otherwise (the cache is projected as usual).
    """

    batch_size: int
    memory: torch.Tensor | None = None
    cache: tuple[torch.Tensor, ...] | None = None
    window: tuple[PastSegment, ...] = ()
    n_segments: int = 0
    cache_valid: torch.Tensor | None = None
    associative: tuple[torch.Tensor, ...] | None = None
    cache_keys: tuple | None = None

    def detach(self) -> RecurrentState:
        """The same values with no graph: for carrying state across optimizer steps."""
        return RecurrentState(
            self.batch_size, _detach(self.memory), self.cache, self.window, self.n_segments, self.cache_valid,
            _detach(self.associative),
        )


@dataclass(frozen=True)
class StepOutput:
    """logits ``[B, T, V]`` (None when not asked for), hidden ``[B, T, D]`` at the segment positions,
    ``written`` memory ``[B, M, D]`` (None without memory tokens), ``nll [B, T]`` when targets were
    given (computed inside ``forward`` so wrappers such as DDP see every parameter use), and ``pooled
    [B, D]`` when the backbone returns its own summary of the segment.

    What the segment was computed from, for probes and analysis (the supported way to observe a segment;
    attention probabilities come from :func:`rmtzoo.analysis.attention_maps`): ``read`` the memory this
    segment read ``[B, M, D]`` (None without memory; with a BPTT depth, the memory re-run through the
    last k segments), ``inputs`` the backbone's input ``[B, R+T+W, D]`` (read memory, the segment's token
    embeddings, write memory, as the placement assembled them) and ``mask`` the attention mask handed to
    the backbone (``[S, C+S]`` or per sample ``[B, S, C+S]``, True: may attend)."""

    logits: torch.Tensor | None
    hidden: torch.Tensor
    written: torch.Tensor | None
    nll: torch.Tensor | None = None
    pooled: torch.Tensor | None = None
    read: torch.Tensor | None = None
    inputs: torch.Tensor | None = None
    mask: torch.Tensor | None = None


@dataclass(frozen=True)
class OpenSegment:
    """An open segment in generation (:meth:`RecurrentMemoryModel.extend_segment`): the per-layer keys
    and values ``(k, v)`` ``[B, H, P, Dh]`` of its first ``P`` keys (cache, read memory and the ``n_tokens``
    tokens so far; None while there are none) and the Tr-XL cache still to project (None once projected)."""

    past: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None
    n_tokens: int
    cache: tuple[torch.Tensor, ...] | None


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
        checkpoint_activations: bool | str = False,
    ) -> None:
        super().__init__()
        self.backbone, self.placement, self.policy = backbone, placement, policy
        self.capabilities = capabilities
        self.segment_length, self.last_segment = segment_length, last_segment
        self.checkpoint_activations = checkpoint_activations
        self.vocab_size = backbone.vocab_size
        self.classifier: nn.Module | None = None  # attached by prepare_model for a classification task
        # Tr-XL + RMT's auxiliary loss (A.5): the output row of the one extra token memory predicts
        self.aux_token = nn.Parameter(torch.zeros(backbone.d_model)) if policy.aux_loss_weight else None

    def compile_segments(self, backend: str = "inductor") -> RecurrentMemoryModel:
        """``torch.compile`` the per-segment computation (``train.compile``): embedding, backbone and
        split of one segment, the unit that step, the BPTT replay and checkpointing run. Shapes are
        static (``dynamic=False``), so one graph is compiled per segment shape (full and shorter last
        segment, with and without a cache yet) and mode (train/eval, gradient or not); the recurrence
        around it stays eager, and its state is passed in and returned as before.

        Each model compiles its own copy of the method's code: dynamo keeps its graphs, and its limit on
        recompilations (``torch._dynamo.config.recompile_limit``, 8), per code object, so with one shared
        code object every model compiled in a process (a grid's cells, eager and compiled side by side)
        would add its graphs to one count, and once that reached the limit later models would silently
        run eager."""
        import types

        method = type(self)._run_segment
        own = types.FunctionType(method.__code__.replace(), method.__globals__, method.__name__, method.__defaults__,
                                 method.__closure__)
        self._run_segment = torch.compile(own.__get__(self), backend=backend, dynamic=False)
        return self

    # -- state ------------------------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> RecurrentState:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
        return RecurrentState(batch_size, memory=self.placement.initial_memory(batch_size))

    # -- one segment ------------------------------------------------------------------------------
    def step(
        self,
        segment_ids: torch.Tensor,
        state: RecurrentState,
        *,
        return_logits: bool = True,
        targets=None,
        padding_mask: torch.Tensor | None = None,
    ) -> tuple[StepOutput, RecurrentState]:
        """Process one segment ``[B, T]`` (T <= segment length) from ``state``; return its output and
        the state for the next segment. ``padding_mask [B, T]`` bool (True: a real token) hides padded
        keys; a sample whose whole segment is padding keeps its memory."""
        segment_ids = self._check_ids(segment_ids, state)
        padding_mask = self._check_padding(padding_mask, segment_ids)
        memory_in, associative_in = self._state_to_read(state)
        reuse = self._reuses_cache_keys()
        hidden, written, layer_inputs, pooled, associative, nll, inputs, mask, keys = self._checkpointed(
            self._run_segment_and_nll, segment_ids, memory_in, state.cache, padding_mask, state.cache_valid,
            associative_in, targets, state.cache_keys if reuse else None,
        )
        policy = self.policy
        memory_out = self._next_memory(memory_in, written, padding_mask) if policy.carries_memory else state.memory
        associative_out = None
        if policy.carries_associative:
            associative_out = self._next_associative(associative_in, associative, padding_mask)
        cache_out, cache_valid, cache_keys = state.cache, state.cache_valid, None
        if policy.cache_len:
            cache_out = tuple(
                (x if old is None else torch.cat([old, x], dim=1))[:, -policy.cache_len :].detach()  # [B, C', D]
                for old, x in zip(state.cache or (None,) * len(layer_inputs), layer_inputs, strict=True)
            )
            if reuse and keys is not None:  # the keys of [cache | segment]: the next cache's are the last C'
                stamp, per_layer = keys
                cache_keys = (stamp, tuple((k[:, :, -policy.cache_len :], v[:, :, -policy.cache_len :])
                                           for k, v in per_layer))  # [B, H, C', Dh] each
            if padding_mask is not None or cache_valid is not None:
                cache_valid = self._next_cache_valid(state, padding_mask, segment_ids)  # [B, C']
        window = state.window
        if (policy.carries_memory or policy.carries_associative) and policy.bptt_depth:
            started = PastSegment(
                segment_ids, _detach(memory_in), state.cache, padding_mask, state.cache_valid, _detach(associative_in)
            )
            window = (*window, started)[-policy.bptt_depth :]
        logits = self.backbone.logits(hidden) if return_logits else None
        new_state = RecurrentState(
            state.batch_size, memory_out, cache_out, window, state.n_segments + 1, cache_valid, associative_out,
            cache_keys,
        )
        return StepOutput(logits, hidden, written, nll, pooled, memory_in, inputs, mask), new_state

    # -- generation: one open segment, keys and values reused ---------------------------------------
    def supports_extend(self, state: RecurrentState) -> bool:
        """Whether :meth:`extend_segment` gives what :meth:`step` gives for ``state``'s open segment: a
        backbone with an exact ``extend`` (``incremental``), no associative memory or padding, and a
        layout in which the read memory and the segment's tokens see no later position (the causal
        layout of :mod:`rmtzoo.placements`; checked on the full segment's mask)."""
        if not (getattr(self.backbone, "incremental", False) and self.capabilities.causal) or state.cache_valid is not None:
            return False
        if self.capabilities.associative_memory or self.policy.carries_associative or not self.capabilities.arbitrary_mask:
            return False
        c, r, t = self._n_cache(state), self.placement.n_read if self.placement.num_memory else 0, self.segment_length
        mask = self._layout(t, c)  # [R+T+W, C+R+T+W]
        later = torch.ones(r + t, mask.shape[1], dtype=torch.bool, device=mask.device).triu(c + 1)
        later[:r, c : c + r] = False  # read memory may read every read slot: they are all run at once
        return not bool((mask[: r + t] & later).any())

    def open_segment(self, state: RecurrentState) -> OpenSegment:
        """Run the read memory of the segment ``state`` opens (projecting the Tr-XL cache with it)."""
        memory, _ = self._state_to_read(state)
        c, r = self._n_cache(state), self.placement.n_read if memory is not None else 0
        if not r:
            return OpenSegment(None, 0, state.cache)
        read = self.placement.assemble(memory, memory[:, :0])[:, :r]  # [B, R, D]: no tokens yet
        _, past = self.backbone.extend(read, mask=self._layout(1, c)[:r, : c + r], cache=state.cache)
        return OpenSegment(past, 0, None)

    def extend_segment(self, ids: torch.Tensor, state: RecurrentState, open_: OpenSegment):
        """Logits ``[B, n, V]`` of the next ``n`` tokens ``ids [B, n]`` of the open segment, computing
        those positions only (the earlier ones' keys and values are reused), as :meth:`step` gives them
        for the segment so far; and the open segment with them added."""
        n, done = ids.shape[1], open_.n_tokens
        c, r = self._n_cache(state), self.placement.n_read if self.placement.num_memory else 0
        t = done + n
        if t > self.segment_length:
            raise InputError(f"an open segment holds at most {self.segment_length} tokens, got {t}")
        rows = self._layout(t, c)[r + done : r + t, : c + r + t]  # [n, C+R+t]
        hidden, past = self.backbone.extend(self.backbone.embed(ids), mask=rows, cache=open_.cache, past=open_.past)
        return self.backbone.logits(hidden), OpenSegment(past, t, None)

    def _n_cache(self, state: RecurrentState) -> int:
        return 0 if state.cache is None else state.cache[0].shape[1]

    def _layout(self, n_tokens: int, n_cache: int) -> torch.Tensor:
        return self.placement.mask(
            n_tokens, n_cache, causal=self.capabilities.causal, memory_reads_cache=self.policy.memory_reads_cache,
            device=next(self.parameters()).device,
        )

    def aux_nll(self, written: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the extra token at every write-memory output ``written [B, M, D]``, over
        the vocabulary's logits plus the extra token's (``aux_token``)."""
        logits = self.backbone.logits(written).float()  # [B, M, V]
        extra = (written.float() @ self.aux_token.float())[..., None]  # [B, M, 1]
        logits = torch.cat([logits, extra], dim=-1)  # [B, M, V+1]
        target = torch.full(logits.shape[:-1], logits.shape[-1] - 1, dtype=torch.long, device=logits.device)
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten())

    def _next_memory(self, memory_in, written, padding_mask):
        """The memory the next segment reads; a sample whose segment is all padding keeps ``memory_in``."""
        memory = self.policy.update_memory(memory_in, written)
        if padding_mask is None:
            return memory
        empty = ~padding_mask.any(dim=1)  # [B]
        return torch.where(empty[:, None, None], memory_in, memory)  # [B, M, D]

    def _next_associative(self, associative_in, associative, padding_mask):
        """The associative memory the next segment reads; a sample whose segment is all padding keeps
        the one it started from (an empty one when that was None)."""
        if padding_mask is None or associative is None:
            return associative
        empty = ~padding_mask.any(dim=1)  # [B]
        before = associative_in or tuple(torch.zeros_like(a) for a in associative)
        return tuple(torch.where(empty[:, None, None], a0, a) for a0, a in zip(before, associative, strict=True))

    def _positions_valid(self, padding_mask, n_tokens: int, batch_size: int, device):
        """[B, R+T+W] bool: memory positions are always real, segment positions as ``padding_mask``."""
        if padding_mask is None:
            padding_mask = torch.ones(batch_size, n_tokens, dtype=torch.bool, device=device)
        p = self.placement
        read = padding_mask.new_ones(batch_size, p.n_read if p.num_memory else 0)
        write = padding_mask.new_ones(batch_size, p.n_write if p.num_memory else 0)
        return torch.cat([read, padding_mask, write], dim=1)  # [B, S]

    def _next_cache_valid(self, state: RecurrentState, padding_mask, ids):
        """Which entries of the next cache came from real positions; an all-padding segment adds none."""
        b, t = ids.shape
        new = self._positions_valid(padding_mask, t, b, ids.device)  # [B, S]
        if padding_mask is not None:
            new = new & padding_mask.any(dim=1, keepdim=True)
        n_old = 0 if state.cache is None else state.cache[0].shape[1]
        old = state.cache_valid if state.cache_valid is not None else new.new_ones(b, n_old)
        return torch.cat([old, new], dim=1)[:, -self.policy.cache_len :]  # [B, C']

    def _state_to_read(self, state: RecurrentState):
        """The memory and associative memory this segment reads, with gradient through exactly
        ``bptt_depth`` transitions of both.

        With k set and more than k segments behind us, the last k segments are re-run from the detached
        memory they started from (k extra forward passes, as LM-RMT's trainer does, but from the memory
        of k segments ago: docs/paper-settings.md 1.5 describes the released code's quirk of starting from the newest,
        which ``recurrence.bptt_rerun = "newest_memory"`` reproduces). Dropout draws new masks in the re-run.
        """
        policy, k = self.policy, self.policy.bptt_depth
        memory = state.memory
        associative = state.associative if policy.carries_associative else None
        carried = (policy.carries_memory and memory is not None) or policy.carries_associative
        if not carried or k is None or state.n_segments <= k:
            return memory, associative
        if k == 0 or not torch.is_grad_enabled():  # nothing to backpropagate into: no re-run
            return (_detach(memory) if policy.carries_memory else memory), _detach(associative)
        newest = policy.bptt_rerun == "newest_memory"
        if policy.carries_memory:
            memory = state.memory.detach() if newest else state.window[0].memory
        associative = _detach(state.associative) if newest and policy.carries_associative else state.window[0].associative
        for past in state.window:
            _, written, _, _, updated, *_ = self._checkpointed(
                self._run_segment, past.ids, memory, past.cache, past.padding_mask, past.cache_valid, associative
            )
            if policy.carries_memory:
                memory = self._next_memory(memory, written, past.padding_mask)
            if policy.carries_associative:
                associative = self._next_associative(associative, updated, past.padding_mask)
        return memory, associative

    def _checkpointed(self, fn, *args):
        """``fn(*args)``; with ``segment.checkpoint_activations`` while a gradient is recorded, under
        ``torch.utils.checkpoint``: only the segment's inputs and outputs (memory, hidden states, nll) are
        kept, its activations are recomputed in backward with the same dropout masks (RNG state restored),
        so BPTT over S segments holds S segment boundaries plus one segment's activations. With
        ``"selective"``, matmul outputs are kept as well (:func:`_keep_matmuls`) and only the cheap ops
        between them are recomputed."""
        if not (self.checkpoint_activations and torch.is_grad_enabled()):
            return fn(*args)
        from torch.utils.checkpoint import checkpoint

        if self.checkpoint_activations == "selective":
            from torch.utils.checkpoint import create_selective_checkpoint_contexts

            return checkpoint(
                _without_autocast_cache(fn), *args, use_reentrant=False,
                context_fn=lambda: create_selective_checkpoint_contexts(_keep_matmuls),
            )
        return checkpoint(fn, *args, use_reentrant=False)

    def _reuses_cache_keys(self) -> bool:
        """A pass without gradient over a Tr-XL cache keeps the cache's keys and values for the next
        segment (``RecurrentState.cache_keys``) where the backbone can take them (``reuses_cache_keys``):
        the cache is what the last segment's layers just projected, so projecting it again computes
        nothing new. With a gradient the projection is part of the graph and is recomputed."""
        return bool(self.policy.cache_len) and not torch.is_grad_enabled() and getattr(
            self.backbone, "reuses_cache_keys", False) and self.capabilities.arbitrary_mask and not (
            self.capabilities.associative_memory)

    def _run_segment_and_nll(self, ids, memory, cache, padding_mask, cache_valid, associative, targets, cache_keys=None):
        """``_run_segment`` plus the nll of ``targets`` [B, T] (None without), one checkpointed unit."""
        hidden, written, layer_inputs, pooled, associative, inputs, mask, keys = self._run_segment(
            ids, memory, cache, padding_mask, cache_valid, associative, cache_keys
        )
        nll = None if targets is None else self.backbone.nll(hidden, targets)  # [B, T]
        return hidden, written, layer_inputs, pooled, associative, nll, inputs, mask, keys

    def _run_segment(self, ids, memory, cache, padding_mask=None, cache_valid=None, associative=None, cache_keys=None):
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
        if padding_mask is not None or cache_valid is not None:
            b, s = inputs.shape[:2]
            if cache_valid is None:
                cache_valid = torch.ones(b, n_cache, dtype=torch.bool, device=tokens.device)
            keys = torch.cat([cache_valid, self._positions_valid(padding_mask, ids.shape[1], b, tokens.device)], 1)
            # padded keys hidden from every query; each query keeps its own key, so no row is empty
            mask = (mask[None] & keys[:, None, :]) | self_keys(s, n_cache, device=tokens.device)  # [B, S, C+S]
        if not self.capabilities.arbitrary_mask:
            # a causal-order-only backbone (an SSM) sees each position every earlier one; validation made
            # sure the mask hides none of those, so handing it no mask loses nothing the mask allows
            if mask.dim() == 3 or (torch.ones_like(mask).tril(n_cache) & ~mask).any():
                raise InputError("this backbone follows its causal order only; the mask hides a key it would see")
            out = self.backbone(inputs, mask=None, cache=cache)
        elif self.capabilities.associative_memory:
            out = self.backbone(
                inputs, mask=mask, cache=cache, associative=associative,
                write_positions=self._write_positions(ids.shape[1]),
            )
        elif self._reuses_cache_keys():
            out = self.backbone(inputs, mask=mask, cache=cache, cache_keys=cache_keys)
        else:
            out = self.backbone(inputs, mask=mask, cache=cache)
        hidden, written = self.placement.split(out.hidden, ids.shape[1])  # [B, T, D], [B, M, D]
        return (hidden, written, out.layer_inputs, getattr(out, "pooled", None), getattr(out, "associative", None),
                inputs, mask, getattr(out, "keys", None))

    def _write_positions(self, n_tokens: int) -> slice:
        """Where the written memory sits in ``[read | segment | write]``: the write block, or the read
        block for a placement that writes in place (``shared``); empty without memory tokens."""
        p = self.placement
        if not p.num_memory:
            return slice(0, 0)
        if p.n_write:
            return slice(p.n_read + n_tokens, p.n_read + n_tokens + p.n_write)
        return slice(0, p.n_read)

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
        self,
        ids: torch.Tensor,
        state: RecurrentState | None = None,
        *,
        return_logits: bool = True,
        padding_mask: torch.Tensor | None = None,
    ) -> SequenceOutput:
        """Logits ``[B, N, V]`` for every position of ``ids [B, N]``, processed segment by segment."""
        segments = self.split_segments(ids)
        masks = [None] * len(segments) if padding_mask is None else list(self._check_padding(padding_mask, ids).split(self.segment_length, dim=1))
        state = self.initial_state(ids.shape[0]) if state is None else state
        outputs = []
        for segment, mask in zip(segments, masks, strict=True):
            out, state = self.step(segment, state, return_logits=return_logits, padding_mask=mask)
            outputs.append(out.logits if return_logits else out.hidden)
        return SequenceOutput(torch.cat(outputs, dim=1), state)

    def classify(self, ids: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits ``[B, num_labels]`` for right-aligned ``ids [B, N]`` (docs/paper-settings.md 1.8): cut into
        segments from the right (a partial segment comes first), every sample from the initial memory,
        the gradient through every segment, the output from the last segment only. A segment that is
        padding for every sample is skipped (the model would leave every memory unchanged anyway)."""
        if self.classifier is None:
            raise InputError("this model has no classifier; build it for a classification task (prepare_model)")
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.shape[1] == 0:
            raise InputError(f"ids must be a non-empty [batch, tokens] tensor, got {_describe(ids)}")
        n, length = ids.shape[1], self.segment_length
        if padding_mask is not None:
            padding_mask = self._check_padding(padding_mask, ids)
        bounds = [(max(0, end - length), end) for end in range(n, 0, -length)][::-1]
        state, out, last_mask = self.initial_state(ids.shape[0]), None, None
        for k, (start, end) in enumerate(bounds):
            mask = None if padding_mask is None else padding_mask[:, start:end]
            if mask is not None and k + 1 < len(bounds) and not bool(mask.any()):
                continue  # a leading segment that is empty in every sample
            out, state = self.step(ids[:, start:end], state, return_logits=False, padding_mask=mask)
            last_mask = mask
        return self.classifier(out, last_mask)  # [B, num_labels]

    def forward(
        self, ids, state=None, *, step: bool = False, return_logits: bool = True, targets=None, padding_mask=None,
        classify: bool = False,
    ):
        """``forward_sequence`` (or ``step`` with ``step=True``, ``classify`` with ``classify=True``), so
        wrappers such as DDP that only intercept ``forward`` see every call."""
        if classify:
            return self.classify(ids, padding_mask)
        if step:
            return self.step(ids, state, return_logits=return_logits, targets=targets, padding_mask=padding_mask)
        return self.forward_sequence(ids, state, return_logits=return_logits, padding_mask=padding_mask)

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


    def _check_padding(self, padding_mask, ids: torch.Tensor) -> torch.Tensor | None:
        """None, or ``padding_mask`` as bool ``[B, T]`` matching ``ids``; None when nothing is padded."""
        if padding_mask is None:
            return None
        if not self.capabilities.per_sample_mask:
            raise InputError("padding_mask needs a backbone whose capabilities have per_sample_mask = True")
        if not isinstance(padding_mask, torch.Tensor) or padding_mask.shape != ids.shape:
            raise InputError(f"padding_mask must be a tensor of the ids' shape {tuple(ids.shape)}, got {_describe(padding_mask)}")
        if padding_mask.dtype != torch.bool:
            if padding_mask.dtype.is_floating_point or padding_mask.dtype.is_complex:
                raise InputError(f"padding_mask must be bool (True: a real token), got dtype {padding_mask.dtype}")
            padding_mask = padding_mask != 0
        return padding_mask.to(ids.device)


def _detach(value):
    """A tensor, a tuple of tensors or None, without its graph."""
    if value is None:
        return None
    if isinstance(value, tuple):
        return tuple(v.detach() for v in value)
    return value.detach()


def _without_autocast_cache(fn):
    """``fn`` under the same autocast, but with autocast's weight-cast cache off. Selective checkpointing
    replays ops by call count: with the cache on, the forward casts each weight once per step and the
    recomputation (outside the cache's lifetime) casts it again, so the two op sequences differ."""

    def run(*args):
        device = next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu")
        if not torch.is_autocast_enabled(device):
            return fn(*args)
        with torch.autocast(device, dtype=torch.get_autocast_dtype(device), cache_enabled=False):
            return fn(*args)

    return run


def _keep_matmuls(ctx, op, *args, **kwargs):
    """Selective checkpointing policy: save what matmuls (and fused attention kernels) return, recompute
    the rest."""
    from torch.utils.checkpoint import CheckpointPolicy

    name = getattr(op, "__name__", "")
    base = name.split(".")[0]
    if base in _MATMULS or base.startswith("_scaled_dot_product"):
        return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


_MATMULS = {"mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "_addmm_activation"}


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)}"
    return type(value).__name__
