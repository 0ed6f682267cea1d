"""The committed ``small`` results stay addressable: options added later must leave the config hash of
every config that does not use them unchanged (default values are left out of the dump), so a re-run
of the ``small`` grid finds its finished cells and a report reads them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import rmtzoo
from rmtzoo.bench import expand

REPORTS = Path(__file__).resolve().parents[1] / "benchmarks" / "reports" / "small"
RESULTS = sorted(p for p in REPORTS.glob("results/*/small/*.json") if not p.name.endswith(".failed.json"))


def _earlier_variant(result: dict) -> bool:
    """fig3c's 4-pair runs: the variant small used before it moved to 2 pairs (reports/small/README.md)."""
    return result["benchmark"] == "fig3c" and result["config"]["task"].get("n_pairs") == 4


def test_there_are_committed_results():
    assert len(RESULTS) > 50


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_a_committed_config_still_hashes_to_its_file_name(path):
    result = json.loads(path.read_text())
    config = rmtzoo.load_config(result["config"])
    assert config.content_hash() == result["hash"] == path.stem
    assert config.model_dump(mode="json") == result["config"]  # nothing new enters the dump at its default


def test_the_small_specs_still_produce_the_committed_hashes():
    registry = rmtzoo.Registry()
    by_bench: dict[str, set[str]] = {}
    seeds: dict[str, int] = {}
    for path in RESULTS:
        result = json.loads(path.read_text())
        if _earlier_variant(result) or result["benchmark"] == "table1":  # table1's metric changed on purpose
            continue
        by_bench.setdefault(result["benchmark"], set()).add(result["hash"])
        seeds[result["benchmark"]] = max(seeds.get(result["benchmark"], 0), result["seed"] + 1)
    assert {"fig3a", "fig3b", "fig3c", "fig6", "fig9"} <= set(by_bench)
    for bench, hashes in by_bench.items():
        produced = {j.hash for j in expand(registry, [bench], preset="small", seeds=seeds[bench], results_dir="unused")}
        assert hashes <= produced, f"{bench}: committed small results no spec cell produces: {sorted(hashes - produced)}"
