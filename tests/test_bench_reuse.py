"""Results shared across benchmarks (issue 10): a cell whose config hash was trained for one benchmark is
not trained again for another (Fig 5a/5b repeat wt103's cells); the copy records where it came from, and a
folder where every cell has its result trains nothing and says so."""

from __future__ import annotations

import json

import rmtzoo
from rmtzoo.bench import Benchmark, Cell, report, run_benchmark
from rmtzoo.cli import main

CONFIG = {"task": {"kind": "copy", "src_len": 4, "train_size": 64, "valid_size": 16, "test_size": 16},
          "backbone": {"kind": "transformer_xl", "vocab_size": 12, "n_layer": 1, "n_head": 2, "d_model": 16,
                       "d_head": 8, "d_inner": 32},
          "segment": {"length": 4}, "train": {"steps": 2, "batch_size": 8, "log_every": 1},
          "eval": {"every": 2, "batch_size": 16, "max_batches": 1}}
OTHER = {**CONFIG, "segment": {"length": 6}}


class Twins:
    """"first" and "second": one shared config (different labels), plus one cell of "second" alone."""

    def __init__(self):
        self.started: list[str] = []

    @rmtzoo.hookimpl
    def rmtzoo_register_benchmarks(self, register):
        register(rmtzoo.BenchmarkSpec("first", "s", lambda p: Benchmark(
            "first", "F1", {"smoke": [Cell({"model": "RMT", "memory": 0}, CONFIG)]}, figure="table")))
        register(rmtzoo.BenchmarkSpec("second", "s", lambda p: Benchmark(
            "second", "F2", {"smoke": [Cell({"model": "RMT", "x": 4}, CONFIG), Cell({"model": "RMT", "x": 6}, OTHER)]}, figure="table")))

    @rmtzoo.hookimpl
    def rmtzoo_run_started(self, run):
        self.started.append(run.config_hash)


def registry(plugin):
    reg = rmtzoo.Registry(environ={}, entry_points=False)
    reg.add_plugin(plugin, "twins")
    return reg


def results(folder):
    return {p.name: json.loads(p.read_text()) for p in folder.glob("*.json") if not p.name.endswith(".failed.json")}


def test_a_config_trained_for_one_benchmark_is_reused_by_another(tmp_path):
    twins = Twins()
    reg = registry(twins)
    run_benchmark(reg, ["first"], preset="smoke", results_dir=tmp_path)
    assert len(twins.started) == 1
    summary = run_benchmark(reg, ["second"], preset="smoke", results_dir=tmp_path)
    assert len(twins.started) == 2 and summary["reused"] == 1 and summary["done"] == 1  # only OTHER trained
    (trained,) = results(tmp_path / "first" / "smoke").values()
    copied = results(tmp_path / "second" / "smoke")[f"{trained['hash']}.json"]
    assert copied["reused_from"] == {"benchmark": "first", "file": f"first/smoke/{trained['hash']}.json"}
    assert copied["benchmark"] == "second" and copied["artefact"] == "F2" and copied["labels"] == {"model": "RMT", "x": 4}
    assert copied["metrics"] == trained["metrics"] and copied["config"] == trained["config"]
    (path,) = report(reg, ["second"], preset="smoke", results_dir=tmp_path, reports_dir=tmp_path / "out")
    text = path.read_text()
    assert "– (no result)" not in text and "trained once for first and reused here" in text


def test_cells_of_one_run_that_share_a_hash_train_once(tmp_path):
    twins = Twins()
    summary = run_benchmark(registry(twins), ["first", "second"], preset="smoke", results_dir=tmp_path)
    assert sorted(twins.started) == sorted(set(twins.started)) and len(twins.started) == 2
    assert summary["done"] == 2 and summary["reused"] == 1
    assert len(results(tmp_path / "first" / "smoke")) == 1 and len(results(tmp_path / "second" / "smoke")) == 2


def test_a_folder_with_every_result_trains_nothing_and_says_so(tmp_path, capsys, monkeypatch):
    twins = Twins()
    reg = registry(twins)
    run_benchmark(reg, ["first", "second"], preset="smoke", results_dir=tmp_path)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.json")}
    started = len(twins.started)
    monkeypatch.setattr("rmtzoo.cli._registry", lambda args: reg)
    assert main(["bench", "run", "--all", "--preset", "smoke", "--seeds", "1", "--results", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert len(twins.started) == started
    assert "3 cells: 0 run, 3 already done, 0 reused from another benchmark, 0 failed" in captured.out
    assert "nothing was trained: every cell already had a result" in captured.out
    assert "nothing to train" in captured.err
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.json")} == before
