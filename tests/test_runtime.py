"""Threads and devices (issue 12 items 1 and 7): one rule for train, eval, generate and demo."""

from __future__ import annotations

import json
import os

import pytest
import torch

from rmtzoo._runtime import default_threads, resolve_device
from rmtzoo.cli import main

TINY = """\
seed = 0
[task]
kind = "copy"
src_len = 4
train_size = 16
valid_size = 8
test_size = 8
[backbone]
kind = "transformer_xl"
vocab_size = 12
n_layer = 1
n_head = 2
d_model = 16
d_head = 8
d_inner = 32
[memory]
kind = "read_write"
num_tokens = 2
[recurrence]
kind = "rmt"
[segment]
length = 4
[train]
batch_size = 4
steps = 2
[eval]
every = 2
batch_size = 8
"""


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def run(capsys, *argv):
    try:
        rc = main(["--no-entry-points", *map(str, argv)])
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc, err, *fragments):
    assert rc == 2 and "Traceback" not in err and len(err.splitlines()) == 1, (rc, err)
    for fragment in fragments:
        assert fragment in err, (fragment, err)


# -- threads -------------------------------------------------------------------------------------------------
def test_default_threads_is_omp_num_threads_when_set(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3


def test_default_threads_is_the_affinity_less_the_busy_cpus(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.4, 0.0, 0.0))
    assert default_threads() == 3
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 0.0, 0.0))  # an overloaded machine: still one
    assert default_threads() == 1


def test_bad_omp_num_threads_is_one_line(monkeypatch, capsys, tiny, tmp_path, restore_threads):
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    rc, _, err = run(capsys, "train", tiny, "--run-dir", tmp_path / "run")
    one_line_error(rc, err, "OMP_NUM_THREADS", "'lots'")


def test_train_sets_threads_from_the_option(capsys, tiny, tmp_path, restore_threads):
    torch.set_num_threads(2)
    rc, _, err = run(capsys, "train", tiny, "--run-dir", tmp_path / "run", "--threads", "1")
    assert rc == 0, err
    assert torch.get_num_threads() == 1


def test_train_sets_a_default_thread_count(monkeypatch, capsys, tiny, tmp_path, restore_threads):
    """Without --threads the default applies (here OMP_NUM_THREADS=1), not PyTorch's one per core."""
    torch.set_num_threads(2)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    rc, _, err = run(capsys, "train", tiny, "--run-dir", tmp_path / "run")
    assert rc == 0, err
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_bad_threads_is_one_line(capsys, tiny, tmp_path, value):
    rc, _, err = run(capsys, "train", tiny, "--run-dir", tmp_path / "run", "--threads", value)
    one_line_error(rc, err, "--threads", repr(value))
    assert not (tmp_path / "run").exists()


# -- devices -------------------------------------------------------------------------------------------------
def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("CPU ") == torch.device("cpu")
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert resolve_device("auto") == torch.device("cpu")


def test_device_cpu_is_honoured_where_cuda_is_available(monkeypatch, capsys, tiny, tmp_path, restore_threads):
    """With CUDA reported available, ``auto`` would pick it; ``--device cpu`` keeps train, eval and generate
    on the CPU (here any CUDA call would fail: the CUDA build is absent or the device is faked)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda", 0)
    run_dir = tmp_path / "run"
    rc, _, err = run(capsys, "train", tiny, "--run-dir", run_dir, "--device", "cpu", "--threads", "1")
    assert rc == 0, err
    rc, out, err = run(capsys, "eval", run_dir, "--device", "cpu")
    assert rc == 0, err
    assert json.loads(out)["device"] == "cpu"
    rc, out, err = run(capsys, "generate", run_dir, "--ids", "2,3", "--max-tokens", "2", "--device", "cpu")
    assert rc == 0, err
    assert len(out.split()) == 2


@pytest.mark.parametrize("command", ["train", "eval", "generate", "demo"])
def test_unavailable_device_is_one_line(monkeypatch, capsys, tiny, tmp_path, command):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    target = {"train": [tiny, "--run-dir", tmp_path / "run"], "eval": [tmp_path / "run"],
              "generate": [tmp_path / "run", "--ids", "2"], "demo": []}[command]
    if command in {"eval", "generate"}:
        assert run(capsys, "train", tiny, "--run-dir", tmp_path / "run", "--threads", "1")[0] == 0
    rc, _, err = run(capsys, command, *target, "--device", "cuda")
    one_line_error(rc, err, "device: 'cuda' is not available here")
    rc, _, err = run(capsys, command, *target, "--device", "banana")
    one_line_error(rc, err, "device: unknown device 'banana'", "auto, cpu")
