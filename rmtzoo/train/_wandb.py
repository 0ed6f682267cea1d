"""A Weights & Biases run logger, registered through the observer hooks like the JSONL and TensorBoard
ones. Opt-in: it logs only when ``RMTZOO_WANDB`` names a W&B project and ``wandb`` is installed
(``pip install "rmtzoo[wandb]"``). W&B's own variables apply: ``WANDB_MODE=offline`` writes the run under
the run folder (``wandb/``) without a network, for ``wandb sync`` later.

Logged: the whole experiment config (and its content hash) as the run's hyperparameters, every metric
the trainer logs at its step, and the final metrics as the run summary.
"""

from __future__ import annotations

import os
from pathlib import Path

from rmtzoo._registry import hookimpl


class WandbLogger:
    def __init__(self) -> None:
        self._runs = {}

    @hookimpl
    def rmtzoo_run_started(self, run):
        project = os.environ.get("RMTZOO_WANDB", "").strip()
        if not project:
            return
        try:
            import wandb
        except ImportError:
            return
        Path(run.run_dir).mkdir(parents=True, exist_ok=True)
        self._runs[run.run_dir] = wandb.init(
            project=project, dir=str(run.run_dir), name=Path(run.run_dir).name, reinit="create_new",
            config={**run.config.model_dump(mode="json"), "config_hash": run.config_hash},
        )

    @hookimpl
    def rmtzoo_metrics_logged(self, run, step, metrics):
        active = self._runs.get(run.run_dir)
        if active is not None:
            active.log(dict(metrics), step=step)

    @hookimpl
    def rmtzoo_run_finished(self, run, status, metrics):
        active = self._runs.pop(run.run_dir, None)
        if active is not None:
            for key, value in metrics.items():
                active.summary[key] = value
            active.summary["status"] = status
            active.finish(exit_code=0 if status == "completed" else 1)
