"""The base of every suite: which registry, which components, and the parametrisation over them."""

from __future__ import annotations

from typing import ClassVar

import rmtzoo
from rmtzoo.testing._combos import Combo, all_combos, is_valid

# argument name of a test method -> the axis its values come from
_ARGS = {
    "backbone": "backbones",
    "placement": "memory_placements",
    "recurrence": "recurrences",
    "kernel": "attention_backends",
}


class Suite:
    """Subclass with selections; the registry is built once per class and shared by its tests."""

    backbones: ClassVar[list[str] | None] = None
    memory_placements: ClassVar[list[str] | None] = None
    recurrences: ClassVar[list[str] | None] = None
    attention_backends: ClassVar[list[str] | None] = None

    @classmethod
    def make_registry(cls) -> rmtzoo.Registry:
        """The registry the suite runs over; override to add plugin directories or block plugins."""
        return rmtzoo.Registry()

    @classmethod
    def registry(cls) -> rmtzoo.Registry:
        cached = cls.__dict__.get("_registry_built")
        if cached is None:
            cached = cls.make_registry()
            cls._registry_built = cached
        return cached

    @classmethod
    def selected(cls, axis: str) -> list:
        """Specs of ``axis`` in the selection; a selected name that is not registered is an error."""
        names = getattr(cls, axis)
        registry = cls.registry()
        if names is None:
            return registry.specs(axis)
        return [registry.get(axis, name) for name in names]

    @classmethod
    def combos(cls, *, valid: bool = True) -> list[Combo]:
        """Selected combinations (valid ones, or every one with ``valid=False``), cached per class."""
        key = "_combos_valid" if valid else "_combos_all"
        cached = cls.__dict__.get(key)
        if cached is None:
            registry = cls.registry()
            chosen = {axis: {s.name for s in cls.selected(axis)} for axis in ("backbones", "memory_placements", "recurrences")}
            cached = [
                c for c in all_combos(registry)
                if c.backbone in chosen["backbones"] and c.memory in chosen["memory_placements"]
                and c.recurrence in chosen["recurrences"] and (not valid or is_valid(c, registry))
            ]
            setattr(cls, key, cached)
        return cached

    def pytest_generate_tests(self, metafunc) -> None:
        """Parametrise ``backbone``/``placement``/``recurrence``/``kernel`` by spec and ``combo`` by
        combination; a method may narrow its values with ``@rmtzoo.testing._suite.where(arg, predicate)``."""
        import pytest

        cls = type(self)
        predicate = getattr(metafunc.function, "_rmtzoo_where", {})
        for arg, axis in _ARGS.items():
            if arg in metafunc.fixturenames:
                keep = predicate.get(arg, lambda s: True)
                specs = [s for s in cls.selected(axis) if keep(s)]
                metafunc.parametrize(arg, [pytest.param(s, id=s.name) for s in specs] or _nothing(arg))
        if "combo" in metafunc.fixturenames:
            keep = predicate.get("combo", lambda c, suite: True)
            combos = [c for c in cls.combos() if keep(c, cls)]
            metafunc.parametrize("combo", [pytest.param(c, id=c.id) for c in combos] or _nothing("combo"))


def where(arg: str, predicate):
    """Decorator: only values of ``arg`` for which ``predicate`` holds (for ``combo``: ``predicate(combo,
    suite_class)``)."""

    def mark(fn):
        fn._rmtzoo_where = {**getattr(fn, "_rmtzoo_where", {}), arg: predicate}
        return fn

    return mark


def _nothing(arg: str) -> list:
    import pytest

    return [pytest.param(None, marks=pytest.mark.skip(reason=f"no selected {arg} applies"), id="none")]
