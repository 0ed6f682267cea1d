"""Property tests over every valid backbone x memory placement x recurrence combination.

The properties live in the public kit (``rmtzoo.testing.ModelProperties``), so a plugin's tests run the
same ones; here they run over every combination of the registry the ``registry`` fixture builds
(built-ins, installed entry points and the fixture plugin directory). The checks of which combinations
are valid stay here.
"""

from __future__ import annotations

import pytest
from _combos import ALL_COMBOS, REGISTRY, VALID_COMBOS, capabilities, is_valid

import rmtzoo
import rmtzoo.testing as kit


class TestEveryCombination(kit.ModelProperties):
    @classmethod
    def make_registry(cls):
        return REGISTRY


# -- which combinations are valid ---------------------------------------------------------------------
def test_combinations_are_enumerated_from_the_registry(registry):
    names = {(c.backbone, c.memory, c.recurrence) for c in ALL_COMBOS}
    for b in registry.names("backbones"):
        for p in registry.names("memory_placements"):
            for r in registry.names("recurrences"):
                assert (b, p, r) in names
    assert "toy_mixer" in registry.names("backbones"), "the plugin-dir backbone must be in the sweep"
    assert VALID_COMBOS


@pytest.mark.parametrize("combo", [pytest.param(c, id=c.id) for c in ALL_COMBOS])
def test_validation_matches_the_declared_capabilities(combo, registry):
    placement = registry.get("memory_placements", combo.memory)
    recurrence = registry.get("recurrences", combo.recurrence)
    caps = capabilities(combo)
    policy = recurrence.build(recurrence.params.model_validate(combo.recurrence_params))
    expected = (
        (caps.causal or not placement.requires_causal)
        and (placement.has_memory or not recurrence.carries_memory)
        and (caps.accepts_cache or not recurrence.uses_cache)
        and (caps.associative_memory or not recurrence.carries_associative)
        # a causal-order-only backbone cannot keep memory from reading the cache
        and (caps.arbitrary_mask or not (policy.cache_len and placement.has_memory and not policy.memory_reads_cache))
    )
    assert is_valid(combo, registry) == expected, combo.id
    if expected:  # a valid config also builds
        rmtzoo.build_model(combo.config(), registry=registry)


def test_toy_backbone_rejects_cache_recurrences_and_accepts_the_rest(registry):
    toy = [c for c in ALL_COMBOS if c.backbone == "toy_mixer"]
    for combo in toy:
        cache = combo.recurrence in {"xl", "rmt_xl"}
        memoryless = combo.memory == "none" and combo.recurrence in {"rmt", "rmt_xl"}
        if registry.get("recurrences", combo.recurrence).carries_associative:  # toy_mixer has no associative memory
            assert not is_valid(combo, registry)
            continue
        if cache:
            with pytest.raises(rmtzoo.ConfigError) as info:
                rmtzoo.load_config(combo.config(), registry=registry)
            if not memoryless:  # the cache is the only problem: the message names the backbone
                assert "toy_mixer" in str(info.value) and "recurrence.kind" in str(info.value)
        elif not memoryless:
            rmtzoo.load_config(combo.config(), registry=registry)
    accepted = {(c.memory, c.recurrence) for c in VALID_COMBOS if c.backbone == "toy_mixer"}
    assert accepted == {
        ("none", "none"),
        ("read_write", "none"),
        ("read_write", "rmt"),
        ("shared", "none"),
        ("shared", "rmt"),
    }
