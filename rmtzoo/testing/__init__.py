"""The contract and property suites, as a kit a plugin's own tests run on its own components.

rmtzoo's tests run exactly these suites over its built-ins (``tests/test_contract.py``,
``tests/test_properties.py``), so a plugin is held to the same checks. In a plugin's test file::

    import rmtzoo.testing as kit

    class TestMyBackbone(kit.ContractSuite):
        backbones = ["my_backbone"]  # its contract, and every valid combination with it

Each suite is a pytest test class: subclass it in a ``test_*.py`` file and pytest collects its tests,
parametrised (through the class's ``pytest_generate_tests``) over the selected components of the
registry ``make_registry()`` returns (by default ``rmtzoo.Registry()``: built-ins and installed
plugins). Selection, per axis: ``backbones``, ``memory_placements``, ``recurrences``,
``attention_backends``, each a list of names or None (every registered one). A combination (for
:class:`ModelProperties`) is selected when each of its three components is.

Suites: :class:`BackboneContract` (protocol shapes, ``nll``, mask polarity, the mask is respected, cache,
params, seeds), :class:`PlacementContract`, :class:`RecurrenceContract`, :class:`AttentionContract`
(every kernel against eager attention), :class:`ModelProperties` (over every valid backbone x
placement x recurrence: chunked equals full, state in state out, causality, batch independence, the
Transformer-XL cache as a banded mask, BPTT depth, finite memory, seeds, config round trip) and
:class:`ContractSuite` (all of them). Needs ``pytest`` and ``hypothesis`` (rmtzoo's ``test`` extra).

Hypothesis fixes a test's settings when the test is defined, so importing this module registers the
profiles ``ci`` (6 examples, derandomised), ``dev`` (15) and ``thorough`` (200), all without deadlines,
and loads the one ``$HYPOTHESIS_PROFILE`` names (default ``ci`` where ``$CI`` is set, else ``dev``) before the property suites are defined.
"""

from __future__ import annotations

import os

from rmtzoo.testing._profiles import load_hypothesis_profile

load_hypothesis_profile("ci" if os.environ.get("CI") else "dev")  # before the suites below are defined

from rmtzoo.testing._combos import Combo, all_combos, is_valid  # noqa: E402
from rmtzoo.testing._contract import (  # noqa: E402
    AttentionContract,
    BackboneContract,
    PlacementContract,
    RecurrenceContract,
)
from rmtzoo.testing._properties import ModelProperties  # noqa: E402
from rmtzoo.testing._suite import Suite  # noqa: E402

__all__ = [
    "AttentionContract",
    "BackboneContract",
    "Combo",
    "ContractSuite",
    "ModelProperties",
    "PlacementContract",
    "RecurrenceContract",
    "Suite",
    "all_combos",
    "is_valid",
    "load_hypothesis_profile",
]


class ContractSuite(BackboneContract, PlacementContract, RecurrenceContract, AttentionContract, ModelProperties):
    """Every suite at once, over the selected components."""
