"""The training progress display and what the trainer logs from it (issue 12 item 8): ETA and elapsed
time, a smoothed loss, training-only throughput, plain lines off a terminal, a bar that ends complete
when train.stop_at ends the run early."""

from __future__ import annotations

import io
import json
import re

import pytest
import torch

import rmtzoo
from rmtzoo.train import train
from rmtzoo.train._progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_show_the_window_mean_loss_elapsed_and_eta():
    clock, out = Clock(), io.StringIO()
    progress = Progress(100, every=4, stream=out, clock=clock)
    for step, loss in enumerate([8.0, 0.0, 8.0, 0.0], start=1):
        clock.now += 2.0
        progress.update(step, loss, tokens=10)
    line = out.getvalue().strip()
    assert line == "step 4/100  loss 4.0000  tokens/s 5  elapsed 0:08  ETA 3:12", line  # 96 steps x 2 s
    assert progress.window_loss() == 4.0  # what the trainer logs: the same mean, then a new window
    assert "\r" not in out.getvalue()


def test_throughput_leaves_out_paused_time():
    clock = Clock()
    progress = Progress(10, every=100, stream=io.StringIO(), clock=clock)
    for step in range(1, 5):
        clock.now += 1.0
        progress.update(step, 1.0, tokens=100)
        with progress.paused():  # a validation that takes far longer than the steps
            clock.now += 50.0
    assert progress.tokens_per_s == pytest.approx(100.0)


def test_terminal_bar_has_eta_and_ends_complete_when_stopped_early():
    out = Terminal()
    progress = Progress(1000, every=50, stream=out)
    for step in range(1, 251):
        progress.update(step, 1.0, tokens=1)
    progress.message("step 250: valid loss 0.1")
    progress.close()  # train.stop_at reached at step 250 of 1000
    text = out.getvalue()
    assert "step 250: valid loss 0.1" in text
    last = text.rsplit("\r", 1)[-1]
    assert re.search(r"100%\|.*\| 250/250 \[\d\d:\d\d<\d\d:\d\d", last), last  # elapsed<remaining
    assert "loss 1.0000" in last


def test_trainer_logs_the_mean_loss_over_the_log_window(tmp_path):
    """train/loss in metrics.jsonl is the mean of the batches since the last log, not the last batch."""
    seen = []

    class Spy:
        @rmtzoo.hookimpl
        def rmtzoo_metrics_logged(self, run, step, metrics):
            seen.append((step, dict(metrics)))

    registry = rmtzoo.Registry(entry_points=False)
    registry.add_plugin(Spy(), name="spy")
    config = rmtzoo.load_config({
        "seed": 0,
        "task": {"kind": "copy", "src_len": 4, "train_size": 16, "valid_size": 8, "test_size": 8},
        "backbone": {"kind": "transformer_xl", "vocab_size": 12, "n_layer": 1, "n_head": 2, "d_model": 16,
                     "d_head": 8, "d_inner": 32},
        "memory": {"kind": "read_write", "num_tokens": 2}, "recurrence": {"kind": "rmt"}, "segment": {"length": 4},
        "train": {"batch_size": 4, "steps": 4, "lr": 0.01, "log_every": 2}, "eval": {"every": 4, "batch_size": 8},
    }, registry=registry)
    batch_losses = []
    original = rmtzoo.train.Trainer._loss

    def recording(self):
        loss, n = original(self)
        batch_losses.append(loss.item())
        return loss, n

    torch.set_num_threads(1)
    rmtzoo.train.Trainer._loss = recording
    try:
        train(config, tmp_path / "run", registry=registry, log=lambda *a: None)
    finally:
        rmtzoo.train.Trainer._loss = original
    logged = [(step, m["train/loss"]) for step, m in seen if "train/loss" in m]
    assert [s for s, _ in logged] == [2, 4]
    assert logged[0][1] == pytest.approx(sum(batch_losses[:2]) / 2)
    assert logged[1][1] == pytest.approx(sum(batch_losses[2:4]) / 2)
    assert logged[1][1] != pytest.approx(batch_losses[3])
    jsonl = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["train/loss"] for r in jsonl if "train/loss" in r] == [v for _, v in logged]
