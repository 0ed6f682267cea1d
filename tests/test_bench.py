"""The benchmark runner: grids, validation, resumable result files, sharding, the CLI and reports.

Needs the ``rmtzoo-benchmarks`` distribution (``pip install -e benchmarks``) for the Figure 3 specs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import rmtzoo
from rmtzoo.bench import Benchmark, Cell, expand, product, report, run_benchmark
from rmtzoo.cli import main

pytest.importorskip("rmtzoo_benchmarks", reason="pip install -e benchmarks")

FIG3 = ["fig3a", "fig3b", "fig3c"]
RESULT_KEYS = {"benchmark", "artefact", "preset", "hash", "labels", "seed", "config", "metrics", "versions",
               "hardware", "wall_time_s", "finished_at"}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RMTZOO_CACHE", str(tmp_path_factory.getbasetemp() / "bench-cache"))


def registry(*plugins):
    reg = rmtzoo.Registry(environ={})
    for i, plugin in enumerate(plugins):
        reg.add_plugin(plugin, f"test-plugin-{i}")
    return reg


class Counter:
    """Counts training starts and completions per config hash; optionally interrupts one cell once."""

    def __init__(self, interrupt_cell: int | None = None):
        self.started: list[str] = []
        self.completed: list[str] = []
        self.interrupt_cell = interrupt_cell

    @rmtzoo.hookimpl
    def rmtzoo_run_started(self, run):
        self.started.append(run.config_hash)

    @rmtzoo.hookimpl
    def rmtzoo_metrics_logged(self, run, step, metrics):
        # after the cell's first checkpoint (saved before validation metrics are logged): a Ctrl-C
        if self.interrupt_cell is not None and len(self.started) == self.interrupt_cell and "valid/loss" in metrics:
            self.interrupt_cell = None
            raise KeyboardInterrupt

    @rmtzoo.hookimpl
    def rmtzoo_run_finished(self, run, status, metrics):
        if status == "completed":
            self.completed.append(run.config_hash)


def result_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.json") if not p.name.endswith(".failed.json"))


# -- grids ---------------------------------------------------------------------------------------------
def test_product_where_and_adjust():
    base = {"train": {"lr": 1.0}}
    cells = product(
        base,
        {"model": [("A", {"memory.kind": "none"}), ("B", {"memory.kind": "read_write"})],
         "segments": [(1, {"segment.length": 8}), (2, {"segment.length": 4})]},
        where=lambda labels: labels["model"] == "A" or labels["segments"] != 1,
        adjust=lambda labels, config: labels.update(memory=config["segment"]["length"]),
    )
    assert [c.labels for c in cells] == [
        {"model": "A", "segments": 1, "memory": 8},
        {"model": "A", "segments": 2, "memory": 4},
        {"model": "B", "segments": 2, "memory": 4},
    ]
    assert cells[2].config == {"train": {"lr": 1.0}, "memory": {"kind": "read_write"}, "segment": {"length": 4}}
    assert base == {"train": {"lr": 1.0}}  # the base is never mutated


def test_fig3_grids_match_the_paper():
    reg = registry()
    assert set(FIG3) <= set(reg.names("benchmarks"))
    for name, n_segments in (("fig3a", 4), ("fig3b", 4), ("fig3c", 5)):
        bench = reg.get("benchmarks", name).build(rmtzoo.NoParams())
        assert bench.presets == ("paper", "small", "smoke")
        cells = bench.cells("paper")
        assert len(cells) == n_segments + 3 * (n_segments - 1)  # MemTr, Tr-XL and RMT start at 2+ segments
        for cell in cells:
            labels, config = cell.labels, cell.config
            assert config["segment"]["length"] == labels["segment_length"]
            assert config["train"]["lr"] == 1e-4 and config["train"]["batch_size"] == 32
            assert config["eval"]["max_batches"] == 50 and "seed" not in config
            if labels["model"] == "RMT":
                assert config["memory"] == {"kind": "read_write", "num_tokens": labels["segment_length"],
                                             "init": "single_vector"}  # the authors' code
                assert config["recurrence"] == {"kind": "rmt"}
            elif labels["model"] == "MemTr":
                assert config["memory"] == {"kind": "shared", "num_tokens": labels["segment_length"],
                                             "init": "single_vector"}  # the authors' code
                assert config["recurrence"] == {"kind": "rmt"}
            elif labels["model"] == "Tr-XL":
                assert config["recurrence"] == {"kind": "xl", "cache_len": labels["segment_length"],
                                                "cache_scope": "across_samples"}  # the authors' code
    fig3b = reg.get("benchmarks", "fig3b").build(rmtzoo.NoParams()).cells("paper")
    steps = {c.labels["segments"]: c.config["train"]["steps"] for c in fig3b if c.labels["model"] != "MemTr"}
    assert steps == {1: 250_000, 2: 400_000, 4: 850_000, 6: 700_000}
    memtr = {c.labels["segments"]: (c.config["train"]["steps"], c.config["train"]["plateau_patience"])
             for c in fig3b if c.labels["model"] == "MemTr"}
    assert memtr == {2: (400_000, 10), 4: (900_000, 10), 6: (900_000, 10)}  # its CSV runs (mem_at_end off)


@pytest.mark.parametrize("preset", ["paper", "small", "smoke"])
def test_every_cell_of_every_benchmark_validates(preset, tmp_path):
    reg = registry()
    for name in reg.names("benchmarks"):
        jobs = expand(reg, [name], preset=preset, seeds=2, results_dir=tmp_path)
        assert len({j.hash for j in jobs}) == len(jobs) > 0  # seeds give distinct cells


def test_a_bad_cell_fails_before_anything_runs(tmp_path):
    class Bad:
        @rmtzoo.hookimpl
        def rmtzoo_register_benchmarks(self, register):
            good = {"task": {"kind": "copy", "src_len": 4, "train_size": 64, "valid_size": 16, "test_size": 16}, "backbone": {"kind": "transformer_xl", "vocab_size": 12},
                    "segment": {"length": 4}}
            bad = {**good, "segment": {"length": 5}}  # 12-token samples: 5 does not tile them
            register(rmtzoo.BenchmarkSpec("badgrid", "s", lambda p: Benchmark(
                "badgrid", "X", {"smoke": [Cell({"model": "ok"}, good), Cell({"model": "broken"}, bad)]})))

    with pytest.raises(rmtzoo.ConfigError, match=r"benchmark 'badgrid' preset 'smoke' cell \[model=broken\]: segment.length"):
        run_benchmark(registry(Bad()), ["badgrid"], preset="smoke", results_dir=tmp_path)
    assert not any(tmp_path.iterdir())


# -- running, resuming ---------------------------------------------------------------------------------
def test_run_writes_one_result_per_cell_and_a_rerun_skips_them(tmp_path, capsys):
    args = ["bench", "run", "fig3a", "--preset", "smoke", "--filter", "segments=3", "--seeds", "1",
            "--results", str(tmp_path)]
    assert main(args) == 0
    folder = tmp_path / "fig3a" / "smoke"
    files = result_files(folder)
    assert len(files) == 4  # Baseline, MemTr, Tr-XL, RMT at 3 segments
    models = set()
    for path in files:
        record = json.loads(path.read_text())
        assert set(record) >= RESULT_KEYS
        assert path.stem == record["hash"] == rmtzoo.load_config(record["config"]).content_hash()
        assert record["labels"]["segments"] == 3 and record["seed"] == 0
        assert 0.0 <= record["metrics"]["test/accuracy"] <= 1.0
        assert set(record["versions"]) == {"rmtzoo", "torch", "python"}
        assert {"platform", "cpu", "cpu_capability", "gpu"} <= set(record["hardware"])
        assert (folder / "runs" / record["hash"] / "checkpoints").is_dir()
        models.add(record["labels"]["model"])
    assert models == {"Baseline", "MemTr", "Tr-XL", "RMT"}
    err = capsys.readouterr().err
    assert "done 4" in err and "ETA" in err

    mtimes = {p: p.stat().st_mtime_ns for p in files}
    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in result_files(folder)} == mtimes
    out = capsys.readouterr().out
    assert "4 cells: 0 run, 4 already done, 0 reused from another benchmark, 0 failed" in out
    assert "nothing was trained: every cell already had a result" in out


def test_an_interrupted_grid_resumes_with_nothing_lost_or_repeated(tmp_path):
    """The issue's kill test: Ctrl-C inside the 2nd cell, then a re-run finishes the grid."""
    first = Counter(interrupt_cell=2)
    kwargs = dict(preset="smoke", filter_expr="segments=3", seeds=1, results_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(registry(first), ["fig3a"], **kwargs)
    folder = tmp_path / "fig3a" / "smoke"
    assert len(result_files(folder)) == 1 and len(first.started) == 2 and len(first.completed) == 1
    interrupted = first.started[1]
    assert not (folder / f"{interrupted}.json").exists()
    assert (folder / "runs" / interrupted / "checkpoints" / "latest.json").exists()

    second = Counter()
    summary = run_benchmark(registry(second), ["fig3a"], **kwargs)
    assert summary["skipped"] == 1 and summary["done"] == 3 and summary["failed"] == 0
    # the interrupted cell resumed from its checkpoint (no new start), the two unstarted ones started once
    assert interrupted not in second.started and len(second.started) == 2
    assert sorted(first.started + second.started) == sorted({*first.started, *second.started})
    assert sorted(first.completed + second.completed) == sorted(j.hash for j in expand(registry(), ["fig3a"], **kwargs))
    files = result_files(folder)
    assert len(files) == 4
    for path in files:
        json.loads(path.read_text())  # whole JSON
    leftovers = [p for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".tmp" or p.name.endswith(".failed.json")]
    assert leftovers == []


def test_a_failing_cell_is_recorded_and_the_grid_goes_on(tmp_path):
    class Boom:
        calls = 0

        @rmtzoo.hookimpl
        def rmtzoo_run_started(self, run):
            Boom.calls += 1
            if Boom.calls == 1:
                raise RuntimeError("boom")

    summary = run_benchmark(registry(Boom()), ["fig3a"], preset="smoke", filter_expr="segments=3",
                            results_dir=tmp_path)
    assert summary["failed"] == 1 and summary["done"] == 3
    folder = tmp_path / "fig3a" / "smoke"
    (failed,) = folder.glob("*.failed.json")
    assert "boom" in json.loads(failed.read_text())["error"]
    assert not (folder / failed.name.replace(".failed", "")).exists()


def test_workers_run_cells_in_parallel_processes(tmp_path):
    summary = run_benchmark(registry(), ["fig3a"], preset="smoke", filter_expr="segments=3", workers=2,
                            results_dir=tmp_path, registry_options={"environ": {}})
    assert summary["done"] == 4 and summary["failed"] == 0
    assert len(result_files(tmp_path / "fig3a" / "smoke")) == 4


def test_shards_partition_the_cells(tmp_path):
    reg = registry()
    every = {j.hash for j in expand(reg, FIG3, preset="smoke", seeds=2, results_dir=tmp_path)}
    halves = [{j.hash for j in expand(reg, FIG3, preset="smoke", seeds=2, shard=s, results_dir=tmp_path)}
              for s in ("1/2", "2/2")]
    assert halves[0] | halves[1] == every and not halves[0] & halves[1]
    assert abs(len(halves[0]) - len(halves[1])) <= 1
    thirds = [{j.hash for j in expand(reg, FIG3, preset="smoke", shard=(i, 3), results_dir=tmp_path)} for i in (1, 2, 3)]
    assert sum(map(len, thirds)) == len(set().union(*thirds))


# -- the CLI -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["run", "fig3a", "--filter", "segments"], "--filter: 'segments' must look like key=value"),
    (["run", "fig3a", "--filter", "colour=red"], "--filter: unknown label 'colour'"),
    (["run", "fig3a", "--filter", "segments=7"], "matches no cell"),
    (["run", "fig9z"], "unknown benchmark 'fig9z'"),
    (["run", "fig3a", "--shard", "3/2"], "--shard: expected I/N"),
    (["run", "fig3a", "--shard", "x"], "--shard: expected I/N"),
    (["run", "fig3a", "--preset", "huge"], "has no preset 'huge'"),
    (["run"], "name at least one benchmark"),
    (["report", "nope"], "unknown benchmark 'nope'"),
])
def test_user_errors_exit_2_with_one_line(args, message, tmp_path, capsys):
    assert main(["bench", *args, "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_list(capsys):
    assert main(["bench", "list"]) == 0
    out = capsys.readouterr().out
    for name in FIG3:
        assert name in out
    assert "paper 13, small 13, smoke 13" in out


# -- reports -------------------------------------------------------------------------------------------
def test_report_with_paper_numbers(tmp_path):
    reg = registry()
    run_benchmark(reg, ["fig3a"], preset="smoke", filter_expr="segments=3", seeds=2, results_dir=tmp_path / "r")
    csv = tmp_path / "paper_numbers.csv"
    csv.write_text("artefact,model,segments,segment_length,memory,bptt,metric,mean,std,n_runs\n"
                   "F3a,Baseline,3,24,0,,accuracy,0.118,0.003,3\n"
                   "F3a,Transformer-XL,3,24,24,,accuracy,0.9997,0.0006,3\n"
                   "F3a,RMT,3,24,24,,accuracy,1.0,,3\n")
    (path,) = report(reg, ["fig3a"], preset="smoke", results_dir=tmp_path / "r", reports_dir=tmp_path / "out",
                     reference=csv, command="rmtzoo bench report fig3a")
    assert path == tmp_path / "out" / "smoke" / "fig3a.md"
    text = path.read_text()
    assert "| model | segments | segment_length | memory | regenerated | paper | delta |" in text
    assert "0.118 ± 0.003 (3)" in text and "1.000 ± 0.001 (3)" in text  # Tr-XL matched as Transformer-XL
    rmt = next(line for line in text.splitlines() if line.startswith("| RMT | 3 |"))
    assert rmt.count("(2)") == 1  # two seeds regenerated
    assert "segments 3: RMT" in text and "rmtzoo bench report fig3a" in text and "torch" in text
    assert "| Baseline | 1 | 72 | 0 | – (no result) | – | – |" in text
    if (tmp_path / "out" / "smoke" / "fig3a.png").exists():
        assert "![F3a](fig3a.png)" in text
    else:
        assert "figure skipped" in text

    (path,) = report(reg, ["fig3a"], preset="smoke", results_dir=tmp_path / "r", reports_dir=tmp_path / "out2",
                     reference=tmp_path / "missing.csv")
    assert "| paper |" not in path.read_text() and "no reference table found" in path.read_text()


KILLER_PLUGIN = '''
import os, signal
from pathlib import Path
import rmtzoo

LOG = Path(os.environ["BENCH_TEST_LOG"])

def _log(line):
    with open(LOG, "a") as fh:
        fh.write(line + "\\n")

@rmtzoo.hookimpl
def rmtzoo_run_started(run):
    _log("started " + run.config_hash)

@rmtzoo.hookimpl
def rmtzoo_metrics_logged(run, step, metrics):
    starts = [l for l in LOG.read_text().splitlines() if l.startswith("started")]
    if os.environ.get("BENCH_TEST_KILL") and len(starts) == 2 and "valid/loss" in metrics:
        os.kill(os.getpid(), signal.SIGKILL)  # a hard kill in the middle of the 2nd cell

@rmtzoo.hookimpl
def rmtzoo_run_finished(run, status, metrics):
    _log(status + " " + run.config_hash)
'''


def test_a_killed_process_resumes(tmp_path):
    """SIGKILL (no cleanup at all) inside the 2nd cell, then a re-run in a new process."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "killer.py").write_text(KILLER_PLUGIN)
    log = tmp_path / "events.log"
    env = {**os.environ, "BENCH_TEST_LOG": str(log), "RMTZOO_PLUGINS_DIR": str(tmp_path / "plugins")}
    cmd = [sys.executable, "-m", "rmtzoo", "bench", "run", "fig3a", "--preset", "smoke", "--filter", "segments=3",
           "--results", str(tmp_path / "r")]
    killed = subprocess.run(cmd, env={**env, "BENCH_TEST_KILL": "1"}, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    folder = tmp_path / "r" / "fig3a" / "smoke"
    assert len(result_files(folder)) == 1
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    events = log.read_text().split()
    pairs = list(zip(events[::2], events[1::2], strict=True))
    started = [h for e, h in pairs if e == "started"]
    completed = [h for e, h in pairs if e == "completed"]
    assert len(started) == len(set(started)) == 4  # the killed cell resumed from its checkpoint
    assert sorted(completed) == sorted(set(completed)) and len(completed) == 4
    assert sorted(p.stem for p in result_files(folder)) == sorted(completed)
    assert [p for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".failed.json")] == []


SLEEPER_PLUGIN = '''
import os, time
from pathlib import Path
import rmtzoo

@rmtzoo.hookimpl
def rmtzoo_run_started(run):
    Path(os.environ["BENCH_TEST_PIDS"], str(os.getpid())).write_text("")
    time.sleep(60)
'''


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux-only")
def test_killing_a_grid_leaves_no_worker_training(tmp_path):
    """An orphaned worker would go on training its cell while a re-run trains the same cell again."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "sleeper.py").write_text(SLEEPER_PLUGIN)
    pids = tmp_path / "pids"
    pids.mkdir()
    env = {**os.environ, "BENCH_TEST_PIDS": str(pids), "RMTZOO_PLUGINS_DIR": str(tmp_path / "plugins")}
    cmd = [sys.executable, "-m", "rmtzoo", "bench", "run", "fig3a", "--preset", "smoke", "--filter", "segments=3",
           "--workers", "2", "--results", str(tmp_path / "r")]
    grid = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = [int(p.name) for p in pids.iterdir()]
        assert len(workers) == 2
    finally:
        grid.kill()
        grid.wait()
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_a_cell_whose_run_was_already_finished_keeps_its_training_time(tmp_path):
    """A result file rewritten for a finished run folder (a second grid on the same folder, or a result
    removed to be written again) used to record the moments it took to find the run finished (0.04 s)."""
    kwargs = dict(preset="smoke", filter_expr="model=RMT,segments=3", results_dir=tmp_path)
    run_benchmark(registry(), ["fig3a"], **kwargs)
    (path,) = result_files(tmp_path / "fig3a" / "smoke")
    first = json.loads(path.read_text())
    log = path.parent / "runs" / first["hash"] / "metrics.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records[0]["event"] == "started"
    records[0]["time"] -= 100.0  # as if the training had taken 100 s more than this smoke cell's
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    path.unlink()
    run_benchmark(registry(), ["fig3a"], **kwargs)  # nothing to train: the run folder is finished
    again = json.loads(path.read_text())
    assert again["metrics"] == first["metrics"]
    assert again["wall_time_s"] >= 100.0, again["wall_time_s"]
