"""Built-in run loggers, registered through the observer hooks like any third-party logger:
``metrics.jsonl`` in the run folder always, TensorBoard event files when tensorboard is installed."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rmtzoo._io import atomic_write_text
from rmtzoo._registry import hookimpl


class JsonlLogger:
    """One JSON object per line: ``{"step": N, "time": T, "train/loss": ...}``. On a resume the records of
    steps after the checkpoint (trained again) are dropped and ``{"event": "resumed", "step": N}`` added,
    so each step appears once."""

    @hookimpl
    def rmtzoo_run_started(self, run):
        Path(run.run_dir).mkdir(parents=True, exist_ok=True)
        self._write(run, {"event": "started", "config_hash": run.config_hash})

    @hookimpl
    def rmtzoo_run_resumed(self, run, step):
        path = Path(run.run_dir) / "metrics.jsonl"
        kept = []
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:  # a line torn by a kill
                    continue
                if "event" in record or record.get("step", 0) <= step:
                    kept.append(line + "\n")
        atomic_write_text(path, "".join(kept))
        self._write(run, {"event": "resumed", "step": step, "config_hash": run.config_hash})

    @hookimpl
    def rmtzoo_metrics_logged(self, run, step, metrics):
        self._write(run, {"step": step, **metrics})

    @hookimpl
    def rmtzoo_run_finished(self, run, status, metrics):
        self._write(run, {"event": "finished", "status": status, **metrics})

    @staticmethod
    def _write(run, record):
        with open(Path(run.run_dir) / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")


class TensorBoardLogger:
    """Active only when ``torch.utils.tensorboard`` can be imported (the ``tensorboard`` package)."""

    def __init__(self) -> None:
        self._writers = {}

    def _writer(self, run, purge_step=None):
        if run.run_dir not in self._writers:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self._writers[run.run_dir] = None
            else:
                self._writers[run.run_dir] = SummaryWriter(str(Path(run.run_dir) / "tensorboard"), purge_step=purge_step)
        return self._writers[run.run_dir]

    @hookimpl
    def rmtzoo_run_resumed(self, run, step):
        self._writers.pop(run.run_dir, None)
        self._writer(run, purge_step=step + 1)  # hides the events of the steps trained again

    @hookimpl
    def rmtzoo_metrics_logged(self, run, step, metrics):
        writer = self._writer(run)
        if writer is not None:
            for key, value in metrics.items():
                writer.add_scalar(key, value, step)

    @hookimpl
    def rmtzoo_run_finished(self, run, status, metrics):
        if metrics:
            writer = self._writer(run)
            step = metrics.get("step", 0)
            for key, value in metrics.items():
                if writer is not None and key != "step" and isinstance(value, (int, float)):
                    writer.add_scalar(key, value, step)
        writer = self._writers.pop(run.run_dir, None)
        if writer is not None:
            writer.close()
