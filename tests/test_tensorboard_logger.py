"""The built-in TensorBoard logger writes event files with the logged scalars (skips without tensorboard)."""

from __future__ import annotations

import pytest

import rmtzoo

pytest.importorskip("torch.utils.tensorboard", reason="tensorboard is not installed (pip install rmtzoo[tensorboard])")


def test_tensorboard_logger_writes_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    registry = rmtzoo.Registry(environ={}, entry_points=False)
    run = rmtzoo.RunInfo(run_dir=str(tmp_path), config=None, config_hash="x")
    registry.hook.rmtzoo_run_started(run=run)
    registry.hook.rmtzoo_metrics_logged(run=run, step=3, metrics={"train/loss": 1.5})
    registry.hook.rmtzoo_metrics_logged(run=run, step=7, metrics={"train/loss": 0.25, "valid/accuracy": 0.75})
    registry.hook.rmtzoo_run_finished(run=run, status="completed", metrics={})

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    loss = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert loss == [(3, 1.5), (7, 0.25)]
    assert [(e.step, e.value) for e in events.Scalars("valid/accuracy")] == [(7, 0.75)]
