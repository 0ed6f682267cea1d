"""What a plugin registers: one frozen spec per component, on one of six axes.

A spec is plain data plus a ``build`` callable. Its ``params`` class is a pydantic model: the config
block ``{kind: NAME, ...}`` is validated against it, so a plugin's parameters validate, dump and hash like
the built-ins'. ``test_params`` are tiny settings the contract and property suites build the component
with, so a new component is tested automatically the moment it is registered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict


class Params(BaseModel):
    """Base class for component parameters: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class NoParams(Params):
    """A component that takes no parameters."""


@dataclass(frozen=True)
class BackboneCapabilities:
    """What a backbone can do; placements and recurrences are checked against it at validation.

    causal: the backbone honours an arbitrary boolean attention mask and is causal when given none, so
        a placement may hide keys from queries (read/write memory needs this).
    accepts_cache: ``forward`` takes a per-layer cache of past layer inputs (a Transformer-XL cache).
    per_sample_mask: ``forward`` also takes a per-sample mask ``[B, S, C+S]`` (padding: a padded key is
        hidden from every query); sequence classification needs this.
    associative_memory: ``forward`` also takes ``associative`` (its per-layer associative memory, as it
        returned it, or None for an empty one) and ``write_positions`` (the slice of ``x`` holding the
        write memory, whose outputs update it), and returns the updated memory as
        ``BackboneOutput.associative`` (ARMT, :mod:`rmtzoo.backbones.armt`).
    arbitrary_mask: False for a backbone that follows its own causal order only (a state-space model or
        an RNN): each position sees every earlier one, over ``[cache, read memory, segment, write
        memory]``, and nothing else can be hidden. The model then hands it ``mask=None``. A placement or
        recurrence whose mask hides a key causal order shows (memory that must not read the cache:
        ``memory_reads_cache = false``) is rejected at validation; where the mask shows more than causal
        order (RMT's write memory sees all write tokens; here each write token sees the earlier ones
        only, and read memory the earlier read tokens), the backbone sees less, never more.
    """

    causal: bool
    accepts_cache: bool
    per_sample_mask: bool = False
    associative_memory: bool = False
    arbitrary_mask: bool = True


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone. ``build(params, *, attention)`` returns an ``nn.Module`` with the backbone protocol:

    - ``d_model`` and ``vocab_size`` attributes;
    - ``embed(ids [B, T]) -> [B, T, D]`` input embeddings;
    - ``forward(x [B, S, D], *, mask [S, C+S] bool | None, cache list[[B, C, D]] | None)``
      returning :class:`rmtzoo.BackboneOutput` (``hidden [B, S, D]``, the per-layer inputs
      ``layer_inputs``, each ``[B, S, D]``, that the next cache is built from, and optionally ``pooled
      [B, D]``, the backbone's own summary of the sequence); ``mask=None`` means the backbone's natural
      attention (causal for a causal backbone). With ``capabilities.per_sample_mask`` the mask may also be
      ``[B, S, C+S]``; the model never hands over a row without a visible key (a query sees itself);
    - ``logits(hidden [B, T, D]) -> [B, T, V]`` and ``nll(hidden, targets [B, T]) -> [B, T]``;
    - optionally ``classification_head(num_labels) -> nn.Module`` whose ``forward(out: StepOutput,
      padding_mask [B, T] bool | None) -> logits [B, num_labels]``; without it, classification tasks use
      :class:`rmtzoo.PoolingHead`;
    - optionally, for inference: ``incremental`` (True) with ``extend(x, *, mask, cache, past)``, the
      next positions over the keys and values of earlier ones (generation computes one position a
      token; see :meth:`rmtzoo.backbones.transformer_xl.TransformerXL.extend`), and
      ``reuses_cache_keys`` (True) with ``forward(..., cache_keys=...)`` returning ``keys`` (a stream
      without gradient does not project the Tr-XL cache again). Without them the model recomputes.
    """

    name: str
    summary: str
    params: type[Params]
    build: Callable[..., Any]
    capabilities: BackboneCapabilities | Callable[[Any], BackboneCapabilities]
    test_params: Mapping[str, Any] = field(default_factory=dict)

    def capabilities_for(self, params: Params) -> BackboneCapabilities:
        caps = self.capabilities
        return caps if isinstance(caps, BackboneCapabilities) else caps(params)


@dataclass(frozen=True)
class PlacementSpec:
    """A memory placement. ``build(params, *, d_model)`` returns an ``nn.Module`` with
    ``num_memory``, ``initial_memory(batch_size)``, ``assemble``, ``split`` and ``mask``
    (see :class:`rmtzoo.placements.MemoryPlacement`).

    requires_causal: only valid on a backbone whose capabilities say ``causal``.
    has_memory: places memory tokens (a recurrence that carries memory needs this).
    """

    name: str
    summary: str
    params: type[Params]
    build: Callable[..., Any]
    requires_causal: bool
    has_memory: bool
    test_params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecurrenceSpec:
    """A recurrence mode. ``build(params)`` returns a :class:`rmtzoo.RecurrencePolicy`.

    carries_memory: memory written by one segment is read by the next (needs a placement with memory).
    uses_cache: a per-layer Transformer-XL cache is carried (needs a backbone that accepts a cache).
    carries_associative: the backbone's per-layer associative memory is carried (needs a backbone with
        the ``associative_memory`` capability).
    """

    name: str
    summary: str
    params: type[Params]
    build: Callable[..., Any]
    carries_memory: bool
    uses_cache: bool
    carries_associative: bool = False
    test_params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AttentionSpec:
    """An attention kernel. ``build(params)`` returns a callable
    ``attend(q, k, v, *, bias, mask, dropout_p, scale) -> [B, H, Q, Dh]`` with q ``[B, H, Q, Dh]``,
    k and v ``[B, H, K, Dh]``, bias float ``[B|1, H|1, Q, K]`` or None, mask bool ``[Q, K]`` or, per
    sample, ``[B, Q, K]`` (True: may attend) or None. ``available()`` returns None where the kernel runs, else the reason it cannot;
    ``auto`` picks the available kernel of highest ``priority``.

    inference_only_on: device types (``"cpu"``, ``"cuda"``) where the kernel runs forward only, no
        backward (torch's FlexAttention on CPU); training there is rejected before the first step.

    Optional attributes of the built callable: ``mask_in_bias`` (it takes the layout mask as -inf entries
    of ``bias``), ``takes_position`` (it also takes ``position=`` ``[B, H, Q, P]``, Transformer-XL's
    un-skewed relative-position term, instead of a dense ``bias``; see ``rmtzoo/_flex.py``).
    """

    name: str
    summary: str
    build: Callable[..., Any]
    available: Callable[[], str | None] = lambda: None
    priority: int = 0
    params: type[Params] = NoParams
    test_params: Mapping[str, Any] = field(default_factory=dict)
    inference_only_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskSpec:
    """A task: data and its loss and metrics. ``build(params)`` returns the task object, whose ``kind``
    says how the trainer runs it: ``"samples"``, ``"stream"`` or ``"classification"``
    (:class:`rmtzoo.tasks.classification.ClassificationTask`).

    needs: names of :class:`BackboneCapabilities` flags the task requires of a backbone (e.g.
    ``("per_sample_mask",)`` for padded classification); checked when a config is validated.
    """

    name: str
    summary: str
    params: type[Params]
    build: Callable[..., Any]
    vocab_size: Callable[[Any], int] | None = None
    test_params: Mapping[str, Any] = field(default_factory=dict)
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class BenchmarkSpec:
    """A benchmark: a grid of configs regenerating one comparison. ``build(params)`` returns it."""

    name: str
    summary: str
    build: Callable[..., Any]
    params: type[Params] = NoParams
    test_params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecurrencePolicy:
    """What a recurrence mode carries between segments; the model reads only this.

    bptt_depth: with memory carried, the number k of past segment transitions a segment's loss
        backpropagates through (None: all of them).
    bptt_rerun: ``exact`` re-runs the last k segments from the memory of k segments ago;
        ``newest_memory`` from the newest memory (the released LM code's behaviour).
    cache_len: length L of the per-layer Transformer-XL cache (0: no cache).
    memory_reads_cache: memory tokens attend to the cache (LM-RMT's ``read_mem_from_cache``).
    carries_associative: the backbone's associative memory is carried (ARMT); BPTT depth bounds the
        gradient through it exactly as through the memory tokens.
    cache_scope: on sample tasks, ``per_sample`` starts every sample with an empty cache;
        ``across_samples`` hands the cache a batch ends with to the next batch's first segments (row by
        row, stop-gradient), as the authors' synthetic training and evaluation-loss passes did. Memory
        still starts from the initial memory for every sample. Streams always carry their state.
    """

    carries_memory: bool
    bptt_depth: int | None = None
    cache_len: int = 0
    memory_reads_cache: bool = False
    carries_associative: bool = False
    cache_scope: str = "per_sample"
    bptt_rerun: str = "exact"
    aux_loss_weight: float = 0.0

    def update_memory(self, previous, written):
        """The memory the next segment reads, from what this segment wrote. RMT: the write output."""
        return written


AXES: dict[str, type] = {
    "backbones": BackboneSpec,
    "memory_placements": PlacementSpec,
    "recurrences": RecurrenceSpec,
    "attention_backends": AttentionSpec,
    "tasks": TaskSpec,
    "benchmarks": BenchmarkSpec,
}


class BackboneOutput(tuple):
    """What ``backbone.forward`` returns: ``hidden [B, S, D]`` and ``layer_inputs`` (one ``[B, S, D]``
    per layer: the states a Transformer-XL cache keeps; an empty tuple for a backbone without a cache).
    ``pooled [B, D]`` (or None) is the backbone's own summary of the sequence (an encoder's [CLS] state
    through its pooler). ``associative`` is the updated per-layer associative memory of a backbone with
    that capability (None otherwise). It still unpacks as ``hidden, layer_inputs``."""

    def __new__(cls, hidden, layer_inputs=(), pooled=None, associative=None):
        out = super().__new__(cls, (hidden, tuple(layer_inputs)))
        out.pooled = pooled
        out.associative = associative
        return out

    def __getnewargs__(self):  # pickling and copying keep ``pooled`` and ``associative``
        return (self[0], self[1], self.pooled, self.associative)

    @property
    def hidden(self):
        return self[0]

    @property
    def layer_inputs(self):
        return self[1]


@dataclass(frozen=True)
class RunInfo:
    """What observer hooks receive about a run: its directory, config and the config's content hash."""

    run_dir: str
    config: Any
    config_hash: str
