"""Benchmark grids: specs as data (:class:`Benchmark`, :class:`Cell`, :func:`product`), a resumable,
shardable runner (:func:`run_benchmark`) and reports against the paper's numbers (:func:`report`)."""

from rmtzoo.bench._grid import (
    PRESETS,
    Benchmark,
    Cell,
    Claim,
    parse_filter,
    parse_shard,
    per_preset,
    product,
    set_dotted,
)
from rmtzoo.bench._report import report
from rmtzoo.bench._runner import Job, expand, resolve_names, run_benchmark, run_cell

__all__ = [
    "PRESETS",
    "Benchmark",
    "Cell",
    "Claim",
    "Job",
    "expand",
    "parse_filter",
    "parse_shard",
    "per_preset",
    "product",
    "report",
    "resolve_names",
    "run_benchmark",
    "run_cell",
    "set_dotted",
]
