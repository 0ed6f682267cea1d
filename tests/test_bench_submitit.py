"""``rmtzoo bench run --executor slurm`` through submitit ("Grids beyond one machine", issue 12), tested
with submitit's local executor: the same result files as a local run, and resume."""

from __future__ import annotations

import json
import shutil

import pytest

import rmtzoo
from rmtzoo.bench import run_benchmark
from rmtzoo.cli import main

pytest.importorskip("rmtzoo_benchmarks", reason="pip install -e benchmarks")
pytest.importorskip("submitit")

GRID = dict(preset="smoke", filter_expr="segments=3", seeds=1)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RMTZOO_CACHE", str(tmp_path_factory.getbasetemp() / "bench-cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def job_folders(results_dir):
    return [p for p in (results_dir / "submitit").iterdir() if p.name.isdigit()]  # one per job, named by its id


def results(folder):
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json")) if not p.name.endswith(".failed.json")}


def test_submitit_jobs_write_the_same_results_and_resume(tmp_path):
    registry = rmtzoo.Registry(environ={})
    summary = run_benchmark(registry, ["fig3a"], **GRID, results_dir=tmp_path / "sub", executor="submitit-local",
                            registry_options={"environ": {}}, submitit_options={"cells_per_job": 3, "cpus": 1})
    assert summary["done"] == 4 and summary["failed"] == 0, summary["failures"]
    assert len(job_folders(tmp_path / "sub")) == 2  # 4 cells, 3 per job: 2 jobs
    submitted = results(tmp_path / "sub" / "fig3a" / "smoke")
    assert len(submitted) == 4

    local = run_benchmark(registry, ["fig3a"], **GRID, results_dir=tmp_path / "local")
    assert local["done"] == 4
    for name, record in results(tmp_path / "local" / "fig3a" / "smoke").items():
        assert submitted[name]["config"] == record["config"]
        assert submitted[name]["metrics"] == record["metrics"]  # the same training, bit for bit

    # resume: a lost result is the only cell submitted again
    lost = sorted(submitted)[0]
    (tmp_path / "sub" / "fig3a" / "smoke" / lost).unlink()
    shutil.rmtree(tmp_path / "sub" / "submitit")
    again = run_benchmark(registry, ["fig3a"], **GRID, results_dir=tmp_path / "sub", executor="submitit-local",
                          registry_options={"environ": {}}, submitit_options={"cpus": 1})
    assert again["skipped"] == 3 and again["done"] == 1
    assert len(job_folders(tmp_path / "sub")) == 1


def test_slurm_without_a_cluster_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch anywhere
    rc = main(["bench", "run", "fig3a", "--filter", "segments=3", "--executor", "slurm",
               "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1 and "--executor slurm" in err, err
    assert not list((tmp_path / "r").rglob("*.json"))
