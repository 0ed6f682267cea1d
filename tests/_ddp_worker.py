"""One process of the two-process DDP test: ``python tests/_ddp_worker.py CONFIG.json RUN_DIR``.

The parent sets MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK and LOCAL_RANK; this trains the config with
:func:`rmtzoo.train.train` and writes its final weights to ``RUN_DIR/final.pt``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

import rmtzoo
from rmtzoo.train import train


def main(config_path: str, run_dir: str) -> None:
    torch.set_num_threads(1)
    registry = rmtzoo.Registry(environ={}, entry_points=False)
    config = rmtzoo.load_config(json.loads(Path(config_path).read_text()), registry=registry)
    captured = {}
    from rmtzoo.train import _loop

    original = _loop.Trainer._test

    def keep_weights(self):  # the weights training ended with, before _test loads the best checkpoint
        captured["state"] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return original(self)

    _loop.Trainer._test = keep_weights
    train(config, run_dir, registry=registry, log=lambda *a: None)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    torch.save(captured["state"], Path(run_dir) / "final.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
