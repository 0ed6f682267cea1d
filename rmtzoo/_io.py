"""Files that are never half-written: write beside the target, fsync, then rename over it.

Temporary files and folders are made with ``os.open``/``os.mkdir`` rather than ``mkstemp``/``mkdtemp``,
so what is renamed into place has the user's umask (``0644``/``0755`` under umask 022), not ``0600``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """A new, empty folder ``parent/prefix<random>`` created with the user's umask."""
    while True:
        path = Path(parent) / f"{prefix}{secrets.token_hex(6)}"
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue


def current_umask() -> int:
    """The process's umask (read from /proc on Linux, else set and restored at once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: Path) -> None:
    """Give a file another writer created ``0600`` (safetensors does) the mode the umask asks for."""
    os.chmod(path, 0o666 & ~current_umask())


def _temp_file(parent: Path, prefix: str) -> tuple[int, Path]:
    while True:
        path = Path(parent) / f"{prefix}{secrets.token_hex(6)}"
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), path
        except FileExistsError:
            continue


def atomic_write(path: Path, write: Callable[[IO], None], *, binary: bool = False) -> None:
    """Call ``write(fh)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_file(path.parent, f".{path.name}.")
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text))


def check_folder(path: Path, field: str) -> Path:
    """``path`` unchanged, or a one-line error naming ``field`` when it or a parent is a regular file."""
    from rmtzoo._errors import ConfigError

    path = Path(path)
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                below = "" if candidate == path else f" (a parent of {str(path)!r})"
                raise ConfigError(f"{field}: {str(candidate)!r}{below} is a file, not a folder")
            break
    return path
