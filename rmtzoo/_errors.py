"""Errors a user can cause. The CLI prints these as one line and exits with status 2."""

from __future__ import annotations

import difflib


class RmtzooError(ValueError):
    """Base class of every error caused by user input (configs, names, ids)."""


class ConfigError(RmtzooError):
    """A config file, override or combination of components is invalid."""


class UnknownComponentError(ConfigError, KeyError):
    """A component name is not registered on an axis."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class DuplicateComponentError(RmtzooError):
    """Two plugins register the same name on one axis without an explicit override."""


class InputError(RmtzooError):
    """Token ids or other tensors handed to a model are malformed."""


class UnavailableError(RmtzooError):
    """A component was asked for where it cannot run (e.g. a CUDA-only kernel on CPU)."""


def unknown_name(axis: str, name: str, known: list[str]) -> UnknownComponentError:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return UnknownComponentError(
        f"unknown {axis} {name!r}{hint} (registered: {', '.join(sorted(known)) or 'none'})"
    )


class CheckpointError(RmtzooError):
    """A run folder or checkpoint is damaged, incomplete, in use or does not fit its config."""
