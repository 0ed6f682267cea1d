"""Run benchmark grids: every cell x seed validated first, then trained, one result file per cell.

Layout under ``results_dir``::

    <bench>/<preset>/<hash>.json          a finished cell: config, labels, seed, test metrics, versions,
                                          hardware, wall time (written atomically: temp file + rename)
    <bench>/<preset>/<hash>.failed.json   a cell that raised: the error (not a result; retried on re-run)
    <bench>/<preset>/runs/<hash>/         the cell's run folder (checkpoints, metrics.jsonl, train.log)
    <bench>/<preset>/<hash>.<suffix>      files a benchmark's ``analyze`` wrote (attention maps), before the result

``<hash>`` is ``config.content_hash()`` of the cell's config with its seed. A re-run skips every cell whose
result file exists and resumes a killed cell from its run folder's latest checkpoint, so an interrupted
grid finishes with nothing lost, repeated or half-written.

Results are shared across benchmarks: a cell whose hash already has a result under another benchmark of
the same preset (``fig5a`` repeats ``wt103``'s segment-50 configs) is not trained again; its result file is
copied with this benchmark's name and labels and a ``reused_from`` record (benchmark and file). Cells of
one run that share a hash train once.

Sharding splits the cells deterministically: the cells sorted by hash, shard ``I/N`` takes the I-th of every
N. A SLURM job array runs a grid as N independent jobs writing to one shared results folder::

    #!/bin/bash
    #SBATCH --array=1-8
    #SBATCH --gres=gpu:1
    rmtzoo bench run fig3a --preset paper --seeds 3 --shard ${SLURM_ARRAY_TASK_ID}/8 --results /shared/results

and ``rmtzoo bench report fig3a --preset paper --results /shared/results`` once they are done. Or let
rmtzoo submit the cells itself through submitit (``rmtzoo.bench._submitit``), one job per cell::

    rmtzoo bench run fig3a --preset paper --seeds 3 --executor slurm --slurm-partition gpu --slurm-gpus 1 \
        --slurm-time 600 --results /shared/results
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rmtzoo._errors import ConfigError, RmtzooError
from rmtzoo._io import atomic_write_text
from rmtzoo.bench._grid import matches, parse_filter, parse_shard


@dataclass(frozen=True)
class Job:
    """One cell at one seed, ready to run (plain, picklable data)."""

    bench: str
    artefact: str
    preset: str
    labels: dict
    seed: int
    config: dict  # the validated config, as JSON data, seed included
    hash: str
    folder: str  # results_dir/<bench>/<preset>

    @property
    def result_path(self) -> Path:
        return Path(self.folder) / f"{self.hash}.json"

    @property
    def failed_path(self) -> Path:
        return Path(self.folder) / f"{self.hash}.failed.json"

    analyze_free: bool = True  # the benchmark has no ``analyze`` (whose files a copied result would lack)

    @property
    def run_dir(self) -> Path:
        return Path(self.folder) / "runs" / self.hash

    def describe(self) -> str:
        labels = " ".join(f"{k}={v}" for k, v in self.labels.items())
        return f"{self.bench} {labels} seed={self.seed}"


def get_benchmark(registry, name: str, *, backbone: str | None = None):
    """The registered benchmark; with ``backbone``, every cell's backbone block swapped for that backbone
    (see :func:`swap_backbone`)."""
    spec = registry.get("benchmarks", name)
    bench = spec.build(spec.params())
    if backbone is None:
        return bench
    new = registry.get("backbones", backbone)  # an unknown name lists the registered ones
    return dataclasses.replace(bench, grids={
        preset: (lambda preset=preset: [swap_backbone(c, new) for c in bench.cells(preset)]) for preset in bench.grids
    })


def swap_backbone(cell, spec):
    """``cell`` with ``backbone.kind = spec.name``, keeping the old block's values of the fields the new
    backbone's params also have (``vocab_size``, ``d_model``, ``n_layer``, ...) and its defaults for the rest."""
    old = dict(cell.config.get("backbone") or {})
    fields = spec.params.model_fields
    block = {"kind": spec.name, **{k: v for k, v in old.items() if k != "kind" and k in fields}}
    return dataclasses.replace(cell, config={**cell.config, "backbone": block})


def resolve_names(registry, names, all_: bool = False) -> list[str]:
    available = registry.names("benchmarks")
    if all_:
        if not available:
            raise RmtzooError("no benchmark is registered (install the rmtzoo-benchmarks distribution: pip install -e benchmarks)")
        return available
    if not names:
        raise RmtzooError("name at least one benchmark, or pass --all (rmtzoo bench list shows them)")
    for name in names:
        registry.get("benchmarks", name)  # an unknown name lists the closest ones
    return list(dict.fromkeys(names))


def expand(registry, names, *, preset: str, seeds: int = 1, filter_expr: str | None = None,
           shard=None, results_dir="results", backbone: str | None = None) -> list[Job]:
    """Every selected cell x seed, each validated (all of them, before anything runs)."""
    from rmtzoo._config import load_config

    if seeds < 1:
        raise RmtzooError(f"--seeds: expected a positive count, got {seeds}")
    wanted = parse_filter(filter_expr)
    shard_i, shard_n = parse_shard(shard)
    jobs: list[Job] = []
    seen_keys: set[str] = set()
    for name in names:
        bench = get_benchmark(registry, name, backbone=backbone)
        cells = bench.cells(preset)
        for cell in cells:
            seen_keys.update(cell.labels)
            for seed in range(seeds):
                data = {**json.loads(json.dumps(dict(cell.config))), "seed": seed}
                try:
                    config = load_config(data, registry=registry)
                    _check_segments(config, registry)
                except RmtzooError as exc:
                    labels = ", ".join(f"{k}={v}" for k, v in cell.labels.items())
                    raise ConfigError(f"benchmark {name!r} preset {preset!r} cell [{labels}]: {exc}") from None
                if not matches(cell.labels, wanted):
                    continue
                folder = Path(results_dir) / name / preset
                jobs.append(Job(name, bench.artefact, preset, dict(cell.labels), seed,
                                config.model_dump(mode="json"), config.content_hash(), str(folder),
                                analyze_free=getattr(bench, "analyze", None) is None))
    unknown = [k for k in wanted if k not in seen_keys]
    if unknown:
        raise RmtzooError(f"--filter: unknown label {unknown[0]!r}; the cells have labels: {', '.join(sorted(seen_keys))}")
    if wanted and not jobs:
        raise RmtzooError(f"--filter {filter_expr!r} matches no cell of preset {preset!r}")
    jobs.sort(key=lambda j: (j.hash, j.bench))
    return [j for k, j in enumerate(jobs) if k % shard_n == shard_i - 1]


def _check_segments(config, registry) -> None:
    """The segment length must cut the task's samples (checked without generating any data)."""
    from rmtzoo.train import build_task

    if config.task is None:
        raise ConfigError("task: a benchmark cell needs a task block")
    task = build_task(config, registry)
    if getattr(task, "kind", None) != "samples":
        return
    try:
        task.segment_length_for(config.segment.length)
    except ValueError as exc:
        raise ConfigError(f"segment.length: {exc}") from None


# -- environment ---------------------------------------------------------------------------------------
def versions() -> dict[str, str]:
    import torch

    from rmtzoo._registry import _own_version

    return {"rmtzoo": _own_version(), "torch": torch.__version__, "python": platform.python_version()}


def hardware() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    # the CPU kernels torch dispatches to (e.g. AVX2, AVX512): results can differ in the last bits
    # between them, and a run on the edge of a training plateau can then go either way
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)()
    return {"platform": platform.platform(), "cpu": cpu, "cpu_capability": capability, "cpu_count": os.cpu_count(),
            "gpu": gpu}


# -- running one cell ----------------------------------------------------------------------------------
def run_cell(job: Job, registry) -> dict:
    """Train one cell in its run folder (resuming), write its result file atomically; returns a status dict.
    A failure is written to ``<hash>.failed.json``; KeyboardInterrupt propagates with nothing written."""
    from rmtzoo._config import load_config
    from rmtzoo.train import train

    started = time.perf_counter()
    job.run_dir.mkdir(parents=True, exist_ok=True)
    try:
        config = load_config(job.config, registry=registry)
        with open(job.run_dir / "train.log", "a", encoding="utf-8") as log, \
                contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            metrics = train(config, job.run_dir, registry=registry, resume=True)
            analysis = _analyze(job, config, registry)
    except Exception as exc:  # a failing cell is recorded and the grid goes on
        record = {"benchmark": job.bench, "preset": job.preset, "hash": job.hash, "labels": job.labels,
                  "seed": job.seed, "error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc(limit=8), "wall_time_s": time.perf_counter() - started}
        atomic_write_text(job.failed_path, json.dumps(record, indent=2) + "\n")
        return {"status": "failed", "error": record["error"], "seconds": record["wall_time_s"]}
    wall = time.perf_counter() - started
    if job.result_path.exists():  # another process (a second grid on this folder) finished it meanwhile
        job.failed_path.unlink(missing_ok=True)
        return {"status": "done", "seconds": wall}
    trained = _training_seconds(job.run_dir)
    if trained is not None and trained > wall:  # the run folder was finished before this call: its time
        wall = trained
    record = {
        "benchmark": job.bench, "artefact": job.artefact, "preset": job.preset, "hash": job.hash,
        "labels": job.labels, "seed": job.seed, "config": job.config,
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))},
        "versions": versions(), "hardware": hardware(), "wall_time_s": round(wall, 3),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if analysis is not None:
        record["analysis"] = analysis
    atomic_write_text(job.result_path, json.dumps(record, indent=2) + "\n")
    job.failed_path.unlink(missing_ok=True)
    return {"status": "done", "seconds": wall}


def _training_seconds(run_dir: Path) -> float | None:
    """Seconds the run folder's training took, summed over its sessions (each ``started`` event to the last
    record before the next one), from its ``metrics.jsonl``; None where it has no such log. A cell whose
    run folder was already finished (by another grid, or before its result file was removed) records this
    rather than the moments it took to find the run finished."""
    path = Path(run_dir) / "metrics.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    total, start, last = 0.0, None, None
    for line in lines:
        try:
            rec = json.loads(line)
            t = float(rec["time"])
        except (ValueError, KeyError, TypeError):
            continue
        if rec.get("event") == "started":
            if start is not None and last is not None:
                total += last - start
            start = t
        last = t
    if start is None or last is None:
        return None
    return total + (last - start)


def _analyze(job: Job, config, registry) -> dict | None:
    """The benchmark's ``analyze`` on the cell's trained model (best checkpoint, else latest), or None
    when the benchmark has none. Its files are written before the result file, so a result implies them."""
    analyze = getattr(get_benchmark(registry, job.bench), "analyze", None)
    if analyze is None:
        return None
    from rmtzoo.train import build_task, find_checkpoint, load_checkpoint, prepare_model

    task = build_task(config, registry)
    model = prepare_model(config, task, registry)
    folder = find_checkpoint(job.run_dir, which="best") or find_checkpoint(job.run_dir)
    if folder is not None:
        load_checkpoint(folder, model)
    model.eval()
    analysis = analyze(model, task, labels=dict(job.labels), path=Path(job.folder) / job.hash)
    return json.loads(json.dumps(analysis))  # plain JSON data, or a TypeError naming what is not


def _worker_init(threads: int) -> None:
    import torch

    _die_with_parent()
    torch.set_num_threads(threads)


def _die_with_parent() -> None:
    """On Linux, ask for SIGTERM when the grid process dies, so a killed grid leaves no worker training on
    (an orphan would keep training its cell while the re-run trains the same cell in the same folder)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:  # no glibc (e.g. musl): workers may outlive a killed grid
        pass
    if os.getppid() == 1:  # the parent died before the request: go now
        os._exit(1)


_WORKER_REGISTRY = None


def _worker_run(job: Job, registry_options: dict) -> dict:
    global _WORKER_REGISTRY
    if _WORKER_REGISTRY is None:
        from rmtzoo._registry import Registry

        _WORKER_REGISTRY = Registry(**registry_options)
    return run_cell(job, _WORKER_REGISTRY)


# -- progress ------------------------------------------------------------------------------------------
class GridProgress:
    """Cells done/running/failed/skipped and an ETA from the mean cell time, one line per event."""

    def __init__(self, total: int, skipped: int, workers: int, stream=None) -> None:
        self.total, self.skipped, self.workers = total, skipped, workers
        self.done = self.failed = self.running = 0
        self.times: list[float] = []
        self.stream = stream if stream is not None else sys.stderr

    def _eta(self) -> str:
        left = self.total - self.skipped - self.done - self.failed
        if not self.times or left <= 0:
            return "?" if left > 0 else "0s"
        seconds = sum(self.times) / len(self.times) * left / max(1, min(self.workers, left))
        m, s = divmod(int(seconds), 60)
        h, m = divmod(m, 60)
        return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")

    def line(self, event: str) -> None:
        print(f"[bench {self.done + self.failed + self.skipped}/{self.total}] done {self.done}  running "
              f"{self.running}  failed {self.failed}  skipped {self.skipped}  ETA {self._eta()}  | {event}",
              file=self.stream, flush=True)

    def started(self, job: Job) -> None:
        self.running += 1
        self.line(f"start {job.describe()}")

    def finished(self, job: Job, outcome: dict) -> None:
        self.running -= 1
        self.times.append(outcome["seconds"])
        if outcome["status"] == "done":
            self.done += 1
            self.line(f"done  {job.describe()} ({outcome['seconds']:.1f} s)")
        else:
            self.failed += 1
            self.line(f"FAILED {job.describe()}: {outcome['error']}")


# -- reuse across benchmarks ----------------------------------------------------------------------------
def _trained_elsewhere(job: Job) -> Path | None:
    """A finished result with the job's hash under another benchmark of the same preset, or None."""
    root = Path(job.folder).parent.parent
    for path in sorted(root.glob(f"*/{job.preset}/{job.hash}.json")):
        if path != job.result_path:
            return path
    return None


def reuse_result(job: Job, source: Path) -> bool:
    """Write ``job``'s result file from ``source`` (same config hash, another benchmark): the record with
    this job's benchmark, artefact and labels, and ``reused_from`` naming where it was trained. False if
    ``source`` is not a readable result of the same config."""
    try:
        record = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if record.get("hash") != job.hash or record.get("config") != job.config:
        return False
    origin = record.get("reused_from") or {"benchmark": record.get("benchmark"),
                                           "file": f"{record.get('benchmark')}/{job.preset}/{source.name}"}
    record.update({"benchmark": job.bench, "artefact": job.artefact, "labels": job.labels, "reused_from": origin})
    atomic_write_text(job.result_path, json.dumps(record, indent=2) + "\n")
    return True


# -- the grid ------------------------------------------------------------------------------------------
def run_benchmark(registry, names, *, preset: str = "smoke", seeds: int = 1, filter_expr: str | None = None,
                  shard=None, workers: int = 1, results_dir="results", registry_options: dict | None = None,
                  stream=None, executor: str = "processes", submitit_options: dict | None = None,
                  backbone: str | None = None) -> dict:
    """Validate every cell, then train those without a result file; returns a summary dict.

    ``workers > 1`` runs cells in a spawned process pool; each worker builds its own registry from
    ``registry_options`` (keyword arguments of :class:`rmtzoo.Registry`; default: what the environment
    gives), so plugins added by hand with ``Registry.add_plugin`` are only seen with ``workers = 1``.
    ``executor = "slurm"`` (or ``"submitit-local"``) submits the cells through submitit instead
    (``rmtzoo.bench._submitit``; ``submitit_options``: its keyword arguments).
    """
    if workers < 1:
        raise RmtzooError(f"--workers: expected a positive count, got {workers}")
    jobs = expand(registry, names, preset=preset, seeds=seeds, filter_expr=filter_expr, shard=shard,
                  results_dir=results_dir, backbone=backbone)
    todo = [j for j in jobs if not j.result_path.exists()]
    reused = 0
    for job in list(todo):  # trained for another benchmark already: copied, not trained again
        source = _trained_elsewhere(job)
        if source is not None and job.analyze_free and reuse_result(job, source):
            todo.remove(job)
            reused += 1
    first: dict[str, Job] = {}
    twins: list[Job] = []  # same hash as an earlier job of this run: copied once that one is done
    for job in todo:
        if job.hash in first and job.analyze_free and first[job.hash].analyze_free:
            twins.append(job)
        else:
            first.setdefault(job.hash, job)
    todo = [j for j in todo if j not in twins]
    progress = GridProgress(len(jobs), len(jobs) - len(todo) - len(twins), workers, stream)
    summary = {"total": len(jobs), "skipped": len(jobs) - len(todo) - len(twins) - reused, "reused": reused,
               "done": 0, "failed": 0, "failures": [], "results": [str(j.result_path) for j in jobs]}
    if summary["skipped"]:
        progress.line(f"{summary['skipped']} cell(s) already have results")
    if reused:
        progress.line(f"{reused} cell(s) reused from another benchmark's results (same config hash)")

    def record(job, outcome):
        progress.finished(job, outcome)
        summary[outcome["status"]] += 1
        if outcome["status"] == "failed":
            summary["failures"].append({"cell": job.describe(), "hash": job.hash, "error": outcome["error"]})

    if executor != "processes":
        from rmtzoo.bench._submitit import EXECUTORS, run_submitit

        if executor not in EXECUTORS:
            raise RmtzooError(f"--executor: expected one of {', '.join(EXECUTORS)}, got {executor!r}")
        run_submitit(todo, executor=executor, results_dir=results_dir, progress=progress, record=record,
                     registry_options=registry_options if registry_options is not None else {},
                     **(submitit_options or {}))
    elif workers == 1 or len(todo) <= 1:
        for job in todo:
            progress.started(job)
            record(job, run_cell(job, registry))
    else:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        threads = max(1, (os.cpu_count() or 1) // workers)
        options = registry_options if registry_options is not None else {}
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_worker_init, initargs=(threads,))
        try:
            pending = {}
            queue = list(todo)
            while queue or pending:
                while queue and len(pending) < workers:
                    job = queue.pop(0)
                    progress.started(job)
                    pending[pool.submit(_worker_run, job, options)] = job
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    job = pending.pop(future)
                    try:
                        outcome = future.result()
                    except Exception as exc:  # the worker process itself died
                        outcome = {"status": "failed", "error": f"worker: {type(exc).__name__}: {exc}", "seconds": 0.0}
                    record(job, outcome)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    for job in twins:
        if reuse_result(job, first[job.hash].result_path):
            summary["reused"] += 1
            progress.line(f"reused {job.describe()} from {first[job.hash].bench} (same config hash)")
    progress.line("finished" if todo or twins else "nothing to train: every cell already has a result")
    return summary
