"""The trainer on a stream (language-modelling) task: the embedded corpus, truncated BPTT state carried
across steps and saved in checkpoints, and evaluation over the whole stream."""

from __future__ import annotations

import math

import torch
from conftest import KillAt

import rmtzoo
from rmtzoo.tasks.lm import ordered_streams, stream_segments
from rmtzoo.train import Trainer, build_task, prepare_model, train
from rmtzoo.train._checkpoint import read_trainer_state

CONFIG = {
    "seed": 0,
    "task": {"kind": "synthetic_lm", "n_train_tokens": 3000, "n_eval_tokens": 600},
    "backbone": {"kind": "transformer_xl", "vocab_size": 372, "n_layer": 1, "n_head": 2, "d_model": 16,
                 "d_head": 8, "d_inner": 32, "dropout": 0.1},
    "memory": {"kind": "read_write", "num_tokens": 2},
    "recurrence": {"kind": "rmt", "bptt_depth": 2},
    "segment": {"length": 8},
    "train": {"lr": 0.01, "batch_size": 4, "steps": 12, "schedule": "cosine", "log_every": 1, "checkpoint_every": 5},
    "eval": {"every": 100, "batch_size": 3},
}


def _config(tmp_path, **overrides):
    data = {**CONFIG, "task": {**CONFIG["task"], "cache_dir": str(tmp_path / "cache")}}
    return rmtzoo.load_config(data, [f"{k}={v}" for k, v in overrides.items()], registry=rmtzoo.Registry(environ={}))


def _weights(run_dir):
    from safetensors.torch import load_file

    from rmtzoo.train import find_checkpoint

    return load_file(str(find_checkpoint(run_dir) / "model.safetensors"))


def test_stream_training_resumes_exactly_with_carried_bptt_state(tmp_path):
    config = _config(tmp_path)
    whole = train(config, tmp_path / "whole", registry=rmtzoo.Registry(environ={}), log=lambda *a: None)

    registry = rmtzoo.Registry(environ={})
    registry.add_plugin(KillAt(7), "stop")
    try:
        train(config, tmp_path / "split", registry=registry, log=lambda *a: None)
    except KeyboardInterrupt:
        pass
    state = read_trainer_state(tmp_path / "split/checkpoints/step-00000005")
    assert state["stream_pos"] == 5 * 8 and state["stream_state"].n_segments == 5
    assert len(state["stream_state"].window) == 2  # the BPTT-2 window travels with the checkpoint
    resumed = train(config, tmp_path / "split", registry=rmtzoo.Registry(environ={}), log=lambda *a: None)

    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "split")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed == whole
    assert math.isfinite(whole["test/ppl"]) and whole["test/ppl"] < 372  # learned something past uniform


def test_stream_evaluation_covers_the_whole_stream_with_carried_state(tmp_path):
    config = _config(tmp_path)
    trainer = Trainer(config, tmp_path / "run", registry=rmtzoo.Registry(environ={}), log=lambda *a: None)
    metrics = trainer.evaluate("valid")

    model, task = trainer.model.eval(), trainer.task
    streams = ordered_streams(task.tokens("valid"), config.eval.batch_size)
    state, nll, count = model.initial_state(streams.shape[0]), 0.0, 0
    with torch.no_grad():
        for x, y in stream_segments(streams, config.segment.length):
            out, state = model.step(x, state, return_logits=False)
            nll += float(model.backbone.nll(out.hidden, y).sum())
            count += y.numel()
    assert metrics["tokens"] == count == streams.shape[0] * (streams.shape[1] - 1)
    assert math.isclose(metrics["ppl"], math.exp(nll / count), rel_tol=1e-6)


def test_stream_eval_state_matters(tmp_path):
    """Resetting memory per segment (what a broken evaluator would do) changes the perplexity."""
    config = _config(tmp_path)
    registry = rmtzoo.Registry(environ={})
    task = build_task(config, registry)
    model = prepare_model(config, task, registry).eval()
    streams = ordered_streams(task.tokens("valid"), 3)
    carried = fresh = 0.0
    state = model.initial_state(3)
    with torch.no_grad():
        for x, y in stream_segments(streams, 8):
            out, state = model.step(x, state, return_logits=False)
            carried += float(model.backbone.nll(out.hidden, y).sum())
            out0, _ = model.step(x, model.initial_state(3), return_logits=False)
            fresh += float(model.backbone.nll(out0.hidden, y).sum())
    assert carried != fresh


def test_two_process_ddp_stream_training_equals_one_process(tmp_path):
    """Streams split over ranks, BPTT state carried per rank: the same weights as one process."""
    import json
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file
    from test_trainer import REPO, _free_port, _wait_all

    config = _config(tmp_path, **{"backbone.dropout": 0.0, "train.steps": 8})
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config.model_dump(mode="json")))
    port, procs = _free_port(), []
    for rank in range(2):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
               "RANK": str(rank), "LOCAL_RANK": str(rank), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
               "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        procs.append(subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "_ddp_worker.py"), str(config_path), str(tmp_path / f"rank{rank}")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        train(config, tmp_path / "single", registry=rmtzoo.Registry(environ={}), log=lambda *a: None)
        _wait_all(procs, timeout=240)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    one = load_file(str(tmp_path / "single/checkpoints/step-00000008/model.safetensors"))
    two = load_file(str(tmp_path / "rank0/checkpoints/step-00000008/model.safetensors"))
    for k in one:
        # Summation order differs between a batch of 4 and two of 2 (roundoff ~1e-9 in a gradient); Adam at
        # lr 1e-2 turns that into up to ~1e-6 where a gradient is near zero (measured 1.2e-6 on r_net after
        # 8 steps). A real mismatch (wrong rows, state or averaging) moves weights by ~lr = 1e-2 per step.
        torch.testing.assert_close(two[k], one[k], rtol=0, atol=1e-5, msg=k)
