"""Benchmarks as data: a named grid of cells per preset, each cell a config (plain data) plus labels.

A benchmark plugin registers ``rmtzoo.BenchmarkSpec(name=..., build=lambda params: Benchmark(...))``;
the runner expands ``Benchmark.cells(preset)`` times seeds, validates every cell, then trains them.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from rmtzoo import _config
from rmtzoo._errors import ConfigError, RmtzooError

Label = Union[str, int, float]  # noqa: UP007
PRESETS = ("paper", "small", "smoke")


@dataclass(frozen=True)
class Cell:
    """One point of a grid: ``labels`` (what the report groups and plots by, e.g. model and segments)
    and ``config``, an ExperimentConfig as plain data without ``seed`` (the runner sets it)."""

    labels: Mapping[str, Label]
    config: Mapping[str, Any]


@dataclass(frozen=True)
class Benchmark:
    """A comparison to regenerate.

    name: the registered name. artefact: the paper's id for it (``F3a``), used to find reference numbers.
    grids: preset name -> the list of cells, or a callable returning it (built lazily).
    x, line: the labels a figure puts on the x axis and draws one line per value of.
    metric: the test metric reported (a key of the trainer's test metrics).
    ordering: line values expected best-first at every x (the paper's claim), e.g. RMT, Tr-XL, Baseline.
    """

    name: str
    artefact: str
    grids: Mapping[str, Sequence[Cell] | Callable[[], Sequence[Cell]]]
    summary: str = ""
    x: str = "segments"
    line: str = "model"
    metric: str = "test/accuracy"
    ordering: tuple[str, ...] = ()
    notes: Mapping[str, str] = field(default_factory=dict)

    @property
    def presets(self) -> tuple[str, ...]:
        return tuple(self.grids)

    def cells(self, preset: str) -> list[Cell]:
        if preset not in self.grids:
            raise RmtzooError(
                f"benchmark {self.name!r} has no preset {preset!r}; it has: {', '.join(self.grids)}"
            )
        grid = self.grids[preset]
        return list(grid() if callable(grid) else grid)


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """The config's dotted setter, on a copy of ``value`` so grid cells never share mutable parts."""
    try:
        _config.set_dotted(data, key, copy.deepcopy(value))
    except ConfigError as exc:
        raise ConfigError(f"override {key!r}: {exc}") from None


def product(
    base_config: Mapping[str, Any],
    axes: Mapping[str, Sequence[tuple[Label, Mapping[str, Any]]]],
    *,
    where: Callable[[dict[str, Label]], bool] | None = None,
    adjust: Callable[[dict[str, Label], dict[str, Any]], None] | None = None,
) -> list[Cell]:
    """The grid as a product over config axes.

    ``axes`` maps a label name to its values, each ``(label_value, {dotted.key: value, ...})``; a cell's
    config is ``base_config`` with every axis's overrides applied in axis order. ``where(labels)`` drops
    meaningless cells (Tr-XL at 1 segment); ``adjust(labels, config)`` may edit a cell's config in place
    where a value depends on several axes (memory = segment length, but only for a model with memory), and
    may add derived labels to ``labels`` (e.g. ``memory``).
    """
    names = list(axes)
    cells = []
    for combo in itertools.product(*(axes[n] for n in names)):
        labels = {n: value for n, (value, _) in zip(names, combo, strict=True)}
        if where is not None and not where(labels):
            continue
        config = copy.deepcopy(dict(base_config))
        for _, overrides in combo:
            for key, value in overrides.items():
                set_dotted(config, key, value)
        if adjust is not None:
            adjust(labels, config)
        cells.append(Cell(labels=labels, config=config))
    return cells


def parse_filter(expr: str | None) -> dict[str, str]:
    """``"model=RMT,segments=3"`` -> ``{"model": "RMT", "segments": "3"}`` (values compared as text)."""
    if expr is None or not expr.strip():
        return {}
    out = {}
    for part in expr.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise RmtzooError(f"--filter: {part!r} must look like key=value (e.g. model=RMT,segments=3)")
        out[key.strip()] = value.strip()
    return out


def matches(labels: Mapping[str, Label], wanted: Mapping[str, str]) -> bool:
    return all(key in labels and str(labels[key]) == value for key, value in wanted.items())


def parse_shard(expr: str | tuple[int, int] | None) -> tuple[int, int]:
    """``"2/8"`` -> ``(2, 8)``: the 2nd of 8 shards (1-based)."""
    if expr is None:
        return (1, 1)
    if isinstance(expr, tuple):
        i, n = expr
    else:
        i_text, sep, n_text = str(expr).partition("/")
        try:
            i, n = int(i_text), int(n_text)
        except ValueError:
            raise RmtzooError(f"--shard: expected I/N with 1 <= I <= N (e.g. 2/8), got {expr!r}") from None
        if not sep:
            raise RmtzooError(f"--shard: expected I/N with 1 <= I <= N (e.g. 2/8), got {expr!r}")
    if not (n >= 1 and 1 <= i <= n):
        raise RmtzooError(f"--shard: expected I/N with 1 <= I <= N (e.g. 2/8), got {i}/{n}")
    return (i, n)
