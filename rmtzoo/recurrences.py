"""Built-in recurrence modes: what is carried from one segment to the next.

- ``none``: segments are independent (Baseline; Memory Transformer with memory reset per segment).
- ``rmt``: the memory written by a segment is read by the next; with ``bptt_depth`` k, a segment's loss
  backpropagates through exactly its last k memory transitions (truncated BPTT), and through all of them
  when k is unset.
- ``xl``: a per-layer, stop-gradient cache of the last ``cache_len`` layer inputs (Transformer-XL).
- ``rmt_xl``: both (docs/paper-settings.md 1.4); ``memory_reads_cache`` says whether memory tokens attend to the cache.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt

from rmtzoo._components import NoParams, Params, RecurrencePolicy, RecurrenceSpec
from rmtzoo._registry import hookimpl


class RmtParams(Params):
    """bptt_depth: k previous segments a loss backpropagates through (None: all; 0: none).

    bptt_rerun: where the re-run of the last k segments starts. ``exact`` (default): from the memory of
    k segments ago, so the forward values equal those without the re-run (truncated BPTT). ``newest_memory``:
    from the newest memory, as the released LM code did (its reset to the older memory has no effect), so
    the memory a segment reads has passed through its k predecessors twice. Left out of the dumped
    config (and the hash) at its default."""

    bptt_depth: NonNegativeInt | None = None
    bptt_rerun: Literal["exact", "newest_memory"] = Field("exact", exclude_if=lambda v: v == "exact")


class XlParams(Params):
    """cache_len: L, the number of past layer inputs each layer attends to.

    cache_scope (sample tasks): ``per_sample`` (default) gives every sample an empty cache;
    ``across_samples`` carries the cache from one training batch to the next and through the
    evaluation-loss pass, as the authors' synthetic code does, so a sample's first segment attends to the
    previous sample's last states (the accuracy passes still start each batch empty, as theirs did). Left
    out of the dumped config (and the hash) at its default."""

    cache_len: PositiveInt = 150
    cache_scope: Literal["per_sample", "across_samples"] = Field(
        "per_sample", exclude_if=lambda v: v == "per_sample")


class RmtXlParams(RmtParams, XlParams):
    """Both; memory_reads_cache: memory tokens attend to the cache (LM-RMT ``read_mem_from_cache``)."""

    memory_reads_cache: bool = True
    # aux_loss_weight: the paper's auxiliary memory-token loss (A.5; not in the released code): every
    # write-memory output predicts one fixed extra token (a learned output row beside the vocabulary),
    # its cross-entropy times this weight added to the LM training loss (paper: 0.01; 0: off). Which
    # positions predicted the token is unverified. Left out of the dumped config (and the hash) at 0.
    aux_loss_weight: float = Field(0.0, ge=0, exclude_if=lambda v: v == 0)


@hookimpl
def rmtzoo_register_recurrences(register):
    register(
        RecurrenceSpec(
            name="none",
            summary="segments processed independently (Baseline, Memory Transformer)",
            params=NoParams,
            build=lambda p: RecurrencePolicy(carries_memory=False),
            carries_memory=False,
            uses_cache=False,
        )
    )
    register(
        RecurrenceSpec(
            name="rmt",
            summary="RMT memory recurrence with BPTT depth k (all segments when unset)",
            params=RmtParams,
            build=lambda p: RecurrencePolicy(carries_memory=True, bptt_depth=p.bptt_depth, bptt_rerun=p.bptt_rerun),
            carries_memory=True,
            uses_cache=False,
            test_params={"bptt_depth": 1},
        )
    )
    register(
        RecurrenceSpec(
            name="xl",
            summary="Transformer-XL stop-gradient cache of the last L hidden states per layer",
            params=XlParams,
            build=lambda p: RecurrencePolicy(carries_memory=False, cache_len=p.cache_len, cache_scope=p.cache_scope),
            carries_memory=False,
            uses_cache=True,
            test_params={"cache_len": 3},
        )
    )
    register(
        RecurrenceSpec(
            name="rmt_xl",
            summary="RMT memory and a Transformer-XL cache together (Tr-XL + RMT)",
            params=RmtXlParams,
            build=lambda p: RecurrencePolicy(
                carries_memory=True,
                bptt_depth=p.bptt_depth,
                bptt_rerun=p.bptt_rerun,
                cache_len=p.cache_len,
                memory_reads_cache=p.memory_reads_cache,
                cache_scope=p.cache_scope,
                aux_loss_weight=p.aux_loss_weight,
            ),
            carries_memory=True,
            uses_cache=True,
            test_params={"cache_len": 3, "bptt_depth": 1},
        )
    )
