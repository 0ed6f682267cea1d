"""``rmtzoo train``, ``rmtzoo eval`` and ``rmtzoo generate`` on a tiny copy run: subprocesses for the
commands as users run them (a SIGKILL included), in-process ``main`` for the user errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import rmtzoo
from rmtzoo.cli import main
from rmtzoo.train import build_task, find_checkpoint, generate, load_checkpoint, prepare_model

REPO = Path(__file__).resolve().parents[1]
STEPS = 20

CONFIG_TOML = """\
seed = 0

[task]
kind = "copy"
src_len = 8
train_size = 64
valid_size = 16
test_size = 16

[backbone]
kind = "transformer_xl"
vocab_size = 12
n_layer = 2
n_head = 2
d_model = 16
d_head = 8
d_inner = 32
dropout = 0.1

[memory]
kind = "read_write"
num_tokens = 4

[recurrence]
kind = "rmt"

[segment]
length = 8

[train]
lr = 0.02
batch_size = 8
steps = 1000
log_every = 5
checkpoint_every = 5
schedule = "constant"

[eval]
every = 10
batch_size = 16
"""

# A plugin that SIGKILLs its own process once the given step is logged (before that step's checkpoint).
KILLER_PLUGIN = """\
import os
import signal

from rmtzoo import hookimpl


@hookimpl
def rmtzoo_metrics_logged(run, step, metrics):
    if "train/loss" in metrics and step == int(os.environ["RMTZOO_TEST_KILL_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
"""


def rmtzoo_cmd(*args, env, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rmtzoo", "--no-entry-points", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=env["TEST_CWD"])


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("cli")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RMTZOO_")}
    return {**environ, "RMTZOO_CACHE": str(home / "cache"), "OMP_NUM_THREADS": "1", "TEST_CWD": str(home),
            "CUDA_VISIBLE_DEVICES": "",  # bit-for-bit comparisons are about the CPU path
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def config_path(env) -> Path:
    path = Path(env["TEST_CWD"]) / "tiny.toml"
    path.write_text(CONFIG_TOML)
    return path


@pytest.fixture(scope="module")
def run(env, config_path):
    """One uninterrupted run of STEPS steps, trained by the command."""
    run_dir = Path(env["TEST_CWD"]) / "run"
    proc = rmtzoo_cmd("train", config_path, f"train.steps={STEPS}", "--run-dir", run_dir, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc


@pytest.fixture(autouse=True)
def _in_process_env(monkeypatch, env):
    for key in list(os.environ):
        if key.startswith("RMTZOO_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("RMTZOO_CACHE", env["RMTZOO_CACHE"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    state = torch.get_rng_state()
    yield
    torch.set_rng_state(state)


def load_model(run_dir, which="best"):
    registry = rmtzoo.Registry(environ={}, entry_points=False)
    folder = find_checkpoint(run_dir, which=which)
    config = rmtzoo.load_config(folder / "config.json", registry=registry)
    task = build_task(config, registry)
    model = prepare_model(config, task, registry)
    load_checkpoint(folder, model)
    return model.eval()


def latest_weights(run_dir, step):
    folder = find_checkpoint(run_dir)
    assert folder.name == f"step-{step:08d}"
    return load_file(str(folder / "model.safetensors"))


# -- train ------------------------------------------------------------------------------------------
def test_train_writes_a_run_and_reports_progress(run):
    run_dir, proc = run
    assert f"run folder: {run_dir}" in proc.stdout
    assert re.search(r"^test: test/loss \d", proc.stdout, re.M)
    # stderr is not a terminal: plain progress lines every log_every steps, no carriage returns
    assert "\r" not in proc.stderr
    steps = re.findall(r"^step (\d+)/20  loss \d+\.\d{4}  tokens/s [\d,]+  elapsed \d+:\d\d  ETA \d+:\d\d$",
                       proc.stderr, re.M)
    assert steps == ["5", "10", "15", "20"]
    assert re.search(r"^step 10: valid loss \d+\.\d+  accuracy \d\.\d{4}$", proc.stderr, re.M)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["step"] == STEPS and 0.0 <= results["test/accuracy"] <= 1.0
    log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert log[0]["event"] == "started" and log[-1] == {**log[-1], "event": "finished", "status": "completed"}
    assert json.loads((run_dir / "checkpoints" / "latest.json").read_text())["path"] == f"step-{STEPS:08d}"


def test_sigkill_then_train_again_resumes_to_the_same_weights(run, env, config_path, tmp_path):
    run_dir, _ = run
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "killer.py").write_text(KILLER_PLUGIN)
    killed = tmp_path / "killed"
    args = ("train", config_path, f"train.steps={STEPS}", "--run-dir", killed)
    proc = rmtzoo_cmd("--plugins-dir", plugins, *args, env={**env, "RMTZOO_TEST_KILL_AT": "15"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert find_checkpoint(killed).name == "step-00000010"  # step 15 was trained, not checkpointed
    assert not (killed / "results.json").exists()

    proc = rmtzoo_cmd(*args, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"resumed from {killed / 'checkpoints' / 'step-00000010'} at step 10" in proc.stdout
    reference, resumed = latest_weights(run_dir, STEPS), latest_weights(killed, STEPS)
    assert reference.keys() == resumed.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)
    assert (killed / "results.json").read_text() == (run_dir / "results.json").read_text()


def test_the_small_example_config_trains(tmp_path, capsys):
    """examples/copy_small.toml with its sizes cut down, through the command in-process."""
    shrink = ["task.train_size=64", "task.valid_size=16", "task.test_size=16", "train.steps=4", "eval.every=2",
              "eval.batch_size=16", "train.batch_size=8", "backbone.d_model=16", "backbone.d_inner=32"]
    assert main(["--no-entry-points", "train", str(REPO / "examples" / "copy_small.toml"), *shrink,
                 "--run-dir", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["step"] == 4 and results["test/decoding"] == "greedy"  # 16 answer tokens, segments of 8
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*")) == ["step-00000002", "step-00000004"]


# -- eval -------------------------------------------------------------------------------------------
def test_eval_prints_the_test_metrics_of_results_json(run, env):
    run_dir, _ = run
    proc = rmtzoo_cmd("eval", run_dir, "--split", "test", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = json.loads(proc.stdout)
    results = json.loads((run_dir / "results.json").read_text())
    assert printed["split"] == "test" and printed["samples"] == 16
    assert printed["accuracy"] == results["test/accuracy"]
    assert printed["loss"] == results["test/loss"]
    assert Path(printed["checkpoint"]) == find_checkpoint(run_dir, which="best")


# -- generate ---------------------------------------------------------------------------------------
def test_generate_prints_token_ids(run, env):
    run_dir, _ = run
    proc = rmtzoo_cmd("generate", run_dir, "--ids", "3,4,5", "--max-tokens", 10, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    tokens = [int(t) for t in proc.stdout.split()]
    assert len(tokens) == 10 and all(0 <= t < 12 for t in tokens)
    assert tokens == list(generate(load_model(run_dir), [3, 4, 5], 10))


def test_generate_batch_of_prompts_with_a_stop_token(run, capsys):
    """Repeated --ids: one line per prompt, as generate_batch gives; --stop ends a line at its token."""
    run_dir, _ = run
    model = load_model(run_dir)
    prompts = [[3, 4, 5], [6, 7], [1, 2, 3, 4, 5, 6, 7, 8, 9]]
    expected = rmtzoo.generate_batch(model, prompts, 9)
    argv = ["--no-entry-points", "generate", str(run_dir), "--max-tokens", "9"]
    for p in prompts:
        argv += ["--ids", ",".join(map(str, p))]
    assert main(argv) == 0
    assert [[int(t) for t in line.split()] for line in capsys.readouterr().out.splitlines()] == expected
    stop = expected[0][2]
    assert main([*argv, "--stop", str(stop)]) == 0
    lines = [[int(t) for t in line.split()] for line in capsys.readouterr().out.splitlines()]
    assert lines == [e[: e.index(stop)] if stop in e else e for e in expected] and len(lines[0]) <= 2


def _random_model():
    """An untrained model with large weights: its greedy continuations vary from token to token."""
    registry = rmtzoo.Registry(environ={}, entry_points=False)
    config = rmtzoo.load_config(Path(_random_model.config_path), ["backbone.init_std=0.5", "backbone.dropout=0.0"],
                                registry=registry)
    return prepare_model(config, build_task(config, registry), registry).eval()


@pytest.mark.parametrize("prompt", [[3, 4, 5], [2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]])
def test_generation_equals_a_whole_sequence_pass_over_what_it_generated(run, config_path, prompt):
    """Token by token with segments committed as they fill up (memory carried across 3+ boundaries)
    equals a whole-sequence pass over prompt + generated tokens, position by position: greedy tokens
    are its argmax, and sampled tokens are what the same generator draws from its softmax."""
    _random_model.config_path = config_path
    for model in (load_model(run[0]), _random_model()):
        assert model.segment_length == 8
        greedy = list(generate(model, prompt, 21))
        with torch.no_grad():
            logits = model.forward_sequence(torch.tensor([prompt + greedy])).logits[0]
        assert logits[len(prompt) - 1 : -1].argmax(-1).tolist() == greedy

        sampled = list(generate(model, prompt, 21, temperature=1.5, generator=torch.Generator().manual_seed(3)))
        assert len(set(sampled)) > 3  # varied enough that a wrong state would show
        with torch.no_grad():
            logits = model.forward_sequence(torch.tensor([prompt + sampled])).logits[0]
        g = torch.Generator().manual_seed(3)
        replay = [int(torch.multinomial(torch.softmax(logits[i] / 1.5, -1), 1, generator=g))
                  for i in range(len(prompt) - 1, len(prompt) + 20)]
        assert replay == sampled


# -- user errors ------------------------------------------------------------------------------------
def _one_line_error(err: str, pattern: str) -> None:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rmtzoo: error: ") and re.search(pattern, lines[0]), lines[0]


def test_train_without_a_task_block_exits_2(env, tmp_path):
    no_task = tmp_path / "no_task.toml"
    no_task.write_text(re.sub(r"\[task\].*?\n\n", "", CONFIG_TOML, flags=re.S))
    assert "[task]" not in no_task.read_text()
    proc = rmtzoo_cmd("train", no_task, "--run-dir", tmp_path / "run", env=env)
    assert proc.returncode == 2
    _one_line_error(proc.stderr, r"task: a task block is required")
    assert not (tmp_path / "run").exists()


def test_user_errors_exit_2_with_one_line(run, config_path, tmp_path, capsys):
    run_dir, _ = run
    cases = [
        (["train", str(config_path), "segment.length=7", "--run-dir", str(tmp_path / "r")],
         r"segment\.length: .*24 tokens, use one of \[1, 2, 3, 4, 6, 8, 12, 24\]"),
        (["eval", str(tmp_path / "missing")], r"no checkpoint in .*missing"),
        (["generate", str(run_dir), "--ids", "3,40"], r"--ids: token id 40 is outside the vocabulary \[0, 12\)"),
        (["generate", str(run_dir), "--ids", "3,x"], r"--ids: expected comma-separated integers"),
        (["generate", str(run_dir), "--ids", "3", "--prompt", "ab"], r"exactly one of --prompt TEXT or --ids"),
    ]
    for argv, pattern in cases:
        capsys.readouterr()
        assert main(["--no-entry-points", *argv]) == 2, argv
        _one_line_error(capsys.readouterr().err, pattern)
    assert not (tmp_path / "r").exists()
