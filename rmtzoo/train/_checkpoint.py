"""Checkpoints that are never half-written, never run code when loaded, and one trainer per run folder.

Each checkpoint is a new folder ``checkpoints/step-NNNNNNNN`` built under a temporary name
(``.tmp-step-…``) and renamed into place; ``latest.json`` and ``best.json`` point at folders and are
replaced atomically. So a kill at any moment leaves the previous checkpoint and both pointers intact;
a trainer starting in the folder removes the temporaries a killed one left.

Folder contents: ``model.safetensors`` (weights, every state-dict key), ``trainer.safetensors`` + ``trainer.json`` (optimizer,
scheduler, RNG states, data position, carried memory/cache: tensors and JSON, see ``_state_io``),
``config.json``. Nothing is unpickled: a ``trainer.pt`` of a run written by an older rmtzoo is read with
``torch.load(weights_only=True)`` and only the model's own state classes allow-listed.

A damaged pointer or checkpoint is a :class:`~rmtzoo.CheckpointError` naming the file and the newest
intact checkpoint, never a silent restart.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path

from rmtzoo._errors import CheckpointError
from rmtzoo._io import atomic_write_text, check_folder, follow_umask, make_temp_dir

_STEP = re.compile(r"step-(\d{8,})")
_FILES = ("model.safetensors", "trainer.json", "trainer.safetensors", "config.json")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


# -- writing ----------------------------------------------------------------------------------------
def save_checkpoint(run_dir: Path, step: int, *, model, trainer_state: dict, config_json: str, keep: int = 2,
                    best: bool = False) -> Path:
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    from rmtzoo._pretrained import save_weights
    from rmtzoo.train import _state_io

    folder = checkpoints_folder(run_dir)
    final = folder / f"step-{step:08d}"
    text, tensors = _state_io.dumps(trainer_state)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_dir(folder, f".tmp-{final.name}-")
        try:
            save_weights(model, tmp / "model.safetensors")  # every key: plain load_state_dict(load_file(...)) works
            save_file(tensors, str(tmp / "trainer.safetensors"))
            follow_umask(tmp / "trainer.safetensors")  # safetensors writes its files 0600
            (tmp / "trainer.json").write_text(text)
            (tmp / "config.json").write_text(config_json)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        atomic_write_text(folder / "latest.json", json.dumps({"step": step, "path": final.name}) + "\n")
        if best:
            atomic_write_text(folder / "best.json", json.dumps({"step": step, "path": final.name}) + "\n")
    except (OSError, SafetensorError) as exc:  # e.g. no space left: safetensors reports it as its own error
        previous = _pointer_or_none(folder, "latest.json")
        kept = f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint exists"
        raise CheckpointError(f"could not write checkpoint {final}: {_one_line(exc)}; {kept}") from None
    _prune(folder, keep)
    return final


def checkpoints_folder(run_dir: Path) -> Path:
    return check_folder(Path(run_dir) / "checkpoints", "checkpoints folder")


def _prune(folder: Path, keep: int) -> None:
    protected = {_pointer_or_none(folder, "latest.json"), _pointer_or_none(folder, "best.json")}
    steps = sorted(p for p in folder.glob("step-*") if p.is_dir())
    for path in steps[:-keep]:
        if path.name not in protected:
            shutil.rmtree(path, ignore_errors=True)


def remove_temporaries(run_dir: Path) -> list[str]:
    """Remove what killed writes left (``.tmp-step-*`` folders, ``.latest.json.*`` files); their names.
    Only safe while this process holds the run folder's lock."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.glob(".tmp-step-*")) + sorted(folder.glob(".latest.json.*")) + sorted(folder.glob(".best.json.*")):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed


@contextlib.contextmanager
def exclusive_run_dir(run_dir: Path):
    """Hold an exclusive ``fcntl`` lock on ``run_dir/.lock`` (holding this process's pid) while inside.

    The kernel drops the lock when the holder exits, however it exits, so a lock is never stale. A
    second holder gets a :class:`CheckpointError` naming the first one's pid. Without ``fcntl``
    (Windows) nothing is locked."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    run_dir = Path(run_dir)
    path = run_dir / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise CheckpointError(f"run folder {str(run_dir)!r} is in use by another trainer (pid {holder}); wait "
                                  "for it to finish or use another --run-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


# -- finding ----------------------------------------------------------------------------------------
def _pointer_or_none(folder: Path, name: str) -> str | None:
    try:
        return json.loads((folder / name).read_text())["path"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def step_folders(folder: Path) -> list[Path]:
    """The ``step-*`` checkpoint folders in ``folder``, newest first."""
    return sorted((p for p in folder.glob("step-*") if p.is_dir() and _STEP.fullmatch(p.name)), reverse=True)


def damage(folder: Path) -> str | None:
    """What is wrong with checkpoint ``folder`` (a missing, truncated or unreadable file), or None."""
    from safetensors import safe_open

    legacy = not (folder / "trainer.json").exists() and (folder / "trainer.pt").is_file()
    for name in _FILES if not legacy else ("model.safetensors", "config.json", "trainer.pt"):
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        try:
            if name.endswith(".safetensors"):
                with safe_open(str(path), "pt") as fh:
                    fh.keys()
            elif name.endswith(".json"):
                json.loads(path.read_text(encoding="utf-8"))
        except Exception as exc:  # noqa: BLE001 - a damaged file, whatever the reader says
            return f"{path} is damaged ({_one_line(exc)})"
    return None


def newest_intact(folder: Path, *, before: str | None = None) -> Path | None:
    for path in step_folders(folder):
        if (before is None or path.name < before) and damage(path) is None:
            return path
    return None


def _recovery(folder: Path, pointer: Path) -> str:
    intact = newest_intact(folder)
    if intact is None:
        return f"no intact checkpoint is left in {folder}; start over with --no-resume or another --run-dir"
    return f"the newest intact checkpoint is {intact}; delete {pointer.name} to resume from it"


def read_pointer(folder: Path, name: str) -> Path | None:
    """The checkpoint folder ``folder/name`` points at; None when the pointer does not exist."""
    path = folder / name
    if not path.exists():
        return None
    try:
        target = json.loads(path.read_text(encoding="utf-8"))["path"]
        if not isinstance(target, str) or not _STEP.fullmatch(target):
            raise ValueError(f"'path' is {target!r}, not a step-NNNNNNNN folder")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} is damaged ({_one_line(exc)}); {_recovery(folder, path)}") from None
    if not (folder / target).is_dir():
        raise CheckpointError(f"{path} points at {target}, which does not exist; {_recovery(folder, path)}")
    return folder / target


def find_checkpoint(path: str | os.PathLike, *, which: str = "latest") -> Path | None:
    """A checkpoint folder from a run folder (its latest or best) or a checkpoint folder itself.

    Without ``latest.json`` (a kill before the first pointer was written) the newest intact ``step-*``
    folder; without ``best.json``, None. A damaged pointer is a :class:`CheckpointError`."""
    path = Path(path)
    if (path / "model.safetensors").is_file():
        return path
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    target = read_pointer(folder, f"{which}.json")
    if target is None and which == "latest":
        target = newest_intact(folder)
    return target


# -- loading ----------------------------------------------------------------------------------------
def read_trainer_state(folder: Path) -> dict:
    """The trainer state of checkpoint ``folder`` (tensors on the CPU), read without unpickling."""
    from safetensors.torch import load_file

    from rmtzoo.train import _state_io

    folder = Path(folder)
    text_path, tensor_path = folder / "trainer.json", folder / "trainer.safetensors"
    if not text_path.exists() and (folder / "trainer.pt").is_file():
        return _read_legacy(folder / "trainer.pt")
    for path in (text_path, tensor_path):
        if not path.is_file():
            raise CheckpointError(f"checkpoint {folder} is incomplete: {path.name} is missing")
    try:
        tensors = load_file(str(tensor_path))
    except Exception as exc:  # noqa: BLE001 - SafetensorError and OSError alike
        raise CheckpointError(f"{tensor_path} is damaged ({_one_line(exc)})") from None
    try:
        return _state_io.loads(text_path.read_text(encoding="utf-8"), tensors)
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{text_path} is damaged ({_one_line(exc)})") from None


def _read_legacy(path: Path) -> dict:
    """A ``trainer.pt`` of an older rmtzoo: tensors and plain data only, through PyTorch's restricted
    unpickler (``weights_only=True``), which refuses to import or call anything not allow-listed."""
    import pickle

    import torch

    from rmtzoo.model import PastSegment, RecurrentState

    try:
        with torch.serialization.safe_globals([RecurrentState, PastSegment]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        why = next((line.strip() for line in str(exc).splitlines() if "GLOBAL" in line or "Unsupported" in line),
                   _one_line(exc))
        raise CheckpointError(
            f"{path}: refused to load, it holds pickled objects other than tensors and plain data ({why[:200]}); "
            "rmtzoo never runs code from a checkpoint. A trainer.pt written by rmtzoo loads as it is, and "
            "resuming such a run once with `rmtzoo train` rewrites it as trainer.json + trainer.safetensors"
        ) from None
    except Exception as exc:  # noqa: BLE001 - truncated or not a torch file
        raise CheckpointError(f"{path} is damaged ({_one_line(exc)})") from None


def load_weights(folder: Path, model, *, map_location="cpu") -> None:
    from rmtzoo._pretrained import load_weights as load_file_into

    path = Path(folder) / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {folder} is incomplete: model.safetensors is missing")
    try:
        load_file_into(model, path, device=map_location)
    except RuntimeError as exc:  # missing, unexpected or differently shaped tensors
        first = _one_line(exc).replace("Error(s) in loading state_dict for ", "")
        raise CheckpointError(f"{path} does not fit the model its config.json describes ({first[:200]}); was "
                              "config.json edited?") from None
    except Exception as exc:  # noqa: BLE001 - SafetensorError: truncated or not a safetensors file
        raise CheckpointError(f"{path} is damaged ({_one_line(exc)})") from None


def load_checkpoint(folder: Path, model, *, map_location="cpu") -> dict:
    """Load ``folder``'s weights into ``model`` and return its trainer state."""
    state = read_trainer_state(folder)
    load_weights(folder, model, map_location=map_location)
    return state
