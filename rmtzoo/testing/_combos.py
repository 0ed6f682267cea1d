"""Every backbone x memory placement x recurrence combination a registry offers, for parametrising.

Combinations are enumerated from a registry at collection time, so a newly registered component is
covered without editing a test. Each component is built with its spec's ``test_params``; recurrence
parameters that change behaviour (``bptt_depth``, ``memory_reads_cache``) are varied as well.
Whether a combination is valid is decided by :func:`rmtzoo.load_config` alone.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import rmtzoo

# Values swept for recurrence fields that change what the model carries, when a recurrence has the field.
SWEEPS: dict[str, tuple[Any, ...]] = {
    "bptt_depth": (None, 0, 1, 2),
    "memory_reads_cache": (True, False),
}


@dataclass(frozen=True)
class Combo:
    backbone: str
    memory: str
    recurrence: str
    backbone_params: dict = field(hash=False)
    memory_params: dict = field(hash=False)
    recurrence_params: dict = field(hash=False)

    @property
    def id(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in sorted(self.recurrence_params.items()) if k in SWEEPS)
        return f"{self.backbone}-{self.memory}-{self.recurrence}" + (f"[{extra}]" if extra else "")

    def config(
        self,
        *,
        segment_length: int = 3,
        seed: int = 0,
        attention: str = "eager",
        num_tokens: int | None = None,
        cache_len: int | None = None,
        last: str = "shorter",
    ) -> dict[str, Any]:
        """A config mapping for this combination; ``num_tokens`` / ``cache_len`` override the test params
        where the placement / recurrence has that field."""
        memory = dict(self.memory_params)
        recurrence = dict(self.recurrence_params)
        if num_tokens is not None and "num_tokens" in memory:
            memory["num_tokens"] = num_tokens
        if cache_len is not None and "cache_len" in recurrence:
            recurrence["cache_len"] = cache_len
        return {
            "backbone": {"kind": self.backbone, **self.backbone_params},
            "memory": {"kind": self.memory, **memory},
            "recurrence": {"kind": self.recurrence, **recurrence},
            "attention": {"kind": attention},
            "segment": {"length": segment_length, "last": last},
            "seed": seed,
        }


def _with_defaults(spec) -> dict[str, Any]:
    """The spec's test params plus every other field at its default, so overrides can see the field."""
    params = spec.params.model_validate(dict(spec.test_params))
    return params.model_dump(mode="json")


def _recurrence_variants(spec) -> list[dict[str, Any]]:
    base = _with_defaults(spec)
    swept = [name for name in SWEEPS if name in base]
    variants = []
    for values in itertools.product(*(SWEEPS[name] for name in swept)):
        variants.append({**base, **dict(zip(swept, values, strict=True))})
    return variants


def all_combos(registry: rmtzoo.Registry) -> list[Combo]:
    """Every combination, valid or not, with recurrence parameter sweeps."""
    combos = []
    for backbone in registry.specs("backbones"):
        for placement in registry.specs("memory_placements"):
            for recurrence in registry.specs("recurrences"):
                for rparams in _recurrence_variants(recurrence):
                    combos.append(
                        Combo(
                            backbone.name,
                            placement.name,
                            recurrence.name,
                            dict(backbone.test_params),
                            _with_defaults(placement),
                            rparams,
                        )
                    )
    return combos


def is_valid(combo: Combo, registry: rmtzoo.Registry) -> bool:
    try:
        rmtzoo.load_config(combo.config(), registry=registry)
    except rmtzoo.ConfigError:
        return False
    return True


def capabilities(combo: Combo, registry: rmtzoo.Registry) -> rmtzoo.BackboneCapabilities:
    backbone = registry.get("backbones", combo.backbone)
    return backbone.capabilities_for(backbone.params.model_validate(combo.backbone_params))
