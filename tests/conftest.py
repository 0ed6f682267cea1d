"""Shared fixtures. Hypothesis profiles: ``ci`` (small, derandomised; chosen when CI is set) and
``dev`` (more examples). Pick one with HYPOTHESIS_PROFILE=ci|dev|thorough."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import torch

import rmtzoo
import rmtzoo.testing  # noqa: F401  (loads the Hypothesis profile, see its docstring)

FIXTURES = Path(__file__).parent / "fixtures"
PLUGINS_DIR = FIXTURES / "plugins_dir"


def make_registry(**kwargs) -> rmtzoo.Registry:
    """Built-ins, installed entry points, and the test-fixture plugin directory."""
    kwargs.setdefault("plugins_dirs", [PLUGINS_DIR])
    return rmtzoo.Registry(environ={}, **kwargs)


@pytest.fixture(scope="session")
def registry() -> rmtzoo.Registry:
    return make_registry()


def builtin_registry() -> rmtzoo.Registry:
    """The built-in components only: no entry points, no environment, no plugin directory."""
    return rmtzoo.Registry(environ={}, entry_points=False)


def quiet(*args, **kwargs) -> None:
    """A trainer ``log`` that prints nothing."""


# A tiny RMT on copy: src_len 8, 24-token samples (answer from position 8, 16 answer tokens) in 3 segments
# of 8. tiny_copy() changes single keys of its blocks.
TINY_COPY = {
    "seed": 0,
    "task": {"kind": "copy", "src_len": 8, "train_size": 64, "valid_size": 16, "test_size": 16},
    "backbone": {"kind": "transformer_xl", "vocab_size": 12, "n_layer": 2, "n_head": 2, "d_model": 16,
                 "d_head": 8, "d_inner": 32, "dropout": 0.1},
    "memory": {"kind": "read_write", "num_tokens": 4},
    "recurrence": {"kind": "rmt"},
    "segment": {"length": 8},
    "train": {"lr": 0.01, "batch_size": 8, "steps": 16, "log_every": 1, "checkpoint_every": 3,
              "schedule": "constant"},
    "eval": {"every": 8, "batch_size": 16},
}


def tiny_copy(**blocks: dict) -> dict:
    """A copy of TINY_COPY with keys of the named blocks replaced: ``tiny_copy(train={"steps": 8})``."""
    config = copy.deepcopy(TINY_COPY)
    for block, changes in blocks.items():
        config[block].update(changes)
    return config


@pytest.fixture(scope="session")
def task_cache(tmp_path_factory) -> Path:
    """One task cache for the trainer tests: a task generated for one test is read by the next."""
    return tmp_path_factory.mktemp("rmtzoo-cache")


@pytest.fixture
def isolated_trainer(monkeypatch, task_cache):
    """A trainer test as one CPU process (no CUDA, no DDP variables) on the shared task cache; the global
    RNGs, which the trainer seeds, are restored afterwards. Modules use it with an autouse fixture."""
    monkeypatch.setenv("RMTZOO_CACHE", str(task_cache))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # these checks are about the CPU path
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    state, py_state = torch.get_rng_state(), random.getstate()
    yield
    torch.set_rng_state(state)
    random.setstate(py_state)


@pytest.fixture
def restore_threads():
    """Puts torch's intra-op thread count back after a test that sets it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


# Tiny models run faster on one thread, and the suite stays predictable on a shared 2-core machine.
torch.set_num_threads(1)


class KillAt:
    """A plugin that interrupts a run (KeyboardInterrupt) once step ``step``'s training loss has been
    logged, before that step's checkpoint: what a Ctrl-C mid-run looks like to the trainer."""

    def __init__(self, step: int) -> None:
        self.step = step

    @rmtzoo.hookimpl
    def rmtzoo_metrics_logged(self, run, step, metrics):
        if step == self.step and "train/loss" in metrics:
            raise KeyboardInterrupt
