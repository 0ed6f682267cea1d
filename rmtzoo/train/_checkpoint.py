"""Checkpoints that are never half-written.

Each checkpoint is a new folder ``checkpoints/step-NNNNNNNN`` built under a temporary name and renamed
into place; ``latest.json`` and ``best.json`` point at folders and are replaced atomically. So a kill at
any moment leaves the previous checkpoint and both pointers intact.

Folder contents: ``model.safetensors`` (weights, every state-dict key), ``trainer.pt`` (optimizer, scheduler, RNG states,
data position, carried memory/cache), ``config.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from rmtzoo._io import atomic_write_text


def save_checkpoint(run_dir: Path, step: int, *, model, trainer_state: dict, config_json: str, keep: int = 2,
                    best: bool = False) -> Path:
    from rmtzoo._pretrained import save_weights

    folder = run_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=folder))
    try:
        save_weights(model, tmp / "model.safetensors")  # every key: plain load_state_dict(load_file(...)) works
        torch.save(trainer_state, tmp / "trainer.pt")
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
    _prune(folder, keep)
    return final


def _prune(folder: Path, keep: int) -> None:
    protected = {_pointer(folder, "latest.json"), _pointer(folder, "best.json")}
    steps = sorted(p for p in folder.glob("step-*") if p.is_dir())
    for path in steps[:-keep]:
        if path.name not in protected:
            shutil.rmtree(path, ignore_errors=True)


def _pointer(folder: Path, name: str) -> str | None:
    try:
        return json.loads((folder / name).read_text())["path"]
    except (OSError, ValueError, KeyError):
        return None


def find_checkpoint(path: str | os.PathLike, *, which: str = "latest") -> Path | None:
    """A checkpoint folder from a run folder (its latest or best) or a checkpoint folder itself."""
    path = Path(path)
    if (path / "model.safetensors").is_file():
        return path
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    name = _pointer(folder, f"{which}.json")
    return folder / name if name else None


def load_checkpoint(folder: Path, model, *, map_location="cpu") -> dict:
    from rmtzoo._pretrained import load_weights

    load_weights(model, folder / "model.safetensors", device=map_location)
    return torch.load(folder / "trainer.pt", map_location=map_location, weights_only=False)
