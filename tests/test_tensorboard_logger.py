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


def test_tensorboard_sees_the_test_metrics_of_a_finished_run(tmp_path):
    """rmtzoo_run_finished carries the test metrics (results.json) and the logger writes them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    registry = rmtzoo.Registry(environ={}, entry_points=False)
    run = rmtzoo.RunInfo(run_dir=str(tmp_path), config=None, config_hash="x")
    registry.hook.rmtzoo_run_started(run=run)
    registry.hook.rmtzoo_metrics_logged(run=run, step=4, metrics={"train/loss": 1.5})
    registry.hook.rmtzoo_run_finished(run=run, status="completed",
                                      metrics={"test/accuracy": 0.5, "test/decoding": "greedy", "step": 4})
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("test/accuracy")] == [(4, 0.5)]
    assert "test/decoding" not in events.Tags()["scalars"]
