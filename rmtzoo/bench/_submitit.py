"""Benchmark grids on a cluster: ``rmtzoo bench run ... --executor slurm`` submits the cells through
``submitit`` (``pip install "rmtzoo[slurm]"``), one SLURM job per cell or per ``--cells-per-job`` cells.

Each job runs :func:`rmtzoo.bench._runner.run_cell`, exactly what a local worker runs: the same result
files, the same run folders, the same resume from a cell's latest checkpoint. So the results folder must
be on storage the nodes share, and a grid whose submitting process was stopped is finished by running
the same command again (cells with a result file are skipped; a cell still running in an old job would
be submitted again, so wait for those first). ``--executor submitit-local`` runs the same jobs through
submitit's local executor (subprocesses of this machine), which is how this path is tested.

Job logs (submitit's pickled job descriptions, stdout and stderr) go to ``RESULTS/submitit/``, written
and read by submitit only.
"""

from __future__ import annotations

from pathlib import Path

from rmtzoo._errors import RmtzooError

EXECUTORS = ("processes", "slurm", "submitit-local")


def run_chunk(jobs, registry_options: dict, threads: int) -> list[dict]:
    """One submitted job: its cells, one after another, in a fresh registry (runs on the node)."""
    from rmtzoo._runtime import set_threads
    from rmtzoo.bench import _runner

    set_threads(threads)
    return [_runner._worker_run(job, registry_options) for job in jobs]


def run_submitit(todo, *, executor: str, results_dir, registry_options: dict, progress, record,
                 cells_per_job: int = 1, partition: str | None = None, time_min: int = 240, gpus: int = 0,
                 cpus: int = 4, mem_gb: int | None = None) -> None:
    """Submit ``todo`` (cells without a result) in chunks and wait; ``record(job, outcome)`` per cell."""
    try:
        import submitit
    except ImportError:
        raise RmtzooError(f"--executor {executor}: needs submitit (pip install submitit)") from None
    if cells_per_job < 1:
        raise RmtzooError(f"--cells-per-job: expected a positive count, got {cells_per_job}")
    folder = Path(results_dir) / "submitit" / "%j"
    cluster = "slurm" if executor == "slurm" else "local"
    try:
        pool = submitit.AutoExecutor(folder=folder, cluster=cluster)
    except Exception as exc:  # e.g. no sbatch on this machine
        raise RmtzooError(f"--executor {executor}: {exc}") from None
    parameters = {"timeout_min": time_min, "cpus_per_task": cpus, "gpus_per_node": gpus, "name": "rmtzoo-bench"}
    if mem_gb is not None:
        parameters["mem_gb"] = mem_gb
    if partition:
        parameters["slurm_partition"] = partition
    pool.update_parameters(**parameters)
    chunks = [todo[i : i + cells_per_job] for i in range(0, len(todo), cells_per_job)]
    try:
        with pool.batch():  # one sbatch array for the whole grid
            futures = [pool.submit(run_chunk, chunk, registry_options, cpus) for chunk in chunks]
    except Exception as exc:  # no sbatch here, a rejected partition or time limit: nothing was submitted
        message = " ".join(str(exc).split())[:300]
        raise RmtzooError(f"--executor {executor}: submitting failed: {type(exc).__name__}: {message}") from None
    for chunk in chunks:
        for job in chunk:
            progress.started(job)
    for chunk, future in zip(chunks, futures, strict=True):
        try:
            outcomes = future.result()
        except Exception as exc:  # the job itself failed (killed, out of time, node lost)
            message = " ".join(str(exc).split())[:300]
            outcomes = [{"status": "failed", "error": f"job {future.job_id}: {type(exc).__name__}: {message}",
                         "seconds": 0.0}] * len(chunk)
        for job, outcome in zip(chunk, outcomes, strict=True):
            record(job, outcome)
