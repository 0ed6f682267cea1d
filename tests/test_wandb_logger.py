"""The W&B observer plugin (issue 12 item 8) in offline mode: hyperparameters and metrics of a run."""

from __future__ import annotations

import pytest
import torch

import rmtzoo
from rmtzoo.train import train

wandb = pytest.importorskip("wandb")

CONFIG = {
    "seed": 0,
    "task": {"kind": "copy", "src_len": 4, "train_size": 16, "valid_size": 8, "test_size": 8},
    "backbone": {"kind": "transformer_xl", "vocab_size": 12, "n_layer": 1, "n_head": 2, "d_model": 16,
                 "d_head": 8, "d_inner": 32},
    "memory": {"kind": "read_write", "num_tokens": 2}, "recurrence": {"kind": "rmt"}, "segment": {"length": 4},
    "train": {"batch_size": 4, "steps": 2, "lr": 0.01, "log_every": 1}, "eval": {"every": 2, "batch_size": 8},
}


def test_wandb_plugin_is_registered_like_the_other_loggers():
    names = [info.name for info in rmtzoo.Registry(entry_points=False).plugins()]
    assert "rmtzoo.loggers.wandb" in names


def test_offline_run_has_the_config_as_hyperparameters(tmp_path, monkeypatch):
    monkeypatch.setenv("RMTZOO_WANDB", "rmtzoo-tests")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    torch.set_num_threads(1)
    registry = rmtzoo.Registry(entry_points=False)
    config = rmtzoo.load_config(CONFIG, registry=registry)
    train(config, tmp_path / "run", registry=registry, log=lambda *a: None)
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((tmp_path / "run").rglob("*"))
    # the offline run's records (protobuf; config values and metric names are stored as JSON text in it)
    records = b"".join(path.read_bytes() for path in runs[0].glob("*.wandb"))
    assert config.content_hash().encode() in records
    for key in (b"config_hash", b"read_write", b"transformer_xl", b"train/loss", b"valid/loss"):
        assert key in records, key


def test_without_the_switch_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv("RMTZOO_WANDB", raising=False)
    torch.set_num_threads(1)
    registry = rmtzoo.Registry(entry_points=False)
    train(rmtzoo.load_config(CONFIG, registry=registry), tmp_path / "run", registry=registry, log=lambda *a: None)
    assert not (tmp_path / "run" / "wandb").exists()
