"""The component registry: a fresh pluggy manager per instance, filled in a fixed order.

Order: built-in plugins (``rmtzoo._builtins``), then installed distributions exposing the ``rmtzoo``
entry-point group, then plugin directories (``plugins_dirs`` and ``RMTZOO_PLUGINS_DIR``). Environment
switches: ``RMTZOO_DISABLE_PLUGIN_AUTOLOAD=1`` skips entry points, ``RMTZOO_BLOCK_PLUGINS=a,b`` blocks
plugins by name (built-ins included).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy

from rmtzoo import hookspecs
from rmtzoo._components import AXES
from rmtzoo._errors import DuplicateComponentError, RmtzooError, unknown_name

hookimpl = pluggy.HookimplMarker("rmtzoo")

ENTRY_POINT_GROUP = "rmtzoo"
HOOK_OF_AXIS = {
    "backbones": "rmtzoo_register_backbones",
    "memory_placements": "rmtzoo_register_memory_placements",
    "recurrences": "rmtzoo_register_recurrences",
    "attention_backends": "rmtzoo_register_attention_backends",
    "tasks": "rmtzoo_register_tasks",
    "benchmarks": "rmtzoo_register_benchmarks",
}
AXIS_ALIASES = {
    "backbone": "backbones",
    "memory": "memory_placements",
    "placement": "memory_placements",
    "placements": "memory_placements",
    "memory_placement": "memory_placements",
    "recurrence": "recurrences",
    "attention": "attention_backends",
    "attention_backend": "attention_backends",
    "kernels": "attention_backends",
    "task": "tasks",
    "benchmark": "benchmarks",
}


def canonical_axis(axis: str) -> str:
    axis = AXIS_ALIASES.get(axis, axis)
    if axis not in AXES:
        raise unknown_name("axis", axis, list(AXES))
    return axis


@dataclass(frozen=True)
class PluginInfo:
    name: str
    source: str  # "builtin", "entry point" or "directory"
    version: str
    location: str
    hooks: tuple[str, ...]


@dataclass(frozen=True)
class _Entry:
    spec: Any
    provider: str


class Registry:
    """Every registered component, by axis and name. Build one per process or test; never global."""

    def __init__(
        self,
        *,
        entry_points: bool | None = None,
        plugins_dirs: tuple[str | os.PathLike, ...] | list = (),
        block: tuple[str, ...] | list = (),
        environ: dict[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        if entry_points is None:
            entry_points = env.get("RMTZOO_DISABLE_PLUGIN_AUTOLOAD", "").lower() not in {"1", "true", "yes"}
        blocked = {*block, *(b.strip() for b in env.get("RMTZOO_BLOCK_PLUGINS", "").split(",") if b.strip())}
        dirs = [*plugins_dirs, *(d for d in env.get("RMTZOO_PLUGINS_DIR", "").split(os.pathsep) if d)]

        self._pm = pluggy.PluginManager("rmtzoo")
        self._pm.add_hookspecs(hookspecs)
        self._info: dict[str, tuple[str, str, str]] = {}
        for name in blocked:
            self._pm.set_blocked(name)

        from rmtzoo import _builtins

        for name, plugin in _builtins.PLUGINS:
            location = f"{plugin.__module__}.{plugin.__name__}" if isinstance(plugin, type) else plugin.__name__
            self._add(plugin() if isinstance(plugin, type) else plugin, name, "builtin", _own_version(), location)
        if entry_points:
            self._load_entry_points()
        for directory in dirs:
            self._load_directory(Path(directory))
        self._entries: dict[str, dict[str, _Entry]] | None = None

    # -- loading -----------------------------------------------------------------------------------
    def _add(self, plugin: object, name: str, source: str, version: str, location: str) -> None:
        if self._pm.is_blocked(name):
            return
        if self._pm.has_plugin(name):
            raise DuplicateComponentError(
                f"plugin name {name!r} is used twice: by {self._info[name][2]} and by {location}"
            )
        try:
            self._pm.register(plugin, name=name)
            self._pm.check_pending()  # a misspelt hook name would otherwise be ignored silently
        except (pluggy.PluginValidationError, ValueError) as exc:
            if self._pm.has_plugin(name):
                self._pm.unregister(name=name)
            detail = " ".join(str(exc).split())
            raise RmtzooError(f"plugin {name!r} ({location}) is invalid: {detail}") from None
        self._info[name] = (source, version, location)
        self._entries = None

    def _load_entry_points(self) -> None:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if self._pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must name itself
                raise RmtzooError(f"plugin {ep.name!r} (entry point {ep.value}) failed to load: {_one_line(exc)}") from exc
            dist = getattr(ep, "dist", None)
            version = dist.version if dist is not None else "?"
            where = f"{dist.name} {version}" if dist is not None else ep.value
            self._add(plugin, ep.name, "entry point", version, where)

    def _load_directory(self, directory: Path) -> None:
        if not directory.is_dir():
            raise RmtzooError(f"plugins directory {str(directory)!r} does not exist or is not a directory")
        for path in sorted(directory.iterdir()):
            if path.name.startswith(("_", ".")):
                continue
            if path.is_dir() and (path / "__init__.py").is_file():
                path = path / "__init__.py"
                stem = path.parent.name
            elif path.suffix == ".py":
                stem = path.stem
            else:
                continue
            if self._pm.is_blocked(stem):
                continue
            tag = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
            module_name = f"rmtzoo_dirplugin_{tag}_{stem}"
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[module_name]
                raise RmtzooError(f"plugin {stem!r} ({path}) failed to load: {_one_line(exc)}") from exc
            self._add(module, stem, "directory", getattr(module, "__version__", "-"), str(path))

    def add_plugin(self, plugin: object, name: str) -> None:
        """Register a plugin object (a module or any object with hook implementations) by hand."""
        self._add(plugin, name, "added", getattr(plugin, "__version__", "-"), repr(plugin))

    # -- components --------------------------------------------------------------------------------
    def _collect(self) -> dict[str, dict[str, _Entry]]:
        if self._entries is not None:
            return self._entries
        entries: dict[str, dict[str, _Entry]] = {axis: {} for axis in AXES}
        for axis, hook_name in HOOK_OF_AXIS.items():
            # Implementations are called in load order (built-ins first) so that an explicit override
            # by a later plugin wins; pluggy's own call order is last-registered-first.
            for impl in getattr(self._pm.hook, hook_name).get_hookimpls():
                provider = impl.plugin_name
                register = _Registrar(axis, provider, entries[axis])
                try:
                    impl.function(*([register] if impl.argnames else []))
                except RmtzooError:
                    raise
                except Exception as exc:  # a plugin's own bug: name the plugin and the hook, in one line
                    where = self._info[provider][2] if provider in self._info else provider
                    raise RmtzooError(f"plugin {provider!r} ({where}) failed in {hook_name}: {_one_line(exc)}") from exc
        self._entries = entries
        return entries

    def check(self) -> None:
        """Run every registration hook now; a plugin that raises or registers a name twice raises
        :class:`rmtzoo.RmtzooError` here rather than at the first lookup."""
        self._collect()

    def get(self, axis: str, name: str) -> Any:
        """The spec registered as ``name`` on ``axis``; an unknown name lists the closest ones."""
        axis = canonical_axis(axis)
        table = self._collect()[axis]
        if not isinstance(name, str) or name not in table:
            raise unknown_name(_SINGULAR[axis], str(name), list(table))
        return table[name].spec

    def names(self, axis: str) -> list[str]:
        return sorted(self._collect()[canonical_axis(axis)])

    def specs(self, axis: str) -> list[Any]:
        table = self._collect()[canonical_axis(axis)]
        return [table[n].spec for n in sorted(table)]

    def provider(self, axis: str, name: str) -> str:
        self.get(axis, name)
        return self._collect()[canonical_axis(axis)][name].provider

    def plugins(self) -> list[PluginInfo]:
        out = []
        for name, plugin in self._pm.list_name_plugin():
            if plugin is None:  # blocked: pluggy keeps the name with no plugin
                continue
            source, version, location = self._info[name]
            hooks = tuple(sorted(h.name for h in self._pm.get_hookcallers(plugin) or ()))
            out.append(PluginInfo(name, source, version, location, hooks))
        return out

    @property
    def hook(self):
        """The pluggy hook relay, for the run-lifecycle observer hooks."""
        return self._pm.hook


_SINGULAR = {
    "backbones": "backbone",
    "memory_placements": "memory placement",
    "recurrences": "recurrence",
    "attention_backends": "attention backend",
    "tasks": "task",
    "benchmarks": "benchmark",
}


class _Registrar:
    """The ``register`` callable handed to one plugin's registration hook for one axis."""

    def __init__(self, axis: str, provider: str, table: dict[str, _Entry]) -> None:
        self.axis, self.provider, self.table = axis, provider, table

    def __call__(self, spec: Any, *, override: bool = False) -> None:
        expected = AXES[self.axis]
        if not isinstance(spec, expected):
            raise RmtzooError(
                f"plugin {self.provider!r} registered {type(spec).__name__} through the {self.axis} hook; "
                f"expected {expected.__name__}"
            )
        if not spec.name or not spec.name.replace("_", "").replace("-", "").isalnum():
            raise RmtzooError(
                f"plugin {self.provider!r} registered a {self.axis} component with invalid name "
                f"{spec.name!r}; use letters, digits, '_' and '-'"
            )
        old = self.table.get(spec.name)
        if old is not None and not override:
            raise DuplicateComponentError(
                f"{_SINGULAR[self.axis]} {spec.name!r} is registered twice: by plugin {old.provider!r} "
                f"and by plugin {self.provider!r} (pass override=True to replace it on purpose)"
            )
        self.table[spec.name] = _Entry(spec, self.provider)


def _one_line(exc: BaseException) -> str:
    """``Type: message`` with the message's whitespace (newlines included) folded to single spaces."""
    detail = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _own_version() -> str:
    try:
        return metadata.version("rmtzoo")
    except metadata.PackageNotFoundError:
        return "0+unknown"
