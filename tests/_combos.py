"""Every combination of the test registry (built-ins, installed entry points, the fixture plugin
directory), from the public kit ``rmtzoo.testing``, for the tests that enumerate combinations directly."""

from __future__ import annotations

from conftest import make_registry

import rmtzoo
from rmtzoo.testing import _combos
from rmtzoo.testing._combos import Combo, all_combos, is_valid

REGISTRY = make_registry()
ALL_COMBOS = all_combos(REGISTRY)
VALID_COMBOS = [c for c in ALL_COMBOS if is_valid(c, REGISTRY)]

__all__ = ["ALL_COMBOS", "REGISTRY", "VALID_COMBOS", "Combo", "capabilities", "is_valid"]


def capabilities(combo: Combo) -> rmtzoo.BackboneCapabilities:
    return _combos.capabilities(combo, REGISTRY)
