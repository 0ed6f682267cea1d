"""One process of the two-process DDP test: ``python tests/_ddp_worker.py CONFIG.json RUN_DIR``.

The parent sets MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK and LOCAL_RANK; this trains the config with
:func:`rmtzoo.train.train` in RUN_DIR. Rank 1 notes that it ran in ``RUN_DIR/worker.json`` (anything
else there would have been written by the trainer)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

import rmtzoo
from rmtzoo.train import train


def main(config_path: str, run_dir: str) -> None:
    torch.set_num_threads(1)
    registry = rmtzoo.Registry(environ={}, entry_points=False)
    config = rmtzoo.load_config(json.loads(Path(config_path).read_text()), registry=registry)
    results = train(config, run_dir, registry=registry, log=lambda *a: None)
    if os.environ["RANK"] != "0":
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        note = {"world_size": int(os.environ["WORLD_SIZE"]), "results": results}
        (Path(run_dir) / "worker.json").write_text(json.dumps(note))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
