"""Benchmarks as data: a named grid of cells per preset, each cell a config (plain data) plus labels.

A benchmark plugin registers ``rmtzoo.BenchmarkSpec(name=..., build=lambda params: Benchmark(...))``;
the runner expands ``Benchmark.cells(preset)`` times seeds, validates every cell, then trains them.
"""

from __future__ import annotations

import copy
import functools
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
class Claim:
    """A claim of the paper's text about a few cells, checked in the report against the regenerated
    numbers and the paper's. ``cells``: label selectors (``{"model": "RMT", "memory": 10}``, values
    compared as text), best first; ``within``: unset, the claim is that order (better or equal); set, the
    claim is that the cells' values agree to that relative difference (``0.02``: 2%)."""

    text: str
    cells: tuple[Mapping[str, Label], ...]
    within: float | None = None
    headline: str = ""  # the paper's claim this one checks, as ``rmtzoo bench summary`` groups them


FIGURES = ("lines", "bars", "table")
LOWER_IS_BETTER = ("ppl", "bpc", "loss")


@dataclass(frozen=True)
class Benchmark:
    """A comparison to regenerate.

    name: the registered name. artefact: the paper's id for it (``F3a``), used to find reference numbers.
    grids: preset name -> the list of cells, or a callable returning it (built lazily).
    x, line: the labels a figure puts on the x axis and draws one line per value of.
    metric: the test metric reported (a key of the trainer's test metrics).
    ordering: line values expected best-first at every x (the paper's claim), e.g. RMT, Tr-XL, Baseline.
    figure: how the paper shows the artefact: ``lines`` (metric vs x, one line per ``line`` value),
        ``bars`` (bars grouped by x, one bar per ``line`` value) or ``table`` (no figure; x unused).
    x_label: the figure's x axis title (default: "number of segments" for ``segments``, else x).
    match: the label keys a cell's reference row must agree on (besides artefact and model), as columns
        of ``paper_numbers.csv``; a label the cell lacks must be empty in the row.
    metrics: per-preset override of ``metric`` (a ``small`` preset on another corpus reports ppl, say).
    claims: the paper's claims about particular cells (:class:`Claim`), checked in the report.
    analyze: for a benchmark whose result is a figure of the trained model (attention maps), called by the
        runner after a cell trains: ``analyze(model, task, *, labels, path) -> dict`` with the best
        checkpoint's model in eval mode; it may write files atomically named ``<path>.<suffix>`` (beside
        the result file) and returns small JSON data, stored as the result's ``analysis``.
    draw: ``draw(rows, *, out_dir, results_folder) -> str``: the report's figures from the stored
        analyses (rows as the table has them), written under ``out_dir``; the markdown it returns
        replaces the line plot.
    paper_scale: the paper's numbers are this many times the metric (100: the paper prints F1 in percent
        and the trainer reports a fraction); the report divides them by it, so it compares like with like.
    headline: the paper's claim (in its own words) that ``ordering`` checks; ``rmtzoo bench summary`` gives
        it a row (``Claim.headline`` does the same for a claim).
    chance: the metric of a model that guesses (0.1 for per-character accuracy over 10 symbols), drawn as a
        line in the figure; a number, or preset name -> number where a preset's task has another vocabulary.
    """

    name: str
    artefact: str
    grids: Mapping[str, Sequence[Cell] | Callable[[], Sequence[Cell]]]
    summary: str = ""
    x: str = "segments"
    line: str = "model"
    metric: str = "test/accuracy"
    ordering: tuple[str, ...] = ()
    figure: str = "lines"
    x_label: str = ""
    match: tuple[str, ...] = ("segments",)
    metrics: Mapping[str, str] = field(default_factory=dict)
    claims: tuple[Claim, ...] = ()
    notes: Mapping[str, str] = field(default_factory=dict)
    analyze: Callable[..., dict] | None = None
    draw: Callable[..., str] | None = None
    paper_scale: float = 1.0
    chance: float | Mapping[str, float] | None = None
    headline: str = ""  # the paper's claim ``ordering`` checks, as ``rmtzoo bench summary`` groups them

    def __post_init__(self) -> None:
        if self.figure not in FIGURES:
            raise RmtzooError(f"benchmark {self.name!r}: figure {self.figure!r} is not one of {', '.join(FIGURES)}")

    @property
    def presets(self) -> tuple[str, ...]:
        return tuple(self.grids)

    def chance_for(self, preset: str) -> float | None:
        """The chance level of the ``preset``'s metric, or None where there is none (perplexity)."""
        if isinstance(self.chance, Mapping):
            return self.chance.get(preset)
        return self.chance

    def metric_for(self, preset: str) -> str:
        """The test metric key the ``preset``'s cells report."""
        return self.metrics.get(preset, self.metric)

    @property
    def higher_is_better(self) -> bool:
        return self.metric.split("/")[-1] not in LOWER_IS_BETTER

    def cells(self, preset: str) -> list[Cell]:
        if preset not in self.grids:
            raise RmtzooError(
                f"benchmark {self.name!r} has no preset {preset!r}; it has: {', '.join(self.grids)}"
            )
        grid = self.grids[preset]
        return list(grid() if callable(grid) else grid)


def per_preset(
    cells: Callable[[str], Sequence[Cell]], presets: Sequence[str] = PRESETS
) -> dict[str, Callable[[], Sequence[Cell]]]:
    """``Benchmark.grids`` from one function of the preset name: each grid is built lazily, when asked for."""
    return {preset: functools.partial(cells, preset) for preset in presets}


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
