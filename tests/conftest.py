"""Shared fixtures. Hypothesis profiles: ``ci`` (small, derandomised; chosen when CI is set) and
``dev`` (more examples). Pick one with HYPOTHESIS_PROFILE=ci|dev|thorough."""

from __future__ import annotations

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
